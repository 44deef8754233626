//! The public face: [`Container`] and its builder, with runc's lifecycle.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::cgroups::{self, CgroupManager, Stats};
use crate::channel::{self, Channel, Msg};
use crate::error::{Error, Result, SysContext};
use crate::init::{self, InitArgs, Release, Stdio};
use crate::rootfs;
use crate::seccomp;
use crate::state::{self, State, StateStore, Status};
use crate::sys::{self, Forked};

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

impl ContainerBuilder {
    /// The OCI bundle directory (holding `config.json` and usually `rootfs/`).
    pub fn bundle(mut self, bundle: impl Into<PathBuf>) -> Self {
        self.bundle = bundle.into();
        self
    }

    /// Uses this spec instead of reading the bundle's `config.json`.
    pub fn spec(mut self, spec: Spec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// The state root directory (default [`state::DEFAULT_ROOT`]).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }

    /// Where the process's stdio comes from (default: inherited).
    pub fn stdio(mut self, stdio: Stdio) -> Self {
        self.stdio = stdio;
        self
    }

    /// A unix socket that receives the terminal's master (`process.terminal`), as runc's
    /// `--console-socket`.
    pub fn console_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.console_socket = Some(path.into());
        self
    }

    /// Writes the init process's pid here after creation.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// Uses `MS_MOVE` + `chroot` instead of `pivot_root` (rootfs on ramfs).
    pub fn no_pivot(mut self, yes: bool) -> Self {
        self.no_pivot = yes;
        self
    }

    /// Creates the container as `runc create` does: everything is set up and the user's
    /// process waits until [`Container::start`] (from this or any other process).
    ///
    /// As with runc, a `process` without `capabilities` keeps every capability the runtime
    /// holds (root's full set): give the set explicitly (e.g.
    /// [`crate::caps::docker_default_capabilities`]) for anything untrusted.
    pub fn create(self) -> Result<Container> {
        self.build(true)
    }

    /// Creates, starts and waits for the container, then deletes it; returns the exit
    /// code (128+signal when killed by a signal), as `runc run` does.
    pub fn run(self) -> Result<i32> {
        let mut c = self.build(false)?;
        let res = c.start().and_then(|()| c.wait());
        let del = c.delete(true);
        let code = res?;
        del?;
        Ok(code)
    }

    /// Creates the container and releases it through the channel rather than the fifo
    /// (only this process can start it; saves a fifo round trip).
    pub fn create_attached(self) -> Result<Container> {
        self.build(false)
    }

