//! The container monitor: one small process per running container, its parent.
//!
//! Why a monitor per container (like Podman's conmon) rather than the caller: with no
//! daemon, the process that runs `longshore run -d` exits at once, yet someone must
//! `waitpid` the container's init to learn how it ended, drain its stdout and stderr
//! into the json-file log, hold its pty, serve `attach`, and apply its restart policy.
//! The monitor is this same program re-executed (so an embedding program needs no
//! second binary: it calls [`run_if_monitor`] first in `main`), detached in a session of
//! its own. It is single-threaded: one `poll` loop over the container's output, the
//! attach socket and a pidfd of the init. It writes `state.json` at every change, so
//! another process (or an engine restarted after a crash) learns the exit status from
//! the file, never from the monitor. If the monitor itself is killed, the container runs
//! on; the engine then sees the monitor's lock free and the init still alive (or gone, with
//! an unknown status, as Docker does when its shim dies).
//!
//! Attach protocol (a unix socket per container, `/run/longshore/sock/<id>.attach`): the
//! client sends one JSON line `{"stdin":bool,"stdout":bool,"stderr":bool}`, then frames
//! with Docker's 8-byte header (`[kind, 0, 0, 0, len_be32]`): kind 0 is stdin data, 3 a
//! resize (`"rows cols"`), 4 closes stdin. The monitor first answers an empty frame of
//! kind 6 once the client is registered (from then on it gets every byte the container
//! writes), then frames of kind 1 (stdout) and 2 (stderr), and a last frame of kind 5
//! holding the exit code as 4 big-endian bytes.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::{Deserialize, Serialize};

use crate::containers::{ContainerState, write_atomic};
use crate::error::{Error, Result};

/// The environment variable that makes a program a monitor (its value: the arguments).
pub const MONITOR_ENV: &str = "LONGSHORE_MONITOR";

/// Where attach sockets live (short, for the 108-byte limit of socket paths).
pub const SOCKET_DIR: &str = "/run/longshore/sock";

/// The attach socket of container `id`.
pub fn attach_socket(id: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{id}.attach"))
}

/// The monitor's line before its report when it waits for attach clients: its socket
/// listens.
pub(crate) const LISTENING: &str = "listening";

/// The monitor's answer to a new attach client: registered (an empty frame of kind 6).
pub(crate) const ATTACH_ACK: [u8; 8] = [6, 0, 0, 0, 0, 0, 0, 0];

/// What the engine tells a monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MonitorArgs {
    pub root: PathBuf,
    pub id: String,
    pub driver: Option<String>,
    pub network: Option<NetOptions>,
    pub wait_for_attach: bool,
    /// With `wait_for_attach`: how many clients to wait for (at least one).
    #[serde(default)]
    pub attach_clients: usize,
    /// Wait for the engine's go (one byte on stdin) before making the container: the
    /// engine spawns the monitor ahead of the start's mount and spec. Until the go it only
    /// takes the container's monitor lock, reads its config and listens on its attach
    /// socket; the end of the pipe without a byte means the start failed (the monitor then
    /// removes its socket and leaves quietly).
    #[serde(default)]
    pub wait_for_go: bool,
}

/// libnetwork's daemon options, as the monitor needs them to disconnect the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NetOptions {
    bridge: String,
    bip: Option<String>,
    fixed_cidr: Option<String>,
    mtu: Option<u32>,
    icc: bool,
    ip: std::net::Ipv4Addr,
    ip_forward: bool,
    ip_masq: bool,
    iptables: bool,
    userland_proxy: bool,
    host_resolv_conf: PathBuf,
}

impl From<longshore_network::DaemonOptions> for NetOptions {
    fn from(o: longshore_network::DaemonOptions) -> Self {
        NetOptions {
            bridge: o.bridge,
            bip: o.bip.map(|b| b.to_string()),
            fixed_cidr: o.fixed_cidr.map(|b| b.to_string()),
            mtu: o.mtu,
            icc: o.icc,
            ip: o.ip,
            ip_forward: o.ip_forward,
            ip_masq: o.ip_masq,
            iptables: o.iptables,
            userland_proxy: o.userland_proxy,
            host_resolv_conf: o.host_resolv_conf,
        }
    }
}

impl From<NetOptions> for longshore_network::DaemonOptions {
    fn from(o: NetOptions) -> Self {
        let mut d = longshore_network::DaemonOptions::default();
        d.bridge = o.bridge;
        d.bip = o.bip.and_then(|b| b.parse().ok());
        d.fixed_cidr = o.fixed_cidr.and_then(|b| b.parse().ok());
        d.mtu = o.mtu;
        d.icc = o.icc;
        d.ip = o.ip;
        d.ip_forward = o.ip_forward;
        d.ip_masq = o.ip_masq;
        d.iptables = o.iptables;
        d.userland_proxy = o.userland_proxy;
        d.host_resolv_conf = o.host_resolv_conf;
        d
    }
}

/// The size of the store's metadata log over which a monitor that removed its `--rm`
/// container empties it (256 frames of 4 KiB): its reading costs the next lone open of
/// the store ~0.5 ms, an emptying two `fsync`s off the path.
const COMPACT_LOG_OVER: u64 = 1 << 20;

/// Runs the monitor and exits if this process was started as one; returns otherwise.
/// A program that embeds `longshore-engine` and runs containers calls it first in `main`
/// (or sets [`crate::EngineOptions::monitor_program`] to a program that does).
pub fn run_if_monitor() {
    let Ok(args) = std::env::var(MONITOR_ENV) else {
        return;
    };
    let ready = std::env::var("LONGSHORE_MONITOR_READY_FD")
        .ok()
        .and_then(|s| s.parse::<i32>().ok());
    let code = match serde_json::from_str::<MonitorArgs>(&args) {
        Ok(a) => {
            // a container that may ptrace its processes could reach this binary through the
            // init while it is set up: run from a sealed copy instead (CVE-2019-5736)
            if grants_ptrace(&a.root.join("containers").join(&a.id)) {
                let _ = longshore_container::process::reexec_sealed();
            }
            monitor_main(a, ready)
        }
        Err(e) => {
            eprintln!("longshore monitor: bad arguments: {e}");
            125
        }
    };
    std::process::exit(code);
}

