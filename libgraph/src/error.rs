//! The crate's error type. Every message names the object and the problem.

use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from the image and layer store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string is malformed.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The text given.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image reference is malformed.
    #[error("invalid reference format {reference:?}: {reason}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O operation failed on a path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Written content does not match what was expected.
    #[error("content for ingest {reference:?} does not match: {reason}; nothing was committed")]
    ContentMismatch {
        /// The ingest reference.
        reference: String,
        /// Size or digest difference.
        reason: String,
    },
    /// A blob is absent.
    #[error("blob {0} not found in the content store")]
    BlobNotFound(crate::Digest),
    /// A committed blob no longer matches its digest.
    #[error("blob {digest} is corrupt: {reason}")]
    BlobCorrupt {
        /// The blob.
        digest: crate::Digest,
        /// What was found.
        reason: String,
    },
    /// An ingest is held by another writer.
    #[error("ingest {0:?} is locked by another writer")]
    IngestLocked(String),
    /// An ingest reference is unusable as a key.
    #[error("invalid ingest reference {0:?}: must be 1-255 bytes, without NUL")]
    InvalidIngestRef(String),
    /// A tar entry tried to reach outside the layer root.
    #[error("layer tar entry {entry:?} is unsafe: {reason}; nothing was written outside the layer")]
    UnsafeTarEntry {
        /// The entry's path as found in the tar.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The layer stream is not a readable tar (or compression is broken).
    #[error("layer stream is invalid: {0}")]
    InvalidLayer(String),
    /// A graph driver is unknown or unusable here.
    #[error("graph driver {name:?} unavailable: {reason}")]
    DriverUnavailable {
        /// Driver name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The driver cannot do what was asked.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A driver layer already exists.
    #[error("layer {0:?} already exists in the graph driver")]
    LayerExists(String),
    /// A driver layer is absent.
    #[error("layer {0:?} not found in the graph driver")]
    LayerNotFound(String),
    /// A driver layer ID is unusable.
    #[error(
        "invalid layer id {0:?}: must be 1-128 characters of [A-Za-z0-9_.-], not starting with '.'"
    )]
    InvalidLayerId(String),
    /// A mount or unmount failed.
    #[error("{op} of layer {id:?} failed: {source}")]
    Mount {
        /// mount / unmount.
        op: &'static str,
        /// Layer id.
        id: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The layer is still mounted or used.
    #[error("layer {id:?} is busy: {reason}")]
    LayerBusy {
        /// Layer id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Too many layers.
    #[error("image has {count} layers, more than the limit of {max}; squash or flatten it")]
    TooManyLayers {
        /// Layers requested.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A metadata database error.
    #[error("metadata database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A row of the metadata database holds a value its column cannot hold (a digest
    /// that does not parse): the database was changed by something other than the store.
    #[error("{0}")]
    CorruptRow(Box<CorruptRow>),
    /// An image is absent.
    #[error("no such image: {0}")]
    ImageNotFound(String),
    /// JSON (de)serialisation of a config or manifest failed.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// What was being parsed.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Another process owns the store. Not returned since stores are shared by several
    /// processes ([`Store::open`](crate::Store::open)); kept for callers that match it.
    #[error(
        "image store {root} is in use by another process (pid {owner}); only one owner at a time"
    )]
    StoreLocked {
        /// The store root.
        root: PathBuf,
        /// The owner's pid as it wrote it.
        owner: String,
    },
    /// An operation is refused because of references to the object.
    #[error("conflict: {0}")]
    Conflict(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<longshore_reference::Error> for Error {
    fn from(e: longshore_reference::Error) -> Error {
        match e {
            longshore_reference::Error::InvalidDigest { digest, reason } => {
                Error::InvalidDigest { digest, reason }
            }
            longshore_reference::Error::InvalidReference { reference, reason } => {
                Error::InvalidReference { reference, reason }
            }
            // the enum is non_exhaustive: a future variant keeps its message
            other => Error::InvalidReference {
                reference: String::new(),
                reason: other.to_string(),
            },
        }
    }
}

/// Where [`Error::CorruptRow`] found a value its column cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error(
    "metadata database {path}: {table} row {key:?} has an invalid {column} {value:?} \
     ({reason}); the database is corrupt, restore it or remove that row"
)]
pub struct CorruptRow {
    /// The database file.
    pub path: PathBuf,
    /// The table (`layers`, `images`, `tags`, `containers`).
    pub table: &'static str,
    /// The row's key (cache ID, image ID, reference or container ID).
    pub key: String,
    /// The column holding the bad value.
    pub column: &'static str,
    /// The value found.
    pub value: String,
    /// Why it is not valid.
    pub reason: String,
}

/// Extension to attach an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e.into()))
    }
}
