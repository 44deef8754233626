//! Control groups, v1 and v2, behind one trait.
//!
//! [`detect`] reads `/proc/self/mountinfo` (parsed by the pure
//! [`mountinfo::parse_mountinfo`]) to tell a v1-only, unified (cgroup2) or hybrid host.
//! Hybrid hosts (v1 controllers plus an often empty cgroup2 beside them) are driven as
//! v1. [`manager`] gives a [`CgroupManager`] for one container; [`manager_from_state`]
//! rebuilds it in a later process from [`CgroupManager::paths`]; [`manager_at`] points
//! one at another cgroupfs root (a fake tree in tests).
//!
//! Path rules for the spec's `linux.cgroupsPath` (`resolve_path`): an absolute path is
//! relative to each hierarchy's root, a relative one goes under `longshore/`, an empty
//! one means `/longshore/<container-id>`, and systemd's `slice:prefix:name` form is
//! refused (no systemd driver).
//!
//! Only what the spec sets is written. A controller the host does not have is skipped
//! with a note in [`CgroupManager::warnings`] unless the spec asks it for a non-default
//! value, which is an error naming the controller. cgroup v2 device rules are enforced
//! with an eBPF program ([`devices`]); where it cannot be loaded, `apply` fails unless the
//! rules allow every device.
//!
//! ```no_run
//! use std::path::Path;
//! use longshore_container::cgroups;
//!
//! let cg = cgroups::manager(Path::new("/longshore/demo"), "demo")?;
//! cg.create()?;
//! cg.add_task(std::process::id() as i32)?;
//! println!("{:?} {:?}", cg.stats()?, cg.warnings());
//! # Ok::<(), cgroups::CgroupError>(())
//! ```

pub mod devices;
pub mod mountinfo;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use mountinfo::CgroupMounts;

/// Errors from cgroup management.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Neither a cgroup v1 nor a cgroup2 filesystem is mounted.
    #[error(
        "cgroups: no cgroup or cgroup2 filesystem is mounted (per /proc/self/mountinfo); mount one at /sys/fs/cgroup"
    )]
    NoCgroupFs,
    /// A mountinfo line did not parse.
    #[error("cgroups: cannot parse mountinfo line {line}: {text:?}")]
    Mountinfo {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// Reading a cgroup file failed.
    #[error("cgroups: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Writing a cgroup file failed.
    #[error("cgroups: cannot write {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What we wrote.
        value: String,
        /// The error.
        source: io::Error,
    },
    /// Creating, listing or removing a cgroup directory failed.
    #[error("cgroups: cannot {op} {path}: {source}")]
    Dir {
        /// `create`, `list` or `remove`.
        op: &'static str,
        /// The directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A systemd-style `slice:prefix:name` cgroups path.
    #[error(
        "cgroups path {0:?} is in systemd's slice:prefix:name form, but the systemd cgroup driver is not supported; use a cgroupfs path such as /longshore/<id>"
    )]
    SystemdPath(String),
    /// The cgroups path is unusable.
    #[error("cgroups path {path:?} is invalid: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The spec sets a resource whose controller this host does not have.
    #[error(
        "cgroups: the spec sets {resource}, but the {controller} controller is not available on this host ({layout:?} layout)"
    )]
    MissingController {
        /// The controller.
        controller: &'static str,
        /// The resource asked for.
        resource: String,
        /// The host's layout.
        layout: CgroupLayout,
    },
    /// A resource value is out of range or malformed.
    #[error("cgroups: invalid {what} {value:?}: {reason}")]
    InvalidValue {
        /// Which resource.
        what: &'static str,
        /// The value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The cgroup v2 device filter (eBPF) could not be loaded or attached.
    #[error(
        "cgroups: cannot enforce the device rules on {path} (cgroup v2 needs an eBPF device \
         program): {reason}"
    )]
    DeviceFilter {
        /// The cgroup directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The resource exists in the spec but not in this cgroup version.
    #[error("cgroups: {what} is not supported with cgroup {version}: {reason}")]
    Unsupported {
        /// The resource.
        what: &'static str,
        /// `v1` or `v2`.
        version: &'static str,
        /// What to do instead.
        reason: &'static str,
    },
    /// The freezer did not reach FROZEN in time (the cgroup was thawed again).
    #[error(
        "cgroups: {path} did not freeze within {waited:?} (last state {state:?}); thawed it again"
    )]
    FreezeTimeout {
        /// The freezer file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// The last state read.
        state: String,
    },
    /// The paths saved in a state file cannot be used.
    #[error("cgroups: saved cgroup paths are unusable: {0}")]
    BadState(String),
    /// Sending a signal to a process of the cgroup failed.
    #[error("cgroups: cannot send signal {signal} to pid {pid}: {source}")]
    Signal {
        /// The process.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The errno.
        source: Errno,
    },
}

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupLayout {
    /// Only v1 hierarchies.
    V1,
    /// cgroup2 mounted at the root with controllers.
    Unified,
    /// v1 controllers with an (often empty) cgroup2 hierarchy beside them; treated as v1.
    Hybrid,
}

