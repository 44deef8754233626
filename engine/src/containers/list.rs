//! `ps`: the container list in the Engine API's shape (`GET /containers/json`).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::Container;
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

impl Container {
    /// Docker's status column.
    pub fn status_text(&self) -> String {
        self.status_text_as(self.live_status())
    }

    /// Docker's status column for the live status `live` (looked at once by the caller).
    fn status_text_as(&self, live: &str) -> String {
        match live {
            "running" => {
                let up = format!("Up {}", human_duration(since(&self.state.started_at)));
                match self.state.health.as_ref().map(|h| h.status.as_str()) {
                    Some("starting") => format!("{up} (health: starting)"),
                    Some(h @ ("healthy" | "unhealthy")) => format!("{up} ({h})"),
                    _ => up,
                }
            }
            "paused" => format!(
                "Up {} (Paused)",
                human_duration(since(&self.state.started_at))
            ),
            "restarting" => format!(
                "Restarting ({}) {} ago",
                self.state.exit_code,
                human_duration(since(&self.state.finished_at))
            ),
            "exited" if self.state.finished_at != super::ZERO_TIME => format!(
                "Exited ({}) {} ago",
                self.state.exit_code,
                human_duration(since(&self.state.finished_at))
            ),
            "exited" | "created" => "Created".into(),
            "removing" => "Removal In Progress".into(),
            s => s.to_string(),
        }
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
        self.summary_as(self.live_status())
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
        for k in self.record.config.exposed_ports.keys() {
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
            id: self.record.id.clone(),
            names: vec![format!("/{}", self.record.name)],
            image: self.record.config.image.clone(),
            image_id: self.record.image_id.clone(),
            command: self.command_text(),
            created: unix_time(&self.record.created),
            ports,
            labels: self.record.config.labels.clone(),
            state: live.to_string(),
            status: self.status_text_as(live),
            size_rw: None,
            size_root_fs: None,
        }
    }
}

impl Engine {
    /// `docker ps`: newest first.
    pub fn list_containers(&self, opts: &ListOptions) -> Result<Vec<Summary>> {
        let mut all = self.containers_shared()?;
        all.sort_by(|a, b| b.record.created.cmp(&a.record.created));
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
            let status = c.live_status();
            let show_all = opts.all
                || opts.limit.is_some()
                || opts
                    .filters
                    .iter()
                    .any(|(k, _)| k == "status" || k == "exited");
            if !show_all && !matches!(status, "running" | "paused" | "restarting") {
                continue;
            }
            if before.as_ref().is_some_and(|b| c.record.created >= *b)
                || since_.as_ref().is_some_and(|s| c.record.created <= *s)
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
            let keep = ok("id", &|v| c.record.id.starts_with(v))
                && ok("name", &|v| {
                    c.record.name.contains(v.trim_start_matches('/'))
                })
                && ok("status", &|v| v == status)
                && ok("exited", &|v| {
                    status == "exited" && v.parse() == Ok(c.state.exit_code)
                })
                && ok("label", &|v| match v.split_once('=') {
                    Some((k, val)) => c.record.config.labels.get(k).is_some_and(|x| x == val),
                    None => c.record.config.labels.contains_key(v),
                })
                && ok("ancestor", &|v| {
                    c.record.config.image == v || ancestor_ids.contains(&c.record.image_id)
                })
                && ok("volume", &|v| {
                    c.record
                        .host_config
                        .binds
                        .iter()
                        .any(|b| b.split(':').any(|p| p == v))
                        || c.record.config.volumes.contains_key(v)
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
                    c.record.host_config.network_mode == v
                        || (v == "bridge" && c.record.host_config.network_mode == "default")
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