/// True when the container's capabilities include CAP_SYS_PTRACE (`--privileged`,
/// `--cap-add SYS_PTRACE` or `ALL`): processes of this program that enter it must then run
/// from a sealed copy ([`longshore_container::process::reexec_sealed`]).
pub fn grants_ptrace(container_dir: &Path) -> bool {
    let Ok(data) = fs::read(container_dir.join("config.json")) else {
        return false;
    };
    let Ok(r) = serde_json::from_slice::<crate::containers::ContainerRecord>(&data) else {
        return false;
    };
    let hc = &r.host_config;
    hc.privileged
        || hc.cap_add.iter().any(|c| {
            let c = c.to_ascii_uppercase();
            c == "ALL" || c == "SYS_PTRACE" || c == "CAP_SYS_PTRACE"
        })
}

/// True while a monitor holds the container's lock.
pub(crate) fn monitor_alive(dir: &Path) -> bool {
    let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .open(dir.join("monitor.lock"))
    else {
        return false;
    };
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => false,
        Err(_) => true,
    }
}

/// Waits until no monitor holds the container's lock, up to `timeout`.
pub(crate) fn wait_monitor_gone(dir: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    while monitor_alive(dir) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    true
}

/// Parses the monitor's one-line report: `ok` or `err CODE MESSAGE`.
/// A failure as one report line: `err CODE MESSAGE` (the monitor's to the engine, the
/// starter's to the monitor).
fn err_line(e: &Error) -> String {
    format!("err {} {}", e.exit_code(), e.to_string().replace('\n', " "))
}

/// `CODE MESSAGE` (after `err `) as the code (125 when unreadable) and the message.
fn split_err(rest: &str) -> (i32, &str) {
    let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
    (code.parse().unwrap_or(125), msg)
}

pub(crate) fn parse_report(line: &str) -> Result<()> {
    if line == "ok" {
        return Ok(());
    }
    let (code, msg) = split_err(line.strip_prefix("err ").unwrap_or(line));
    match code {
        c @ (126 | 127) => Err(Error::Exec {
            reason: msg.to_string(),
            code: c,
        }),
        _ => Err(Error::Io {
            what: "start the container".into(),
            source: io::Error::other(msg.to_string()),
        }),
    }
}

struct Reporter(Option<fs::File>);

impl Reporter {
    /// A line before the report (the engine reads on).
    fn note(&mut self, line: &str) {
        if let Some(f) = &mut self.0 {
            let _ = writeln!(f, "{line}");
        }
    }

    /// The report: the one line the engine's start waits for.
    fn send(&mut self, line: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Takes the engine's report pipe (descriptor `fd`, its stdout when the engine spawned this
/// process) to a close-on-exec descriptor above stderr, puts /dev/null where it was, and
/// closes every other descriptor above stderr: what the engine's spawn no longer does
/// between its fork and exec (it spawns without a fork of its own memory: see
/// `Engine::spawn_monitor`). The caller's descriptors would otherwise stay open as long as
/// the container runs (a script's pipe on fd 9, never reaching its end).
fn take_ready_fd(fd: Option<i32>) -> Option<fs::File> {
    let kept = fd.and_then(|fd| {
        // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor table: a copy of `fd` at the
        // lowest free number from 3, or EBADF when it is not open.
        let k = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        // SAFETY: `k` was just opened by fcntl and nothing else owns it.
        (k >= 3).then(|| unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(k) })
    });
    let k = kept.as_ref().map_or(2, |f| f.as_raw_fd()) as u32;
    // everything from 3 but the copy (kernels before 5.9 have no close_range: they keep
    // them, as the engine's spawn did before 5.11)
    for (first, last) in [(3, k.wrapping_sub(1)), (k + 1, u32::MAX)] {
        if first <= last {
            close_range(first, last);
        }
    }
    if let Some(fd) = fd.filter(|fd| (0..=2).contains(fd)) {
        null_onto(fd);
    }
    kept
}

/// Puts /dev/null (read and write) on standard descriptor `fd` (0, 1 or 2), in place of
/// a pipe the engine passed there.
fn null_onto(fd: i32) {
    debug_assert!((0..=2).contains(&fd));
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        // SAFETY: dup2 onto a standard descriptor, which no Rust object in this process
        // owns (std's stdio handles use the numbers without owning them).
        unsafe {
            libc::dup2(null.as_raw_fd(), fd);
        }
    }
}

/// Waits for the engine's go on stdin (one byte), then puts /dev/null there. False when
/// the pipe ended without it (the start failed before the monitor was needed).
fn wait_for_go() -> bool {
    // SAFETY: fd 0 is open for the whole call (std never closes it) and is only read here.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let mut byte = [0u8; 1];
    let go = loop {
        match rustix::io::read(stdin, &mut byte) {
            Ok(n) => break n == 1 && byte[0] == b'g',
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break false,
        }
    };
    null_onto(0);
    go
}

/// Closes descriptors `first..=last` (none when the kernel has no close_range).
fn close_range(first: u32, last: u32) {
    // SAFETY: close_range only closes descriptors; the process is single-threaded here and
    // no Rust object owns a descriptor in the range (see `take_ready_fd`).
    unsafe {
        libc::syscall(libc::SYS_close_range, first, last, 0u32);
    }
}

