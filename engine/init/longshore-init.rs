//! `longshore-init`: the `--init` process (Docker's docker-init, tini's job). It runs as
//! the container's pid 1, starts the command given after `--`, forwards every signal it
//! receives to it, reaps every orphan the kernel re-parents to it, and exits with the
//! command's status (128 + signal when a signal ended it).
//!
//! Built by the engine's build script as a static binary (no dependency but std and the
//! C library), so it runs in any image, busybox or scratch included.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode};

/// glibc's `sigset_t` (1024 bits) and `siginfo_t` (128 bytes).
#[repr(C)]
struct SigSet([u64; 16]);
#[repr(C)]
struct SigInfo {
    signo: i32,
    _rest: [i32; 31],
}
#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

unsafe extern "C" {
    fn sigfillset(set: *mut SigSet) -> i32;
    fn sigemptyset(set: *mut SigSet) -> i32;
    fn sigprocmask(how: i32, set: *const SigSet, old: *mut SigSet) -> i32;
    fn sigtimedwait(set: *const SigSet, info: *mut SigInfo, timeout: *const Timespec) -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}

const SIG_SETMASK: i32 = 2;
const WNOHANG: i32 = 1;
const SIGCHLD: i32 = 17;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("longshore-init: no command given (usage: longshore-init -- COMMAND [ARG...])");
        return ExitCode::from(1);
    }
    // every signal waits for sigtimedwait below; the child starts with an empty mask
    let mut all = SigSet([0; 16]);
    // SAFETY: both calls only write the set this function owns.
    unsafe {
        sigfillset(&mut all);
        sigprocmask(SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    // SAFETY: between fork and exec the closure calls only sigemptyset and sigprocmask,
    // both async-signal-safe, on a set on its own stack.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let mut none = SigSet([0; 16]);
            sigemptyset(&mut none);
            if sigprocmask(SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("longshore-init: exec {} failed: {e}", args[0]);
            return ExitCode::from(match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            });
        }
    };
    let pid = child.id() as i32;
    std::mem::forget(child);
    loop {
        let mut info = SigInfo {
            signo: 0,
            _rest: [0; 31],
        };
        let timeout = Timespec { sec: 1, nsec: 0 };
        // SAFETY: the set, info and timeout are valid for the call.
        let sig = unsafe { sigtimedwait(&all, &mut info, &timeout) };
        if sig > 0 && sig != SIGCHLD {
            // SAFETY: kill has no memory preconditions.
            unsafe {
                kill(pid, sig);
            }
            continue;
        }
        // a child ended (or a second passed): reap everything that has
        loop {
            let mut status = 0;
            // SAFETY: status is a valid pointer for the call.
            let r = unsafe { waitpid(-1, &mut status, WNOHANG) };
            if r <= 0 {
                break;
            }
            if r == pid {
                let st = std::process::ExitStatus::from_raw(status);
                let code = match (st.code(), st.signal()) {
                    (Some(c), _) => c,
                    (None, Some(s)) => 128 + s,
                    _ => 1,
                };
                return ExitCode::from(code as u8);
            }
        }
    }
}
