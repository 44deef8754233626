//! The Engine API server (`longshore_engine::api`) driven by the real docker CLI
//! (`/usr/local/bin/docker`, unchanged) over a unix socket, and by raw HTTP for the
//! errors. Runs as root; every daemon has its own data root under
//! `/tmp/longshore-api-*`, containers use `--network none` (no host nftables), and
//! everything is removed by Drop guards.
//!
//! A custom harness (`harness = false`): the test binary is also the containers'
//! monitor program, so `main` calls `run_if_monitor` first.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::Duration;

use longshore_engine::api::DaemonOptions;
use longshore_engine::{Engine, EngineOptions, ListOptions, RemoveOptions};
use longshore_test_support::{busybox_rootfs, is_root, report_skip, unique_name};

const DOCKER: &str = "/usr/local/bin/docker";
/// Set in the environment of this binary run as the daemon: its data root and socket.
const DAEMON_ROOT: &str = "LONGSHORE_API_TEST_DAEMON_ROOT";
const DAEMON_SOCK: &str = "LONGSHORE_API_TEST_DAEMON_SOCK";

/// This binary run as `longshore daemon`.
fn daemon_main(root: &str, sock: &str) -> ExitCode {
    let engine = Engine::open(root, EngineOptions::default()).expect("open the engine");
    let mut opts = DaemonOptions::default();
    opts.hosts = vec![format!("unix://{sock}")];
    opts.debug = std::env::var_os("LONGSHORE_API_TEST_DEBUG").is_some();
    match longshore_engine::api::run(engine, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("daemon: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A `longshore daemon` on its own data root: this test binary run again as the daemon
/// (`api::run`, with its signal handling), stopped with SIGTERM and cleaned up on drop.
struct Daemon {
    dir: tempfile::TempDir,
    sock: PathBuf,
    engine: Engine,
    child: Option<std::process::Child>,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("longshore-api-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = dir.path().join("root");
        let engine = Engine::open(&root, EngineOptions::default()).expect("open the engine");
        let rootfs = dir.path().join("rootfs");
        busybox_rootfs(&rootfs).expect("busybox rootfs");
        let mut tar = tar::Builder::new(Vec::new());
        tar.follow_symlinks(false);
        tar.append_dir_all(".", &rootfs).expect("tar the rootfs");
        let bytes = tar.into_inner().expect("tar");
        engine
            .import_image(
                &bytes[..],
                Some("busybox:latest"),
                None,
                &["CMD [\"sh\"]".to_string()],
            )
            .expect("import busybox");
        let _ = std::fs::remove_dir_all(&rootfs);
        let mut d = Daemon {
            sock: dir.path().join("d.sock"),
            dir,
            engine,
            child: None,
        };
        d.serve();
        d
    }

    /// Starts the daemon (again) on the socket; returns once it answers.
    fn serve(&mut self) {
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .env(DAEMON_ROOT, self.dir.path().join("root"))
            .env(DAEMON_SOCK, &self.sock)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the daemon");
        self.child = Some(child);
        for _ in 0..500 {
            if UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "the daemon did not listen on {} within 5 s",
            self.sock.display()
        );
    }

    /// SIGTERM, then waits for the daemon to exit; its exit status.
    fn shutdown(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        child.wait().ok()
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.docker_in(args, None)
    }

    fn docker_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(DOCKER);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run the docker CLI");
        if let Some(input) = stdin {
            let mut w = child.stdin.take().expect("stdin");
            w.write_all(input).expect("write stdin");
        }
        child.wait_with_output().expect("docker output")
    }

    /// A raw HTTP/1.1 request; the status and the body.
    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = UnixStream::connect(&self.sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // a server that refuses a body early closes while it is sent: the answer counts
        let _ = write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read the answer");
        let code = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (code, body.to_string())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown();
        let mut all = ListOptions::default();
        all.all = true;
        let mut force = RemoveOptions::default();
        force.force = true;
        force.volumes = true;
        if let Ok(list) = self.engine.list_containers(&all) {
            for c in list {
                let _ = self.engine.remove_container(&c.id, &force);
            }
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "docker failed ({:?}): {}{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn version_and_ping(d: &Daemon) {
    let v = ok(&d.docker(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.MinAPIVersion}}",
    ]));
    assert_eq!(v.trim(), "1.45 1.24");
    let out = ok(&d.docker(&["version"]));
    assert!(out.contains("longshore"), "{out}");
    let (code, body) = d.http("GET", "/_ping", "");
    assert_eq!((code, body.as_str()), (200, "OK"));
    let (code, body) = d.http("GET", "/v1.24/version", "");
    assert_eq!(code, 200, "{body}");
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode");
}

fn run_rm_echo(d: &Daemon) {
    let name = unique_name("lsapi");
    let o = d.docker(&[
        "run",
        "--rm",
        "--name",
        &name,
        "--network",
        "none",
        "busybox",
        "echo",
        "hi",
    ]);
    assert_eq!(ok(&o), "hi\n");
    // --rm: gone once run returns
    let ps = ok(&d.docker(&["ps", "-a", "-q", "--filter", &format!("name={name}")]));
    assert_eq!(ps.trim(), "", "the --rm container is still listed");
}

fn run_exit_code_and_streams(d: &Daemon) {
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "out\n");
    assert!(text(&o.stderr).contains("err\n"), "{}", text(&o.stderr));
    // without --rm the wait is next-exit
    let name = unique_name("lsapi");
    let o = d.docker(&[
        "run",
        "--name",
        &name,
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    ok(&d.docker(&["rm", &name]));
}

fn run_with_stdin(d: &Daemon) {
    let o = d.docker_in(
        &["run", "-i", "--rm", "--network", "none", "busybox", "cat"],
        Some(b"hello stdin\n"),
    );
    assert_eq!(ok(&o), "hello stdin\n");
}

fn detached_logs_stop_rm(d: &Daemon) {
    let name = unique_name("lsapi");
    let id = ok(&d.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two >&2; exec sleep 100",
    ]));
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = ok(&d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]));
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&name) && l.contains(" Up")),
        "{ps}"
    );
    let inspect = ok(&d.docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.Config.Image}}",
        &name,
    ]));
    assert_eq!(inspect.trim(), "true busybox");
    // the logs are demultiplexed by the CLI: the 8-byte framing is right
    let mut logs = Output {
        status: std::process::ExitStatus::default(),
        stdout: vec![],
        stderr: vec![],
    };
    for _ in 0..100 {
        logs = d.docker(&["logs", &name]);
        if text(&logs.stdout) == "one\n" && text(&logs.stderr) == "two\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(text(&logs.stdout), "one\n", "{}", text(&logs.stderr));
    assert_eq!(text(&logs.stderr), "two\n");
    let tail = ok(&d.docker(&["logs", "--tail", "1", "-t", &name]));
    assert_eq!(tail, "", "--tail 1 is the stderr line, on stderr");
    // running: rm without -f is a conflict, in Docker's words
    let o = d.docker(&["rm", &name]);
    assert!(!o.status.success());
    ok(&d.docker(&["stop", "-t", "1", &name]));
    let st = ok(&d.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Running}}",
        &name,
    ]));
    assert_eq!(st.trim(), "exited false");
    let ps = ok(&d.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]));
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&name) && l.contains("Exited")),
        "{ps}"
    );
    ok(&d.docker(&["rm", &name]));
    let ps = ok(&d.docker(&["ps", "-a", "-q", "--filter", &format!("name={name}")]));
    assert_eq!(ps.trim(), "");
    let o = d.docker(&["rm", &name]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("No such container"),
        "{}",
        text(&o.stderr)
    );
}

