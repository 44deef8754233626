//! Registry authentication: `WWW-Authenticate` challenges, Basic credentials and
//! Bearer tokens with a cache keyed by registry and scope.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use crate::error::{Error, Result};

/// A username and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl Credentials {
    /// Builds credentials.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization: Basic ...` header value.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            B64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What `/v2/` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No authentication needed.
    None,
    /// HTTP Basic.
    Basic {
        /// Realm (informational).
        realm: String,
    },
    /// Bearer token from a token service.
    Bearer {
        /// Token service URL.
        realm: String,
        /// `service` parameter.
        service: Option<String>,
        /// `scope` parameter, when the registry named one.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value.
pub fn parse_challenge(registry: &str, header: &str) -> Result<Challenge> {
    let bad = |reason| Error::BadChallenge {
        registry: registry.to_string(),
        challenge: header.chars().take(200).collect(),
        reason,
    };
    let header = header.trim();
    let (scheme, rest) = match header.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((s, r)) => (s, r),
        None => (header, ""),
    };
    let params = parse_params(rest).ok_or_else(|| bad("malformed parameters"))?;
    if scheme.eq_ignore_ascii_case("basic") {
        Ok(Challenge::Basic {
            realm: params.get("realm").cloned().unwrap_or_default(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let realm = params
            .get("realm")
            .cloned()
            .ok_or_else(|| bad("Bearer challenge without realm"))?;
        let url = reqwest::Url::parse(&realm).map_err(|_| bad("realm is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("realm must be an http(s) URL"));
        }
        Ok(Challenge::Bearer {
            realm,
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    } else {
        Err(bad("unknown auth scheme"))
    }
}

/// Parses `key="value", key2=value2` (auth-param list, RFC 7235).
fn parse_params(s: &str) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let key = s[ks..i].trim().to_ascii_lowercase();
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            loop {
                if i >= b.len() {
                    return None;
                }
                match b[i] {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' if i + 1 < b.len() => {
                        v.push(b[i + 1] as char);
                        i += 2;
                    }
                    _ => {
                        let ch = s[i..].chars().next()?;
                        v.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            v
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            s[vs..i].trim().to_string()
        };
        out.insert(key, value);
    }
    Some(out)
}

/// A token service answer.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A cached bearer token.
#[derive(Debug, Clone)]
pub(crate) struct CachedToken {
    pub token: String,
    pub expires: Instant,
}

/// Token cache keyed by (registry, scopes).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: HashMap<(String, String), CachedToken>,
}

impl TokenCache {
    pub fn get(&self, registry: &str, scope: &str) -> Option<String> {
        self.tokens
            .get(&(registry.to_string(), scope.to_string()))
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.token.clone())
    }

    pub fn insert(&mut self, registry: &str, scope: &str, token: String, expires_in: Option<u64>) {
        // Docker's default lifetime is 60 s; renew a little early.
        let secs = expires_in.unwrap_or(60).max(1);
        let life = Duration::from_secs(secs).saturating_sub(Duration::from_secs(secs.min(10) / 2));
        self.tokens.insert(
            (registry.to_string(), scope.to_string()),
            CachedToken {
                token,
                expires: Instant::now() + life,
            },
        );
    }

    /// Forgets the token for (registry, scope) if it is still `token` (another request
    /// may already have replaced it).
    pub fn remove_if(&mut self, registry: &str, scope: &str, token: &str) {
        let key = (registry.to_string(), scope.to_string());
        if self.tokens.get(&key).is_some_and(|t| t.token == token) {
            self.tokens.remove(&key);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let c = parse_challenge(
            "r",
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }
        );
        let c = parse_challenge("r", r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            c,
            Challenge::Basic {
                realm: "Registry Realm".into()
            }
        );
    }

    #[test]
    fn rejects_bad_challenges() {
        assert!(parse_challenge("r", "Bearer service=x").is_err());
        assert!(parse_challenge("r", r#"Bearer realm="file:///etc/passwd""#).is_err());
        assert!(parse_challenge("r", r#"Bearer realm="unterminated"#).is_err());
        assert!(parse_challenge("r", "Negotiate abc").is_err());
    }

    #[test]
    fn token_cache_honours_expiry() {
        let mut c = TokenCache::default();
        c.insert("r", "repository:a:pull", "t1".into(), Some(300));
        assert_eq!(c.get("r", "repository:a:pull").as_deref(), Some("t1"));
        assert_eq!(c.get("r", "repository:b:pull"), None);
        c.insert("r", "repository:c:pull", "t2".into(), Some(0));
        // a 1 s token is valid right now...
        assert!(c.get("r", "repository:c:pull").is_some());
        std::thread::sleep(Duration::from_millis(1100));
        // ...and gone after it expired.
        assert_eq!(c.get("r", "repository:c:pull"), None);
        assert_eq!(c.len(), 2);
    }
}
