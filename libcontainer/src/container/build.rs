//! Creating a container: [`ContainerBuilder::build`] and the steps it takes (namespace
//! plan, cgroup setup, the init's preparation, spawn and handshake).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::{self, CgroupManager};
use crate::channel::{self, Channel, Msg};
use crate::error::{Error, Result, SysContext};
use crate::init::{self, InitArgs, Release, Stdio};
use crate::rootfs;
use crate::seccomp;
use crate::state::{self, State, StateStore, Status};
use crate::sys::{self, Forked};

use super::{Container, ContainerBuilder, Parent, procfs_fd, trampoline_fd};

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
        let ns = NamespacePlan::from_spec(&spec)?;
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

        cgroup = make_cgroups(&spec, &self.id)?;
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
            own_pid_namespace: ns.new_flags.contains(CloneFlags::CLONE_NEWPID),
            process: Some(process.clone()),
            hooks: spec.hooks().clone(),
            seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
        };
        store.save(&st)?;
        apply_resources(&spec, cgroup.as_ref())?;
        let warnings = cgroup.warnings();
        let join_plan = CgroupJoin::plan(cgroup.as_ref(), ns.new_userns)?;
        let mut hierarchies = if ns.new_mountns {
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
            Release::Fifo(exec_fifo(&store.dir(&self.id), &spec, ns.new_userns)?)
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
        let _pidns_guard = match &ns.pid_ns_path {
            Some(p) => Some(PidNsGuard::enter(p)?),
            None => None,
        };
        let trampoline = trampoline_fd()?;
        let procfs = procfs_fd()?;
        // SAFETY: the child runs only `init::main`, which sets up with system calls and
        // ends in execve or _exit; it never returns here
        let forked = unsafe {
            sys::spawn(
                ns.clone_flags.bits() as u64 & 0xffff_ffff,
                join_plan.v2_fd(),
            )
        }
        .ctx(|| "clone3 the container's init".into())?;
        match forked {
            Forked::Child => init::main(InitArgs {
                spec: &spec,
                process: &process,
                bundle: &bundle,
                rootfs: &rootfs,
                channel: &child_end,
                release: &release,
                stdio: &self.stdio,
                console_socket: console.as_ref().map(|c| c.as_raw_fd()),
                hierarchies: &hierarchies,
                seccomp: seccomp.as_ref(),
                join: &ns.join,
                new_userns: ns.new_userns,
                new_cgroupns: ns.new_cgroupns,
                new_mountns: ns.new_mountns,
                create_hooks,
                no_pivot: self.no_pivot,
                new_timens: ns.new_timens,
                time_offsets: &ns.time_offsets,
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
        if ns.new_userns {
            write_id_maps(pid, &spec)?;
        }
        if join_plan.parent_adds {
            cgroup.add_task(pid)?;
        }
        st.pid = pid;
        st.pid_start_time = state::proc_stat(pid).map(|(_, t)| t).unwrap_or(0);
        let state_json = serde_json::to_string(&st.oci_json(Status::Creating)).expect("json");
        parent_end.send(&Msg::Go { state: state_json })?;
        await_ready(&parent_end, &st, hooks.as_ref())?;
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

/// Which namespaces the init is cloned into, which it joins by path, and what follows
/// from them (the first step of `build`, before anything is created).
pub(super) struct NamespacePlan {
    /// Every namespace to create.
    new_flags: CloneFlags,
    /// Namespaces joined by path, open.
    join: Vec<(CloneFlags, OwnedFd)>,
    /// A pid namespace given by path (entered for our children only).
    pid_ns_path: Option<PathBuf>,
    new_cgroupns: bool,
    new_userns: bool,
    new_mountns: bool,
    new_timens: bool,
    /// `timens_offsets` contents for a new time namespace.
    time_offsets: String,
    /// What `clone3` creates: the cgroup and time namespaces the init unshares itself.
    clone_flags: CloneFlags,
}

impl NamespacePlan {
    /// Plans the namespaces of `spec`, refusing what cannot be done (a new user namespace
    /// with joined ones, a read-only root without a mount namespace).
    pub(super) fn from_spec(spec: &Spec) -> Result<NamespacePlan> {
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
        let time_offsets = time_offsets(spec, new_timens)?;
        let clone_flags = new_flags - CloneFlags::CLONE_NEWCGROUP - time_flag;
        Ok(NamespacePlan {
            new_flags,
            join,
            pid_ns_path,
            new_cgroupns,
            new_userns,
            new_mountns,
            new_timens,
            time_offsets,
            clone_flags,
        })
    }
}

/// The handshake's end: waits for the init to report ready, running the prestart and
/// createRuntime hooks when it asks (after its mounts, before `pivot_root`).
fn await_ready(
    channel: &Channel,
    st: &State,
    hooks: Option<&oci_spec::runtime::Hooks>,
) -> Result<()> {
    loop {
        match channel.recv()? {
            Some(Msg::Ready) => return Ok(()),
            Some(Msg::RunCreateHooks) => {
                // the spec's prestart point is after the create operation's setup:
                // the state those hooks read says "created" (runtime-tools checks);
                // createRuntime runs during create, so it reads "creating"
                let prestart = serde_json::to_vec(&st.oci_json(Status::Created)).expect("json");
                let json = serde_json::to_vec(&st.oci_json(Status::Creating)).expect("json");
                #[allow(deprecated)]
                if let Some(h) = hooks {
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
                channel.send(&Msg::HooksDone)?;
            }
            Some(Msg::Failed { message, code }) => return Err(channel::failure(message, code)),
            Some(other) => return Err(Error::Init(format!("unexpected {other:?} from init"))),
            None => {
                return Err(Error::Init("the init process exited during setup".into()));
            }
        }
    }
}

/// The container's cgroups (`linux.cgroupsPath`, or `/longshore/<id>`), made.
fn make_cgroups(spec: &Spec, id: &str) -> Result<Box<dyn CgroupManager>> {
    let cg_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .unwrap_or_else(|| PathBuf::from(format!("/longshore/{id}")));
    let cgroup = cgroups::manager(&cg_path, id)?;
    cgroup.create()?;
    Ok(cgroup)
}

/// Writes the spec's `linux.resources` into the cgroups, with the devices every
/// container may use and those it creates allowed after the spec's own rules.
fn apply_resources(spec: &Spec, cgroup: &dyn CgroupManager) -> Result<()> {
    if let Some(linux) = spec.linux().as_ref() {
        let mut res = linux.resources().clone().unwrap_or_default();
        allow_default_devices(&mut res, linux.devices().as_deref().unwrap_or(&[]));
        cgroup.apply(&res)?;
    }
    Ok(())
}

/// Makes the exec fifo in the container's state directory `dir` (what `start`, from any
/// process, opens to release the init) and returns it opened `O_PATH` for the init.
fn exec_fifo(dir: &Path, spec: &Spec, new_userns: bool) -> Result<OwnedFd> {
    let path = dir.join("exec.fifo");
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
    Ok(fd.into())
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
pub(super) struct CgroupJoin {
    pub(super) v1_tasks: Vec<PathBuf>,
    v2_dir: Option<File>,
    pub(super) parent_adds: bool,
}

impl CgroupJoin {
    pub(super) fn none() -> Self {
        CgroupJoin {
            v1_tasks: Vec::new(),
            v2_dir: None,
            parent_adds: false,
        }
    }

    pub(super) fn plan(cg: &dyn CgroupManager, in_userns: bool) -> Result<Self> {
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

    pub(super) fn v2_fd(&self) -> Option<RawFd> {
        self.v2_dir.as_ref().map(|f| f.as_raw_fd())
    }
}

/// Enters a pid namespace for this thread's future children; restores on drop.
pub(super) struct PidNsGuard {
    own: File,
}

impl PidNsGuard {
    pub(super) fn enter(path: &Path) -> Result<Self> {
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
