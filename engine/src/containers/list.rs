//! `ps`: the container list in the Engine API's shape (`GET /containers/json`).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::{Container, ContainerState, FileStamp};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Options of `docker ps`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ListOptions {
    /// `-a`: stopped containers too.
    pub all: bool,
    /// `-n`: the last N created (any state); `-l` is `Some(1)`.
    pub limit: Option<usize>,
    /// `-f key=value` (id, name, label, status, exited, ancestor, before, since, volume,
    /// network).
    pub filters: Vec<(String, String)>,
    /// `-s`: each row's [`Summary::size_rw`] and [`Summary::size_root_fs`].
    pub size: bool,
}

/// One row of `docker ps` (the API's container summary; a client reads it back).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    /// Full ID.
    pub id: String,
    /// `/name`.
    pub names: Vec<String>,
    /// The image as given.
    pub image: String,
    /// Image ID.
    #[serde(rename = "ImageID")]
    pub image_id: String,
    /// The command line, quoted as Docker shows it.
    pub command: String,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Published and exposed ports.
    #[serde(default)]
    pub ports: Vec<SummaryPort>,
    /// Labels.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `created`, `running`, `paused`, `restarting`, `exited`...
    pub state: String,
    /// `Up 2 minutes`, `Exited (0) 3 seconds ago`, `Created`.
    pub status: String,
    /// With [`ListOptions::size`]: bytes of the files its writable layer added or changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<i64>,
    /// With [`ListOptions::size`]: those and its image's layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<i64>,
}

/// A port of a summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryPort {
    /// Host address.
    #[serde(rename = "IP", skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Container port.
    #[serde(rename = "PrivatePort")]
    pub private_port: u16,
    /// Host port.
    #[serde(rename = "PublicPort", skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u16>,
    /// `tcp` or `udp`.
    #[serde(rename = "Type")]
    pub kind: String,
}

/// Seconds since the epoch of an RFC 3339 time (0 when it cannot be read).
pub fn unix_time(t: &str) -> i64 {
    humantime::parse_rfc3339_weak(t)
        .ok()
        .and_then(|s| s.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Docker's "2 minutes", "About an hour", "3 days" (go-units HumanDuration).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        _ if s < 3600 => format!("{} minutes", s / 60),
        _ if s < 7200 => "About an hour".into(),
        _ if s < 48 * 3600 => format!("{} hours", s / 3600),
        _ if s < 7 * 24 * 3600 * 2 => format!("{} days", s / 86400),
        _ if s < 30 * 24 * 3600 * 3 => format!("{} weeks", s / (7 * 86400)),
        _ if s < 365 * 24 * 3600 * 2 => format!("{} months", s / (30 * 86400)),
        _ => format!("{} years", s / (365 * 86400)),
    }
}

fn since(t: &str) -> Duration {
    let secs = unix_time(t);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Duration::from_secs((now - secs).max(0) as u64)
}

impl ContainerState {
    /// Docker's status column for the live status `live` (looked at once by the caller).
    fn status_text_as(&self, live: &str) -> String {
        match live {
            "running" => {
                let up = format!("Up {}", human_duration(since(&self.started_at)));
                match self.health.as_ref().map(|h| h.status.as_str()) {
                    Some("starting") => format!("{up} (health: starting)"),
                    Some(h @ ("healthy" | "unhealthy")) => format!("{up} ({h})"),
                    _ => up,
                }
            }
            "paused" => format!("Up {} (Paused)", human_duration(since(&self.started_at))),
            "restarting" => format!(
                "Restarting ({}) {} ago",
                self.exit_code,
                human_duration(since(&self.finished_at))
            ),
            "exited" if self.finished_at != super::ZERO_TIME => format!(
                "Exited ({}) {} ago",
                self.exit_code,
                human_duration(since(&self.finished_at))
            ),
            "exited" | "created" => "Created".into(),
            "removing" => "Removal In Progress".into(),
            s => s.to_string(),
        }
    }
}

impl Container {
    /// Docker's status column.
    pub fn status_text(&self) -> String {
        self.state.status_text_as(self.live_status())
    }

    /// The command as `docker ps` shows it.
    pub fn command_text(&self) -> String {
        std::iter::once(&self.record.path)
            .chain(self.record.args.iter())
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// This container's `ps` row.
    pub fn summary(&self) -> Summary {
        Listed::of(self).summary_as(self.live_status())
    }
}

/// What `ps` needs of a container (its row and its filters): a few hundred bytes instead
/// of both records. A long-lived engine keeps them in memory and every engine shares
/// them through `containers/.ps-index`, so a new process (the CLI) lists 1000 containers
/// with one read and one `stat` per container instead of reading and parsing 2000 files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Listed {
    id: String,
    name: String,
    created: String,
    image: String,
    pub(crate) image_id: String,
    command: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    exposed: Vec<String>,
    #[serde(default)]
    binds: Vec<String>,
    #[serde(default)]
    volumes: Vec<String>,
    network_mode: String,
    healthcheck: bool,
    state: ContainerState,
}

