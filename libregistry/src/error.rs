//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Errors from registry operations. Each message names the object and the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image reference could not be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A digest (given, or in a manifest or index) is malformed.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The text given.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry could not be reached or the connection broke.
    #[error("cannot talk to registry {registry} ({url}): {source}")]
    Http {
        /// Registry host.
        registry: String,
        /// URL of the failed request.
        url: String,
        /// Underlying transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused our credentials or wants some we do not have.
    #[error(
        "registry {registry} denied access to {what} (HTTP {status}): log in with valid credentials"
    )]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// What we asked for.
        what: String,
        /// HTTP status (401 or 403).
        status: u16,
    },
    /// The registry has no such manifest, blob or repository.
    #[error("{what} not found in {registry}")]
    NotFound {
        /// Registry host.
        registry: String,
        /// What we asked for.
        what: String,
    },
    /// The registry answered with an unexpected status.
    #[error("registry {registry} answered HTTP {status} for {what}: {body}")]
    Status {
        /// Registry host.
        registry: String,
        /// What we asked for.
        what: String,
        /// HTTP status.
        status: u16,
        /// Start of the response body (registry error JSON).
        body: String,
    },
    /// The `WWW-Authenticate` challenge could not be understood.
    #[error("registry {registry} sent an unusable auth challenge {challenge:?}: {reason}")]
    BadChallenge {
        /// Registry host.
        registry: String,
        /// The header value.
        challenge: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token service failed.
    #[error("token service {realm} failed: {reason}")]
    Token {
        /// Realm URL from the challenge.
        realm: String,
        /// What went wrong.
        reason: String,
    },
    /// A response was larger than allowed (hostile or broken registry).
    #[error("{what} from {registry} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Registry host.
        registry: String,
        /// What we fetched.
        what: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// Content did not hash to the digest that names it.
    #[error("{what} from {registry} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// Registry host.
        registry: String,
        /// What we fetched or pushed.
        what: String,
        /// The expected digest.
        expected: String,
        /// The computed digest.
        actual: String,
    },
    /// Content had a different size than its descriptor says.
    #[error("{what} from {registry} has {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// Registry host.
        registry: String,
        /// What we fetched.
        what: String,
        /// Size from the descriptor.
        expected: u64,
        /// Size received (so far).
        actual: u64,
    },
    /// A body ended early and retries with `Range` did not complete it.
    #[error(
        "{what} from {registry}: transfer failed after {attempts} attempts ({received} of {expected} bytes): {reason}"
    )]
    Incomplete {
        /// Registry host.
        registry: String,
        /// What we fetched.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// Bytes received.
        received: u64,
        /// Bytes expected.
        expected: u64,
        /// The last failure.
        reason: String,
    },
    /// Too many redirects or a redirect loop.
    #[error("redirect loop or too many redirects ({hops}) starting at {url}")]
    Redirect {
        /// The first URL.
        url: String,
        /// Redirects followed.
        hops: usize,
    },
    /// A response that is not what the API defines (e.g. search results that do not parse).
    #[error("{what} from {registry}: {reason}")]
    InvalidResponse {
        /// Registry host.
        registry: String,
        /// What was asked for.
        what: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// A manifest or index could not be understood.
    #[error("invalid manifest {what} from {registry}: {reason}")]
    InvalidManifest {
        /// Registry host (or local directory).
        registry: String,
        /// The manifest reference.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// No manifest in an index matches the wanted platform.
    #[error("no manifest for platform {platform} in {reference} (available: {available})")]
    NoMatchingPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform wanted.
        platform: String,
        /// The platforms offered.
        available: String,
    },
    /// A platform string like `linux/arm64/v8` could not be parsed.
    #[error("invalid platform {0:?}: expected os/arch[/variant]")]
    InvalidPlatform(String),
    /// A digest uses an algorithm this crate cannot verify.
    #[error("unsupported digest {0}: only sha256 can be verified")]
    UnsupportedDigest(String),
    /// The content store failed.
    #[error("content store could not {op} blob {digest}: {source}")]
    Store {
        /// Operation (`check`, `write`, `commit`, `read`).
        op: &'static str,
        /// Blob digest.
        digest: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// The credentials file is unreadable or malformed.
    #[error("credentials file {path}: {reason}")]
    Credentials {
        /// File path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A `docker-credential-<name>` helper failed.
    #[error("credential helper docker-credential-{helper} failed to {op} for {server}: {reason}")]
    CredentialHelper {
        /// Helper name.
        helper: String,
        /// `get`, `store` or `erase`.
        op: &'static str,
        /// Registry.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// TLS material for a registry could not be loaded.
    #[error("TLS setup for registry {registry}: {reason}")]
    Tls {
        /// Registry host.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// A local directory lacks the named image.
    #[error("image {name:?} not found in OCI layout {path}")]
    LocalNotFound {
        /// Layout directory.
        path: PathBuf,
        /// Reference name.
        name: String,
    },
    /// File I/O outside the content store.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<longshore_reference::Error> for Error {
    fn from(e: longshore_reference::Error) -> Error {
        match e {
            longshore_reference::Error::InvalidDigest { digest, reason } => {
                Error::InvalidDigest { digest, reason }
            }
            longshore_reference::Error::InvalidReference { reference, reason } => {
                Error::InvalidReference { reference, reason }
            }
            // the enum is non_exhaustive: a future variant keeps its message
            other => Error::InvalidReference {
                reference: String::new(),
                reason: other.to_string(),
            },
        }
    }
}
