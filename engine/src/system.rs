//! Disk usage and pruning: `docker system df`, `container prune`, `image prune` and
//! `system prune`, with Docker's accounting (a layer shared by several images counts once;
//! what is reclaimable is what nothing running or existing uses).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::containers::{Container, RemoveOptions};
use crate::engine::Engine;
use crate::error::{Error, Result, graph};
use crate::images::RemoveImageOptions;

/// The `--filter` of the prunes, as Docker's daemon reads them: `until=` (created before a
/// time: Unix seconds, RFC 3339, or a duration ago such as `24h`), `label=KEY[=VALUE]`
/// (each must match) and `label!=KEY[=VALUE]` (none may match).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PruneFilters {
    /// Only what was created before this (seconds since the epoch).
    pub until: Option<i64>,
    /// `label=`: each must match.
    pub labels: Vec<(String, Option<String>)>,
    /// `label!=`: none may match.
    pub not_labels: Vec<(String, Option<String>)>,
    /// `dangling=false` of an image prune: every unused image, as `-a`.
    pub all_images: bool,
}

impl PruneFilters {
    /// Reads `filters` (`label!` is the key of `label!=`); a key not in `allowed` is
    /// refused in Docker's words.
    pub fn parse(filters: &[(String, String)], allowed: &[&str]) -> Result<PruneFilters> {
        let mut f = PruneFilters::default();
        let label = |v: &str| match v.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (v.to_string(), None),
        };
        for (k, v) in filters {
            if !allowed.contains(&k.as_str()) {
                return Err(Error::InvalidArgument(format!("invalid filter '{k}'")));
            }
            match k.as_str() {
                "until" => f.until = Some(until_secs(v)?),
                "label" => f.labels.push(label(v)),
                "label!" => f.not_labels.push(label(v)),
                "dangling" => match v.as_str() {
                    "true" | "1" => {}
                    "false" | "0" => f.all_images = true,
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "invalid filter 'dangling={v}'"
                        )));
                    }
                },
                _ => return Err(Error::InvalidArgument(format!("invalid filter '{k}'"))),
            }
        }
        Ok(f)
    }

    /// True when something created at `created` (Unix seconds) with `labels` is pruned.
    pub fn matches(&self, created: i64, labels: &BTreeMap<String, String>) -> bool {
        let has = |(k, v): &(String, Option<String>)| match v {
            Some(v) => labels.get(k) == Some(v),
            None => labels.contains_key(k),
        };
        self.until.is_none_or(|u| created < u)
            && self.labels.iter().all(has)
            && !self.not_labels.iter().any(has)
    }
}

/// `until=`'s time: Unix seconds (with a fraction), RFC 3339, or a duration before now.
fn until_secs(v: &str) -> Result<i64> {
    if let Ok(f) = v.parse::<f64>() {
        return Ok(f as i64);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(v) {
        return Ok(t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64));
    }
    if let Ok(d) = humantime::parse_duration(v) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        return Ok(now - d.as_secs() as i64);
    }
    Err(Error::InvalidArgument(format!(
        "invalid filter 'until={v}': a timestamp (Unix seconds, RFC 3339) or a duration (24h)"
    )))
}

/// `docker system df`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskUsage {
    /// Bytes of every layer, each counted once.
    pub layers_size: u64,
    /// Every image with its sizes.
    pub images: Vec<ImageUsage>,
    /// Every container with the size of its writable layer.
    pub containers: Vec<ContainerUsage>,
    /// Every volume with its size and users.
    pub volumes: Vec<VolumeUsage>,
}

/// An image in [`DiskUsage`].
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageUsage {
    /// `sha256:...`.
    pub id: String,
    /// Its tags.
    pub repo_tags: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    /// All its layers.
    pub size: u64,
    /// What it shares with other images.
    pub shared_size: u64,
    /// Containers made from it.
    pub containers: i64,
}

