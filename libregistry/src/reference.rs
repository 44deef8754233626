//! Image references and digests: `longshore-reference`'s types, the same ones libgraph
//! uses, so what this crate pulls is named and addressed exactly as the store names it.

pub use longshore_reference::{Algorithm, DEFAULT_TAG, Digest, Reference};

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = longshore_reference::DEFAULT_DOMAIN;
/// The host that serves Docker Hub's v2 API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
