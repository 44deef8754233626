//! The container's init process: what runs in the child between `clone3` and `execve`.
//!
//! It runs single-threaded in a copy of the runtime's memory. It never returns: it
//! either `execve`s the user's program or reports its failure on the channel and exits.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process, Spec};

use crate::attrs;
use crate::channel::{Channel, Msg};
use crate::error::{Error, Result, SysContext};
use crate::procfs::ProcFs;
use crate::rootfs::{self, Hierarchy, RootfsContext};
use crate::seccomp::CompiledFilter;
use crate::sys;

/// The default `PATH` when the process's environment has none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the user's stdio comes from.
///
/// [`Stdio::Fds`] owns its descriptors: the builder (or [`Container::exec`]) keeps them
/// until the process has its copies and closes them when `create` / `exec` returns, so a
/// pipe's write end given here does not keep the reader waiting afterwards. To give the
/// same pipe as stdout and stderr, or one's own stdout, pass a duplicate
/// ([`OwnedFd::try_clone`], [`BorrowedFd::try_clone_to_owned`]).
///
/// ```no_run
/// use std::os::fd::{AsFd, OwnedFd};
/// use longshore_container::Stdio;
///
/// let (_reader, writer) = std::io::pipe()?;
/// let writer = OwnedFd::from(writer);
/// let stdio = Stdio::Fds {
///     stdin: std::fs::File::open("/dev/null")?.into(),
///     stdout: writer.try_clone()?,
///     stderr: std::io::stderr().as_fd().try_clone_to_owned()?,
/// };
/// # let _ = stdio;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// [`Container::exec`]: crate::Container::exec
/// [`BorrowedFd::try_clone_to_owned`]: std::os::fd::BorrowedFd::try_clone_to_owned
#[non_exhaustive]
#[derive(Debug)]
pub enum Stdio {
    /// The runtime's own stdin, stdout and stderr.
    Inherit,
    /// `/dev/null` for all three.
    Null,
    /// These descriptors, closed once the process has its copies.
    Fds {
        /// Becomes fd 0.
        stdin: OwnedFd,
        /// Becomes fd 1.
        stdout: OwnedFd,
        /// Becomes fd 2.
        stderr: OwnedFd,
    },
}

/// How the init process is released to `execve` the user's program.
#[derive(Debug)]
pub(crate) enum Release {
    /// By `start` (possibly another process) opening the exec fifo (this descriptor is
    /// the fifo opened `O_PATH`).
    Fifo(OwnedFd),
    /// By a `Start` message on the channel.
    Channel,
}

/// What the init process needs, prepared by the runtime before `clone3`.
pub(crate) struct InitArgs<'a> {
    pub spec: &'a Spec,
    pub process: &'a Process,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub channel: &'a Channel,
    pub release: &'a Release,
    pub stdio: &'a Stdio,
    pub console_socket: Option<RawFd>,
    pub hierarchies: &'a [Hierarchy],
    pub seccomp: Option<&'a CompiledFilter>,
    /// Namespaces to join: (type, open descriptor of the namespace file).
    pub join: &'a [(CloneFlags, OwnedFd)],
    pub new_userns: bool,
    pub new_cgroupns: bool,
    pub new_mountns: bool,
    pub create_hooks: bool,
    pub no_pivot: bool,
    /// Unshare a time namespace and write these `timens_offsets` lines to it.
    pub new_timens: bool,
    pub time_offsets: &'a str,
    /// `exec` into an existing container: no rootfs work, no hostname.
    pub joining: bool,
    /// cgroup v1 `tasks` files the init joins itself by writing "0" (moving only the
    /// calling thread skips the kernel's global threadgroup lock, whose first write
    /// lock waits a whole RCU grace period, ~10 ms here).
    pub cgroup_tasks: &'a [PathBuf],
    /// The sealed exec trampoline ([`crate::trampoline`]): the user's program is run
    /// through it, never `execve`d from the runtime's own image.
    pub trampoline: RawFd,
    /// The root of the procfs every write under `/proc` goes through ([`crate::procfs`]).
    pub procfs: RawFd,
    /// `exec` into a container without a mount namespace of its own: the init's root
    /// (opened and checked by the runtime), to `chroot` into as the init did.
    pub enter_root: Option<RawFd>,
}