    fn build(self, fifo: bool) -> Result<Container> {
        state::validate_id(&self.id)?;
        let bundle = self.bundle.canonicalize().map_err(|e| Error::BadBundle {
            path: self.bundle.clone(),
            reason: e.to_string(),
        })?;
        let spec = match self.spec {
            Some(s) => {
                crate::spec::check_version(s.version())?;
                s
            }
            None => crate::spec::load(&bundle)?,
        };
        crate::spec::check_supported(&spec)?;
        let rootfs = crate::spec::rootfs_path(&bundle, &spec)?;
        let process = spec
            .process()
            .clone()
            .ok_or_else(|| Error::InvalidSpec("spec has no process".into()))?;
        if process.terminal().unwrap_or(false) && self.console_socket.is_none() {
            return Err(Error::InvalidSpec(
                "process.terminal is set: a console socket is required (--console-socket)".into(),
            ));
        }
        let store = StateStore::open(&self.root)?;
        let lock = store.create(&self.id)?;
        // declared before `cleanup`, which borrows it, so that it outlives it
        let cgroup: Box<dyn CgroupManager>;
        let mut cleanup = Cleanup {
            store: &store,
            id: &self.id,
            cgroup: None,
            pid: None,
            armed: true,
        };

        // namespaces: new ones via clone3, existing ones joined by path in the child
        let mut new_flags = CloneFlags::empty();
        let mut join: Vec<(CloneFlags, OwnedFd)> = Vec::new();
        let mut pid_ns_path = None;
        let namespaces = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for ns in &namespaces {
            let flag = ns_flag(ns.typ())?;
            match ns.path() {
                None => new_flags |= flag,
                Some(p) if flag == CloneFlags::CLONE_NEWPID => pid_ns_path = Some(p.clone()),
                Some(p) => {
                    let fd = File::open(p).ctx(|| format!("open namespace {}", p.display()))?;
                    join.push((flag, fd.into()));
                }
            }
        }
        if new_flags.contains(CloneFlags::CLONE_NEWUSER) && !join.is_empty() {
            return Err(Error::Unsupported(
                "joining namespaces by path while creating a new user namespace".into(),
            ));
        }
        let new_cgroupns = new_flags.contains(CloneFlags::CLONE_NEWCGROUP);
        let new_userns = new_flags.contains(CloneFlags::CLONE_NEWUSER);
        let new_mountns = new_flags.contains(CloneFlags::CLONE_NEWNS)
            || join.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWNS);
        if !new_mountns && spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
            return Err(Error::InvalidSpec(
                "root.readonly needs a mount namespace (linux.namespaces has no \"mount\"): \
                 the root cannot be remounted without changing the host's mount"
                    .into(),
            ));
        }
        // the init unshares these itself: the cgroup namespace once it sits in its cgroups,
        // the time namespace once it has written the clock offsets (execve enters it)
        let time_flag = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
        let new_timens = new_flags.contains(time_flag);
        let time_offsets = time_offsets(&spec, new_timens)?;
        let clone_flags = new_flags - CloneFlags::CLONE_NEWCGROUP - time_flag;

        // cgroups
        let cg_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_else(|| PathBuf::from(format!("/longshore/{}", self.id)));
        cgroup = cgroups::manager(&cg_path, &self.id)?;
        cgroup.create()?;
        cleanup.cgroup = Some(cgroup.as_ref());
        let paths = cgroup.paths();
        // a record of the cgroups before anything runs in them: if this process is killed
        // now, `delete` still finds and removes them (pid 0 reads as stopped)
        let mut st = State {
            oci_version: spec.version().clone(),
            id: self.id.clone(),
            status: Status::Creating,
            pid: 0,
            pid_start_time: 0,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            created: state::now_rfc3339(),
            owner: "root".into(),
            cgroup_layout: Some(cgroup.layout()),
            cgroup_paths: paths.clone(),
            own_pid_namespace: new_flags.contains(CloneFlags::CLONE_NEWPID),
            process: Some(process.clone()),
            hooks: spec.hooks().clone(),
            seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
        };
        store.save_unsynced(&st)?;
        if let Some(linux) = spec.linux().as_ref() {
            let mut res = linux.resources().clone().unwrap_or_default();
            allow_default_devices(&mut res, linux.devices().as_deref().unwrap_or(&[]));
            cgroup.apply(&res)?;
        }
        let warnings = cgroup.warnings();
        let join_plan = CgroupJoin::plan(cgroup.as_ref(), new_userns)?;
        let mut hierarchies = if new_mountns {
            rootfs::host_hierarchies()
        } else {
            Vec::new()
        };
        for h in &mut hierarchies {
            // keys are controller names ("memory") or "name=systemd" for named hierarchies
            h.container_dir = h.options.split(',').find_map(|c| paths.get(c)).cloned();
        }

        let seccomp = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            // compiling Docker's profile takes tens of ms; the cache under the state root
            // makes later containers pay ~0.2 ms
            .map(|s| seccomp::compile_cached(s, &store.root().join(".seccomp-cache")))
            .transpose()?;
        let console = self
            .console_socket
            .as_ref()
            .map(|p| {
                std::os::unix::net::UnixStream::connect(p)
                    .ctx(|| format!("connect to console socket {}", p.display()))
            })
            .transpose()?;
        let (parent_end, child_end) = channel::pair()?;
        let release = if fifo {
            let path = store.dir(&self.id).join("exec.fifo");
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o622))
                .ctx(|| format!("mkfifo {}", path.display()))?;
            // the init opens it for writing as the container's root: in a user namespace
            // that is the mapped host id, which the umask-trimmed mode locks out (runc
            // chowns it the same way)
            if new_userns {
                let host = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
                    maps.iter()
                        .flatten()
                        .find(|m| m.container_id() == 0)
                        .map(|m| m.host_id())
                };
                let linux = spec.linux().as_ref();
                let uid = linux.and_then(|l| host(l.uid_mappings()));
                let gid = linux.and_then(|l| host(l.gid_mappings()));
                nix::unistd::chown(
                    &path,
                    uid.map(nix::unistd::Uid::from_raw),
                    gid.map(nix::unistd::Gid::from_raw),
                )
                .ctx(|| format!("chown {}", path.display()))?;
            }
            let fd = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                .open(&path)
                .ctx(|| format!("open {}", path.display()))?;
            Release::Fifo(fd.into())
        } else {
            Release::Channel
        };
        let hooks = spec.hooks().clone();
        #[allow(deprecated)]
        let create_hooks = hooks.as_ref().is_some_and(|h| {
            h.prestart().as_ref().is_some_and(|v| !v.is_empty())
                || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
                || h.create_container().as_ref().is_some_and(|v| !v.is_empty())
        });

        // a pid namespace given by path: enter it for our children only, then come back
        let _pidns_guard = match &pid_ns_path {
            Some(p) => Some(PidNsGuard::enter(p)?),
            None => None,
        };
        let trampoline = trampoline_fd()?;
        let procfs = procfs_fd()?;
        // SAFETY: the child runs only `init::main`, which sets up with system calls and
        // ends in execve or _exit; it never returns here
        let forked =
            unsafe { sys::spawn(clone_flags.bits() as u64 & 0xffff_ffff, join_plan.v2_fd()) }
                .ctx(|| "clone3 the container's init".into())?;
        match forked {
            Forked::Child => init::main(InitArgs {
                spec: &spec,
                process: &process,
                bundle: &bundle,
                rootfs: &rootfs,
                channel: &child_end,
                release: &release,
                stdio: self.stdio,
                console_socket: console.as_ref().map(|c| c.as_raw_fd()),
                hierarchies: &hierarchies,
                seccomp: seccomp.as_ref(),
                join: &join,
                new_userns,
                new_cgroupns,
                new_mountns,
                create_hooks,
                no_pivot: self.no_pivot,
                new_timens,
                time_offsets: &time_offsets,
                joining: false,
                cgroup_tasks: &join_plan.v1_tasks,
                trampoline,
                procfs,
                enter_root: None,
            }),
            // (the helper's view of the pid is wrong when joining a pid namespace: the
            // init's hello carries the right one)
            Forked::Parent(_) => {}
        }
        drop(_pidns_guard);
        drop(child_end);
        let pid = parent_end.recv_hello_pid()?;
        cleanup.pid = Some(pid);
        drop(console);
        if new_userns {
            write_id_maps(pid, &spec)?;
        }
        if join_plan.parent_adds {
            cgroup.add_task(pid)?;
        }
        st.pid = pid;
        st.pid_start_time = state::proc_stat(pid).map(|(_, t)| t).unwrap_or(0);
        let state_json = serde_json::to_string(&st.oci_json(Status::Creating)).expect("json");
        parent_end.send(&Msg::Go { state: state_json })?;
        loop {
            match parent_end.recv()? {
                Some(Msg::Ready) => break,
                Some(Msg::RunCreateHooks) => {
                    // the spec's prestart point is after the create operation's setup:
                    // the state those hooks read says "created" (runtime-tools checks);
                    // createRuntime runs during create, so it reads "creating"
                    let prestart = serde_json::to_vec(&st.oci_json(Status::Created)).expect("json");
                    let json = serde_json::to_vec(&st.oci_json(Status::Creating)).expect("json");
                    #[allow(deprecated)]
                    if let Some(h) = &hooks {
                        crate::hooks::run(
                            "prestart",
                            h.prestart().as_deref().unwrap_or(&[]),
                            &prestart,
                        )?;
                        crate::hooks::run(
                            "createRuntime",
                            h.create_runtime().as_deref().unwrap_or(&[]),
                            &json,
                        )?;
                    }
                    parent_end.send(&Msg::HooksDone)?;
                }
                Some(Msg::Failed { message, code }) => return Err(channel::failure(message, code)),
                Some(other) => return Err(Error::Init(format!("unexpected {other:?} from init"))),
                None => {
                    return Err(Error::Init("the init process exited during setup".into()));
                }
            }
        }
        st.status = Status::Created;
        store.save(&st)?;
        if let Some(pf) = &self.pid_file {
            write_pid_file(pf, pid)?;
        }
        cleanup.armed = false;
        drop(cleanup);
        drop(lock);
        Ok(Container {
            store,
            state: st,
            parent: Some(Parent {
                channel: parent_end,
                fifo,
                exit: None,
            }),
            warnings,
        })
    }
}