fn monitor_main(args: MonitorArgs, ready: Option<i32>) -> i32 {
    let ready = take_ready_fd(ready);
    // detach: the engine waits for this process; the monitor lives on in a child
    // SAFETY: the process is single-threaded here (just exec'd, no thread started), so the
    // child may run any code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            if let Some(mut f) = ready {
                let _ = writeln!(f, "err 125 fork the monitor: {e}");
            }
            return 125;
        }
    }
    let mut reporter = Reporter(ready);
    // a session of its own (the first process was a process group's leader, which may not
    // start one): no terminal's signals or hangup reach the monitor
    if let Err(e) = nix::unistd::setsid() {
        reporter.send(&format!("err 125 start a session for the monitor: {e}"));
        return 125;
    }
    // the containers' inits are made by a starter child and come back to this process
    // when it exits
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        reporter.send(&format!("err 125 become a child subreaper: {e}"));
        return 125;
    }
    // what needs nothing the start writes (the lock, the container's config, the attach
    // socket) is done while the engine mounts and writes: off the path from its go to the
    // container's creation
    let mut m = match Monitor::new(args) {
        Ok(m) => m,
        Err(e) => {
            reporter.send(&format!("err 125 {e}"));
            return 125;
        }
    };
    if m.args.wait_for_attach {
        // the attach socket listens: the engine connects the clients it brings (a foreground
        // run's, the API's attaches made before the start) while the container is set up,
        // and they are there to take once it is created
        reporter.note(LISTENING);
    }
    if m.args.wait_for_go && !wait_for_go() {
        // the start failed before it needed the monitor: nothing of it stays
        let _ = fs::remove_file(attach_socket(&m.args.id));
        return 0;
    }
    // the state the start wrote right before its go
    if let Err(e) = m.load_state() {
        let _ = fs::remove_file(attach_socket(&m.args.id));
        reporter.send(&format!("err 125 {e}"));
        return 125;
    }
    let code = m.run(&mut reporter);
    m.finish();
    code
}

struct Client {
    stream: UnixStream,
    stdout: bool,
    stderr: bool,
    stdin: bool,
    inbuf: Vec<u8>,
}

struct Monitor {
    args: MonitorArgs,
    dir: PathBuf,
    _lock: fs::File,
    state: ContainerState,
    listener: UnixListener,
    clients: Vec<Client>,
    log: Option<JsonLog>,
    open_stdin: bool,
    tty: bool,
    auto_remove: bool,
    restart: crate::containers::RestartPolicy,
    /// The container's event attributes (name, image, labels).
    attributes: Vec<(String, String)>,
    /// Its health check, when it has one.
    healthcheck: Option<crate::health::HealthConfig>,
    /// Stops the running health prober.
    health_stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// What the last [`Monitor::save`] wrote: the same state again is not rewritten.
    saved: Vec<u8>,
    /// A `--rm` container's engine, opened (with its store) on another thread while this
    /// one takes the exited container down, for the removal that follows.
    removal_engine: Option<std::thread::JoinHandle<Option<crate::Engine>>>,
}

impl Monitor {
    fn new(args: MonitorArgs) -> Result<Monitor> {
        let dir = args.root.join("containers").join(&args.id);
        let lock_path = dir.join("monitor.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io(format!("open {}", lock_path.display())))?;
        // `monitor_alive` (a wait polling, `rm`, `ps`) holds a shared lock for an instant:
        // retry for a while, so that only a monitor that really runs refuses this one
        let mut tries = 0;
        while let Err(e) =
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            tries += 1;
            if tries > 200 {
                return Err(Error::io("lock the container's monitor")(e.into()));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let record: crate::containers::ContainerRecord =
            crate::containers::read_json(&dir.join("config.json"))?;
        fs::create_dir_all(SOCKET_DIR).map_err(Error::io(format!("create {SOCKET_DIR}")))?;
        let sock = attach_socket(&args.id);
        let _ = fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)
            .map_err(Error::io(format!("listen on {}", sock.display())))?;
        listener
            .set_nonblocking(true)
            .map_err(Error::io("attach socket"))?;
        let log = (record.host_config.log_driver != "none").then(|| JsonLog {
            path: dir.join(format!("{}-json.log", args.id)),
            max_size: record
                .host_config
                .log_opts
                .get("max-size")
                .and_then(|s| crate::containers::parse_memory(s).ok())
                .map(|n| n as u64),
            max_file: record
                .host_config
                .log_opts
                .get("max-file")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1),
            file: None,
        });
        Ok(Monitor {
            dir,
            _lock: lock,
            state: ContainerState::default(),
            listener,
            clients: Vec::new(),
            log,
            open_stdin: record.config.open_stdin,
            tty: record.config.tty,
            auto_remove: record.host_config.auto_remove,
            restart: record.host_config.restart_policy.clone(),
            attributes: {
                let mut a = vec![
                    ("image".to_string(), record.config.image.clone()),
                    ("name".to_string(), record.name.clone()),
                ];
                a.extend(record.config.labels.clone());
                a
            },
            healthcheck: record.config.healthcheck.clone().filter(|h| h.enabled()),
            health_stop: None,
            saved: Vec::new(),
            removal_engine: None,
            args,
        })
    }

    /// Reads the container's state (the start's, written right before its go).
    fn load_state(&mut self) -> Result<()> {
        self.state = crate::containers::read_json(&self.dir.join("state.json"))?;
        Ok(())
    }

    fn save(&mut self) {
        let data = serde_json::to_vec(&self.state).expect("state serializes");
        // each write is a new file renamed over the old one (~0.2 ms on ext4): the state
        // that finishing left as it was (no network to take down) is not written twice
        if data != self.saved && write_atomic(&self.dir.join("state.json"), &data).is_ok() {
            self.saved = data;
        }
    }

    /// The engine options the monitor's own engine opens with.
    fn engine_options(&self) -> crate::EngineOptions {
        crate::EngineOptions {
            driver: self.args.driver.clone(),
            network: self.args.network.clone().map(Into::into),
            ..Default::default()
        }
    }

