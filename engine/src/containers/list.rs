//! `ps`: the container list in the Engine API's shape (`GET /containers/json`).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use std::borrow::Cow;
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
    /// The JSON of this entry's unchanging part of its row, made at its first listing
    /// through the API ([`Listed::write_json`]); a changed container gets a new entry.
    #[serde(skip)]
    json: std::sync::OnceLock<RowJson>,
}

/// A row's encoded pieces that do not change while its entry is cached: before its ports
/// (`{"Id":...,"Created":N,"Ports":`) and between its ports and its state
/// (`,"Labels":{...},"State":`).
#[derive(Debug, Clone)]
struct RowJson {
    head: Box<[u8]>,
    labels: Box<[u8]>,
}

/// A live status as a static string when it is one of Docker's (it is, but for a state
/// file written by something else).
fn static_status(s: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 7] = [
        "created",
        "running",
        "paused",
        "restarting",
        "removing",
        "exited",
        "dead",
    ];
    match KNOWN.iter().find(|k| **k == s) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(s.to_string()),
    }
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
            json: Default::default(),
        }
    }

    /// This container's `ps` row, its live status `live` looked at once by the caller
    /// (each look reads `/proc/<pid>/stat`).
    fn summary_as(&self, live: &str) -> Summary {
        Summary {
            id: self.id.clone(),
            names: vec![format!("/{}", self.name)],
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            command: self.command.clone(),
            created: unix_time(&self.created),
            ports: self.ports(live),
            labels: self.labels.clone(),
            state: live.to_string(),
            status: self.state.status_text_as(live),
            size_rw: None,
            size_root_fs: None,
        }
    }

    /// Appends this container's row as [`Listed::summary_as`] encodes it (without the
    /// sizes) to `buf`.
    fn write_json(&self, live: &str, buf: &mut Vec<u8>) {
        let json = self.json.get_or_init(|| self.row_json());
        buf.extend_from_slice(&json.head);
        let ports = self.ports(live);
        if ports.is_empty() {
            buf.extend_from_slice(b"[]");
        } else {
            encode(buf, &ports);
        }
        buf.extend_from_slice(&json.labels);
        encode(buf, live);
        buf.extend_from_slice(b",\"Status\":");
        encode(buf, &self.state.status_text_as(live));
        buf.push(b'}');
    }

    /// The unchanging pieces of this container's row.
    fn row_json(&self) -> RowJson {
        // the field names and order of Summary's serialization
        let mut head = Vec::with_capacity(320);
        head.extend_from_slice(b"{\"Id\":");
        encode(&mut head, &self.id);
        head.extend_from_slice(b",\"Names\":[");
        encode(&mut head, &format!("/{}", self.name));
        head.extend_from_slice(b"],\"Image\":");
        encode(&mut head, &self.image);
        head.extend_from_slice(b",\"ImageID\":");
        encode(&mut head, &self.image_id);
        head.extend_from_slice(b",\"Command\":");
        encode(&mut head, &self.command);
        head.extend_from_slice(b",\"Created\":");
        encode(&mut head, &unix_time(&self.created));
        head.extend_from_slice(b",\"Ports\":");
        let mut labels = Vec::with_capacity(32);
        labels.extend_from_slice(b",\"Labels\":");
        encode(&mut labels, &self.labels);
        labels.extend_from_slice(b",\"State\":");
        RowJson {
            head: head.into(),
            labels: labels.into(),
        }
    }

    /// The row's ports: the published ones while it runs, then the exposed ones not
    /// published.
    fn ports(&self, live: &str) -> Vec<SummaryPort> {
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
        ports
    }
}

