//! The image store (the seed's *Graph*): layers, images, tags and container layers on top of
//! a [`ContentStore`], a graph [`Driver`] and the SQLite metadata.
//!
//! Layout under the root: `content/` (blobs), `<driver>/` (layer trees), `metadata.db`,
//! `tmp/` (scratch space for load, emptied at open).
//!
//! Image content is unreachable to other users (a set-user-ID file of an image must not be
//! something a local user can run, CVE-2021-41091): the root is mode 0710 and every
//! directory in it 0700, as Docker does. [`Store::open`] sets these modes on every open,
//! so stores created with wider modes are fixed.
//!
//! The store's parts, one file each: `leases`, `layers`, `images`, `containers`, `save_load`
//! (docker-archive and OCI layout) and `check` (check and gc); this file holds the types,
//! opening and the helpers they share.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::apply::{ApplyOptions, WhiteoutMode, apply_layer, remove_tree};
use crate::archive::TarWriter;
use crate::changes::Change;
use crate::content::ContentStore;
use crate::digest::{Algorithm, Digest, chain_id};
use crate::driver::{self, Driver};
use crate::error::{Error, IoContext, Result};
use crate::image;
use crate::meta::{self, Db, ImageRow, LayerRow, MAX_LAYERS};
use crate::reference::Reference;

mod check;
mod containers;
mod images;
mod layers;
mod leases;
mod save_load;

use images::{insert_image, insert_tag};
pub use leases::Lease;
use leases::Leases;

/// Options for [`Store::open`], built with [`StoreOptions::new`] and its setters:
///
/// ```
/// let opts = longshore_graph::StoreOptions::new().driver("vfs");
/// assert_eq!(opts.driver.as_deref(), Some("vfs"));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Graph driver name (`overlay`, `vfs`); `None` uses `$LONGSHORE_DRIVER` or auto-detection.
    pub driver: Option<String>,
}

impl StoreOptions {
    /// The defaults: the driver from `$LONGSHORE_DRIVER` or auto-detection.
    pub fn new() -> StoreOptions {
        StoreOptions::default()
    }

    /// Uses the graph driver `name` (`overlay`, `vfs`).
    pub fn driver(mut self, name: impl Into<String>) -> StoreOptions {
        self.driver = Some(name.into());
        self
    }
}

/// How [`Store::remove_image`] removes (`docker rmi`'s flags). The default neither forces
/// nor keeps untagged parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoveOptions {
    /// Remove an image tagged in several repositories or used by a container (`--force`).
    pub force: bool,
    /// Also delete untagged parents left without children (Docker's default; `--no-prune`
    /// turns it off).
    pub prune: bool,
}

impl Default for RemoveOptions {
    fn default() -> RemoveOptions {
        RemoveOptions {
            force: false,
            prune: true,
        }
    }
}

impl RemoveOptions {
    /// Docker's defaults: no force, prune.
    pub fn new() -> RemoveOptions {
        RemoveOptions::default()
    }

    /// Sets `--force`.
    pub fn force(mut self, force: bool) -> RemoveOptions {
        self.force = force;
        self
    }

    /// Sets whether untagged parents go too (`false` is `--no-prune`).
    pub fn prune(mut self, prune: bool) -> RemoveOptions {
        self.prune = prune;
        self
    }
}

/// An image as listed by [`Store::images`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Image ID (config digest).
    pub id: Digest,
    /// Tags, in Docker's short form (`busybox:latest`).
    pub tags: Vec<String>,
    /// Repository digests (`busybox@sha256:...`), short form: the manifests it was
    /// pulled or pushed as.
    pub repo_digests: Vec<String>,
    /// The image it was committed from.
    pub parent: Option<Digest>,
    /// Sum of its layers' content.
    pub size: u64,
    /// Creation time (RFC 3339).
    pub created: Option<String>,
    /// Diff IDs, base first.
    pub diff_ids: Vec<Digest>,
    /// Chain ID of the top layer.
    pub chain_id: Option<Digest>,
}

/// One line of `docker history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The image ID for the top entry, `None` (`<missing>`) below.
    pub id: Option<Digest>,
    /// Creation time.
    pub created: Option<String>,
    /// The command that made it.
    pub created_by: String,
    /// Bytes of the layer it made (0 for empty layers).
    pub size: u64,
    /// Comment (commit message).
    pub comment: String,
}

/// What [`Store::remove_image`] did, in order, like `docker rmi` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A tag was removed.
    Untagged(String),
    /// An image was deleted.
    Deleted(Digest),
}

