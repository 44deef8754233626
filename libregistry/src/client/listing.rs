//! Listing: a repository's tags and the registry's catalog, following `Link` pages.

use super::*;

pub(super) fn next_link(base: &Url, headers: &HeaderMap) -> Option<Url> {
    let link = headers.get("link")?.to_str().ok()?;
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    if !link[end..].contains("rel=\"next\"") {
        return None;
    }
    let next = base.join(&link[start..end]).ok()?;
    (next.origin() == base.origin()).then_some(next)
}

impl Client {
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
