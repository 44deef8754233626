//! Pulling: resolve a reference, choose a platform, stream blobs into a store.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, RANGE};
use reqwest::{Method, StatusCode};

use crate::client::{BodySrc, Client, Endpoint, read_capped};
use crate::error::{Error, Result};
use crate::progress::{ProgressEvent, ProgressSender, emit};
use crate::reference::{DEFAULT_TAG, Digest, Reference};
use crate::store::{
    BlobWriter, ContentStore, DirStore, Verifier, descriptor_digest, sha256_digest,
};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A platform to pick from an index: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`...
    pub architecture: String,
    /// `v7`, `v8`...
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this process (`linux/amd64` on x86_64).
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "arm" => "arm",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            variant: None,
        }
    }

    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        let norm = |a: &str, v: Option<&str>| -> Option<String> {
            match (a, v) {
                ("arm64", None) => Some("v8".into()),
                (_, v) => v.map(str::to_string),
            }
        };
        self.os == os
            && self.architecture == arch
            && (self.variant.is_none()
                || norm(arch, self.variant.as_deref()) == norm(arch, variant))
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(Error::InvalidPlatform(s.to_string())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// How to pull.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PullOptions {
    /// Platform to choose from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Where to send progress events.
    pub progress: Option<ProgressSender>,
}

impl PullOptions {
    /// The defaults (as [`Default`]), to change with the setters below.
    pub fn new() -> PullOptions {
        PullOptions::default()
    }

    /// Sets [`PullOptions::platform`].
    pub fn platform(mut self, platform: Option<Platform>) -> PullOptions {
        self.platform = platform;
        self
    }

    /// Sets [`PullOptions::progress`].
    pub fn progress(mut self, progress: Option<ProgressSender>) -> PullOptions {
        self.progress = progress;
        self
    }
}

/// What a pull stored.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PulledImage {
    /// The reference pulled.
    pub reference: Reference,
    /// The index or manifest list the tag pointed at, if any (stored too).
    pub index: Option<Descriptor>,
    /// The image manifest (stored as a blob).
    pub manifest: Descriptor,
    /// The config descriptor.
    pub config: Descriptor,
    /// Layer descriptors, in order.
    pub layers: Vec<Descriptor>,
    /// The config's digest, checked (a sha256 digest, the blob verified against it).
    pub config_digest: Digest,
    /// The layers' digests, in order, checked as `config_digest` is.
    pub layer_digests: Vec<Digest>,
}

impl PulledImage {
    /// The descriptor the reference resolved to (the index if there was one).
    pub fn top(&self) -> &Descriptor {
        self.index.as_ref().unwrap_or(&self.manifest)
    }
}

/// A fetched manifest or index.
pub(crate) struct RawManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl RawManifest {
    fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::from(self.media_type.as_str()),
            self.bytes.len() as u64,
            oci_spec::image::Digest::from(&self.digest),
        )
    }
}

pub(crate) fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        _ => {
            // Some registries send a generic type; look at the document.
            serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .is_some_and(|v| v.get("manifests").is_some())
        }
    }
}

pub(crate) fn media_type_of(header: Option<&str>, bytes: &[u8]) -> String {
    let from_header = header
        .map(|h| h.split(';').next().unwrap_or("").trim().to_string())
        .filter(|h| !h.is_empty() && h != "application/json" && h != "application/octet-stream");
    from_header.unwrap_or_else(|| {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            .unwrap_or_else(|| OCI_MANIFEST.to_string())
    })
}

/// What to ask the manifests endpoint for: the digest if there is one, else the tag
/// (`latest` when the reference has neither).
pub(crate) fn manifest_ref(reference: &Reference) -> String {
    match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => DEFAULT_TAG.to_string(),
    }
}

impl Client {
    /// Fetches a manifest or index by tag or digest, verifying its digest.
    pub(crate) async fn fetch_manifest(
        &self,
        ep: &Endpoint,
        repository: &str,
        reference: &str,
    ) -> Result<RawManifest> {
        let what = format!("manifest {repository}:{reference}");
        let url = ep.url(&format!("v2/{repository}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS));
        let scopes = [format!("repository:{repository}:pull")];
        let resp = self
            .send(ep, Method::GET, url, headers, &BodySrc::None, &scopes)
            .await?;
        if !resp.status().is_success() {
            return Err(Self::status_error(ep, &what, resp).await);
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_capped(resp, self.options().max_manifest_size, &ep.host, &what).await?;
        let digest = sha256_digest(&bytes);
        let expected = if reference.contains(':') {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(exp) = expected
            && exp != digest.to_string()
        {
            return Err(Error::DigestMismatch {
                registry: ep.host.clone(),
                what,
                expected: exp,
                actual: digest.to_string(),
            });
        }
        Ok(RawManifest {
            media_type: media_type_of(ct.as_deref(), &bytes),
            bytes,
            digest,
        })
    }

    /// Pulls `reference` into `store`: blobs (config and layers) first, the manifest last.
    pub async fn pull<S: ContentStore>(
        &self,
        reference: &Reference,
        store: &S,
        opts: &PullOptions,
    ) -> Result<PulledImage> {
        // `busybox` means `busybox:latest`, as for `docker pull`
        let reference = &reference.clone().with_default_tag();
        let mut last = None;
        for base in self.mirror_bases(reference.domain()) {
            let host = crate::client::url_host(&base);
            let attempt = async {
                let ep = self.endpoint_at(&host, &host, Some(base.clone())).await?;
                self.pull_from(&ep, reference, store, opts).await
            };
            match attempt.await {
                Ok(p) => return Ok(p),
                Err(e) => {
                    tracing::warn!("mirror {base} failed for {reference}: {e}; trying the next");
                    last = Some(e);
                }
            }
        }
        let ep = self.endpoint(reference.domain()).await;
        match ep {
            Ok(ep) => self.pull_from(&ep, reference, store, opts).await,
            Err(e) => Err(last.unwrap_or(e)),
        }
    }

    /// Pulls `reference` into an OCI layout directory and names it there by its tag
    /// (or digest), so `skopeo copy oci:<dir>:<tag>` and [`Client::push_from_dir`] find it.
    pub async fn pull_to_dir(
        &self,
        reference: &Reference,
        dir: &DirStore,
        opts: &PullOptions,
    ) -> Result<PulledImage> {
        let pulled = self.pull(reference, dir, opts).await?;
        let name = manifest_ref(reference);
        dir.set_ref(&name, &pulled.manifest)?;
        Ok(pulled)
    }

    /// Pulls every tag of `reference`'s repository (`docker pull --all-tags`).
    pub async fn pull_all_tags<S: ContentStore>(
        &self,
        reference: &Reference,
        store: &S,
        opts: &PullOptions,
    ) -> Result<Vec<PulledImage>> {
        let mut tags = self.tags(reference.domain(), reference.path()).await?;
        tags.sort();
        let mut out = Vec::with_capacity(tags.len());
        for t in tags {
            out.push(self.pull(&reference.with_tag(&t)?, store, opts).await?);
        }
        Ok(out)
    }

    async fn pull_from<S: ContentStore>(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        store: &S,
        opts: &PullOptions,
    ) -> Result<PulledImage> {
        let repo = reference.path();
        let mut raw = self
            .fetch_manifest(ep, repo, &manifest_ref(reference))
            .await?;
        let mut index = None;
        if is_index(&raw.media_type, &raw.bytes) {
            let idx: ImageIndex =
                serde_json::from_slice(&raw.bytes).map_err(|e| Error::InvalidManifest {
                    registry: ep.host.clone(),
                    what: reference.to_string(),
                    reason: e.to_string(),
                })?;
            let want = opts.platform.clone().unwrap_or_else(Platform::host);
            let chosen = select_platform(&idx, &want).ok_or_else(|| {
                let available = idx
                    .manifests()
                    .iter()
                    .filter_map(|m| m.platform().as_ref())
                    .map(|p| {
                        let mut s = format!("{}/{}", p.os(), p.architecture());
                        if let Some(v) = p.variant() {
                            s = format!("{s}/{v}");
                        }
                        s
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                Error::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: want.to_string(),
                    available,
                }
            })?;
            let child = self
                .fetch_manifest(ep, repo, chosen.digest().as_ref())
                .await?;
            if child.bytes.len() as u64 != chosen.size() {
                return Err(Error::SizeMismatch {
                    registry: ep.host.clone(),
                    what: format!("manifest {}", chosen.digest()),
                    expected: chosen.size(),
                    actual: child.bytes.len() as u64,
                });
            }
            index = Some(std::mem::replace(&mut raw, child));
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&raw.bytes).map_err(|e| Error::InvalidManifest {
                registry: ep.host.clone(),
                what: format!("{repo}@{}", raw.digest),
                reason: e.to_string(),
            })?;
        let config = manifest.config().clone();
        if config.size() > self.options().max_config_size {
            return Err(Error::TooLarge {
                registry: ep.host.clone(),
                what: format!("config {}", config.digest()),
                limit: self.options().max_config_size,
            });
        }
        let mut blobs: Vec<Descriptor> = vec![config.clone()];
        for l in manifest.layers() {
            if !blobs.iter().any(|b| b.digest() == l.digest()) {
                blobs.push(l.clone());
            }
        }
        let config_digest = descriptor_digest(&config)?;
        let layer_digests = manifest
            .layers()
            .iter()
            .map(descriptor_digest)
            .collect::<Result<Vec<_>>>()?;
        for b in &blobs {
            emit(
                opts.progress.as_ref(),
                &descriptor_digest(b)?,
                ProgressEvent::Waiting,
            );
        }
        let progress = opts.progress.as_ref();
        // The config is fetched beside the layers, outside their download slots (as
        // Docker does): its commit (fsync) would otherwise hold a slot a layer could use,
        // and the layers start as soon as the manifest is known.
        let config_fetch = self.fetch_blob(ep, repo, &blobs[0], store, progress);
        let layers_fetch = futures::stream::iter(blobs[1..].to_vec())
            .map(|d| async move { self.fetch_blob(ep, repo, &d, store, progress).await })
            .buffer_unordered(self.options().max_concurrent_downloads.max(1))
            .try_collect::<Vec<()>>();
        futures::try_join!(config_fetch, layers_fetch)?;
        // Manifests last: their presence means everything they name is present.
        for m in [Some(&raw), index.as_ref()].into_iter().flatten() {
            put_small(store, &m.digest, &m.bytes).await?;
        }
        Ok(PulledImage {
            reference: reference.clone(),
            index: index.as_ref().map(RawManifest::descriptor),
            manifest: raw.descriptor(),
            config,
            layers: manifest.layers().clone(),
            config_digest,
            layer_digests,
        })
    }

    /// Downloads one blob into the store, verifying size and digest, resuming with
    /// `Range` after a broken connection.
    pub(crate) async fn fetch_blob<S: ContentStore>(
        &self,
        ep: &Endpoint,
        repo: &str,
        desc: &Descriptor,
        store: &S,
        progress: Option<&ProgressSender>,
    ) -> Result<()> {
        let digest = &descriptor_digest(desc)?;
        let size = desc.size();
        let what = format!("blob {digest}");
        let store_err = |op, source| Error::Store {
            op,
            digest: digest.to_string(),
            source,
        };
        if store
            .has(digest)
            .await
            .map_err(|e| store_err("check", e))?
            .is_some()
        {
            emit(progress, digest, ProgressEvent::AlreadyExists);
            return Ok(());
        }
        let url = ep.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let scopes = [format!("repository:{repo}:pull")];
        let mut writer = store
            .writer(digest, size)
            .await
            .map_err(|e| store_err("create", e))?;
        let mut verifier = Verifier::new();
        let mut attempt = 0u32;
        let mut last_report = 0u64;
        loop {
            let offset = verifier.len();
            let mut headers = HeaderMap::new();
            if offset > 0 {
                headers.insert(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={offset}-")).expect("ascii"),
                );
            }
            let failure: String = match self
                .send(
                    ep,
                    Method::GET,
                    url.clone(),
                    headers,
                    &BodySrc::None,
                    &scopes,
                )
                .await
            {
                Err(e @ Error::Http { .. }) => e.to_string(),
                Err(e) => return Err(e),
                Ok(resp) => {
                    let status = resp.status();
                    let resumed = status == StatusCode::PARTIAL_CONTENT
                        && resp
                            .headers()
                            .get(CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.starts_with(&format!("bytes {offset}-")));
                    if status.is_server_error() {
                        format!("HTTP {}", status.as_u16())
                    } else if !(status == StatusCode::OK || resumed) {
                        return Err(Self::status_error(ep, &what, resp).await);
                    } else {
                        if offset > 0 && !resumed {
                            // The server ignored Range: start over.
                            writer.abort().await;
                            writer = store
                                .writer(digest, size)
                                .await
                                .map_err(|e| store_err("create", e))?;
                            verifier = Verifier::new();
                        }
                        if resp
                            .content_length()
                            .is_some_and(|l| l > size - verifier.len())
                        {
                            return Err(Error::SizeMismatch {
                                registry: ep.host.clone(),
                                what,
                                expected: size,
                                actual: verifier.len() + resp.content_length().unwrap_or(0),
                            });
                        }
                        let mut stream = resp.bytes_stream();
                        let mut broke = None;
                        while let Some(chunk) = stream.next().await {
                            match chunk {
                                Ok(chunk) => {
                                    if verifier.len() + chunk.len() as u64 > size {
                                        return Err(Error::SizeMismatch {
                                            registry: ep.host.clone(),
                                            what,
                                            expected: size,
                                            actual: verifier.len() + chunk.len() as u64,
                                        });
                                    }
                                    verifier.update(&chunk);
                                    writer
                                        .write(&chunk)
                                        .await
                                        .map_err(|e| store_err("write", e))?;
                                    if verifier.len() - last_report >= 1 << 20 {
                                        last_report = verifier.len();
                                        emit(
                                            progress,
                                            digest,
                                            ProgressEvent::Downloading {
                                                current: verifier.len(),
                                                total: size,
                                            },
                                        );
                                    }
                                }
                                Err(e) => {
                                    broke = Some(format!("connection broke: {e}"));
                                    break;
                                }
                            }
                        }
                        if broke.is_none() && verifier.len() == size {
                            break;
                        }
                        broke.unwrap_or_else(|| {
                            format!("body ended after {} of {size} bytes", verifier.len())
                        })
                    }
                }
            };
            attempt += 1;
            if attempt > self.options().retries {
                writer.abort().await;
                return Err(Error::Incomplete {
                    registry: ep.host.clone(),
                    what,
                    attempts: attempt,
                    received: verifier.len(),
                    expected: size,
                    reason: failure,
                });
            }
            emit(
                progress,
                digest,
                ProgressEvent::Retrying {
                    attempt,
                    reason: failure.clone(),
                },
            );
            tracing::debug!("{what}: attempt {attempt} failed ({failure}); retrying");
            tokio::time::sleep(self.options().retry_backoff * 2u32.pow(attempt - 1)).await;
        }
        emit(
            progress,
            digest,
            ProgressEvent::Downloading {
                current: size,
                total: size,
            },
        );
        emit(progress, digest, ProgressEvent::Verifying);
        let actual = verifier.finish();
        if &actual != digest {
            writer.abort().await;
            return Err(Error::DigestMismatch {
                registry: ep.host.clone(),
                what,
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        writer.commit().await.map_err(|e| store_err("commit", e))?;
        emit(progress, digest, ProgressEvent::Done);
        Ok(())
    }
}

async fn put_small<S: ContentStore>(store: &S, digest: &Digest, bytes: &[u8]) -> Result<()> {
    let err = |op, source| Error::Store {
        op,
        digest: digest.to_string(),
        source,
    };
    if store
        .has(digest)
        .await
        .map_err(|e| err("check", e))?
        .is_some()
    {
        return Ok(());
    }
    let mut w = store
        .writer(digest, bytes.len() as u64)
        .await
        .map_err(|e| err("create", e))?;
    w.write(bytes).await.map_err(|e| err("write", e))?;
    w.commit().await.map_err(|e| err("commit", e))
}

/// Picks the manifest for `want` from an index (exact variant first).
pub fn select_platform<'a>(index: &'a ImageIndex, want: &Platform) -> Option<&'a Descriptor> {
    let candidates = index.manifests().iter().filter(|m| {
        m.platform().as_ref().is_some_and(|p| {
            want.matches(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            )
        })
    });
    let all: Vec<&Descriptor> = candidates.collect();
    all.iter()
        .find(|m| m.platform().as_ref().and_then(|p| p.variant().clone()) == want.variant)
        .or(all.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parse_and_match() {
        let p: Platform = "linux/arm64".parse().unwrap();
        assert!(p.matches("linux", "arm64", Some("v8")));
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(p.matches("linux", "arm64", None));
        let p: Platform = "linux/arm/v7".parse().unwrap();
        assert!(!p.matches("linux", "arm", Some("v6")));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v1/x".parse::<Platform>().is_err());
    }

    #[test]
    fn selects_from_index() {
        let idx: ImageIndex = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","size":1,"digest":"sha256:{a}","platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","size":2,"digest":"sha256:{b}","platform":{{"os":"linux","architecture":"arm","variant":"v6"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","size":3,"digest":"sha256:{c}","platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64),
            c = "c".repeat(64)
        ))
        .unwrap();
        let pick = |s: &str| select_platform(&idx, &s.parse().unwrap()).map(|d| d.size());
        assert_eq!(pick("linux/amd64"), Some(1));
        assert_eq!(pick("linux/arm/v7"), Some(3));
        assert_eq!(pick("linux/arm"), Some(2));
        assert_eq!(pick("linux/s390x"), None);
    }
}
