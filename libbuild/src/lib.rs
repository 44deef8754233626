//! # longshore-build
//!
//! Building images from a Dockerfile: the parser for every instruction the seed
//! describes, a build plan, a layer cache and an executor that runs steps through a
//! step-runner trait and commits layers into `longshore-build`.
//!
//! Not yet built: no issue has been filed for it; nothing is exported yet.
//!
//! ```
//! assert_eq!(longshore_build::CRATE_NAME, "longshore-build");
//! ```

/// The package name, for diagnostics.
pub const CRATE_NAME: &str = "longshore-build";

/// Errors from parsing and building.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested operation is not implemented yet.
    #[error("{0} is not implemented yet in longshore-build")]
    Unimplemented(&'static str),
}
