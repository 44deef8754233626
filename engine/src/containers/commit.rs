//! `docker diff` and `docker commit`.

use super::Container;
use crate::engine::Engine;
use crate::error::{Error, Result, graph};

/// What the runtime mounts over a container's root filesystem (Docker keeps them in an
/// init layer under the container's, so that neither `diff` nor `commit` shows them): the
/// files bind-mounted on `/etc`, and the file systems mounted on `/dev`, `/proc` and
/// `/sys`, with the stubs made in the read-write layer to mount them on.
pub const MOUNT_POINTS: &[&str] = &[
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/etc/mtab",
    "/.dockerenv",
    "/dev",
    "/proc",
    "/sys",
];

pub(crate) fn mount_points() -> Vec<String> {
    MOUNT_POINTS.iter().map(|s| s.to_string()).collect()
}

/// `docker commit`'s options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CommitRequest {
    /// `REPOSITORY[:TAG]` for the new image.
    pub reference: Option<String>,
    /// `-a`.
    pub author: Option<String>,
    /// `-m`: the history's comment.
    pub message: Option<String>,
    /// `-c`: Dockerfile instructions applied to the new image's config (CMD, ENTRYPOINT,
    /// ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL).
    pub changes: Vec<String>,
    /// `-p` (the default): the container is frozen while its layer is read.
    pub pause: bool,
    /// The API's request body: fields of the container's config to replace.
    pub config: Option<serde_json::Value>,
}

impl Default for CommitRequest {
    fn default() -> CommitRequest {
        CommitRequest {
            reference: None,
            author: None,
            message: None,
            changes: Vec::new(),
            pause: true,
            config: None,
        }
    }
}

impl Engine {
    /// `docker diff`: what the container changed in its image's files, without the
    /// runtime's mount points ([`MOUNT_POINTS`]).
    pub fn container_changes(&self, name_or_id: &str) -> Result<Vec<longshore_graph::Change>> {
        let c = self.container(name_or_id)?;
        self.store()?
            .container_changes_except(&c.record.id, &mount_points())
            .map_err(graph(format!("diff container {}", c.record.name)))
    }

    /// `docker commit`: the container's changes as a new image whose config is the
    /// container's (its command, environment, ...) with `changes` applied, as Docker's.
    /// A running container is paused meanwhile unless `pause` is false. The image's ID.
    pub fn commit_container(&self, name_or_id: &str, req: &CommitRequest) -> Result<String> {
        let c = self.container(name_or_id)?;
        let config = commit_config(&c, req)?;
        let mut opts = longshore_graph::CommitOptions::new()
            .config(config)
            .exclude(MOUNT_POINTS.iter().copied());
        opts.reference = req.reference.clone();
        opts.author = req.author.clone();
        opts.message = req.message.clone();
        let paused = req.pause
            && c.live_status() == "running"
            && !c.state.paused
            && self.pause_container(&c.record.id).is_ok();
        let r = self.store()?.commit(&c.record.id, &opts);
        if paused {
            let _ = self.unpause_container(&c.record.id);
        }
        let id = r
            .map_err(|e| match e {
                longshore_graph::Error::InvalidReference { .. } => {
                    Error::InvalidArgument(e.to_string())
                }
                e => Error::Graph {
                    op: format!("commit container {}", c.record.name),
                    source: e,
                },
            })?
            .to_string();
        let mut attrs = c.event_attributes();
        attrs.push(("comment".into(), req.message.clone().unwrap_or_default()));
        attrs.push(("imageID".into(), id.clone()));
        self.event("container", "commit", &c.record.id, attrs);
        Ok(id)
    }
}

/// The new image's config: the container's, the request's fields over it, then the
/// `--change` instructions.
fn commit_config(c: &Container, req: &CommitRequest) -> Result<serde_json::Value> {
    let mut cfg = serde_json::to_value(&c.record.config).expect("a container config serializes");
    if let (Some(over), Some(cfg)) = (
        req.config.as_ref().and_then(|v| v.as_object()),
        cfg.as_object_mut(),
    ) {
        for (k, v) in over {
            if !v.is_null() {
                cfg.insert(k.clone(), v.clone());
            }
        }
    }
    for ch in &req.changes {
        crate::images::apply_change(&mut cfg, ch)?;
    }
    Ok(cfg)
}