    /// Runs the container until it stops for good; returns its last exit code.
    fn run(&mut self, reporter: &mut Reporter) -> i32 {
        let mut first = true;
        let mut delay = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let code = match self.run_once(reporter, first) {
                Ok(code) => code,
                Err(e) => {
                    reporter.send(&err_line(&e));
                    self.state.error = e.to_string();
                    self.state.status = if self.state.started_at == crate::containers::ZERO_TIME {
                        "created".into()
                    } else {
                        "exited".into()
                    };
                    self.state.running = false;
                    self.state.restarting = false;
                    self.state.pid = 0;
                    self.state.exit_code = e.exit_code();
                    self.save();
                    return e.exit_code();
                }
            };
            first = false;
            crate::events::record(&self.args.root, "container", "die", &self.args.id, {
                let mut a = self.attributes.clone();
                a.push(("exitCode".into(), code.to_string()));
                a
            });
            let by_user = self.dir.join("stopped-by-user").exists();
            let again = match self.restart.name.as_str() {
                "always" => !by_user,
                "unless-stopped" => !by_user,
                "on-failure" => {
                    code != 0
                        && !by_user
                        && (self.restart.maximum_retry_count == 0
                            || self.state.restart_count < self.restart.maximum_retry_count)
                }
                _ => false,
            };
            if !again {
                return code;
            }
            // Docker's backoff: doubling from 100 ms, reset after 10 s of running
            if started.elapsed() > Duration::from_secs(10) {
                delay = Duration::from_millis(100);
            }
            self.state.restarting = true;
            self.state.status = "restarting".into();
            self.save();
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(60));
            if self.dir.join("stopped-by-user").exists() {
                return code;
            }
            self.state.restart_count += 1;
        }
    }

    fn run_once(&mut self, reporter: &mut Reporter, first: bool) -> Result<i32> {
        use longshore_container::Container;
        let rt_root = self.args.root.join("runtime");
        let id = self.args.id.clone();
        // a stale runtime state (a monitor killed earlier) would refuse the id
        if let Ok(mut old) = Container::load(&rt_root, &id) {
            let _ = old.delete(true);
        }
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (in_r, in_w) = if self.open_stdin {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let null = fs::File::open("/dev/null").map_err(Error::io("open /dev/null"))?;
        let console = if self.tty {
            let path = Path::new(SOCKET_DIR).join(format!("{id}.console"));
            let _ = fs::remove_file(&path);
            let l = UnixListener::bind(&path).map_err(Error::io("console socket"))?;
            Some((l, path))
        } else {
            None
        };
        // The container is made and started by a starter: a forked child while this
        // process has one thread (the first run), so that none of the setting up (spec,
        // seccomp, cgroups, the runtime's code and buffers) ever touches the monitor's
        // memory, which stays small for the container's lifetime; a thread otherwise
        // (a restart, with a health prober running). The monitor is a child subreaper:
        // the init, made by the starter, is reparented to it when the starter exits.
        let job = StarterJob {
            id: id.clone(),
            bundle: self.dir.join("bundle"),
            rt_root: rt_root.clone(),
            console: console.as_ref().map(|(_, p)| p.clone()),
            // the pipes' child ends: the starter's, closed here once it has them
            stdin: in_r.map_or_else(|| null.into(), Into::into),
            stdout: out_w,
            stderr: err_w,
        };
        let mut starter = Starter::spawn(job)?;
        let created = starter.read();
        if let Err(e) = created {
            starter.reap();
            return Err(e);
        }
        let (mut out, err, mut stdin): (Option<OwnedFd>, Option<OwnedFd>, Option<OwnedFd>) =
            match console {
                Some((l, path)) => {
                    let master = (|| {
                        let (conn, _) = l.accept()?;
                        longshore_container::receive_console(std::os::fd::AsFd::as_fd(&conn))
                            .map_err(io::Error::other)
                    })();
                    let _ = fs::remove_file(&path);
                    let master = master.map_err(Error::io("receive the container's terminal"));
                    let master = match master {
                        Ok(m) => m,
                        Err(e) => {
                            starter.abort();
                            return Err(e);
                        }
                    };
                    let dup = master.try_clone().map_err(Error::io("dup the terminal"))?;
                    (Some(master), None, Some(dup))
                }
                None => (Some(out_r), Some(err_r), in_w),
            };
        let mut err = err;
        if first && self.args.wait_for_attach {
            // the client attaches before the process runs, so it sees all its output: the
            // engine learns now that the container is ready, the client learns of a
            // failure to start from the attach stream
            reporter.send("ok");
            let deadline = Instant::now() + Duration::from_secs(60);
            let want = self.args.attach_clients.max(1);
            while self.clients.len() < want && Instant::now() < deadline {
                let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(100u16));
                self.accept_clients();
            }
        }
        let started = starter.start();
        starter.reap();
        let (pid, warnings) = match started {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("longshore: Error response from daemon: {e}\n");
                let mut frame = vec![2, 0, 0, 0];
                frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                frame.extend_from_slice(msg.as_bytes());
                for cl in &mut self.clients {
                    let _ = cl.stream.write_all(&frame);
                }
                return Err(e);
            }
        };
        self.state.warnings = warnings;
        self.state.pid = pid;
        self.state.pid_start_time = longshore_container::state::proc_stat(pid)
            .map(|s| s.1)
            .unwrap_or(0);
        self.state.status = "running".into();
        self.state.running = true;
        self.state.restarting = false;
        self.state.paused = false;
        self.state.oom_killed = false;
        self.state.started_at = crate::containers::now_rfc3339();
        self.state.monitor_pid = std::process::id() as i32;
        self.save();
        reporter.send("ok");
        // recorded here, before this loop can see the init exit and record its `die`, so
        // that a short command's events come in order (the engine recorded `start` after
        // its job returned, and `die` could come first); a restart is a start too
        crate::events::record(
            &self.args.root,
            "container",
            "start",
            &self.args.id,
            self.attributes.clone(),
        );
        if let Some(hc) = &self.healthcheck {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            crate::health::Prober {
                root: self.args.root.clone(),
                id: id.clone(),
                dir: self.dir.clone(),
                config: hc.clone(),
                driver: self.args.driver.clone(),
                attributes: self.attributes.clone(),
            }
            .spawn(stop.clone());
            self.health_stop = Some(stop);
        }

        // clients that attached before the start may have sent stdin with their header
        for i in 0..self.clients.len() {
            self.client_input(i, &mut stdin, false);
        }
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).expect("a positive pid"),
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| Error::io("pidfd_open")(e.into()))?;
        let mut exited = false;
        // not zeroed: a read touches only the pages it fills, so an idle container's
        // monitor keeps no 64 KiB of zeros (calloc clears reused heap memory)
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        // what setting up needed (spec parsing, seccomp, the runtime's code and buffers) is
        // given back before the first idle wait: the monitor stays small for the
        // container's life
        let mut set_up = true;
        while !exited || out.is_some() || err.is_some() {
            let mut fds: Vec<PollFd> = Vec::new();
            let listener = self.listener.as_fd();
            fds.push(PollFd::new(listener, PollFlags::POLLIN));
            fds.push(PollFd::new(
                pidfd.as_fd(),
                if exited {
                    PollFlags::empty()
                } else {
                    PollFlags::POLLIN
                },
            ));
            let o_idx = fds.len();
            if let Some(o) = &out {
                fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
            }
            let e_idx = fds.len();
            if let Some(e) = &err {
                fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            }
            let c_idx = fds.len();
            let client_fds: Vec<BorrowedFd<'_>> =
                self.clients.iter().map(|c| c.stream.as_fd()).collect();
            for f in &client_fds {
                fds.push(PollFd::new(*f, PollFlags::POLLIN));
            }
            // after the init exits, output still buffered is drained; a pipe held open by an
            // orphaned process inside must not keep the monitor forever
            let timeout = if exited {
                PollTimeout::from(200u16)
            } else {
                PollTimeout::NONE
            };
            // the release waits for the first moment with nothing to do: a short command
            // (`run --rm true`) has exited by now, and its exit is handled first (the
            // release took 0.4-2 ms, on the path to `run`'s return). What is ready stays
            // ready (poll is level-triggered) for the poll below, the only one that waits:
            // a second waiting call site after the release faulted another block of code
            // back in (+64 kB resident in every idle monitor)
            if set_up && matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0)) {
                set_up = false;
                give_back_memory();
            }
            let n = match poll(&mut fds, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::io("poll")(e.into())),
            };
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            let listener_ready = ready(0);
            let init_exited = ready(1);
            let out_ready = out.is_some() && ready(o_idx);
            let err_ready = err.is_some() && ready(e_idx);
            let clients_ready: Vec<bool> =
                (0..client_fds.len()).map(|i| ready(c_idx + i)).collect();
            drop(fds);
            drop(client_fds);
            if n == 0 && exited {
                break;
            }
            if init_exited {
                exited = true;
            }
            if out_ready && !self.pump(&mut out, 1, &mut buf) {
                out = None;
                if self.tty {
                    stdin = None;
                }
            }
            if err_ready && !self.pump(&mut err, 2, &mut buf) {
                err = None;
            }
            for (i, r) in clients_ready.into_iter().enumerate().rev() {
                if r && !self.client_input(i, &mut stdin, true) {
                    self.clients.remove(i);
                }
            }
            if listener_ready {
                let before = self.clients.len();
                self.accept_clients();
                // what a new client sent with its header is already buffered
                for i in before..self.clients.len() {
                    self.client_input(i, &mut stdin, false);
                }
            }
        }
        drop(stdin);
        if let Some(stop) = self.health_stop.take() {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let code = wait_exit(pid).map_err(Error::io(format!("wait for container {id}")))?;
        if self.auto_remove && self.removal_engine.is_none() {
            // a `--rm` container is not restarted (`--restart` is refused with it): its
            // removal follows, and opening the store for it (the database, its log) runs
            // beside the runtime's delete, the state's write and the unmount below
            let (root, opts) = (self.args.root.clone(), self.engine_options());
            self.removal_engine = std::thread::Builder::new()
                .spawn(move || {
                    let engine = crate::Engine::open(&root, opts).ok()?;
                    let _ = engine.store();
                    Some(engine)
                })
                .ok();
        }
        let rc = Container::load(&rt_root, &id).ok();
        let oom = rc
            .as_ref()
            .and_then(|c| c.cgroup_paths().get("memory").cloned())
            // v1: memory.oom_control; v2 (a unified cgroup): memory.events
            .and_then(|p| {
                fs::read_to_string(p.join("memory.oom_control"))
                    .or_else(|_| fs::read_to_string(p.join("memory.events")))
                    .ok()
            })
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                })
            })
            .is_some_and(|n| n > 0);
        if let Some(mut c) = rc {
            let _ = c.delete(true);
        }
        if let Some(l) = &mut self.log {
            l.flush_partial();
        }
        self.state.status = "exited".into();
        self.state.running = false;
        self.state.paused = false;
        self.state.pid = 0;
        self.state.exit_code = code;
        self.state.oom_killed = oom;
        self.state.finished_at = crate::containers::now_rfc3339();
        self.save();
        Ok(code)
    }

    /// Reads what the container wrote on one stream into the log and the clients.
    /// Returns false at end of stream.
    fn pump(&mut self, fd: &mut Option<OwnedFd>, stream: u8, buf: &mut Vec<u8>) -> bool {
        let Some(f) = fd else { return false };
        buf.clear();
        let n = match rustix::io::read(f.as_fd(), rustix::buffer::spare_capacity(buf)) {
            Ok(0) | Err(rustix::io::Errno::IO) => return false,
            Ok(n) => n,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => return true,
            Err(_) => return false,
        };
        let data = &buf[..n];
        if let Some(l) = &mut self.log {
            l.write(stream, data);
        }
        let mut frame = Vec::with_capacity(8 + n);
        frame.extend_from_slice(&[stream, 0, 0, 0]);
        frame.extend_from_slice(&(n as u32).to_be_bytes());
        frame.extend_from_slice(data);
        self.clients.retain_mut(|c| {
            let want = if stream == 1 { c.stdout } else { c.stderr };
            !want || c.stream.write_all(&frame).is_ok()
        });
        true
    }

    fn accept_clients(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
            let mut line = String::new();
            let mut r = BufReader::new(&stream);
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let pending = r.buffer().to_vec();
            let h: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_default();
            let _ = stream.set_read_timeout(None);
            // the acknowledgement: from now on this client gets every byte of output
            if (&stream).write_all(&ATTACH_ACK).is_err() {
                continue;
            }
            let _ = stream.set_nonblocking(true);
            self.clients.push(Client {
                stdout: h["stdout"].as_bool().unwrap_or(true),
                stderr: h["stderr"].as_bool().unwrap_or(true),
                stdin: h["stdin"].as_bool().unwrap_or(false),
                stream,
                inbuf: pending,
            });
        }
    }

    /// Reads frames from a client: stdin data, resize, stdin close. False when it left.
    fn client_input(&mut self, i: usize, stdin: &mut Option<OwnedFd>, read: bool) -> bool {
        let c = &mut self.clients[i];
        let mut tmp = [0u8; 8 * 1024];
        let mut open = true;
        if read {
            match c.stream.read(&mut tmp) {
                Ok(0) => open = false,
                Ok(n) => c.inbuf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => open = false,
            }
        }
        let mut frames = VecDeque::new();
        while c.inbuf.len() >= 8 {
            let len = u32::from_be_bytes([c.inbuf[4], c.inbuf[5], c.inbuf[6], c.inbuf[7]]) as usize;
            if c.inbuf.len() < 8 + len {
                break;
            }
            let kind = c.inbuf[0];
            let payload = c.inbuf[8..8 + len].to_vec();
            c.inbuf.drain(..8 + len);
            frames.push_back((kind, payload));
        }
        let wants_stdin = c.stdin;
        for (kind, payload) in frames {
            match kind {
                0 if wants_stdin => {
                    if let Some(f) = stdin.as_ref()
                        && nix::unistd::write(f, &payload).is_err()
                    {
                        *stdin = None;
                    }
                }
                3 => {
                    if let (Some(f), Ok(s)) = (stdin.as_ref(), std::str::from_utf8(&payload)) {
                        let mut it = s.split_whitespace().filter_map(|x| x.parse::<u16>().ok());
                        if let (Some(rows), Some(cols)) = (it.next(), it.next()) {
                            set_winsize(f.as_fd(), rows, cols);
                        }
                    }
                }
                4 if wants_stdin && !self.tty => *stdin = None,
                _ => {}
            }
        }
        open
    }

    /// After the last run: tell clients the exit code, take the network down, unmount,
    /// and remove the container if `--rm` asked for it.
    fn finish(&mut self) {
        if !self.auto_remove {
            self.tell_exit();
        }
        let _ = fs::remove_file(attach_socket(&self.args.id));
        let opts = self.engine_options();
        if self.state.network.is_some() || self.state.netns.is_some() {
            let net = opts
                .network
                .clone()
                .unwrap_or_else(crate::engine::default_network);
            let endpoints = crate::network::has_endpoints(&self.state, &self.dir);
            // the namespace is released first (the container's processes are gone), so
            // the controller leaves the veths to the kernel instead of waiting ~20 ms
            // for each deletion (libnetwork's `disconnect_dying`)
            let dying = match self.state.netns.take() {
                Some(p) => {
                    crate::containers::unpin_netns_path(&p);
                    true
                }
                None => false,
            };
            if endpoints
                && let Ok(host) = longshore_network::netns::NetnsRef::current()
                && let Ok(ctl) =
                    longshore_network::Controller::new(self.args.root.join("network"), host, net)
            {
                crate::network::disconnect_all(&ctl, &self.args.id, dying);
                if !dying {
                    let _ = ctl.flush();
                }
            }
            self.state.network = None;
        }
        // the rootfs: unmounted here; the layer stays until `rm`
        crate::containers::unmount_rootfs(&self.dir);
        self.save();
        if self.auto_remove {
            // the lock must be free for `rm`, which waits for the monitor to be gone
            let lock = std::mem::replace(&mut self._lock, tempfile_or_null());
            drop(lock);
            let engine = match self.removal_engine.take() {
                Some(opening) => opening.join().ok().flatten(),
                None => crate::Engine::open(&self.args.root, opts).ok(),
            };
            let removal = engine.as_ref().and_then(|engine| {
                engine
                    .remove_container_deferred(
                        &self.args.id,
                        &crate::containers::RemoveOptions {
                            force: true,
                            volumes: true,
                            link: false,
                        },
                    )
                    .ok()
            });
            // `run --rm` returns when it has the exit code and the container is gone: it
            // gets the code once the container is gone, and the files are deleted after
            self.tell_exit();
            drop(removal);
            // off everyone's path now: a long metadata log would be read whole by the
            // next command that opens the store alone (the next `run --rm`)
            if let Some(store) = engine.as_ref().and_then(|e| e.store().ok()) {
                let _ = store.compact_log(COMPACT_LOG_OVER);
            }
        }
    }

    /// Sends the exit code to the attached clients and lets them go.
    fn tell_exit(&mut self) {
        let code = self.state.exit_code;
        for c in &mut self.clients {
            let mut frame = vec![5, 0, 0, 0, 0, 0, 0, 4];
            frame.extend_from_slice(&code.to_be_bytes());
            let _ = c.stream.set_nonblocking(false);
            let _ = c.stream.write_all(&frame);
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        self.clients.clear();
    }
}

