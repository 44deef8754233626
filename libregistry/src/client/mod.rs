//! The HTTP client: options, the `Client`, capped reads. Its parts: `transport` (TLS,
//! endpoints and mirrors, sending and redirects), `token` (challenges, tokens, login) and
//! `listing` (tags and catalog).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;

use crate::auth::{Challenge, Credentials, TokenCache, TokenResponse, parse_challenge};
use crate::credentials::CredentialStore;
use crate::error::{Error, Result};
use crate::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};

mod listing;
mod token;
mod transport;

/// Redirects followed per request before giving up.
pub const MAX_REDIRECTS: usize = 10;

/// Settings of a [`Client`]. `Default` gives Docker's behaviour.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Registries (`host[:port]`) reached over plain HTTP or TLS without verification
    /// (the seed's `--insecure-registry`). HTTPS is tried first, then HTTP.
    pub insecure_registries: Vec<String>,
    /// Mirrors for Docker Hub (`https://mirror.example`), tried before the origin.
    pub mirrors: Vec<String>,
    /// A `certs.d` directory with `<host[:port]>/ca.crt` (and `client.cert`/`client.key`).
    pub certs_dir: Option<PathBuf>,
    /// Where stored credentials are read from and `login` saves to.
    pub credential_store: Option<CredentialStore>,
    /// Layer blobs downloaded at the same time (Docker: 3); an image's config is fetched
    /// beside them.
    pub max_concurrent_downloads: usize,
    /// Blobs uploaded at the same time (Docker: 5).
    pub max_concurrent_uploads: usize,
    /// Upload blobs larger than this in `PATCH` chunks of this size; `None`: one `PUT`.
    pub chunk_size: Option<u64>,
    /// Largest manifest or index accepted.
    pub max_manifest_size: u64,
    /// Largest image config accepted.
    pub max_config_size: u64,
    /// Attempts after a failed blob transfer (resumed with `Range`).
    pub retries: u32,
    /// First retry delay; doubled at each attempt.
    pub retry_backoff: Duration,
    /// Longest wait for data on an open connection.
    pub read_timeout: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Proxy URL for all registry traffic. `None`: `HTTPS_PROXY`, `HTTP_PROXY` and
    /// `NO_PROXY` from the environment apply.
    pub proxy: Option<String>,
}

impl ClientOptions {
    /// The defaults (as [`Default`]), to change with the setters below.
    pub fn new() -> ClientOptions {
        ClientOptions::default()
    }

    /// Sets [`ClientOptions::insecure_registries`].
    pub fn insecure_registries(mut self, insecure_registries: Vec<String>) -> ClientOptions {
        self.insecure_registries = insecure_registries;
        self
    }

    /// Sets [`ClientOptions::mirrors`].
    pub fn mirrors(mut self, mirrors: Vec<String>) -> ClientOptions {
        self.mirrors = mirrors;
        self
    }

    /// Sets [`ClientOptions::certs_dir`].
    pub fn certs_dir(mut self, certs_dir: Option<PathBuf>) -> ClientOptions {
        self.certs_dir = certs_dir;
        self
    }

    /// Sets [`ClientOptions::credential_store`].
    pub fn credential_store(mut self, credential_store: Option<CredentialStore>) -> ClientOptions {
        self.credential_store = credential_store;
        self
    }

    /// Sets [`ClientOptions::max_concurrent_downloads`].
    pub fn max_concurrent_downloads(mut self, max_concurrent_downloads: usize) -> ClientOptions {
        self.max_concurrent_downloads = max_concurrent_downloads;
        self
    }

    /// Sets [`ClientOptions::max_concurrent_uploads`].
    pub fn max_concurrent_uploads(mut self, max_concurrent_uploads: usize) -> ClientOptions {
        self.max_concurrent_uploads = max_concurrent_uploads;
        self
    }

    /// Sets [`ClientOptions::chunk_size`].
    pub fn chunk_size(mut self, chunk_size: Option<u64>) -> ClientOptions {
        self.chunk_size = chunk_size;
        self
    }

    /// Sets [`ClientOptions::max_manifest_size`].
    pub fn max_manifest_size(mut self, max_manifest_size: u64) -> ClientOptions {
        self.max_manifest_size = max_manifest_size;
        self
    }

    /// Sets [`ClientOptions::max_config_size`].
    pub fn max_config_size(mut self, max_config_size: u64) -> ClientOptions {
        self.max_config_size = max_config_size;
        self
    }

    /// Sets [`ClientOptions::retries`].
    pub fn retries(mut self, retries: u32) -> ClientOptions {
        self.retries = retries;
        self
    }

    /// Sets [`ClientOptions::retry_backoff`].
    pub fn retry_backoff(mut self, retry_backoff: Duration) -> ClientOptions {
        self.retry_backoff = retry_backoff;
        self
    }

