//! # longshore-registry
//!
//! The client side of the OCI distribution spec (Docker Registry HTTP API v2): the
//! seed's *Registry* module. Pull, push, authentication and search.
//!
//! This crate is being built under issue 4; nothing is exported yet.
//!
//! ```
//! assert_eq!(longshore_registry::CRATE_NAME, "longshore-registry");
//! ```

/// The package name, for diagnostics.
pub const CRATE_NAME: &str = "longshore-registry";

/// Errors from registry operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested operation is not implemented yet.
    #[error("{0} is not implemented yet in longshore-registry")]
    Unimplemented(&'static str),
}
