//! The engine's error type.

/// Errors from engine jobs. Each message names the object and the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested operation is not implemented yet.
    #[error("{0} is not implemented yet in longshore-engine")]
    Unimplemented(&'static str),
    /// The reference could not be parsed.
    #[error("invalid image reference {reference:?}: {source}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// Why libregistry refused it.
        #[source]
        source: Box<longshore_registry::Error>,
    },
    /// The registry has no such image (tag, digest or repository).
    #[error("pull {reference}: image not found: {source}")]
    NotFound {
        /// The reference pulled.
        reference: String,
        /// The registry's answer.
        #[source]
        source: Box<longshore_registry::Error>,
    },
    /// Downloading failed.
    #[error("pull {reference}: {source}")]
    Registry {
        /// The reference pulled.
        reference: String,
        /// What libregistry reported.
        #[source]
        source: Box<longshore_registry::Error>,
    },
    /// The image store failed.
    #[error("{op}: {source}")]
    Graph {
        /// What the engine was doing.
        op: String,
        /// What libgraph reported.
        #[source]
        source: longshore_graph::Error,
    },
    /// The image config is unusable.
    #[error("image config {digest} of {reference}: {reason}")]
    InvalidConfig {
        /// The reference pulled.
        reference: String,
        /// Config digest.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A layer blob unpacked to content other than the config's diff ID says.
    #[error(
        "layer {blob} of {reference} unpacks to diff ID {actual}, but the image config expects {expected}"
    )]
    DiffIdMismatch {
        /// The reference pulled.
        reference: String,
        /// Layer blob digest.
        blob: String,
        /// Diff ID from the config.
        expected: String,
        /// Diff ID of the unpacked content.
        actual: String,
    },
    /// A worker thread panicked or was cancelled.
    #[error("engine worker for {what} failed: {reason}")]
    Worker {
        /// What the worker did.
        what: String,
        /// Join error.
        reason: String,
    },
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn graph(op: impl Into<String>) -> impl FnOnce(longshore_graph::Error) -> Error {
    let op = op.into();
    move |source| Error::Graph { op, source }
}
