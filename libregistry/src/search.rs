//! `search`: Docker Hub's `/v1/search` when the registry offers it, else (when that
//! endpoint is absent: 404, 405 or 501) the registry's `_catalog` filtered by the term.
//! Any other answer (401 and 403 included) is an error.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::client::{BodySrc, Client, read_capped};
use crate::error::{Error, Result};

/// One search result, with the seed's columns.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SearchResult {
    /// Repository name.
    pub name: String,
    /// Description (empty from `_catalog`).
    #[serde(default)]
    pub description: String,
    /// Stars.
    #[serde(default, alias = "star_count")]
    pub stars: u64,
    /// Official image.
    #[serde(default, alias = "is_official")]
    pub official: bool,
    /// Automated build.
    #[serde(default, alias = "is_automated")]
    pub automated: bool,
}

/// Search filters.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SearchOptions {
    /// Only results with at least this many stars (`--stars`, `--filter stars=N`).
    pub min_stars: u64,
    /// At most this many results (`--limit`; Docker's default is 25).
    pub limit: Option<usize>,
    /// Only official images (`--filter is-official=true`).
    pub official_only: bool,
}

impl SearchOptions {
    /// The defaults (as [`Default`]), to change with the setters below.
    pub fn new() -> SearchOptions {
        SearchOptions::default()
    }

    /// Sets [`SearchOptions::min_stars`].
    pub fn min_stars(mut self, min_stars: u64) -> SearchOptions {
        self.min_stars = min_stars;
        self
    }

    /// Sets [`SearchOptions::limit`].
    pub fn limit(mut self, limit: Option<usize>) -> SearchOptions {
        self.limit = limit;
        self
    }

    /// Sets [`SearchOptions::official_only`].
    pub fn official_only(mut self, official_only: bool) -> SearchOptions {
        self.official_only = official_only;
        self
    }
}

impl Client {
    /// Searches `registry` for repositories matching `term`.
    pub async fn search(
        &self,
        registry: &str,
        term: &str,
        opts: &SearchOptions,
    ) -> Result<Vec<SearchResult>> {
        #[derive(Deserialize)]
        struct V1 {
            results: Vec<SearchResult>,
        }
        let limit = opts.limit.unwrap_or(25);
        let ep = self.endpoint(registry).await?;
        let mut url = ep.url("v1/search")?;
        url.query_pairs_mut()
            .append_pair("q", term)
            .append_pair("n", &limit.to_string());
        let resp = self
            .send(&ep, Method::GET, url, HeaderMap::new(), &BodySrc::None, &[])
            .await?;
        let mut results: Vec<SearchResult> = match resp.status() {
            StatusCode::OK => {
                let body = read_capped(resp, 16 << 20, &ep.host, "search results").await?;
                serde_json::from_slice::<V1>(&body)
                    .map_err(|e| Error::InvalidResponse {
                        registry: ep.host.clone(),
                        what: format!("search results for {term:?}"),
                        reason: format!("not a v1 search response: {e}"),
                    })?
                    .results
            }
            // the registry has no search endpoint (the distribution registry): its catalog
            StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::NOT_IMPLEMENTED => self.catalog_search(registry, term).await?,
            // denied, or failed: said, never hidden behind the catalog
            _ => {
                return Err(Self::status_error(&ep, &format!("search for {term:?}"), resp).await);
            }
        };
        results.retain(|r| r.stars >= opts.min_stars && (!opts.official_only || r.official));
        results.truncate(limit);
        Ok(results)
    }

    async fn catalog_search(&self, registry: &str, term: &str) -> Result<Vec<SearchResult>> {
        let term = term.to_ascii_lowercase();
        Ok(self
            .catalog(registry)
            .await?
            .into_iter()
            .filter(|name| name.contains(&term))
            .map(|name| SearchResult {
                name,
                description: String::new(),
                stars: 0,
                official: false,
                automated: false,
            })
            .collect())
    }
}
