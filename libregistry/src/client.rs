//! The HTTP client: endpoints, `/v2/` ping, authentication, redirects, capped reads.

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
    /// Blobs downloaded at the same time (Docker: 3).
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

    fn is_insecure(&self, host: &str) -> bool {
        self.inner
            .opts
            .insecure_registries
            .iter()
            .any(|h| h.trim_end_matches('/') == host)
    }

    /// The reqwest client for `host` (its TLS settings come from certs.d / insecure).
    pub(crate) fn http_for(&self, host: &str) -> Result<reqwest::Client> {
        if let Some(c) = self.inner.http.lock().expect("lock poisoned").get(host) {
            return Ok(c.clone());
        }
        let tls = crate::tls::client_config(
            host,
            self.inner.opts.certs_dir.as_deref(),
            self.is_insecure(host),
        )?;
        let mut builder = reqwest::Client::builder();
        if let Some(p) = &self.inner.opts.proxy {
            builder = builder.proxy(reqwest::Proxy::all(p).map_err(|e| Error::Tls {
                registry: host.to_string(),
                reason: format!("invalid proxy {p:?}: {e}"),
            })?);
        }
        let client = builder
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.inner.opts.user_agent.clone())
            .connect_timeout(self.inner.opts.connect_timeout)
            .read_timeout(self.inner.opts.read_timeout)
            .build()
            .map_err(|e| Error::Tls {
                registry: host.to_string(),
                reason: e.to_string(),
            })?;
        self.inner
            .http
            .lock()
            .expect("lock poisoned")
            .insert(host.to_string(), client.clone());
        Ok(client)
    }

    /// The API host for a registry name (`docker.io` is served by `registry-1.docker.io`).
    pub(crate) fn api_host(registry: &str) -> &str {
        if registry == DOCKER_HUB || registry == "index.docker.io" {
            DOCKER_HUB_API_HOST
        } else {
            registry
        }
    }

    /// Pings `registry` (`GET /v2/`), learning its scheme and auth challenge.
    pub async fn ping(&self, registry: &str) -> Result<()> {
        self.inner
            .hosts
            .lock()
            .expect("lock poisoned")
            .remove(Self::api_host(registry));
        self.endpoint(registry).await.map(|_| ())
    }

    /// The endpoint for `registry`, pinging it the first time.
    pub(crate) async fn endpoint(&self, registry: &str) -> Result<Endpoint> {
        let host = Self::api_host(registry).to_string();
        self.endpoint_at(&host, registry, None).await
    }

    /// Endpoints to pull from: the mirrors (for Docker Hub) then the origin.
    pub(crate) fn mirror_bases(&self, registry: &str) -> Vec<Url> {
        if registry != DOCKER_HUB {
            return Vec::new();
        }
        self.inner
            .opts
            .mirrors
            .iter()
            .filter_map(|m| Url::parse(m).ok())
            .collect()
    }

    pub(crate) async fn endpoint_at(
        &self,
        host: &str,
        cred_key: &str,
        base: Option<Url>,
    ) -> Result<Endpoint> {
        if let Some((base, _)) = self.inner.hosts.lock().expect("lock poisoned").get(host) {
            return Ok(Endpoint {
                host: host.to_string(),
                cred_key: cred_key.to_string(),
                base: base.clone(),
            });
        }
        let candidates: Vec<Url> = match base {
            Some(b) => vec![b],
            None => {
                let mut v = vec![Url::parse(&format!("https://{host}/")).map_err(|_| {
                    Error::InvalidReference {
                        reference: host.to_string(),
                        reason: "registry host does not form a URL".into(),
                    }
                })?];
                if self.is_insecure(host) {
                    v.push(Url::parse(&format!("http://{host}/")).expect("checked above"));
                }
                v
            }
        };
        let mut last_err = None;
        let fallback = candidates.len() > 1;
        for base in candidates {
            let url = base.join("v2/").expect("a base URL joins v2/");
            let client = self.http_for(host)?;
            let mut rb = client.get(url.clone());
            if fallback && base.scheme() == "https" {
                // A plain-HTTP server may never answer a TLS hello: do not wait long.
                rb = rb.timeout(self.inner.opts.connect_timeout);
            }
            match rb.send().await {
                Ok(resp) => {
                    let challenge = match resp.status() {
                        s if s.is_success() => Challenge::None,
                        StatusCode::UNAUTHORIZED => {
                            let h = resp
                                .headers()
                                .get(WWW_AUTHENTICATE)
                                .and_then(|v| v.to_str().ok())
                                .ok_or_else(|| Error::BadChallenge {
                                    registry: host.to_string(),
                                    challenge: String::new(),
                                    reason: "401 without WWW-Authenticate",
                                })?;
                            parse_challenge(host, h)?
                        }
                        // Not a registry on this scheme; try the next candidate.
                        s => {
                            last_err = Some(Error::Status {
                                registry: host.to_string(),
                                what: "/v2/ ping".into(),
                                status: s.as_u16(),
                                body: read_error_body(resp).await,
                            });
                            continue;
                        }
                    };
                    self.inner
                        .hosts
                        .lock()
                        .expect("lock poisoned")
                        .insert(host.to_string(), (base.clone(), challenge));
                    return Ok(Endpoint {
                        host: host.to_string(),
                        cred_key: cred_key.to_string(),
                        base,
                    });
                }
                Err(e) => {
                    last_err = Some(Error::Http {
                        registry: host.to_string(),
                        url: url.to_string(),
                        source: e,
                    })
                }
            }
        }
        Err(last_err.expect("at least one candidate"))
    }

    fn challenge(&self, host: &str) -> Challenge {
        self.inner
            .hosts
            .lock()
            .expect("lock poisoned")
            .get(host)
            .map(|(_, c)| c.clone())
            .unwrap_or(Challenge::None)
    }

    /// The `Authorization` value for a request with `scopes`.
    pub(crate) async fn authorization(
        &self,
        ep: &Endpoint,
        scopes: &[String],
    ) -> Result<Option<String>> {
        match self.challenge(&ep.host) {
            Challenge::None => Ok(None),
            Challenge::Basic { .. } => Ok(self
                .credentials_for(&ep.cred_key)?
                .map(|c| c.basic_header())),
            Challenge::Bearer { realm, service, .. } => {
                let key = scopes.join(" ");
                let cached = || {
                    self.inner
                        .tokens
                        .lock()
                        .expect("lock poisoned")
                        .get(&ep.host, &key)
                };
                if let Some(t) = cached() {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let _guard = self.inner.token_fetch.lock().await;
                if let Some(t) = cached() {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let creds = self.credentials_for(&ep.cred_key)?;
                let (token, expires_in) = self
                    .fetch_token(&realm, service.as_deref(), scopes, creds.as_ref())
                    .await?;
                self.inner.tokens.lock().expect("lock poisoned").insert(
                    &ep.host,
                    &key,
                    token.clone(),
                    expires_in,
                );
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    pub(crate) async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<(String, Option<u64>)> {
        let terr = |reason: String| Error::Token {
            realm: realm.to_string(),
            reason,
        };
        let mut url = Url::parse(realm).map_err(|e| terr(e.to_string()))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
            if let Some(c) = creds {
                q.append_pair("account", &c.username);
            }
        }
        let host = url_host(&url);
        let mut rb = self.http_for(&host)?.get(url.clone());
        if let Some(c) = creds {
            rb = rb.header(AUTHORIZATION, c.basic_header());
        }
        let resp = rb.send().await.map_err(|e| terr(e.to_string()))?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Error::Unauthorized {
                    registry: host,
                    what: format!("a token for {}", scopes.join(" ")),
                    status: resp.status().as_u16(),
                });
            }
            s => {
                return Err(terr(format!(
                    "HTTP {}: {}",
                    s.as_u16(),
                    read_error_body(resp).await
                )));
            }
        }
        let body = read_capped(resp, 1 << 20, &host, "token response").await?;
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| terr(format!("invalid token JSON: {e}")))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| terr("answer has no token".into()))?;
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(terr("token has characters not allowed in a header".into()));
        }
        Ok((token, t.expires_in))
    }

    /// Sends a request with authentication: cached token first, one retry on 401 with a
    /// fresh one. Redirects are followed here, dropping credentials on other origins.
    pub(crate) async fn send(
        &self,
        ep: &Endpoint,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: &BodySrc<'_>,
        scopes: &[String],
    ) -> Result<Response> {
        let mut auth = self.authorization(ep, scopes).await?;
        let mut retried = false;
        loop {
            let resp = self
                .send_redirects(
                    ep,
                    method.clone(),
                    url.clone(),
                    &headers,
                    body,
                    auth.as_deref(),
                )
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED || retried {
                return Ok(resp);
            }
            retried = true;
            if let Some(h) = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
            {
                let ch = parse_challenge(&ep.host, h)?;
                if let Some(entry) = self
                    .inner
                    .hosts
                    .lock()
                    .expect("lock poisoned")
                    .get_mut(&ep.host)
                {
                    entry.1 = ch;
                }
            }
            if let Some(sent) = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
                self.inner.tokens.lock().expect("lock poisoned").remove_if(
                    &ep.host,
                    &scopes.join(" "),
                    sent,
                );
            }
            let fresh = self.authorization(ep, scopes).await?;
            if fresh.is_none()
                || (fresh == auth && fresh.as_deref().is_some_and(|a| a.starts_with("Basic")))
            {
                return Ok(resp);
            }
            auth = fresh;
        }
    }

    async fn send_redirects(
        &self,
        ep: &Endpoint,
        mut method: Method,
        url: Url,
        headers: &HeaderMap,
        body: &BodySrc<'_>,
        auth: Option<&str>,
    ) -> Result<Response> {
        // Credentials belong to the registry endpoint: never sent to any other origin,
        // whether reached by a redirect or named by an upload Location.
        let origin = ep.base.origin();
        let first = url.to_string();
        let mut cur = url;
        let mut seen: Vec<Url> = Vec::new();
        for _ in 0..=MAX_REDIRECTS {
            let host = url_host(&cur);
            let client = self.http_for(&host)?;
            let mut rb = client
                .request(method.clone(), cur.clone())
                .headers(headers.clone());
            // Credentials only go to the origin they were issued for.
            if let Some(a) = auth
                && cur.origin() == origin
            {
                let v = HeaderValue::from_str(a).map_err(|_| Error::Token {
                    realm: ep.host.clone(),
                    reason: "credentials are not a valid header value".into(),
                })?;
                rb = rb.header(AUTHORIZATION, v);
            }
            if method != Method::GET
                && method != Method::HEAD
                && let Some(b) = body.make().await?
            {
                rb = rb.body(b);
            }
            let resp = rb.send().await.map_err(|e| Error::Http {
                registry: ep.host.clone(),
                url: cur.to_string(),
                source: e,
            })?;
            let status = resp.status();
            if status.is_redirection()
                && let Some(loc) = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok())
            {
                let next = cur.join(loc).map_err(|_| Error::Status {
                    registry: ep.host.clone(),
                    what: format!("redirect from {cur}"),
                    status: status.as_u16(),
                    body: format!("invalid Location {loc:?}"),
                })?;
                if !matches!(next.scheme(), "http" | "https") || seen.contains(&next) || next == cur
                {
                    return Err(Error::Redirect {
                        url: first,
                        hops: seen.len() + 1,
                    });
                }
                if status == StatusCode::SEE_OTHER {
                    method = Method::GET;
                }
                seen.push(std::mem::replace(&mut cur, next));
                continue;
            }
            return Ok(resp);
        }
        Err(Error::Redirect {
            url: first,
            hops: seen.len(),
        })
    }

    /// Turns a failed response into an error naming `what`.
    pub(crate) async fn status_error(ep: &Endpoint, what: &str, resp: Response) -> Error {
        let status = resp.status();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized {
                registry: ep.host.clone(),
                what: what.to_string(),
                status: status.as_u16(),
            },
            StatusCode::NOT_FOUND => Error::NotFound {
                registry: ep.host.clone(),
                what: what.to_string(),
            },
            _ => Error::Status {
                registry: ep.host.clone(),
                what: what.to_string(),
                status: status.as_u16(),
                body: read_error_body(resp).await,
            },
        }
    }

    /// Verifies credentials against `registry` and saves them to the credential store.
    pub async fn login(&self, registry: &str, creds: Credentials) -> Result<()> {
        let host = Self::api_host(registry).to_string();
        self.ping(registry).await?;
        let ep = self.endpoint(registry).await?;
        let url = ep.url("v2/")?;
        let auth = match self.challenge(&host) {
            Challenge::None => None,
            Challenge::Basic { .. } => Some(creds.basic_header()),
            Challenge::Bearer { realm, service, .. } => {
                let (t, _) = self
                    .fetch_token(&realm, service.as_deref(), &[], Some(&creds))
                    .await?;
                Some(format!("Bearer {t}"))
            }
        };
        let resp = self
            .send_redirects(
                &ep,
                Method::GET,
                url,
                &HeaderMap::new(),
                &BodySrc::None,
                auth.as_deref(),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(Self::status_error(&ep, "login", resp).await);
        }
        self.set_credentials(registry, creds.clone());
        if let Some(store) = &self.inner.opts.credential_store {
            store.store(registry, &creds)?;
        }
        Ok(())
    }

    /// Forgets credentials for `registry` here and in the credential store.
    pub fn logout(&self, registry: &str) -> Result<bool> {
        let key = CredentialStore::server_key(registry);
        let mut removed = self
            .inner
            .creds
            .lock()
            .expect("lock poisoned")
            .remove(&key)
            .is_some();
        if let Some(store) = &self.inner.opts.credential_store {
            removed |= store.erase(registry)?;
        }
        *self.inner.tokens.lock().expect("lock poisoned") = TokenCache::default();
        Ok(removed)
    }

    /// Lists a repository's tags (following `Link` pagination).
    pub async fn tags(&self, registry: &str, repository: &str) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let ep = self.endpoint(registry).await?;
        let scopes = [format!("repository:{repository}:pull")];
        let mut url = ep.url(&format!("v2/{repository}/tags/list?n=1000"))?;
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let resp = self
                .send(
                    &ep,
                    Method::GET,
                    url.clone(),
                    HeaderMap::new(),
                    &BodySrc::None,
                    &scopes,
                )
                .await?;
            if !resp.status().is_success() {
                return Err(Self::status_error(&ep, &format!("tags of {repository}"), resp).await);
            }
            let next = next_link(&url, resp.headers());
            let body = read_capped(resp, 16 << 20, &ep.host, "tag list").await?;
            let t: Tags = serde_json::from_slice(&body).map_err(|e| Error::Status {
                registry: ep.host.clone(),
                what: format!("tags of {repository}"),
                status: 200,
                body: format!("invalid JSON: {e}"),
            })?;
            out.extend(t.tags.unwrap_or_default());
            match next {
                Some(n) => url = n,
                None => break,
            }
        }
        Ok(out)
    }

    /// Lists the registry's repositories (`/v2/_catalog`, following pagination).
    pub async fn catalog(&self, registry: &str) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let ep = self.endpoint(registry).await?;
        let scopes = ["registry:catalog:*".to_string()];
        let mut url = ep.url("v2/_catalog?n=1000")?;
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let resp = self
                .send(
                    &ep,
                    Method::GET,
                    url.clone(),
                    HeaderMap::new(),
                    &BodySrc::None,
                    &scopes,
                )
                .await?;
            if !resp.status().is_success() {
                return Err(Self::status_error(&ep, "catalog", resp).await);
            }
            let next = next_link(&url, resp.headers());
            let body = read_capped(resp, 16 << 20, &ep.host, "catalog").await?;
            let c: Catalog = serde_json::from_slice(&body).map_err(|e| Error::Status {
                registry: ep.host.clone(),
                what: "catalog".into(),
                status: 200,
                body: format!("invalid JSON: {e}"),
            })?;
            out.extend(c.repositories);
            match next {
                Some(n) => url = n,
                None => break,
            }
        }
        Ok(out)
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

fn next_link(base: &Url, headers: &HeaderMap) -> Option<Url> {
    let link = headers.get("link")?.to_str().ok()?;
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    if !link[end..].contains("rel=\"next\"") {
        return None;
    }
    let next = base.join(&link[start..end]).ok()?;
    (next.origin() == base.origin()).then_some(next)
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