/// The init process's entry point. Never returns.
pub(crate) fn main(args: InitArgs<'_>) -> ! {
    let err = match run(&args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let code = match &err {
        Error::Exec { code, .. } => *code,
        _ => 1,
    };
    let _ = args.channel.send(&Msg::Failed {
        message: err.to_string(),
        code,
    });
    sys::exit_now(code)
}

fn run(a: &InitArgs<'_>) -> Result<Infallible> {
    // while setting up, die with the runtime thread that is driving us
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        .ctx(|| "prctl(PR_SET_PDEATHSIG)".into())?;
    a.channel.send(&Msg::Hello)?;
    let affinity = a.process.exec_cpu_affinity().as_ref().filter(|_| a.joining);
    attrs::initial_affinity(affinity)?;
    for tasks in a.cgroup_tasks {
        std::fs::write(tasks, b"0").ctx(|| format!("join cgroup {}", tasks.display()))?;
    }
    attrs::final_affinity(affinity)?;
    setup_stdio(a.stdio)?;
    let mut keep = vec![a.channel.raw_fd()];
    if let Release::Fifo(fd) = a.release {
        keep.push(fd.as_raw_fd());
    }
    keep.extend(a.console_socket);
    keep.extend(a.join.iter().map(|(_, fd)| fd.as_raw_fd()));
    keep.push(a.trampoline);
    keep.push(a.procfs);
    keep.extend(a.enter_root);
    // SAFETY: the procfs descriptor is the caller's, open until this process execs or
    // exits (it is in `keep`)
    let proc = ProcFs::from_root(unsafe { sys::borrow_fd(a.procfs) });
    // SAFETY: this is the init (or exec) child after fork, alone with its descriptor
    // table; what it still uses is in `keep`
    unsafe { sys::close_fds_except(&keep) }.ctx(|| "close inherited descriptors".into())?;
    // nothing in the container may open /proc/<init>/exe (the runtime's binary) or ptrace
    // us while we still run runtime code (CVE-2019-5736): execve resets this.
    sys::prctl(libc::PR_SET_DUMPABLE, 0).ctx(|| "prctl(PR_SET_DUMPABLE)".into())?;

    let state_json = match a.channel.recv()? {
        Some(Msg::Go { state }) => state,
        Some(Msg::Failed { message, code }) => return Err(crate::channel::failure(message, code)),
        other => return Err(Error::Init(format!("expected Go, got {other:?}"))),
    };

    for (kind, fd) in a.join {
        nix::sched::setns(fd, *kind).ctx(|| format!("join namespace {kind:?}"))?;
    }
    if a.new_cgroupns {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "unshare the cgroup namespace".into())?;
    }
    if a.new_timens {
        // the new namespace is for our children and, after execve, for us; its clocks
        // can only be set before any process is in it
        nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .ctx(|| "unshare the time namespace".into())?;
        if !a.time_offsets.is_empty() {
            proc.write_own("timens_offsets", a.time_offsets.as_bytes())
                .ctx(|| format!("set clock offsets {:?}", a.time_offsets))?;
        }
    }
    if a.new_userns {
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .ctx(|| "become gid 0 in the user namespace".into())?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .ctx(|| "become uid 0 in the user namespace".into())?;
    }

    if !a.joining {
        if let Some(h) = a.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).ctx(|| format!("sethostname {h:?}"))?;
        }
        if let Some(d) = a.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            sys::setdomainname(d).ctx(|| format!("setdomainname {d:?}"))?;
        }
        if a.new_mountns {
            rootfs::prepare(&RootfsContext {
                spec: a.spec,
                bundle: a.bundle,
                rootfs: a.rootfs,
                hierarchies: a.hierarchies,
                new_cgroupns: a.new_cgroupns,
                in_userns: a.new_userns,
            })?;
        }
        if a.create_hooks {
            a.channel.send(&Msg::RunCreateHooks)?;
            a.channel.expect(&Msg::HooksDone)?;
            if let Some(hooks) = a
                .spec
                .hooks()
                .as_ref()
                .and_then(|h| h.create_container().as_ref())
            {
                crate::hooks::run_in_container(
                    "createContainer",
                    hooks,
                    state_json.as_bytes(),
                    a.trampoline,
                )?;
            }
        }
        if a.new_mountns {
            if a.no_pivot {
                rootfs::move_root(a.rootfs)?
            } else {
                rootfs::pivot(a.rootfs)?
            }
            rootfs::root_propagation_after_pivot(a.spec)?;
        } else {
            nix::unistd::chroot(a.rootfs).ctx(|| format!("chroot {}", a.rootfs.display()))?;
            nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
        }
    }

    if let Some(root) = a.enter_root {
        // SAFETY: the root descriptor is in `keep`, open until this process execs
        let root = unsafe { sys::borrow_fd(root) };
        nix::unistd::fchdir(root).ctx(|| "enter the container's root".into())?;
        nix::unistd::chroot(".").ctx(|| "chroot into the container's root".into())?;
        nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    }
    if a.process.terminal().unwrap_or(false) {
        setup_console(a)?;
    }
    if !a.joining {
        rootfs::sysctls(a.spec, proc)?;
        rootfs::finish(a.spec)?;
    }
    if let Some(adj) = a.process.oom_score_adj() {
        proc.write_own("oom_score_adj", adj.to_string().as_bytes())
            .ctx(|| format!("set oom_score_adj {adj}"))?;
    }
    set_rlimits(a.process)?;
    if let Some(io) = a.process.io_priority() {
        attrs::io_priority(io)?;
    }
    if let Some(sched) = a.process.scheduler() {
        attrs::scheduler(sched)?;
    }
    if let Some(policy) = a
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.memory_policy().as_ref())
    {
        attrs::memory_policy(policy)?;
    }
    if let Some(profile) = a
        .process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        attrs::apparmor_exec(proc, profile)?;
    }

    let env = environment(a.process);
    let argv = a.process.args().clone().unwrap_or_default();
    if argv.is_empty() {
        return Err(Error::InvalidSpec("process.args is empty".into()));
    }
    let path_var = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let cwd = a.process.cwd();
    let program = find_executable(&argv[0], path_var, cwd)?;

    // credentials: bounding set, (seccomp), groups and ids, capability sets
    let caps = a.process.capabilities().as_ref();
    sys::prctl(libc::PR_SET_KEEPCAPS, 1).ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    if let Some(bounding) = caps.and_then(|c| c.bounding().as_ref()) {
        crate::caps::drop_bounding(bounding)?;
    }
    // the cwd is entered (and checked to be inside the root) before the seccomp filter is
    // loaded, since the filter may deny the `getcwd` the check needs; as root, or, when
    // only the process's user may enter it, as that user below
    let cwd_entered = enter_cwd(cwd)?;
    let nnp = a.process.no_new_privileges().unwrap_or(false);
    if !nnp && let Some(filter) = a.seccomp {
        filter.load()?;
    }
    set_user(a.process)?;
    if let Some(c) = caps {
        crate::caps::apply(c)?;
    }
    sys::prctl(libc::PR_SET_KEEPCAPS, 0).ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    if let Some(mask) = a.process.user().umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    if !cwd_entered && !enter_cwd(cwd)? {
        return Err(Error::InvalidSpec(format!(
            "process.cwd {}: permission denied",
            cwd.display()
        )));
    }

    // prepare everything execve needs before we are released
    let c_program = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidSpec("program path contains NUL".into()))?;
    // the trampoline's argv: the channel's fd (to report a failed execve), the program,
    // then the program's own argv
    let c_fd = CString::new(a.channel.raw_fd().to_string()).expect("digits");
    let c_argv = cstrings(&argv)?;
    let c_env = cstrings(&env)?;
    let mut argv_ptrs: Vec<*const libc::c_char> = [c_fd.as_ptr(), c_program.as_ptr()]
        .into_iter()
        .chain(c_argv.iter().map(|c| c.as_ptr()))
        .chain([std::ptr::null()])
        .collect();
    let env_ptrs: Vec<*const libc::c_char> = c_env
        .iter()
        .map(|c| c.as_ptr())
        .chain([std::ptr::null()])
        .collect();

    // from here on the runtime may exit (`create` does) while we wait for `start`
    sys::prctl(libc::PR_SET_PDEATHSIG, 0).ctx(|| "prctl(PR_SET_PDEATHSIG)".into())?;
    a.channel.send(&Msg::Ready)?;
    // what the trampoline closes at the user's execve: the channel, or for `start` through
    // the fifo the fifo itself, so that `start` returns once the program runs
    let fifo = match a.release {
        Release::Channel => {
            a.channel.expect(&Msg::Start)?;
            None
        }
        Release::Fifo(fd) => {
            // blocks until `start` opens the other end; reopened through our own procfs,
            // not the container's /proc (which a container without a mount namespace of
            // its own does not have)
            let path = format!(
                "{}/fd/{}",
                proc.own_dir().ctx(|| "find /proc/self".into())?,
                fd.as_raw_fd()
            );
            let fifo = std::fs::File::from(
                rustix::fs::openat(
                    proc.root(),
                    path.as_str(),
                    rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(std::io::Error::from)
                .ctx(|| "open the exec fifo".into())?,
            );
            use std::io::Write;
            (&fifo)
                .write_all(b"0")
                .ctx(|| "write the exec fifo".into())?;
            Some(fifo)
        }
    };
    let c_fifo;
    let report_fd = match &fifo {
        Some(f) => {
            c_fifo = CString::new(f.as_raw_fd().to_string()).expect("digits");
            argv_ptrs[0] = c_fifo.as_ptr();
            f.as_raw_fd()
        }
        None => a.channel.raw_fd(),
    };
    sys::reset_signals();
    if let Some(p) = a
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
    {
        attrs::personality(p)?;
    }
    if !a.joining
        && let Some(hooks) = a
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.start_container().as_ref())
    {
        // the state as `start` sees it
        let started = state_json.replacen("\"creating\"", "\"created\"", 1);
        crate::hooks::run_in_container("startContainer", hooks, started.as_bytes(), a.trampoline)?;
    }
    if nnp {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)".into())?;
        if let Some(filter) = a.seccomp {
            filter.load()?;
        }
    }
    // the channel (or the fifo) stays open across the trampoline's execve; it closes it
    // on the user's
    // SAFETY: `report_fd` is ours (the channel or the fifo) and open; onto itself only
    // its close-on-exec flag changes
    unsafe { sys::dup2(report_fd, report_fd) }
        .ctx(|| "keep the init channel open for the trampoline".into())?;
    // SAFETY: both arrays end with NULL and point into `c_argv`, `c_env`, `c_fd`,
    // `c_program` and `c_fifo`, which live until after the call
    let err = unsafe { sys::execveat_empty(a.trampoline, &argv_ptrs, &env_ptrs) };
    let code = if err.raw_os_error() == Some(libc::ENOENT) {
        127
    } else {
        126
    };
    Err(Error::Exec {
        path: argv[0].clone(),
        reason: err.to_string(),
        code,
    })
}