    /// Sets [`ClientOptions::read_timeout`].
    pub fn read_timeout(mut self, read_timeout: Duration) -> ClientOptions {
        self.read_timeout = read_timeout;
        self
    }

    /// Sets [`ClientOptions::connect_timeout`].
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> ClientOptions {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets [`ClientOptions::user_agent`].
    pub fn user_agent(mut self, user_agent: String) -> ClientOptions {
        self.user_agent = user_agent;
        self
    }

    /// Sets [`ClientOptions::proxy`].
    pub fn proxy(mut self, proxy: Option<String>) -> ClientOptions {
        self.proxy = proxy;
        self
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            mirrors: Vec::new(),
            certs_dir: None,
            credential_store: None,
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
            chunk_size: None,
            max_manifest_size: 4 << 20,
            max_config_size: 16 << 20,
            retries: 3,
            retry_backoff: Duration::from_millis(500),
            read_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
            user_agent: concat!("longshore/", env!("CARGO_PKG_VERSION")).to_string(),
            proxy: None,
        }
    }
}

/// A registry host we talk to: its API base URL and what it asks for.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `host[:port]` of the API.
    pub host: String,
    /// The name credentials are stored under (`docker.io` for Docker Hub).
    pub cred_key: String,
    /// `scheme://host[:port]`.
    pub base: Url,
}

impl Endpoint {
    pub fn url(&self, path: &str) -> Result<Url> {
        self.base.join(path).map_err(|_| Error::InvalidReference {
            reference: path.to_string(),
            reason: "does not form a valid URL".into(),
        })
    }
}

/// A request body that can be produced again (for auth retries and redirects).
pub(crate) enum BodySrc<'a> {
    None,
    Bytes(Bytes),
    Stream(&'a (dyn Fn() -> BoxFuture<'a, Result<reqwest::Body>> + Send + Sync)),
}

impl BodySrc<'_> {
    async fn make(&self) -> Result<Option<reqwest::Body>> {
        Ok(match self {
            BodySrc::None => None,
            BodySrc::Bytes(b) => Some(reqwest::Body::from(b.clone())),
            BodySrc::Stream(f) => Some(f().await?),
        })
    }
}

struct Inner {
    opts: ClientOptions,
    http: Mutex<HashMap<String, reqwest::Client>>,
    hosts: Mutex<HashMap<String, (Url, Challenge)>>,
    tokens: Mutex<TokenCache>,
    /// Held while fetching a token, so concurrent requests share one fetch.
    token_fetch: tokio::sync::Mutex<()>,
    creds: Mutex<HashMap<String, Credentials>>,
}

/// An OCI distribution client. Cheap to clone; clones share connections and tokens.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.inner.opts)
            .finish()
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new(ClientOptions::default())
    }
}

impl Client {
    /// A client with the given options.
    pub fn new(opts: ClientOptions) -> Self {
        Client {
            inner: Arc::new(Inner {
                opts,
                http: Mutex::new(HashMap::new()),
                hosts: Mutex::new(HashMap::new()),
                tokens: Mutex::new(TokenCache::default()),
                token_fetch: tokio::sync::Mutex::new(()),
                creds: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// Uses `creds` for `registry` in this client (not saved; see [`Client::login`]).
    pub fn set_credentials(&self, registry: &str, creds: Credentials) {
        self.inner
            .creds
            .lock()
            .expect("lock poisoned")
            .insert(CredentialStore::server_key(registry), creds);
    }

    pub(crate) fn credentials_for(&self, registry: &str) -> Result<Option<Credentials>> {
        let key = CredentialStore::server_key(registry);
        if let Some(c) = self.inner.creds.lock().expect("lock poisoned").get(&key) {
            return Ok(Some(c.clone()));
        }
        match &self.inner.opts.credential_store {
            Some(store) => store.get(registry),
            None => Ok(None),
        }
    }
}

/// `host[:port]` of a URL.
pub(crate) fn url_host(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

/// Reads a whole body, failing once it exceeds `limit` bytes.
pub(crate) async fn read_capped(
    resp: Response,
    limit: u64,
    registry: &str,
    what: &str,
) -> Result<Bytes> {
    let too_large = || Error::TooLarge {
        registry: registry.to_string(),
        what: what.to_string(),
        limit,
    };
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(too_large());
    }
    let url = resp.url().to_string();
    let mut buf = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Http {
            registry: registry.to_string(),
            url: url.clone(),
            source: e,
        })?;
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The first 512 bytes of an error body, for messages.
pub(crate) async fn read_error_body(resp: Response) -> String {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk);
        if out.len() >= 512 {
            out.truncate(512);
            break;
        }
    }
    String::from_utf8_lossy(&out).trim().to_string()
}
