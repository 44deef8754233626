//! # longshore-graph
//!
//! The image and layer store: the seed's *Graph* and its *graph drivers*.
//!
//! - [`Digest`] and [`Reference`]: validated content digests and Docker image references.
//! - [`ContentStore`]: blobs addressed by digest, written crash-safely through an ingest area.
//!
//! ```
//! use std::io::Write;
//! use longshore_graph::{Algorithm, ContentStore, Digest, Reference};
//!
//! # fn main() -> Result<(), longshore_graph::Error> {
//! let r = Reference::parse_with_default_tag("busybox")?;
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//!
//! let dir = tempfile::Builder::new().prefix("longshore-doc-").tempdir().unwrap();
//! let store = ContentStore::open(dir.path())?;
//! let mut w = store.writer("my-download", Algorithm::Sha256)?;
//! w.write_all(b"hello").unwrap();
//! let digest = w.commit(Some(5), Some(&Digest::sha256_of(b"hello")))?;
//! assert_eq!(store.read(&digest)?, b"hello");
//! # Ok(()) }
//! ```

pub mod apply;
pub mod archive;
pub mod changes;
pub mod content;
pub mod digest;
pub mod driver;
mod error;
pub mod meta;
pub mod reference;
pub mod store;

pub use apply::{ApplyOptions, ApplyReport, Compression, WhiteoutMode, apply_layer};
pub use changes::{Change, ChangeKind};
pub use content::{ContentStore, IngestStatus, Writer};
pub use digest::{Algorithm, Digest, chain_id};
pub use driver::Driver;
pub use error::{Error, Result};
pub use reference::Reference;
pub use store::{
    ArchiveFormat, CheckReport, CommitOptions, GcReport, HistoryEntry, Image, Removed, Store,
    StoreOptions,
};