/// The freezer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreezerState {
    /// Running.
    Thawed,
    /// Being frozen.
    Freezing,
    /// Frozen.
    Frozen,
}

/// Resource usage of a cgroup. Values whose controller is missing stay 0 / `None`.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Total CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory in use, bytes.
    pub memory_usage: u64,
    /// Memory limit, bytes (`None` when unlimited).
    pub memory_limit: Option<u64>,
    /// Number of tasks.
    pub pids_current: u64,
    /// Task limit (`None` when unlimited).
    pub pids_limit: Option<u64>,
    /// CPU time in user mode, nanoseconds (v1: USER_HZ resolution).
    #[serde(default)]
    pub cpu_user_ns: u64,
    /// CPU time in kernel mode, nanoseconds (v1: USER_HZ resolution).
    #[serde(default)]
    pub cpu_system_ns: u64,
    /// Peak memory use, bytes, when the kernel reports it.
    #[serde(default)]
    pub memory_max_usage: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup.
    #[serde(default)]
    pub oom_kills: u64,
}

/// One container's cgroup(s).
pub trait CgroupManager: Send + Sync + std::fmt::Debug {
    /// The layout this manager drives.
    fn layout(&self) -> CgroupLayout;
    /// Creates the cgroup directories.
    fn create(&self) -> Result<(), CgroupError>;
    /// Writes the resource limits.
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Moves a process into the cgroup(s).
    fn add_task(&self, pid: i32) -> Result<(), CgroupError>;
    /// Freezes every process.
    fn freeze(&self) -> Result<(), CgroupError>;
    /// Thaws every process.
    fn thaw(&self) -> Result<(), CgroupError>;
    /// The freezer state.
    fn freezer_state(&self) -> Result<FreezerState, CgroupError>;
    /// Pids of every process in the cgroup.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Resource usage.
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// Removes the cgroup directories (the cgroup must be empty).
    fn destroy(&self) -> Result<(), CgroupError>;
    /// Controller name to directory, for the state file.
    fn paths(&self) -> BTreeMap<String, PathBuf>;

    /// Sends `signal` to every process of the cgroup: freezes it first (so nothing
    /// forks past us), signals each pid, thaws (a paused cgroup stays frozen unless the
    /// signal is SIGKILL). For containers without their own pid namespace, where
    /// killing pid 1 does not take the rest down. Without a freezer the processes are
    /// signalled unfrozen.
    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        freeze_signal_thaw(self, signal)
    }

    /// Notes about what was skipped or not enforced (missing controllers, ignored
    /// kernel memory limits, v2 device rules without eBPF). Never fatal.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// [`CgroupManager::kill_all`]'s portable implementation.