fn cstrings(items: &[String]) -> Result<Vec<CString>> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| Error::InvalidSpec(format!("{s:?} contains NUL")))
        })
        .collect()
}

fn setup_stdio(stdio: &Stdio) -> Result<()> {
    match stdio {
        Stdio::Inherit => Ok(()),
        Stdio::Null => {
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .ctx(|| "open /dev/null".into())?;
            for fd in 0..3 {
                // SAFETY: in the child after fork, stdio is the child's own to replace
                unsafe { sys::dup2(null.as_raw_fd(), fd) }
                    .ctx(|| "redirect stdio to /dev/null".into())?;
            }
            Ok(())
        }
        Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } => {
            // move the sources above 2 first so that dup2 order cannot clobber them
            let hi: Vec<OwnedFd> = [stdin, stdout, stderr]
                .iter()
                .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(std::io::Error::from))
                .collect::<std::io::Result<_>>()
                .ctx(|| "duplicate stdio descriptors".into())?;
            for (i, fd) in hi.iter().enumerate() {
                // SAFETY: in the child after fork, stdio is the child's own to replace
                unsafe { sys::dup2(fd.as_raw_fd(), i as RawFd) }
                    .ctx(|| format!("set up fd {i}"))?;
            }
            Ok(())
        }
    }
}

