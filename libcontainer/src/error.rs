//! The crate's error type.

use std::path::PathBuf;

use crate::caps::CapsError;
use crate::cgroups::CgroupError;
use crate::seccomp::SeccompError;

/// Everything that can go wrong creating or driving a container.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle's `config.json` could not be read or parsed.
    #[error("bundle {path}: cannot load config.json: {reason}")]
    BadBundle {
        /// The bundle directory.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The spec asks for something this runtime refuses.
    #[error("invalid runtime spec: {0}")]
    InvalidSpec(String),
    /// A container id is malformed.
    #[error(
        "invalid container id {0:?}: use 1-1024 characters of [A-Za-z0-9_.+-], not starting with '.'"
    )]
    InvalidId(String),
    /// A container with this id exists already.
    #[error("container {0:?} already exists")]
    Exists(String),
    /// No container with this id.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// The container is in the wrong state for the operation.
    #[error("container {id:?} is {status}, {wanted}")]
    WrongState {
        /// Container id.
        id: String,
        /// Its current status.
        status: String,
        /// What the operation needs.
        wanted: &'static str,
    },
    /// The process's executable could not be found or run.
    #[error("exec {path:?}: {reason}")]
    Exec {
        /// The program as given.
        path: String,
        /// Why it cannot run.
        reason: String,
        /// Docker's exit code for this failure: 126 (cannot invoke) or 127 (not found).
        code: i32,
    },
    /// The container's exit status cannot be known here.
    #[error("exit status of container {id:?} is unknown: {reason}")]
    ExitUnknown {
        /// Container id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Setting up the container inside its namespaces failed (reported by the init process).
    #[error("container init: {0}")]
    Init(String),
    /// A lifecycle hook failed.
    #[error("{hook} hook {path:?} failed: {reason}")]
    Hook {
        /// Which hook list.
        hook: &'static str,
        /// The hook's program.
        path: PathBuf,
        /// Exit status or error.
        reason: String,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What we were doing.
        what: String,
        /// The errno.
        source: nix::Error,
    },
    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Control groups.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// Seccomp.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// Capabilities.
    #[error(transparent)]
    Caps(#[from] CapsError),
    /// The requested feature is not supported by this runtime or host.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to errno results.
#[allow(dead_code)] // used by the process module as it lands
pub(crate) trait SysContext<T> {
    /// Names the operation that failed.
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys {
            what: what(),
            source,
        })
    }
}

impl<T> SysContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}
