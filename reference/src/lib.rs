//! # longshore-reference
//!
//! The two words every longshore crate speaks: a content [`Digest`] (`sha256:<64 hex>`,
//! `sha512:<128 hex>`, as the OCI image spec defines them) and a Docker image
//! [`Reference`] (`[registry[:port]/]path[:tag][@digest]`, with Docker's normalisation
//! to `docker.io/library`). They are defined here once; libgraph and libregistry
//! re-export them, so `longshore_graph::Digest` and `longshore_registry::Digest` are the
//! same type and pass between the crates without conversion.
//!
//! Both are parsed, never built from unchecked text: a `Digest`'s hex part is safe to use
//! as a file name, and every `Reference` prints to a string that parses back to itself.
//!
//! ```
//! use longshore_reference::{Digest, Reference};
//!
//! let r = Reference::parse_with_default_tag("busybox").unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! assert_eq!(r.familiar(), "busybox:latest");
//! assert_eq!(r.to_string().parse::<Reference>().unwrap(), r);
//!
//! let d = Digest::sha256_of(b"");
//! assert_eq!(d.short(), "e3b0c44298fc");
//! let pinned = r.with_digest(d.clone());
//! assert_eq!(pinned.digest(), Some(&d));
//!
//! let err = Reference::parse("BusyBox").unwrap_err();
//! assert!(err.to_string().contains("must be lowercase"), "{err}");
//! ```
#![forbid(unsafe_code)]

pub mod digest;
mod error;
pub mod reference;

pub use digest::{Algorithm, Digest, Hasher, chain_id};
pub use error::{Error, Result};
pub use reference::{DEFAULT_DOMAIN, DEFAULT_TAG, Reference};
