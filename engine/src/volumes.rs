//! Volumes (the `local` driver): `<root>/volumes/<name>/_data`, with `opts.json` holding
//! labels and the creation time; `docker volume create/ls/inspect/rm/prune`. A volume a
//! container uses (a named bind or an anonymous volume of it) is not removed.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::containers::write_atomic;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// `docker volume inspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// `local`.
    pub driver: String,
    /// Where its data is.
    pub mountpoint: PathBuf,
    /// RFC 3339.
    pub created_at: String,
    /// `-l`.
    pub labels: BTreeMap<String, String>,
    /// `local`.
    pub scope: String,
}

fn valid(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Engine {
    fn volume_path(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }

    /// `docker volume create` (a random name when `None`); creating an existing volume
    /// returns it, as Docker does.
    pub fn create_volume(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume> {
        let name = match name {
            Some(n) => n.to_string(),
            None => crate::containers::random_id()?,
        };
        if !valid(&name) {
            return Err(Error::InvalidArgument(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
            )));
        }
        if let Ok(v) = self.volume(&name) {
            return Ok(v);
        }
        let dir = self.volume_path(&name);
        fs::create_dir_all(dir.join("_data"))
            .map_err(Error::io(format!("create volume {name}")))?;
        let v = Volume {
            name: name.clone(),
            driver: "local".into(),
            mountpoint: dir.join("_data"),
            created_at: crate::containers::now_rfc3339(),
            labels,
            scope: "local".into(),
        };
        write_atomic(
            &dir.join("opts.json"),
            &serde_json::to_vec(&v).expect("volume serializes"),
        )?;
        self.event(
            "volume",
            "create",
            &name,
            vec![("driver".into(), "local".into())],
        );
        Ok(v)
    }

    /// `docker volume inspect`. Volumes made by `-v name:/path` have no `opts.json` yet.
    pub fn volume(&self, name: &str) -> Result<Volume> {
        let dir = self.volume_path(name);
        if !valid(name) || !dir.join("_data").is_dir() {
            return Err(Error::NoSuchVolume(name.to_string()));
        }
        match fs::read(dir.join("opts.json")) {
            Ok(d) => serde_json::from_slice(&d).map_err(|e| Error::Io {
                what: format!("parse volume {name}"),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(_) => Ok(Volume {
                name: name.into(),
                driver: "local".into(),
                mountpoint: dir.join("_data"),
                created_at: String::new(),
                labels: BTreeMap::new(),
                scope: "local".into(),
            }),
        }
    }

    /// `docker volume ls`.
    pub fn volumes(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        let dir = self.root.join("volumes");
        for e in fs::read_dir(&dir)
            .map_err(Error::io(format!("list {}", dir.display())))?
            .flatten()
        {
            if let Some(n) = e.file_name().to_str()
                && let Ok(v) = self.volume(n)
            {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `docker volume ls -f`: the volumes that pass every filter (`name=` part of the
    /// name, `driver=`, `dangling=true|false`, `label=k` or `label=k=v`).
    pub fn list_volumes(&self, filters: &[(String, String)]) -> Result<Vec<Volume>> {
        for (k, _) in filters {
            if !matches!(k.as_str(), "name" | "label" | "dangling" | "driver") {
                return Err(Error::InvalidArgument(format!("invalid filter '{k}'")));
            }
        }
        let dangling = filters.iter().any(|(k, _)| k == "dangling");
        let mut out = Vec::new();
        for v in self.volumes()? {
            let used = dangling && !self.volume_users(&v.name)?.is_empty();
            let keep = filters.iter().all(|(k, val)| match k.as_str() {
                "name" => v.name.contains(val.as_str()),
                "driver" => v.driver == *val,
                "dangling" => matches!(val.as_str(), "true" | "1") != used,
                _ => match val.split_once('=') {
                    Some((lk, lv)) => v.labels.get(lk).is_some_and(|x| x == lv),
                    None => v.labels.contains_key(val.as_str()),
                },
            });
            if keep {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// IDs of the containers using volume `name`.
    pub(crate) fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| {
                c.record
                    .host_config
                    .binds
                    .iter()
                    .any(|b| b.split(':').next() == Some(name))
                    || name.starts_with(&format!("anon-{}-", &c.record.id[..12]))
            })
            .map(|c| c.record.id)
            .collect())
    }

    /// `docker volume rm`: refused while a container uses it (even a stopped one).
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        self.volume(name)?;
        let users = self.volume_users(name)?;
        if !users.is_empty() && !force {
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        fs::remove_dir_all(self.volume_path(name))
            .map_err(Error::io(format!("remove volume {name}")))?;
        self.event("volume", "destroy", name, vec![]);
        Ok(())
    }

    /// Removes every volume no container uses (named ones too); returns their names.
    /// [`Engine::prune_volumes_report`] is `docker volume prune` with its options.
    pub fn prune_volumes(&self) -> Result<Vec<String>> {
        Ok(self
            .prune_volumes_report(true, &crate::system::PruneFilters::default())?
            .deleted)
    }
}