fn exec_in_a_running_container(d: &Daemon) {
    let name = unique_name("lsapi");
    ok(&d.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]));
    assert_eq!(ok(&d.docker(&["exec", &name, "echo", "hi"])), "hi\n");
    let o = d.docker(&["exec", &name, "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "out\n");
    assert!(text(&o.stderr).contains("err\n"), "{}", text(&o.stderr));
    let o = d.docker_in(&["exec", "-i", &name, "cat"], Some(b"via stdin\n"));
    assert_eq!(ok(&o), "via stdin\n");
    ok(&d.docker(&["exec", "-d", &name, "sh", "-c", "echo done > /tmp/f"]));
    let mut seen = String::new();
    for _ in 0..100 {
        seen = text(&d.docker(&["exec", &name, "cat", "/tmp/f"]).stdout);
        if seen == "done\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(seen, "done\n", "the detached exec did not run");
    ok(&d.docker(&["stop", "-t", "0", &name]));
    let o = d.docker(&["exec", &name, "true"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is not running"),
        "{}",
        text(&o.stderr)
    );
    ok(&d.docker(&["rm", &name]));
}

fn images_and_inspect(d: &Daemon) {
    let imgs = ok(&d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]));
    assert!(
        imgs.lines().any(|l| l.starts_with("busybox:latest ")),
        "{imgs}"
    );
    let id = ok(&d.docker(&["inspect", "--type", "image", "-f", "{{.Id}}", "busybox"]));
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let o = d.docker(&["inspect", "--type", "image", "nosuchimage-lsapi"]);
    assert!(!o.status.success());
    // a missing image: the CLI asks to pull it, and gets a clear refusal
    let o = d.docker(&["run", "--rm", "--network", "none", "nosuchimage-lsapi"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr)
            .contains("pulling and importing images through the Engine API is not built yet"),
        "{}",
        text(&o.stderr)
    );
    let o = d.docker(&["rmi", "nosuchimage-lsapi"]);
    assert!(
        text(&o.stderr).contains("No such image"),
        "{}",
        text(&o.stderr)
    );
}

fn bad_requests_leave_the_daemon_up(d: &Daemon) {
    let (code, body) = d.http(
        "POST",
        "/v1.45/containers/create",
        "{\"Image\": \"busybox\", ",
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("invalid JSON in the container config"),
        "{body}"
    );
    let (code, body) = d.http(
        "POST",
        "/containers/create",
        "{\"Image\":\"busybox\",\"Tty\":\"yes\"}",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("expected a boolean"), "{body}");
    let (code, body) = d.http("GET", "/v1.99/version", "");
    assert_eq!(code, 400);
    assert_eq!(
        body,
        "{\"message\":\"client version 1.99 is too new. Maximum supported API version is 1.45\"}"
    );
    let (code, body) = d.http("GET", "/v1.12/version", "");
    assert_eq!(code, 400);
    assert!(body.contains("too old"), "{body}");
    let (code, body) = d.http("GET", "/containers/nosuch-lsapi/json", "");
    assert_eq!(code, 404);
    assert!(body.contains("No such container: nosuch-lsapi"), "{body}");
    let (code, _) = d.http("GET", "/nothing/here", "");
    assert_eq!(code, 404);
    let (code, body) = d.http("POST", "/containers/create", &"x".repeat(5 << 20));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("too large"), "{body}");
    // nothing was created, and the daemon still answers
    let ps = ok(&d.docker(&["ps", "-a", "-q"]));
    assert_eq!(ps.trim(), "", "a bad request left a container");
    assert_eq!(d.http("GET", "/_ping", "").0, 200);
}

