//! The registry jobs beside pull: push (an image of the store to a registry), login and
//! search, on libregistry's client.

use std::str::FromStr;

use longshore_registry::{
    Credentials, ProgressSender, PushOptions, Reference, SearchOptions, SearchResult,
};
use oci_spec::image::{Descriptor, Digest as OciDigest, MediaType};

use crate::content::GraphContent;
use crate::engine::Engine;
use crate::error::{Error, Result, graph};

/// Options of one push.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PushJobOptions {
    /// Where libregistry's upload events go (`Pushing`, `Pushed`, `AlreadyExists`,
    /// `Mounted`).
    pub progress: Option<ProgressSender>,
    /// Credentials for the registry of the reference (`X-Registry-Auth`): used for this
    /// push only, never kept by the engine.
    pub credentials: Option<Credentials>,
}

/// What [`Engine::push`] did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The reference pushed, normalised.
    pub reference: String,
    /// Its tag (`latest` when none was given).
    pub tag: String,
    /// The manifest digest the registry stored.
    pub digest: String,
    /// Size of the manifest in bytes.
    pub size: u64,
    /// The layer blobs, base first (their short IDs are the progress IDs).
    pub layers: Vec<String>,
}

fn invalid(reference: &str, e: impl Into<longshore_registry::Error>) -> Error {
    Error::InvalidReference {
        reference: reference.to_string(),
        source: Box::new(e.into()),
    }
}

impl Engine {
    /// The registry client for one pull or push. With `credentials` (a request's
    /// `X-Registry-Auth`), a client of its own that holds them for this job only, as
    /// Docker's daemon uses a request's auth for that request alone: nothing another
    /// request (or a later one after a logout) does can use them. Without, the engine's
    /// shared client (anonymous, or the credential store of an in-process engine).
    pub(crate) fn registry_client(
        &self,
        registry: &str,
        credentials: Option<&Credentials>,
    ) -> longshore_registry::Client {
        match credentials {
            None => self.client(),
            Some(c) => {
                let mut opts = self.client().options().clone();
                opts.credential_store = None;
                let client = longshore_registry::Client::new(opts);
                client.set_credentials(registry, c.clone());
                client
            }
        }
    }

    /// `docker push`: the image tagged `reference` (its layer blobs as stored, an OCI
    /// manifest made for it) to the registry the reference names. Blobs the registry has
    /// are not sent again.
    pub async fn push(&self, reference: &str, opts: &PushJobOptions) -> Result<PushReport> {
        let mut dest = Reference::parse(reference).map_err(|e| invalid(reference, e))?;
        if dest.tag().is_none() && dest.digest().is_none() {
            dest = dest.with_tag("latest").map_err(|e| invalid(reference, e))?;
        }
        let name = dest.to_string();
        let store = self.store()?.clone();
        let local = [reference.to_string(), name.clone()];
        let found = local.iter().find(|n| store.resolve(n).is_ok());
        let Some(local) = found else {
            return Err(Error::NoSuchImage(reference.to_string()));
        };
        let (manifest, layers) = store
            .manifest(local)
            .map_err(graph(format!("make the manifest of {reference}")))?;
        let digest = store
            .content()
            .write_blob(&manifest, None)
            .map_err(graph("store the manifest"))?;
        let oci_digest = OciDigest::from_str(&digest.to_string())
            .map_err(|e| Error::InvalidArgument(format!("manifest digest {digest}: {e}")))?;
        let top = Descriptor::new(MediaType::ImageManifest, manifest.len() as u64, oci_digest);
        let client = self.registry_client(dest.domain(), opts.credentials.as_ref());
        let content = GraphContent::new(store.content().clone());
        let popts = PushOptions::new().progress(opts.progress.clone());
        let pushed = client
            .push(&dest, &content, &top, &popts)
            .await
            .map_err(|source| Error::Registry {
                reference: name.clone(),
                source: Box::new(source),
            })?;
        let id = store
            .resolve(local)
            .map(|d| d.to_string())
            .unwrap_or_default();
        // docker images --digests, RepoDigests: the manifest the registry now has
        let _ = store.add_repo_digest(&id, &format!("{}@{}", dest.name(), pushed.digest));
        self.event("image", "push", &id, vec![("name".into(), name.clone())]);
        Ok(PushReport {
            reference: name,
            tag: dest.tag().unwrap_or("latest").to_string(),
            digest: pushed.digest.to_string(),
            size: manifest.len() as u64,
            layers: layers
                .iter()
                .filter_map(|l| l.blob_digest.as_ref().map(|d| d.to_string()))
                .collect(),
        })
    }