impl Listed {
    fn of(c: &Container) -> Listed {
        let mut state = c.state.clone();
        // read again at every listing (see Engine::listed)
        state.health = None;
        Listed {
            id: c.record.id.clone(),
            name: c.record.name.clone(),
            created: c.record.created.clone(),
            image: c.record.config.image.clone(),
            image_id: c.record.image_id.clone(),
            command: c.command_text(),
            labels: c.record.config.labels.clone(),
            exposed: c.record.config.exposed_ports.keys().cloned().collect(),
            binds: c.record.host_config.binds.clone(),
            volumes: c.record.config.volumes.keys().cloned().collect(),
            network_mode: c.record.host_config.network_mode.clone(),
            healthcheck: c
                .record
                .config
                .healthcheck
                .as_ref()
                .is_some_and(|h| h.enabled()),
            state,
        }
    }

    /// This container's `ps` row, its live status `live` looked at once by the caller
    /// (each look reads `/proc/<pid>/stat`).
    fn summary_as(&self, live: &str) -> Summary {
        let mut ports = Vec::new();
        let running = matches!(live, "running" | "paused");
        let published = self
            .state
            .network
            .as_ref()
            .filter(|_| running)
            .map(|n| &n.ports);
        for p in published.into_iter().flatten() {
            ports.push(SummaryPort {
                ip: Some(p.host_ip.clone()),
                private_port: p.container_port,
                public_port: Some(p.host_port),
                kind: p.proto.clone(),
            });
        }
        for k in &self.exposed {
            let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            let Ok(port) = port.parse() else { continue };
            if !ports
                .iter()
                .any(|p| p.private_port == port && p.kind == proto)
            {
                ports.push(SummaryPort {
                    ip: None,
                    private_port: port,
                    public_port: None,
                    kind: proto.into(),
                });
            }
        }
        Summary {
            id: self.id.clone(),
            names: vec![format!("/{}", self.name)],
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            command: self.command.clone(),
            created: unix_time(&self.created),
            ports,
            labels: self.labels.clone(),
            state: live.to_string(),
            status: self.state.status_text_as(live),
            size_rw: None,
            size_root_fs: None,
        }
    }
}

/// The on-disk form of the listing cache: each entry with the stamp of the container's
/// directory it was read under.
#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    entries: Vec<(FileStamp, Listed)>,
}

const INDEX_VERSION: u32 = 1;
const INDEX_FILE: &str = ".ps-index";
/// A process rewrites the index when it had to read this many containers' records that
/// the index did not hold (or held stale) or that it held for removed ones: a few new
/// containers are cheaper to read than to rewrite the index for on every listing.
const INDEX_REWRITE_AFTER: usize = 32;

/// [`Listed`] entries by container ID with the stamps of their directories; `None`
/// until this engine has read `containers/.ps-index`.
#[derive(Debug, Default)]
pub(crate) struct ListCache {
    map: std::sync::Mutex<Option<Entries>>,
}

/// Cached [`Listed`] entries by container ID, with the stamps they were read under.
type Entries = HashMap<String, (FileStamp, Arc<Listed>)>;

impl Engine {
    /// What `ps` needs of every container, through the listing cache: a container is
    /// read from its records only when its directory changed since it was cached.
    pub(crate) fn listed(&self) -> Result<Vec<Arc<Listed>>> {
        let dir = self.containers_dir();
        let ids = self.container_ids()?;
        // stamps are taken relative to the directory: no walk of its path per container
        let dirfd = fs::File::open(&dir).map_err(Error::io(format!("open {}", dir.display())))?;
        let mut guard = self.listed.map.lock().unwrap_or_else(|p| p.into_inner());
        let cache = guard.get_or_insert_with(|| read_index(&dir.join(INDEX_FILE)));
        let mut out = Vec::with_capacity(ids.len());
        let mut misses = Vec::new();
        for id in &ids {
            // a container removed since the directory was read has no stamp: skipped
            let Some(stamp) = FileStamp::at(&dirfd, id) else {
                continue;
            };
            match cache.get(id) {
                Some((s, l)) if *s == stamp => out.push(l.clone()),
                _ => misses.push((id.as_str(), stamp)),
            }
        }
        let load = |part: &[(&str, FileStamp)]| {
            let mut got = Vec::with_capacity(part.len());
            for (id, stamp) in part {
                match self.load_container_dir(dir.join(id)) {
                    Ok(c) => got.push((id.to_string(), *stamp, Arc::new(Listed::of(&c)))),
                    Err(_) => self.skip_unreadable(id),
                }
            }
            got
        };
        let loaded = super::on_every_core(&misses, load);
        let mut changed = 0;
        for (id, stamp, l) in loaded {
            out.push(l.clone());
            // kept only when the directory's last change is older than the file
            // system's clock can tell apart from a change still to come
            if stamp.settled() {
                cache.insert(id, (stamp, l));
                changed += 1;
            }
        }
        let before = cache.len();
        let keep: std::collections::HashSet<&String> = ids.iter().collect();
        cache.retain(|k, _| keep.contains(k));
        changed += before - cache.len();
        if changed >= INDEX_REWRITE_AFTER {
            write_index(&dir.join(INDEX_FILE), cache);
        }
        drop(guard);
        // the health of a container with a check is read at every listing (the monitor's
        // prober writes it beside the records)
        for l in &mut out {
            if l.healthcheck {
                let mut x = Arc::unwrap_or_clone(l.clone());
                x.state.health = crate::health::current(&dir.join(&x.id), &x.state.status);
                *l = Arc::new(x);
            }
        }
        Ok(out)
    }
}

