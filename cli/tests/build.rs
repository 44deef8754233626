//! `longshore build` as a user runs it, as root: RUN steps in real containers (the
//! engine's build job), on a busybox image imported from Debian's busybox-static into a
//! private data root per test. Each instruction and option of issue 13 that the
//! library's own tests (a chroot step runner) cover is built here once more end to end,
//! with the seed's chapter 7 examples adapted to busybox.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use longshore_test_support::{require_root, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_longshore");

struct Env {
    root: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let root = tempfile::Builder::new()
            .prefix("longshore-clibuild-")
            .tempdir()
            .unwrap();
        let env = Env { root };
        let rootfs = env.data().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        longshore_test_support::busybox_rootfs(&rootfs).unwrap();
        let tar = env.data().join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        env.ok(&[
            "import",
            "-c",
            "CMD [\"sh\"]",
            tar.to_str().unwrap(),
            "busybox:latest",
        ]);
        std::fs::remove_dir_all(&rootfs).unwrap();
        env
    }

    fn data(&self) -> &Path {
        self.root.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("LONGSHORE_ROOT", self.data().join("root"))
            .env_remove("LONGSHORE_HOST")
            .env_remove("SOURCE_DATE_EPOCH");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({:?}): {}{}",
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// A context directory (fresh) with these files.
    fn context(&self, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.data().join(unique_name("ctx"));
        std::fs::create_dir(&dir).unwrap();
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    fn build(&self, ctx: &Path, extra: &[&str]) -> String {
        let mut args = vec!["build"];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        self.ok(&args)
    }

    /// `docker run --rm --network none IMAGE CMD...`'s stdout.
    fn output_of(&self, image: &str, cmd: &[&str]) -> String {
        let mut args = vec!["run", "--rm", "--network", "none", image];
        args.extend_from_slice(cmd);
        self.ok(&args)
    }

    fn config(&self, image: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", "--type", "image", image]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["Config"].clone()
    }

    fn image_id(&self, image: &str) -> String {
        self.ok(&["images", "-q", "--no-trunc", image])
            .trim()
            .to_string()
    }

    fn image_count(&self) -> usize {
        self.ok(&["images", "-a", "-q"]).lines().count()
    }

    fn no_containers(&self) {
        assert_eq!(self.ok(&["ps", "-aq"]), "", "a build left a container");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = stdout(&self.run(&["ps", "-aq", "--no-trunc"]));
        for id in ids.lines() {
            let _ = self.run(&["rm", "-f", "-v", id]);
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The seed's 7.3 example (docker-registry's Dockerfile) on busybox: the apt-get and pip
/// steps become echo/ls, everything else is as printed.
#[test]
fn the_seeds_docker_registry_dockerfile_builds() {
    require_root!();
    let env = Env::new();
    let ctx = env.context(&[
        ("config/boto.cfg", "[Boto]\n"),
        ("config/config_sample.yml", "dev:\n"),
        ("depends/docker-registry-core/setup.py", "# core\n"),
        ("contrib/boto_header_patch.diff", "--- a\n+++ b\n"),
        (
            "Dockerfile",
            "# VERSION 0.1
# DOCKER-VERSION 0.7.3
# AUTHOR:      Sam Alba <sam@docker.com>
# DESCRIPTION:  Image with docker-registry project and dependencies
# TO_BUILD:    docker build -rm -t registry .
# TO_RUN:      docker run -p 5000:5000 registry

# Latest Ubuntu LTS
FROM busybox

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

# Install registry
RUN echo pip install file:///docker-registry#egg=docker-registry[bugsnag,newrelic,cors]

RUN wc -l \\
    $(echo /docker-registry/contrib)/boto_header_patch.diff \\
    < /docker-registry/contrib/boto_header_patch.diff

ENV DOCKER_REGISTRY_CONFIG /docker-registry/config/config_sample.yml
ENV SETTINGS_FLAVOR dev

EXPOSE 5000

CMD [\"docker-registry\"]
",
        ),
    ]);
    let out = env.build(&ctx, &["--rm", "-t", "registry"]);
    assert!(
        out.starts_with("Sending build context to Docker daemon  "),
        "{out}"
    );
    for want in [
        "Step 1/11 : FROM busybox",
        "apt-get install -y swig python-pip python-dev libssl-dev liblzma-dev libevent1-dev\n",
        "setup.py\n",
        "pip install file:///docker-registry#egg=docker-registry[bugsnag,newrelic,cors]\n",
        "2 /docker-registry/contrib/boto_header_patch.diff\n",
        "Step 11/11 : CMD [\"docker-registry\"]",
        "Successfully tagged registry:latest",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let cfg = env.config("registry");
    let envs = cfg["Env"].as_array().unwrap();
    assert!(
        envs.iter()
            .any(|v| v == "DOCKER_REGISTRY_CONFIG=/docker-registry/config/config_sample.yml"),
        "{cfg}"
    );
    assert!(envs.iter().any(|v| v == "SETTINGS_FLAVOR=dev"), "{cfg}");
    assert!(cfg["ExposedPorts"]["5000/tcp"].is_object(), "{cfg}");
    assert_eq!(cfg["Cmd"], serde_json::json!(["docker-registry"]));
    assert_eq!(
        env.output_of("registry", &["cat", "/etc/boto.cfg"]),
        "[Boto]\n"
    );
    env.no_containers();
}

/// The seed's 7.2 cache examples: an identical rebuild (other tag) reuses every step and
/// gives the same image; a changed ADD source reruns that step and all after it while
/// the RUN before stays cached; `--no-cache` reruns everything; .dockerignore keeps a big
/// file out of the context.
#[test]
fn the_seeds_cache_examples_behave_as_shown() {
    require_root!();
    let env = Env::new();
    let ctx = env.context(&[(
        "Dockerfile",
        "FROM busybox\nENV MYNAME Allen Ren\nRUN echo $MYNAME\n",
    )]);
    let first = env.build(&ctx, &["-t", "kulong0106"]);
    assert!(
        first.contains("Allen Ren\n") && first.contains("Running in"),
        "{first}"
    );
    let second = env.build(&ctx, &["-t", "kulong0107"]);
    assert_eq!(second.matches(" ---> Using cache").count(), 2, "{second}");
    assert!(!second.contains("Running in"), "{second}");
    assert_eq!(env.image_id("kulong0106"), env.image_id("kulong0107"));

    let ctx = env.context(&[
        (
            "Dockerfile",
            "FROM busybox\n\nRUN echo hello\nADD ./test.txt /home/renyl/\nRUN echo welcome\n",
        ),
        ("test.txt", "hello world\n"),
        ("unuseful.txt", &"x".repeat(4 << 20)),
        (".dockerignore", "unuseful.txt\n"),
    ]);
    let a = env.build(&ctx, &["-t", "kulong0106"]);
    assert!(a.contains("hello\n") && a.contains("welcome\n"), "{a}");
    std::fs::write(ctx.join("test.txt"), "hello\n").unwrap();
    let b = env.build(&ctx, &["-t", "kulong0107"]);
    let step = |out: &str, n: usize| -> String {
        let start = out.find(&format!("Step {n}/4")).unwrap();
        let rest = &out[start..];
        let end = rest[1..].find("Step ").map(|i| i + 1).unwrap_or(rest.len());
        rest[..end].to_string()
    };
    assert!(step(&b, 2).contains("Using cache"), "{b}");
    assert!(!step(&b, 3).contains("Using cache"), "{b}");
    assert!(
        step(&b, 4).contains("Running in") && step(&b, 4).contains("welcome\n"),
        "{b}"
    );
    assert_ne!(env.image_id("kulong0106"), env.image_id("kulong0107"));
    assert_eq!(
        env.output_of("kulong0107", &["cat", "/home/renyl/test.txt"]),
        "hello\n"
    );
    assert!(
        !env.output_of("kulong0107", &["ls", "/"])
            .contains("unuseful"),
        "the ignored file reached the image"
    );
    let nc = env.build(&ctx, &["--no-cache", "-t", "kulong0108"]);
    assert!(!nc.contains("Using cache"), "{nc}");
    env.no_containers();
}

/// ONBUILD triggers run in a child build (and are not inherited further); HEALTHCHECK,
/// STOPSIGNAL, SHELL, USER (in the child), VOLUME, ENTRYPOINT, EXPOSE, LABEL, MAINTAINER land in the
/// config; SHELL changes how later RUNs run.
#[test]
fn onbuild_triggers_and_the_config_instructions() {
    require_root!();
    let env = Env::new();
    let parent = env.context(&[(
        "Dockerfile",
        "FROM busybox
MAINTAINER someone <a@b.c>
ONBUILD COPY trig.txt /trig.txt
ONBUILD RUN echo triggered > /ran
HEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD wget -q localhost || exit 1
STOPSIGNAL SIGUSR1
SHELL [\"/bin/sh\", \"-ec\"]
RUN echo \"shell flags: $-\"
LABEL a=1 b=\"two words\"
EXPOSE 80 53/udp
VOLUME /data
ENTRYPOINT [\"/bin/echo\"]
",
    )]);
    let out = env.build(&parent, &["-t", "parent:1"]);
    let flags = out
        .lines()
        .find_map(|l| l.strip_prefix("shell flags: "))
        .unwrap_or_else(|| panic!("no RUN output:\n{out}"));
    assert!(flags.contains('e'), "SHELL was not used:\n{out}");
    let cfg = env.config("parent:1");
    assert_eq!(
        cfg["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "wget -q localhost || exit 1"], "Interval": 5_000_000_000u64, "Timeout": 3_000_000_000u64, "Retries": 2}),
        "{cfg}"
    );
    assert_eq!(cfg["StopSignal"], "SIGUSR1");
    assert_eq!(cfg["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(
        cfg["OnBuild"],
        serde_json::json!(["COPY trig.txt /trig.txt", "RUN echo triggered > /ran"])
    );
    assert!(cfg["Volumes"]["/data"].is_object(), "{cfg}");
    assert!(cfg["ExposedPorts"]["53/udp"].is_object(), "{cfg}");
    assert_eq!(cfg["Labels"]["b"], "two words");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/echo"]));
    let author = env.ok(&[
        "inspect",
        "--type",
        "image",
        "-f",
        "{{.Author}}",
        "parent:1",
    ]);
    assert_eq!(author.trim(), "someone <a@b.c>");

    let child = env.context(&[
        ("trig.txt", "from the child's context\n"),
        (
            "Dockerfile",
            "FROM parent:1\nRUN cat /trig.txt /ran\nUSER 1000:1000\nRUN echo \"uid $(id -u)\"\n",
        ),
    ]);
    let out = env.build(&child, &["-t", "child:1"]);
    assert!(out.contains("# Executing 2 build triggers"), "{out}");
    assert!(
        out.contains("from the child's context\ntriggered\n"),
        "{out}"
    );
    assert!(out.contains("uid 1000\n"), "{out}");
    let cfg = env.config("child:1");
    assert_eq!(cfg["User"], "1000:1000");
    assert!(
        cfg["OnBuild"].is_null() || cfg["OnBuild"] == serde_json::json!([]),
        "triggers were inherited: {cfg}"
    );
    // the grandchild runs no trigger
    let grand = env.context(&[("Dockerfile", "FROM child:1\nRUN true\n")]);
    let out = env.build(&grand, &[]);
    assert!(!out.contains("Executing"), "{out}");
    env.no_containers();
}

/// COPY --chown (names from the image's passwd and group) / --chmod / --link, heredocs in
/// COPY and RUN, WORKDIR relative with a variable; checked inside a container.
#[test]
fn copy_flags_and_heredocs() {
    require_root!();
    let env = Env::new();
    let ctx = env.context(&[
        ("f", "file\n"),
        ("dir/a", "A\n"),
        ("dir/sub/b", "B\n"),
        (
            "Dockerfile",
            "FROM busybox
RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd && echo 'appg:x:2345:' >> /etc/group
ENV BASE=/srv
WORKDIR $BASE
WORKDIR sub
COPY --chown=app:appg --chmod=0750 f ./f
COPY --link --chown=7:8 dir /linked/
COPY <<'EOF' /opt/script.sh
echo from heredoc in $(pwd)
EOF
RUN <<EOT
set -e
sh /opt/script.sh > /opt/out
stat -c '%u:%g %a' f >> /opt/out
stat -c '%u:%g' /linked/a /linked/sub/b >> /opt/out
EOT
",
        ),
    ]);
    env.build(&ctx, &["-t", "copies"]);
    assert_eq!(
        env.output_of("copies", &["cat", "/opt/out"]),
        "from heredoc in /srv/sub\n1234:2345 750\n7:8\n7:8\n"
    );
    assert_eq!(env.output_of("copies", &["cat", "/linked/sub/b"]), "B\n");
    assert_eq!(env.output_of("copies", &["pwd"]), "/srv/sub\n");
    env.no_containers();
}

/// ADD of a local tar (gzip) is extracted; a hostile tar (a `../` entry, a symlink out
/// of the layer and a write through it) changes nothing outside the layer.
#[test]
fn add_extracts_local_tars_and_hostile_ones_stay_inside() {
    require_root!();
    let env = Env::new();
    let ctx = env.context(&[("Dockerfile", "FROM busybox\nADD app.tar.gz /opt/\n")]);
    let src = env.data().join(unique_name("src"));
    std::fs::create_dir_all(src.join("app/bin")).unwrap();
    std::fs::write(src.join("app/bin/run"), "#!/bin/sh\necho run\n").unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-czf")
        .arg(ctx.join("app.tar.gz"))
        .arg("app")
        .status()
        .unwrap();
    assert!(st.success());
    env.build(&ctx, &["-t", "added"]);
    assert_eq!(
        env.output_of("added", &["cat", "/opt/app/bin/run"]),
        "#!/bin/sh\necho run\n"
    );

    let victim = tempfile::Builder::new()
        .prefix("longshore-clibuild-victim-")
        .tempdir()
        .unwrap();
    let target = victim.path().join("pwned");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    let evil = format!("../../../../../../../..{}", target.display());
    h.as_gnu_mut().unwrap().name[..evil.len()].copy_from_slice(evil.as_bytes());
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
    let ctx = env.context(&[(
        "Dockerfile",
        "FROM busybox\nADD evil.tar /x/\nRUN ls -la /x /x/out/ 2>&1 || true\n",
    )]);
    std::fs::write(ctx.join("evil.tar"), b.into_inner().unwrap()).unwrap();
    let out = env.run(&["build", "-t", "evil", ctx.to_str().unwrap()]);
    assert!(
        !target.exists(),
        "the ADDed tar wrote outside the layer:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 0);
    env.no_containers();
}

/// An HTTP server on loopback serving one file (chunked, with Last-Modified) and a
/// redirect to it; serves `n` connections, one request each, and says so
/// (`Connection: close`: without it the client kept the redirect's connection for the
/// next request and now and then sent it after the server had closed: reset by peer).
fn http_server(n: usize) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        for s in l.incoming().take(n) {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let resp = if path == "/old" {
                "HTTP/1.1 301 Moved\r\nLocation: /hello.txt\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            } else {
                "HTTP/1.1 200 OK\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\nhello \r\n6\r\nworld\n\r\n0\r\n\r\n".to_string()
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    (addr, h)
}

/// ADD <url>: fetched (through a redirect) with Docker's rules: mode 0600, the mtime from
/// Last-Modified, `--checksum` verified; a wrong checksum leaves no image and no tag.
#[test]
fn add_fetches_urls_with_checksum_and_mtime() {
    require_root!();
    let env = Env::new();
    let (url, server) = http_server(3);
    let sum = "sha256:a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447";
    let ctx = env.context(&[(
        "Dockerfile",
        &format!("FROM busybox\nADD --checksum={sum} {url}/old /dl/\nRUN stat -c '%a %Y' /dl/old && cat /dl/old\n"),
    )]);
    // the file's time is Last-Modified's (2015), under the clamp of SOURCE_DATE_EPOCH
    let mut cmd = env.command(&["build", "-t", "fetched", ctx.to_str().unwrap()]);
    cmd.env("SOURCE_DATE_EPOCH", "2000000000");
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("600 1445412480\nhello world\n"), "{out}");
    let before = env.image_count();
    let bad = env.context(&[(
        "Dockerfile",
        &format!(
            "FROM busybox\nADD --checksum=sha256:{} {url}/hello.txt /x\n",
            "0".repeat(64)
        ),
    )]);
    let o = env.run(&["build", "-t", "bad:1", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("digest mismatch"), "{}", stderr(&o));
    assert_eq!(env.image_count(), before);
    assert_eq!(env.image_id("bad:1"), "", "the failed build was tagged");
    env.no_containers();
    // the server thread stays in accept if a fetch did not happen; it ends with the process
    drop(server);
}

/// Independent stages build at the same time (each waits for the other through a shared
/// cache mount: built one after the other, the first would give up and fail), an unused
/// stage is skipped, `--target`, several `-t`, `-q`, `--label`, `FROM --platform`.
#[test]
fn stages_target_tags_quiet_labels_and_platform() {
    require_root!();
    let env = Env::new();
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,target=/meet,id=rendezvous-{me}{other} touch /meet/{me} && i=0; while [ ! -e /meet/{other} ]; do i=$((i+1)); [ $i -lt 600 ] || exit 99; sleep 0.1; done; echo {me} > /{me}\n"
        )
    };
    // both stages use the same cache id
    let df = format!(
        "FROM busybox AS a\n{}FROM busybox AS b\n{}FROM busybox AS unused\nRUN exit 9\nFROM --platform=linux busybox AS final\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nCMD [\"cat\", \"/a\", \"/b\"]\n",
        wait("a", "b").replace("rendezvous-ab", "rendezvous"),
        wait("b", "a").replace("rendezvous-ba", "rendezvous"),
    );
    let ctx = env.context(&[("Dockerfile", &df)]);
    let q = env.build(
        &ctx,
        &[
            "-q",
            "-t",
            "multi:1",
            "-t",
            "multi:2",
            "--label",
            "built.by=test",
            "--target",
            "final",
        ],
    );
    let id = q.trim();
    assert!(
        id.starts_with("sha256:") && !q.contains("Step"),
        "-q printed more: {q}"
    );
    assert_eq!(env.image_id("multi:1"), id);
    assert_eq!(env.image_id("multi:2"), id);
    assert_eq!(env.output_of("multi:1", &[]), "a\nb\n");
    assert_eq!(env.config("multi:2")["Labels"]["built.by"], "test");
    // --target a: only stage a (its RUN cached now)
    let out = env.build(&ctx, &["--target", "a", "-t", "only-a"]);
    assert!(
        !out.contains("RUN exit 9") && !out.contains("FROM busybox AS b"),
        "{out}"
    );
    // another platform is refused with the line named; nothing is built
    let before = env.image_count();
    let other = if std::env::consts::ARCH == "aarch64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let ctx = env.context(&[(
        "Dockerfile",
        &format!("FROM busybox\nRUN true\nFROM --platform={other} busybox\n"),
    )]);
    let o = env.run(&["build", "-t", "plat", ctx.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "Dockerfile:3: platform \"{other}\" is not supported"
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.image_count(), before);
    env.no_containers();
}

/// The same context, Dockerfile and build args give the same image ID in two data roots
/// (files with other times); SOURCE_DATE_EPOCH sets the image's time and so its ID.
#[test]
fn reproducible_builds_and_source_date_epoch() {
    require_root!();
    let envs = [Env::new(), Env::new()];
    let df = "FROM base:1\nARG V\nCOPY . /src\nRUN echo $V > /v && ls -l /src > /list\n";
    let mut ids = vec![];
    for (i, env) in envs.iter().enumerate() {
        // the base is built here too (an imported image carries the time of its import)
        let base = env.context(&[("Dockerfile", "FROM scratch\nCOPY rootfs/ /\nCMD [\"sh\"]\n")]);
        longshore_test_support::busybox_rootfs(&base.join("rootfs")).unwrap();
        env.build(&base, &["-t", "base:1"]);
        let ctx = env.context(&[("Dockerfile", df), ("a.txt", "A\n"), ("b/c.txt", "C\n")]);
        // other file times in each context
        let t = 1_600_000_000 + i as i64 * 1000;
        for f in ["a.txt", "b/c.txt", "b"] {
            set_mtime(&ctx.join(f), t);
        }
        let out = env.build(&ctx, &["-q", "--build-arg", "V=1"]);
        ids.push(out.trim().to_string());
    }
    assert_eq!(ids[0], ids[1], "the same inputs gave two images");
    let env = &envs[0];
    let ctx = env.context(&[("Dockerfile", df), ("a.txt", "A\n"), ("b/c.txt", "C\n")]);
    set_mtime(&ctx.join("a.txt"), 1_600_000_000);
    let mut cmd = env.command(&[
        "build",
        "-q",
        "--build-arg",
        "V=1",
        "-t",
        "epoch",
        ctx.to_str().unwrap(),
    ]);
    cmd.env("SOURCE_DATE_EPOCH", "1700000000");
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert_ne!(id, ids[0], "SOURCE_DATE_EPOCH did not change the image");
    let created = env.ok(&["inspect", "--type", "image", "-f", "{{.Created}}", "epoch"]);
    assert!(created.starts_with("2023-11-14T22:13:20"), "{created}");
    // file times in the new layers are clamped to it
    let stat = env.output_of("epoch", &["stat", "-c", "%Y", "/src/a.txt", "/v"]);
    assert_eq!(stat, "1600000000\n1700000000\n", "clamped times");
}

fn set_mtime(p: &Path, secs: i64) {
    let st = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{secs}"))
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `openssl s_server -WWW` on loopback with a certificate of a CA made here; killed on drop.
struct HttpsServer {
    dir: tempfile::TempDir,
    child: std::process::Child,
    port: u16,
}

impl HttpsServer {
    fn start() -> HttpsServer {
        let dir = tempfile::Builder::new()
            .prefix("longshore-clibuild-tls-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let sh = |script: &str| {
            let o = Command::new("sh")
                .arg("-ec")
                .arg(script)
                .current_dir(d)
                .output()
                .unwrap();
            assert!(o.status.success(), "{script}: {}", stderr(&o));
        };
        sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=longshore-test-ca
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
            openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext
            mkdir www && echo 'over tls' > www/secure.txt");
        let mut child = Command::new("openssl")
            .args([
                "s_server",
                "-key",
                "../srv.key",
                "-cert",
                "../srv.pem",
                "-accept",
                "127.0.0.1:0",
                "-WWW",
            ])
            .current_dir(d.join("www"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // "ACCEPT 127.0.0.1:<port>"
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut port = 0;
        for _ in 0..10 {
            let mut line = String::new();
            if std::io::BufRead::read_line(&mut out, &mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Some(p) = line.trim().strip_prefix("ACCEPT 127.0.0.1:") {
                port = p.parse().unwrap();
                break;
            }
        }
        assert_ne!(port, 0, "openssl s_server did not say its port");
        // keep reading its stdout so it never blocks on a full pipe
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        HttpsServer { dir, child, port }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ADD <https://...> goes through the engine's TLS client: a server whose CA is trusted
/// (SSL_CERT_FILE) serves the file; the same server is refused when its CA is not trusted
/// (as a man in the middle would be), with the certificate named, and nothing is built.
#[test]
fn add_fetches_https_urls_and_refuses_untrusted_servers() {
    require_root!();
    let env = Env::new();
    let server = HttpsServer::start();
    let url = format!("https://127.0.0.1:{}/secure.txt", server.port);
    let ctx = env.context(&[(
        "Dockerfile",
        &format!("FROM busybox\nADD {url} /dl/\nRUN cat /dl/secure.txt\n"),
    )]);
    let mut cmd = env.command(&["build", "-t", "tls:1", ctx.to_str().unwrap()]);
    cmd.env("SSL_CERT_FILE", server.ca());
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("over tls\n"), "{}", stdout(&o));
    assert_eq!(
        env.output_of("tls:1", &["cat", "/dl/secure.txt"]),
        "over tls\n"
    );
    // not trusted: the system's roots only (an empty bundle here)
    let before = env.image_count();
    let empty = server.dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let mut cmd = env.command(&["build", "--no-cache", "-t", "tls:2", ctx.to_str().unwrap()]);
    cmd.env("SSL_CERT_FILE", &empty);
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(&url) && stderr(&o).to_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.image_count(), before);
    assert_eq!(env.image_id("tls:2"), "", "the failed build was tagged");
    env.no_containers();
}

/// `longshore daemon` on a socket in the test's data root; SIGTERM on drop.
struct Daemon(std::process::Child, String);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the daemon this test started and has not waited for.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

#[test]
fn build_through_the_daemon_as_in_process() {
    require_root!();
    let env = Env::new();
    let sock = env.data().join("d.sock");
    let child = env
        .command(&["daemon", "-H", &format!("unix://{}", sock.display())])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon(child, format!("unix://{}", sock.display()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ctx = env.context(&[
        (
            "Dockerfile",
            "FROM busybox\nARG WHO=nobody\nCOPY hello.txt /hello.txt\nRUN echo \"built by $WHO\" > /who\nLABEL from=daemon\n",
        ),
        ("hello.txt", "hello\n"),
    ]);
    let h = d.1.as_str();
    let out = env.ok(&[
        "-H",
        h,
        "build",
        "-t",
        "remote:1",
        "--build-arg",
        "WHO=client",
        ctx.to_str().unwrap(),
    ]);
    for want in [
        "Sending build context to Docker daemon  ",
        "Step 1/5 : FROM busybox",
        "Step 4/5 : RUN echo",
        "Successfully built ",
        "Successfully tagged remote:1",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert_eq!(
        env.output_of("remote:1", &["cat", "/hello.txt", "/who"]),
        "hello\nbuilt by client\n"
    );
    // a Dockerfile from outside the context, -q, and a failing RUN's exit code both ways
    let outside = env.data().join("Other.dockerfile");
    std::fs::write(&outside, "FROM busybox\nRUN exit 7\n").unwrap();
    for remote in [false, true] {
        let mut args = vec![];
        if remote {
            args.extend(["-H", h]);
        }
        args.extend([
            "build",
            "-q",
            "-f",
            outside.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ]);
        let o = env.run(&args);
        assert_eq!(o.status.code(), Some(7), "remote={remote}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("ERROR: "), "{}", stderr(&o));
    }
    std::fs::write(&outside, "FROM busybox\nRUN true\n").unwrap();
    let id = env.ok(&[
        "-H",
        h,
        "build",
        "-q",
        "-f",
        outside.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
}
