//! Image jobs over libgraph: `images`, `import`, `tag`, `rmi` (with Docker's conflicts,
//! running containers included), `inspect`, `history`.

use std::io::Read;

use longshore_graph::{HistoryEntry, Image, LoadProgress, Removed};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{Error, Result, graph};

/// Docker's progress message for a layer being loaded (`POST /images/load` sends it; an
/// in-process `load` draws the same): `{"status": "Loading layer", "progressDetail":
/// {"current", "total"}, "id": <the diff ID's first 12 hex digits>}`.
pub fn load_message(p: &LoadProgress<'_>) -> serde_json::Value {
    let hex = p.diff_id.hex();
    serde_json::json!({
        "status": "Loading layer",
        "progressDetail": {"current": p.current, "total": p.total},
        "id": &hex[..hex.len().min(12)],
    })
}

/// One row of `docker images` (the API's image summary; a client reads it back).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// `sha256:...`.
    pub id: String,
    /// `repo:tag` (empty for a dangling image).
    #[serde(default)]
    pub repo_tags: Vec<String>,
    /// `repo@sha256:...`: the manifests it was pulled or pushed as.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Seconds since the epoch.
    pub created: i64,
    /// Bytes.
    pub size: u64,
    /// The parent (committed from), if any.
    #[serde(default)]
    pub parent_id: String,
    /// Containers using it.
    #[serde(default)]
    pub containers: i64,
}

/// Options of `docker rmi`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RemoveImageOptions {
    /// `-f`.
    pub force: bool,
    /// `--no-prune`.
    pub no_prune: bool,
}

fn summary(i: &Image, containers: i64) -> ImageSummary {
    ImageSummary {
        id: i.id.to_string(),
        repo_tags: i.tags.clone(),
        repo_digests: i.repo_digests.clone(),
        created: i
            .created
            .as_deref()
            .map(crate::containers::unix_time)
            .unwrap_or(0),
        size: i.size,
        parent_id: i.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        containers,
    }
}

/// `repo` of `repo:tag` (a registry's port is no tag: `host:5000/a/b:t` is `host:5000/a/b`).
fn repository_of(tagged: &str) -> &str {
    match tagged.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => tagged,
    }
}

impl Engine {
    /// `docker images`: newest first; `filters` are `dangling`, `label`, `before`, `since`,
    /// `reference`.
    pub fn list_images(&self, filters: &[(String, String)]) -> Result<Vec<ImageSummary>> {
        self.list_images_all(filters, true)
    }

    /// `docker images [-a]`: without `all`, untagged images that are the parent of another
    /// image (a build's intermediate steps) are left out, as Docker does.
    pub fn list_images_all(
        &self,
        filters: &[(String, String)],
        all: bool,
    ) -> Result<Vec<ImageSummary>> {
        let mut imgs = self.store()?.images().map_err(graph("list images"))?;
        if !all {
            let parents: std::collections::HashSet<String> = imgs
                .iter()
                .filter_map(|i| i.parent.as_ref().map(|p| p.to_string()))
                .collect();
            imgs.retain(|i| !i.tags.is_empty() || !parents.contains(&i.id.to_string()));
        }
        imgs.sort_by(|a, b| b.created.cmp(&a.created));
        // counted from what `ps` caches of each container
        let containers = self.listed()?;
        let mut out = Vec::new();
        let before = filters
            .iter()
            .find(|(k, _)| k == "before")
            .map(|(_, v)| self.image_created(v))
            .transpose()?;
        let since = filters
            .iter()
            .find(|(k, _)| k == "since")
            .map(|(_, v)| self.image_created(v))
            .transpose()?;
        for (k, _) in filters {
            if !matches!(
                k.as_str(),
                "dangling" | "label" | "before" | "since" | "reference"
            ) {
                return Err(Error::InvalidArgument(format!("invalid filter '{k}'")));
            }
        }
        for i in imgs {
            let dangling = i.tags.is_empty();
            let keep = filters.iter().all(|(k, v)| match k.as_str() {
                "dangling" => (v == "true" || v == "1") == dangling,
                "reference" => i
                    .tags
                    .iter()
                    .any(|t| glob_match(v, t) || glob_match(v, repository_of(t))),
                "label" => self
                    .image_labels(&i)
                    .iter()
                    .any(|(lk, lv)| match v.split_once('=') {
                        Some((fk, fv)) => lk == fk && lv == fv,
                        None => lk == v,
                    }),
                _ => true,
            }) && before
                .as_ref()
                .is_none_or(|b| i.created.clone().unwrap_or_default() < *b)
                && since
                    .as_ref()
                    .is_none_or(|s| i.created.clone().unwrap_or_default() > *s);
            if keep {
                let n = containers
                    .iter()
                    .filter(|c| c.image_id == i.id.to_string())
                    .count() as i64;
                out.push(summary(&i, n));
            }
        }
        Ok(out)
    }

    fn image_created(&self, name: &str) -> Result<String> {
        let i = self
            .store()?
            .image(name)
            .map_err(|_| Error::NoSuchImage(name.into()))?;
        Ok(i.created.unwrap_or_default())
    }

