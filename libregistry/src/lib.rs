//! # longshore-registry
//!
//! The client side of the OCI distribution spec (Docker Registry HTTP API v2): the
//! seed's *Registry* module. It pulls and pushes images, authenticates (Basic and
//! Bearer tokens, with a token cache), lists tags and repositories, searches, and keeps
//! credentials in Docker's `config.json` format.
//!
//! Blobs stream into a [`ContentStore`] (libgraph implements it; [`DirStore`] is an
//! OCI image layout directory), verified by size and sha256 as they arrive, several at
//! a time, resuming with HTTP `Range` after a broken connection. Nothing is visible in
//! the store until it is verified; dropping a pull future leaves no partial blob.
//!
//! Pull an image into a directory and push it from there to another registry:
//!
//! ```no_run
//! use longshore_registry::{Client, ClientOptions, DirStore, PullOptions, PushOptions, Reference};
//!
//! # async fn demo() -> Result<(), longshore_registry::Error> {
//! let client = Client::new(
//!     ClientOptions::new().insecure_registries(vec!["127.0.0.1:5000".into()]),
//! );
//! let dir = DirStore::open("/tmp/longshore-busybox")?;
//! let src: Reference = "127.0.0.1:5000/library/busybox:latest".parse()?;
//! let pulled = client.pull_to_dir(&src, &dir, &PullOptions::default()).await?;
//! println!("pulled {} ({} layers)", pulled.manifest.digest(), pulled.layers.len());
//!
//! let dest: Reference = "127.0.0.1:5000/mirror/busybox:1".parse()?;
//! let pushed = client.push_from_dir(&dir, "latest", &dest, &PushOptions::default()).await?;
//! println!("pushed {}", pushed.digest);
//! # Ok(()) }
//! ```
//!
//! Progress: set [`PullOptions::progress`] to a channel sender and draw the
//! [`Progress`] events (waiting, downloading bytes/total, verifying, done, already
//! exists) as they arrive.
//!
//! ## Authentication and registry configuration
//!
//! * `/v2/` is pinged once per host; a `401` names Basic or Bearer. Bearer tokens are
//!   fetched from the realm (with Basic credentials when there are some), cached per
//!   registry and scope until `expires_in`, shared by concurrent requests, and replaced
//!   once when the registry answers `401`.
//! * Credentials come from [`Client::set_credentials`] or a [`CredentialStore`]
//!   (Docker's `config.json`: `auths`, `credHelpers`, `credsStore`). [`Client::login`]
//!   checks them against the registry before saving (mode 0600); [`Client::logout`]
//!   removes them. They are never sent to another origin, not after a redirect and not
//!   to an upload `Location` on another host.
//! * [`ClientOptions`] holds insecure registries (HTTPS without verification, then plain
//!   HTTP), Docker Hub mirrors, a `certs.d` directory (`<host:port>/*.crt` CAs,
//!   `client.cert`/`client.key`), size caps, concurrency, chunk size and retries.
//!   Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`.
//!
//! ## The content store
//!
//! [`DirStore`] works offline too; this runs as a doctest:
//!
//! ```
//! use longshore_registry::{BlobWriter, ContentStore, DirStore, Reference, sha256_digest};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let r: Reference = "busybox:1.36".parse().unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:1.36");
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = DirStore::open(dir.path()).unwrap();
//! let digest = sha256_digest(b"layer bytes");
//! let mut w = store.writer(&digest, 11).await.unwrap();
//! w.write(b"layer bytes").await.unwrap();
//! w.commit().await.unwrap(); // verified, then renamed into blobs/sha256/
//! assert_eq!(store.has(&digest).await.unwrap(), Some(11));
//! # }
//! ```

#![forbid(unsafe_code)]

mod auth;
mod client;
mod credentials;
mod error;
mod progress;
mod pull;
mod push;
mod reference;
mod search;
mod store;
mod tls;

pub use auth::{Challenge, Credentials, parse_challenge};
pub use client::{Client, ClientOptions, MAX_REDIRECTS};
pub use credentials::{CredentialStore, DOCKER_HUB_AUTH_KEY};
pub use error::{Error, Result};
pub use progress::{Progress, ProgressEvent, ProgressSender};
pub use pull::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, Platform, PullOptions,
    PulledImage, select_platform,
};
pub use push::{PushOptions, PushedImage};
pub use reference::{Algorithm, DOCKER_HUB, DOCKER_HUB_API_HOST, Digest, Reference};
pub use search::{SearchOptions, SearchResult};
pub use store::{
    BlobWriter, ContentStore, DirBlobWriter, DirStore, REF_NAME_ANNOTATION, Verifier,
    sha256_digest, sha256_hex,
};

/// The package name, for diagnostics.
pub const CRATE_NAME: &str = "longshore-registry";
