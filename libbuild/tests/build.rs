//! Builds with real layers in a libgraph store (overlay when the kernel has it). RUN steps
//! run with chroot in the step's mounted container root, as root; the engine runs them in a
//! real container instead.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use longshore_build::build::RunMountKind;
use longshore_build::{BuildOptions, Built, Context, Error, RunStep, StepRunner, build};
use longshore_graph::{Store, StoreOptions};
use longshore_test_support::require_root;

/// Runs the step with `chroot --userspec` and busybox's shell for the working directory.
struct Chroot;

impl StepRunner for Chroot {
    fn run(&self, step: RunStep<'_>) -> Result<i32, String> {
        let mut c = Command::new("chroot");
        if !step.user.is_empty() {
            let spec = if step.user.contains(':') {
                step.user.clone()
            } else {
                format!("{0}:{0}", step.user)
            };
            c.arg(format!("--userspec={spec}"));
        }
        c.arg(step.rootfs)
            .args(["/bin/busybox", "sh", "-c", "cd \"$0\" && exec \"$@\""])
            .arg(&step.workdir)
            .args(&step.args)
            .env_clear();
        for e in &step.env {
            if let Some((k, v)) = e.split_once('=') {
                c.env(k, v);
            }
        }
        // RUN --mount: made here, from the host, and undone before returning
        let mut mounted = Vec::new();
        let mut result = Ok(());
        for m in &step.mounts {
            let target = step.rootfs.join(m.target.trim_start_matches('/'));
            let ok = match (&m.kind, &m.source) {
                (RunMountKind::Tmpfs, _) => {
                    sh(&["mount", "-t", "tmpfs", "longshore-tmpfs"], &target)
                }
                (RunMountKind::Bind, Some(src)) => {
                    sh(&["mount", "--bind", &src.to_string_lossy()], &target)
                        && (!m.readonly || sh(&["mount", "-o", "remount,bind,ro"], &target))
                }
                _ => false,
            };
            mounted.push(target);
            if !ok {
                result = Err(format!("cannot mount {}", m.target));
                break;
            }
        }
        let out = result.and_then(|()| c.output().map_err(|e| format!("chroot: {e}")));
        for t in mounted.iter().rev() {
            sh(&["umount", "-l"], t);
        }
        let out = out?;
        step.output
            .write_all(&out.stdout)
            .map_err(|e| e.to_string())?;
        step.output
            .write_all(&out.stderr)
            .map_err(|e| e.to_string())?;
        Ok(out.status.code().unwrap_or(128))
    }
}

fn sh(args: &[&str], target: &Path) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .arg(target)
        .status()
        .is_ok_and(|s| s.success())
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    ctx: std::path::PathBuf,
}

/// A store and a context directory holding a busybox root filesystem in `rootfs/`.
fn env() -> Env {
    let dir = tempfile::Builder::new()
        .prefix("longshore-build-test-")
        .tempdir()
        .unwrap();
    let store = Store::open(dir.path().join("store"), StoreOptions::default()).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    longshore_test_support::busybox_rootfs(&ctx.join("rootfs")).unwrap();
    Env {
        _dir: dir,
        store,
        ctx,
    }
}

fn opts(dockerfile: &str) -> BuildOptions {
    BuildOptions {
        dockerfile: dockerfile.to_string(),
        ..BuildOptions::default()
    }
}

fn run(e: &Env, o: &BuildOptions) -> (Result<Built, Error>, String) {
    let ctx = Context::dir(&e.ctx).unwrap();
    let mut out: Vec<u8> = Vec::new();
    let r = build(&e.store, &ctx, o, &Chroot, &mut out);
    (r, String::from_utf8_lossy(&out).into_owned())
}

/// The busybox base, built from scratch so that it is the same in every store.
fn base(e: &Env) {
    let mut o = opts("FROM scratch\nCOPY rootfs/ /\nCMD [\"sh\"]\n");
    o.tags = vec!["base:1".into()];
    let (r, out) = run(e, &o);
    r.unwrap_or_else(|err| panic!("{err}\n{out}"));
}

fn leftover_containers(store: &Store) -> Vec<String> {
    let home = store.driver().home().to_path_buf();
    fs::read_dir(&home)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with("-rw"))
                .collect()
        })
        .unwrap_or_default()
}

fn config(store: &Store, name: &str) -> serde_json::Value {
    serde_json::from_slice(&store.config(name).unwrap()).unwrap()
}

const APP: &str = "FROM base:1
ENV MYNAME=\"Allen Ren\" GREETING=hello
WORKDIR /app
COPY test.txt ./
RUN echo \"$GREETING $MYNAME\" > greeting && cat test.txt
RUN echo welcome
EXPOSE 8080 53/udp
USER 1000
CMD [\"cat\", \"greeting\"]
";

#[test]
fn a_build_runs_each_step_and_records_docker_history() {
    require_root!();
    let e = env();
    base(&e);
    fs::write(e.ctx.join("test.txt"), "hello world\n").unwrap();
    let mut o = opts(APP);
    o.tags = vec!["app:1".into(), "app:latest".into()];
    let (r, out) = run(&e, &o);
    let built = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert_eq!(built.run_steps, 8, "{out}");
    assert!(out.contains("Step 1/9 : FROM base:1\n"), "{out}");
    assert!(out.contains("Step 5/9 : RUN echo \"$GREETING $MYNAME\" > greeting && cat test.txt\n ---> Running in "), "{out}");
    assert!(
        out.contains("hello world\nRemoving intermediate container "),
        "{out}"
    );
    assert!(
        out.contains(&format!("Successfully built {}\n", &built.id.hex()[..12])),
        "{out}"
    );
    assert!(
        out.contains("Successfully tagged app:1\nSuccessfully tagged app:latest\n"),
        "{out}"
    );

    let cfg = config(&e.store, "app:1");
    let c = &cfg["config"];
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "MYNAME=Allen Ren"),
        "{c}"
    );
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "1000");
    assert_eq!(c["Cmd"], serde_json::json!(["cat", "greeting"]));
    assert!(c["ExposedPorts"]["8080/tcp"].is_object() && c["ExposedPorts"]["53/udp"].is_object());
    assert_eq!(cfg["created"], "1970-01-01T00:00:00Z");

    let hist = e.store.history("app:1").unwrap();
    let by: Vec<&str> = hist.iter().map(|h| h.created_by.as_str()).collect();
    assert_eq!(by[0], "/bin/sh -c #(nop)  CMD [\"cat\",\"greeting\"]");
    assert_eq!(by[1], "/bin/sh -c #(nop)  USER 1000");
    assert_eq!(by[2], "/bin/sh -c #(nop)  EXPOSE 53/udp 8080/tcp");
    assert_eq!(by[3], "/bin/sh -c echo welcome");
    assert!(
        by[5].starts_with("/bin/sh -c #(nop) COPY file:") && by[5].ends_with(" in /app/ "),
        "{}",
        by[5]
    );
    assert_eq!(by[6], "/bin/sh -c #(nop) WORKDIR /app");
    // /app was missing: WORKDIR made it in a layer (base, WORKDIR, COPY, 2 RUN); ENV none
    assert_eq!(e.store.image("app:1").unwrap().diff_ids.len(), 5);
    assert_eq!(
        by[7],
        "/bin/sh -c #(nop)  ENV MYNAME=Allen Ren GREETING=hello"
    );

    // the files are in the image: run a container on it
    e.store
        .create_container("longshore-build-check", "app:1")
        .unwrap();
    let root = e.store.mount_container("longshore-build-check").unwrap();
    assert_eq!(
        fs::read_to_string(root.join("app/greeting")).unwrap(),
        "hello Allen Ren\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("app/test.txt")).unwrap(),
        "hello world\n"
    );
    e.store.unmount_container("longshore-build-check").unwrap();
    e.store.remove_container("longshore-build-check").unwrap();
    assert!(leftover_containers(&e.store).is_empty());
}

