//! Events: every container, image, volume and network action, in Docker's shape, appended
//! to `<root>/events.jsonl` (one `O_APPEND` write per event, so processes sharing the root
//! never interleave) and read back by `events` with `--since`, `--until` and `--filter`,
//! following the file for new ones.

use std::fs;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::containers::Container;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// One event (`GET /events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `container`, `image`, `volume`, `network`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `start`, `die`, `destroy`, `pull`, `tag`...
    #[serde(rename = "Action")]
    pub action: String,
    /// The object.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// `local`.
    pub scope: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// The object of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    /// Its ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Attributes (name, image, exitCode, signal...).
    #[serde(rename = "Attributes")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Appends one event to the root's log.
pub(crate) fn record(
    root: &Path,
    kind: &str,
    action: &str,
    id: &str,
    attrs: Vec<(String, String)>,
) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ev = Event {
        kind: kind.into(),
        action: action.into(),
        actor: Actor {
            id: id.into(),
            attributes: attrs.into_iter().collect(),
        },
        scope: "local".into(),
        time: now.as_secs() as i64,
        time_nano: now.as_nanos() as i64,
    };
    let mut line = serde_json::to_vec(&ev).expect("event serializes");
    line.push(b'\n');
    if let Ok(mut f) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("events.jsonl"))
    {
        let _ = f.write_all(&line);
    }
}

/// The exit code in the last `die` event of container `id` (its monitor records it before
/// it removes an auto-remove container): how a container that is gone ended.
pub(crate) fn last_exit_code(root: &Path, id: &str) -> Option<i32> {
    let log = fs::read_to_string(root.join("events.jsonl")).ok()?;
    log.lines()
        .rev()
        .filter(|l| l.contains(id))
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .find(|e| e.kind == "container" && e.action == "die" && e.actor.id == id)
        .and_then(|e| e.actor.attributes.get("exitCode")?.parse().ok())
}

/// Options of `docker events`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EventsOptions {
    /// Oldest (seconds since the epoch).
    pub since: Option<i64>,
    /// Newest; without it, follow until the sink says stop.
    pub until: Option<i64>,
    /// `type`, `event`/`action`, `container`, `image`, `label`...
    pub filters: Vec<(String, String)>,
    /// Set to stop following (the API server sets it when its client leaves).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Container {
    /// Docker's attributes of a container event.
    pub(crate) fn event_attributes(&self) -> Vec<(String, String)> {
        let mut a = vec![
            ("image".to_string(), self.record.config.image.clone()),
            ("name".to_string(), self.record.name.clone()),
        ];
        for (k, v) in &self.record.config.labels {
            a.push((k.clone(), v.clone()));
        }
        a
    }
}

impl Engine {
    pub(crate) fn event(&self, kind: &str, action: &str, id: &str, attrs: Vec<(String, String)>) {
        record(&self.root, kind, action, id, attrs);
    }

    /// Streams events to `sink` (false stops): the past ones since `since`, then new ones
    /// as they happen until `until` (or forever without it).
    pub fn events(&self, opts: &EventsOptions, sink: &mut dyn FnMut(Event) -> bool) -> Result<()> {
        let path = self.root.join("events.jsonl");
        let keep = |e: &Event| {
            opts.since.is_none_or(|s| e.time >= s)
                && opts.until.is_none_or(|u| e.time <= u)
                && opts.filters.iter().all(|(k, v)| {
                    let vals: Vec<&str> = opts
                        .filters
                        .iter()
                        .filter(|(k2, _)| k2 == k)
                        .map(|(_, v)| v.as_str())
                        .collect();
                    let _ = v;
                    vals.iter().any(|v| match k.as_str() {
                        "type" => e.kind == *v,
                        "event" | "action" => e.action == *v,
                        "container" | "image" | "volume" | "network" => {
                            e.kind == *k
                                && (e.actor.id.starts_with(v)
                                    || e.actor.attributes.get("name").is_some_and(|n| n == v))
                                || (k == "image"
                                    && e.actor.attributes.get("image").is_some_and(|n| n == v))
                        }
                        "label" => match v.split_once('=') {
                            Some((lk, lv)) => e.actor.attributes.get(lk).is_some_and(|x| x == lv),
                            None => e.actor.attributes.contains_key(*v),
                        },
                        _ => false,
                    })
                })
        };
        for (k, _) in &opts.filters {
            if !matches!(
                k.as_str(),
                "type"
                    | "event"
                    | "action"
                    | "container"
                    | "image"
                    | "volume"
                    | "network"
                    | "label"
            ) {
                return Err(Error::InvalidArgument(format!("invalid filter '{k}'")));
            }
        }
        let mut offset = 0u64;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Ok(mut f) = fs::File::open(&path) {
                f.seek(SeekFrom::Start(offset))
                    .map_err(Error::io("seek the event log"))?;
                let mut r = BufReader::new(f);
                let mut s = String::new();
                while r.read_line(&mut s).map(|n| n > 0).unwrap_or(false) {
                    if !s.ends_with('\n') {
                        break;
                    }
                    offset += s.len() as u64;
                    if let Ok(e) = serde_json::from_str::<Event>(s.trim_end()) {
                        if opts.until.is_some_and(|u| e.time > u) {
                            return Ok(());
                        }
                        if keep(&e) && !sink(e) {
                            return Ok(());
                        }
                    }
                    s.clear();
                    pause = Duration::from_millis(5);
                }
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs() as i64;
            if opts.until.is_some_and(|u| now > u)
                || opts
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            {
                return Ok(());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}