/// Options for [`Store::commit`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CommitOptions {
    /// Tag for the new image.
    pub reference: Option<String>,
    /// Author (`docker commit -a`).
    pub author: Option<String>,
    /// Commit message (`docker commit -m`), stored as the history comment.
    pub message: Option<String>,
    /// Recorded as the history's created-by.
    pub created_by: Option<String>,
    /// The new image's `config` (its process: Cmd, Env, ...); `None` keeps the base
    /// image's. Docker's commit gives the container's, with `--change` applied.
    pub config: Option<Value>,
    /// Paths left out of the new layer and of [`Store::container_changes_except`]: the
    /// points a runtime mounts files on (`/etc/hosts`...), with what is under them, and
    /// the directories that hold nothing else that changed (made only to hold them).
    pub exclude: Vec<String>,
}

impl CommitOptions {
    /// No tag, author, message or created-by.
    pub fn new() -> CommitOptions {
        CommitOptions::default()
    }

    /// Tags the new image `reference`.
    pub fn reference(mut self, reference: impl Into<String>) -> CommitOptions {
        self.reference = Some(reference.into());
        self
    }

    /// Records the author (`docker commit -a`).
    pub fn author(mut self, author: impl Into<String>) -> CommitOptions {
        self.author = Some(author.into());
        self
    }

    /// Records the message (`docker commit -m`).
    pub fn message(mut self, message: impl Into<String>) -> CommitOptions {
        self.message = Some(message.into());
        self
    }

    /// Records what made the image (the history's created-by).
    pub fn created_by(mut self, created_by: impl Into<String>) -> CommitOptions {
        self.created_by = Some(created_by.into());
        self
    }

    /// Gives the new image this `config` instead of the base image's.
    pub fn config(mut self, config: Value) -> CommitOptions {
        self.config = Some(config);
        self
    }

    /// Leaves `paths` out of the new layer (see [`CommitOptions::exclude`]).
    pub fn exclude(mut self, paths: impl IntoIterator<Item = impl Into<String>>) -> CommitOptions {
        self.exclude = paths.into_iter().map(Into::into).collect();
        self
    }
}

/// How far [`Store::load_with_progress`] is with one new layer: reported when its file in
/// the archive starts to be read, every 512 KiB, and once it is registered.
#[derive(Debug, Clone, Copy)]
pub struct LoadProgress<'a> {
    /// The layer's diff ID (the digest of its uncompressed tar).
    pub diff_id: &'a Digest,
    /// Bytes of the layer's file read so far.
    pub current: u64,
    /// Size of the layer's file in the archive.
    pub total: u64,
}

/// Archive layout for [`Store::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save`: `manifest.json` + `repositories`, plus the OCI layout Docker 25+ writes.
    Docker,
    /// OCI image layout only (`oci-layout`, `index.json`, `blobs/`).
    Oci,
}

/// Findings of [`Store::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Problems found (and whether they were repaired).
    pub problems: Vec<String>,
    /// Blobs verified.
    pub blobs_checked: usize,
    /// Layers verified.
    pub layers_checked: usize,
    /// Complete layers nothing uses (no image, container, child layer or live [`Lease`]):
    /// not damage, but what a load or pull cut short left; [`Store::gc`] removes them.
    pub unreferenced_layers: Vec<String>,
    /// Layers recorded incomplete: being unpacked or removed now (by this or another
    /// process sharing the store), or left by a crash, which the next open that finds no
    /// other user removes. Not checked further and not damage.
    pub incomplete_layers: Vec<String>,
}

/// Findings of [`Store::gc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs_removed: Vec<Digest>,
    /// Layers removed (cache IDs).
    pub layers_removed: Vec<String>,
}

/// A layer unpacked with no parent yet, waiting for [`Store::attach_layer`].
#[derive(Debug)]
#[must_use = "a staged layer stays incomplete until it is attached or discarded"]
pub struct StagedLayer {
    cache_id: String,
    report: crate::apply::ApplyReport,
    blob: Digest,
}

impl StagedLayer {
    /// The graph driver's ID of the layer.
    pub fn cache_id(&self) -> &str {
        &self.cache_id
    }

    /// The diff ID (sha256 of the uncompressed tar) computed while unpacking.
    pub fn diff_id(&self) -> &Digest {
        &self.report.diff_id
    }

    /// The blob the layer was unpacked from.
    pub fn blob(&self) -> &Digest {
        &self.blob
    }

    /// What unpacking found (sizes, entries, compression).
    pub fn report(&self) -> &crate::apply::ApplyReport {
        &self.report
    }
}

/// The store's directory of removed layers whose files are still to be deleted.
const TRASH: &str = "trash";

/// Deletes what is in `dir`, leaving the directory.
fn empty_dir(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let _ = remove_tree(&e.path());
        }
    }
}

