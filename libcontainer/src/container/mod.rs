//! The public face: [`Container`] and its builder, with runc's lifecycle.
//!
//! `build.rs` creates a container (namespace plan, cgroups, the init's preparation, spawn
//! and handshake), `exec.rs` runs a process in one; this file holds the lifecycle
//! (`start`, `wait`, `kill`, `delete`, `pause`...).

mod build;
mod exec;

pub use build::write_pid_file;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::cgroups::{self, CgroupManager, Stats};
use crate::channel::{self, Channel, Msg};
use crate::error::{Error, Result, SysContext};
use crate::init::Stdio;
use crate::state::{self, State, StateStore, Status};

/// Configures and creates a container. Obtain one with [`Container::builder`].
#[derive(Debug)]
pub struct ContainerBuilder {
    id: String,
    bundle: PathBuf,
    spec: Option<Spec>,
    root: PathBuf,
    stdio: Stdio,
    console_socket: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    no_pivot: bool,
}

/// A container known to the runtime's state directory.
#[derive(Debug)]
pub struct Container {
    store: StateStore,
    state: State,
    /// Set when this process created the container in this run: the init channel (for
    /// release without the fifo) and the right to `waitpid` the init process.
    parent: Option<Parent>,
    /// What the container was asked for and did not get (see [`Container::warnings`]).
    warnings: Vec<String>,
}

#[derive(Debug)]
struct Parent {
    channel: Channel,
    fifo: bool,
    /// The exit code once this process has reaped the init.
    exit: Option<i32>,
}

impl Container {
    /// Starts configuring a new container called `id`.
    pub fn builder(id: impl Into<String>) -> ContainerBuilder {
        ContainerBuilder {
            id: id.into(),
            bundle: PathBuf::from("."),
            spec: None,
            root: PathBuf::from(state::DEFAULT_ROOT),
            stdio: Stdio::Inherit,
            console_socket: None,
            pid_file: None,
            no_pivot: false,
        }
    }

    /// Loads an existing container from the state root.
    pub fn load(root: impl Into<PathBuf>, id: &str) -> Result<Container> {
        state::validate_id(id)?;
        let store = StateStore::open(root)?;
        let state = store.load(id)?;
        Ok(Container {
            store,
            state,
            parent: None,
            warnings: Vec::new(),
        })
    }