/// The process's environment, with `PATH` and `HOME` defaulted as runc and Docker do.
fn environment(p: &Process) -> Vec<String> {
    let mut env = p.env().clone().unwrap_or_default();
    if !env.iter().any(|kv| kv.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|kv| kv.starts_with("HOME=")) {
        let home = home_of(p.user().uid()).unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    env
}

/// The home directory of `uid` from the container's /etc/passwd.
fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
    })
}

/// Resolves the program as execve would with `PATH`, and checks it can run: the errors
/// carry Docker's exit codes, 127 (not found) and 126 (cannot be invoked).
pub(crate) fn find_executable(name: &str, path_var: &str, cwd: &Path) -> Result<PathBuf> {
    let not_found = |reason: String| Error::Exec {
        path: name.to_string(),
        reason,
        code: 127,
    };
    let check = |p: &Path| -> Result<Option<PathBuf>> {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => Err(Error::Exec {
                path: name.into(),
                reason: "is a directory".into(),
                code: 126,
            }),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(Error::Exec {
                path: name.into(),
                reason: "permission denied".into(),
                code: 126,
            }),
            Ok(_) => Ok(Some(p.to_path_buf())),
            Err(_) => Ok(None),
        }
    };
    if name.contains('/') {
        let p = if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            cwd.join(name)
        };
        return check(&p)?.ok_or_else(|| not_found("no such file or directory".into()));
    }
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        if let Some(found) = check(&Path::new(dir).join(name))? {
            return Ok(found);
        }
    }
    Err(not_found("executable file not found in $PATH".into()))
}

fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        let res = rlimit_resource(r.typ());
        setrlimit(res, r.soft(), r.hard()).map_err(|e| {
            let (_, cur_hard) = nix::sys::resource::getrlimit(res).unwrap_or((0, 0));
            let hint = if e == nix::errno::Errno::EPERM && r.hard() > cur_hard {
                format!(
                    ": raising the hard limit above {cur_hard} needs CAP_SYS_RESOURCE, which this \
                     runtime's own bounding set lacks"
                )
            } else {
                String::new()
            };
            Error::InvalidSpec(format!(
                "rlimit {:?} soft={} hard={}: {e}{hint}",
                r.typ(),
                r.soft(),
                r.hard()
            ))
        })?;
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> Resource {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

fn set_user(p: &Process) -> Result<()> {
    let user = p.user();
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|&g| Gid::from_raw(g))
        .collect();
    // setgroups is refused in a user namespace with setgroups=deny: only call it when
    // there is something to set or clear
    match nix::unistd::setgroups(&gids) {
        Err(nix::errno::Errno::EPERM) if gids.is_empty() => {}
        r => r.ctx(|| format!("setgroups {gids:?}"))?,
    }
    let (uid, gid) = (Uid::from_raw(user.uid()), Gid::from_raw(user.gid()));
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("setresgid {gid}"))?;
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("setresuid {uid}"))?;
    Ok(())
}

/// `chdir` to the process's cwd, then make sure it really is inside the container: a
/// leaked host descriptor (`/proc/self/fd/N` as cwd, CVE-2024-21626) would leave the cwd
/// outside the root, where `getcwd` fails. `Ok(false)` when the current credentials may
/// not enter it (EACCES).
fn enter_cwd(cwd: &Path) -> Result<bool> {
    if !cwd.is_absolute() {
        return Err(Error::InvalidSpec(format!(
            "process.cwd {} is not absolute",
            cwd.display()
        )));
    }
    match nix::unistd::chdir(cwd) {
        Err(nix::errno::Errno::EACCES) => return Ok(false),
        r => r.ctx(|| format!("chdir to cwd {}", cwd.display()))?,
    }
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(true),
        _ => Err(Error::InvalidSpec(format!(
            "process.cwd {} is outside the container's root",
            cwd.display()
        ))),
    }
}

/// `DEVPTS_SUPER_MAGIC`.
const DEVPTS_SUPER_MAGIC: u64 = 0x1cd1;
/// The first major number of Unix98 pty slaves.
const PTY_SLAVE_MAJOR: u32 = 136;