/// Appends, after the spec's own device rules, the devices every container may use
/// (runc's default allow list: null, zero, full, random, urandom, tty, console, ptmx and
/// the pty slaves) and those the spec creates in `linux.devices`.
fn allow_default_devices(
    res: &mut oci_spec::runtime::LinuxResources,
    created: &[oci_spec::runtime::LinuxDevice],
) {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType as T};
    let rule = |typ: T, major: Option<i64>, minor: Option<i64>| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some("rwm".to_string()));
        r
    };
    let mut rules = res.devices().clone().unwrap_or_default();
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(rule(T::C, Some(major), Some(minor)));
    }
    rules.push(rule(T::C, Some(136), None));
    for d in created {
        let typ = match d.typ() {
            T::U => T::C,
            t => t,
        };
        rules.push(rule(typ, Some(d.major()), Some(d.minor())));
    }
    res.set_devices(Some(rules));
}

/// Undoes a half-made container when `build` fails.
struct Cleanup<'a> {
    store: &'a StateStore,
    id: &'a str,
    cgroup: Option<&'a dyn CgroupManager>,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = self.cgroup {
            let _ = cg.destroy();
        }
        let _ = self.store.remove(self.id);
    }
}

/// How a new process gets into the container's cgroups without the slow path: born in
/// the cgroup v2 directory (`CLONE_INTO_CGROUP`), and moving its own thread into each v1
/// hierarchy. In a new user namespace the process cannot write the host's cgroup files,
/// so the runtime moves it (`parent_adds`).
struct CgroupJoin {
    v1_tasks: Vec<PathBuf>,
    v2_dir: Option<File>,
    parent_adds: bool,
}