/// Files of removed layers, moved aside, to delete ([`Store::remove_container_deferred`]).
/// [`Purge::run`] or dropping it deletes them.
#[derive(Debug, Default)]
#[must_use = "dropping a Purge deletes its files at once"]
pub struct Purge {
    paths: Vec<PathBuf>,
}

impl Purge {
    /// Deletes the files now.
    pub fn run(mut self) {
        self.purge();
    }

    /// Adds the files of another purge to this one.
    pub fn merge(&mut self, mut other: Purge) {
        self.paths.append(&mut other.paths);
    }

    fn purge(&mut self) {
        for p in self.paths.drain(..) {
            // the next open of the store finishes what fails here
            let _ = remove_tree(&p);
        }
    }
}

impl Drop for Purge {
    fn drop(&mut self) {
        self.purge();
    }
}

/// The image and layer store.
pub struct Store {
    root: PathBuf,
    _lock: fs::File,
    content: ContentStore,
    driver: Box<dyn Driver>,
    db: Mutex<Db>,
    leases: Arc<Mutex<Leases>>,
}

const MT_OCI_MANIFEST: &str = image::OCI_MANIFEST;
const MT_OCI_INDEX: &str = image::OCI_INDEX;
const MT_OCI_CONFIG: &str = image::OCI_CONFIG;
const MT_OCI_LAYER: &str = image::OCI_LAYER;

fn layer_media_type(c: crate::apply::Compression) -> &'static str {
    match c {
        crate::apply::Compression::None => MT_OCI_LAYER,
        crate::apply::Compression::Gzip => image::OCI_LAYER_GZIP,
        crate::apply::Compression::Zstd => image::OCI_LAYER_ZSTD,
    }
}

/// Refuses a layer whose stream did not hash to the blob digest it was read as.
fn blob_matches(report: &crate::apply::ApplyReport, blob: &Digest) -> Result<()> {
    if &report.digest != blob {
        return Err(Error::BlobCorrupt {
            digest: blob.clone(),
            reason: format!("content hashes to {}", report.digest),
        });
    }
    Ok(())
}

fn random_id() -> Result<String> {
    let mut buf = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .ctx("read", "/dev/urandom")?;
    Ok(hex::encode(buf))
}

/// Current time as RFC 3339 UTC with nanoseconds, like Docker writes.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Copies what is read into a content-store writer.
struct Tee<'a, R> {
    inner: R,
    out: &'a mut crate::content::Writer,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// A close-on-exec pipe as (read end, write end).
fn pipe() -> Result<(fs::File, fs::File)> {
    let (r, w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ctx("create pipe", "<pipe>")?;
    Ok((fs::File::from(r), fs::File::from(w)))
}

fn json_err(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Error {
    let what = what.into();
    move |source| Error::Json { what, source }
}

/// A path from an archive's manifest, refused if it could leave the archive directory.
fn archive_path(base: &Path, p: &str) -> Result<PathBuf> {
    let bad = p.starts_with('/') || p.split('/').any(|c| c == "..") || p.contains('\0');
    if bad || p.is_empty() {
        return Err(Error::InvalidLayer(format!(
            "archive names an unsafe path {p:?}"
        )));
    }
    Ok(base.join(p))
}

/// The mode of the store root: root may enter it, its group (the remapped root of user
/// namespaces, when it is given one) may pass through, nobody else.
const ROOT_MODE: u32 = 0o710;
/// The mode of every directory directly under the root: only its owner (root) may enter.
pub(crate) const PRIVATE_MODE: u32 = 0o700;

/// Sets a directory's mode to `mode` (unless it is that already), without following a
/// symlink.
pub(crate) fn private_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let m = fs::symlink_metadata(path).ctx("stat", path)?;
    if !m.is_dir() {
        return Err(Error::io(
            "open store directory",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        ));
    }
    if m.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).ctx("chmod", path)?;
    }
    Ok(())
}

/// Takes the store's lock, shared by every process using the store. Returns whether this
/// process is alone: it then holds the lock exclusively, may remove what crashed processes
/// left incomplete (nobody else's work is in progress), and must call [`share_lock`] after.
/// A process that is not alone waits only while another one cleans up at its open.
fn lock_store(root: &Path) -> Result<(fs::File, bool)> {
    use rustix::fs::FlockOperation;
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .ctx("open store lock", &path)?;
    match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok((f, true)),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            rustix::fs::flock(&f, FlockOperation::LockShared).ctx("lock store", &path)?;
            Ok((f, false))
        }
        Err(e) => Err(Error::io("lock store", &path, e.into())),
    }
}

/// Turns the exclusive lock [`lock_store`] gave a process that was alone into a shared one.
fn share_lock(f: &fs::File, root: &Path) -> Result<()> {
    rustix::fs::flock(f, rustix::fs::FlockOperation::LockShared)
        .ctx("lock store", root.join("lock"))
}

