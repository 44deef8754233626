//! The transport: one HTTP client per registry (TLS with `certs.d` CAs and client
//! certificates, or none for insecure registries), endpoints and Docker Hub mirrors, sending
//! with authorization and following redirects without leaking credentials.

use super::*;

impl Client {
    pub(super) fn is_insecure(&self, host: &str) -> bool {
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

    pub(super) async fn send_redirects(
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
}
