//! `POST /build` driven by the real docker CLI (`/usr/local/bin/docker`, its legacy
//! builder: `DOCKER_BUILDKIT=0`) against `longshore daemon` on a private data root (the
//! test daemon of `common/daemon.rs`), and by raw HTTP for what the CLI never sends (a hostile
//! context tar). RUN steps run in real containers; the built images are run with
//! `docker run --network none`. Everything is removed by Drop guards.
//!
//! A custom harness (`harness = false`): the test binary is also the daemon and the
//! containers' monitor program, so `main` calls `run_if_monitor` first.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use longshore_test_support::unique_name;

mod common;
use common::daemon::*;

/// What the build tests add to the shared test daemon.
trait BuildDaemon {
    fn post(&self, path: &str, body: &[u8]) -> (u16, String);
    fn context(&self, files: &[(&str, &str)]) -> PathBuf;
    fn images(&self) -> Vec<String>;
}

impl BuildDaemon for Daemon {
    /// A raw `POST` of a tar; the status and the body.
    fn post(&self, path: &str, body: &[u8]) -> (u16, String) {
        http_bytes(&self.sock, "POST", path, "application/x-tar", body, 120)
    }

    /// A fresh context directory with these files.
    fn context(&self, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.path().join(unique_name("ctx"));
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    fn images(&self) -> Vec<String> {
        let out = ok(&self.docker(&[
            "images",
            "-a",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ]));
        out.lines().map(String::from).collect()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Tags, build args, labels, .dockerignore, RUN in a container, Docker's step lines; the
/// image runs; a rebuild takes every step from the cache, `-q` prints only the ID.
fn build_tag_run_and_rebuild_from_the_cache(d: &mut Daemon) {
    let ctx = d.context(&[
        (
            "Dockerfile",
            "FROM busybox\nARG WHO=nobody\nENV GREETING=hello\nWORKDIR /app\nCOPY . .\nRUN echo \"$GREETING $WHO\" > out.txt && ls /app > list.txt\nLABEL stage=test\nCMD [\"cat\", \"/app/out.txt\"]\n",
        ),
        ("f.txt", "a file\n"),
        ("secret.txt", "left out\n"),
        (".dockerignore", "secret.txt\n"),
    ]);
    let out = ok(&d.docker(&[
        "build",
        "-t",
        "lsapib-one:1",
        "-t",
        "lsapib-two",
        "--build-arg",
        "WHO=api",
        "--label",
        "from=cli",
        path(&ctx),
    ]));
    for want in [
        "Sending build context to Docker daemon",
        "Step 1/8 : FROM busybox",
        "Step 6/8 : RUN echo",
        " ---> Running in ",
        "Removing intermediate container",
        "Successfully built ",
        "Successfully tagged lsapib-one:1",
        "Successfully tagged lsapib-two:latest",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    let imgs = d.images();
    let id_of = |t: &str| {
        imgs.iter()
            .find(|l| l.starts_with(&format!("{t} ")))
            .unwrap_or_else(|| panic!("{t} not in {imgs:?}"))
            .split(' ')
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(id_of("lsapib-one:1"), id_of("lsapib-two:latest"));
    let labels = ok(&d.docker(&[
        "inspect",
        "-f",
        "{{.Config.Labels.stage}} {{.Config.Labels.from}} {{.Config.WorkingDir}}",
        "lsapib-one:1",
    ]));
    assert_eq!(labels.trim(), "test cli /app");
    let ran = ok(&d.docker(&["run", "--rm", "--network", "none", "lsapib-one:1"]));
    assert_eq!(ran, "hello api\n");
    let list = ok(&d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "lsapib-one:1",
        "cat",
        "/app/list.txt",
    ]));
    assert!(
        list.contains("f.txt") && !list.contains("secret.txt"),
        "{list}"
    );
    // the same build again: every step from the cache
    let again = ok(&d.docker(&[
        "build",
        "-t",
        "lsapib-one:1",
        "--build-arg",
        "WHO=api",
        "--label",
        "from=cli",
        path(&ctx),
    ]));
    assert!(!again.contains("Running in"), "{again}");
    assert_eq!(again.matches("Using cache").count(), 6, "{again}");
    // -q: the image ID only, the one inspect gives
    let q = ok(&d.docker(&[
        "build",
        "-q",
        "--build-arg",
        "WHO=api",
        "--label",
        "from=cli",
        path(&ctx),
    ]));
    let id = ok(&d.docker(&["inspect", "-f", "{{.Id}}", "lsapib-one:1"]));
    assert_eq!(q.trim(), id.trim());
    // --cache-from (the API's cachefrom): the chain of that image is the cache
    let from = ok(&d.docker(&[
        "build",
        "--cache-from",
        "lsapib-one:1",
        "--build-arg",
        "WHO=api",
        "--label",
        "from=cli",
        path(&ctx),
    ]));
    assert_eq!(from.matches("Using cache").count(), 6, "{from}");
    let none = ok(&d.docker(&[
        "build",
        "--cache-from",
        "busybox",
        "--build-arg",
        "WHO=api",
        path(&ctx),
    ]));
    assert!(
        !none.contains("Using cache") && none.contains("Running in"),
        "{none}"
    );
    // another build arg misses the cache from the step that uses it
    let other = ok(&d.docker(&["build", "--build-arg", "WHO=else", path(&ctx)]));
    assert!(other.contains("Running in"), "{other}");
    assert!(ok(&d.docker(&["ps", "-aq"])).trim().is_empty());
}

/// A RUN that fails: `docker build` exits with the command's code and names the step;
/// no tag, no container is left.
fn failing_run_gives_its_code_and_leaves_nothing(d: &mut Daemon) {
    let ctx = d.context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo partial > /p\nRUN echo before && exit 3\n",
    )]);
    let before = d.images().len();
    let o = d.docker(&["build", "-t", "lsapib-bad:1", path(&ctx)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("before\n"), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains(
            "step 3/3 : RUN echo before && exit 3: the command returned a non-zero code: 3"
        ),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(d.images().len(), before, "{:?}", d.images());
    assert!(ok(&d.docker(&["ps", "-aq"])).trim().is_empty());
    // a malformed Dockerfile: exit 1 with the line named
    let ctx = d.context(&[("Dockerfile", "FROM busybox\nFORM x\n")]);
    let o = d.docker(&["build", path(&ctx)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("Dockerfile:2: unknown instruction: FORM"),
        "{}",
        text(&o.stderr)
    );
    // another platform is refused before anything is built
    let ctx = d.context(&[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let other = if std::env::consts::ARCH == "aarch64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let o = d.docker(&["build", "--platform", other, path(&ctx)]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains(&format!("platform \"{other}\" is not supported")),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(d.images().len(), before);
}

/// `-f` outside the context, `--target`, `--no-cache`, a Dockerfile on stdin.
fn file_target_nocache_and_stdin(d: &mut Daemon) {
    let ctx = d.context(&[("a.txt", "A\n")]);
    let df = d.dir.path().join(unique_name("df"));
    std::fs::write(
        &df,
        "FROM busybox AS one\nCOPY a.txt /a\nRUN cat /a > /b\nFROM busybox AS unused\nRUN exit 9\nFROM busybox AS two\nCOPY --from=one /b /c\nCMD [\"cat\", \"/c\"]\n",
    )
    .unwrap();
    let out = ok(&d.docker(&[
        "build",
        "-f",
        path(&df),
        "-t",
        "lsapib-target",
        "--target",
        "two",
        path(&ctx),
    ]));
    assert!(!out.contains("exit 9"), "the unused stage ran:\n{out}");
    let ran = ok(&d.docker(&["run", "--rm", "--network", "none", "lsapib-target"]));
    assert_eq!(ran, "A\n");
    let nc = ok(&d.docker(&[
        "build",
        "--no-cache",
        "-f",
        path(&df),
        "--target",
        "one",
        path(&ctx),
    ]));
    assert!(
        !nc.contains("Using cache") && nc.contains("Running in"),
        "{nc}"
    );
    // a Dockerfile on stdin: no context files
    let o = d.docker_in(
        &["build", "-t", "lsapib-stdin", "-"],
        Some(b"FROM busybox\nRUN echo from-stdin > /s\nCMD [\"cat\", \"/s\"]\n"),
    );
    ok(&o);
    let ran = ok(&d.docker(&["run", "--rm", "--network", "none", "lsapib-stdin"]));
    assert_eq!(ran, "from-stdin\n");
}

/// What the CLI never sends: a context tar with a `../` entry, invalid JSON in a
/// parameter, the BuildKit version. Each is refused with a message, nothing is made, and
/// nothing is written outside the context.
fn hostile_context_and_bad_parameters(d: &mut Daemon) {
    let before = d.images().len();
    let escape = format!("lsapib-escape-{}", std::process::id());
    let mut h = tar::Header::new_gnu();
    let data = b"FROM busybox\n";
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h.clone(), "Dockerfile", &data[..])
        .unwrap();
    // the tar crate refuses to write `..` names; write the name into the header directly
    let name = format!("../../../../../../tmp/{escape}");
    let mut h2 = tar::Header::new_old();
    h2.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h2.set_size(3);
    h2.set_mode(0o644);
    h2.set_entry_type(tar::EntryType::Regular);
    h2.set_cksum();
    b.append(&h2, &b"bad"[..]).unwrap();
    let body = b.into_inner().unwrap();
    let (code, answer) = d.post("/v1.45/build?t=lsapib-hostile", &body);
    assert_eq!(code, 200, "{answer}");
    assert!(
        answer.contains("\"errorDetail\"") && answer.contains(".."),
        "{answer}"
    );
    assert!(
        !Path::new("/tmp").join(&escape).exists(),
        "the tar wrote outside"
    );
    let (code, answer) = d.post("/v1.45/build?buildargs=%7Bnot", b"");
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("invalid value for buildargs"), "{answer}");
    let (code, answer) = d.post("/v1.45/build?version=2", b"");
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("DOCKER_BUILDKIT=0"), "{answer}");
    // a body that is not a tar
    let (code, answer) = d.post("/v1.45/build?t=lsapib-garbage", b"this is not a tar at all");
    assert_eq!(code, 200);
    assert!(answer.contains("\"errorDetail\""), "{answer}");
    assert_eq!(d.images().len(), before, "{:?}", d.images());
    assert!(ok(&d.docker(&["ps", "-aq"])).trim().is_empty());
}

type Test = (&'static str, fn(&mut Daemon));

fn main() -> ExitCode {
    let tests: Vec<Test> = vec![
        (
            "build_tag_run_and_rebuild_from_the_cache",
            build_tag_run_and_rebuild_from_the_cache,
        ),
        (
            "failing_run_gives_its_code_and_leaves_nothing",
            failing_run_gives_its_code_and_leaves_nothing,
        ),
        (
            "file_target_nocache_and_stdin",
            file_target_nocache_and_stdin,
        ),
        (
            "hostile_context_and_bad_parameters",
            hostile_context_and_bad_parameters,
        ),
    ];
    harness("api_build", true, Daemon::start, &tests, |t, d| t(d))
}