/// A directory under `tmp/` removed on drop with [`remove_tree`], which removes trees of
/// any depth (`std::fs::remove_dir_all` holds a descriptor per level).
struct ScratchDir(tempfile::TempDir);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // what is left is removed at the next open
        let _ = remove_tree(self.0.path());
    }
}

impl Store {
    /// Opens (creating) a store at `root`, removing what a crash left incomplete.
    ///
    /// Several processes (and several `Store`s of one process) may use one root at the same
    /// time: metadata changes are SQLite (WAL) transactions, layers and containers are
    /// recorded incomplete until they are finished, and what crashed processes left
    /// incomplete is removed by the first open that finds no other user of the store (a
    /// shared `flock` on `lock` marks the users), so no open removes work in progress.
    /// [`Lease`]s protect only from the `gc` of their own process.
    pub fn open(root: impl Into<PathBuf>, opts: StoreOptions) -> Result<Store> {
        let root = root.into();
        fs::create_dir_all(&root).ctx("create store directory", &root)?;
        private_dir(&root, ROOT_MODE)?;
        let (lock, alone) = lock_store(&root)?;
        let tmp = root.join("tmp");
        let trash = root.join(TRASH);
        if alone {
            // scratch space only: what cannot be removed now does no harm (retried later).
            // Only what is in them goes: removing a directory costs a discard (~4 ms) on
            // a disk mounted with `discard`, on the path of every command
            empty_dir(&tmp);
            empty_dir(&trash);
        }
        fs::create_dir_all(&tmp).ctx("create directory", &tmp)?;
        fs::create_dir_all(&trash).ctx("create directory", &trash)?;
        let content = ContentStore::open(root.join("content"))?;
        let driver = driver::open_with(&root, opts.driver.as_deref(), alone)?;
        // every directory in the root, also those of drivers not in use and of older stores
        for e in fs::read_dir(&root).ctx("read directory", &root)? {
            let e = e.ctx("read directory", &root)?;
            if e.file_type().ctx("stat", e.path())?.is_dir() {
                private_dir(&e.path(), PRIVATE_MODE)?;
            }
        }
        let db = Db::open(&root.join("metadata.db"))?;
        let store = Store {
            root,
            _lock: lock,
            content,
            driver,
            db: Mutex::new(db),
            leases: Arc::default(),
        };
        if alone {
            store.cleanup_incomplete()?;
            share_lock(&store._lock, &store.root)?;
        }
        Ok(store)
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        // a panic while holding the lock leaves the connection usable (transactions roll back)
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes what a crash or a failed removal left incomplete. A layer whose directory
    /// cannot be removed now stays incomplete (invisible) for the next open to retry: the
    /// store opens anyway.
    fn cleanup_incomplete(&self) -> Result<()> {
        let containers = self.db().incomplete_containers()?;
        for (id, cache) in containers {
            if self.driver.exists(&cache) && self.driver.remove(&cache).is_err() {
                continue;
            }
            self.drop_container_row(&id)?;
        }
        let layers = self.db().incomplete_layers()?;
        for l in layers {
            if self.driver.exists(&l.cache_id) && self.driver.remove(&l.cache_id).is_err() {
                continue;
            }
            self.db().tx(|tx| {
                tx.execute("DELETE FROM layers WHERE cache_id = ?1", [&l.cache_id])
                    .map(|_| ())
            })?;
            let _ = self.content.abort(&format!("layer-{}", l.cache_id));
        }
        Ok(())
    }

    /// A path in the trash for the files of layer `cache`, unique in this store.
    fn trash_path(&self, cache: &str) -> PathBuf {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.root
            .join(TRASH)
            .join(format!("{cache}.{}.{n}", std::process::id()))
    }

    /// Empties the metadata database's write-ahead log when it has grown past
    /// `min_bytes`, folding it into the database; returns whether it did. The first
    /// process to open the store after every other one closed it reads the whole log
    /// (SQLite rebuilds its index from it): ~1.3 ms for 600 frames (2.4 MB) here, on the
    /// path of every command run alone. For moments off anyone's path (a container's
    /// monitor once its `--rm` container is gone); it does not wait for other processes
    /// (busy: nothing done) and costs two `fsync`s when it runs.
    pub fn compact_log(&self, min_bytes: u64) -> Result<bool> {
        let wal = self.root.join("metadata.db-wal");
        if fs::metadata(&wal).map_or(0, |m| m.len()) < min_bytes.max(1) {
            return Ok(false);
        }
        self.db().truncate_log()
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The content store.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The graph driver.
    pub fn driver(&self) -> &dyn Driver {
        self.driver.as_ref()
    }
}