fn freeze_signal_thaw<M: CgroupManager + ?Sized>(m: &M, signal: i32) -> Result<(), CgroupError> {
    let sig = Signal::try_from(signal).map_err(|_| CgroupError::InvalidValue {
        what: "signal",
        value: signal.to_string(),
        reason: "not a signal number".into(),
    })?;
    // A paused container stays paused, unless it is being killed (frozen tasks only die
    // once thawed).
    let was_frozen = m.freezer_state().ok() == Some(FreezerState::Frozen);
    let mut unfrozen_kill = false;
    let frozen = match m.freeze() {
        Ok(()) => !was_frozen || sig == Signal::SIGKILL,
        Err(CgroupError::MissingController { .. }) => false,
        // a cgroup that did not freeze in time (a task the freezer cannot stop, on a busy
        // machine) is killed all the same: a kill that fails leaves the container running
        // and its remover waiting. Unfrozen, a task forked meanwhile could miss a round,
        // so the kill goes round again while tasks are left.
        Err(_) if sig == Signal::SIGKILL => {
            unfrozen_kill = true;
            false
        }
        Err(e) => return Err(e),
    };
    let rounds = if unfrozen_kill { 5 } else { 1 };
    let sent = (|| {
        for round in 0..rounds {
            if round > 0 {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let pids = m.pids()?;
            if round > 0 && pids.iter().all(|&p| p <= 0) {
                break;
            }
            signal_pids(&pids, sig, signal)?;
        }
        Ok(())
    })();
    if frozen {
        let thawed = m.thaw();
        sent?;
        thawed
    } else {
        sent
    }
}

/// Sends `sig` to each of `pids`.
fn signal_pids(pids: &[i32], sig: Signal, signal: i32) -> Result<(), CgroupError> {
    for &pid in pids {
        // Pids of other pid namespaces read as 0: kill(0) would hit our own group.
        if pid <= 0 {
            continue;
        }
        match kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => {
                return Err(CgroupError::Signal {
                    pid,
                    signal,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Detects the host's cgroup layout from `/proc/self/mountinfo`.
pub fn detect() -> Result<CgroupLayout, CgroupError> {
    host_mounts()?.layout()
}

/// The host's cgroup mounts, read once per process.
fn host_mounts() -> Result<CgroupMounts, CgroupError> {
    static MOUNTS: OnceLock<CgroupMounts> = OnceLock::new();
    if let Some(m) = MOUNTS.get() {
        return Ok(m.clone());
    }
    let text = read_file(Path::new("/proc/self/mountinfo"))?;
    let m = mountinfo::parse_mountinfo(&text)?;
    m.layout()?;
    Ok(MOUNTS.get_or_init(|| m).clone())
}

/// A manager for `cgroups_path` (the spec's `linux.cgroupsPath`, or a default derived
/// from the container id) on the host's layout.
pub fn manager(
    cgroups_path: &Path,
    container_id: &str,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let rel = resolve_path(cgroups_path, container_id)?;
    let mounts = host_mounts()?;
    match mounts.layout()? {
        CgroupLayout::Unified => {
            // layout() said Unified, so the mount is there.
            let mount = mounts.unified.clone().ok_or(CgroupError::NoCgroupFs)?;
            let root = mounts.unified_root.clone().unwrap_or_else(|| "/".into());
            let dir = mountinfo::dir_in_mount(&mount, &root, &rel);
            Ok(Box::new(v2::V2Manager::new(Some(mount), dir)))
        }
        layout => Ok(Box::new(v1::V1Manager::from_mounts(layout, &mounts, &rel))),
    }
}

/// A manager whose hierarchies live under `mount_root` instead of the host's mounts:
/// for tests against a fake cgroupfs tree, or a cgroupfs mounted elsewhere.
///
/// For [`CgroupLayout::Unified`], `mount_root` is the cgroup2 mount. For v1 and hybrid,
/// every subdirectory of `mount_root` named after controllers (`memory`, `cpu,cpuacct`)
/// is a hierarchy, `systemd` is `name=systemd`, and (hybrid) `unified` the cgroup2 one.
pub fn manager_at(
    layout: CgroupLayout,
    mount_root: &Path,
    cgroups_path: &Path,
    container_id: &str,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let rel = resolve_path(cgroups_path, container_id)?;
    if layout == CgroupLayout::Unified {
        return Ok(Box::new(v2::V2Manager::new(
            Some(mount_root.to_path_buf()),
            mount_root.join(&rel),
        )));
    }
    let mut mounts = CgroupMounts::default();
    let entries = std::fs::read_dir(mount_root).map_err(|source| CgroupError::Dir {
        op: "list",
        path: mount_root.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let mount_point = mount_root.join(&name);
        if name == "unified" {
            if layout == CgroupLayout::Hybrid {
                mounts.unified = Some(mount_point);
                mounts.unified_root = Some("/".into());
            }
            continue;
        }
        let controllers: Vec<String> = if name == "systemd" {
            vec!["name=systemd".into()]
        } else {
            name.split(',')
                .filter(|c| mountinfo::V1_CONTROLLERS.contains(c))
                .map(str::to_string)
                .collect()
        };
        if !controllers.is_empty() {
            mounts.v1.push(mountinfo::V1Hierarchy {
                mount_point,
                root: "/".into(),
                controllers,
            });
        }
    }
    Ok(Box::new(v1::V1Manager::from_mounts(layout, &mounts, &rel)))
}

/// Rebuilds a manager from what [`CgroupManager::paths`] returned (saved in a
/// container's state file by an earlier process).
pub fn manager_from_state(
    layout: CgroupLayout,
    paths: &BTreeMap<String, PathBuf>,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    for (key, p) in paths {
        if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
            return Err(CgroupError::BadState(format!(
                "{key}: {} is not an absolute path without '..'",
                p.display()
            )));
        }
    }
    match layout {
        CgroupLayout::Unified => {
            let mut dirs = paths.values();
            match (dirs.next(), dirs.next()) {
                (Some(dir), None) => Ok(Box::new(v2::V2Manager::new(None, dir.clone()))),
                _ => Err(CgroupError::BadState(format!(
                    "a unified cgroup has exactly one directory, the state has {}",
                    paths.len()
                ))),
            }
        }
        layout => {
            if paths.is_empty() {
                return Err(CgroupError::BadState("no cgroup directories saved".into()));
            }
            Ok(Box::new(v1::V1Manager::from_paths(layout, paths)))
        }
    }
}

/// Applies the path rules to the spec's `linux.cgroupsPath`, giving the cgroup's path
/// relative to each hierarchy's root.
///
/// * `/a/b` → `a/b`; `a/b` → `longshore/a/b`; empty → `longshore/<container_id>`.
/// * `slice:prefix:name` → [`CgroupError::SystemdPath`].
/// * `..` components and a path naming the hierarchy root itself are refused.
pub(crate) fn resolve_path(
    cgroups_path: &Path,
    container_id: &str,
) -> Result<PathBuf, CgroupError> {
    let given = cgroups_path.to_string_lossy().into_owned();
    let invalid = |reason| CgroupError::InvalidPath {
        path: given.clone(),
        reason,
    };
    let (mut out, rest) = if given.is_empty() {
        (PathBuf::from("longshore"), Path::new(container_id))
    } else if given.starts_with('/') {
        (PathBuf::new(), cgroups_path)
    } else if given.split(':').count() == 3 {
        return Err(CgroupError::SystemdPath(given));
    } else {
        (PathBuf::from("longshore"), cgroups_path)
    };
    for c in rest.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(invalid("'..' is not allowed")),
            Component::Prefix(_) => return Err(invalid("not a Unix path")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(invalid(
            "it names the hierarchy root; a container needs a cgroup of its own",
        ));
    }
    if out.as_os_str() == "longshore" {
        return Err(invalid("the container id is empty"));
    }
    Ok(out)
}

/// Checks every value of `r` before anything is written, so that a bad spec is refused
/// with a clear error and leaves the cgroup as it was.
pub(crate) fn validate(r: &LinuxResources) -> Result<(), CgroupError> {
    let bad = |what: &'static str, value: String, reason: &str| CgroupError::InvalidValue {
        what,
        value,
        reason: reason.into(),
    };
    if let Some(m) = r.memory() {
        for (what, v) in [
            ("memory.limit", m.limit()),
            ("memory.reservation", m.reservation()),
            ("memory.swap", m.swap()),
        ] {
            if let Some(v) = v.filter(|&v| v < -1) {
                return Err(bad(
                    what,
                    v.to_string(),
                    "use -1 (unlimited) or a byte count",
                ));
            }
        }
        if let (Some(l), Some(s)) = (m.limit(), m.swap())
            && l > 0
            && s > 0
            && s < l
        {
            return Err(bad(
                "memory.swap",
                s.to_string(),
                "memory+swap must be at least the memory limit",
            ));
        }
        if let Some(s) = m.swappiness().filter(|&s| s > 100) {
            return Err(bad("memory.swappiness", s.to_string(), "must be 0..=100"));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|&s| s != 0 && !(2..=262144).contains(&s)) {
            return Err(bad("cpu.shares", s.to_string(), "must be 2..=262144"));
        }
        if let Some(q) = c.quota().filter(|&q| q < -1) {
            return Err(bad(
                "cpu.quota",
                q.to_string(),
                "use -1 (unlimited) or microseconds",
            ));
        }
        for (what, v) in [("cpu.cpus", c.cpus()), ("cpu.mems", c.mems())] {
            if let Some(v) = v.as_deref().filter(|v| {
                !v.chars()
                    .all(|ch| ch.is_ascii_digit() || ch == ',' || ch == '-')
            }) {
                return Err(bad(what, v.to_string(), "expected a list such as 0-3,5"));
            }
        }
    }
    for d in r.devices().iter().flatten() {
        let access = d.access().as_deref().unwrap_or("");
        if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(bad(
                "device rule access",
                access.to_string(),
                "use letters from \"rwm\"",
            ));
        }
    }
    for l in r.hugepage_limits().iter().flatten() {
        let size = l.page_size();
        if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad(
                "hugepage pageSize",
                size.clone(),
                "expected a size such as 2MB or 1GB",
            ));
        }
    }
    for file in r.unified().iter().flat_map(|u| u.keys()) {
        if file.is_empty()
            || file.contains('/')
            || file.starts_with('.')
            || file.starts_with("cgroup.")
            || !file.contains('.')
        {
            return Err(bad(
                "linux.resources.unified key",
                file.clone(),
                "must be a controller file name such as memory.high",
            ));
        }
    }
    Ok(())
}

/// cgroup v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000), as runc does.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262142
}

/// blkio weight (10..=1000) to v2 `io.weight` (1..=10000), as runc does.
pub(crate) fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight).saturating_sub(10) * 9999) / 990
}