impl CgroupJoin {
    fn none() -> Self {
        CgroupJoin {
            v1_tasks: Vec::new(),
            v2_dir: None,
            parent_adds: false,
        }
    }

    fn plan(cg: &dyn CgroupManager, in_userns: bool) -> Result<Self> {
        if in_userns {
            return Ok(CgroupJoin {
                v1_tasks: Vec::new(),
                v2_dir: None,
                parent_adds: true,
            });
        }
        let unified = cg.layout() == cgroups::CgroupLayout::Unified;
        let mut plan = Self::none();
        let mut seen = std::collections::BTreeSet::new();
        for (key, dir) in cg.paths() {
            if !seen.insert(dir.clone()) {
                continue;
            }
            if unified || key == "unified" {
                let f = File::open(&dir).ctx(|| format!("open cgroup {}", dir.display()))?;
                plan.v2_dir = Some(f);
            } else {
                plan.v1_tasks.push(dir.join("tasks"));
            }
        }
        Ok(plan)
    }

    fn v2_fd(&self) -> Option<RawFd> {
        self.v2_dir.as_ref().map(|f| f.as_raw_fd())
    }
}

/// Enters a pid namespace for this thread's future children; restores on drop.
struct PidNsGuard {
    own: File,
}

impl PidNsGuard {
    fn enter(path: &Path) -> Result<Self> {
        let own = File::open("/proc/thread-self/ns/pid_for_children")
            .ctx(|| "open own pid namespace".into())?;
        let target = File::open(path).ctx(|| format!("open pid namespace {}", path.display()))?;
        nix::sched::setns(target.as_fd(), CloneFlags::CLONE_NEWPID)
            .ctx(|| format!("enter pid namespace {}", path.display()))?;
        Ok(PidNsGuard { own })
    }
}

impl Drop for PidNsGuard {
    fn drop(&mut self) {
        let _ = nix::sched::setns(self.own.as_fd(), CloneFlags::CLONE_NEWPID);
    }
}

