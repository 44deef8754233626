//! # longshore-engine
//!
//! The seed's *Engine*: jobs that compose the `lib*` crates (pull an image, create and
//! run a container, commit, save), container and image state, events, logs, volumes,
//! and the Docker-compatible Engine API server.
//!
//! Not yet built: no issue has been filed for it; nothing is exported yet.
//!
//! ```
//! assert_eq!(longshore_engine::CRATE_NAME, "longshore-engine");
//! ```

/// The package name, for diagnostics.
pub const CRATE_NAME: &str = "longshore-engine";

/// Errors from engine jobs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested operation is not implemented yet.
    #[error("{0} is not implemented yet in longshore-engine")]
    Unimplemented(&'static str),
}