    /// The local tags of `repository`'s repository, sorted (`docker push --all-tags`
    /// pushes each). A reference with a tag or digest is refused, in docker's words.
    pub fn repository_tags(&self, repository: &str) -> Result<Vec<String>> {
        let want = Reference::parse(repository).map_err(|e| invalid(repository, e))?;
        if want.tag().is_some() || want.digest().is_some() {
            return Err(Error::InvalidArgument(format!(
                "tag can't be used with --all-tags/-a: {repository}"
            )));
        }
        let mut out = Vec::new();
        for i in self.store()?.images().map_err(graph("list images"))? {
            for t in &i.tags {
                if let Ok(r) = Reference::parse(t)
                    && r.domain() == want.domain()
                    && r.path() == want.path()
                    && r.tag().is_some()
                {
                    out.push(r.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(Error::NotFoundPath(format!(
                "An image does not exist locally with the tag: {repository}"
            )));
        }
        Ok(out)
    }

    /// The tags `repository` has in its registry, sorted (`docker pull --all-tags` pulls
    /// each), with this request's `credentials` if any.
    pub async fn remote_tags(
        &self,
        repository: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Vec<String>> {
        let want = Reference::parse(repository).map_err(|e| invalid(repository, e))?;
        if want.tag().is_some() || want.digest().is_some() {
            return Err(Error::InvalidArgument(format!(
                "tag can't be used with --all-tags/-a: {repository}"
            )));
        }
        let client = self.registry_client(want.domain(), credentials);
        let mut tags =
            client
                .tags(want.domain(), want.path())
                .await
                .map_err(|source| match source {
                    longshore_registry::Error::NotFound { .. } => Error::NotFound {
                        reference: want.to_string(),
                        source: Box::new(source),
                    },
                    source => Error::Registry {
                        reference: want.to_string(),
                        source: Box::new(source),
                    },
                })?;
        tags.sort();
        let mut out = Vec::new();
        for t in tags {
            let r = want.with_tag(&t).map_err(|e| invalid(&t, e))?;
            out.push(r.to_string());
        }
        Ok(out)
    }

    /// `docker login`: checks the credentials against `registry` (empty: Docker Hub). The
    /// engine keeps nothing: the client saves them, and sends them with each pull or push
    /// ([`PushJobOptions::credentials`], [`crate::PullJobOptions::credentials`]).
    pub async fn login(&self, registry: &str, credentials: Credentials) -> Result<()> {
        let registry = if registry.is_empty() {
            longshore_registry::DOCKER_HUB
        } else {
            registry
        };
        let host = registry
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or(registry)
            .to_string();
        // a client of its own, without the credential store: checking saves nothing
        let mut opts = self.client().options().clone();
        opts.credential_store = None;
        longshore_registry::Client::new(opts)
            .login(&host, credentials)
            .await
            .map_err(|source| Error::Registry {
                reference: host.clone(),
                source: Box::new(source),
            })
    }

    /// `docker search TERM` (a `host/term` searches that registry, else Docker Hub).
    pub async fn search(&self, term: &str, limit: Option<usize>) -> Result<Vec<SearchResult>> {
        let (registry, term) = match term.split_once('/') {
            Some((h, t)) if h.contains('.') || h.contains(':') || h == "localhost" => (h, t),
            _ => (longshore_registry::DOCKER_HUB, term),
        };
        let opts = SearchOptions::new().limit(limit);
        self.client()
            .search(registry, term, &opts)
            .await
            .map_err(|source| Error::Registry {
                reference: format!("{registry}/{term}"),
                source: Box::new(source),
            })
    }
}