fn ns_flag(t: LinuxNamespaceType) -> Result<CloneFlags> {
    Ok(match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    })
}

/// The spec's `linux.timeOffsets` as `/proc/self/timens_offsets` lines.
fn time_offsets(spec: &Spec, new_timens: bool) -> Result<String> {
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref());
    let Some(offsets) = offsets.filter(|o| !o.is_empty()) else {
        return Ok(String::new());
    };
    if !new_timens {
        return Err(Error::InvalidSpec(
            "linux.timeOffsets needs a new time namespace in linux.namespaces".into(),
        ));
    }
    let mut text = String::new();
    for (clock, off) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::InvalidSpec(format!(
                "linux.timeOffsets: unknown clock {clock:?} (monotonic or boottime)"
            )));
        }
        let nanos = off.nanosecs().unwrap_or(0);
        if nanos >= 1_000_000_000 {
            return Err(Error::InvalidSpec(format!(
                "linux.timeOffsets.{clock}.nanosecs {nanos} is not below one second"
            )));
        }
        text.push_str(&format!("{clock} {} {nanos}\n", off.secs().unwrap_or(0)));
    }
    Ok(text)
}

fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let fmt = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let uid = fmt(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid = fmt(linux.and_then(|l| l.gid_mappings().as_ref()));
    if uid.is_empty() || gid.is_empty() {
        return Err(Error::InvalidSpec(
            "a user namespace needs uidMappings and gidMappings".into(),
        ));
    }
    std::fs::write(format!("/proc/{pid}/uid_map"), uid).ctx(|| "write uid_map".into())?;
    std::fs::write(format!("/proc/{pid}/gid_map"), gid).ctx(|| "write gid_map".into())?;
    Ok(())
}

