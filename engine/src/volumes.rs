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
    /// `-o` of the local driver (`type`, `device`, `o`): a tmpfs or a bound host
    /// directory mounted on the volume's data directory.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// What the local driver's `-o type=... -o device=... -o o=...` mount: Docker's local
/// driver mounts them on the volume's `_data`; here a tmpfs or a bind of a host
/// directory (other filesystems are refused).
#[derive(Debug, PartialEq)]
enum LocalMount {
    Tmpfs {
        flags: nix::mount::MsFlags,
        data: String,
    },
    Bind {
        device: PathBuf,
        read_only: bool,
    },
}

fn local_mount(opts: &BTreeMap<String, String>) -> Result<Option<LocalMount>> {
    if opts.is_empty() {
        return Ok(None);
    }
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o") {
            return Err(Error::InvalidArgument(format!(
                "invalid option key: {k:?} (the local driver takes type, device and o)"
            )));
        }
    }
    let o: Vec<&str> = opts
        .get("o")
        .map(|s| s.split(',').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    match opts.get("type").map(String::as_str) {
        Some("tmpfs") => {
            use nix::mount::MsFlags;
            let mut flags = MsFlags::empty();
            let mut data = Vec::new();
            for x in o {
                match x {
                    "ro" => flags |= MsFlags::MS_RDONLY,
                    "nosuid" => flags |= MsFlags::MS_NOSUID,
                    "nodev" => flags |= MsFlags::MS_NODEV,
                    "noexec" => flags |= MsFlags::MS_NOEXEC,
                    "rw" => {}
                    x if ["size=", "mode=", "uid=", "gid=", "nr_inodes="]
                        .iter()
                        .any(|p| x.starts_with(p)) =>
                    {
                        data.push(x)
                    }
                    x => {
                        return Err(Error::InvalidArgument(format!(
                            "invalid tmpfs option {x:?} (size=, mode=, uid=, gid=, nr_inodes=, ro, nosuid, nodev, noexec)"
                        )));
                    }
                }
            }
            Ok(Some(LocalMount::Tmpfs {
                flags,
                data: data.join(","),
            }))
        }
        Some("none") | None if o.iter().any(|x| *x == "bind" || *x == "rbind") => {
            let device = opts
                .get("device")
                .filter(|d| d.starts_with('/'))
                .ok_or_else(|| {
                    Error::InvalidArgument(
                        "a bind volume needs an absolute host path as device (-o device=/path)"
                            .into(),
                    )
                })?;
            for x in &o {
                if !matches!(*x, "bind" | "rbind" | "ro" | "rw") {
                    return Err(Error::InvalidArgument(format!(
                        "invalid bind option {x:?} (bind, rbind, ro, rw)"
                    )));
                }
            }
            let device = PathBuf::from(device);
            if !device.is_dir() {
                return Err(Error::InvalidArgument(format!(
                    "failed to mount local volume: mount {}: no such directory",
                    device.display()
                )));
            }
            Ok(Some(LocalMount::Bind {
                device,
                read_only: o.contains(&"ro"),
            }))
        }
        t => Err(Error::InvalidArgument(format!(
            "volume type {:?} is not supported: the local driver here mounts a tmpfs (-o type=tmpfs -o device=tmpfs [-o o=size=64m]) or binds a host directory (-o type=none -o o=bind -o device=/path)",
            t.unwrap_or_default()
        ))),
    }
}

/// True when something is mounted on `p` (`/proc/self/mountinfo` lists it: a bind of a
/// directory of the same filesystem has its parent's device, so that cannot tell).
fn is_mount_point(p: &std::path::Path) -> bool {
    let Ok(p) = fs::canonicalize(p) else {
        return false;
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

/// Mounts `m` on `data` (a no-op when something is mounted there already).
fn mount_local(m: &LocalMount, data: &std::path::Path) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    if is_mount_point(data) {
        return Ok(());
    }
    let err = |e: nix::Error| {
        Error::InvalidArgument(format!(
            "failed to mount local volume on {}: {e}",
            data.display()
        ))
    };
    match m {
        LocalMount::Tmpfs { flags, data: d } => mount(
            Some("tmpfs"),
            data,
            Some("tmpfs"),
            *flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(d.as_str()),
        )
        .map_err(err),
        LocalMount::Bind { device, read_only } => {
            mount(
                Some(device.as_path()),
                data,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(err)?;
            if *read_only {
                mount(
                    None::<&str>,
                    data,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .map_err(err)?;
            }
            Ok(())
        }
    }
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
        self.create_volume_with_options(name, labels, BTreeMap::new())
    }

    /// [`Engine::create_volume`] with the local driver's `-o` (`type=tmpfs`, or
    /// `type=none,o=bind,device=/path`): mounted on the volume's data directory now (and
    /// again at a container's start if the host lost it), unmounted by `volume rm`.
    /// Other types are refused, saying what is supported.
    pub fn create_volume_with_options(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<Volume> {
        let mount = local_mount(&options)?;
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
        if let Some(m) = &mount
            && let Err(e) = mount_local(m, &dir.join("_data"))
        {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        let v = Volume {
            name: name.clone(),
            driver: "local".into(),
            mountpoint: dir.join("_data"),
            created_at: crate::containers::now_rfc3339(),
            labels,
            scope: "local".into(),
            options,
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
                options: BTreeMap::new(),
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

    /// Mounts a volume's `-o` mount again if the host lost it (a reboot): a container's
    /// start calls it before using the volume.
    pub(crate) fn ensure_volume_mounted(&self, name: &str) -> Result<()> {
        let Ok(v) = self.volume(name) else {
            return Ok(());
        };
        match local_mount(&v.options)? {
            Some(m) => mount_local(&m, &v.mountpoint),
            None => Ok(()),
        }
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
        let v = self.volume(name)?;
        let data = self.volume_path(name).join("_data");
        if !v.options.is_empty() {
            // a bound host directory or a tmpfs: unmount it first, and never remove
            // what is still mounted there (a host directory's files)
            let _ = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH);
            if is_mount_point(&data) {
                return Err(Error::Conflict(format!(
                    "remove {name}: its mount on {} is still there",
                    data.display()
                )));
            }
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
