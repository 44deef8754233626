//! What a program embedding the library deals with besides containers: signals by the
//! crate's own [`Signal`] type, the handle of a process started by
//! [`Container::exec`](crate::Container::exec), and the two process-wide functions a
//! runtime calls early in `main` ([`reset_signals`], [`reexec_sealed`]).

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, Result, SysContext};
pub use crate::sys::{reexec_sealed, reset_signals};

/// A signal number, checked: 1 through SIGRTMAX (real-time signals included, e.g.
/// systemd's SIGRTMIN+3). The common ones are constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    /// Hangup.
    pub const SIGHUP: Signal = Signal(libc::SIGHUP);
    /// Interrupt (Ctrl-C).
    pub const SIGINT: Signal = Signal(libc::SIGINT);
    /// Quit.
    pub const SIGQUIT: Signal = Signal(libc::SIGQUIT);
    /// Kill (cannot be caught).
    pub const SIGKILL: Signal = Signal(libc::SIGKILL);
    /// User signal 1.
    pub const SIGUSR1: Signal = Signal(libc::SIGUSR1);
    /// User signal 2.
    pub const SIGUSR2: Signal = Signal(libc::SIGUSR2);
    /// Terminate (the default of `kill`).
    pub const SIGTERM: Signal = Signal(libc::SIGTERM);
    /// Continue a stopped process.
    pub const SIGCONT: Signal = Signal(libc::SIGCONT);
    /// Stop (cannot be caught).
    pub const SIGSTOP: Signal = Signal(libc::SIGSTOP);
    /// Terminal window size changed.
    pub const SIGWINCH: Signal = Signal(libc::SIGWINCH);

    /// The signal numbered `n`, if it is one (1 through SIGRTMAX).
    pub fn from_raw(n: i32) -> Result<Signal> {
        if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(Signal(n))
        } else {
            Err(Error::InvalidSpec(format!(
                "bad signal {n}: signals are 1 through {}",
                libc::SIGRTMAX()
            )))
        }
    }

    /// Its number.
    pub fn as_raw(self) -> i32 {
        self.0
    }
}

/// Sends `signal` through a pidfd (which pins the process: no pid-reuse race).
pub(crate) fn pidfd_signal(fd: &OwnedFd, signal: Signal) -> std::io::Result<()> {
    // SAFETY: `Signal` holds only numbers from 1 to SIGRTMAX, which the kernel accepts
    let sig = unsafe { rustix::process::Signal::from_raw_unchecked(signal.as_raw()) };
    rustix::process::pidfd_send_signal(fd.as_fd(), sig).map_err(std::io::Error::from)
}

/// A process started in a container by [`Container::exec`](crate::Container::exec): a
/// child of the calling process, to wait for and signal. Signals go through a pidfd
/// opened when it was started, so they never reach another process that reused its pid.
#[derive(Debug)]
pub struct ExecProcess {
    pid: i32,
    pidfd: Option<OwnedFd>,
    exit: Option<i32>,
}

impl ExecProcess {
    pub(crate) fn new(pid: i32) -> ExecProcess {
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        ExecProcess {
            pid,
            pidfd,
            exit: None,
        }
    }

    /// Its host pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for it to exit; returns its exit code (128+signal when a signal killed it).
    /// The code is kept: later calls return it again.
    pub fn wait(&mut self) -> Result<i32> {
        if let Some(code) = self.exit {
            return Ok(code);
        }
        loop {
            let code = match waitpid(Pid::from_raw(self.pid), None) {
                Ok(WaitStatus::Exited(_, code)) => code,
                Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| format!("wait for pid {}", self.pid)),
            };
            self.exit = Some(code);
            return Ok(code);
        }
    }

    /// Sends it `signal`; a process that has exited already is not an error.
    pub fn kill(&self, signal: Signal) -> Result<()> {
        let Some(fd) = &self.pidfd else {
            return Err(Error::Init(format!(
                "no pidfd for exec'd process {}",
                self.pid
            )));
        };
        match pidfd_signal(fd, signal) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            r => r.ctx(|| format!("send {} to pid {}", signal.as_raw(), self.pid)),
        }
    }
}
