//! Container jobs (one file per verb) and the container's two records.
//!
//! A container lives in `<root>/containers/<id>/`:
//! - `config.json`: what was asked for ([`ContainerRecord`]), written by `create`,
//!   changed by `rename` and `update`;
//! - `state.json`: what is happening ([`ContainerState`]), written by whoever owns the
//!   container at that moment: the job that creates or starts it, then its monitor
//!   (the container's parent, see [`crate::monitor`]) until the container has stopped;
//! - `bundle/config.json`: the OCI spec given to libcontainer;
//! - `hosts`, `hostname`, `resolv.conf`: bind-mounted into the container;
//! - `<id>-json.log`: the json-file log;
//! - `monitor.lock`: held (flock) by the running monitor.
//!
//! Every file is replaced atomically (written beside, then renamed), so a reader in
//! another process never sees half a record.

pub(crate) mod commit;
mod copy;
mod create;
pub(crate) mod list;
mod logs;
mod names;
mod remove;
mod restore;
mod spec;
pub(crate) use spec::{MASKED_PATHS, READONLY_PATHS, default_capabilities, kernel_capabilities};
pub use spec::{parse_signal, resolve_user};
mod start;
mod stop;
mod update;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use commit::{CommitRequest, MOUNT_POINTS};
pub use create::{CreateRequest, MountSpec, MountTmpfsOptions, MountVolumeOptions, parse_memory};
pub use list::{ListOptions, Summary, human_duration, unix_time};
pub use logs::{LogLine, LogsOptions};
pub(crate) use remove::RemovalWatch;
pub use remove::RemoveOptions;
pub use remove::wait_removed;
pub use restore::RestoreReport;
pub(crate) use start::unpin_netns as unpin_netns_path;
pub use start::{AttachStreams, StartOptions};
pub use stop::{StopOptions, WaitCondition};
pub use update::{StatsSample, UpdateRequest};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// What a container was created with (`docker inspect`'s Config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    /// `-h`.
    pub hostname: String,
    /// `--domainname`.
    pub domainname: String,
    /// `-u`.
    pub user: String,
    /// `-a stdin` or `-i`.
    pub attach_stdin: bool,
    /// `-a stdout` (default when not detached).
    pub attach_stdout: bool,
    /// `-a stderr` (default when not detached).
    pub attach_stderr: bool,
    /// `--expose` and the image's, `port/proto`.
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub open_stdin: bool,
    /// Close stdin after the first attach detaches (`-i` with `run`).
    pub stdin_once: bool,
    /// The environment (the image's, then `--env-file`, then `-e`).
    pub env: Vec<String>,
    /// The command (after the image's `Cmd` was applied).
    pub cmd: Vec<String>,
    /// The image as given.
    pub image: String,
    /// Volumes from the image and `-v /path`.
    pub volumes: BTreeMap<String, serde_json::Value>,
    /// `-w`.
    pub working_dir: String,
    /// The entrypoint (after the image's).
    pub entrypoint: Option<Vec<String>>,
    /// `-l`, and the image's labels.
    pub labels: BTreeMap<String, String>,
    /// `--stop-signal` or the image's.
    pub stop_signal: Option<String>,
    /// `--stop-timeout` (seconds).
    pub stop_timeout: Option<i64>,
    /// `--health-*` and the image's `HEALTHCHECK`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::HealthConfig>,
}

/// A restart policy (`--restart`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// `""`/`no`, `always`, `unless-stopped`, `on-failure`.
    pub name: String,
    /// `on-failure:N`.
    pub maximum_retry_count: i64,
}

impl RestartPolicy {
    /// Parses Docker's `--restart` value.
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let bad = || Error::InvalidArgument(format!("invalid restart policy format {s:?}"));
        match (name, count) {
            ("" | "no", None) => Ok(RestartPolicy::default()),
            ("always" | "unless-stopped", None) => Ok(RestartPolicy {
                name: name.into(),
                maximum_retry_count: 0,
            }),
            ("on-failure", c) => Ok(RestartPolicy {
                name: name.into(),
                maximum_retry_count: match c {
                    Some(c) => c.parse().ok().filter(|n: &i64| *n >= 0).ok_or_else(bad)?,
                    None => 0,
                },
            }),
            ("always" | "unless-stopped" | "no", Some(_)) => Err(Error::InvalidArgument(format!(
                "maximum retry count cannot be used with restart policy {name:?}"
            ))),
            _ => Err(bad()),
        }
    }

    /// True for `no` (or unset).
    pub fn is_none(&self) -> bool {
        self.name.is_empty() || self.name == "no"
    }
}