impl Engine {
    /// `docker ps`: newest first.
    pub fn list_containers(&self, opts: &ListOptions) -> Result<Vec<Summary>> {
        let mut all = self.listed()?;
        all.sort_by(|a, b| b.created.cmp(&a.created));
        let mut before: Option<String> = None;
        let mut since_: Option<String> = None;
        for (k, v) in &opts.filters {
            match k.as_str() {
                "before" => before = Some(self.container(v)?.record.created),
                "since" => since_ = Some(self.container(v)?.record.created),
                "id" | "name" | "label" | "status" | "exited" | "ancestor" | "volume"
                | "network" | "health" => {}
                _ => return Err(Error::InvalidArgument(format!("invalid filter '{k}'"))),
            }
        }
        let ancestor_ids: Vec<String> = opts
            .filters
            .iter()
            .filter(|(k, _)| k == "ancestor")
            .filter_map(|(_, v)| self.store().ok()?.resolve(v).ok().map(|d| d.to_string()))
            .collect();
        let mut out = Vec::new();
        for c in all {
            let status = c.state.live_status();
            let show_all = opts.all
                || opts.limit.is_some()
                || opts
                    .filters
                    .iter()
                    .any(|(k, _)| k == "status" || k == "exited");
            if !show_all && !matches!(status, "running" | "paused" | "restarting") {
                continue;
            }
            if before.as_ref().is_some_and(|b| c.created >= *b)
                || since_.as_ref().is_some_and(|s| c.created <= *s)
            {
                continue;
            }
            let ok = |key: &str, f: &dyn Fn(&str) -> bool| {
                let vals: Vec<&String> = opts
                    .filters
                    .iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .collect();
                vals.is_empty() || vals.iter().any(|v| f(v))
            };
            let keep = ok("id", &|v| c.id.starts_with(v))
                && ok("name", &|v| c.name.contains(v.trim_start_matches('/')))
                && ok("status", &|v| v == status)
                && ok("exited", &|v| {
                    status == "exited" && v.parse() == Ok(c.state.exit_code)
                })
                && ok("label", &|v| match v.split_once('=') {
                    Some((k, val)) => c.labels.get(k).is_some_and(|x| x == val),
                    None => c.labels.contains_key(v),
                })
                && ok("ancestor", &|v| {
                    c.image == v || ancestor_ids.contains(&c.image_id)
                })
                && ok("volume", &|v| {
                    c.binds.iter().any(|b| b.split(':').any(|p| p == v))
                        || c.volumes.iter().any(|x| x == v)
                })
                && ok("health", &|v| {
                    let h = c
                        .state
                        .health
                        .as_ref()
                        .filter(|_| status == "running")
                        .map_or("none", |h| h.status.as_str());
                    v == h
                })
                && ok("network", &|v| {
                    c.network_mode == v || (v == "bridge" && c.network_mode == "default")
                });
            if keep {
                out.push(c.summary_as(status));
            }
        }
        if let Some(n) = opts.limit {
            out.truncate(n);
        }
        if opts.size {
            for s in &mut out {
                // one removed meanwhile counts 0, as a listing shows what it found
                let rw = self
                    .container(&s.id)
                    .and_then(|c| self.container_size(&c))
                    .unwrap_or(0);
                let image = self
                    .graph()
                    .ok()
                    .and_then(|g| g.image(&s.image_id).ok())
                    .map_or(0, |i| i.size);
                s.size_rw = Some(rw as i64);
                s.size_root_fs = Some((rw + image) as i64);
            }
        }
        Ok(out)
    }
}

/// The listing cache another process left (empty when there is none or it cannot be read:
/// every container is then read from its records).
fn read_index(path: &Path) -> Entries {
    let Ok(data) = fs::read(path) else {
        return HashMap::new();
    };
    match serde_json::from_slice::<IndexFile>(&data) {
        Ok(f) if f.version == INDEX_VERSION => f
            .entries
            .into_iter()
            .map(|(s, l)| (l.id.clone(), (s, Arc::new(l))))
            .collect(),
        _ => HashMap::new(),
    }
}

/// Replaces the listing cache on disk (atomically: a reader sees the old or the new
/// one). Best effort: a listing never fails for its cache.
fn write_index(path: &Path, cache: &Entries) {
    #[derive(Serialize)]
    struct Out<'a> {
        version: u32,
        entries: Vec<(&'a FileStamp, &'a Listed)>,
    }
    let out = Out {
        version: INDEX_VERSION,
        entries: cache.values().map(|(s, l)| (s, &**l)).collect(),
    };
    if let Ok(data) = serde_json::to_vec(&out) {
        let _ = super::write_atomic(path, &data);
    }
}