/// Gives back what setting a container up left mapped: the pages of the program's code
/// and read-only data, the free heap, and the stack below the caller's frame.
///
/// The code pages are shared with the page cache, but each one the monitor maps counts in
/// its proportional set size, and a page fault maps up to 16 pages around the one touched:
/// starting a container left ~4 MiB of the binary's text mapped in every monitor, of which
/// its idle poll loop needs a few pages. Called right before the monitor waits, so that
/// little code runs between the release and the wait.
#[inline(never)]
fn give_back_memory() {
    let stack = release_file_pages();
    // after the above, so that the buffers /proc was read into are given back too
    // SAFETY: malloc_trim only releases free heap memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    // the deepest frames of setting up (the runtime's, spec parsing) lie below this one
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    if let Some((lo, hi)) = stack
        && (lo..hi).contains(&sp)
    {
        // one page of room below this frame, for the madvise call itself
        let end = (sp & !4095).saturating_sub(4096);
        if end > lo {
            // SAFETY: [lo, end) is the part of this thread's own stack mapping more than a
            // page below the live frames: no frame lives there (a signal handler's frame
            // is built below the stack pointer, on pages that fault back in zeroed);
            // MADV_DONTNEED drops its pages, which read back as zeros when touched again.
            unsafe {
                libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_DONTNEED);
            }
        }
    }
}