/// A published port as asked (`-p`): `[ip:][hostPort:]containerPort[/proto]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    /// Host address (empty: all).
    pub host_ip: String,
    /// Host port (empty: any free port).
    pub host_port: String,
}

/// The host side of a container (`docker inspect`'s HostConfig).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    /// `-v host:ctr[:ro]` and named volumes.
    pub binds: Vec<String>,
    /// `--network`: `bridge`, `host`, `none`, `container:NAME`, or a network's name.
    pub network_mode: String,
    /// `-p` as given, one entry each (`8080:80/tcp`).
    pub publish: Vec<String>,
    /// `-p` by container port, as Docker shows them.
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `-P`.
    pub publish_all_ports: bool,
    /// `--restart`.
    pub restart_policy: RestartPolicy,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--privileged`.
    pub privileged: bool,
    /// `--read-only`.
    pub readonly_rootfs: bool,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--add-host`.
    pub extra_hosts: Vec<String>,
    /// `--link`.
    pub links: Vec<String>,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--tmpfs` (path → options).
    pub tmpfs: BTreeMap<String, String>,
    /// `-m` in bytes (0: none).
    pub memory: i64,
    /// `--memory-swap` in bytes (0: default, -1: unlimited).
    pub memory_swap: i64,
    /// `-c`.
    pub cpu_shares: i64,
    /// `--cpus` × 10⁹.
    pub nano_cpus: i64,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: String,
    /// `--pids-limit` (0: none).
    pub pids_limit: i64,
    /// `--ulimit name=soft[:hard]`.
    pub ulimits: Vec<String>,
    /// `--device host[:ctr[:perms]]`.
    pub devices: Vec<String>,
    /// `--ipc`.
    pub ipc_mode: String,
    /// `--pid`.
    pub pid_mode: String,
    /// `--uts`.
    pub uts_mode: String,
    /// `--init`.
    pub init: bool,
    /// `--volumes-from`.
    pub volumes_from: Vec<String>,
    /// `--mac-address`.
    pub mac_address: String,
    /// `--log-driver` (`json-file`, `none`).
    pub log_driver: String,
    /// `--log-opt` (`max-size`, `max-file`, `labels`, `env`).
    pub log_opts: BTreeMap<String, String>,
    /// `--cpu-period` (µs; 0: the kernel's).
    pub cpu_period: i64,
    /// `--cpu-quota` (µs per period; 0: none).
    pub cpu_quota: i64,
    /// `--memory-reservation` in bytes (0: none).
    pub memory_reservation: i64,
    /// `--blkio-weight` (0: none).
    pub blkio_weight: u16,
    /// `--oom-kill-disable`.
    pub oom_kill_disable: bool,
    /// `--shm-size` in bytes (0: Docker's 64 MiB).
    pub shm_size: i64,
    /// `--sysctl`.
    pub sysctls: BTreeMap<String, String>,
    /// `--group-add`.
    pub group_add: Vec<String>,
    /// `--cgroup-parent`.
    pub cgroup_parent: String,
    /// `--network-alias` (on the network of the network mode).
    pub network_aliases: Vec<String>,
    /// `--ip` (on the network of the network mode).
    pub ip_address: String,
}

/// Everything a container was created with (`config.json` of its directory).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// Its name, without Docker's leading `/`.
    pub name: String,
    /// Creation time (RFC 3339, nanoseconds).
    pub created: String,
    /// The image ID (`sha256:...`).
    pub image_id: String,
    /// The program (entrypoint and command joined, first word).
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The container's configuration.
    pub config: ContainerConfig,
    /// The host side.
    pub host_config: HostConfig,
}

/// What a container is doing (`docker inspect`'s State, plus what the engine needs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub status: String,
    /// Running (or paused).
    pub running: bool,
    /// Frozen.
    pub paused: bool,
    /// Waiting to be restarted by its policy.
    pub restarting: bool,
    /// The kernel's OOM killer ended it.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// Could not be cleaned up.
    pub dead: bool,
    /// The init process (host pid), 0 when not running.
    pub pid: i32,
    /// Its start time in clock ticks since boot (so a recycled pid is never mistaken).
    #[serde(rename = "LongshorePidStartTime")]
    pub pid_start_time: u64,
    /// Exit status of the last run.
    pub exit_code: i32,
    /// Why the last start failed.
    pub error: String,
    /// Last start (RFC 3339), Docker's zero time before the first.
    pub started_at: String,
    /// Last exit (RFC 3339), Docker's zero time before the first.
    pub finished_at: String,
    /// Restarts done by the policy since the last start by a user.
    #[serde(rename = "LongshoreRestartCount")]
    pub restart_count: i64,
    /// Stopped by a user (`stop`, `kill`): `unless-stopped` and `always` do not restart it
    /// until it is started again.
    #[serde(rename = "LongshoreStoppedByUser")]
    pub stopped_by_user: bool,
    /// The monitor process (the container's parent) while it runs.
    #[serde(rename = "LongshoreMonitorPid")]
    pub monitor_pid: i32,
    /// The named network namespace the container runs in (bridge networks).
    #[serde(rename = "LongshoreNetns")]
    pub netns: Option<PathBuf>,
    /// The address the container got on its network.
    #[serde(rename = "LongshoreNetwork")]
    pub network: Option<NetworkState>,
    /// What the container was asked for and did not get at its last start (a cgroup
    /// controller this host lacks...), from the runtime.
    #[serde(rename = "LongshoreWarnings")]
    pub warnings: Vec<String>,
    /// The health check's state while it runs (`docker inspect`'s State.Health), from
    /// `health.json`, which the monitor's prober writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

/// The network a running container is attached to (`docker inspect`'s NetworkSettings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkState {
    /// Network name (`bridge`).
    pub network: String,
    /// Address without prefix.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// Prefix length.
    pub ip_prefix_len: u8,
    /// Gateway.
    pub gateway: String,
    /// MAC address.
    pub mac_address: String,
    /// Published ports: `host_ip:host_port->ctr_port/proto`.
    pub ports: Vec<PublishedPort>,
}

/// One published port of a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PublishedPort {
    /// Host address.
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

/// Docker's zero time, shown for a container that never started or never stopped.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl ContainerState {
    /// A just-created container's state.
    pub fn created() -> ContainerState {
        ContainerState {
            status: "created".into(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            ..Default::default()
        }
    }

    /// True while the init process is the one recorded (checked against its start time).
    pub fn is_alive(&self) -> bool {
        self.pid > 0 && longshore_container::state::is_alive(self.pid, self.pid_start_time)
    }

    /// The status as it really is: one recorded as running whose init process is gone
    /// (its monitor was killed too) is exited.
    pub fn live_status(&self) -> &str {
        match self.status.as_str() {
            "running" | "paused" if !self.is_alive() => "exited",
            s => s,
        }
    }
}

/// A container as the jobs see it: both records.
#[derive(Debug, Clone)]
pub struct Container {
    /// What it was created with.
    pub record: ContainerRecord,
    /// What it is doing.
    pub state: ContainerState,
    pub(crate) dir: PathBuf,
}

impl Container {
    /// The container's ID.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Its directory under the data root.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state as it really is: a container recorded as running whose init process is
    /// gone (its monitor was killed too) is reported as exited.
    pub fn live_status(&self) -> &str {
        self.state.live_status()
    }

    /// Docker's `inspect` JSON of the container.
    pub fn inspect(&self) -> serde_json::Value {
        let mut state = serde_json::to_value(&self.state).unwrap_or_default();
        let live = self.live_status().to_string();
        if let Some(o) = state.as_object_mut() {
            o.insert("Status".into(), live.clone().into());
            o.insert(
                "Running".into(),
                (live == "running" || live == "paused").into(),
            );
            if live != "running" && live != "paused" {
                o.insert("Pid".into(), 0.into());
            }
            o.retain(|k, _| !k.starts_with("Longshore"));
            o.insert("RestartCount".into(), self.state.restart_count.into());
        }
        let net = self.state.network.clone().unwrap_or_default();
        let mut ports = serde_json::Map::new();
        for p in self.record.config.exposed_ports.keys() {
            ports.insert(p.clone(), serde_json::Value::Null);
        }
        let mut by_port: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        for p in &net.ports {
            by_port
                .entry(format!("{}/{}", p.container_port, p.proto))
                .or_default()
                .push(
                    serde_json::json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}),
                );
        }
        for (k, v) in by_port {
            ports.insert(k, v.into());
        }
        let networks = if net.network.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({ net.network.clone(): {
                "IPAddress": net.ip_address, "IPPrefixLen": net.ip_prefix_len,
                "Gateway": net.gateway, "MacAddress": net.mac_address,
            }})
        };
        serde_json::json!({
            "Id": self.record.id,
            "Created": self.record.created,
            "Path": self.record.path,
            "Args": self.record.args,
            "State": state,
            "Image": self.record.image_id,
            "ResolvConfPath": self.dir.join("resolv.conf"),
            "HostnamePath": self.dir.join("hostname"),
            "HostsPath": self.dir.join("hosts"),
            "LogPath": self.dir.join(format!("{}-json.log", self.record.id)),
            "Name": format!("/{}", self.record.name),
            "RestartCount": self.state.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": self.record.host_config,
            "Config": self.record.config,
            "NetworkSettings": {
                "IPAddress": net.ip_address,
                "IPPrefixLen": net.ip_prefix_len,
                "Gateway": net.gateway,
                "MacAddress": net.mac_address,
                "Ports": ports,
                "Networks": networks,
                "SandboxKey": self.state.netns.clone().unwrap_or_default(),
            },
        })
    }
}

/// What identifies one version of a container's records: every write of `config.json`
/// and `state.json` is a new file renamed into place ([`write_atomic`]), which changes
/// the modification time of the container's directory; the directory's own inode tells a
/// container removed and another made under the same ID (never seen, but cheap to check).
/// One `stat` of the directory covers both files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileStamp {
    ino: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileStamp {
    /// The stamp of `path` under the directory `dir`.
    pub(crate) fn at(dir: &fs::File, path: &str) -> Option<FileStamp> {
        let m = rustix::fs::statat(dir, path, rustix::fs::AtFlags::empty()).ok()?;
        Some(FileStamp {
            ino: m.st_ino,
            mtime_ns: m.st_mtime * 1_000_000_000 + m.st_mtime_nsec as i64,
            ctime_ns: m.st_ctime * 1_000_000_000 + m.st_ctime_nsec as i64,
        })
    }

    /// The directory was changed long enough ago that a later change cannot carry the
    /// same time: the kernel stamps files from a coarse clock (a tick of a few ms), so a
    /// stamp is trusted only once its times lie 100 ms in the past.
    pub(crate) fn settled(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        now - self.mtime_ns.max(self.ctime_ns) > 100_000_000
    }
}

/// A cached container with the stamp of its directory.
type Cached = (FileStamp, Arc<Container>);

/// Parsed records of containers by ID with the stamps of their directories.
#[derive(Debug, Default)]
pub(crate) struct RecordCache {
    map: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
}

impl RecordCache {
    fn get(&self, id: &str, stamp: FileStamp) -> Option<Arc<Container>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (s, c) = map.get(id)?;
        (*s == stamp).then(|| c.clone())
    }

    fn put(&self, id: &str, stamp: FileStamp, c: Arc<Container>) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), (stamp, c));
    }

    /// Forgets the containers not in `ids` (removed).
    fn retain(&self, ids: &[String]) {
        let keep: std::collections::HashSet<&String> = ids.iter().collect();
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep.contains(k));
    }
}

/// `load` over `items`, in order. Reading and parsing two small files per container is
/// the whole cost of a listing without a cache: from 128 items on, the work is split over
/// every core (up to 4; 1000 containers: 36 -> ~20 ms on 2 cores).
pub(crate) fn on_every_core<T: Sync, R: Send>(
    items: &[T],
    load: impl Fn(&[T]) -> Vec<R> + Sync,
) -> Vec<R> {
    let threads = if items.len() >= 128 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    } else {
        1
    };
    if threads <= 1 {
        return load(items);
    }
    let chunk = items.len().div_ceil(threads);
    let load = &load;
    std::thread::scope(|s| {
        let running: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || load(part)))
            .collect();
        running
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    })
}

/// Writes `data` to `path` atomically: a temporary file beside it, then rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(Error::io(format!("write {}", path.display())))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let data = fs::read(path).map_err(Error::io(format!("read {}", path.display())))?;
    serde_json::from_slice(&data).map_err(|e| Error::Io {
        what: format!("parse {}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

impl Engine {
    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// Loads one container by directory.
    pub(crate) fn load_container_dir(&self, dir: PathBuf) -> Result<Container> {
        let record: ContainerRecord = read_json(&dir.join("config.json"))?;
        let mut state: ContainerState = read_json(&dir.join("state.json"))?;
        if record
            .config
            .healthcheck
            .as_ref()
            .is_some_and(|h| h.enabled())
        {
            state.health = crate::health::current(&dir, &state.status);
        }
        Ok(Container { record, state, dir })
    }

    /// IDs of every container (complete ones: both records written).
    pub(crate) fn container_ids(&self) -> Result<Vec<String>> {
        let dir = self.containers_dir();
        let mut ids = Vec::new();
        for e in fs::read_dir(&dir).map_err(Error::io(format!("list {}", dir.display())))? {
            let e = e.map_err(Error::io(format!("list {}", dir.display())))?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                ids.push(name.to_string());
            } else if name.starts_with(".new-") && older_than(&e.path(), NEW_DIR_GRACE) {
                // a create killed before it renamed its directory into place: nothing but
                // the empty directory exists yet. A live create holds its lock; a young
                // one is left alone (its create may be between its mkdir and its lock:
                // 200 API clients listing at once swept one five times in a row).
                if let Some(_lock) = lock_dir(&e.path(), false) {
                    let _ = fs::remove_dir_all(e.path());
                }
            } else if name.starts_with(remove::TRASH_PREFIX) {
                // a removed container whose files are still to go: its remover holds the
                // lock until it has deleted them, so an unlocked one was left by a kill
                if let Some(_lock) = lock_dir(&e.path(), false) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(ids)
    }

    /// Finds a container by full ID, name (with or without `/`) or unique ID prefix, as
    /// Docker does (an exact name wins over a prefix).
    pub fn container(&self, name_or_id: &str) -> Result<Container> {
        let key = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if key.is_empty() {
            return Err(Error::NoSuchContainer(name_or_id.to_string()));
        }
        let dir = self.containers_dir();
        // a container removed between the look and the read is no such container (an
        // auto-remove one goes as soon as it has exited), not a failed read
        let load = |id: &str| {
            self.load_container_dir(dir.join(id)).map_err(|e| {
                if dir.join(id).join("state.json").exists() {
                    e
                } else {
                    Error::NoSuchContainer(name_or_id.to_string())
                }
            })
        };
        if key.len() == 64 && dir.join(key).join("state.json").exists() {
            return load(key);
        }
        if let Some(id) = names::lookup(&self.containers_dir(), key)?
            && let Ok(c) = self.load_container_dir(dir.join(&id))
        {
            return Ok(c);
        }
        let matches: Vec<String> = self
            .container_ids()?
            .into_iter()
            .filter(|id| id.starts_with(key))
            .collect();
        match matches.as_slice() {
            [id] => load(id),
            [] => Err(Error::NoSuchContainer(name_or_id.to_string())),
            _ => Err(Error::Conflict(format!(
                "multiple IDs found with provided prefix: {name_or_id}"
            ))),
        }
    }

    /// Every container.
    pub fn containers(&self) -> Result<Vec<Container>> {
        Ok(self
            .containers_shared()?
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect())
    }

    /// Every container, shared with the record cache: parsed records are reused while
    /// their directory is unchanged (one `stat` per container instead of reading and
    /// parsing two files), so a long-lived engine (the daemon) lists fast.
    pub(crate) fn containers_shared(&self) -> Result<Vec<Arc<Container>>> {
        let dir = self.containers_dir();
        let ids = self.container_ids()?;
        // stamps are taken relative to the directory: no walk of its path per file
        let dirfd = fs::File::open(&dir).map_err(Error::io(format!("open {}", dir.display())))?;
        let load = |ids: &[String]| {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                match self.load_cached(&dirfd, id, dir.join(id)) {
                    Ok(c) => out.push(c),
                    Err(_) => self.skip_unreadable(id),
                }
            }
            out
        };
        let out = on_every_core(&ids, load);
        self.records.retain(&ids);
        Ok(out)
    }

    /// A container a listing could not read is skipped; one without `state.json` (removed
    /// meanwhile, or a create or rm a killed process cut short) is also swept, which
    /// leaves alone any a live process holds.
    pub(crate) fn skip_unreadable(&self, id: &str) {
        if !self.containers_dir().join(id).join("state.json").exists() {
            self.sweep_incomplete(id);
        }
    }

    /// [`Engine::load_container_dir`] through the record cache.
    fn load_cached(&self, dirfd: &fs::File, id: &str, dir: PathBuf) -> Result<Arc<Container>> {
        let Some(stamp) = FileStamp::at(dirfd, id) else {
            return self.load_container_dir(dir).map(Arc::new);
        };
        if let Some(c) = self.records.get(id, stamp) {
            if c.record
                .config
                .healthcheck
                .as_ref()
                .is_some_and(|h| h.enabled())
            {
                let mut c = Arc::unwrap_or_clone(c);
                c.state.health = crate::health::current(&dir, &c.state.status);
                return Ok(Arc::new(c));
            }
            return Ok(c);
        }
        let c = Arc::new(self.load_container_dir(dir)?);
        // kept only when the directory's last change is older than the file system's
        // clock can tell apart from a change still to come (see FileStamp::settled)
        if stamp.settled() {
            self.records.put(id, stamp, c.clone());
        }
        Ok(c)
    }

    /// Removes what a process killed while creating or removing container `id` left:
    /// its directory (without `state.json`), read-write layer, runtime state, mount and
    /// name. Nothing happens while a live process holds the directory's lock.
    pub(crate) fn sweep_incomplete(&self, id: &str) {
        let containers = self.containers_dir();
        let dir = containers.join(id);
        let Some(_lock) = lock_dir(&dir, false) else {
            return;
        };
        if dir.join("state.json").exists() {
            return;
        }
        unmount_rootfs(&dir);
        if let Ok(mut rc) = longshore_container::Container::load(self.runtime_root(), id) {
            let _ = rc.delete(true);
        }
        if let Ok(g) = self.store() {
            let _ = g.remove_container(id);
        }
        if fs::remove_dir_all(&dir).is_ok() {
            names::release_all_of(&containers, id);
        }
    }

    /// [`Engine::inspect_container`] with docker's `SizeRw` (the read-write layer's
    /// changes) and `SizeRootFs` (those plus the image), as `docker inspect -s` shows.
    pub fn inspect_container_with_size(&self, name_or_id: &str) -> Result<serde_json::Value> {
        let mut v = self.inspect_container(name_or_id)?;
        let c = self.container(name_or_id)?;
        let rw = self.container_size(&c)?;
        let image = self
            .graph()
            .ok()
            .and_then(|g| g.image(&c.record.image_id).ok())
            .map_or(0, |i| i.size);
        v["SizeRw"] = serde_json::json!(rw);
        v["SizeRootFs"] = serde_json::json!(rw + image);
        Ok(v)
    }

    /// Docker's `inspect` of a container.
    pub fn inspect_container(&self, name_or_id: &str) -> Result<serde_json::Value> {
        let c = self.container(name_or_id)?;
        let mut v = c.inspect();
        // the networks connected with `network connect`: a running container's endpoints,
        // a stopped one's record (joined at its start); the network mode's network is
        // gone once disconnected
        let att = crate::network::Attachments::load(&c.dir);
        if att.first_disconnected
            && let Some(ns) = v["NetworkSettings"].as_object_mut()
        {
            for k in ["IPAddress", "Gateway", "MacAddress"] {
                ns.insert(k.into(), "".into());
            }
            ns.insert("IPPrefixLen".into(), 0.into());
            ns.insert("Ports".into(), serde_json::json!({}));
            if let Some(first) = &c.state.network
                && let Some(nets) = ns.get_mut("Networks").and_then(|n| n.as_object_mut())
            {
                nets.remove(&first.network);
            }
        }
        if !c.state.is_alive()
            && let Some(nets) = v["NetworkSettings"]["Networks"].as_object_mut()
        {
            // as Docker, a stopped container shows the network of its network mode too
            // (without addresses), unless it was disconnected
            if let Some(first) =
                crate::network::mode_network_name(&c.record.host_config.network_mode)
                && !att.first_disconnected
                && !nets.contains_key(first)
            {
                nets.insert(
                    first.to_string(),
                    serde_json::json!({"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": ""}),
                );
            }
            for a in &att.extra {
                nets.insert(
                    a.network.clone(),
                    serde_json::json!({
                        "IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": "",
                        "Aliases": a.aliases,
                        "IPAMConfig": a.ip.map(|ip| serde_json::json!({"IPv4Address": ip.to_string()})),
                    }),
                );
            }
        }
        if c.state.is_alive()
            && c.state.netns.is_some()
            && let Some(nets) = v["NetworkSettings"]["Networks"].as_object_mut()
        {
            for ep in self.extra_networks(&c.record.id)? {
                nets.insert(
                    ep.network.clone().unwrap_or_default(),
                    serde_json::json!({
                        "IPAddress": ep.ip.map(|i| i.ip().to_string()).unwrap_or_default(),
                        "IPPrefixLen": ep.ip.map(|i| i.prefix()).unwrap_or(0),
                        "Gateway": ep.gateway.map(|g| g.to_string()).unwrap_or_default(),
                        "MacAddress": ep.mac.clone().unwrap_or_default(),
                        "Aliases": ep.aliases,
                    }),
                );
            }
        }
        Ok(v)
    }

    pub(crate) fn save_state(&self, c: &Container) -> Result<()> {
        let data = serde_json::to_vec(&c.state).expect("state serializes");
        write_atomic(&c.dir.join("state.json"), &data)
    }

    pub(crate) fn save_record(&self, c: &Container) -> Result<()> {
        let data = serde_json::to_vec(&c.record).expect("record serializes");
        write_atomic(&c.dir.join("config.json"), &data)
    }

    /// Renames a container (`docker rename`).
    pub fn rename_container(&self, name_or_id: &str, new_name: &str) -> Result<()> {
        let mut c = self.container(name_or_id)?;
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        names::validate(new_name)?;
        let old = c.record.name.clone();
        if old == new_name {
            return Err(Error::Conflict(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        names::reserve(&self.containers_dir(), new_name, &c.record.id)?;
        c.record.name = new_name.to_string();
        if let Err(e) = self.save_record(&c) {
            names::release(&self.containers_dir(), new_name);
            return Err(e);
        }
        names::release(&self.containers_dir(), &old);
        Ok(())
    }
}

/// Unmounts a container's root filesystem (`<dir>/rootfs`, its bind of the mounted
/// layers), whichever process mounted it.
/// An exclusive lock on a container's directory, held while it is being created or
/// removed: a directory without `state.json` whose lock is free was left by a killed
/// process, and [`Engine::containers`] sweeps it.
pub(crate) struct DirLock(#[allow(dead_code)] fs::File);

/// Locks `dir` (waiting for another creator or remover with `wait`); `None` if it is
/// gone, or busy and `wait` is false.
/// How old a `.new-<id>` directory must be before a listing may sweep it.
const NEW_DIR_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// True when `path` was last modified more than `age` ago.
fn older_than(path: &Path, age: std::time::Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e > age)
}

pub(crate) fn lock_dir(dir: &Path, wait: bool) -> Option<DirLock> {
    let f = fs::File::open(dir).ok()?;
    let op = if wait {
        rustix::fs::FlockOperation::LockExclusive
    } else {
        rustix::fs::FlockOperation::NonBlockingLockExclusive
    };
    rustix::fs::flock(&f, op).ok()?;
    Some(DirLock(f))
}

pub(crate) fn unmount_rootfs(dir: &Path) {
    let _ = nix::mount::umount2(&dir.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
}

/// RFC 3339 with nanoseconds, UTC (Docker's timestamps).
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// A random 64-hex ID (containers, anonymous volumes).
pub fn random_id() -> Result<String> {
    let mut b = [0u8; 32];
    let mut f = fs::File::open("/dev/urandom").map_err(Error::io("open /dev/urandom"))?;
    std::io::Read::read_exact(&mut f, &mut b).map_err(Error::io("read /dev/urandom"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
