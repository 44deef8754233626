//! The test daemon shared by the API tests (`api.rs` drives it with the docker CLI,
//! `api_bollard.rs` with bollard): this test binary run again as `longshore daemon` on a
//! data root of its own with busybox imported, next to two docker-registry processes
//! (one open, one wanting alice:s3cret). A test binary using it has `harness = false`
//! and its `main` calls [`daemon_if_asked`] after `run_if_monitor`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::Duration;

use longshore_engine::api::DaemonOptions;
use longshore_engine::{Engine, EngineOptions, ListOptions, RemoveOptions};
use longshore_test_support::busybox_rootfs;
use longshore_test_support::registry::RegistryServer;

/// When this process was started as the test daemon: runs it, and its exit code.
pub fn daemon_if_asked() -> Option<ExitCode> {
    match (std::env::var(DAEMON_ROOT), std::env::var(DAEMON_SOCK)) {
        (Ok(root), Ok(sock)) => Some(daemon_main(&root, &sock)),
        _ => None,
    }
}

pub fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("longshore-api-")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

pub const DOCKER: &str = "/usr/local/bin/docker";
/// Set in the environment of this binary run as the daemon: its data root and socket.
pub const DAEMON_ROOT: &str = "LONGSHORE_API_TEST_DAEMON_ROOT";
pub const DAEMON_SOCK: &str = "LONGSHORE_API_TEST_DAEMON_SOCK";
/// A daemon.json for the test daemon.
pub const DAEMON_CONFIG: &str = "LONGSHORE_API_TEST_CONFIG";
/// The daemon's -H list instead of the socket (comma-separated).
pub const DAEMON_HOSTS: &str = "LONGSHORE_API_TEST_HOSTS";
/// Registries the test daemon reaches over plain HTTP (comma-separated).
pub const DAEMON_INSECURE: &str = "LONGSHORE_API_TEST_INSECURE";