/// Drops the clean file pages of every private, read-only, file-backed mapping.
///
/// A read-only private mapping can still hold private copies of pages (a RELRO segment
/// the dynamic loader relocated before protecting it): `/proc/self/pagemap` tells them
/// apart (a present page without the file bit is a copy; a swapped one is one too), and
/// only runs of pages that are file pages or absent are dropped, which changes no content:
/// they fault back in from the page cache unchanged. Returns the main thread's stack
/// mapping, found on the way. (The daemon calls it too, once set up: see
/// `api::server::run_with`.)
pub(crate) fn release_file_pages() -> Option<(usize, usize)> {
    use std::os::unix::fs::FileExt;
    const PRESENT: u64 = 1 << 63;
    const SWAPPED: u64 = 1 << 62;
    const FILE: u64 = 1 << 61;
    let (Ok(maps), Ok(pagemap)) = (
        fs::read_to_string("/proc/self/maps"),
        fs::File::open("/proc/self/pagemap"),
    ) else {
        return None;
    };
    let mut stack = None;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize);
    let mut entries = Vec::new();
    let mut drops: Vec<(usize, usize)> = Vec::new();
    for line in maps.lines() {
        let mut words = line.split_whitespace();
        let (Some(range), Some(perms), Some(path)) = (words.next(), words.next(), words.nth(3))
        else {
            continue;
        };
        let Some((Ok(lo), Ok(hi))) = range
            .split_once('-')
            .map(|(a, b)| (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)))
        else {
            continue;
        };
        if path == "[stack]" {
            stack = Some((lo, hi));
        }
        if perms.as_bytes().get(1) != Some(&b'-') || !perms.ends_with('p') || !path.starts_with('/')
        {
            continue;
        }
        let pages = (hi - lo) / page;
        entries.resize(pages * 8, 0u8);
        if pagemap
            .read_exact_at(&mut entries, (lo / page * 8) as u64)
            .is_err()
        {
            continue;
        }
        let droppable = |i: usize| {
            let e = u64::from_ne_bytes(entries[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            e & SWAPPED == 0 && (e & PRESENT == 0 || e & FILE != 0)
        };
        let mut i = 0;
        while i < pages {
            if !droppable(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < pages && droppable(i) {
                i += 1;
            }
            drops.push((lo + start * page, (i - start) * page));
        }
    }
    // dropped only once every mapping was read: the reading (this function, the string
    // search, the pagemap reads) runs from the binary's own text, and dropping that text
    // before the end faulted back in a whole page-cache folio (up to 512 KiB here) for
    // each function reached afterwards, in every idle monitor. After these calls only
    // this loop's folio comes back.
    for (addr, len) in drops {
        // SAFETY: [addr, addr + len) are pages of a private read-only file mapping of this
        // process that were either absent or clean page-cache pages when pagemap was read
        // above, and still are (nothing in this process writes to a read-only mapping; a
        // fault since brought in a page-cache page): dropping them only unmaps them, and
        // they fault back in with the same content.
        unsafe {
            libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
    stack
}

fn tempfile_or_null() -> fs::File {
    fs::File::open("/dev/null").expect("/dev/null opens")
}

fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call;
    // fd is an open pty master.
    unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

/// What a starter needs to make one run of the container.
struct StarterJob {
    id: String,
    bundle: PathBuf,
    rt_root: PathBuf,
    console: Option<PathBuf>,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

enum StarterHandle {
    Child(nix::unistd::Pid),
    Thread(std::thread::JoinHandle<()>),
}

/// The monitor's end of a starter: one line per step over a socket pair.
/// starter → monitor: `created` | `err CODE MSG`; monitor → starter: `start` (or the
/// socket closed: delete the container); starter → monitor: `started PID WARNINGS-JSON` |
/// `err CODE MSG`.
struct Starter {
    sock: BufReader<UnixStream>,
    handle: Option<StarterHandle>,
}

impl Starter {
    fn spawn(job: StarterJob) -> Result<Starter> {
        let (mine, theirs) = UnixStream::pair().map_err(Error::io("socketpair"))?;
        let handle = if single_threaded() {
            // SAFETY: this process has a single thread (checked just above), so the child
            // may run any code; it leaves with _exit and never returns into the caller.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    drop(mine);
                    starter_main(job, theirs);
                    // SAFETY: _exit ends this forked child at once, without running the
                    // parent's atexit handlers or flushing its copied buffers.
                    unsafe { libc::_exit(0) }
                }
                Ok(nix::unistd::ForkResult::Parent { child }) => StarterHandle::Child(child),
                Err(e) => return Err(Error::io("fork the container's starter")(e.into())),
            }
        } else {
            StarterHandle::Thread(
                std::thread::Builder::new()
                    .name("longshore-start".into())
                    .spawn(move || starter_main(job, theirs))
                    .map_err(Error::io("start the container's starter"))?,
            )
        };
        Ok(Starter {
            sock: BufReader::new(mine),
            handle: Some(handle),
        })
    }

    /// The starter's next report: Ok(the words after the step's name).
    fn read(&mut self) -> Result<String> {
        let mut line = String::new();
        let _ = self.sock.read_line(&mut line);
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("err ") {
            let (code, msg) = split_err(rest);
            return Err(Error::Exec {
                reason: msg.to_string(),
                code,
            });
        }
        if line.is_empty() {
            return Err(Error::io("start the container")(io::Error::other(
                "its starter ended without a word",
            )));
        }
        Ok(line.split_once(' ').map_or("", |(_, r)| r).to_string())
    }

    /// Releases the created container; its pid and the runtime's warnings.
    fn start(&mut self) -> Result<(i32, Vec<String>)> {
        self.sock
            .get_mut()
            .write_all(b"start\n")
            .map_err(Error::io("release the container"))?;
        let rest = self.read()?;
        let (pid, warnings) = rest.split_once(' ').unwrap_or((&rest, "[]"));
        let pid = pid.parse::<i32>().map_err(|_| {
            Error::io("start the container")(io::Error::other(format!(
                "bad report from its starter: {rest:?}"
            )))
        })?;
        Ok((pid, serde_json::from_str(warnings).unwrap_or_default()))
    }

    /// Tells the starter to delete the created container, and waits for it.
    fn abort(mut self) {
        let _ = self.sock.get_mut().shutdown(std::net::Shutdown::Both);
        self.reap();
    }

    /// Waits for the starter to end (a forked one is reaped here: from then on, the
    /// container's init is this process's child).
    fn reap(&mut self) {
        match self.handle.take() {
            Some(StarterHandle::Child(pid)) => {
                while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
            }
            Some(StarterHandle::Thread(t)) => {
                let _ = t.join();
            }
            None => {}
        }
    }
}

/// Makes and starts the container, reporting each step to the monitor.
fn starter_main(job: StarterJob, sock: UnixStream) {
    use longshore_container::{Container, Stdio};
    let mut sock = BufReader::new(sock);
    let send = |sock: &mut BufReader<UnixStream>, line: String| {
        let _ = sock.get_mut().write_all(format!("{line}\n").as_bytes());
    };
    let id = job.id.clone();
    let builder = Container::builder(&job.id)
        .bundle(&job.bundle)
        .root(&job.rt_root);
    let pipes = Stdio::Fds {
        stdin: job.stdin,
        stdout: job.stdout,
        stderr: job.stderr,
    };
    let builder = match &job.console {
        Some(path) => {
            drop(pipes);
            builder.console_socket(path).stdio(Stdio::Null)
        }
        None => builder.stdio(pipes),
    };
    let mut c = match builder.create_attached() {
        Ok(c) => c,
        Err(e) => {
            let e = Error::runtime(format!("create container {id}"))(e);
            return send(&mut sock, err_line(&e));
        }
    };
    send(&mut sock, "created".into());
    let mut line = String::new();
    let _ = sock.read_line(&mut line);
    if line.trim_end() != "start" {
        let _ = c.delete(true);
        return;
    }
    if let Err(e) = c.start() {
        let e = Error::runtime(format!("start container {id}"))(e);
        let _ = c.delete(true);
        return send(&mut sock, err_line(&e));
    }
    let warnings = serde_json::to_string(c.warnings()).unwrap_or_else(|_| "[]".into());
    send(&mut sock, format!("started {} {warnings}", c.pid()));
}

/// True when this process runs one thread.
fn single_threaded() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim() == "1"))
        })
        .unwrap_or(false)
}