    /// Ids of every container under `root`.
    pub fn list(root: impl Into<PathBuf>) -> Result<Vec<String>> {
        StateStore::open(root)?.list()
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The host pid of the init process.
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// What this container was asked for and did not get, as the runtime found out while
    /// creating it (a resource left at its default because the host lacks the controller,
    /// a setting this cgroup version ignores): never fatal, meant for the user's eyes, as
    /// runc's warnings are; then the poststart and poststop hooks that failed (at
    /// [`Container::start`] and [`Container::delete`]). A container loaded from the state
    /// directory starts with none.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The saved state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The live status: a dead or recycled pid means stopped; the exec fifo means
    /// created; a frozen cgroup means paused.
    pub fn status(&self) -> Status {
        if !state::is_alive(self.state.pid, self.state.pid_start_time) {
            return Status::Stopped;
        }
        let fifo = self.store.dir(&self.state.id).join("exec.fifo");
        let attached = matches!(self.parent, Some(Parent { fifo: false, .. }));
        if fifo.exists() || (attached && self.state.status == Status::Created) {
            return Status::Created;
        }
        if let Ok(cg) = self.cgroup()
            && cg
                .freezer_state()
                .is_ok_and(|s| s == cgroups::FreezerState::Frozen)
        {
            return Status::Paused;
        }
        Status::Running
    }

    /// The OCI state document with the live status.
    pub fn oci_state(&self) -> serde_json::Value {
        self.state.oci_json(self.status())
    }

    fn cgroup(&self) -> Result<Box<dyn CgroupManager>> {
        let layout = self
            .state
            .cgroup_layout
            .ok_or_else(|| Error::Unsupported("container has no cgroup".into()))?;
        Ok(cgroups::manager_from_state(
            layout,
            &self.state.cgroup_paths,
        )?)
    }

    /// Releases the user's process to `execve`; runs the poststart hooks (a failing one
    /// is a warning, added to [`Container::warnings`], as the spec says).
    pub fn start(&mut self) -> Result<()> {
        let _lock = self.store.lock(&self.state.id)?;
        let status = self.status();
        if status != Status::Created {
            return Err(Error::WrongState {
                id: self.state.id.clone(),
                status: status.to_string(),
                wanted: "cannot start a container that is not created",
            });
        }
        match &self.parent {
            Some(Parent {
                channel,
                fifo: false,
                ..
            }) => {
                channel.send(&Msg::Start)?;
                // the channel closes on execve (close-on-exec); a message means failure
                match channel.recv()? {
                    None => {}
                    Some(Msg::Failed { message, code }) => {
                        return Err(channel::failure(message, code));
                    }
                    Some(other) => {
                        return Err(Error::Init(format!("unexpected {other:?} after start")));
                    }
                }
            }
            _ => self.release_fifo()?,
        }
        // no state write: the fifo's absence (or, for this process, the in-memory
        // status) is what says "running"
        self.state.status = Status::Running;
        if let Some(hooks) = self
            .state
            .hooks
            .as_ref()
            .and_then(|h| h.poststart().clone())
        {
            let json = serde_json::to_vec(&self.state.oci_json(Status::Running)).expect("json");
            // the spec: a failing poststart hook is a warning, and the remaining hooks and
            // the lifecycle go on as if it had succeeded
            let failed = crate::hooks::run_warn("poststart", &hooks, &json);
            self.warnings.extend(failed);
        }
        Ok(())
    }

    fn release_fifo(&self) -> Result<()> {
        let path = self.store.dir(&self.state.id).join("exec.fifo");
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut byte = [0u8; 1];
        // the init writes one byte, then keeps the fifo open until the user's program is
        // exec'd (the trampoline closes it): read the byte, then wait for the end
        let mut released = false;
        loop {
            match fifo.read(&mut byte) {
                Ok(1) => released = true,
                Ok(0) if released => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).ctx(|| "read the exec fifo".into()),
            }
            // (once released, a process that is gone closed the fifo: the next read ends)
            if !released && !state::is_alive(self.state.pid, self.state.pid_start_time) {
                // released, exec'd and already gone between the read above and this
                // check (a `true`): its byte is still in the fifo
                if matches!(fifo.read(&mut byte), Ok(1)) {
                    break;
                }
                return Err(Error::Init(
                    "the container's init process died before start".into(),
                ));
            }
            if Instant::now() > deadline {
                return Err(Error::Init(
                    "the init process did not open the exec fifo in 10s".into(),
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        std::fs::remove_file(&path).ctx(|| format!("remove {}", path.display()))
    }

    /// Waits for the init process to exit and returns its exit code (128+signal when a
    /// signal killed it). Only the process that created the container can learn the code
    /// (the init is its child): it is kept, so later calls return it again. Any other
    /// process waits until the init is gone and gets [`Error::ExitUnknown`], as does the
    /// creator when something else reaped the init (SIGCHLD ignored).
    pub fn wait(&mut self) -> Result<i32> {
        let id = self.state.id.clone();
        let unknown = |reason: &str| Error::ExitUnknown {
            id: id.clone(),
            reason: reason.to_string(),
        };
        if let Some(parent) = self.parent.as_mut() {
            if let Some(code) = parent.exit {
                return Ok(code);
            }
            loop {
                let code = match waitpid(Pid::from_raw(self.state.pid), None) {
                    Ok(WaitStatus::Exited(_, code)) => code,
                    Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(nix::errno::Errno::ECHILD) => {
                        return Err(unknown(
                            "its init was reaped by someone else (is SIGCHLD ignored?)",
                        ));
                    }
                    Err(e) => return Err(e).ctx(|| format!("wait for {}", self.state.id)),
                };
                parent.exit = Some(code);
                return Ok(code);
            }
        }
        let not_ours = "it was not created by this process, and only the creator learns the \
                        exit status";
        let Some(pidfd) = self.pidfd()? else {
            return Err(unknown(not_ours));
        };
        let mut fds = [nix::poll::PollFd::new(
            pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        loop {
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                Ok(_) => return Err(unknown(not_ours)),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| format!("wait for {}", self.state.id)),
            }
        }
    }

    /// A pidfd for the init process, if it is still the process we started.
    fn pidfd(&self) -> Result<Option<OwnedFd>> {
        let Some(pid) = rustix::process::Pid::from_raw(self.state.pid) else {
            return Ok(None);
        };
        let fd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return Ok(None),
            Err(e) => return Err(std::io::Error::from(e)).ctx(|| "pidfd_open".into()),
        };
        // the pid could have been recycled between reading the state and pidfd_open:
        // check the start time now that the pidfd pins the process
        if state::is_alive(self.state.pid, self.state.pid_start_time) {
            Ok(Some(fd))
        } else {
            Ok(None)
        }
    }

    /// Sends `signal` to the init process (to every process in the container's cgroup
    /// with `all`).
    pub fn kill(&self, signal: crate::Signal, all: bool) -> Result<()> {
        self.signal(signal.as_raw(), all)
    }

    /// Sends signal number `signal` (real-time signals included, e.g. systemd's
    /// SIGRTMIN+3) to the init process, or to every process with `all`.
    pub fn signal(&self, signal: i32, all: bool) -> Result<()> {
        let signal = crate::Signal::from_raw(signal)?;
        let status = self.status();
        if status == Status::Stopped {
            return Err(Error::WrongState {
                id: self.state.id.clone(),
                status: status.to_string(),
                wanted: "cannot be signalled",
            });
        }
        if all {
            self.cgroup()?.kill_all(signal.as_raw())?;
            return Ok(());
        }
        if let Some(fd) = self.pidfd()? {
            crate::process::pidfd_signal(&fd, signal)
                .ctx(|| format!("send {} to {}", signal.as_raw(), self.state.id))?;
        }
        Ok(())
    }

    /// Removes the container: its cgroups and state. A container that is not stopped
    /// (created, running or paused) needs `force`, which kills it first; without it the
    /// delete fails and changes nothing, as the runtime spec requires (runc deletes a
    /// created container anyway; this runtime follows the spec).
    ///
    /// Poststop hooks run after the removal; one that fails does not stop the others or
    /// fail the delete (the spec: a warning), it is added to [`Container::warnings`].
    pub fn delete(&mut self, force: bool) -> Result<()> {
        let _lock = self.store.lock(&self.state.id)?;
        let status = self.status();
        if status != Status::Stopped && !force {
            return Err(Error::WrongState {
                id: self.state.id.clone(),
                status: status.to_string(),
                wanted: "stop it first or force the delete",
            });
        }
        if status != Status::Stopped {
            if status == Status::Paused
                && let Ok(cg) = self.cgroup()
            {
                let _ = cg.thaw();
            }
            if let Some(fd) = self.pidfd()? {
                let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
                let mut fds = [nix::poll::PollFd::new(
                    fd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16));
            }
        }
        if let Some(parent) = self.parent.as_mut()
            && parent.exit.is_none()
        {
            match waitpid(Pid::from_raw(self.state.pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => parent.exit = Some(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => parent.exit = Some(128 + sig as i32),
                _ => {}
            }
        }
        if let Ok(cg) = self.cgroup() {
            if !self.state.own_pid_namespace {
                let _ = cg.kill_all(libc::SIGKILL);
            }
            destroy_with_retry(cg.as_ref())?;
        }
        self.store.remove(&self.state.id)?;
        if let Some(hooks) = self.state.hooks.as_ref().and_then(|h| h.poststop().clone()) {
            let json = serde_json::to_vec(&self.state.oci_json(Status::Stopped)).expect("json");
            // the spec: a failing poststop hook is a warning; the others still run
            let failed = crate::hooks::run_warn("poststop", &hooks, &json);
            self.warnings.extend(failed);
        }
        Ok(())
    }

    /// Freezes every process (`runc pause`; a created container can be paused too).
    pub fn pause(&self) -> Result<()> {
        let status = self.status();
        if status != Status::Running && status != Status::Created {
            return Err(Error::WrongState {
                id: self.state.id.clone(),
                status: status.to_string(),
                wanted: "only a running container can be paused",
            });
        }
        Ok(self.cgroup()?.freeze()?)
    }

    /// Thaws a paused container (`runc resume`).
    pub fn resume(&self) -> Result<()> {
        let status = self.status();
        if status != Status::Paused {
            return Err(Error::WrongState {
                id: self.state.id.clone(),
                status: status.to_string(),
                wanted: "only a paused container can be resumed",
            });
        }
        Ok(self.cgroup()?.thaw()?)
    }

    /// Host pids of every process in the container.
    pub fn pids(&self) -> Result<Vec<i32>> {
        Ok(self.cgroup()?.pids()?)
    }

    /// Resource usage from the cgroups.
    pub fn stats(&self) -> Result<Stats> {
        Ok(self.cgroup()?.stats()?)
    }

    /// The cgroup directories by controller.
    pub fn cgroup_paths(&self) -> &BTreeMap<String, PathBuf> {
        &self.state.cgroup_paths
    }
}

impl Container {
    /// The init's root directory (`/proc/<pid>/root`, opened while the pidfd pins the
    /// process), checked to be the container's rootfs.
    fn init_root(&self, pid: i32) -> Result<File> {
        use std::os::unix::fs::MetadataExt;
        let refuse = |why: String| {
            Error::Unsupported(format!(
                "exec into {}: it has no mount namespace of its own and its root cannot be \
                 entered: {why}",
                self.state.id
            ))
        };
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(format!("/proc/{pid}/root"))
            .map_err(|e| refuse(format!("open /proc/{pid}/root: {e}")))?;
        let got = root.metadata().map_err(|e| refuse(e.to_string()))?;
        let want = std::fs::metadata(&self.state.rootfs)
            .map_err(|e| refuse(format!("{}: {e}", self.state.rootfs.display())))?;
        if (got.dev(), got.ino()) != (want.dev(), want.ino()) {
            return Err(refuse(format!(
                "the init's root is not {}",
                self.state.rootfs.display()
            )));
        }
        Ok(root)
    }
}

/// The sealed exec trampoline every container process runs its program through.
fn trampoline_fd() -> Result<RawFd> {
    crate::trampoline::fd()
        .map(|fd| fd.as_raw_fd())
        .ctx(|| "make the sealed exec trampoline (memfd)".into())
}

/// The trusted procfs every write under `/proc` goes through.
fn procfs_fd() -> Result<RawFd> {
    crate::procfs::handle()
        .map(|p| p.root().as_raw_fd())
        .ctx(|| "open a trusted procfs (fsopen proc, or /proc)".into())
}

fn destroy_with_retry(cg: &dyn CgroupManager) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match cg.destroy() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// For a caller that received a console over a socket: reads the pty master from `sock`
/// (the connection accepted on the console socket).
pub fn receive_console(sock: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd> {
    channel::recv_fd(sock.as_raw_fd())
}
