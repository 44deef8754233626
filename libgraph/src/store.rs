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

/// The image and layer store.
pub struct Store {
    root: PathBuf,
    _lock: fs::File,
    content: ContentStore,
    driver: Box<dyn Driver>,
    db: Mutex<Db>,
    leases: Arc<Mutex<Leases>>,
}

/// What live [`Lease`]s protect from [`Store::gc`].
#[derive(Default)]
struct Leases {
    next: u64,
    live: HashMap<u64, Leased>,
}

struct Leased {
    since: std::time::SystemTime,
    blobs: HashSet<Digest>,
    chains: HashSet<Digest>,
}

/// Protects what an operation in progress (a pull, a build) will reference but nothing
/// references yet from [`Store::gc`]: the blobs and layer chains added to it, and every blob
/// committed since the lease was taken. Dropping it ends the protection.
pub struct Lease {
    id: u64,
    leases: Arc<Mutex<Leases>>,
}

impl Lease {
    fn with<T>(&self, f: impl FnOnce(&mut Leased) -> T) -> Option<T> {
        let mut l = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        l.live.get_mut(&self.id).map(f)
    }

    /// Protects a blob (for example one a pull found already present and will use). Once
    /// this returns, a `gc` running at the same time has either not removed it or has
    /// finished removing it.
    pub fn add_blob(&self, digest: &Digest) {
        self.with(|l| l.blobs.insert(digest.clone()));
    }

    /// Protects the complete layer with this chain ID (and so its parents) even while no
    /// image references it yet.
    pub fn add_chain(&self, chain: &Digest) {
        self.with(|l| l.chains.insert(chain.clone()));
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut l = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        l.live.remove(&self.id);
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).finish()
    }
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

/// Opens a regular file of an unpacked archive, refusing symlinks and anything outside it.
///
/// The entry is first opened `O_PATH` (which opens nothing: no FIFO blocks, no device
/// driver runs) and its type checked; only a regular file is then opened for reading, with
/// `O_NONBLOCK`, and checked to be the same inode.
fn open_in_archive(base: &Path, path: &Path) -> Result<fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let rel = path.strip_prefix(base).unwrap_or(path);
    let shown = rel.display().to_string();
    let dir = rustix::fs::open(
        base,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open archive directory", base)?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let open = |flags: OFlags| {
        rustix::fs::openat2(
            &dir,
            rel,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => Error::InvalidLayer(format!(
                "archive entry {shown:?} is a symlink or leads outside the archive"
            )),
            rustix::io::Errno::NOENT => {
                Error::InvalidLayer(format!("archive has no entry {shown:?}"))
            }
            e => Error::io("open archive entry", path, e.into()),
        })
    };
    let handle = open(OFlags::PATH)?;
    let st = rustix::fs::fstat(&handle).ctx("stat archive entry", path)?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if kind == rustix::fs::FileType::Symlink {
        // O_PATH | O_NOFOLLOW opens a final symlink itself
        return Err(Error::InvalidLayer(format!(
            "archive entry {shown:?} is a symlink or leads outside the archive"
        )));
    }
    if kind != rustix::fs::FileType::RegularFile {
        return Err(Error::InvalidLayer(format!(
            "archive entry {shown:?} is not a regular file (it is a {})",
            match kind {
                rustix::fs::FileType::Fifo => "FIFO",
                rustix::fs::FileType::CharacterDevice => "character device",
                rustix::fs::FileType::BlockDevice => "block device",
                rustix::fs::FileType::Directory => "directory",
                rustix::fs::FileType::Socket => "socket",
                _ => "special file",
            }
        )));
    }
    let f = fs::File::from(open(OFlags::RDONLY | OFlags::NONBLOCK)?);
    let now = rustix::fs::fstat(&f).ctx("stat archive entry", path)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Err(Error::InvalidLayer(format!(
            "archive entry {shown:?} was replaced while it was being read"
        )));
    }
    Ok(f)
}

/// The most bytes a manifest, an image index or a `manifest.json` in an archive may have
/// (libregistry's limit for manifests).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// The most bytes an image config in an archive may have (libregistry's limit).
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// Reads a JSON file of an unpacked archive, refusing one over `limit` bytes before
/// reading it (`what` names it in the error).
fn read_in_archive(base: &Path, path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let f = open_in_archive(base, path)?;
    let size = f.metadata().ctx("stat archive entry", path)?.len();
    if size > limit {
        return Err(Error::InvalidLayer(format!(
            "{what} {:?} is {size} bytes, over the {} MiB limit",
            path.strip_prefix(base).unwrap_or(path),
            limit >> 20
        )));
    }
    let mut data = Vec::with_capacity(size as usize);
    f.take(limit)
        .read_to_end(&mut data)
        .ctx("read archive entry", path)?;
    Ok(data)
}

/// An image whose config is stored and checked, ready for [`insert_image`].
struct NewImage {
    id: Digest,
    top: Option<String>,
    size: u64,
    created: Option<String>,
}

/// Records an image (unless it exists) and its reference on its top layer.
fn insert_image(
    tx: &rusqlite::Transaction<'_>,
    img: &NewImage,
    parent_image: Option<&Digest>,
) -> rusqlite::Result<()> {
    let n = tx.execute(
        "INSERT OR IGNORE INTO images(id, top_cache, parent_image, size, created)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            img.id.to_string(),
            img.top,
            parent_image.map(|p| p.to_string()),
            img.size as i64,
            img.created
        ],
    )?;
    if n == 1
        && let Some(t) = &img.top
    {
        tx.execute(
            "UPDATE layers SET refcount = refcount + 1 WHERE cache_id = ?1",
            [t],
        )?;
    }
    Ok(())
}

/// Points tag `r` at image `id`.
fn insert_tag(tx: &rusqlite::Transaction<'_>, r: &Reference, id: &Digest) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO tags(reference, repo, image_id) VALUES (?1, ?2, ?3)
         ON CONFLICT(reference) DO UPDATE SET image_id = excluded.image_id",
        rusqlite::params![r.to_string(), r.name(), id.to_string()],
    )
    .map(|_| ())
}

/// One image of an archive, validated and ready to load: nothing in the store has changed.
struct LoadPlan {
    config: Vec<u8>,
    diff_ids: Vec<Digest>,
    /// The layer files in the archive, base first, with the blob digest an OCI manifest
    /// gives each.
    layers: Vec<(PathBuf, Option<Digest>)>,
    tags: Vec<Reference>,
}

/// How many manifests (nested indexes included) an OCI layout may name.
const MAX_OCI_MANIFESTS: usize = 1000;

/// A tag to set on a loaded image: a valid reference without a digest.
fn load_tag(t: &str, source: &str) -> Result<Reference> {
    let r = Reference::parse_with_default_tag(t)?;
    if r.digest().is_some() {
        return Err(Error::InvalidReference {
            reference: t.to_string(),
            reason: format!("{source} names a digest, which cannot be a tag"),
        });
    }
    Ok(r)
}

/// Validates one image of an archive: its config, the layer count (before any layer file
/// is opened) and the layer files' types.
fn plan_image(
    base: &Path,
    config: Vec<u8>,
    layers: Vec<(PathBuf, Option<Digest>)>,
    tags: Vec<Reference>,
) -> Result<LoadPlan> {
    oci_spec::image::ImageConfiguration::from_reader(&config[..])
        .map_err(|e| Error::InvalidLayer(format!("image config is not a valid OCI config: {e}")))?;
    let v: Value = serde_json::from_slice(&config).map_err(json_err("image config"))?;
    let diff_ids: Vec<Digest> = v["rootfs"]["diff_ids"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| Digest::parse(d.as_str().unwrap_or("")))
        .collect::<Result<_, _>>()?;
    if diff_ids.len() > MAX_LAYERS || layers.len() > MAX_LAYERS {
        return Err(Error::TooManyLayers {
            count: diff_ids.len().max(layers.len()),
            max: MAX_LAYERS,
        });
    }
    if diff_ids.len() != layers.len() {
        return Err(Error::InvalidLayer(format!(
            "image config lists {} layers but the archive has {}",
            diff_ids.len(),
            layers.len()
        )));
    }
    for (p, _) in &layers {
        // the type check (and close): each is opened again, one at a time, when loaded
        open_in_archive(base, p)?;
    }
    Ok(LoadPlan {
        config,
        diff_ids,
        layers,
        tags,
    })
}