/// SIGTERM's path: the daemon stops accepting, a request in flight (a wait) is answered,
/// the socket is gone, the container keeps running; a new daemon serves it again.
fn stop_keeps_containers(d: &mut Daemon) {
    let name = unique_name("lsapi");
    ok(&d.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]));
    let waiter = unique_name("lsapi");
    ok(&d.docker(&[
        "run",
        "-d",
        "--name",
        &waiter,
        "--network",
        "none",
        "busybox",
        "sleep",
        "1",
    ]));
    let sock = d.sock.clone();
    let wait = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&sock).expect("connect");
        write!(s, "POST /containers/{waiter}/wait HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    std::thread::sleep(Duration::from_millis(200));
    let status = d.shutdown().expect("the daemon ran");
    assert!(status.success(), "the daemon's exit on SIGTERM: {status:?}");
    let answer = wait.join().unwrap();
    assert!(
        answer.contains("\"StatusCode\":0"),
        "the wait in flight was cut: {answer:?}"
    );
    assert!(!d.sock.exists(), "the socket is left behind");
    assert!(UnixStream::connect(&d.sock).is_err());
    let v = d.engine.inspect_container(&name).unwrap();
    assert_eq!(
        v["State"]["Running"], true,
        "the daemon's stop stopped a container: {}",
        v["State"]
    );
    d.serve();
    let ps = ok(&d.docker(&["ps", "--format", "{{.Names}}"]));
    assert!(ps.lines().any(|l| l == name), "{ps}");
    ok(&d.docker(&["rm", "-f", &name]));
}

/// A test: its name and body.
type Test = (&'static str, fn(&mut Daemon));

fn main() -> ExitCode {
    longshore_engine::monitor::run_if_monitor();
    if let (Ok(root), Ok(sock)) = (std::env::var(DAEMON_ROOT), std::env::var(DAEMON_SOCK)) {
        return daemon_main(&root, &sock);
    }
    if !is_root() {
        report_skip(
            "engine/tests/api.rs",
            "the API tests run containers: they need root",
        );
        return ExitCode::SUCCESS;
    }
    if !Path::new(DOCKER).exists() {
        report_skip(
            "engine/tests/api.rs",
            "no docker CLI at /usr/local/bin/docker",
        );
        return ExitCode::SUCCESS;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut d = Daemon::start();
    let tests: Vec<Test> = vec![
        ("version_and_ping", |d| version_and_ping(d)),
        ("run_rm_echo", |d| run_rm_echo(d)),
        ("run_exit_code_and_streams", |d| {
            run_exit_code_and_streams(d)
        }),
        ("run_with_stdin", |d| run_with_stdin(d)),
        ("detached_logs_stop_rm", |d| detached_logs_stop_rm(d)),
        ("exec_in_a_running_container", |d| {
            exec_in_a_running_container(d)
        }),
        ("images_and_inspect", |d| images_and_inspect(d)),
        ("bad_requests_leave_the_daemon_up", |d| {
            bad_requests_leave_the_daemon_up(d)
        }),
        ("stop_keeps_containers", stop_keeps_containers),
    ];
    let mut failed = vec![];
    let mut ran = 0;
    for (name, t) in &tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let r = catch_unwind(AssertUnwindSafe(|| t(&mut d)));
        println!(
            "test api::{name} ... {}",
            if r.is_ok() { "ok" } else { "FAILED" }
        );
        if r.is_err() {
            failed.push(*name);
        }
    }
    drop(d);
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