// ---- small file helpers shared by v1 and v2 ----

/// Reads a (small) file without stat-ing it first.
fn read_file(path: &Path) -> Result<String, CgroupError> {
    let err = |source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(err)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Reads `dir/file`, trimmed.
fn read_value(dir: &Path, file: &str) -> Result<String, CgroupError> {
    Ok(read_file(&dir.join(file))?.trim().to_string())
}

/// Reads `dir/file` as a number; `max` (and v1's "unlimited" page-counter maximum) is
/// `None`.
fn read_limit(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    let v = read_value(dir, file)?;
    if v == "max" {
        return Ok(None);
    }
    let n = parse_u64(&dir.join(file), &v)?;
    Ok(if n >= 1 << 62 { None } else { Some(n) })
}

fn parse_u64(path: &Path, v: &str) -> Result<u64, CgroupError> {
    v.trim().parse().map_err(|_| CgroupError::Read {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("not a number: {v:?}")),
    })
}

/// Writes `value` to an existing `dir/file` in one `write(2)` (cgroup files take one
/// value per write).
fn write_value(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let res = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| CgroupError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

/// Writes several values to one file, one `write(2)` each, keeping the file open
/// (v1 `devices.allow`, `blkio.throttle.*`).
fn write_lines(dir: &Path, file: &str, values: &[String]) -> Result<(), CgroupError> {
    if values.is_empty() {
        return Ok(());
    }
    let path = dir.join(file);
    let err = |value: &str, source| CgroupError::Write {
        path: path.clone(),
        value: value.to_string(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| err(&values[0], e))?;
    for v in values {
        f.write_all(v.as_bytes()).map_err(|e| err(v, e))?;
    }
    Ok(())
}

/// Parses `cgroup.procs`.
fn read_pids(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = read_file(&path)?;
    text.split_whitespace()
        .map(|p| {
            p.parse().map_err(|_| CgroupError::Read {
                path: path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, format!("bad pid {p:?}")),
            })
        })
        .collect()
}

/// Creates `mount/rel` one level at a time. `on_new(dir)` runs for every directory this
/// call created (v1 cpuset initialises it). A level removed under us by a concurrent
/// `destroy` is retried.
fn mkdir_levels(
    mount: &Path,
    rel: &Path,
    mut on_new: impl FnMut(&Path) -> Result<(), CgroupError>,
) -> Result<(), CgroupError> {
    let leaf = mount.join(rel);
    // Fast path: the parent exists (e.g. `longshore/` from an earlier container).
    match std::fs::create_dir(&leaf) {
        Ok(()) => return on_new(&leaf),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(CgroupError::Dir {
                op: "create",
                path: leaf,
                source,
            });
        }
    }
    let mut attempts = 0;
    'retry: loop {
        attempts += 1;
        let mut dir = mount.to_path_buf();
        for c in rel.components() {
            dir.push(c);
            match std::fs::create_dir(&dir) {
                Ok(()) => on_new(&dir)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < VANISHED_RETRIES => {
                    continue 'retry;
                }
                Err(source) => {
                    return Err(CgroupError::Dir {
                        op: "create",
                        path: dir,
                        source,
                    });
                }
            }
        }
        return Ok(());
    }
}

