//! `longshore daemon`'s registry flags, through the real binary: `--max-concurrent-downloads`
//! and `--max-concurrent-uploads` (dockerd's defaults, 3 and 5; 0 is no limit; a negative
//! number is refused in dockerd's words; a flag also set in daemon.json is refused). The
//! download limit is watched from outside: the daemon pulls through a proxy that counts
//! the blob downloads in flight at once.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use longshore_test_support::registry::{BlobCounter, RegistryServer};
use longshore_test_support::{require_root, succeeded, text, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_longshore");

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("longshore-daemonflags-")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

/// `longshore ARGS` with data root `root`, never a daemon's client unless `-H` says so.
fn longshore(root: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("LONGSHORE_ROOT", root)
        .env_remove("LONGSHORE_HOST")
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run longshore")
}

fn ok(o: Output) -> String {
    succeeded("longshore", &o)
}

/// A `longshore daemon` process; SIGTERMed and waited for on drop.
struct Daemon {
    child: Option<Child>,
    sock: String,
}

impl Daemon {
    /// Starts `longshore [pre] daemon -g ROOT -H unix://SOCK [args]`; returns once it
    /// answers.
    fn start(dir: &Path, pre: &[&str], args: &[&str]) -> Daemon {
        let sock = dir.join("d.sock");
        let child = Command::new(BIN)
            .args(pre)
            .arg("daemon")
            .arg("-g")
            .arg(dir.join("root"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args)
            .env_remove("LONGSHORE_HOST")
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .spawn()
            .expect("start longshore daemon");
        let mut d = Daemon {
            child: Some(child),
            sock: format!("unix://{}", sock.display()),
        };
        for _ in 0..1000 {
            if UnixStream::connect(&sock).is_ok() {
                return d;
            }
            if let Some(st) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("longshore daemon exited: {st}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("longshore daemon did not listen on {}", sock.display());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }
}

/// The flags given, the refusal of a daemon started with `args` (it must not start).
fn refused(args: &[&str], config: Option<&str>) -> String {
    let dir = temp();
    let mut all: Vec<String> = vec![
        "daemon".into(),
        "-g".into(),
        dir.path().join("root").display().to_string(),
        "-H".into(),
        format!("unix://{}", dir.path().join("d.sock").display()),
    ];
    if let Some(c) = config {
        let p = dir.path().join("daemon.json");
        std::fs::write(&p, c).unwrap();
        all.push("--config-file".into());
        all.push(p.display().to_string());
    }
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut child = Command::new(BIN)
        .args(&all)
        .env_remove("LONGSHORE_HOST")
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run longshore daemon");
    // a daemon that wrongly starts is stopped after 10 s, and the test fails below
    for _ in 0..1000 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    assert!(
        !o.status.success() && o.status.code().is_some(),
        "longshore daemon {args:?} started ({:?})",
        o.status
    );
    text(&o.stderr)
}

#[test]
fn max_concurrent_flags_are_validated_as_dockerd_does() {
    require_root!();
    let e = refused(&["--max-concurrent-downloads", "-1"], None);
    assert!(e.contains("invalid max concurrent downloads: -1"), "{e}");
    let e = refused(&["--max-concurrent-uploads", "-3"], None);
    assert!(e.contains("invalid max concurrent uploads: -3"), "{e}");
    let e = refused(&["--max-concurrent-uploads", "x"], None);
    assert!(e.contains("invalid value 'x'"), "{e}");
    let e = refused(
        &["--max-concurrent-uploads", "4"],
        Some("{\"max-concurrent-uploads\": 2}"),
    );
    assert!(
        e.contains("specified both as a flag and in the configuration file")
            && e.contains("max-concurrent-uploads"),
        "{e}"
    );
    let e = refused(&[], Some("{\"max-concurrent-downloads\": -2}"));
    assert!(e.contains("invalid max concurrent downloads: -2"), "{e}");
}

#[test]
fn max_concurrent_downloads_limits_a_pull_through_the_daemon() {
    require_root!();
    let registry = RegistryServer::start(temp(), "");
    // an image of four layers (and a config: five blobs), pushed in process
    let work = temp();
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    let mut df = String::from("FROM scratch\n");
    for f in ["a", "b", "c", "d"] {
        std::fs::write(ctx.join(f), format!("layer {f}\n")).unwrap();
        df.push_str(&format!("COPY {f} /{f}\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    let repo = unique_name("lsflags");
    let image = format!("{}/{repo}:1", registry.addr);
    let root = work.path().join("root");
    ok(longshore(
        &root,
        &["build", "-q", "-t", &image, ctx.to_str().unwrap()],
    ));
    ok(longshore(
        &root,
        &["--insecure-registry", &registry.addr, "push", &image],
    ));
    // (flags, a check of the most downloads seen at once). The limit is on layers: the
    // config is fetched outside it, as Docker does, and may overlap the first layers
    type Check = fn(usize) -> bool;
    let rounds: [(&[&str], Check, &str); 3] = [
        (
            &["--max-concurrent-downloads", "1"],
            |n| (1..=2).contains(&n),
            "1 layer (and the config)",
        ),
        (
            &[],
            |n| (2..=4).contains(&n),
            "3 layers, the default (and the config)",
        ),
        (
            &["--max-concurrent-downloads", "0"],
            |n| n >= 4,
            "4 or 5 (no limit)",
        ),
    ];
    for (flags, check, want) in rounds {
        let proxy = BlobCounter::start(&registry.addr, Duration::from_millis(700));
        let dir = temp();
        let d = Daemon::start(
            dir.path(),
            &["--insecure-registry", &proxy.addr],
            &[flags, &["--max-concurrent-uploads", "2"]].concat(),
        );
        let through = format!("{}/{repo}:1", proxy.addr);
        ok(longshore(dir.path(), &["-H", &d.sock, "pull", &through]));
        assert_eq!(proxy.downloads(), 5, "blobs downloaded with {flags:?}");
        assert!(
            check(proxy.max_in_flight()),
            "{flags:?}: {} downloads at once, want {want}",
            proxy.max_in_flight()
        );
    }
}
