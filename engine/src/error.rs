//! The engine's error type.

/// Errors from engine jobs. Each message names the object and the problem, in Docker's
/// words where Docker has them; [`Error::exit_code`] gives the CLI's exit status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No container has this ID, ID prefix or name.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// A build failed (libbuild's message names the Dockerfile line or the step).
    #[error("{0}")]
    Build(String),
    /// A path does not exist in a container.
    #[error("{0}")]
    NotFoundPath(String),
    /// No volume has this name.
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// No network has this name.
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// No image has this reference or ID.
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// The request conflicts with the current state (a name in use, a running container).
    #[error("{0}")]
    Conflict(String),
    /// A request argument is malformed or out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The container is not in a state that allows the operation.
    #[error("{0}")]
    WrongState(String),
    /// The container's command could not be run: 127 (not found) or 126 (not executable).
    #[error("{reason}")]
    Exec {
        /// The runtime's explanation.
        reason: String,
        /// 126 or 127.
        code: i32,
    },
    /// The OCI runtime failed.
    #[error("{op}: {source}")]
    Runtime {
        /// What the engine was doing.
        op: String,
        /// What libcontainer reported.
        #[source]
        source: longshore_container::Error,
    },
    /// Networking failed.
    #[error("{op}: {source}")]
    Network {
        /// What the engine was doing.
        op: String,
        /// What libnetwork reported.
        #[source]
        source: longshore_network::Error,
    },
    /// A file or system call of the engine's own failed.
    #[error("{what}: {source}")]
    Io {
        /// What the engine was doing.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
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

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    pub(crate) fn network(op: impl Into<String>) -> impl FnOnce(longshore_network::Error) -> Error {
        let op = op.into();
        move |source| Error::Network { op, source }
    }

    pub(crate) fn runtime(
        op: impl Into<String>,
    ) -> impl FnOnce(longshore_container::Error) -> Error {
        let op = op.into();
        move |source| match source {
            longshore_container::Error::Exec { reason, code, path } => Error::Exec {
                reason: if path.is_empty() {
                    reason
                } else {
                    format!("{path}: {reason}")
                },
                code,
            },
            source => Error::Runtime {
                op: op.clone(),
                source,
            },
        }
    }

    /// Docker's exit status for a command that failed with this error: 126 when the
    /// container's command cannot be invoked, 127 when it is not found, 125 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exec { code, .. } => *code,
            _ => 125,
        }
    }

    /// True when the error is "no such object" (the API's 404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::NoSuchContainer(_)
                | Error::NotFoundPath(_)
                | Error::NoSuchImage(_)
                | Error::NoSuchVolume(_)
                | Error::NoSuchNetwork(_)
                | Error::NotFound { .. }
        )
    }
}
