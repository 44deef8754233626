//! Graph drivers: how layers become a container's root filesystem (the seed's 4.2.5.1).
//!
//! [`Driver`] is the one interface; [`vfs::Vfs`] keeps full copies (works anywhere) and
//! [`overlay::Overlay`] stacks layers with kernel overlayfs. [`open`] picks one by name,
//! by the `LONGSHORE_DRIVER` environment variable (the seed's `DOCKER_DRIVER`), or by
//! detecting overlayfs support.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::apply::ApplyReport;
use crate::changes::Change;
use crate::error::{Error, Result};

pub mod overlay;
pub mod vfs;

/// Environment variable naming the driver to use.
pub const DRIVER_ENV: &str = "LONGSHORE_DRIVER";

/// How [`Driver::get_with`] mounts a layer.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct MountOptions {
    /// Never write the layer's changes back to disk, not even when it is unmounted
    /// (overlay's `volatile`): unmounting a layer otherwise syncs the whole filesystem
    /// under it. For a container removed when it exits (`run --rm`), whose files nobody
    /// reads after a crash.
    pub volatile: bool,
}

impl MountOptions {
    /// Sets [`MountOptions::volatile`].
    pub fn volatile(mut self, on: bool) -> Self {
        self.volatile = on;
        self
    }
}

/// A graph driver: stores layers by ID, each optionally on top of a parent.
pub trait Driver: Send + Sync {
    /// The driver's name (`vfs`, `overlay`).
    fn name(&self) -> &'static str;

    /// Where the driver keeps its data.
    fn home(&self) -> &Path;

    /// Creates an empty layer `id` on top of `parent` (whose content it shows).
    fn create(&self, id: &str, parent: Option<&str>) -> Result<()>;

    /// Removes a layer. Refused while it is mounted.
    fn remove(&self, id: &str) -> Result<()>;

    /// Like [`Driver::remove`], but moves the layer's files to `to` (a path that does not
    /// exist yet, on the same filesystem as the driver's home) instead of deleting them:
    /// the layer is gone for every reader at once, and the caller deletes `to` when it
    /// suits it (deleting many files can be slow). Drivers that do not override it
    /// delete at once.
    fn remove_to(&self, id: &str, to: &Path) -> Result<()> {
        let _ = to;
        self.remove(id)
    }

    /// Whether layer `id` exists.
    fn exists(&self, id: &str) -> bool;

    /// Makes the layer's full filesystem available and returns its path (reference counted).
    fn get(&self, id: &str) -> Result<PathBuf>;

    /// [`Driver::get`] with options for the mount that makes it available; drivers
    /// without such options ignore them.
    fn get_with(&self, id: &str, opts: MountOptions) -> Result<PathBuf> {
        let _ = opts;
        self.get(id)
    }

    /// Releases one [`Driver::get`]; the last one unmounts.
    fn put(&self, id: &str) -> Result<()>;

    /// Mounts the layer's full filesystem at `target`, an existing directory, for a caller
    /// that keeps it there beyond this process (a container's root): not counted by
    /// [`Driver::get`] and [`Driver::put`]; the caller unmounts it. Drivers that do not
    /// override it bind what [`Driver::get_with`] gives there and release that.
    fn mount_at(&self, id: &str, target: &Path, opts: MountOptions) -> Result<()> {
        let source = self.get_with(id, opts)?;
        let bound =
            rustix::mount::mount_bind_recursive(&source, target).map_err(|e| Error::Mount {
                op: "bind mount",
                id: id.to_string(),
                source: e.into(),
            });
        let released = self.put(id);
        bound.and(released)
    }

    /// Applies a layer tar (plain, gzip or zstd) to layer `id`, created empty on `parent`.
    fn apply_diff(&self, id: &str, diff: &mut (dyn Read + Send)) -> Result<ApplyReport>;

    /// Like [`Driver::apply_diff`], for a stream whose blob digest the caller verifies
    /// itself ([`ApplyOptions::verified_blob`](crate::ApplyOptions::verified_blob)).
    /// Drivers that do not override it hash the stream anyway.
    fn apply_diff_verified(
        &self,
        id: &str,
        diff: &mut (dyn Read + Send),
        blob: &crate::Digest,
    ) -> Result<ApplyReport> {
        let _ = blob;
        self.apply_diff(id, diff)
    }

    /// The changes of layer `id` against its parent, like `docker diff`.
    fn changes(&self, id: &str) -> Result<Vec<Change>>;

    /// Writes layer `id`'s changes against its parent as an uncompressed layer tar.
    fn diff(&self, id: &str, out: &mut dyn Write) -> Result<()> {
        let changes = self.changes(id)?;
        self.diff_of(id, &changes, out)
    }

    /// Writes `changes` (some of layer `id`'s, from [`Driver::changes`]) as an
    /// uncompressed layer tar.
    fn diff_of(&self, id: &str, changes: &[Change], out: &mut dyn Write) -> Result<()>;

    /// The parent given at creation (or by [`Driver::set_parent`]).
    fn parent(&self, id: &str) -> Result<Option<String>>;

    /// Whether a layer's directory holds only its own diff, so that a layer can be created
    /// with no parent, filled, and given its parent afterwards ([`Driver::set_parent`]):
    /// layers of one image can then be unpacked at the same time. True for overlay; vfs
    /// layers start as a copy of their parent, so they cannot.
    fn independent_layers(&self) -> bool {
        false
    }

    /// Puts layer `id`, created with no parent and never mounted, on top of `parent`.
    fn set_parent(&self, id: &str, parent: Option<&str>) -> Result<()> {
        let _ = parent;
        Err(Error::Unsupported(format!(
            "the {} driver cannot give layer {id} a parent after it was filled",
            self.name()
        )))
    }
}

/// Validates a layer ID: it becomes a directory name.
pub(crate) fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidLayerId(id.to_string()))
    }
}

/// Opens a driver under `home`: by `name`, else `$LONGSHORE_DRIVER`, else overlay if this
/// kernel and filesystem support it, else vfs.
pub fn open(home: &Path, name: Option<&str>) -> Result<Box<dyn Driver>> {
    open_with(home, name, true)
}

/// Like [`open`]; `cleanup` removes half-created layers left by a crash, which only a
/// process that knows nobody else uses the driver's home may do.
pub fn open_with(home: &Path, name: Option<&str>, cleanup: bool) -> Result<Box<dyn Driver>> {
    let env = std::env::var(DRIVER_ENV).ok().filter(|s| !s.is_empty());
    match name.map(str::to_string).or(env).as_deref() {
        Some("vfs") => Ok(Box::new(vfs::Vfs::open_with(home.join("vfs"), cleanup)?)),
        Some("overlay") | Some("overlay2") => Ok(Box::new(overlay::Overlay::open_with(
            home.join("overlay"),
            cleanup,
        )?)),
        Some(other) => Err(Error::DriverUnavailable {
            name: other.to_string(),
            reason: "unknown driver (known: overlay, vfs)".into(),
        }),
        None => match overlay::Overlay::open_with(home.join("overlay"), cleanup) {
            Ok(d) => Ok(Box::new(d)),
            Err(_) => Ok(Box::new(vfs::Vfs::open_with(home.join("vfs"), cleanup)?)),
        },
    }
}