/// The images of a docker archive (`manifest.json`), validated.
fn plan_docker_archive(base: &Path) -> Result<Vec<LoadPlan>> {
    let bytes = read_in_archive(
        base,
        &base.join("manifest.json"),
        MAX_MANIFEST_SIZE,
        "manifest",
    )?;
    let m: Value = serde_json::from_slice(&bytes).map_err(json_err("manifest.json"))?;
    let Some(entries) = m.as_array() else {
        return Err(Error::InvalidLayer(format!(
            "manifest.json is not a list of images but a JSON {}",
            json_kind(&m)
        )));
    };
    if entries.is_empty() {
        return Err(Error::InvalidLayer("manifest.json lists no image".into()));
    }
    let strings = |v: &Value, what: &str, i: usize| -> Result<Vec<String>> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str().map(str::to_string).ok_or_else(|| {
                        Error::InvalidLayer(format!(
                            "manifest.json image {}: {what} holds a JSON {}, not a string",
                            i + 1,
                            json_kind(x)
                        ))
                    })
                })
                .collect(),
            other => Err(Error::InvalidLayer(format!(
                "manifest.json image {}: {what} is a JSON {}, not a list",
                i + 1,
                json_kind(other)
            ))),
        }
    };
    let mut plans = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if !entry.is_object() {
            return Err(Error::InvalidLayer(format!(
                "manifest.json image {} is a JSON {}, not an object",
                i + 1,
                json_kind(entry)
            )));
        }
        let cfg = entry["Config"].as_str().ok_or_else(|| {
            Error::InvalidLayer(format!("manifest.json image {} has no Config", i + 1))
        })?;
        let config = read_in_archive(
            base,
            &archive_path(base, cfg)?,
            MAX_CONFIG_SIZE,
            "image config",
        )?;
        let layers = strings(&entry["Layers"], "Layers", i)?;
        // counted before anything else is done with them
        if layers.len() > MAX_LAYERS {
            return Err(Error::TooManyLayers {
                count: layers.len(),
                max: MAX_LAYERS,
            });
        }
        let layers = layers
            .iter()
            .map(|p| Ok((archive_path(base, p)?, None)))
            .collect::<Result<_>>()?;
        let tags = strings(&entry["RepoTags"], "RepoTags", i)?
            .iter()
            .map(|t| load_tag(t, "RepoTags"))
            .collect::<Result<_>>()?;
        plans.push(plan_image(base, config, layers, tags)?);
    }
    Ok(plans)
}

/// The images of an OCI layout (`index.json`, nested indexes for this platform), validated.
fn plan_oci_layout(base: &Path) -> Result<Vec<LoadPlan>> {
    let blob = |d: &Digest| base.join("blobs").join(d.algorithm().name()).join(d.hex());
    let read_verified = |d: &Digest, limit: u64, what: &str| -> Result<Vec<u8>> {
        let data = read_in_archive(base, &blob(d), limit, what)?;
        let mut h = d.algorithm().hasher();
        h.update(&data);
        let got = h.finish();
        if &got != d {
            return Err(Error::BlobCorrupt {
                digest: d.clone(),
                reason: format!("archive content hashes to {got}"),
            });
        }
        Ok(data)
    };
    let index_bytes = read_in_archive(
        base,
        &base.join("index.json"),
        MAX_MANIFEST_SIZE,
        "image index",
    )?;
    let image::Parsed::Index {
        manifests: mut todo,
    } = image::parse(&index_bytes)?
    else {
        return Err(Error::InvalidLayer(
            "index.json is not an image index".into(),
        ));
    };
    let mut plans = Vec::new();
    let mut seen = HashSet::new();
    let mut next = 0;
    while next < todo.len() {
        let desc = todo[next].clone();
        next += 1;
        if !seen.insert(desc.digest.clone()) {
            continue; // an index naming itself (or a manifest twice)
        }
        if seen.len() > MAX_OCI_MANIFESTS {
            return Err(Error::InvalidLayer(format!(
                "index.json names more than {MAX_OCI_MANIFESTS} manifests"
            )));
        }
        let data = read_verified(&desc.digest, MAX_MANIFEST_SIZE, "manifest")?;
        match image::parse(&data)? {
            image::Parsed::Index { manifests } => {
                // a nested index: take the entry for this platform, keeping the name
                if let Some(d) = image::pick_platform(&manifests, "linux", arch()) {
                    let mut d = d.clone();
                    if d.annotations.is_empty() {
                        d.annotations = desc.annotations.clone();
                    }
                    todo.push(d);
                }
            }
            image::Parsed::Manifest { config, layers } => {
                let config = read_verified(&config.digest, MAX_CONFIG_SIZE, "image config")?;
                if layers.len() > MAX_LAYERS {
                    return Err(Error::TooManyLayers {
                        count: layers.len(),
                        max: MAX_LAYERS,
                    });
                }
                let layers = layers
                    .iter()
                    .map(|l| (blob(&l.digest), Some(l.digest.clone())))
                    .collect();
                let ann = |k: &str| {
                    desc.annotations
                        .iter()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v.as_str())
                };
                // a full name (a bare `ref.name` such as "latest" names no repository)
                let name = ann("io.containerd.image.name")
                    .or(ann("org.opencontainers.image.ref.name")
                        .filter(|n| Reference::parse(n).is_ok() && n.contains([':', '/'])));
                let mut tags = Vec::new();
                if let Some(n) = name {
                    let r = Reference::parse_with_default_tag(n)?;
                    // named by digest only: loaded untagged
                    if r.digest().is_none() {
                        tags.push(load_tag(n, "the image name annotation")?);
                    }
                }
                plans.push(plan_image(base, config, layers, tags)?);
            }
        }
    }
    Ok(plans)
}

