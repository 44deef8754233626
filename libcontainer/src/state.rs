//! Container state on disk: one directory per container under the runtime's root,
//! holding `state.json` (written atomically: temp file, fdatasync, rename) and, between
//! `create` and `start`, the `exec.fifo`. Every change happens
//! under an exclusive `flock` on the container's directory.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hooks, Process};
use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupLayout;
use crate::error::{Error, Result, SysContext};

/// The default root directory for container state.
pub const DEFAULT_ROOT: &str = "/run/longshore/runtime";

/// A container's lifecycle status, as in the OCI runtime spec (plus `paused`, as runc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created; the user's process has not started.
    Created,
    /// The user's process runs.
    Running,
    /// Frozen.
    Paused,
    /// The process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// Everything the runtime keeps about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The runtime-spec version of the bundle.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Status recorded when the state was written (`created`); the live status comes
    /// from the process, the exec fifo and the freezer (see `Container::status`).
    pub status: Status,
    /// Host pid of the init process.
    pub pid: i32,
    /// The init process's start time (clock ticks since boot, `/proc/<pid>/stat` field
    /// 22): with the pid it names the process without being fooled by pid reuse.
    pub pid_start_time: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Owner user name (as runc reports; "root" when uid 0).
    pub owner: String,
    /// cgroup layout at creation.
    pub cgroup_layout: Option<CgroupLayout>,
    /// cgroup directories by controller.
    #[serde(default)]
    pub cgroup_paths: BTreeMap<String, PathBuf>,
    /// Whether the container has its own pid namespace (killing init then kills all).
    pub own_pid_namespace: bool,
    /// The spec's process (defaults for `exec`).
    pub process: Option<Process>,
    /// The spec's hooks still to run (poststart, poststop).
    pub hooks: Option<Hooks>,
    /// The spec's `linux.seccomp` and `noNewPrivileges` are re-applied by `exec`.
    #[serde(default)]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

impl State {
    /// The OCI `state` document (`runc state` prints this shape).
    pub fn oci_json(&self, status: Status) -> serde_json::Value {
        let pid = if status == Status::Stopped {
            0
        } else {
            self.pid
        };
        serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "pid": pid,
            "status": status.to_string(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
        })
    }
}

/// The state directory tree.
#[derive(Debug, Clone)]
pub(crate) struct StateStore {
    root: PathBuf,
}

/// An exclusive lock on one container's state directory; released on drop.
#[derive(Debug)]
pub(crate) struct StateLock {
    _dir: File,
}

impl StateStore {
    /// Opens (creating, mode 0700) the root directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .ctx(|| format!("create state root {}", root.display()))?;
        Ok(StateStore { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A container's directory.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Creates the directory of a new container and locks it; fails if it exists.
    pub fn create(&self, id: &str) -> Result<StateLock> {
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()));
            }
            Err(e) => return Err(e).ctx(|| format!("create {}", dir.display())),
        }
        self.lock(id)
    }

    /// Locks an existing container's directory (blocking until free).
    pub fn lock(&self, id: &str) -> Result<StateLock> {
        let dir = self.dir(id);
        let f = File::open(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(id.to_string()),
            _ => Error::Io {
                what: format!("open {}", dir.display()),
                source: e,
            },
        })?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(std::io::Error::from)
            .ctx(|| format!("lock {}", dir.display()))?;
        Ok(StateLock { _dir: f })
    }

    /// Writes `state.json` atomically (a new file renamed over the old one), without
    /// waiting for the disk, as runc does: a process killed at any point leaves the old
    /// or the new state, and only a power cut can leave it empty, after which every
    /// container it describes is gone anyway. An fsync here cost 3-7 ms on the path of
    /// every `create` and `start`.
    pub fn save(&self, state: &State) -> Result<()> {
        let dir = self.dir(&state.id);
        let tmp = dir.join("state.json.tmp");
        let json = serde_json::to_vec(state).expect("state always serializes");
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&json)?;
            fs::rename(&tmp, dir.join("state.json"))
        };
        write().ctx(|| format!("save state of {}", state.id))
    }

    /// Reads a container's state.
    pub fn load(&self, id: &str) -> Result<State> {
        let path = self.dir(id).join("state.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Io {
                what: format!("parse {}", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(id.to_string()))
            }
            Err(e) => Err(e).ctx(|| format!("read {}", path.display())),
        }
    }

    /// Removes a container's directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("remove {}", dir.display())),
        }
    }

    /// Ids of every container with a directory here, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.root).ctx(|| format!("list {}", self.root.display()))? {
            let entry = entry.ctx(|| format!("list {}", self.root.display()))?;
            // ids never start with '.': such entries are the runtime's own (caches)
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && let Some(name) = entry.file_name().to_str()
                && !name.starts_with('.')
            {
                ids.push(name.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// Checks a container id: 1–1024 characters of `[A-Za-z0-9_.+-]`, not starting with '.'.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// What `/proc/<pid>/stat` says of a process: (state letter, start time in ticks).
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    // one read into a buffer on the stack: the line is under 1 KiB (comm is at most 16
    // bytes, then 50 numbers), and read_to_string on a file whose size /proc says is 0
    // takes about six reads and an allocation (`ps` does this for every running container)
    use std::io::Read;
    let mut f = fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// True when `pid` is alive (not a zombie) and started at `start_time`.
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    matches!(proc_stat(pid), Some((s, t)) if t == start_time && s != 'Z' && s != 'X')
}

/// Now, as RFC 3339 UTC with nanoseconds (the shape runc writes).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-1_2.3+4", &"x".repeat(1024)] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "../x", "a b", &"x".repeat(1025)] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn own_process_is_alive_and_start_time_matters() {
        let pid = std::process::id() as i32;
        let (state, start) = proc_stat(pid).unwrap();
        assert_ne!(state, 'Z');
        assert!(is_alive(pid, start));
        assert!(
            !is_alive(pid, start + 1),
            "a recycled pid must not look alive"
        );
    }

    #[test]
    fn rfc3339_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 30, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }

    #[test]
    fn save_is_atomic_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path().join("root")).unwrap();
        let _lock = store.create("c1").unwrap();
        assert!(matches!(store.create("c1"), Err(Error::Exists(_))));
        let st = State {
            oci_version: "1.0.2".into(),
            id: "c1".into(),
            status: Status::Created,
            pid: 1,
            pid_start_time: 2,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            annotations: HashMap::new(),
            created: now_rfc3339(),
            owner: "root".into(),
            cgroup_layout: None,
            cgroup_paths: BTreeMap::new(),
            own_pid_namespace: true,
            process: None,
            hooks: None,
            seccomp: None,
        };
        store.save(&st).unwrap();
        assert!(!store.dir("c1").join("state.json.tmp").exists());
        assert_eq!(store.load("c1").unwrap().pid_start_time, 2);
        assert_eq!(store.list().unwrap(), vec!["c1".to_string()]);
        store.remove("c1").unwrap();
        assert!(matches!(store.load("c1"), Err(Error::NotFound(_))));
    }
}
