//! `cp`: tar streams out of and into a container's filesystem. Every path inside the
//! container is resolved inside its root (`openat2` with `RESOLVE_IN_ROOT`), so a symlink
//! in the container can never lead the copy to a host file; a running container is frozen
//! for the copy, so it cannot swap a path component for a symlink while the copy runs
//! (the race of CVE-2018-15664); extraction goes through libgraph's layer apply, which
//! resolves every entry inside the destination.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::Container;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Resolves `path` inside `root`; returns the host path it names (inside `root`).
pub(super) fn resolve_in_root(root: &Path, path: &str, name: &str) -> Result<PathBuf> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("open the root of {name}"))(e.into()))?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let fd = rustix::fs::openat2(
        &dir,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    )
    .map_err(|e| match e {
        rustix::io::Errno::NOENT => Error::NotFoundPath(format!("Could not find the file {path} in container {name}")),
        rustix::io::Errno::XDEV => Error::InvalidArgument(format!(
            "{path} in container {name} is on a volume or another mount: cp reaches the container's own filesystem only"
        )),
        e => Error::io(format!("resolve {path} in container {name}"))(e.into()),
    })?;
    let real = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .map_err(Error::io("read the resolved path"))?;
    if !real.starts_with(root) {
        return Err(Error::InvalidArgument(format!(
            "{path} resolves outside the container {name}"
        )));
    }
    Ok(real)
}

/// Freezes a running container for the lifetime of the guard.
struct Frozen(Option<longshore_container::Container>);

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            let _ = c.resume();
        }
    }
}

impl Engine {
    /// The container's root filesystem, mounted (its own mount while it runs, the store's
    /// otherwise), and a guard that freezes it if it runs.
    fn copy_root(&self, c: &Container) -> Result<(PathBuf, Frozen, bool)> {
        match c.live_status() {
            "running" => {
                let rc = longshore_container::Container::load(self.runtime_root(), &c.record.id)
                    .map_err(Error::runtime(format!("load container {}", c.record.name)))?;
                rc.pause().map_err(Error::runtime(format!(
                    "freeze container {}",
                    c.record.name
                )))?;
                return Ok((c.dir.join("rootfs"), Frozen(Some(rc)), false));
            }
            "paused" => return Ok((c.dir.join("rootfs"), Frozen(None), false)),
            _ => {}
        }
        let root = self
            .store()?
            .mount_container(&c.record.id)
            .map_err(crate::error::graph(format!(
                "mount container {}",
                c.record.name
            )))?;
        Ok((root, Frozen(None), true))
    }

    /// `docker cp CONTAINER:PATH -`: writes a tar of `path` (named by its last component)
    /// to `out`.
    pub fn copy_from_container(&self, name_or_id: &str, path: &str, out: impl Write) -> Result<()> {
        let c = self.container(name_or_id)?;
        let (root, _frozen, mounted) = self.copy_root(&c)?;
        let res = (|| {
            let real = resolve_in_root(&root, path, &c.record.name)?;
            let base = Path::new(path.trim_end_matches("/."))
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            let mut b = tar::Builder::new(out);
            b.follow_symlinks(false);
            let md = std::fs::symlink_metadata(&real).map_err(Error::io(format!("stat {path}")))?;
            let r = if md.is_dir() {
                if path.ends_with("/.") {
                    b.append_dir_all(".", &real)
                } else {
                    b.append_dir_all(&base, &real)
                }
            } else {
                b.append_path_with_name(&real, &base)
            };
            r.and_then(|()| b.finish())
                .map_err(Error::io(format!("archive {path}")))
        })();
        if mounted {
            let _ = self.store()?.unmount_container(&c.record.id);
        }
        res
    }

    /// `docker cp - CONTAINER:DIR`: extracts a tar into directory `dest` of the container.
    pub fn copy_to_container(
        &self,
        name_or_id: &str,
        dest: &str,
        tar: impl Read + Send,
    ) -> Result<()> {
        let c = self.container(name_or_id)?;
        let (root, _frozen, mounted) = self.copy_root(&c)?;
        let res = (|| {
            let real = resolve_in_root(&root, dest, &c.record.name)?;
            if !real.is_dir() {
                return Err(Error::InvalidArgument(format!(
                    "extraction point is not a directory: {dest} in container {}",
                    c.record.name
                )));
            }
            longshore_graph::apply_layer(tar, &real, &longshore_graph::ApplyOptions::default())
                .map_err(|e| {
                    Error::InvalidArgument(format!("copy into {dest} of {}: {e}", c.record.name))
                })?;
            Ok(())
        })();
        if mounted {
            let _ = self.store()?.unmount_container(&c.record.id);
        }
        res
    }
}