/// "object", "string"...: what a JSON value is, for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
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
        if alone {
            // scratch space only: what cannot be removed now does no harm (retried later)
            let _ = remove_tree(&tmp);
        }
        fs::create_dir_all(&tmp).ctx("create directory", &tmp)?;
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
        let containers = self.db().containers()?;
        for (id, cache, incomplete) in containers {
            if incomplete {
                if self.driver.exists(&cache) && self.driver.remove(&cache).is_err() {
                    continue;
                }
                self.drop_container_row(&id)?;
            }
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

    /// The metadata of a layer.
    pub fn layer(&self, cache_id: &str) -> Result<Option<LayerRow>> {
        self.db().layer(cache_id)
    }

    /// The complete layer with this chain ID.
    pub fn layer_by_chain(&self, chain: &Digest) -> Result<Option<LayerRow>> {
        self.db().layer_by_chain(chain)
    }

    /// Registers a layer (plain, gzip or zstd tar) on top of `parent` (a cache ID), keeping
    /// the stream as a blob. If the same chain exists already, that layer is returned.
    ///
    /// The new layer holds no reference: an image or container must take one, or
    /// [`Store::gc`] will remove it.
    pub fn register_layer(
        &self,
        parent: Option<&str>,
        reader: impl Read + Send,
    ) -> Result<LayerRow> {
        self.build_layer(parent, |cache_id| {
            let mut w = self
                .content
                .writer(&format!("layer-{cache_id}"), Algorithm::Sha256)?;
            w.truncate()?;
            let report = {
                let mut tee = Tee {
                    inner: reader,
                    out: &mut w,
                };
                self.driver.apply_diff(cache_id, &mut tee)?
            };
            let blob = w.commit(Some(report.compressed_size), Some(&report.digest))?;
            Ok((report, blob))
        })
    }

    /// Registers a layer from a blob already in the content store (after a pull), checking
    /// that the blob still hashes to its digest. No second copy of the blob is written.
    pub fn register_layer_blob(&self, parent: Option<&str>, blob: &Digest) -> Result<LayerRow> {
        let mut file = self.content.open_blob(blob)?;
        self.build_layer(parent, |cache_id| {
            let report = self.driver.apply_diff(cache_id, &mut file)?;
            blob_matches(&report, blob)?;
            Ok((report, blob.clone()))
        })
    }

    /// The steps every new layer shares: check the parent and the layer limit, record the
    /// layer as incomplete, create its directory, fill it with `fill` (which returns the
    /// apply report and the blob digest), then finish it, or discard it on any error.
    fn build_layer(
        &self,
        parent: Option<&str>,
        fill: impl FnOnce(&str) -> Result<(crate::apply::ApplyReport, Digest)>,
    ) -> Result<LayerRow> {
        let (parent_row, depth) = self.parent_and_depth(parent)?;
        let (cache_id, (report, blob)) = self.new_layer(parent, depth, fill)?;
        self.finish_layer(&cache_id, parent_row.as_ref(), &report, &blob, None)
    }

    /// Records a new layer as incomplete, creates its directory on `parent` and fills it
    /// with `fill`; on any error the layer is discarded. Returns its cache ID.
    fn new_layer<T>(
        &self,
        parent: Option<&str>,
        depth: usize,
        fill: impl FnOnce(&str) -> Result<T>,
    ) -> Result<(String, T)> {
        let cache_id = random_id()?;
        self.db()
            .tx(|tx| meta::insert_incomplete_layer(tx, &cache_id, parent, depth))?;
        match self
            .driver
            .create(&cache_id, parent)
            .and_then(|()| fill(&cache_id))
        {
            Ok(v) => Ok((cache_id, v)),
            Err(e) => {
                self.discard_layer(&cache_id);
                Err(e)
            }
        }
    }

    /// The complete layer `parent` (if any) and the depth of a layer on top of it, refused
    /// over the layer limit.
    fn parent_and_depth(&self, parent: Option<&str>) -> Result<(Option<LayerRow>, usize)> {
        let parent_row = match parent {
            Some(p) => Some(
                self.db()
                    .layer(p)?
                    .filter(|l| !l.incomplete)
                    .ok_or_else(|| Error::LayerNotFound(p.to_string()))?,
            ),
            None => None,
        };
        let depth = parent_row.as_ref().map_or(0, |p| p.depth) + 1;
        if depth > MAX_LAYERS {
            return Err(Error::TooManyLayers {
                count: depth,
                max: MAX_LAYERS,
            });
        }
        Ok((parent_row, depth))
    }

    /// Takes a [`Lease`]: until it is dropped, `gc` keeps what it protects.
    pub fn lease(&self) -> Lease {
        let mut l = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        l.next += 1;
        let id = l.next;
        l.live.insert(
            id,
            Leased {
                // a little slack for filesystem timestamp granularity
                since: std::time::SystemTime::now() - std::time::Duration::from_secs(1),
                blobs: HashSet::new(),
                chains: HashSet::new(),
            },
        );
        Lease {
            id,
            leases: Arc::clone(&self.leases),
        }
    }

    /// Whether the driver lets layers be unpacked before their parents are
    /// ([`Store::stage_layer_blob`]): overlay does, vfs does not.
    pub fn supports_staging(&self) -> bool {
        self.driver.independent_layers()
    }

    /// Unpacks a layer blob from the content store into a new layer with no parent yet, so
    /// that the layers of one image can be unpacked at the same time, each on its own
    /// thread; [`Store::attach_layer`] then puts them in order. The blob is checked against
    /// its digest on the way. The layer stays incomplete (invisible, removed at the next
    /// open after a crash) until it is attached; the caller attaches or
    /// [discards](Store::discard_staged) every staged layer.
    pub fn stage_layer_blob(&self, blob: &Digest) -> Result<StagedLayer> {
        let file = self.content.open_blob(blob)?;
        self.stage_layer_stream(blob, file)
    }

    /// Like [`Store::stage_layer_blob`], reading the blob from a stream while it arrives
    /// (a download being written to the content store at the same time). The stream must
    /// hash to `blob`, or the layer is discarded; the blob itself is not stored by this
    /// call and must be in the content store before the layer is attached.
    pub fn stage_layer_stream(
        &self,
        blob: &Digest,
        reader: impl Read + Send,
    ) -> Result<StagedLayer> {
        self.stage(blob, reader, false)
    }

    /// Like [`Store::stage_layer_stream`] for a download whose bytes the caller hashes
    /// itself (libregistry verifies every blob): the compressed stream is not hashed a
    /// second time. The caller must [discard](Store::discard_staged) the layer if its own
    /// digest check fails, and attach it only once the blob is committed.
    pub fn stage_layer_download(
        &self,
        blob: &Digest,
        reader: impl Read + Send,
    ) -> Result<StagedLayer> {
        self.stage(blob, reader, true)
    }

    fn stage(
        &self,
        blob: &Digest,
        mut reader: impl Read + Send,
        caller_verifies: bool,
    ) -> Result<StagedLayer> {
        if !self.supports_staging() {
            return Err(Error::Unsupported(format!(
                "the {} driver cannot unpack a layer before its parent; use register_layer_blob",
                self.driver.name()
            )));
        }
        let (cache_id, report) = self.new_layer(None, 1, |cache_id| {
            let report = if caller_verifies {
                self.driver
                    .apply_diff_verified(cache_id, &mut reader, blob)?
            } else {
                self.driver.apply_diff(cache_id, &mut reader)?
            };
            blob_matches(&report, blob)?;
            Ok(report)
        })?;
        Ok(StagedLayer {
            cache_id,
            report,
            blob: blob.clone(),
        })
    }

    /// Puts a staged layer on top of `parent` (a complete layer, or `None` for a base
    /// layer) and completes it. If a layer with the same chain ID exists already, the
    /// staged one is discarded and the existing one returned. On error the staged layer
    /// is discarded.
    pub fn attach_layer(&self, staged: StagedLayer, parent: Option<&str>) -> Result<LayerRow> {
        let id = staged.cache_id.clone();
        let attached = self
            .parent_and_depth(parent)
            .and_then(|(parent_row, depth)| {
                self.driver.set_parent(&id, parent)?;
                self.finish_layer(
                    &id,
                    parent_row.as_ref(),
                    &staged.report,
                    &staged.blob,
                    Some((parent, depth)),
                )
            });
        if attached.is_err() {
            self.discard_layer(&id);
        }
        attached
    }

    /// Removes a staged layer that will not be attached.
    pub fn discard_staged(&self, staged: StagedLayer) {
        self.discard_layer(&staged.cache_id);
    }

    /// Completes layer `cache_id` (chain ID, diff ID, sizes, blob) in one transaction,
    /// first giving it `reparent` (parent, depth) when it was staged. If its chain exists
    /// already, it is discarded and the existing layer returned.
    fn finish_layer(
        &self,
        cache_id: &str,
        parent_row: Option<&LayerRow>,
        report: &crate::apply::ApplyReport,
        blob: &Digest,
        reparent: Option<(Option<&str>, usize)>,
    ) -> Result<LayerRow> {
        let chain = match parent_row.and_then(|p| p.chain_id.clone()) {
            Some(pc) => chain_id(&[pc, report.diff_id.clone()]).unwrap_or(report.diff_id.clone()),
            None => report.diff_id.clone(),
        };
        let existing = self.db().layer_by_chain(&chain)?;
        if let Some(existing) = existing {
            self.discard_layer(cache_id);
            return Ok(existing);
        }
        let media = layer_media_type(report.compression);
        let completed = self.db().tx(|tx| {
            if let Some((parent, depth)) = reparent {
                meta::set_layer_parent(tx, cache_id, parent, depth)?;
            }
            meta::complete_layer(
                tx,
                cache_id,
                &meta::Completed {
                    chain_id: &chain,
                    diff_id: &report.diff_id,
                    size: report.content_size,
                    tar_size: report.tar_size,
                    blob: Some((blob, report.compressed_size, media)),
                },
            )
        });
        let conflict = matches!(&completed, Err(Error::Database {
            source: rusqlite::Error::SqliteFailure(e, _),
            ..
        }) if e.code == rusqlite::ErrorCode::ConstraintViolation);
        if conflict {
            // bound first: a `self.db()` temporary in the `if let` would keep the database
            // locked through the block, and discard_layer locks it again (a deadlock)
            let existing = self.db().layer_by_chain(&chain)?;
            if let Some(existing) = existing {
                // another process completed the same chain since the check above
                self.discard_layer(cache_id);
                return Ok(existing);
            }
        }
        completed?;
        self.db()
            .layer(cache_id)?
            .ok_or_else(|| Error::LayerNotFound(cache_id.to_string()))
    }

    /// Best-effort removal of a layer that never completed (open() retries what fails here).
    fn discard_layer(&self, cache_id: &str) {
        if self.driver.exists(cache_id) && self.driver.remove(cache_id).is_err() {
            return;
        }
        let _ = self.content.abort(&format!("layer-{cache_id}"));
        let _ = self.db().tx(|tx| {
            tx.execute("DELETE FROM layers WHERE cache_id = ?1", [cache_id])
                .map(|_| ())
        });
    }

    /// Layers of a chain, base first.
    fn chain_of(&self, top: Option<&str>) -> Result<Vec<LayerRow>> {
        let db = self.db();
        let mut out = Vec::new();
        let mut cur = top.map(str::to_string);
        while let Some(c) = cur {
            let l = db
                .layer(&c)?
                .ok_or_else(|| Error::LayerNotFound(c.clone()))?;
            cur = l.parent_cache.clone();
            out.push(l);
        }
        out.reverse();
        Ok(out)
    }

    /// Drops layers from `top` down while nothing (no image, container, child or lease)
    /// references them.
    fn release_chain(&self, top: Option<String>) -> Result<Vec<String>> {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        self.release_chain_with(top, &leases)
    }

    fn release_chain_with(&self, top: Option<String>, leases: &Leases) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let mut cur = top;
        while let Some(c) = cur {
            let Some(row) = self.db().layer(&c)? else {
                break;
            };
            if !self.release_layer(&row, leases)? {
                break;
            }
            removed.push(c);
            cur = row.parent_cache;
        }
        Ok(removed)
    }

    /// Removes one layer (its directory, row and blob unless another layer or a lease uses
    /// it) if nothing references it: no image, container, child or lease. Returns whether it
    /// was removed.
    fn release_layer(&self, row: &LayerRow, leases: &Leases) -> Result<bool> {
        let c = &row.cache_id;
        let children = self.db().children(c)?;
        let leased = row
            .chain_id
            .as_ref()
            .is_some_and(|ch| leases.live.values().any(|l| l.chains.contains(ch)));
        if row.refcount > 0 || children > 0 || leased {
            return Ok(false);
        }
        // mark first: a crash from here on is cleaned at the next open
        self.db().tx(|tx| {
            tx.execute("UPDATE layers SET incomplete = 1 WHERE cache_id = ?1", [c])
                .map(|_| ())
        })?;
        if self.driver.exists(c) {
            self.driver.remove(c)?;
        }
        self.db().tx(|tx| {
            tx.execute("DELETE FROM layers WHERE cache_id = ?1", [c])
                .map(|_| ())
        })?;
        if let Some(b) = &row.blob_digest {
            let still_used = self
                .db()
                .layers()?
                .iter()
                .any(|l| l.blob_digest.as_ref() == Some(b))
                || leases.live.values().any(|l| l.blobs.contains(b));
            if !still_used {
                self.content.delete(b)?;
            }
        }
        Ok(true)
    }

    /// Stores a config and records an image whose top layer is `top` (taking a reference).
    /// Returns the image ID. An existing image is returned as is.
    pub fn create_image(
        &self,
        config: &[u8],
        top: Option<&str>,
        parent_image: Option<&Digest>,
    ) -> Result<Digest> {
        let img = self.prepare_image(config, top)?;
        self.db().tx(|tx| insert_image(tx, &img, parent_image))?;
        Ok(img.id)
    }

    /// Checks a config against the layer chain ending at `top` and stores it: what
    /// [`insert_image`] records.
    fn prepare_image(&self, config: &[u8], top: Option<&str>) -> Result<NewImage> {
        let v: Value = serde_json::from_slice(config).map_err(json_err("image config"))?;
        let chain = self.chain_of(top)?;
        let want: Vec<Digest> = v["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().and_then(|s| Digest::parse(s).ok()))
                    .collect()
            })
            .unwrap_or_default();
        let have: Vec<Digest> = chain.iter().filter_map(|l| l.diff_id.clone()).collect();
        if want != have {
            return Err(Error::InvalidLayer(format!(
                "image config lists {} diff IDs that do not match the {} layers given",
                want.len(),
                have.len()
            )));
        }
        if chain.len() > MAX_LAYERS {
            return Err(Error::TooManyLayers {
                count: chain.len(),
                max: MAX_LAYERS,
            });
        }
        let id = self.content.write_blob(config, None)?;
        Ok(NewImage {
            id,
            top: top.map(str::to_string),
            size: chain.iter().map(|l| l.size).sum(),
            created: v["created"].as_str().map(str::to_string),
        })
    }

    /// Points `reference` (e.g. `busybox:latest`) at image `target` (a name or ID).
    pub fn tag(&self, target: &str, reference: &str) -> Result<()> {
        let id = self.resolve(target)?;
        let r = Reference::parse_with_default_tag(reference)?;
        if r.digest().is_some() {
            return Err(Error::InvalidReference {
                reference: reference.to_string(),
                reason: "a tag cannot contain a digest".into(),
            });
        }
        self.db().tx(|tx| insert_tag(tx, &r, &id))
    }

    /// Finds an image by tag, full ID (`sha256:...` or 64 hex) or unique ID prefix.
    pub fn resolve(&self, name: &str) -> Result<Digest> {
        let not_found = || Error::ImageNotFound(name.to_string());
        if let Ok(d) = Digest::parse(name) {
            return match self.db().image(&d)? {
                Some(_) => Ok(d),
                None => Err(not_found()),
            };
        }
        let hex_part = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex_part.is_empty()
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            let found = self.db().images_with_prefix(hex_part)?;
            if found.len() == 1 {
                return Ok(found[0].clone());
            }
            if found.len() > 1 {
                return Err(Error::Conflict(format!(
                    "image ID prefix {hex_part:?} is ambiguous ({} images)",
                    found.len()
                )));
            }
        }
        match Reference::parse_with_default_tag(name) {
            Ok(r) => self.db().tag(&r.to_string())?.ok_or_else(not_found),
            Err(_) => Err(not_found()),
        }
    }

    fn image_info(&self, row: ImageRow) -> Result<Image> {
        let tags = self
            .db()
            .tags_of(&row.id)?
            .into_iter()
            .filter_map(|(r, _)| Reference::parse(&r).ok().map(|r| r.familiar()))
            .collect();
        let chain = self.chain_of(row.top_cache.as_deref())?;
        Ok(Image {
            id: row.id,
            tags,
            parent: row.parent_image,
            size: row.size,
            created: row.created,
            diff_ids: chain.iter().filter_map(|l| l.diff_id.clone()).collect(),
            chain_id: chain.last().and_then(|l| l.chain_id.clone()),
        })
    }

    /// One image.
    pub fn image(&self, name: &str) -> Result<Image> {
        let id = self.resolve(name)?;
        let row = self
            .db()
            .image(&id)?
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
        self.image_info(row)
    }

    /// Every image.
    pub fn images(&self) -> Result<Vec<Image>> {
        let rows = self.db().images()?;
        rows.into_iter().map(|r| self.image_info(r)).collect()
    }

    /// The image's config JSON, byte for byte.
    pub fn config(&self, name: &str) -> Result<Vec<u8>> {
        let id = self.resolve(name)?;
        self.content.read(&id)
    }

    /// An OCI manifest for an image, referencing the layer blobs as stored (compressed as
    /// they came), ready to push: returns the manifest bytes and the layers, base first.
    pub fn manifest(&self, name: &str) -> Result<(Vec<u8>, Vec<LayerRow>)> {
        let id = self.resolve(name)?;
        let row = self
            .db()
            .image(&id)?
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
        let chain = self.chain_of(row.top_cache.as_deref())?;
        let config_size = self.content.size(&id)?;
        let mut layers = Vec::new();
        for l in &chain {
            let blob = l
                .blob_digest
                .as_ref()
                .ok_or_else(|| Error::LayerNotFound(l.cache_id.clone()))?;
            layers.push(json!({
                "mediaType": l.media_type.as_deref().unwrap_or(MT_OCI_LAYER),
                "digest": blob.to_string(),
                "size": l.blob_size,
            }));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": id.to_string(), "size": config_size},
            "layers": layers,
        }))
        .map_err(json_err("manifest"))?;
        Ok((manifest, chain))
    }

    /// Imports a layer tar as a one-layer image (`docker import`), optionally tagged.
    pub fn import(
        &self,
        reader: impl Read + Send,
        reference: Option<&str>,
        comment: Option<&str>,
    ) -> Result<Digest> {
        if let Some(r) = reference {
            Reference::parse_with_default_tag(r)?;
        }
        let layer = self.register_layer(None, reader)?;
        let now = now_rfc3339();
        let diff = layer
            .diff_id
            .clone()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let config = json!({
            "architecture": arch(),
            "os": "linux",
            "created": now,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff]},
            "history": [{"created": now, "comment": comment.unwrap_or("Imported from -")}],
        });
        let bytes = serde_json::to_vec(&config).map_err(json_err("image config"))?;
        let id = self.create_image(&bytes, Some(&layer.cache_id), None)?;
        if let Some(r) = reference {
            self.tag(&id.to_string(), r)?;
        }
        Ok(id)
    }

    /// `docker history`: newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>> {
        let id = self.resolve(name)?;
        let config: Value = serde_json::from_slice(&self.content.read(&id)?)
            .map_err(json_err(format!("config of image {id}")))?;
        let row = self
            .db()
            .image(&id)?
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
        let chain = self.chain_of(row.top_cache.as_deref())?;
        let mut layers = chain.iter();
        let mut out = Vec::new();
        for h in config["history"].as_array().cloned().unwrap_or_default() {
            let empty = h["empty_layer"].as_bool().unwrap_or(false);
            let size = if empty {
                0
            } else {
                layers.next().map_or(0, |l| l.size)
            };
            out.push(HistoryEntry {
                id: None,
                created: h["created"].as_str().map(str::to_string),
                created_by: h["created_by"].as_str().unwrap_or("").to_string(),
                size,
                comment: h["comment"].as_str().unwrap_or("").to_string(),
            });
        }
        out.reverse();
        if let Some(first) = out.first_mut() {
            first.id = Some(id);
        }
        Ok(out)
    }

    /// Removes a tag or an image with Docker's conflict rules (`docker rmi`).
    ///
    /// By tag: the tag goes; the image is deleted only when that was its last tag. By ID: an
    /// image tagged in several repositories needs [`RemoveOptions::force`]. An image with
    /// child images is never deleted; one used by a container needs `force`, and is then
    /// deleted while the container keeps its image ID, config and layers until it is
    /// removed (Docker's rules; refusing an image a *running* container uses is the
    /// engine's check, as libgraph does not know which containers run). With
    /// [`RemoveOptions::prune`], untagged parents left without children are deleted too.
    pub fn remove_image(&self, name: &str, opts: &RemoveOptions) -> Result<Vec<Removed>> {
        let RemoveOptions { force, prune } = *opts;
        let id = self.resolve(name)?;
        let mut out = Vec::new();
        let by_tag = Digest::parse(name).is_err()
            && !self
                .db()
                .images_with_prefix(name.trim_start_matches("sha256:"))?
                .contains(&id);
        let tags = self.db().tags_of(&id)?;
        let containers = self.db().containers_of(&id)?;
        if by_tag {
            let r = Reference::parse_with_default_tag(name)?;
            if tags.len() == 1 && !containers.is_empty() && !force {
                return Err(Error::Conflict(format!(
                    "unable to remove repository reference {:?} (must force) - container {} is using its referenced image {}",
                    name,
                    containers[0],
                    id.short()
                )));
            }
            self.untag(&r.to_string())?;
            out.push(Removed::Untagged(r.familiar()));
            // other tags keep the image; so do children, and containers unless forced
            // (quietly, like Docker)
            if tags.len() > 1
                || (!containers.is_empty() && !force)
                || !self.db().child_images(&id)?.is_empty()
            {
                return Ok(out);
            }
        } else {
            let repos: std::collections::HashSet<&str> =
                tags.iter().map(|(_, repo)| repo.as_str()).collect();
            if repos.len() > 1 && !force {
                return Err(Error::Conflict(format!(
                    "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    id.short()
                )));
            }
        }
        if !self.db().child_images(&id)?.is_empty() {
            return Err(Error::Conflict(format!(
                "unable to delete {} (cannot be forced) - image has dependent child images",
                id.short()
            )));
        }
        if let Some(c) = containers.first()
            && !force
        {
            return Err(Error::Conflict(format!(
                "unable to delete {} (must be forced) - image is being used by stopped container {}",
                id.short(),
                c
            )));
        }
        let remaining = self.db().tags_of(&id)?;
        for (r, _) in &remaining {
            self.untag(r)?;
            if let Ok(r) = Reference::parse(r) {
                out.push(Removed::Untagged(r.familiar()));
            }
        }
        // Forced while a (stopped) container uses it: deleted, like Docker does; the
        // container keeps the image ID, its config blob and its layers until it is
        // removed. A running container is a hard conflict the engine checks first.
        let mut next = Some(id);
        while let Some(id) = next.take() {
            let parent = self.delete_image_row(&id)?;
            out.push(Removed::Deleted(id));
            if !prune {
                break;
            }
            if let Some(p) = parent {
                let db = self.db();
                let dangling = db.image(&p)?.is_some()
                    && db.tags_of(&p)?.is_empty()
                    && db.child_images(&p)?.is_empty()
                    && db.containers_of(&p)?.is_empty();
                drop(db);
                if dangling {
                    next = Some(p);
                }
            }
        }
        Ok(out)
    }

    fn untag(&self, reference: &str) -> Result<()> {
        self.db().tx(|tx| {
            tx.execute("DELETE FROM tags WHERE reference = ?1", [reference])
                .map(|_| ())
        })
    }

    /// Deletes an image row, its config blob and the layers only it held; returns its parent.
    fn delete_image_row(&self, id: &Digest) -> Result<Option<Digest>> {
        let row = self
            .db()
            .image(id)?
            .ok_or_else(|| Error::ImageNotFound(id.to_string()))?;
        self.db().tx(|tx| {
            tx.execute("DELETE FROM tags WHERE image_id = ?1", [id.to_string()])?;
            tx.execute("DELETE FROM images WHERE id = ?1", [id.to_string()])?;
            if let Some(t) = &row.top_cache {
                tx.execute(
                    "UPDATE layers SET refcount = refcount - 1 WHERE cache_id = ?1",
                    [t],
                )?;
            }
            Ok(())
        })?;
        // a container made from the image still needs its config (commit, inspect)
        if self.db().containers_of(id)?.is_empty() {
            self.content.delete(id)?;
        }
        self.release_chain(row.top_cache.clone())?;
        Ok(row.parent_image)
    }

    /// Deletes untagged images nothing depends on (`docker image prune`).
    pub fn prune_dangling(&self) -> Result<Vec<Digest>> {
        let mut removed = Vec::new();
        loop {
            let mut found = None;
            let images = self.db().images()?;
            for img in images {
                let db = self.db();
                if db.tags_of(&img.id)?.is_empty()
                    && db.child_images(&img.id)?.is_empty()
                    && db.containers_of(&img.id)?.is_empty()
                {
                    found = Some(img.id);
                    break;
                }
            }
            let Some(id) = found else { break };
            self.delete_image_row(&id)?;
            removed.push(id);
        }
        Ok(removed)
    }

    /// Creates a container's read-write layer on top of an image.
    pub fn create_container(&self, container_id: &str, image: &str) -> Result<()> {
        driver::check_id(container_id)?;
        if self.db().container(container_id)?.is_some() {
            return Err(Error::LayerExists(container_id.to_string()));
        }
        let id = self.resolve(image)?;
        let row = self
            .db()
            .image(&id)?
            .ok_or_else(|| Error::ImageNotFound(image.to_string()))?;
        let cache = format!("{}-rw", random_id()?);
        self.db().tx(|tx| {
            tx.execute(
                "INSERT INTO containers(id, image_id, cache_id, incomplete, top_cache)
                 VALUES (?1, ?2, ?3, 1, ?4)",
                rusqlite::params![container_id, id.to_string(), cache, row.top_cache],
            )?;
            if let Some(t) = &row.top_cache {
                tx.execute(
                    "UPDATE layers SET refcount = refcount + 1 WHERE cache_id = ?1",
                    [t],
                )?;
            }
            Ok(())
        })?;
        if let Err(e) = self.driver.create(&cache, row.top_cache.as_deref()) {
            let _ = self.drop_container_row(container_id);
            return Err(e);
        }
        self.set_container_incomplete(container_id, false)
    }

    /// Marks a container row incomplete (invisible, finished or removed at the next open)
    /// or complete.
    fn set_container_incomplete(&self, container_id: &str, incomplete: bool) -> Result<()> {
        self.db().tx(|tx| {
            tx.execute(
                "UPDATE containers SET incomplete = ?2 WHERE id = ?1",
                rusqlite::params![container_id, incomplete as i64],
            )
            .map(|_| ())
        })
    }

    fn container_cache(&self, container_id: &str) -> Result<(Option<Digest>, String)> {
        match self.db().container(container_id)? {
            Some((img, cache, false)) => Ok((img, cache)),
            _ => Err(Error::LayerNotFound(container_id.to_string())),
        }
    }

    /// Mounts a container's filesystem and returns its path (reference counted).
    pub fn mount_container(&self, container_id: &str) -> Result<PathBuf> {
        let (_, cache) = self.container_cache(container_id)?;
        self.driver.get(&cache)
    }

    /// Releases one [`Store::mount_container`].
    pub fn unmount_container(&self, container_id: &str) -> Result<()> {
        let (_, cache) = self.container_cache(container_id)?;
        self.driver.put(&cache)
    }

    /// Removes a container's read-write layer.
    pub fn remove_container(&self, container_id: &str) -> Result<()> {
        let (_, cache) = self.container_cache(container_id)?;
        // marked first: a removal cut short is finished at the next open
        self.set_container_incomplete(container_id, true)?;
        if self.driver.exists(&cache)
            && let Err(e) = self.driver.remove(&cache)
        {
            // refused (mounted) or failed: the container stays as it was
            self.set_container_incomplete(container_id, false)?;
            return Err(e);
        }
        self.drop_container_row(container_id)
    }

    /// The layer a container holds a reference on: recorded in its row (older rows: the
    /// image's top layer).
    fn container_top(&self, container_id: &str) -> Result<Option<String>> {
        let db = self.db();
        if let Some(t) = db.container_top(container_id)? {
            return Ok(Some(t));
        }
        Ok(match db.container(container_id)? {
            Some((Some(img), _, _)) => db.image(&img)?.and_then(|r| r.top_cache),
            _ => None,
        })
    }

    /// Removes a container's row and its reference on its top layer; what only it still
    /// held (the config and layers of an image deleted while it was in use) goes too.
    fn drop_container_row(&self, container_id: &str) -> Result<()> {
        let top = self.container_top(container_id)?;
        let Some((img, _, _)) = self.db().container(container_id)? else {
            return Ok(());
        };
        self.db().tx(|tx| {
            tx.execute("DELETE FROM containers WHERE id = ?1", [container_id])?;
            if let Some(t) = &top {
                tx.execute(
                    "UPDATE layers SET refcount = refcount - 1 WHERE cache_id = ?1",
                    [t],
                )?;
            }
            Ok(())
        })?;
        if let Some(i) = &img {
            let orphaned = {
                let db = self.db();
                db.image(i)?.is_none() && db.containers_of(i)?.is_empty()
            };
            if orphaned {
                self.content.delete(i)?;
                self.release_chain(top)?;
            }
        }
        Ok(())
    }

    /// `docker diff`: the container's changes against its image.
    pub fn container_changes(&self, container_id: &str) -> Result<Vec<Change>> {
        let (_, cache) = self.container_cache(container_id)?;
        self.driver.changes(&cache)
    }

    /// `docker export`: the container's whole filesystem as a tar.
    pub fn export_container(&self, container_id: &str, out: impl Write) -> Result<()> {
        let root = self.mount_container(container_id)?;
        let r = (|| {
            let mut w = TarWriter::new(out);
            w.append_tree(&root)?;
            w.finish().map(|_| ())
        })();
        self.unmount_container(container_id)?;
        r
    }

    /// `docker commit`: the container's changes become a new layer and image.
    pub fn commit(&self, container_id: &str, opts: &CommitOptions) -> Result<Digest> {
        if let Some(r) = &opts.reference {
            Reference::parse_with_default_tag(r)?;
        }
        let (img, cache) = self.container_cache(container_id)?;
        let (base_config, top, parent_image): (Value, Option<String>, Option<Digest>) = match &img {
            Some(i) => {
                // the image row may be gone (forced rmi); its config blob and top layer
                // stay while the container exists
                let cfg = serde_json::from_slice(&self.content.read(i)?)
                    .map_err(json_err(format!("config of image {i}")))?;
                (cfg, self.container_top(container_id)?, Some(i.clone()))
            }
            None => (
                json!({"architecture": arch(), "os": "linux", "config": {}}),
                None,
                None,
            ),
        };
        let (reader, mut writer) = pipe()?;
        let layer = std::thread::scope(|s| {
            let diff = s.spawn(move || {
                let r = self.driver.diff(&cache, &mut writer);
                drop(writer);
                r
            });
            let layer = self.register_layer(top.as_deref(), reader);
            let diffed = diff
                .join()
                .unwrap_or_else(|_| Err(Error::InvalidLayer("diff thread panicked".into())));
            match (layer, diffed) {
                (Ok(l), Ok(())) => Ok(l),
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            }
        })?;
        let now = now_rfc3339();
        let mut cfg = base_config;
        cfg["created"] = json!(now);
        if let Some(a) = &opts.author {
            cfg["author"] = json!(a);
        }
        let mut diff_ids: Vec<Value> = cfg["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        diff_ids.push(json!(layer.diff_id.as_ref().map(|d| d.to_string())));
        cfg["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        let mut history: Vec<Value> = cfg["history"].as_array().cloned().unwrap_or_default();
        let mut h = json!({"created": now});
        if let Some(a) = &opts.author {
            h["author"] = json!(a);
        }
        if let Some(c) = &opts.created_by {
            h["created_by"] = json!(c);
        }
        if let Some(m) = &opts.message {
            h["comment"] = json!(m);
        }
        history.push(h);
        cfg["history"] = Value::Array(history);
        let bytes = serde_json::to_vec(&cfg).map_err(json_err("image config"))?;
        let result = self.create_image(&bytes, Some(&layer.cache_id), parent_image.as_ref());
        let id = match result {
            Ok(id) => id,
            Err(e) => {
                self.release_chain(Some(layer.cache_id))?;
                return Err(e);
            }
        };
        if let Some(r) = &opts.reference {
            self.tag(&id.to_string(), r)?;
        }
        Ok(id)
    }

    /// Writes the uncompressed tar of a layer (from its blob) into `out`.
    fn layer_tar(&self, l: &LayerRow, out: &mut dyn Write) -> Result<u64> {
        let blob = l
            .blob_digest
            .as_ref()
            .ok_or_else(|| Error::LayerNotFound(l.cache_id.clone()))?;
        let f = self.content.open_blob(blob)?;
        let mut r = io::BufReader::new(f);
        let magic = io::BufRead::fill_buf(&mut r).ctx("read blob", self.content.blob_path(blob))?;
        let mut dec: Box<dyn Read> = match crate::apply::Compression::detect(magic) {
            crate::apply::Compression::None => Box::new(r),
            crate::apply::Compression::Gzip => crate::gzip::decoder(r),
            crate::apply::Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(r)
                    .map_err(|e| Error::InvalidLayer(format!("zstd: {e}")))?,
            ),
        };
        io::copy(&mut dec, out).ctx("decompress layer", self.content.blob_path(blob))
    }

    /// `docker save`: images (names or IDs) as one archive.
    pub fn save(&self, names: &[&str], format: ArchiveFormat, out: impl Write) -> Result<()> {
        let mut b = tar::Builder::new(out);
        let werr = |e: io::Error| Error::io("write archive", "<save stream>", e);
        let add = |b: &mut tar::Builder<_>, name: &str, data: &[u8]| -> Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).map_err(werr)
        };
        add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut written: std::collections::HashSet<Digest> = Default::default();
        let mut index = Vec::new();
        let mut docker_manifest = Vec::new();
        let mut repositories: HashMap<String, HashMap<String, String>> = HashMap::new();
        for name in names {
            let id = self.resolve(name)?;
            let row = self
                .db()
                .image(&id)?
                .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
            let chain = self.chain_of(row.top_cache.as_deref())?;
            let mut layer_descs = Vec::new();
            let mut layer_paths = Vec::new();
            for l in &chain {
                let diff = l
                    .diff_id
                    .clone()
                    .ok_or_else(|| Error::LayerNotFound(l.cache_id.clone()))?;
                let path = format!("blobs/sha256/{}", diff.hex());
                if written.insert(diff.clone()) {
                    let mut h = tar::Header::new_gnu();
                    h.set_mode(0o644);
                    h.set_size(l.tar_size);
                    h.set_mtime(0);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_entry_type(tar::EntryType::Regular);
                    // stream the decompressed layer straight into the archive entry
                    let (reader, mut writer) = pipe()?;
                    let r = std::thread::scope(|s| {
                        let t = s.spawn(move || {
                            let r = self.layer_tar(l, &mut writer);
                            drop(writer);
                            r
                        });
                        let a = b.append_data(&mut h, &path, reader).map_err(werr);
                        let n = t.join().unwrap_or_else(|_| {
                            Err(Error::InvalidLayer("save thread panicked".into()))
                        });
                        a.and(n)
                    })?;
                    if r != l.tar_size {
                        return Err(Error::BlobCorrupt {
                            digest: l.blob_digest.clone().unwrap_or(diff),
                            reason: format!("layer tar is {r} bytes, expected {}", l.tar_size),
                        });
                    }
                }
                layer_descs.push(json!({"mediaType": MT_OCI_LAYER, "digest": diff.to_string(), "size": l.tar_size}));
                layer_paths.push(path);
            }
            let config = self.content.read(&id)?;
            let config_path = format!("blobs/sha256/{}", id.hex());
            if written.insert(id.clone()) {
                add(&mut b, &config_path, &config)?;
            }
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": MT_OCI_CONFIG, "digest": id.to_string(), "size": config.len()},
                "layers": layer_descs,
            }))
            .map_err(json_err("manifest"))?;
            let mdig = Digest::sha256_of(&manifest);
            if written.insert(mdig.clone()) {
                add(&mut b, &format!("blobs/sha256/{}", mdig.hex()), &manifest)?;
            }
            // the tags saved: the name given if it is a tag, else all tags of the image
            let given = Reference::parse_with_default_tag(name)
                .ok()
                .filter(|r| self.db().tag(&r.to_string()).ok().flatten().as_ref() == Some(&id));
            let refs: Vec<Reference> = match given {
                Some(r) => vec![r],
                None => self
                    .db()
                    .tags_of(&id)?
                    .into_iter()
                    .filter_map(|(r, _)| Reference::parse(&r).ok())
                    .collect(),
            };
            let mut desc = json!({"mediaType": MT_OCI_MANIFEST, "digest": mdig.to_string(), "size": manifest.len()});
            if refs.is_empty() {
                index.push(desc.clone());
            }
            for r in &refs {
                desc["annotations"] = json!({
                    "io.containerd.image.name": r.to_string(),
                    "org.opencontainers.image.ref.name": r.tag().unwrap_or("latest"),
                });
                index.push(desc.clone());
                if let (Some(top), Some(tag)) =
                    (chain.last().and_then(|l| l.diff_id.clone()), r.tag())
                {
                    repositories
                        .entry(r.familiar_name())
                        .or_default()
                        .insert(tag.to_string(), top.hex().to_string());
                }
            }
            docker_manifest.push(json!({
                "Config": config_path,
                "RepoTags": refs.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
                "Layers": layer_paths,
            }));
        }
        let index = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index}),
        )
        .map_err(json_err("index.json"))?;
        add(&mut b, "index.json", &index)?;
        if format == ArchiveFormat::Docker {
            let m = serde_json::to_vec(&docker_manifest).map_err(json_err("manifest.json"))?;
            add(&mut b, "manifest.json", &m)?;
            let r = serde_json::to_vec(&repositories).map_err(json_err("repositories"))?;
            add(&mut b, "repositories", &r)?;
        }
        b.into_inner().map_err(werr)?;
        Ok(())
    }

    /// `docker load`: a docker-archive or OCI-layout tar. Returns the loaded image IDs with
    /// the tags set.
    ///
    /// Everything is validated before the store changes: the manifests, every config, the
    /// layer counts (over [`MAX_LAYERS`] is refused before any layer file is opened), the
    /// tags and the layer files' types. Layers are then registered (each checked against its
    /// diff ID), and the images and all their tags are recorded in one transaction. On any
    /// error, the layers this load registered are removed again and no tag moves.
    pub fn load(&self, reader: impl Read + Send) -> Result<Vec<(Digest, Vec<String>)>> {
        let dir = ScratchDir(
            tempfile::Builder::new()
                .prefix("load-")
                .tempdir_in(self.root.join("tmp"))
                .ctx("create directory", self.root.join("tmp"))?,
        );
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            same_owner: false,
            verified_blob: None,
        };
        apply_layer(reader, dir.0.path(), &opts)?;
        let base = dir.0.path();
        let plans = if base.join("manifest.json").is_file() {
            plan_docker_archive(base)?
        } else if base.join("index.json").is_file() {
            plan_oci_layout(base)?
        } else {
            return Err(Error::InvalidLayer(
                "archive has neither manifest.json nor index.json".into(),
            ));
        };
        self.load_plans(base, &plans)
    }

    /// Registers the layers of validated images, then records the images and their tags in
    /// one transaction; undoes what it registered on error.
    fn load_plans(&self, base: &Path, plans: &[LoadPlan]) -> Result<Vec<(Digest, Vec<String>)>> {
        // keeps the layers registered here from a concurrent gc until the images hold them
        let lease = self.lease();
        let mut created = Vec::new();
        let mut configs = Vec::new();
        let loaded = (|| {
            let mut images = Vec::new();
            for p in plans {
                let top = self.load_layers(base, p, &lease, &mut created)?;
                let img = self.prepare_image(&p.config, top.as_deref())?;
                configs.push(img.id.clone());
                images.push(img);
            }
            self.db().tx(|tx| {
                for (img, p) in images.iter().zip(plans) {
                    insert_image(tx, img, None)?;
                    for r in &p.tags {
                        insert_tag(tx, r, &img.id)?;
                    }
                }
                Ok(())
            })?;
            Ok(images
                .into_iter()
                .zip(plans)
                .map(|(img, p)| (img.id, p.tags.iter().map(Reference::familiar).collect()))
                .collect())
        })();
        drop(lease);
        if loaded.is_err() {
            self.discard_loaded(&created, &configs);
        }
        loaded
    }

    /// Registers the layers of one planned image (those not in the store yet), each checked
    /// against the diff ID the config gives it (and the blob digest the OCI manifest gives
    /// it); returns the top layer. New layers are added to `created`.
    fn load_layers(
        &self,
        base: &Path,
        plan: &LoadPlan,
        lease: &Lease,
        created: &mut Vec<String>,
    ) -> Result<Option<String>> {
        let mut top: Option<LayerRow> = None;
        for (i, ((path, blob_digest), want)) in plan.layers.iter().zip(&plan.diff_ids).enumerate() {
            let chain = chain_id(&plan.diff_ids[..=i]).unwrap_or(want.clone());
            lease.add_chain(&chain);
            if let Some(existing) = self.db().layer_by_chain(&chain)? {
                top = Some(existing);
                continue;
            }
            // opened one at a time, only now
            let file = open_in_archive(base, path)?;
            let l = self.register_layer(top.as_ref().map(|t| t.cache_id.as_str()), file)?;
            if let Some(c) = &l.chain_id {
                lease.add_chain(c);
            }
            created.push(l.cache_id.clone());
            if l.diff_id.as_ref() != Some(want) {
                return Err(Error::InvalidLayer(format!(
                    "layer {} has diff ID {:?}, config says {want}",
                    i + 1,
                    l.diff_id
                )));
            }
            if let Some(bd) = blob_digest
                && l.blob_digest.as_ref() != Some(bd)
            {
                return Err(Error::InvalidLayer(format!(
                    "layer {} blob hashes to {:?}, manifest says {bd}",
                    i + 1,
                    l.blob_digest
                )));
            }
            top = Some(l);
        }
        Ok(top.map(|t| t.cache_id))
    }

    /// Removes what a failed load added: the layers it registered (newest first, while
    /// nothing uses them) and the configs no image names.
    fn discard_loaded(&self, created: &[String], configs: &[Digest]) {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        for c in created.iter().rev() {
            let row = match self.db().layer(c) {
                Ok(Some(row)) => row,
                _ => continue,
            };
            // what cannot be removed now is unreferenced: check reports it, gc removes it
            let _ = self.release_layer(&row, &leases);
        }
        drop(leases);
        for id in configs {
            let unused = matches!(self.db().image(id), Ok(None))
                && matches!(self.db().containers_of(id), Ok(c) if c.is_empty());
            if unused {
                let _ = self.content.delete(id);
            }
        }
    }

    /// Verifies every blob's digest, every layer's presence and reference counts
    /// (`repair` fixes counts and drops rows of missing layers' images' tags are kept), and
    /// lists the layers nothing uses ([`CheckReport::unreferenced_layers`]), which
    /// [`Store::gc`] removes.
    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        let mut rep = CheckReport::default();
        for d in self.content.list()? {
            rep.blobs_checked += 1;
            if let Err(e) = self.content.verify(&d) {
                rep.problems.push(format!("{e}"));
                if repair {
                    self.content.delete(&d)?;
                }
            }
        }
        let layers = self.db().layers()?;
        let images = self.db().images()?;
        let containers = self.db().containers()?;
        for l in &layers {
            if l.incomplete {
                // a row is marked incomplete before its directory exists and before its
                // removal starts: its directory may be half there, or gone
                rep.incomplete_layers.push(l.cache_id.clone());
                continue;
            }
            rep.layers_checked += 1;
            if !self.driver.exists(&l.cache_id) {
                rep.problems.push(format!(
                    "layer {} is missing from the {} driver",
                    l.cache_id,
                    self.driver.name()
                ));
            }
            if let Some(b) = &l.blob_digest
                && !self.content.exists(b)
            {
                rep.problems
                    .push(format!("blob {b} of layer {} is missing", l.cache_id));
            }
            let mut want = images
                .iter()
                .filter(|i| i.top_cache.as_deref() == Some(&l.cache_id))
                .count() as u64;
            for (cid, _, _) in &containers {
                if self.container_top(cid)?.as_deref() == Some(&l.cache_id) {
                    want += 1;
                }
            }
            let leased = l.chain_id.as_ref().is_some_and(|ch| {
                let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
                leases.live.values().any(|x| x.chains.contains(ch))
            });
            if want == 0 && !l.incomplete && !leased && self.db().children(&l.cache_id)? == 0 {
                rep.unreferenced_layers.push(l.cache_id.clone());
            }
            if want != l.refcount {
                rep.problems.push(format!(
                    "layer {} has reference count {}, expected {want}{}",
                    l.cache_id,
                    l.refcount,
                    if repair { " (repaired)" } else { "" }
                ));
                if repair {
                    self.db().tx(|tx| {
                        tx.execute(
                            "UPDATE layers SET refcount = ?2 WHERE cache_id = ?1",
                            rusqlite::params![l.cache_id, want as i64],
                        )
                        .map(|_| ())
                    })?;
                }
            }
        }
        for i in &images {
            if !self.content.exists(&i.id) {
                rep.problems
                    .push(format!("config blob of image {} is missing", i.id));
            }
        }
        for (cid, cache, _) in &containers {
            if !self.driver.exists(cache) {
                rep.problems
                    .push(format!("read-write layer of container {cid} is missing"));
            }
            if let Some((Some(img), _, _)) = self.db().container(cid)?
                && !self.content.exists(&img)
            {
                rep.problems.push(format!(
                    "config blob of image {img} of container {cid} is missing"
                ));
            }
        }
        Ok(rep)
    }

    /// Removes layers nothing references and blobs no image, container or layer names.
    /// What a live [`Lease`] protects stays (its blobs and layer chains, and blobs committed
    /// since it was taken), and so do blobs committed after the oldest ingest still on disk
    /// started: a pull in progress may need them.
    pub fn gc(&self) -> Result<GcReport> {
        let mut rep = GcReport::default();
        // held throughout: a lease adding a blob waits for this gc to finish
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let roots: Vec<LayerRow> = {
            let db = self.db();
            let mut v = Vec::new();
            for l in db.layers()? {
                if !l.incomplete && l.refcount == 0 && db.children(&l.cache_id)? == 0 {
                    v.push(l);
                }
            }
            v
        };
        for l in roots {
            rep.layers_removed
                .extend(self.release_chain_with(Some(l.cache_id), &leases)?);
        }
        let mut keep: std::collections::HashSet<Digest> = Default::default();
        let layers = self.db().layers()?;
        for l in layers {
            keep.extend(l.blob_digest);
        }
        let images = self.db().images()?;
        for i in images {
            keep.insert(i.id);
        }
        let containers = self.db().containers()?;
        for (cid, _, _) in containers {
            if let Some((Some(img), _, _)) = self.db().container(&cid)? {
                keep.insert(img);
            }
        }
        for l in leases.live.values() {
            keep.extend(l.blobs.iter().cloned());
        }
        let oldest_ingest = fs::read_dir(self.content.root().join("ingest"))
            .ctx("read directory", self.content.root().join("ingest"))?
            .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
            .chain(leases.live.values().map(|l| l.since))
            .min();
        for d in self.content.list()? {
            if keep.contains(&d) {
                continue;
            }
            let p = self.content.blob_path(&d);
            if let (Some(oldest), Ok(m)) =
                (oldest_ingest, fs::metadata(&p).and_then(|m| m.modified()))
                && m >= oldest
            {
                continue;
            }
            self.content.delete(&d)?;
            rep.blobs_removed.push(d);
        }
        Ok(rep)
    }
}