/// How many times creating a cgroup path is tried when a concurrent `destroy` removed a
/// shared empty parent under it (each retry means another container's destroy won a
/// race: with many at once, a handful in a row happens).
const VANISHED_RETRIES: u32 = 20;

/// Runs `f` again (up to [`VANISHED_RETRIES`] times in all) when it failed on a path that vanished: a
/// concurrent `destroy` of another container removed the shared empty `longshore`
/// parent while we were creating below it.
fn retry_vanished(mut f: impl FnMut() -> Result<(), CgroupError>) -> Result<(), CgroupError> {
    let mut attempts = 1;
    loop {
        match f() {
            Err(e) if attempts < VANISHED_RETRIES && e.is_not_found() => attempts += 1,
            r => return r,
        }
    }
}

impl CgroupError {
    /// True for I/O errors saying a path does not exist, or (ENODEV) that the cgroup was
    /// removed while we wrote to it: a concurrent `destroy` took the shared empty parent
    /// between our open and our write (v1 cpuset answers a write to an offline cgroup
    /// with ENODEV).
    fn is_not_found(&self) -> bool {
        match self {
            CgroupError::Read { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Dir { source, .. } => {
                source.kind() == io::ErrorKind::NotFound
                    || source.raw_os_error() == Some(libc::ENODEV)
            }
            _ => false,
        }
    }
}

/// Removes `dir` and every cgroup below it, deepest first. Missing directories are
/// fine; EBUSY (tasks still exiting) is retried for about a second. Then removes empty
/// ancestors named `longshore-*` (a caller's own parent, as tests use), which fails
/// harmlessly while another container still lives there. A parent named exactly
/// `longshore` (the shared default, as Docker keeps its `docker` parent) and what holds
/// it stay: removing and making them again cost every container's start and removal 2
/// `mkdir`s and 2 `rmdir`s in each hierarchy, and raced with neighbours (see
/// [`retry_vanished`]).
fn remove_cgroup_tree(dir: &Path) -> Result<(), CgroupError> {
    remove_tree(dir)?;
    let mut p = dir.parent();
    while let Some(parent) = p {
        let named_ours = parent
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("longshore-"));
        if !named_ours || std::fs::remove_dir(parent).is_err() {
            break;
        }
        p = parent.parent();
    }
    Ok(())
}

fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    // a container's cgroup usually has no child: one rmdir, not a listing first (five
    // system calls in each of the ~10 hierarchies, on the path of `run --rm`'s return).
    // A cgroup with children, or with tasks still exiting, answers EBUSY: listed below
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Dir {
                op: "list",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut pause = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(source) => {
                return Err(CgroupError::Dir {
                    op: "remove",
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Polls `check` until it says done, with a short backoff, for at most `limit`.
/// `nudge` runs every few rounds (v1 re-writes FROZEN). Returns the last observation.
fn poll_until(
    limit: Duration,
    mut check: impl FnMut() -> Result<(bool, String), CgroupError>,
    mut nudge: impl FnMut() -> Result<(), CgroupError>,
) -> Result<(bool, String), CgroupError> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    let mut round = 0u32;
    loop {
        let (done, seen) = check()?;
        if done || start.elapsed() >= limit {
            return Ok((done, seen));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
        round += 1;
        if round.is_multiple_of(8) {
            nudge()?;
        }
    }
}

/// How long freeze waits for every task to stop.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        let r = |p: &str| resolve_path(Path::new(p), "ctr1");
        assert_eq!(r("/longshore/abc").unwrap(), Path::new("longshore/abc"));
        assert_eq!(r("/a/./b/").unwrap(), Path::new("a/b"));
        assert_eq!(r("abc").unwrap(), Path::new("longshore/abc"));
        assert_eq!(r("x/y").unwrap(), Path::new("longshore/x/y"));
        assert_eq!(r("").unwrap(), Path::new("longshore/ctr1"));
        assert!(matches!(r("/"), Err(CgroupError::InvalidPath { .. })));
        assert!(matches!(r("/a/../b"), Err(CgroupError::InvalidPath { .. })));
        assert!(matches!(
            r("../escape"),
            Err(CgroupError::InvalidPath { .. })
        ));
        assert!(matches!(
            resolve_path(Path::new(""), ""),
            Err(CgroupError::InvalidPath { .. })
        ));
    }

    #[test]
    fn systemd_paths_are_refused_with_a_clear_error() {
        let err = resolve_path(Path::new("system.slice:docker:abc"), "abc").unwrap_err();
        assert!(matches!(err, CgroupError::SystemdPath(_)));
        let msg = err.to_string();
        assert!(
            msg.contains("systemd cgroup driver is not supported"),
            "{msg}"
        );
        assert!(msg.contains("system.slice:docker:abc"), "{msg}");
    }

    #[test]
    fn shares_to_weight_matches_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262144), 10000);
    }

    #[test]
    fn blkio_weight_to_io_weight_matches_runc() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
    }

    #[test]
    fn saved_state_must_be_absolute_paths() {
        let mut paths = BTreeMap::new();
        paths.insert("memory".to_string(), PathBuf::from("relative/x"));
        assert!(matches!(
            manager_from_state(CgroupLayout::V1, &paths),
            Err(CgroupError::BadState(_))
        ));
        paths.insert(
            "memory".to_string(),
            PathBuf::from("/sys/fs/cgroup/../../etc"),
        );
        assert!(matches!(
            manager_from_state(CgroupLayout::V1, &paths),
            Err(CgroupError::BadState(_))
        ));
        assert!(matches!(
            manager_from_state(CgroupLayout::Unified, &BTreeMap::new()),
            Err(CgroupError::BadState(_))
        ));
    }
}