/// A container in [`DiskUsage`].
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerUsage {
    /// Full ID.
    pub id: String,
    /// Its name.
    pub names: Vec<String>,
    /// The image as given.
    pub image: String,
    /// The command.
    pub command: String,
    /// `running`, `exited`...
    pub state: String,
    /// `Up 2 minutes`...
    pub status: String,
    /// Its writable layer.
    pub size_rw: u64,
    /// Volumes it mounts (named and anonymous).
    pub local_volumes: i64,
    /// Unix seconds.
    pub created: i64,
}

/// A volume in [`DiskUsage`].
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeUsage {
    /// Its name.
    pub name: String,
    /// Containers using it.
    pub ref_count: i64,
    /// Bytes under it.
    pub size: u64,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Container IDs, image lines (`untagged: x`, `deleted: sha256:...`) or volume names.
    pub deleted: Vec<String>,
    /// Bytes freed.
    pub space_reclaimed: u64,
}

/// Bytes of the regular files under `dir` (hard links once, without crossing mounts).
fn du(dir: &Path) -> u64 {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let dev = fs::symlink_metadata(dir).map(|m| m.dev()).unwrap_or(0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.dev() != dev {
                continue;
            }
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() && (md.nlink() == 1 || seen.insert(md.ino())) {
                total += md.len();
            }
        }
    }
    total
}

impl Engine {
    /// The size of a container's writable layer (`docker ps -s`'s first figure): the
    /// files it added or changed, as Docker's naive diff counts them.
    pub fn container_size(&self, c: &Container) -> Result<u64> {
        let store = self.store()?;
        let changes = store
            .container_changes_except(&c.record.id, &crate::containers::commit::mount_points())
            .map_err(graph(format!("diff container {}", c.record.name)))?;
        if changes.is_empty() {
            return Ok(0);
        }
        let (root, mounted) = if matches!(c.live_status(), "running" | "paused") {
            (c.dir.join("rootfs"), false)
        } else {
            let p = store
                .mount_container(&c.record.id)
                .map_err(graph(format!("mount container {}", c.record.name)))?;
            (p, true)
        };
        let mut seen = BTreeSet::new();
        let mut total = 0u64;
        for ch in &changes {
            if ch.kind == longshore_graph::ChangeKind::Deleted {
                continue;
            }
            let p = root.join(ch.path.trim_start_matches('/'));
            if let Ok(md) = fs::symlink_metadata(&p)
                && !md.is_dir()
                && seen.insert(md.ino())
            {
                total += md.len();
            }
        }
        if mounted {
            let _ = store.unmount_container(&c.record.id);
        }
        Ok(total)
    }