#[test]
fn rebuilds_reuse_the_cache_and_a_changed_source_invalidates_from_there() {
    require_root!();
    let e = env();
    base(&e);
    let df = "FROM base:1\nRUN echo hello\nADD ./test.txt /home/renyl/\nRUN echo welcome\n";
    fs::write(e.ctx.join("test.txt"), "hello world\n").unwrap();
    let (r, out) = run(&e, &opts(df));
    let first = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert_eq!((first.cached_steps, first.run_steps), (0, 3));

    // identical rebuild: every step from the cache (the seed's 7.2 example)
    let (r, out) = run(&e, &opts(df));
    let second = r.unwrap();
    assert_eq!((second.cached_steps, second.run_steps), (3, 0), "{out}");
    assert_eq!(second.id, first.id);
    assert!(
        out.contains("Step 2/4 : RUN echo hello\n ---> Using cache\n"),
        "{out}"
    );

    // the ADDed file changes: RUN echo hello stays cached, ADD and everything after rerun
    fs::write(e.ctx.join("test.txt"), "hello\n").unwrap();
    let (r, out) = run(&e, &opts(df));
    let third = r.unwrap();
    assert_eq!((third.cached_steps, third.run_steps), (1, 2), "{out}");
    assert_ne!(third.id, first.id);

    // --no-cache runs everything again, and gives the same image (reproducible)
    let mut o = opts(df);
    o.no_cache = true;
    let (r, _) = run(&e, &o);
    let fourth = r.unwrap();
    assert_eq!((fourth.cached_steps, fourth.run_steps), (0, 3));
    assert_eq!(fourth.id, third.id);

    // a build arg in scope is part of a RUN's key
    let df2 = "FROM base:1\nARG V=1\nRUN echo $V > /v\n";
    let (r, _) = run(&e, &opts(df2));
    let a = r.unwrap();
    let mut o = opts(df2);
    o.build_args.insert("V".into(), "2".into());
    let (r, _) = run(&e, &o);
    let b = r.unwrap();
    assert_eq!(b.run_steps, 1);
    assert_ne!(a.id, b.id);
    let hist = e.store.history(&b.id.to_string()).unwrap();
    assert_eq!(hist[0].created_by, "|1 V=2 /bin/sh -c echo $V > /v");
}

