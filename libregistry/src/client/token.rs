//! Token auth: the registry's challenge, Basic or Bearer authorization (tokens cached per
//! scope), `login` and `logout`.

use super::*;

impl Client {
    pub(super) fn challenge(&self, host: &str) -> Challenge {
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
}