/// Writes `pid` to the pid file `path` as runc does, without following a symlink planted
/// at the temporary name: `<path>.tmp` is created with `O_CREAT | O_EXCL | O_NOFOLLOW`
/// (a stale one, file or symlink, is unlinked once, never written through) and renamed
/// over `path` (which replaces a symlink there rather than following it).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
    };
    let mut f = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp).ctx(|| format!("remove stale {}", tmp.display()))?;
            open()
        }
        r => r,
    }
    .ctx(|| format!("create {}", tmp.display()))?;
    f.write_all(pid.to_string().as_bytes())
        .ctx(|| format!("write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).ctx(|| format!("rename {}", path.display()))
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

    /// Runs `process` inside the running container (`runc exec`): joins its namespaces
    /// and cgroups, applies the process's user, capabilities, rlimits and the container's
    /// seccomp filter. Returns the new process's handle (it is our child): wait for it,
    /// signal it.
    pub fn exec(
        &self,
        process: &Process,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<crate::process::ExecProcess> {
        let status = self.status();
        if status != Status::Running && status != Status::Created {
            return Err(Error::WrongState {
                id: self.state.id.clone(),
                status: status.to_string(),
                wanted: "cannot exec in a container that is not running",
            });
        }
        if process.terminal().unwrap_or(false) && console_socket.is_none() {
            return Err(Error::InvalidSpec(
                "process.terminal is set: a console socket is required".into(),
            ));
        }
        crate::spec::check_process_supported(process)?;
        // no capabilities in the exec'd process's spec: the container's, as runc does (not
        // every capability the runtime holds)
        let inherited;
        let process = match (process.capabilities(), self.state.process.as_ref()) {
            (None, Some(init)) => {
                let mut p = process.clone();
                p.set_capabilities(init.capabilities().clone());
                inherited = p;
                &inherited
            }
            _ => process,
        };
        let pidfd = self
            .pidfd()?
            .ok_or_else(|| Error::NotFound(self.state.id.clone()))?;
        let pid = self.state.pid;
        // user first, then the rest, mount last (it changes what paths mean)
        let mut join = Vec::new();
        let own = |n: &str| {
            std::fs::metadata(format!("/proc/self/ns/{n}"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .ok()
        };
        let theirs = |n: &str| {
            std::fs::metadata(format!("/proc/{pid}/ns/{n}"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .ok()
        };
        for (name, flag) in [
            ("user", CloneFlags::CLONE_NEWUSER),
            ("ipc", CloneFlags::CLONE_NEWIPC),
            ("uts", CloneFlags::CLONE_NEWUTS),
            ("net", CloneFlags::CLONE_NEWNET),
            ("cgroup", CloneFlags::CLONE_NEWCGROUP),
            ("mnt", CloneFlags::CLONE_NEWNS),
        ] {
            if own(name) != theirs(name) {
                let f = File::open(format!("/proc/{pid}/ns/{name}"))
                    .ctx(|| format!("open {name} namespace of {}", self.state.id))?;
                join.push((flag, OwnedFd::from(f)));
            }
        }
        // without a mount namespace of its own the container is only the init's chroot:
        // enter the same root, checked to be the container's rootfs, or refuse
        let enter_root = if own("mnt") == theirs("mnt") {
            Some(self.init_root(pid)?)
        } else {
            None
        };
        let pidns = PathBuf::from(format!("/proc/{pid}/ns/pid"));
        let seccomp = self
            .state
            .seccomp
            .as_ref()
            .map(|s| seccomp::compile_cached(s, &self.store.root().join(".seccomp-cache")))
            .transpose()?;
        let console = console_socket
            .map(|p| {
                std::os::unix::net::UnixStream::connect(p)
                    .ctx(|| format!("connect to console socket {}", p.display()))
            })
            .transpose()?;
        let spec = Spec::default();
        let (parent_end, child_end) = channel::pair()?;
        let release = Release::Channel;
        let guard = if own("pid") != theirs("pid") {
            Some(PidNsGuard::enter(&pidns)?)
        } else {
            None
        };
        let cg = self.cgroup().ok();
        let join_plan = match &cg {
            Some(cg) => CgroupJoin::plan(cg.as_ref(), false)?,
            None => CgroupJoin::none(),
        };
        let trampoline = trampoline_fd()?;
        let procfs = procfs_fd()?;
        // SAFETY: the child runs only `init::main`, which ends in execve or _exit
        let forked =
            unsafe { sys::spawn(0, join_plan.v2_fd()) }.ctx(|| "clone3 the exec process".into())?;
        match forked {
            Forked::Child => init::main(InitArgs {
                spec: &spec,
                process,
                bundle: &self.state.bundle,
                rootfs: Path::new("/"),
                channel: &child_end,
                release: &release,
                stdio,
                console_socket: console.as_ref().map(|c| c.as_raw_fd()),
                hierarchies: &[],
                seccomp: seccomp.as_ref(),
                join: &join,
                new_userns: false,
                new_cgroupns: false,
                new_mountns: false,
                create_hooks: false,
                no_pivot: false,
                new_timens: false,
                time_offsets: "",
                joining: true,
                cgroup_tasks: &join_plan.v1_tasks,
                trampoline,
                procfs,
                enter_root: enter_root.as_ref().map(|f| f.as_raw_fd()),
            }),
            Forked::Parent(_) => {}
        }
        drop(guard);
        drop(child_end);
        // a failed hello means the child is gone already
        let child = parent_end.recv_hello_pid()?;
        drop(pidfd);
        let fail = |e: Error| {
            let _ = nix::sys::signal::kill(Pid::from_raw(child), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(child), None);
            e
        };
        if join_plan.parent_adds
            && let Some(cg) = &cg
        {
            cg.add_task(child).map_err(|e| fail(e.into()))?;
        }
        let state_json = serde_json::to_string(&self.oci_state()).expect("json");
        parent_end
            .send(&Msg::Go { state: state_json })
            .map_err(fail)?;
        parent_end.expect(&Msg::Ready).map_err(fail)?;
        parent_end.send(&Msg::Start).map_err(fail)?;
        match parent_end.recv().map_err(fail)? {
            None => Ok(crate::process::ExecProcess::new(child)),
            Some(Msg::Failed { message, code }) => Err(fail(channel::failure(message, code))),
            Some(other) => Err(fail(Error::Init(format!("unexpected {other:?} from exec")))),
        }
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

/// For a caller that received a console over a socket: reads the pty master from `sock`.
pub fn receive_console(sock: RawFd) -> Result<OwnedFd> {
    channel::recv_fd(sock)
}