/// Allocates the container's terminal in its own devpts, makes it the controlling
/// terminal and stdio, binds it onto /dev/console, and sends the master to the console
/// socket. Nothing is reached by a path that could be a symlink (CVE-2025-52565): the
/// master is the devpts's own `ptmx` (opened inside the root and checked to be 5:2 on
/// devpts), the slave comes from the master (`TIOCGPTPEER`) and is checked to be a pty,
/// and `/dev/console` is made and opened beneath `/dev` without following a symlink, then
/// covered with a clone of the slave's mount (`open_tree` + `move_mount`).
fn setup_console(a: &InitArgs<'_>) -> Result<()> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use rustix::pty::{OpenptFlags, grantpt, ptsname, unlockpt};
    let sock = a.console_socket.ok_or_else(|| {
        Error::InvalidSpec("process.terminal is set but no console socket was given".into())
    })?;
    let bad = |what: String| Error::Init(format!("process.terminal: {what}"));
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .ctx(|| "open /".into())?;
    let master = rustix::fs::openat2(
        &root,
        "dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(std::io::Error::from)
    .ctx(|| "open /dev/pts/ptmx (a devpts at /dev/pts is needed for a terminal)".into())?;
    let st = rustix::fs::fstat(&master)
        .map_err(std::io::Error::from)
        .ctx(|| "stat /dev/pts/ptmx".into())?;
    let fs = rustix::fs::fstatfs(&master)
        .map_err(std::io::Error::from)
        .ctx(|| "statfs /dev/pts/ptmx".into())?;
    if fs.f_type as u64 != DEVPTS_SUPER_MAGIC
        || st.st_mode & libc::S_IFMT != libc::S_IFCHR
        || st.st_rdev != libc::makedev(5, 2)
    {
        return Err(bad(
            "/dev/pts/ptmx is not the ptmx of a devpts mounted at /dev/pts".into(),
        ));
    }
    grantpt(&master)
        .and_then(|()| unlockpt(&master))
        .map_err(std::io::Error::from)
        .ctx(|| "unlock the pty".into())?;
    let name = ptsname(&master, Vec::new())
        .map_err(std::io::Error::from)
        .ctx(|| "ptsname".into())?;
    let slave_name = PathBuf::from(std::ffi::OsStr::from_bytes(name.as_bytes()));
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )
    .map_err(std::io::Error::from)
    .ctx(|| "open the pty's slave (TIOCGPTPEER)".into())?;
    let st = rustix::fs::fstat(&slave)
        .map_err(std::io::Error::from)
        .ctx(|| "stat the pty's slave".into())?;
    let major = libc::major(st.st_rdev);
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR
        || !(PTY_SLAVE_MAJOR..PTY_SLAVE_MAJOR + 8).contains(&major)
    {
        return Err(bad("the pty's slave is not a pty".into()));
    }
    if let Some(size) = a.process.console_size() {
        let ws = rustix::termios::Winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let _ = rustix::termios::tcsetwinsize(&slave, ws);
    }
    if !a.joining && a.new_mountns {
        bind_console(&root, &slave)?;
    }
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    rustix::process::ioctl_tiocsctty(&slave)
        .map_err(std::io::Error::from)
        .ctx(|| "TIOCSCTTY".into())?;
    for fd in 0..3 {
        // SAFETY: in the child after fork, stdio is the child's own to replace
        unsafe { sys::dup2(slave.as_raw_fd(), fd) }.ctx(|| "make the pty the stdio".into())?;
    }
    crate::channel::send_fd(sock, master.as_raw_fd(), &slave_name.to_string_lossy())?;
    Ok(())
}

/// Covers `/dev/console` with the pty's slave: the file is made (or a symlink there
/// replaced) beneath `/dev` and opened `O_PATH | O_NOFOLLOW`; the mount is a clone of the
/// slave's own (`open_tree`), moved onto that descriptor.
fn bind_console(root: &OwnedFd, slave: &OwnedFd) -> Result<()> {
    use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
    use rustix::mount::{MoveMountFlags, OpenTreeFlags};
    let what = || "bind the pty onto /dev/console".to_string();
    let dev = rustix::fs::openat2(
        root,
        "dev",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(std::io::Error::from)
    .ctx(|| "open /dev".into())?;
    if let Ok(st) = rustix::fs::statat(&dev, "console", AtFlags::SYMLINK_NOFOLLOW)
        && st.st_mode & libc::S_IFMT == libc::S_IFLNK
    {
        rustix::fs::unlinkat(&dev, "console", AtFlags::empty())
            .map_err(std::io::Error::from)
            .ctx(|| "remove the symlink at /dev/console".into())?;
    }
    match rustix::fs::openat(
        &dev,
        "console",
        OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(_) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(std::io::Error::from(e)).ctx(|| "create /dev/console".into()),
    }
    let target = rustix::fs::openat(
        &dev,
        "console",
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .ctx(what)?;
    let kind = rustix::fs::fstat(&target)
        .map_err(std::io::Error::from)
        .ctx(what)?
        .st_mode
        & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFCHR {
        return Err(Error::Init(
            "/dev/console is neither a file nor a device: refusing to mount over it".into(),
        ));
    }
    let tree = rustix::mount::open_tree(
        slave,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(std::io::Error::from)
    .ctx(what)?;
    rustix::mount::move_mount(
        &tree,
        "",
        &target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(std::io::Error::from)
    .ctx(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_lookup_codes() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(bin.join("data"), "x").unwrap();
        let path = bin.to_str().unwrap();
        assert_eq!(
            find_executable("tool", path, Path::new("/")).unwrap(),
            bin.join("tool")
        );
        let code = |r: Result<PathBuf>| match r {
            Err(Error::Exec { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(find_executable("nope", path, Path::new("/"))), 127);
        assert_eq!(
            code(find_executable(
                bin.join("data").to_str().unwrap(),
                path,
                Path::new("/")
            )),
            126
        );
        assert_eq!(code(find_executable(path, path, Path::new("/"))), 126);
    }
}