/// This binary run as `longshore daemon`.
pub fn daemon_main(root: &str, sock: &str) -> ExitCode {
    let mut eopts = EngineOptions::default();
    eopts.client.insecure_registries = std::env::var(DAEMON_INSECURE)
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let mut opts = DaemonOptions::default();
    opts.hosts = match std::env::var(DAEMON_HOSTS) {
        Ok(h) => h.split(',').map(String::from).collect(),
        Err(_) => vec![format!("unix://{sock}")],
    };
    if let Some(c) = std::env::var_os(DAEMON_CONFIG) {
        opts.config_file = Some(c.into());
        opts.hosts.clear();
    }
    opts.debug = std::env::var_os("LONGSHORE_API_TEST_DEBUG").is_some();
    // daemon.json's engine settings apply (run_daemon opens the engine)
    match longshore_engine::api::run_daemon(Path::new(root), eopts, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("daemon: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A `longshore daemon` on its own data root: this test binary run again as the daemon
/// (`api::run`, with its signal handling), stopped with SIGTERM and cleaned up on drop.
pub struct Daemon {
    /// An open registry and one that wants alice:s3cret (htpasswd).
    pub registry: RegistryServer,
    pub private: RegistryServer,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub engine: Engine,
    pub child: Option<std::process::Child>,
    /// Run the daemon (and so its containers' host side) in a network namespace of its
    /// own (`unshare --net`), so that bridge tests change no host network state.
    pub netns: bool,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(false)
    }

    pub fn start_with(netns: bool) -> Daemon {
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
        let registry = RegistryServer::start(temp(), "");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", "alice", "s3cret"])
            .output()
            .expect("htpasswd (apache2-utils) must be installed");
        let pdir = temp();
        let hp = pdir.path().join("htpasswd");
        std::fs::write(&hp, htpasswd.stdout).expect("write htpasswd");
        let private = RegistryServer::start(
            pdir,
            &format!(
                "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                hp.display()
            ),
        );
        let mut d = Daemon {
            registry,
            private,
            sock: dir.path().join("d.sock"),
            dir,
            engine,
            child: None,
            netns,
        };
        d.serve();
        d
    }

    /// Starts the daemon (again) on the socket; returns once it answers.
    pub fn serve(&mut self) {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = if self.netns {
            let mut c = Command::new("unshare");
            c.arg("--net").arg("--").arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let child = cmd
            .env(DAEMON_ROOT, self.dir.path().join("root"))
            .env(DAEMON_SOCK, &self.sock)
            .env(
                DAEMON_INSECURE,
                format!("{},{}", self.registry.addr, self.private.addr),
            )
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
    pub fn shutdown(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        child.wait().ok()
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_in(args, None)
    }

    /// `docker VERB FLAGS --network none busybox CMD...` (`run` or `create`).
    pub fn busybox(&self, verb: &str, flags: &[&str], cmd: &[&str]) -> Output {
        let args: Vec<&str> = [verb]
            .iter()
            .chain(flags)
            .chain(&["--network", "none", "busybox"])
            .chain(cmd)
            .copied()
            .collect();
        self.docker(&args)
    }

    pub fn docker_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(DOCKER);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            // `docker build` with the legacy builder (the one that speaks POST /build)
            .env("DOCKER_BUILDKIT", "0")
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
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http_at(&self.sock, method, path, body)
    }
}

/// A raw HTTP/1.1 request with a JSON body to the daemon at `sock`; the status and the
/// body.
pub fn http_at(sock: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    http_bytes(sock, method, path, "application/json", body.as_bytes(), 30)
}

/// A raw HTTP/1.1 request to the daemon at `sock` (the answer waited for `timeout`
/// seconds at most); the status and the body.
pub fn http_bytes(
    sock: &Path,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    timeout: u64,
) -> (u16, String) {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(timeout)))
        .unwrap();
    // a server that refuses a body early closes while it is sent: the answer counts
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_string())
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

/// A command's output as text.
pub fn text(b: &[u8]) -> String {
    longshore_test_support::text(b)
}

/// The stdout of a docker CLI run that must have succeeded.
pub fn ok(o: &Output) -> String {
    longshore_test_support::succeeded("docker", o)
}

/// A process stopped with SIGTERM, and waited for, on drop (a daemon a test started).
pub struct Term(pub std::process::Child);

impl Term {
    /// Sends `sig` to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), sig);
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// This test binary run again as a daemon on data root `root` with daemon.json `cfg` (its
/// sockets are the file's `hosts`), output discarded; `netns`: in a network namespace of
/// its own.
pub fn config_daemon(root: &Path, cfg: &Path, netns: bool) -> Command {
    let exe = std::env::current_exe().expect("test binary");
    let mut c = if netns {
        let mut c = Command::new("unshare");
        c.arg("--net").arg("--").arg(exe);
        c
    } else {
        Command::new(exe)
    };
    c.env(DAEMON_ROOT, root)
        .env(DAEMON_SOCK, "unused")
        .env(DAEMON_CONFIG, cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Waits up to 5 s for `ready`.
pub fn wait_for(ready: impl Fn() -> bool) {
    for _ in 0..500 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The custom harness (`harness = false`) of the daemon test binaries: the test binary
/// is also the containers' monitor and the daemon, so those come first; then, as root
/// and with the docker CLI (`need_docker`), `tests` (those named by a command-line
/// argument, or all) one after another on the daemon `start` makes, each caught, with
/// libtest's lines. The default bridge (longshore0 and its nftables tables), which a
/// `docker run` on the default network makes on the host, is removed after the last test
/// when this run made it.
pub fn harness<D, T>(
    binary: &str,
    need_docker: bool,
    start: impl FnOnce() -> D,
    tests: &[(&str, T)],
    run: impl Fn(&T, &mut D),
) -> ExitCode {
    longshore_engine::monitor::run_if_monitor();
    if let Some(code) = daemon_if_asked() {
        return code;
    }
    let file = format!("engine/tests/{binary}.rs");
    if !longshore_test_support::is_root() {
        longshore_test_support::report_skip(&file, "the API tests run containers: they need root");
        return ExitCode::SUCCESS;
    }
    if need_docker && !Path::new(DOCKER).exists() {
        longshore_test_support::report_skip(&file, "no docker CLI at /usr/local/bin/docker");
        return ExitCode::SUCCESS;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let bridge_before = Path::new("/sys/class/net/longshore0").exists();
    let mut d = start();
    let mut failed = vec![];
    let mut ran = 0;
    for (name, t) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(t, &mut d)));
        println!(
            "test {binary}::{name} ... {}",
            if r.is_ok() { "ok" } else { "FAILED" }
        );
        if r.is_err() {
            failed.push(*name);
        }
    }
    drop(d);
    if !bridge_before {
        let _ = Command::new("ip")
            .args(["link", "del", "longshore0"])
            .stderr(Stdio::null())
            .status();
        for family in ["ip", "bridge", "inet"] {
            let _ = Command::new("nft")
                .args(["delete", "table", family, "longshore"])
                .stderr(Stdio::null())
                .status();
        }
    }
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
