//! # longshore-graph
//!
//! The image and layer store: the seed's *Graph* and its *graph drivers*. Blobs are
//! addressed by digest, images are OCI manifests and configs, and layers are unpacked
//! by a graph driver (`overlay` or `vfs`) into the read-only lower layers of a
//! container's root filesystem.
//!
//! This crate is being built under issue 3; nothing is exported yet.
//!
//! ```
//! assert_eq!(longshore_graph::CRATE_NAME, "longshore-graph");
//! ```

/// The package name, for diagnostics.
pub const CRATE_NAME: &str = "longshore-graph";

/// Errors from the image and layer store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested operation is not implemented yet.
    #[error("{0} is not implemented yet in longshore-graph")]
    Unimplemented(&'static str),
}