/// Waits for the container's init (this process's child) to end; its exit code, or
/// 128 + the signal that killed it.
fn wait_exit(pid: i32) -> io::Result<i32> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe")(e.into()))
}

/// The json-file log driver: one JSON object per line, Docker's on-disk format,
/// rotated by size.
struct JsonLog {
    path: PathBuf,
    max_size: Option<u64>,
    max_file: u32,
    file: Option<(fs::File, u64)>,
}

impl JsonLog {
    fn write(&mut self, stream: u8, data: &[u8]) {
        let name = if stream == 2 { "stderr" } else { "stdout" };
        let time = crate::containers::now_rfc3339();
        // one entry per line, each appended (and rotated) on its own, as Docker's driver
        let mut out = Vec::new();
        for line in data.split_inclusive(|b| *b == b'\n') {
            let entry = serde_json::json!({
                "log": String::from_utf8_lossy(line),
                "stream": name,
                "time": time,
            });
            out.clear();
            serde_json::to_writer(&mut out, &entry).expect("json");
            out.push(b'\n');
            self.append(&out);
        }
    }

    fn flush_partial(&mut self) {
        if let Some((f, _)) = &mut self.file {
            let _ = f.flush();
        }
    }

    fn append(&mut self, data: &[u8]) {
        if self.file.is_none() {
            let Ok(f) = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            else {
                return;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some((f, len));
        }
        if let (Some(max), Some((_, len))) = (self.max_size, &self.file)
            && *len > 0
            && len + data.len() as u64 > max
        {
            self.rotate();
            return self.append(data);
        }
        if let Some((f, len)) = &mut self.file
            && f.write_all(data).is_ok()
        {
            *len += data.len() as u64;
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let p = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_file <= 1 {
            let _ = fs::remove_file(&self.path);
        } else {
            let _ = fs::remove_file(p(self.max_file - 1));
            for n in (1..self.max_file - 1).rev() {
                let _ = fs::rename(p(n), p(n + 1));
            }
            let _ = fs::rename(&self.path, p(1));
        }
        if let Ok(f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            self.file = Some((f, 0));
        }
    }
}