/// Appends `v`'s JSON to `buf` (as serde_json writes it inside a document).
fn encode(buf: &mut Vec<u8>, v: &(impl Serialize + ?Sized)) {
    // writing to a Vec fails only for a value that cannot be encoded, which a summary's
    // parts (strings, numbers, string maps, ports) are not
    let _ = serde_json::to_writer(&mut *buf, v);
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

/// [`Listed`] entries by container ID with the stamps of their directories, and, for a
/// long-lived engine (the daemon: [`Engine::watch_containers`]), an inotify watch of the
/// containers' directories that tells which entries are still current without a `stat`.
#[derive(Debug, Default)]
pub(crate) struct ListCache {
    state: std::sync::Mutex<ListState>,
    /// Set by [`Engine::watch_containers`]: listings keep a [`Watch`].
    watching: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct ListState {
    /// `None` until this engine has read `containers/.ps-index`.
    entries: Option<Entries>,
    /// `None` until the first listing of a watching engine (and while inotify fails).
    watch: Option<Watch>,
}

/// Cached [`Listed`] entries by container ID, with the stamps they were read under.
type Entries = HashMap<String, (FileStamp, Arc<Listed>)>;

/// A watching engine still reads the containers directory and `stat`s every container
/// this often, as an engine without a watch does at every listing: it sweeps what a
/// killed create or remove left (see [`Engine::container_ids`]), and bounds how long a
/// change the watch could not report (a lost inotify event) would go unseen.
const FULL_SCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// inotify watches on the containers directory (entries added, removed or renamed: the
/// list of IDs) and on each container's directory (its entries added, removed, renamed,
/// or its attributes changed: whatever changes the directory's [`FileStamp`]). The
/// kernel queues an event before the change's system call returns, so a change made
/// before a listing started (by this process or another) is read at that listing.
#[derive(Debug)]
struct Watch {
    fd: std::os::fd::OwnedFd,
    /// The watch of the containers directory.
    root_wd: i32,
    /// The container ID of each container directory's watch.
    by_wd: HashMap<i32, String>,
    /// The watch of each container directory.
    wd_of: HashMap<String, i32>,
    /// Containers whose cached entry was read (or found current by its stamp) under a
    /// watch that has reported nothing since: listed without a `stat`.
    current: std::collections::HashSet<String>,
    /// The IDs the last read of the containers directory found, while no entry of it
    /// changed since (`None`: read it again).
    ids: Option<Vec<String>>,
    /// When the directory was last read and every container `stat`ed.
    scanned: std::time::Instant,
    /// The last listing, newest first, when every entry of it was current: returned
    /// again while no event came.
    listing: Option<Vec<Arc<Listed>>>,
}

/// What a change to a container's directory can be (its entries, its attributes, itself).
fn dir_events() -> rustix::fs::inotify::WatchFlags {
    use rustix::fs::inotify::WatchFlags as W;
    W::CREATE
        | W::DELETE
        | W::MOVED_FROM
        | W::MOVED_TO
        | W::ATTRIB
        | W::DELETE_SELF
        | W::MOVE_SELF
        | W::ONLYDIR
}

impl Watch {
    /// A watch of the containers directory `dir` (`None` when inotify fails: out of
    /// instances, say; listings then `stat` every container).
    fn new(dir: &Path) -> Option<Watch> {
        use rustix::fs::inotify;
        let fd =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
        let root_wd = inotify::add_watch(&fd, dir, dir_events()).ok()?;
        Some(Watch {
            fd,
            root_wd,
            by_wd: HashMap::new(),
            wd_of: HashMap::new(),
            current: Default::default(),
            ids: None,
            scanned: std::time::Instant::now(),
            listing: None,
        })
    }

    /// Reads the events queued since the last call: a container whose directory changed
    /// is no longer current, and a change to the containers directory drops the IDs; any
    /// event drops the last listing.
    fn drain(&mut self) {
        use rustix::fs::inotify::{ReadFlags, Reader};
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut events = Reader::new(&self.fd, &mut buf);
        // until EAGAIN: none left
        while let Ok(ev) = events.next() {
            let (wd, flags) = (ev.wd(), ev.events());
            self.listing = None;
            // the queue overflowed: events were lost
            if wd < 0 || flags.bits() & libc::IN_Q_OVERFLOW != 0 {
                self.current.clear();
                self.ids = None;
                continue;
            }
            if wd == self.root_wd {
                self.ids = None;
            } else if let Some(id) = self.by_wd.get(&wd) {
                self.current.remove(id);
                if flags.contains(ReadFlags::IGNORED) {
                    // the directory is gone
                    self.wd_of.remove(id);
                    self.by_wd.remove(&wd);
                }
            }
            // else: the last event of a watch removed by forget_except
        }
    }

    /// Watches container `id`'s directory (before it is read: a change after this point
    /// is reported); false when it cannot be watched.
    fn watch(&mut self, dir: &Path, id: &str) -> bool {
        if self.wd_of.contains_key(id) {
            return true;
        }
        match rustix::fs::inotify::add_watch(&self.fd, dir.join(id), dir_events()) {
            Ok(wd) => {
                self.by_wd.insert(wd, id.to_string());
                self.wd_of.insert(id.to_string(), wd);
                true
            }
            Err(_) => false,
        }
    }

    /// Drops the watches of containers that are no longer there.
    fn forget_except(&mut self, ids: &std::collections::HashSet<&String>) {
        let gone: Vec<String> = self
            .wd_of
            .keys()
            .filter(|id| !ids.contains(id))
            .cloned()
            .collect();
        for id in gone {
            self.current.remove(&id);
            if let Some(wd) = self.wd_of.remove(&id) {
                self.by_wd.remove(&wd);
                let _ = rustix::fs::inotify::remove_watch(&self.fd, wd);
            }
        }
    }
}

impl Engine {
    /// Keeps an inotify watch of the containers' directories for listings (`ps`, the
    /// API's container list, `images`' container counts): a container whose directory
    /// has not changed since it was listed is listed again without a `stat`, and the
    /// containers directory is read again only when its entries changed (or every
    /// [`FULL_SCAN_EVERY`]). For a long-lived engine (the daemon); a process that lists
    /// once would only pay for the watches. Uses one inotify instance and a watch per
    /// container; without them (inotify limits), listings work as without this.
    pub fn watch_containers(&self) {
        self.listed
            .watching
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// What `ps` needs of every container, newest first, through the listing cache: a
    /// container is read from its records only when its directory changed since it was
    /// cached.
    pub(crate) fn listed(&self) -> Result<Vec<Arc<Listed>>> {
        let dir = self.containers_dir();
        let mut guard = self.listed.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        let cache = state
            .entries
            .get_or_insert_with(|| read_index(&dir.join(INDEX_FILE)));
        if self
            .listed
            .watching
            .load(std::sync::atomic::Ordering::Relaxed)
            && state.watch.is_none()
        {
            state.watch = Watch::new(&dir);
        }
        let mut watch = state.watch.as_mut();
        if let Some(w) = &mut watch {
            w.drain();
            if w.scanned.elapsed() > FULL_SCAN_EVERY {
                w.current.clear();
                w.ids = None;
                w.listing = None;
            }
            if let Some(l) = &w.listing {
                // nothing changed since the last listing
                let out = l.clone();
                drop(guard);
                return Ok(self.with_health(out));
            }
        }
        // the IDs the watch kept: no entry of the directory changed since it was read
        let (ids, reread) = match watch.as_mut().and_then(|w| w.ids.take()) {
            Some(ids) => (ids, false),
            None => (self.container_ids()?, true),
        };
        // stamps are taken relative to the directory: no walk of its path per container
        let dirfd = fs::File::open(&dir).map_err(Error::io(format!("open {}", dir.display())))?;
        let mut out = Vec::with_capacity(ids.len());
        let mut misses = Vec::new();
        // container directories found current by their stamps, watched since before
        let mut now_current = Vec::new();
        // every entry listed is current: the listing can be kept
        let mut all_current = true;
        for id in &ids {
            if let Some(w) = &watch
                && w.current.contains(id)
                && let Some((_, l)) = cache.get(id)
            {
                out.push(l.clone());
                continue;
            }
            let watched = match &mut watch {
                Some(w) => w.watch(&dir, id),
                None => false,
            };
            all_current &= watched;
            // a container removed since the directory was read has no stamp: skipped
            let Some(stamp) = FileStamp::at(&dirfd, id) else {
                continue;
            };
            match cache.get(id) {
                Some((s, l)) if *s == stamp => {
                    out.push(l.clone());
                    if watched {
                        now_current.push(id.clone());
                    }
                }
                _ => misses.push((id.as_str(), stamp, watched)),
            }
        }
        let load = |part: &[(&str, FileStamp, bool)]| {
            let mut got = Vec::with_capacity(part.len());
            for (id, stamp, watched) in part {
                match self.load_container_dir(dir.join(id)) {
                    Ok(c) => got.push((id.to_string(), *stamp, *watched, Arc::new(Listed::of(&c)))),
                    Err(_) => self.skip_unreadable(id),
                }
            }
            got
        };
        let loaded = super::on_every_core(&misses, load);
        // an unreadable one is left out: looked at again at the next listing
        all_current &= loaded.len() == misses.len();
        let mut changed = 0;
        for (id, stamp, watched, l) in loaded {
            out.push(l.clone());
            // kept only when the directory's last change is older than the file
            // system's clock can tell apart from a change still to come
            if stamp.settled() {
                if watched {
                    now_current.push(id.clone());
                }
                cache.insert(id, (stamp, l));
                changed += 1;
            } else {
                all_current = false;
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        if reread {
            let before = cache.len();
            let keep: std::collections::HashSet<&String> = ids.iter().collect();
            cache.retain(|k, _| keep.contains(k));
            changed += before - cache.len();
            if let Some(w) = &mut watch {
                w.forget_except(&keep);
            }
        }
        if changed >= INDEX_REWRITE_AFTER {
            write_index(&dir.join(INDEX_FILE), cache);
        }
        if let Some(w) = watch {
            w.current.extend(now_current);
            if reread {
                w.scanned = std::time::Instant::now();
            }
            w.ids = Some(ids);
            if all_current {
                w.listing = Some(out.clone());
            }
        }
        drop(guard);
        Ok(self.with_health(out))
    }

    /// The health of a container with a check is read at every listing (the monitor's
    /// prober writes it beside the records).
    fn with_health(&self, mut out: Vec<Arc<Listed>>) -> Vec<Arc<Listed>> {
        let dir = self.containers_dir();
        for l in &mut out {
            if l.healthcheck {
                let mut x = Arc::unwrap_or_clone(l.clone());
                x.state.health = crate::health::current(&dir.join(&x.id), &x.state.status);
                *l = Arc::new(x);
            }
        }
        out
    }
}

impl Engine {
    /// `docker ps`: newest first.
    pub fn list_containers(&self, opts: &ListOptions) -> Result<Vec<Summary>> {
        let mut out: Vec<Summary> = self
            .select(opts)?
            .iter()
            .map(|(c, status)| c.summary_as(status))
            .collect();
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

    /// [`Engine::list_containers`] as the API answers it: the JSON array of the
    /// summaries, written straight from the listing cache (each container's unchanging
    /// part is encoded once per cached entry; its state, status and ports at each call).
    /// The same bytes as `serde_json::to_vec` of [`Engine::list_containers`]'s rows.
    pub fn list_containers_json(&self, opts: &ListOptions) -> Result<Vec<u8>> {
        if opts.size {
            let rows = self.list_containers(opts)?;
            return serde_json::to_vec(&rows).map_err(|e| Error::Io {
                what: "encode the container list".into(),
                source: std::io::Error::other(e),
            });
        }
        let rows = self.select(opts)?;
        let mut buf = Vec::with_capacity(2 + rows.len() * 400);
        buf.push(b'[');
        for (i, (c, status)) in rows.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            c.write_json(status, &mut buf);
        }
        buf.push(b']');
        Ok(buf)
    }

    /// The containers `opts` selects, newest first, each with its live status (looked at
    /// once: a running one's look reads `/proc/<pid>/stat`).
    fn select(&self, opts: &ListOptions) -> Result<Vec<(Arc<Listed>, Cow<'static, str>)>> {
        // newest first
        let all = self.listed()?;
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
                let status = static_status(status);
                out.push((c, status));
            }
        }
        if let Some(n) = opts.limit {
            out.truncate(n);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::{NetworkState, PublishedPort, ZERO_TIME};

    fn listed(name: &str, command: &str, labels: &[(&str, &str)], exposed: &[&str]) -> Listed {
        Listed {
            id: "0123abcd".repeat(8),
            name: name.into(),
            created: "2026-12-04T21:30:05.123456789Z".into(),
            image: "busybox:latest".into(),
            image_id: format!("sha256:{}", "fe".repeat(32)),
            command: command.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            exposed: exposed.iter().map(|s| s.to_string()).collect(),
            binds: vec![],
            volumes: vec![],
            network_mode: "bridge".into(),
            healthcheck: false,
            state: ContainerState::default(),
            json: Default::default(),
        }
    }

    /// The API's rows written from the cache are the bytes serde writes for the
    /// summaries (`docker ps` and every SDK read them back), for each status, with
    /// characters JSON escapes, labels, exposed and published ports; and a row written a
    /// second time (from the encoded pieces kept in the entry) is the same.
    #[test]
    fn rows_written_from_the_cache_are_the_summaries_json() {
        let plain = listed("plain", "true", &[], &[]);
        let mut odd = listed(
            "q\"uo\\te",
            "sh -c \"echo \\u00e9 \t tab\" \u{1}ctl é ☃",
            &[("a.b", "x\"y"), ("z", ""), ("é", "\n")],
            &["80/tcp", "53/udp", "8080", "bad/tcp"],
        );
        odd.state.status = "exited".into();
        odd.state.exit_code = 137;
        odd.state.finished_at = "2020-01-01T00:00:00Z".into();
        let mut up = listed("up", "sleep 1000", &[("k", "v")], &["80/tcp", "443/tcp"]);
        up.state.status = "running".into();
        up.state.started_at = "2020-01-01T00:00:00Z".into();
        up.state.network = Some(NetworkState {
            ports: vec![PublishedPort {
                host_ip: "0.0.0.0".into(),
                host_port: 8080,
                container_port: 80,
                proto: "tcp".into(),
            }],
            ..Default::default()
        });
        let mut weird = listed("weird", "", &[], &[]);
        weird.state.status = "no such status".into();
        weird.state.finished_at = ZERO_TIME.into();
        let rows = [
            (&plain, "created"),
            (&odd, "exited"),
            (&odd, "created"),
            (&up, "running"),
            (&up, "paused"),
            (&up, "exited"),
            (&up, "restarting"),
            (&weird, "no such status"),
            (&weird, "removing"),
        ];
        for (l, live) in rows {
            let want = serde_json::to_vec(&l.summary_as(live)).unwrap();
            for _ in 0..2 {
                let mut got = Vec::new();
                l.write_json(live, &mut got);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "{live}"
                );
            }
        }
    }

    #[test]
    fn statuses_are_kept_as_given() {
        for s in ["created", "running", "exited", "dead", "something else", ""] {
            assert_eq!(static_status(s), s);
        }
        assert!(matches!(static_status("running"), Cow::Borrowed(_)));
    }
}