    /// `docker system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let store = self.graph()?;
        let containers = self.containers()?;
        let mut users: BTreeMap<String, i64> = BTreeMap::new();
        for c in &containers {
            *users.entry(c.record.image_id.clone()).or_default() += 1;
        }
        // each image's layers (by chain), and how many images hold each layer
        let mut layer_size: BTreeMap<String, u64> = BTreeMap::new();
        let mut holders: BTreeMap<String, usize> = BTreeMap::new();
        let mut image_layers = Vec::new();
        for img in store.images().map_err(graph("list images"))? {
            let mut chains = Vec::new();
            for i in 0..img.diff_ids.len() {
                let Some(chain) = longshore_graph::chain_id(&img.diff_ids[..=i]) else {
                    continue;
                };
                let key = chain.to_string();
                if let Ok(Some(row)) = store.layer_by_chain(&chain) {
                    layer_size.insert(key.clone(), row.size);
                }
                *holders.entry(key.clone()).or_default() += 1;
                chains.push(key);
            }
            image_layers.push((img, chains));
        }
        let mut out = DiskUsage {
            layers_size: layer_size.values().sum(),
            ..Default::default()
        };
        for (img, chains) in image_layers {
            let size = chains.iter().filter_map(|c| layer_size.get(c)).sum();
            let shared = chains
                .iter()
                .filter(|c| holders.get(*c).copied().unwrap_or(0) > 1)
                .filter_map(|c| layer_size.get(c))
                .sum();
            let id = img.id.to_string();
            out.images.push(ImageUsage {
                containers: users.get(&id).copied().unwrap_or(0),
                id,
                repo_tags: img.tags.clone(),
                created: img
                    .created
                    .as_deref()
                    .map(crate::containers::unix_time)
                    .unwrap_or(0),
                size,
                shared_size: shared,
            });
        }
        for c in &containers {
            out.containers.push(ContainerUsage {
                id: c.record.id.clone(),
                names: vec![format!("/{}", c.record.name)],
                image: c.record.config.image.clone(),
                command: c.command_text(),
                state: c.live_status().to_string(),
                status: c.status_text(),
                size_rw: self.container_size(c).unwrap_or(0),
                local_volumes: (c
                    .record
                    .host_config
                    .binds
                    .iter()
                    .filter(|b| !b.starts_with('/'))
                    .count()
                    + c.record.config.volumes.len()) as i64,
                created: crate::containers::unix_time(&c.record.created),
            });
        }
        for v in self.volumes()? {
            out.volumes.push(VolumeUsage {
                ref_count: self.volume_users(&v.name)?.len() as i64,
                size: du(&v.mountpoint),
                name: v.name,
            });
        }
        Ok(out)
    }

    /// `docker container prune`: removes every stopped container `filters` (`until`,
    /// `label`) select.
    pub fn prune_containers(&self, filters: &PruneFilters) -> Result<PruneReport> {
        let mut rep = PruneReport::default();
        for c in self.containers()? {
            if matches!(c.live_status(), "exited" | "created" | "dead")
                && filters.matches(
                    crate::containers::unix_time(&c.record.created),
                    &c.record.config.labels,
                )
            {
                let size = self.container_size(&c).unwrap_or(0);
                match self.remove_container(&c.record.id, &RemoveOptions::default()) {
                    Ok(()) => {
                        rep.space_reclaimed += size;
                        rep.deleted.push(c.record.id);
                    }
                    // started or removed by another process meanwhile
                    Err(Error::NoSuchContainer(_) | Error::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.event("container", "prune", "", vec![]);
        Ok(rep)
    }

    /// `docker image prune`: untagged images nothing uses, or with `all` every image no
    /// container uses. Lines as Docker prints them (`untagged: ...`, `deleted: ...`).
    /// `filters` (`until`, `label`, `dangling=false`) select among them; with a filter,
    /// each dangling image it selects is removed on its own.
    pub fn prune_images(&self, all: bool, filters: &PruneFilters) -> Result<PruneReport> {
        let before = self.disk_usage_layers()?;
        let mut rep = PruneReport::default();
        let all = all || filters.all_images;
        let filtered =
            filters.until.is_some() || !filters.labels.is_empty() || !filters.not_labels.is_empty();
        let selected = |img: &longshore_graph::Image| {
            let labels: BTreeMap<String, String> = self.image_labels(img).into_iter().collect();
            let created = img
                .created
                .as_deref()
                .map(crate::containers::unix_time)
                .unwrap_or(0);
            filters.matches(created, &labels)
        };
        if all || filtered {
            let used: BTreeSet<String> = self
                .containers()?
                .into_iter()
                .map(|c| c.record.image_id)
                .collect();
            // newest first: children go before their parents
            let mut images = self.graph()?.images().map_err(graph("list images"))?;
            images.sort_by(|a, b| b.created.cmp(&a.created));
            for img in images {
                let id = img.id.to_string();
                if used.contains(&id) || !selected(&img) || !(all || img.tags.is_empty()) {
                    continue;
                }
                // an image with several tags loses them all, as Docker's prune -a does
                let opts = RemoveImageOptions {
                    force: img.tags.len() > 1,
                    ..Default::default()
                };
                match self.remove_image(&id, &opts) {
                    Ok(removed) => rep.deleted.extend(removed.iter().map(|r| match r {
                        longshore_graph::Removed::Untagged(t) => format!("untagged: {t}"),
                        longshore_graph::Removed::Deleted(d) => format!("deleted: {d}"),
                    })),
                    // a parent of an image still in use, or used meanwhile
                    Err(Error::Conflict(_) | Error::NoSuchImage(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let gone = if filtered {
            Vec::new()
        } else {
            self.graph()?
                .prune_dangling()
                .map_err(graph("prune images"))?
        };
        for d in gone {
            rep.deleted.push(format!("deleted: {d}"));
            self.event("image", "delete", &d.to_string(), vec![]);
        }
        let _ = self.graph()?.gc();
        rep.space_reclaimed = before.saturating_sub(self.disk_usage_layers()?);
        self.event("image", "prune", "", vec![]);
        Ok(rep)
    }

    /// When a network was made: its record's time (Unix seconds; 0 if unreadable).
    fn network_created(&self, name: &str) -> i64 {
        fs::metadata(
            self.root
                .join("network")
                .join("networks")
                .join(format!("{name}.json")),
        )
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
    }

    /// The bytes of every layer the store holds.
    fn disk_usage_layers(&self) -> Result<u64> {
        let store = self.graph()?;
        let mut seen = BTreeMap::new();
        for img in store.images().map_err(graph("list images"))? {
            for i in 0..img.diff_ids.len() {
                if let Some(chain) = longshore_graph::chain_id(&img.diff_ids[..=i])
                    && let Ok(Some(row)) = store.layer_by_chain(&chain)
                {
                    seen.insert(row.cache_id, row.size);
                }
            }
        }
        Ok(seen.values().sum())
    }

    /// `docker volume prune` (`all`: named volumes too, not only anonymous ones, as
    /// Docker does since API 1.42), with the space freed.
    /// `filters`: `label` (Docker's volume prune takes no `until`).
    pub fn prune_volumes_report(&self, all: bool, filters: &PruneFilters) -> Result<PruneReport> {
        let mut rep = PruneReport::default();
        for v in self.volumes()? {
            let anonymous = v.name.starts_with("anon-")
                || (v.name.len() == 64 && v.name.bytes().all(|b| b.is_ascii_hexdigit()));
            if !(all || anonymous)
                || !filters.matches(crate::containers::unix_time(&v.created_at), &v.labels)
                || !self.volume_users(&v.name)?.is_empty()
            {
                continue;
            }
            let size = du(&v.mountpoint);
            match self.remove_volume(&v.name, false) {
                Ok(()) => {
                    rep.space_reclaimed += size;
                    rep.deleted.push(v.name);
                }
                // taken into use by another process meanwhile
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.event("volume", "prune", "", vec![]);
        Ok(rep)
    }

    /// `docker network prune`: the user-defined networks no container is attached to
    /// (never `bridge`). Returns their names.
    /// `filters`: `until` (a network's time is when its record was written, at its
    /// creation) and `label` (`network create --label`).
    pub fn prune_networks(&self, filters: &PruneFilters) -> Result<Vec<String>> {
        let c = self.network()?;
        let eps = c
            .endpoints()
            .map_err(Error::network("list the endpoints"))?;
        let mut gone = vec![];
        for n in c
            .list_networks()
            .map_err(Error::network("list the networks"))?
        {
            if n.name == "bridge"
                || eps.iter().any(|e| e.network.as_deref() == Some(&n.name))
                || !filters.matches(self.network_created(&n.name), &n.labels)
            {
                continue;
            }
            // one taken into use meanwhile stays
            if c.remove_network(&n.name).is_ok() {
                gone.push(n.name);
            }
        }
        self.event("network", "prune", "", vec![]);
        Ok(gone)
    }
}
