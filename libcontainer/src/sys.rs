//! The few system calls that need `unsafe`, each in one small function.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

/// `clone3` flag: start the child in the cgroup v2 directory given by `cgroup` (no
/// migration, so no RCU grace period on the cgroup threadgroup lock).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What `clone3` returned.
pub(crate) enum Forked {
    /// We are the new process.
    Child,
    /// We are the caller; the child has this pid.
    Parent(i32),
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Forks like `fork(2)`, but creates the namespaces in `flags` (`CLONE_NEW*`) for the child.
///
/// The child is a copy of the calling thread only: between this and `execve` it may call
/// only what is safe after fork in a multi-threaded program (glibc's malloc is).
fn clone3(flags: u64, cgroup: Option<RawFd>) -> io::Result<Forked> {
    let mut args = CloneArgs {
        flags: flags
            | if cgroup.is_some() {
                CLONE_INTO_CGROUP
            } else {
                0
            },
        cgroup: cgroup.map_or(0, |fd| fd as u64),
        // with CLONE_PARENT the kernel wants 0 here and uses the caller's (SIGCHLD)
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        ..Default::default()
    };
    // SAFETY: clone3 with no stack and no CLONE_VM behaves like fork: the child gets a copy
    // of the address space and returns 0 here; `args` is valid for the duration of the call
    // and its size is passed exactly.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Forks a child that lives in new namespaces (`flags`) and, with `cgroup`, starts in
/// that cgroup v2 directory, safely from a multi-threaded
/// program: glibc's `fork` (whose atfork handlers leave malloc usable in the child) makes
/// a single-threaded helper, which `clone3`s the real child as our sibling
/// (`CLONE_PARENT`) so that it is this process's child, reports its pid, and exits.
///
/// # Safety
///
/// On [`Forked::Child`] the caller is a copy of one thread of a possibly multi-threaded
/// process: other threads' locks may be held forever and their objects half-changed. It
/// must only do what is safe after fork (system calls, glibc's malloc) and end with
/// `execve` or [`exit_now`], never return into code that expects the parent's threads
/// or runs the parent's destructors.
pub(crate) unsafe fn spawn(flags: u64, cgroup: Option<RawFd>) -> io::Result<Forked> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: fork has no memory-safety preconditions; the child below only calls
    // clone3, write and _exit before the grandchild continues as a normal program.
    let helper = unsafe { libc::fork() };
    match helper {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(r);
            match clone3(flags | libc::CLONE_PARENT as u64, cgroup) {
                Ok(Forked::Child) => {
                    drop(w);
                    Ok(Forked::Child)
                }
                Ok(Forked::Parent(pid)) => {
                    let _ = rustix::io::write(&w, &pid.to_ne_bytes());
                    exit_now(0)
                }
                Err(e) => {
                    let code = -e.raw_os_error().unwrap_or(libc::EINVAL);
                    let _ = rustix::io::write(&w, &code.to_ne_bytes());
                    exit_now(1)
                }
            }
        }
        helper => {
            drop(w);
            let mut buf = [0u8; 4];
            let n = rustix::io::read(&r, &mut buf);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(helper), None);
            match n {
                Ok(4) => match i32::from_ne_bytes(buf) {
                    pid if pid > 0 => Ok(Forked::Parent(pid)),
                    errno => Err(io::Error::from_raw_os_error(-errno)),
                },
                Ok(_) => Err(io::Error::other(
                    "fork helper died before reporting the child's pid",
                )),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Ends the process at once, without running destructors or atexit handlers (for the
/// child after fork: the parent's buffers and locks must not be flushed twice).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Closes every descriptor from 3 up, except those in `keep`.
///
/// # Safety
///
/// Every descriptor not in `keep` is closed under whatever owns it (an `OwnedFd`, a
/// `File`, a library): the caller must be the only user of the descriptor table (the
/// init or exec child after fork) and not use the objects that owned them afterwards.
pub(crate) unsafe fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&fd| fd > 2)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    let mut first = 3u32;
    for fd in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if fd > first {
            // SAFETY: close_range only closes descriptors; none of the ones we still use
            // (`keep`) are in [first, fd - 1].
            let ret = unsafe { libc::syscall(libc::SYS_close_range, first, fd - 1, 0u32) };
            if ret == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

/// Sets the domain name of the calling process's UTS namespace.
pub(crate) fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `prctl` with integer arguments.
pub(crate) fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> io::Result<()> {
    // SAFETY: every option we pass (PR_SET_KEEPCAPS, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS,
    // PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER) takes plain integers, no pointers.
    let ret = unsafe { libc::prctl(option, arg2, 0, 0, 0) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Replaces the process image with the executable open at `fd` (`execveat` with
/// `AT_EMPTY_PATH`); returns only on failure.
///
/// # Safety
///
/// `argv` and `envp` must be NULL-terminated arrays of pointers to NUL-terminated strings
/// that stay alive across the call (the kernel reads them; a dangling pointer is read).
pub(crate) unsafe fn execveat_empty(
    fd: RawFd,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Error {
    assert!(argv.last().is_some_and(|p| p.is_null()));
    assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: the path is an empty C string used with AT_EMPTY_PATH on `fd`; `argv` and
    // `envp` are NULL-terminated (checked) arrays of pointers to NUL-terminated strings
    // that the caller keeps alive across the call (this function's contract).
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// Borrows a raw descriptor for any lifetime the caller picks.
///
/// # Safety
///
/// `fd` must be open, and stay open (not closed or replaced) for as long as the borrow
/// is used.
pub(crate) unsafe fn borrow_fd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    assert!(fd >= 0);
    // SAFETY: this function's contract: the caller keeps `fd` open for 'a
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Duplicates `from` onto `to` (clearing close-on-exec on `to`).
///
/// # Safety
///
/// Whatever `to` was is closed under its owner: the caller must own `to` (or know no one
/// uses it again), and `from` must be open.
pub(crate) unsafe fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    if from == to {
        // clear FD_CLOEXEC so it survives exec
        // SAFETY: `from` is open (this function's contract) and used only below
        let fd = unsafe { borrow_fd(from) };
        let flags = rustix::io::fcntl_getfd(fd)?;
        rustix::io::fcntl_setfd(fd, flags - rustix::io::FdFlags::CLOEXEC)?;
        return Ok(());
    }
    // SAFETY: dup2 only manipulates the descriptor table.
    let ret = unsafe { libc::dup2(from, to) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Re-executes the running program from a sealed, anonymous copy of itself (`memfd`),
/// unless it already runs from one. Afterwards `/proc/<pid>/exe` of this process and of
/// every process it forks names that copy, not the file on the host: a container that
/// can open it (one with CAP_SYS_PTRACE) cannot overwrite the runtime (CVE-2019-5736).
///
/// Without CAP_SYS_PTRACE in the container this is not needed (the user's program is
/// exec'd through a sealed trampoline, so a container never executes this binary); a
/// program embedding the library that grants CAP_SYS_PTRACE should call it first thing
/// in `main`, as `longshore-runtime` does for such specs.
///
/// Returns only on failure (or when already sealed).
pub fn reexec_sealed() -> io::Result<()> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let exe = std::fs::File::open("/proc/self/exe")?;
    if let Ok(seals) = rustix::fs::fcntl_get_seals(&exe)
        && seals.contains(SealFlags::WRITE | SealFlags::SEAL)
    {
        return Ok(());
    }
    let len = exe.metadata()?.len();
    let memfd = rustix::fs::memfd_create(
        "longshore-runtime",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut left = len as usize;
    while left > 0 {
        let n = rustix::fs::sendfile(&memfd, &exe, None, left)?;
        if n == 0 {
            return Err(io::Error::other("short copy of /proc/self/exe"));
        }
        left -= n;
    }
    rustix::fs::fcntl_add_seals(
        &memfd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    let args: Vec<std::ffi::CString> = std::env::args_os()
        .map(|a| std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())))
        .collect::<Result<_, _>>()
        .map_err(|_| io::Error::other("argument with NUL"))?;
    let env: Vec<std::ffi::CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = std::os::unix::ffi::OsStrExt::as_bytes(k.as_os_str()).to_vec();
            kv.push(b'=');
            kv.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()));
            std::ffi::CString::new(kv)
        })
        .collect::<Result<_, _>>()
        .map_err(|_| io::Error::other("environment with NUL"))?;
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    // SAFETY: `memfd` is an open executable file; argv and envp are NULL-terminated
    // arrays of pointers to NUL-terminated strings that live across the call; on success
    // the call does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            std::os::fd::AsRawFd::as_raw_fd(&memfd),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(io::Error::last_os_error())
}

/// Runs `f` with SIGPIPE blocked in this thread and discards a SIGPIPE it raised: a
/// write to a pipe whose reader is gone (a hook that exits without reading the state on
/// its stdin) then fails with EPIPE instead of killing the process, whatever the
/// process's disposition of SIGPIPE (`longshore-runtime` resets it to the default).
pub(crate) fn without_sigpipe<R>(f: impl FnOnce() -> R) -> R {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut pipe = SigSet::empty();
    pipe.add(Signal::SIGPIPE);
    let mut old = SigSet::empty();
    if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&pipe), Some(&mut old)).is_err()
        || old.contains(Signal::SIGPIPE)
    {
        // already blocked (a pending SIGPIPE is then the caller's), or not blockable
        return f();
    }
    let r = f();
    // a write's SIGPIPE is directed at this thread, so it is pending here now: take it
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `pipe` is a valid sigset for the duration of the call, no siginfo is
    // asked for (NULL), and `zero` is a valid timespec: the call only dequeues a pending
    // SIGPIPE of this thread, or fails with EAGAIN at once when there is none
    unsafe { libc::sigtimedwait(pipe.as_ref(), std::ptr::null_mut(), &zero) };
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    r
}

/// Resets every signal to its default disposition and unblocks all: an ignored signal
/// stays ignored across `execve`, and the runtime's own (Rust ignores SIGPIPE; callers
/// often ignore SIGINT, SIGQUIT or SIGHUP) must not leak into the container.
pub fn reset_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // the kernel's `struct sigaction` all zero is SIG_DFL with no flags and an empty
        // mask; the raw call also reaches 32 and 33, which glibc's wrapper refuses
        let dfl = [0u64; 4];
        // SAFETY: rt_sigaction reads 8 bytes of mask (the size passed) from the 32-byte
        // zeroed buffer and writes nothing (no old-action pointer).
        let _ = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                libc::c_long::from(sig),
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8 as libc::c_long,
            )
        };
    }
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// `personality(2)`.
pub(crate) fn personality(persona: libc::c_ulong) -> io::Result<()> {
    // SAFETY: personality takes a plain integer and changes only this process's
    // execution domain.
    let ret = unsafe { libc::personality(persona) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, value)`: this process's I/O priority.
pub(crate) fn ioprio_set(value: i32) -> io::Result<()> {
    // SAFETY: integer arguments only; who=1 (a process), 0 = the caller.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The kernel's `struct sched_attr`.
#[repr(C)]
pub(crate) struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
    pub sched_util_min: u32,
    pub sched_util_max: u32,
}

/// `sched_setattr(2)` for the calling thread.
pub(crate) fn sched_setattr(attr: &SchedAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, fully initialised sched_attr whose `size` field is its
    // size; the kernel only reads it.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `set_mempolicy(2)` with `maxnode` bits of `nodes`.
pub(crate) fn set_mempolicy(mode: i32, nodes: &[libc::c_ulong], maxnode: usize) -> io::Result<()> {
    let ptr = if maxnode == 0 {
        std::ptr::null()
    } else {
        nodes.as_ptr()
    };
    // the kernel reads maxnode - 1 bits from `nodes`: more than it holds would read
    // past it
    if maxnode > nodes.len() * libc::c_ulong::BITS as usize + 1 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `nodes` holds at least `maxnode - 1` bits (checked above), or the pointer
    // is NULL with maxnode 0; the kernel only reads it.
    let ret = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `MOUNT_ATTR_*` flags of `mount_setattr(2)`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub(crate) const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub(crate) const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub(crate) const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub(crate) const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x20_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets and clears mount attributes on the mount at `fd` and every mount below it.
pub(crate) fn mount_setattr_recursive(
    fd: &impl std::os::fd::AsRawFd,
    set: u64,
    clear: u64,
) -> io::Result<()> {
    // atime modes are one field: clearing it selects the mode being set
    let atime = if set & 0x70 != 0 { 0x70 } else { 0 };
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear | atime,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a valid struct mount_attr of the size passed; the path is an
    // empty C string used with AT_EMPTY_PATH on an open descriptor.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `bpf(cmd, attr, 128)`.
///
/// # Safety
/// Every pointer the command reads from `attr` must be valid for the lengths `attr`
/// gives, and every buffer it writes must be writable, for the duration of the call.
pub(crate) unsafe fn bpf(cmd: i32, attr: &mut [u8; 128]) -> io::Result<i64> {
    // SAFETY: `attr` is a valid 128-byte `union bpf_attr` (zero beyond the fields set);
    // the caller guarantees what its pointers point to.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// [`bpf`] for the commands that return a new descriptor (`PROG_LOAD`, `GET_FD_BY_ID`).
///
/// # Safety
/// As for [`bpf`]; `cmd` must be a command that returns a descriptor on success.
pub(crate) unsafe fn bpf_fd(cmd: i32, attr: &mut [u8; 128]) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: the caller's guarantees are ours.
    let fd = unsafe { bpf(cmd, attr) }?;
    // SAFETY: on success the command returned a new descriptor that nothing else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as RawFd) })
}