    pub(crate) fn image_labels(&self, i: &Image) -> Vec<(String, String)> {
        let Ok(g) = self.store() else {
            return Vec::new();
        };
        g.config(&i.id.to_string())
            .ok()
            .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok())
            .and_then(|v| v["config"]["Labels"].as_object().cloned())
            .map(|o| {
                o.into_iter()
                    .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `docker import`: a root filesystem tar as a one-layer image, optionally tagged,
    /// with `--change` instructions (CMD, ENTRYPOINT, ENV, EXPOSE, WORKDIR, USER, LABEL,
    /// VOLUME, STOPSIGNAL) applied to its config.
    pub fn import_image(
        &self,
        reader: impl Read + Send,
        reference: Option<&str>,
        message: Option<&str>,
        changes: &[String],
    ) -> Result<String> {
        let id = self
            .store()?
            .import(reader, None, message)
            .map_err(graph("import the root filesystem"))?;
        let id = if changes.is_empty() {
            id
        } else {
            let cfg = self
                .store()?
                .config(&id.to_string())
                .map_err(graph("read the imported config"))?;
            let mut v: serde_json::Value = serde_json::from_slice(&cfg).unwrap_or_default();
            for c in changes {
                apply_change(&mut v["config"], c)?;
            }
            let bytes = serde_json::to_vec(&v).expect("config serializes");
            let img = self
                .store()?
                .image(&id.to_string())
                .map_err(graph("read the imported image"))?;
            let top = img
                .chain_id
                .as_ref()
                .and_then(|c| self.store().ok()?.layer_by_chain(c).ok().flatten())
                .map(|l| l.cache_id);
            let new = self
                .store()?
                .create_image(&bytes, top.as_deref(), None)
                .map_err(graph("create the imported image"))?;
            let _ = self.store()?.remove_image(
                &id.to_string(),
                &longshore_graph::RemoveOptions::new()
                    .force(true)
                    .prune(false),
            );
            new
        };
        if let Some(r) = reference {
            self.store()?.tag(&id.to_string(), r).map_err(|e| match e {
                longshore_graph::Error::InvalidReference { .. } => {
                    Error::InvalidArgument(e.to_string())
                }
                e => Error::Graph {
                    op: format!("tag {r}"),
                    source: e,
                },
            })?;
        }
        self.event("image", "import", &id.to_string(), vec![]);
        Ok(id.to_string())
    }

    /// `docker load`: the images of a `docker save` archive (or an OCI layout) into the
    /// store; each new layer's progress goes to `progress` (see [`load_message`]). Returns
    /// each image's ID and the tags it got. A bad archive changes nothing.
    pub fn load_images(
        &self,
        reader: impl Read + Send,
        progress: &(dyn Fn(LoadProgress<'_>) + Sync),
    ) -> Result<Vec<(String, Vec<String>)>> {
        let loaded = self
            .store()?
            .load_with_progress(reader, progress)
            .map_err(|err| Error::InvalidArgument(format!("load: {err}")))?;
        let loaded: Vec<(String, Vec<String>)> = loaded
            .into_iter()
            .map(|(id, tags)| (id.to_string(), tags))
            .collect();
        for (id, tags) in &loaded {
            let name = tags.first().cloned().unwrap_or_else(|| id.clone());
            self.event("image", "load", id, vec![("name".into(), name)]);
        }
        Ok(loaded)
    }

    /// `docker tag`.
    pub fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        let id = self
            .store()?
            .resolve(source)
            .map_err(|_| Error::NoSuchImage(source.into()))?;
        self.store()?
            .tag(&id.to_string(), target)
            .map_err(graph(format!("tag {source} as {target}")))?;
        self.event(
            "image",
            "tag",
            &id.to_string(),
            vec![("name".into(), target.into())],
        );
        Ok(())
    }

    /// `docker rmi`: refuses an image a running container uses even with `force`, and
    /// one any container uses without it, in Docker's words.
    pub fn remove_image(&self, name: &str, opts: &RemoveImageOptions) -> Result<Vec<Removed>> {
        let id = self
            .store()?
            .resolve(name)
            .map_err(|_| Error::NoSuchImage(name.into()))?;
        let id_s = id.to_string();
        let by_id = id_s
            .trim_start_matches("sha256:")
            .starts_with(name.trim_start_matches("sha256:"));
        for c in self.containers()? {
            if c.record.image_id != id_s {
                continue;
            }
            let running = matches!(c.live_status(), "running" | "paused" | "restarting");
            let tags = self
                .store()?
                .image(&id_s)
                .map(|i| i.tags.len())
                .unwrap_or(0);
            if running && (opts.force || by_id || tags <= 1) {
                return Err(Error::Conflict(format!(
                    "conflict: unable to {} {} (cannot be forced) - image is being used by running container {}",
                    if by_id {
                        "delete"
                    } else {
                        "remove repository reference"
                    },
                    if by_id { &id_s[7..19] } else { name },
                    &c.record.id[..12]
                )));
            }
            if !opts.force && (by_id || tags <= 1) {
                return Err(Error::Conflict(format!(
                    "conflict: unable to {} {} (must be forced) - image is being used by stopped container {}",
                    if by_id {
                        "delete"
                    } else {
                        "remove repository reference"
                    },
                    if by_id { &id_s[7..19] } else { name },
                    &c.record.id[..12]
                )));
            }
        }
        let removed = self
            .store()?
            .remove_image(
                name,
                &longshore_graph::RemoveOptions::new()
                    .force(opts.force)
                    .prune(!opts.no_prune),
            )
            .map_err(|e| match e {
                longshore_graph::Error::ImageNotFound(_) => Error::NoSuchImage(name.into()),
                longshore_graph::Error::Conflict(m) => Error::Conflict(m),
                e => Error::Graph {
                    op: format!("remove image {name}"),
                    source: e,
                },
            })?;
        for r in &removed {
            match r {
                Removed::Untagged(t) => {
                    self.event("image", "untag", &id_s, vec![("name".into(), t.clone())])
                }
                Removed::Deleted(d) => self.event("image", "delete", &d.to_string(), vec![]),
            }
        }
        Ok(removed)
    }

    /// Docker's `inspect` of an image.
    pub fn inspect_image(&self, name: &str) -> Result<serde_json::Value> {
        let i = self
            .store()?
            .image(name)
            .map_err(|_| Error::NoSuchImage(name.into()))?;
        let cfg = self
            .store()?
            .config(&i.id.to_string())
            .map_err(graph(format!("read the config of {name}")))?;
        let v: serde_json::Value = serde_json::from_slice(&cfg).unwrap_or_default();
        Ok(serde_json::json!({
            "Id": i.id.to_string(),
            "RepoTags": i.tags,
            "RepoDigests": i.repo_digests,
            "Parent": i.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            "Comment": v["comment"].as_str().unwrap_or_default(),
            "Created": i.created.clone().unwrap_or_default(),
            "Author": v["author"].as_str().unwrap_or_default(),
            "Config": v["config"],
            "Architecture": v["architecture"],
            "Os": v["os"],
            "Size": i.size,
            "RootFS": {"Type": "layers", "Layers": i.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        }))
    }

    /// `docker history`: newest first.
    pub fn image_history(&self, name: &str) -> Result<Vec<HistoryEntry>> {
        self.store()?.history(name).map_err(|e| match e {
            longshore_graph::Error::ImageNotFound(_) => Error::NoSuchImage(name.into()),
            e => Error::Graph {
                op: format!("history of {name}"),
                source: e,
            },
        })
    }
}

/// Applies one `--change` Dockerfile instruction to an image config.
pub fn apply_change(cfg: &mut serde_json::Value, change: &str) -> Result<()> {
    let (instr, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((change.trim(), ""));
    let rest = rest.trim();
    let words = || -> Vec<serde_json::Value> {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => v.into_iter().map(Into::into).collect(),
            Err(_) => vec!["/bin/sh".into(), "-c".into(), rest.into()],
        }
    };
    if !cfg.is_object() {
        *cfg = serde_json::json!({});
    }
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => cfg["Cmd"] = words().into(),
        "ENTRYPOINT" => cfg["Entrypoint"] = words().into(),
        "WORKDIR" => cfg["WorkingDir"] = rest.into(),
        "USER" => cfg["User"] = rest.into(),
        "STOPSIGNAL" => cfg["StopSignal"] = rest.into(),
        "ENV" => {
            let (k, v) = rest
                .split_once('=')
                .or_else(|| rest.split_once(' '))
                .unwrap_or((rest, ""));
            let mut env: Vec<serde_json::Value> =
                cfg["Env"].as_array().cloned().unwrap_or_default();
            env.retain(|e| e.as_str().and_then(|s| s.split('=').next()) != Some(k));
            env.push(format!("{k}={}", v.trim()).into());
            cfg["Env"] = env.into();
        }
        "EXPOSE" => {
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                if !cfg["ExposedPorts"].is_object() {
                    cfg["ExposedPorts"] = serde_json::json!({});
                }
                cfg["ExposedPorts"][p] = serde_json::json!({});
            }
        }
        "VOLUME" => {
            let paths: Vec<String> = serde_json::from_str(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(String::from).collect());
            for p in paths {
                if !cfg["Volumes"].is_object() {
                    cfg["Volumes"] = serde_json::json!({});
                }
                cfg["Volumes"][p] = serde_json::json!({});
            }
        }
        "LABEL" => {
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            if !cfg["Labels"].is_object() {
                cfg["Labels"] = serde_json::json!({});
            }
            cfg["Labels"][k.trim_matches('"')] = v.trim_matches('"').into();
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "{other} is not a valid change command (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL)"
            )));
        }
    }
    Ok(())
}

/// Docker's reference filter: `*` matches within a path component.
fn glob_match(pat: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && go(p, &s[1..])),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pat.as_bytes(), s.as_bytes())
}
