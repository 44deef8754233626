//! # longshore-graph
//!
//! The image and layer store: the seed's *Graph* (4.2.4) and its *graph drivers* (4.2.5.1),
//! on today's formats (OCI image layout, Docker archives).
//!
//! - [`Digest`] and [`Reference`]: validated content digests and Docker image references
//!   (`[registry[:port]/]path[:tag][@digest]`, `docker.io/library` normalisation).
//! - [`ContentStore`]: blobs by digest, written crash-safely through an ingest area with
//!   resumable, flock-protected writers.
//! - [`apply_layer`]: one streaming pass from a gzip/zstd/plain layer tar to a directory,
//!   computing the blob digest and diff ID, with whiteouts and path safety (`openat2`).
//! - [`driver`]: the `overlay` and `vfs` graph drivers behind one [`Driver`] trait.
//! - [`Store`]: layers (chain IDs, parents, reference counts, the 127-layer limit), images,
//!   tags and container layers in SQLite; import, commit, diff, export, history, rmi,
//!   save/load (docker-archive and OCI layout; [`Store::load_with_progress`] reports each
//!   new layer as it is read, for `docker load`'s progress), check and gc.
//!
//! Import a tar as an image, change a container's filesystem, commit it and save both:
//!
//! ```
//! use longshore_graph::{ArchiveFormat, CommitOptions, Store, StoreOptions};
//!
//! # fn main() -> Result<(), longshore_graph::Error> {
//! # let dir = tempfile::Builder::new().prefix("longshore-doc-").tempdir().unwrap();
//! # let mut tar = tar::Builder::new(Vec::new());
//! # let mut h = tar::Header::new_gnu();
//! # h.set_size(6); h.set_mode(0o644);
//! # tar.append_data(&mut h, "etc/motd", &b"hello\n"[..]).unwrap();
//! # let rootfs_tar = tar.into_inner().unwrap();
//! // `vfs` works anywhere; leave `driver` unset to get overlayfs when it is available.
//! let store = Store::open(dir.path(), StoreOptions::new().driver("vfs"))?;
//! let base = store.import(&rootfs_tar[..], Some("base:1"), None)?;
//!
//! store.create_container("web", "base:1")?;
//! let rootfs = store.mount_container("web")?;
//! std::fs::write(rootfs.join("etc/motd"), "changed\n").unwrap();
//! store.unmount_container("web")?;
//! let changes: Vec<String> =
//!     store.container_changes("web")?.iter().map(|c| c.to_string()).collect();
//! assert_eq!(changes, ["C /etc", "C /etc/motd"]);
//!
//! let opts = CommitOptions::new().reference("base:2").message("new motd");
//! let derived = store.commit("web", &opts)?;
//! assert_eq!(store.image("base:2")?.parent, Some(base));
//! assert_eq!(store.history("base:2")?[0].comment, "new motd");
//!
//! let mut archive = Vec::new();
//! store.save(&["base:1", "base:2"], ArchiveFormat::Docker, &mut archive)?;
//! # let _ = derived;
//! # Ok(()) }
//! ```

pub mod apply;
pub mod archive;
pub mod changes;
pub mod content;
pub mod driver;
mod error;
mod gzip;
pub mod image;
pub mod meta;
pub mod store;
mod walk;

/// Content digests ([`Digest`]), defined in `longshore-reference` and shared with libregistry.
pub use longshore_reference::digest;
/// Image references ([`Reference`]), defined in `longshore-reference` and shared with libregistry.
pub use longshore_reference::reference;

pub use apply::{ApplyOptions, ApplyReport, Compression, WhiteoutMode, apply_layer};
pub use changes::{Change, ChangeKind};
pub use content::{ContentStore, IngestStatus, Writer};
pub use digest::{Algorithm, Digest, chain_id};
pub use driver::Driver;
pub use error::{CorruptRow, Error, Result};
pub use gzip::gzip_backend;
pub use reference::Reference;
pub use store::{
    ArchiveFormat, CheckReport, CommitOptions, GcReport, HistoryEntry, Image, Lease, LoadProgress,
    Purge, RemoveOptions, Removed, StagedLayer, Store, StoreOptions,
};