#[test]
fn the_same_inputs_give_the_same_image_id_in_two_stores() {
    require_root!();
    let a = env();
    let b = env();
    let df = "FROM base:1\nCOPY . /src/\nRUN mkdir /out && echo built > /out/x && touch /out/y\nENV A=1\nCMD [\"sh\"]\n";
    for e in [&a, &b] {
        base(e);
        fs::create_dir_all(e.ctx.join("data/sub")).unwrap();
        fs::write(e.ctx.join("data/sub/f"), "content\n").unwrap();
        std::os::unix::fs::symlink("sub/f", e.ctx.join("data/link")).unwrap();
    }
    // different file times in the two contexts do not matter
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(b.ctx.join("data/sub/f"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (ra, out) = run(&a, &opts(df));
    let ia = ra.unwrap_or_else(|err| panic!("{err}\n{out}"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (rb, _) = run(&b, &opts(df));
    let ib = rb.unwrap();
    assert_eq!(ia.id, ib.id, "two stores, same inputs, different image IDs");
    assert_eq!(
        a.store.image(&ia.id.to_string()).unwrap().diff_ids,
        b.store.image(&ib.id.to_string()).unwrap().diff_ids
    );

    // SOURCE_DATE_EPOCH changes the times and so the ID
    let mut o = opts(df);
    o.source_date_epoch = Some(1_700_000_000);
    let (rc, _) = run(&a, &o);
    let ic = rc.unwrap();
    assert_ne!(ic.id, ia.id);
    assert_eq!(
        config(&a.store, &ic.id.to_string())["created"],
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn multi_stage_builds_only_what_the_target_needs() {
    require_root!();
    let e = env();
    base(&e);
    let df = "ARG GREETING=hi
FROM base:1 AS builder
ARG GREETING
RUN echo \"$GREETING from builder\" > /artifact
FROM base:1 AS broken
RUN exit 3
FROM scratch AS final
COPY --from=builder /artifact /artifact
COPY --from=0 /bin/busybox /bin/busybox
FROM final AS test
RUN [\"/bin/busybox\", \"true\"]
";
    let mut o = opts(df);
    o.target = Some("final".into());
    let (r, out) = run(&e, &o);
    let built = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(!out.contains("exit 3"), "the unused stage ran:\n{out}");
    assert!(out.contains("Step 6/6"), "{out}");
    e.store
        .create_container("longshore-build-ms", &built.id.to_string())
        .unwrap();
    let root = e.store.mount_container("longshore-build-ms").unwrap();
    assert_eq!(
        fs::read_to_string(root.join("artifact")).unwrap(),
        "hi from builder\n"
    );
    assert!(root.join("bin/busybox").is_file());
    e.store.unmount_container("longshore-build-ms").unwrap();
    e.store.remove_container("longshore-build-ms").unwrap();

    // the last stage builds `final` from the cache, then its own step
    let (r, out) = run(&e, &opts(df));
    let t = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert_eq!(t.run_steps, 1, "{out}");
}

#[test]
fn dockerignore_leaves_files_out_with_exceptions() {
    require_root!();
    let e = env();
    base(&e);
    fs::write(
        e.ctx.join(".dockerignore"),
        "rootfs\n*.log\n!keep.log\nsecret/**\n",
    )
    .unwrap();
    fs::write(e.ctx.join("a.log"), "no").unwrap();
    fs::write(e.ctx.join("keep.log"), "yes").unwrap();
    fs::create_dir_all(e.ctx.join("secret/deep")).unwrap();
    fs::write(e.ctx.join("secret/deep/key"), "no").unwrap();
    fs::write(e.ctx.join("app.txt"), "yes").unwrap();
    let (r, out) = run(
        &e,
        &opts("FROM base:1\nCOPY . /ctx/\nRUN find /ctx | sort\n"),
    );
    r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(
        out.contains("/ctx/keep.log\n") && out.contains("/ctx/app.txt\n"),
        "{out}"
    );
    assert!(
        !out.contains("a.log") && !out.contains("/ctx/secret/deep") && !out.contains("/ctx/rootfs"),
        "{out}"
    );
    // an excluded file named alone is missing
    let (r, _) = run(&e, &opts("FROM base:1\nCOPY a.log /\n"));
    let err = r.unwrap_err().to_string();
    assert!(err.contains("Dockerfile:2: COPY failed: file not found in build context or excluded by .dockerignore"), "{err}");
}

fn assert_clean_failure(e: &Env, images_before: usize, err: &str, want: &str) {
    assert!(
        err.contains(want),
        "error {err:?} does not contain {want:?}"
    );
    assert_eq!(
        e.store.images().unwrap().len(),
        images_before,
        "a failed build left an image"
    );
    assert!(
        e.store.image("bad:1").is_err(),
        "a failed build set its tag"
    );
    assert!(
        leftover_containers(&e.store).is_empty(),
        "a failed build left a container"
    );
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    require_root!();
    let e = env();
    base(&e);
    fs::write(e.ctx.join("ok.txt"), "x").unwrap();
    let n = e.store.images().unwrap().len();
    let cases: &[(&str, &str)] = &[
        (
            "FROM base:1\nENV ONLYKEY\n",
            "Dockerfile:2: ENV must have two arguments",
        ),
        (
            "FROM base:1\nCMD [\"a\", [\"nested\"]]\n",
            "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only",
        ),
        (
            "FROM base:1\nFROBNICATE x\n",
            "Dockerfile:2: unknown instruction: FROBNICATE",
        ),
        (
            "FROM base:1\nONBUILD FROM busybox\n",
            "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM base:1\nONBUILD ONBUILD RUN x\n",
            "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            "FROM base:1\nCOPY ok.txt /\nCOPY --from=nosuchstage /x /x\n",
            "Dockerfile:3: COPY --from=nosuchstage: there is no stage named \"nosuchstage\"",
        ),
        (
            "FROM base:1 AS a\nCOPY --from=b /x /x\nFROM base:1 AS b\nCOPY --from=a /y /y\n",
            "circular dependency detected on stage",
        ),
        (
            "FROM base:1\nCOPY ok.txt /\nCOPY missing.txt /\n",
            "Dockerfile:3: COPY failed: file not found in build context",
        ),
        (
            "FROM base:1\nCOPY ../outside /x\n",
            "Dockerfile:2: COPY failed: forbidden path outside the build context: ../outside",
        ),
        (
            "FROM base:1\nCOPY ok.txt /a\nRUN echo before && exit 7\nRUN echo after\n",
            "step 3/4 : RUN echo before && exit 7: the command returned a non-zero code: 7",
        ),
        (
            "FROM nosuchimage:1\n",
            "Dockerfile:1: base image \"nosuchimage:1\"",
        ),
    ];
    for (df, want) in cases {
        let mut o = opts(df);
        o.tags = vec!["bad:1".into()];
        let (r, out) = run(&e, &o);
        let err = match r {
            Ok(b) => panic!("{df:?} built {}:\n{out}", b.id),
            Err(err) => err.to_string(),
        };
        assert_clean_failure(&e, n, &err, want);
    }
    // an absolute source is taken inside the context, never from the host
    let (r, out) = run(&e, &opts("FROM base:1\nCOPY /etc/shadow /x\n"));
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("file not found in build context"),
        "{out}"
    );
    // a symlink in the context pointing out of it resolves inside the context
    std::os::unix::fs::symlink("/etc/hostname", e.ctx.join("escape")).unwrap();
    let (r, _) = run(&e, &opts("FROM base:1\nCOPY escape /x\n"));
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("file not found in build context")
    );
}

#[test]
fn hostile_archives_change_nothing_outside() {
    require_root!();
    let e = env();
    base(&e);
    let victim = tempfile::Builder::new()
        .prefix("longshore-build-victim-")
        .tempdir()
        .unwrap();
    let target = victim.path().join("pwned");
    // an ADDed tar with ../ entries and an absolute symlink followed by a write through it
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    let evil = format!("../../../../../../../..{}", target.display());
    {
        let name = evil.as_bytes();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
    }
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let mut l = tar::Header::new_gnu();
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    l.set_mode(0o777);
    b.append_link(&mut l, "out", victim.path()).unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_size(4);
    f.set_mode(0o644);
    b.append_data(&mut f, "out/pwned", &b"evil"[..]).unwrap();
    fs::write(e.ctx.join("evil.tar"), b.into_inner().unwrap()).unwrap();
    let (r, out) = run(&e, &opts("FROM base:1\nADD evil.tar /x/\n"));
    assert!(
        !target.exists(),
        "the ADDed tar wrote outside the layer ({r:?})\n{out}"
    );
    if let Ok(built) = r {
        e.store
            .remove_image(
                &built.id.to_string(),
                &longshore_graph::RemoveOptions::new().force(true),
            )
            .unwrap();
    }

    // a context tar with a ../ entry is refused as a whole
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    {
        let gnu = h.as_gnu_mut().unwrap();
        let name = b"../escape";
        gnu.name[..name.len()].copy_from_slice(name);
    }
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let err = Context::tar(&b.into_inner().unwrap()[..])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("context tar entry \"../escape\" points outside the context"),
        "{err}"
    );
}

#[test]
fn a_context_tar_builds_like_a_directory() {
    require_root!();
    let e = env();
    base(&e);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o640);
    b.append_data(&mut h, "dir/file.txt", &b"hello\n"[..])
        .unwrap();
    let mut l = tar::Header::new_gnu();
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    b.append_link(&mut l, "dir/link", "file.txt").unwrap();
    let plain = b.into_inner().unwrap();
    // the same context gzip-compressed (`docker build - < ctx.tar.gz`)
    let gz = {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&plain).unwrap();
        enc.finish().unwrap()
    };
    let gz_ctx = Context::tar(&gz[..]).unwrap();
    assert_eq!(
        fs::read_to_string(gz_ctx.root().join("dir/file.txt")).unwrap(),
        "hello\n"
    );
    let ctx = Context::tar(&plain[..]).unwrap();
    let mut out = Vec::new();
    let built = build(
        &e.store,
        &ctx,
        &opts("FROM base:1\nCOPY dir /d\nRUN readlink /d/link && stat -c %a /d/file.txt\n"),
        &Chroot,
        &mut out,
    )
    .unwrap_or_else(|err| panic!("{err}\n{}", String::from_utf8_lossy(&out)));
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("file.txt\n640\n"), "{out}");
    let _ = built;
}

#[test]
fn copy_chown_chmod_heredocs_and_onbuild() {
    require_root!();
    let e = env();
    base(&e);
    fs::write(e.ctx.join("f"), "data").unwrap();
    let df = "FROM base:1
COPY --chown=user:wheel --chmod=0750 f /opt/f
COPY <<EOF /opt/script.sh
echo from heredoc
EOF
RUN <<EOT
stat -c '%u:%g %a' /opt/f
sh /opt/script.sh
EOT
ONBUILD RUN echo triggered > /trig
";
    let mut o = opts(df);
    o.tags = vec!["parent:1".into()];
    let (r, out) = run(&e, &o);
    r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(out.contains("1000:10 750\nfrom heredoc\n"), "{out}");
    let (r, out) = run(&e, &opts("FROM parent:1\nRUN cat /trig\n"));
    r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(out.contains("# Executing 1 build trigger\n"), "{out}");
    assert!(out.contains("triggered\n"), "{out}");
}

#[test]
fn labels_and_unused_build_args() {
    require_root!();
    let e = env();
    base(&e);
    let mut o = opts("FROM base:1\nLABEL a=1\n");
    o.labels = BTreeMap::from([("org.example".to_string(), "x".to_string())]);
    o.build_args.insert("NOPE".into(), "1".into());
    let (r, out) = run(&e, &o);
    let b = r.unwrap();
    assert_eq!(b.unused_build_args, ["NOPE"]);
    assert!(
        out.contains("[Warning] One or more build-args [NOPE] were not consumed"),
        "{out}"
    );
    let cfg = config(&e.store, &b.id.to_string());
    assert_eq!(cfg["config"]["Labels"]["a"], "1");
    assert_eq!(cfg["config"]["Labels"]["org.example"], "x");
    let mut q = opts("FROM base:1\nLABEL a=1\n");
    q.quiet = true;
    let (r, out) = run(&e, &q);
    assert_eq!(out, format!("{}\n", r.unwrap().id));
}

/// The seed's 7.3 example (docker-registry's Dockerfile), adapted to a busybox base: the
/// comment lines inside the RUN continuation, COPY of the context and of one file, the old
/// `ENV key value` form, EXPOSE and CMD.
#[test]
fn the_seeds_example_dockerfile_builds() {
    require_root!();
    let e = env();
    base(&e);
    fs::create_dir_all(e.ctx.join("config")).unwrap();
    fs::create_dir_all(e.ctx.join("depends/docker-registry-core")).unwrap();
    fs::write(e.ctx.join("config/boto.cfg"), "[Boto]\n").unwrap();
    fs::write(e.ctx.join("config/config_sample.yml"), "dev:\n").unwrap();
    fs::write(
        e.ctx.join("depends/docker-registry-core/setup.py"),
        "# core\n",
    )
    .unwrap();
    fs::write(e.ctx.join(".dockerignore"), "rootfs\n").unwrap();
    let df = "# VERSION 0.1
# DOCKER-VERSION 0.7.3
# AUTHOR:      Sam Alba <sam@docker.com>
# DESCRIPTION:  Image with docker-registry project and dependencies
# TO_BUILD:    docker build -rm -t registry .
# TO_RUN:      docker run -p 5000:5000 registry

# Latest Ubuntu LTS
FROM base:1

# Update
RUN echo apt-get update \\
# Install pip
    && echo apt-get install -y \\
        swig \\
        python-pip \\
# Install deps for backports.lmza (python2 requires it)
        python-dev \\
        libssl-dev \\
        liblzma-dev \\
        libevent1-dev \\
        && rm -rf /var/lib/apt/lists/*

COPY . /docker-registry
COPY ./config/boto.cfg /etc/boto.cfg

# Install core
RUN ls /docker-registry/depends/docker-registry-core

ENV DOCKER_REGISTRY_CONFIG /docker-registry/config/config_sample.yml
ENV SETTINGS_FLAVOR dev

EXPOSE 5000

CMD [\"docker-registry\"]
";
    let mut o = opts(df);
    o.tags = vec!["registry".into()];
    let (r, out) = run(&e, &o);
    let built = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(
        out.contains(
            "apt-get install -y swig python-pip python-dev libssl-dev liblzma-dev libevent1-dev\n"
        ),
        "{out}"
    );
    assert!(out.contains("setup.py\n"), "{out}");
    assert!(
        out.contains("Step 9/9 : CMD [\"docker-registry\"]"),
        "{out}"
    );
    assert!(out.contains("Successfully tagged registry:latest"), "{out}");
    let cfg = config(&e.store, "registry");
    let env = cfg["config"]["Env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|v| v == "DOCKER_REGISTRY_CONFIG=/docker-registry/config/config_sample.yml")
    );
    assert!(env.iter().any(|v| v == "SETTINGS_FLAVOR=dev"));
    assert!(cfg["config"]["ExposedPorts"]["5000/tcp"].is_object());
    assert_eq!(e.store.image("registry").unwrap().id, built.id);
}

#[test]
fn env_expands_against_the_previous_environment_and_entrypoint_resets_inherited_cmd() {
    require_root!();
    let e = env();
    base(&e);
    let (r, out) = run(
        &e,
        &opts(
            "FROM base:1\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\nENTRYPOINT [\"sh\"]\n",
        ),
    );
    let b = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    let cfg = config(&e.store, &b.id.to_string());
    let env = cfg["config"]["Env"].as_array().unwrap();
    assert!(
        env.iter().any(|v| v == "def=hello") && env.iter().any(|v| v == "ghi=bye"),
        "{env:?}"
    );
    // base:1 has CMD ["sh"]: ENTRYPOINT drops it
    assert!(cfg["config"]["Cmd"].is_null(), "{cfg}");
    let (r, _) = run(&e, &opts("FROM base:1\nCMD [\"x\"]\nENTRYPOINT [\"sh\"]\n"));
    let cfg = config(&e.store, &r.unwrap().id.to_string());
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["x"]));
}

/// Two RUN steps that each wait for the other (in the runner, on the host): they can only
/// both succeed when their stages build at the same time. Built one after the other, the
/// first would give up after 30 s and fail the build.
struct Rendezvous {
    dir: std::path::PathBuf,
}

impl StepRunner for Rendezvous {
    fn run(&self, step: RunStep<'_>) -> Result<i32, String> {
        let script = step.args.last().cloned().unwrap_or_default();
        if let Some(me) = script.strip_prefix("echo meet-") {
            let other = if me == "a" { "b" } else { "a" };
            fs::write(self.dir.join(me), "").map_err(|e| e.to_string())?;
            for _ in 0..3000 {
                if self.dir.join(other).exists() {
                    return Chroot.run(step);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            return Ok(99);
        }
        Chroot.run(step)
    }
}

#[test]
fn independent_stages_build_at_the_same_time() {
    require_root!();
    let e = env();
    base(&e);
    let meet = tempfile::Builder::new()
        .prefix("longshore-build-meet-")
        .tempdir()
        .unwrap();
    let df = "FROM base:1 AS a\nRUN echo meet-a\nFROM base:1 AS b\nRUN echo meet-b\nFROM base:1\nCOPY --from=a /bin/sh /a\nCOPY --from=b /bin/sh /b\n";
    let ctx = Context::dir(&e.ctx).unwrap();
    let mut out = Vec::new();
    let runner = Rendezvous {
        dir: meet.path().to_path_buf(),
    };
    let r = build(&e.store, &ctx, &opts(df), &runner, &mut out);
    let out = String::from_utf8_lossy(&out);
    r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(
        out.contains("meet-a\n") && out.contains("meet-b\n"),
        "{out}"
    );
}

/// A one-thread HTTP server: `/old` redirects to `/hello.txt`, which has a Last-Modified.
fn http_server() -> (String, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let mut s = s.unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap() == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let resp = if path == "/old" {
                "HTTP/1.1 301 Moved\r\nLocation: /hello.txt\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            } else {
                "HTTP/1.1 200 OK\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\nhello \r\n6\r\nworld\n\r\n0\r\n\r\n".to_string()
            };
            s.write_all(resp.as_bytes()).unwrap();
        }
    });
    (addr, h)
}

#[test]
fn add_fetches_urls_with_checksum_and_mtime() {
    require_root!();
    let e = env();
    base(&e);
    let (url, server) = http_server();
    let sum = "sha256:a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447";
    let df = format!(
        "FROM base:1\nADD --checksum={sum} {url}/old /dl/\nRUN stat -c '%a %Y' /dl/old && cat /dl/old\n"
    );
    let mut o = opts(&df);
    o.source_date_epoch = Some(2_000_000_000);
    let (r, out) = run(&e, &o);
    r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(out.contains("600 1445412480\nhello world\n"), "{out}");
    // a wrong checksum refuses the download and leaves nothing
    let n = e.store.images().unwrap().len();
    let bad = format!(
        "FROM base:1\nADD --checksum=sha256:{} {url}/hello.txt /x\n",
        "0".repeat(64)
    );
    let mut o = opts(&bad);
    o.tags = vec!["bad:1".into()];
    let (r, _) = run(&e, &o);
    let err = r.unwrap_err().to_string();
    assert_clean_failure(&e, n, &err, "Dockerfile:2: ADD http://");
    assert!(err.contains("digest mismatch"), "{err}");
    // COPY takes no URL
    let (r, _) = run(&e, &opts(&format!("FROM base:1\nCOPY {url}/x /x\n")));
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("source can't be a URL for COPY")
    );
    // let the server finish: it serves exactly 4 connections
    let _ = longshore_build::fetch::http_get(&format!("{url}/hello.txt"));
    server.join().unwrap();
}

#[test]
fn cache_from_limits_the_cache_to_those_images() {
    require_root!();
    let e = env();
    base(&e);
    let df = "FROM base:1\nRUN echo one > /one\nRUN echo two > /two\n";
    let mut o = opts(df);
    o.tags = vec!["cached:1".into()];
    let (r, _) = run(&e, &o);
    let first = r.unwrap();
    // an unrelated image as the only trusted source: nothing is reused
    let mut o = opts(df);
    o.cache_from = vec!["base:1".into()];
    let (r, out) = run(&e, &o);
    let b = r.unwrap();
    assert_eq!((b.cached_steps, b.run_steps), (0, 2), "{out}");
    // the earlier result: every step is reused
    let mut o = opts(df);
    o.cache_from = vec!["cached:1".into()];
    let (r, out) = run(&e, &o);
    let c = r.unwrap();
    assert_eq!((c.cached_steps, c.run_steps), (2, 0), "{out}");
    assert_eq!(c.id, first.id);
    // a --cache-from image that does not exist is an error naming it
    let mut o = opts(df);
    o.cache_from = vec!["nosuch:1".into()];
    let (r, _) = run(&e, &o);
    assert!(r.unwrap_err().to_string().contains("nosuch:1"));
}

/// Hard links made by a RUN stay one file in the layer, and file capabilities survive.
#[test]
fn layers_keep_hard_links_and_file_capabilities() {
    require_root!();
    let e = env();
    base(&e);
    struct Caps;
    impl StepRunner for Caps {
        fn run(&self, step: RunStep<'_>) -> Result<i32, String> {
            let rootfs = step.rootfs.to_path_buf();
            let setcap = step.args.last().is_some_and(|a| a.contains("pinger"));
            let code = Chroot.run(step)?;
            if setcap {
                // what `setcap` inside the container would do, done from the host
                let st = Command::new("setcap")
                    .arg("cap_net_raw+ep")
                    .arg(rootfs.join("bin/pinger"))
                    .status()
                    .map_err(|e| e.to_string())?;
                if !st.success() {
                    return Ok(98);
                }
            }
            Ok(code)
        }
    }
    let df = "FROM base:1\nRUN echo data > /a && ln /a /b && cp /bin/busybox /bin/pinger\n";
    let ctx = Context::dir(&e.ctx).unwrap();
    let mut out = Vec::new();
    let built = build(&e.store, &ctx, &opts(df), &Caps, &mut out)
        .unwrap_or_else(|err| panic!("{err}\n{}", String::from_utf8_lossy(&out)));
    e.store
        .create_container("longshore-build-caps", &built.id.to_string())
        .unwrap();
    let root = e.store.mount_container("longshore-build-caps").unwrap();
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        fs::metadata(root.join("a")).unwrap(),
        fs::metadata(root.join("b")).unwrap(),
    );
    let caps = Command::new("getcap")
        .arg(root.join("bin/pinger"))
        .output()
        .unwrap();
    e.store.unmount_container("longshore-build-caps").unwrap();
    e.store.remove_container("longshore-build-caps").unwrap();
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "the hard link became two files"
    );
    let caps = String::from_utf8_lossy(&caps.stdout);
    assert!(caps.contains("cap_net_raw"), "capabilities lost: {caps:?}");
}

/// The instructions not covered above, each checked in the image config or in a RUN.
#[test]
fn every_remaining_instruction_lands_in_the_config() {
    require_root!();
    let e = env();
    base(&e);
    fs::write(e.ctx.join(".dockerignore"), "rootfs\nDockerfile\n").unwrap();
    fs::write(e.ctx.join("Dockerfile"), "FROM base:1\n").unwrap();
    fs::write(e.ctx.join("kept"), "k").unwrap();
    let df = "ARG GLOBAL=g
FROM base:1
MAINTAINER Sam Alba <sam@docker.com>
ENV BASE=/srv
WORKDIR $BASE
WORKDIR app
RUN pwd
RUN echo \"global=[$GLOBAL]\"
ARG GLOBAL
RUN echo \"global=[$GLOBAL]\"
ARG TARGETOS
RUN echo \"os=$TARGETOS\"
SHELL [\"/bin/sh\", \"-ec\"]
RUN echo shell=$0
USER user
RUN id -u
USER root
COPY . /ctx/
RUN ls /ctx
VOLUME /data [\"/logs\"]
VOLUME [\"/a\", \"/b\"]
STOPSIGNAL SIGKILL
HEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD wget -q localhost || exit 1
ENTRYPOINT exec top -b
LABEL version=\"1.0\" description=\"a b\"
";
    let (r, out) = run(&e, &opts(df));
    let b = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(out.contains("/srv/app\n"), "{out}");
    // a global ARG is not visible in a stage until the stage declares it
    assert!(
        out.contains("global=[]\n") && out.contains("global=[g]\n"),
        "{out}"
    );
    assert!(out.contains("shell=/bin/sh\n"), "{out}");
    assert!(out.contains("os=linux\n"), "{out}");
    assert!(out.contains("1000\n"), "{out}");
    // the Dockerfile is read though .dockerignore lists it, and COPY leaves it out
    assert!(
        out.contains("kept\n") && !out.contains("Dockerfile\n"),
        "{out}"
    );
    let cfg = config(&e.store, &b.id.to_string());
    let c = &cfg["config"];
    assert_eq!(cfg["author"], "Sam Alba <sam@docker.com>");
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["User"], "root");
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    // the shell form expands words like the shell: quotes go
    for v in ["/data", "[/logs]", "/a", "/b"] {
        assert!(c["Volumes"][v].is_object(), "{v}: {c}");
    }
    assert_eq!(c["StopSignal"], "SIGKILL");
    assert_eq!(
        c["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "wget -q localhost || exit 1"], "Interval": 5_000_000_000u64, "Timeout": 3_000_000_000u64, "Retries": 2})
    );
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/bin/sh", "-ec", "exec top -b"])
    );
    assert_eq!(c["Labels"]["description"], "a b");
    let hist = e.store.history(&b.id.to_string()).unwrap();
    assert!(
        hist.iter()
            .any(|h| h.created_by == "/bin/sh -c #(nop)  STOPSIGNAL SIGKILL")
    );
    assert!(
        hist.iter()
            .any(|h| h.created_by == "/bin/sh -c #(nop)  MAINTAINER Sam Alba <sam@docker.com>")
    );
}

#[test]
fn run_mounts_cache_bind_and_tmpfs() {
    require_root!();
    let e = env();
    base(&e);
    fs::create_dir_all(e.ctx.join("data")).unwrap();
    fs::write(e.ctx.join("data/f"), "bound\n").unwrap();
    let df = "FROM base:1 AS tools
RUN echo tool > /tool
FROM base:1
RUN --mount=type=cache,target=/cache echo $(( $(cat /cache/n 2>/dev/null || echo 0) + 1 )) > /cache/n && echo count=$(cat /cache/n)
RUN --mount=type=bind,source=data,target=/mnt cat /mnt/f && ! touch /mnt/x 2>/dev/null && echo read-only
RUN --mount=type=bind,from=tools,source=/tool,target=/t cat /t
RUN --mount=type=tmpfs,target=/scratch touch /scratch/y && ls /scratch
";
    let (r, out) = run(&e, &opts(df));
    let b = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(out.contains("count=1\n"), "{out}");
    assert!(out.contains("bound\nread-only\n"), "{out}");
    assert!(out.contains("tool\n") && out.contains("\ny\n"), "{out}");
    // the mount points and what was written into the mounts are not in the image
    e.store
        .create_container("longshore-build-mnt", &b.id.to_string())
        .unwrap();
    let root = e.store.mount_container("longshore-build-mnt").unwrap();
    let present: Vec<&str> = ["cache", "mnt", "t", "scratch"]
        .into_iter()
        .filter(|p| root.join(p).symlink_metadata().is_ok())
        .collect();
    e.store.unmount_container("longshore-build-mnt").unwrap();
    e.store.remove_container("longshore-build-mnt").unwrap();
    assert!(
        present.is_empty(),
        "mount points left in the image: {present:?}"
    );
    assert!(!e.ctx.join("data/x").exists());

    // the cache mount keeps its content across builds; a changed bind source reruns its step
    fs::write(e.ctx.join("data/f"), "changed\n").unwrap();
    let mut o = opts(df);
    o.no_cache = false;
    let (r, out) = run(&e, &o);
    let b2 = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(out.contains("changed\nread-only\n"), "{out}");
    assert!(
        !out.contains("count=1\n") && !out.contains("count=2\n"),
        "the cache-mount step should come from the cache:\n{out}"
    );
    // the bind's content is not in the image: the rerun step makes the same layer
    assert_eq!(b2.id, b.id);
    let mut o = opts(df);
    o.no_cache = true;
    let (r, out) = run(&e, &o);
    r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(out.contains("count=2\n"), "{out}");
    let (r, _) = run(&e, &opts("FROM base:1\nRUN --mount=type=ssh true\n"));
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("type=ssh is not supported")
    );
}

#[test]
fn copy_exclude_and_parents() {
    require_root!();
    let e = env();
    base(&e);
    for f in [
        "src/a/one.rs",
        "src/a/one.txt",
        "src/b/two.rs",
        "top.txt",
        "top.rs",
    ] {
        let p = e.ctx.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, f).unwrap();
    }
    let df = "FROM base:1
COPY --exclude=**/*.txt src /x/
COPY --exclude=*.txt top.txt top.rs /y/
COPY --parents src/a/one.rs src/b /z/
RUN find /x /y /z | sort
";
    let (r, out) = run(&e, &opts(df));
    r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    let listed: Vec<&str> = out.lines().filter(|l| l.starts_with('/')).collect();
    assert_eq!(
        listed,
        [
            "/x",
            "/x/a",
            "/x/a/one.rs",
            "/x/b",
            "/x/b/two.rs",
            "/y",
            "/y/top.rs",
            "/z",
            "/z/src",
            "/z/src/a",
            "/z/src/a/one.rs",
            "/z/src/b",
            "/z/src/b/two.rs"
        ],
        "{out}"
    );
}

#[test]
fn terminal_mode_styles_the_same_lines() {
    require_root!();
    let e = env();
    base(&e);
    let df = "FROM base:1\nRUN echo out\n";
    let (r, plain) = run(&e, &opts(df));
    r.unwrap();
    assert!(!plain.contains('\x1b'), "{plain:?}");
    let mut o = opts(df);
    o.terminal = true;
    o.no_cache = true;
    let (r, tty) = run(&e, &o);
    r.unwrap();
    assert!(
        tty.contains("\x1b[1mStep 2/2 : RUN echo out\x1b[0m\n"),
        "{tty:?}"
    );
    assert!(tty.contains("\x1b[2mout\n\x1b[0m"), "{tty:?}");
    assert!(tty.contains("\x1b[1;32mSuccessfully built "), "{tty:?}");
}

/// `COPY --link` makes its layer without the parent: the same layer (diff ID) on any base,
/// made once and reused when the base changes.
#[test]
fn copy_link_layers_do_not_depend_on_the_base() {
    require_root!();
    let e = env();
    base(&e);
    fs::create_dir_all(e.ctx.join("data")).unwrap();
    fs::write(e.ctx.join("data/f"), "linked\n").unwrap();
    let mut o = opts("FROM base:1\nRUN mkdir -m 700 /data && echo base2 > /marker\n");
    o.tags = vec!["base:2".into()];
    let (r, _) = run(&e, &o);
    r.unwrap();
    let df = |b: &str| {
        format!(
            "FROM {b}\nCOPY --link --chown=1000:1000 data /data/\nRUN stat -c '%u %a' /data && cat /data/f\n"
        )
    };
    let (r, out1) = run(&e, &opts(&df("base:1")));
    let one = r.unwrap_or_else(|err| panic!("{err}\n{out1}"));
    let (r, out2) = run(&e, &opts(&df("base:2")));
    let two = r.unwrap_or_else(|err| panic!("{err}\n{out2}"));
    assert!(
        out1.contains("1000 755\nlinked\n") && out2.contains("1000 755\nlinked\n"),
        "{out1}\n{out2}"
    );
    let layer = |id: &longshore_graph::Digest| {
        let d = e.store.image(&id.to_string()).unwrap().diff_ids;
        d[d.len() - 2].clone()
    };
    assert_eq!(
        layer(&one.id),
        layer(&two.id),
        "the --link layer differs between bases"
    );
    let links = fs::read_dir(e.store.root().join("build-cache"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("link-")
        })
        .count();
    assert_eq!(links, 1);
    // without --link the copy lands on the parent's /data (mode 700 on base:2)
    let (r, out) = run(
        &e,
        &opts("FROM base:2\nCOPY data /data/\nRUN stat -c '%a' /data\n"),
    );
    r.unwrap();
    assert!(out.contains("\n700\n"), "{out}");
}

/// `--rm=false` keeps the intermediate containers (Docker's flag); by default none is left.
#[test]
fn rm_false_keeps_intermediate_containers() {
    require_root!();
    let e = env();
    base(&e);
    let mut o = opts("FROM base:1\nRUN echo kept > /k\n");
    o.rm = false;
    let (r, out) = run(&e, &o);
    r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(!out.contains("Removing intermediate container"), "{out}");
    let short = out
        .lines()
        .find_map(|l| l.strip_prefix(" ---> Running in "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let id = format!("longshore-build-{short}");
    let root = e
        .store
        .mount_container(&id)
        .expect("the intermediate container was removed");
    assert_eq!(fs::read_to_string(root.join("k")).unwrap(), "kept\n");
    e.store.unmount_container(&id).unwrap();
    e.store.remove_container(&id).unwrap();
    assert!(leftover_containers(&e.store).is_empty());
}

#[test]
fn secrets_are_shown_to_run_and_kept_out_of_the_image_and_the_key() {
    require_root!();
    let e = env();
    base(&e);
    let dir = tempfile::Builder::new()
        .prefix("longshore-build-secret-")
        .tempdir()
        .unwrap();
    fs::write(dir.path().join("token"), "s3cr3t\n").unwrap();
    let df =
        "FROM base:1\nRUN --mount=type=secret,id=token cat /run/secrets/token && touch /made\n";
    let mut o = opts(df);
    o.secrets.insert("token".into(), dir.path().join("token"));
    let (r, out) = run(&e, &o);
    let b = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert!(out.contains("s3cr3t\n"), "{out}");
    e.store
        .create_container("longshore-build-sec", &b.id.to_string())
        .unwrap();
    let root = e.store.mount_container("longshore-build-sec").unwrap();
    let leaked = root.join("run/secrets").exists();
    let made = root.join("made").exists();
    e.store.unmount_container("longshore-build-sec").unwrap();
    e.store.remove_container("longshore-build-sec").unwrap();
    assert!(
        made && !leaked,
        "made {made}, /run/secrets in the image: {leaked}"
    );
    let cfg = String::from_utf8(e.store.config(&b.id.to_string()).unwrap()).unwrap();
    assert!(!cfg.contains("s3cr3t"));
    // another secret value reuses the step: the content is not part of the key
    fs::write(dir.path().join("token"), "other\n").unwrap();
    let (r, out) = run(&e, &o);
    assert_eq!(r.unwrap().cached_steps, 1, "{out}");
    // a required secret that is not given is an error; an optional one is skipped
    let (r, _) = run(
        &e,
        &opts("FROM base:1\nRUN --mount=type=secret,id=nope,required true\n"),
    );
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("secret nope is required")
    );
    let (r, out) = run(
        &e,
        &opts("FROM base:1\nRUN --mount=type=secret,id=nope test ! -e /run/secrets/nope\n"),
    );
    r.unwrap_or_else(|err| panic!("{err}\n{out}"));
}

/// The file-digest memo that spares reading unchanged context files never hides a change:
/// same size and the old mtime put back still invalidate the COPY (the ctime moved).
#[test]
fn a_changed_file_with_its_old_size_and_mtime_still_misses_the_cache() {
    require_root!();
    let e = env();
    base(&e);
    let f = e.ctx.join("same.txt");
    fs::write(&f, "aaaa\n").unwrap();
    let mtime = fs::metadata(&f).unwrap().modified().unwrap();
    let df = "FROM base:1\nCOPY same.txt /s\nRUN cat /s\n";
    let (r, _) = run(&e, &opts(df));
    r.unwrap();
    let (r, _) = run(&e, &opts(df));
    assert_eq!(r.unwrap().cached_steps, 2);
    fs::write(&f, "bbbb\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (r, out) = run(&e, &opts(df));
    let b = r.unwrap();
    assert_eq!(b.cached_steps, 0, "{out}");
    assert!(out.contains("bbbb\n"), "{out}");
}

#[test]
fn workdir_makes_a_layer_only_when_the_directory_is_missing() {
    require_root!();
    let e = env();
    base(&e);
    let (r, out) = run(&e, &opts("FROM base:1\nWORKDIR /tmp\nWORKDIR /srv/new\n"));
    let b = r.unwrap_or_else(|err| panic!("{err}\n{out}"));
    let base_layers = e.store.image("base:1").unwrap().diff_ids.len();
    assert_eq!(
        e.store.image(&b.id.to_string()).unwrap().diff_ids.len(),
        base_layers + 1
    );
    e.store
        .create_container("longshore-build-wd", &b.id.to_string())
        .unwrap();
    let root = e.store.mount_container("longshore-build-wd").unwrap();
    let made = root.join("srv/new").is_dir();
    e.store.unmount_container("longshore-build-wd").unwrap();
    e.store.remove_container("longshore-build-wd").unwrap();
    assert!(made);
}

/// A runner that mounts `/etc/hosts` and `/proc` the way a container runtime does: it
/// makes their stubs in the step's root filesystem first.
struct Stubs;

impl StepRunner for Stubs {
    fn run(&self, step: RunStep<'_>) -> Result<i32, String> {
        let etc = step.rootfs.join("etc");
        fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
        if !etc.join("hosts").exists() {
            fs::write(etc.join("hosts"), "").map_err(|e| e.to_string())?;
        }
        fs::create_dir_all(step.rootfs.join("proc/sys")).map_err(|e| e.to_string())?;
        Chroot.run(step)
    }

    fn mount_points(&self) -> Vec<String> {
        vec!["/etc/hosts".into(), "/proc".into()]
    }
}

#[test]
fn the_runners_mount_stubs_stay_out_of_run_layers() {
    require_root!();
    let e = env();
    base(&e);
    let mut o = opts("FROM base:1\nRUN echo hi > /greeting\n");
    o.tags = vec!["stubs:1".into()];
    let ctx = Context::dir(&e.ctx).unwrap();
    let mut out: Vec<u8> = Vec::new();
    build(&e.store, &ctx, &o, &Stubs, &mut out)
        .unwrap_or_else(|err| panic!("{err}\n{}", String::from_utf8_lossy(&out)));
    let top = config(&e.store, "stubs:1")["rootfs"]["diff_ids"]
        .as_array()
        .and_then(|l| l.last().cloned())
        .and_then(|d| d.as_str().map(String::from))
        .unwrap();
    let mut saved = Vec::new();
    e.store
        .save(
            &["stubs:1"],
            longshore_graph::ArchiveFormat::Docker,
            &mut saved,
        )
        .unwrap();
    let names = longshore_test_support::archive_layer_names(&saved, &top);
    assert!(names.iter().any(|n| n.ends_with("greeting")), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.contains("etc") || n.contains("proc")),
        "{names:?}"
    );
}
