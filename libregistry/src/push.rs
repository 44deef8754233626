//! Pushing: existing-blob checks, cross-repository mounts, monolithic and chunked
//! uploads, then the manifest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use crate::client::{BodySrc, Client, Endpoint};
use crate::error::{Error, Result};
use crate::progress::{ProgressEvent, ProgressSender, emit};
use crate::pull::{is_index, media_type_of};
use crate::reference::{Digest, Reference};
use crate::store::{ContentStore, DirStore, descriptor_digest, sha256_digest};

/// How to push.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PushOptions {
    /// Try to mount blobs from this repository of the same registry before uploading.
    pub mount_from: Option<String>,
    /// Where to send progress events.
    pub progress: Option<ProgressSender>,
}

impl PushOptions {
    /// The defaults (as [`Default`]), to change with the setters below.
    pub fn new() -> PushOptions {
        PushOptions::default()
    }

    /// Sets [`PushOptions::mount_from`].
    pub fn mount_from(mut self, mount_from: Option<String>) -> PushOptions {
        self.mount_from = mount_from;
        self
    }

    /// Sets [`PushOptions::progress`].
    pub fn progress(mut self, progress: Option<ProgressSender>) -> PushOptions {
        self.progress = progress;
        self
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// Where it went.
    pub reference: Reference,
    /// Digest of the top manifest as the registry confirmed it.
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the registry already had.
    pub existing: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobOutcome {
    Uploaded,
    Mounted,
    Existing,
}

const OCTET: HeaderValue = HeaderValue::from_static("application/octet-stream");

impl Client {
    /// Pushes the manifest (or index) `top` and everything it names from `store` to
    /// `dest` (tagged with its tag, or addressed by digest).
    pub async fn push<S: ContentStore>(
        &self,
        dest: &Reference,
        store: &S,
        top: &Descriptor,
        opts: &PushOptions,
    ) -> Result<PushedImage> {
        // `app` means `app:latest`, as for `docker push`
        let dest = &dest.clone().with_default_tag();
        let ep = self.endpoint(dest.domain()).await?;
        let mut scopes = vec![format!("repository:{}:pull,push", dest.path())];
        if let Some(from) = &opts.mount_from {
            scopes.push(format!("repository:{from}:pull"));
        }
        let mut pushed = PushedImage {
            reference: dest.clone(),
            digest: descriptor_digest(top)?,
            uploaded: 0,
            mounted: 0,
            existing: 0,
        };
        let tag = dest.tag().map(str::to_string);
        self.push_tree(
            &ep,
            dest.path(),
            store,
            top,
            tag.as_deref(),
            &scopes,
            opts,
            &mut pushed,
            0,
        )
        .await?;
        Ok(pushed)
    }

    /// Pushes the image named `name` in an OCI layout directory to `dest`.
    pub async fn push_from_dir(
        &self,
        dir: &DirStore,
        name: &str,
        dest: &Reference,
        opts: &PushOptions,
    ) -> Result<PushedImage> {
        let desc = dir.resolve(name)?;
        self.push(dest, dir, &desc, opts).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_tree<S: ContentStore>(
        &self,
        ep: &Endpoint,
        repo: &str,
        store: &S,
        desc: &Descriptor,
        tag: Option<&str>,
        scopes: &[String],
        opts: &PushOptions,
        pushed: &mut PushedImage,
        depth: u32,
    ) -> Result<()> {
        let digest = &descriptor_digest(desc)?;
        let bytes = read_whole(store, digest, self.options().max_manifest_size).await?;
        if sha256_digest(&bytes) != *digest {
            return Err(Error::DigestMismatch {
                registry: "local store".into(),
                what: format!("manifest {digest}"),
                expected: digest.to_string(),
                actual: sha256_digest(&bytes).to_string(),
            });
        }
        let media_type = media_type_of(Some(desc.media_type().as_ref()), &bytes);
        let invalid = |e: serde_json::Error| Error::InvalidManifest {
            registry: "local store".into(),
            what: desc.digest().to_string(),
            reason: e.to_string(),
        };
        if is_index(&media_type, &bytes) {
            if depth > 2 {
                return Err(Error::InvalidManifest {
                    registry: "local store".into(),
                    what: desc.digest().to_string(),
                    reason: "indexes nested too deep".into(),
                });
            }
            let idx: ImageIndex = serde_json::from_slice(&bytes).map_err(invalid)?;
            for child in idx.manifests() {
                Box::pin(self.push_tree(
                    ep,
                    repo,
                    store,
                    child,
                    None,
                    scopes,
                    opts,
                    pushed,
                    depth + 1,
                ))
                .await?;
            }
        } else {
            let m: ImageManifest = serde_json::from_slice(&bytes).map_err(invalid)?;
            let mut blobs = vec![m.config().clone()];
            for l in m.layers() {
                if !blobs.iter().any(|b| b.digest() == l.digest()) {
                    blobs.push(l.clone());
                }
            }
            let outcomes = futures::stream::iter(blobs)
                .map(|b| async move { self.push_blob(ep, repo, store, &b, scopes, opts).await })
                .buffer_unordered(self.options().max_concurrent_uploads.max(1))
                .try_collect::<Vec<_>>()
                .await?;
            for o in outcomes {
                match o {
                    BlobOutcome::Uploaded => pushed.uploaded += 1,
                    BlobOutcome::Mounted => pushed.mounted += 1,
                    BlobOutcome::Existing => pushed.existing += 1,
                }
            }
        }
        let reference = tag
            .map(str::to_string)
            .unwrap_or_else(|| desc.digest().to_string());
        let what = format!("manifest {repo}:{reference}");
        let url = ep.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&media_type).map_err(|_| Error::InvalidManifest {
                registry: "local store".into(),
                what: what.clone(),
                reason: "media type is not a valid header".into(),
            })?,
        );
        let resp = self
            .send(
                ep,
                Method::PUT,
                url,
                headers,
                &BodySrc::Bytes(bytes),
                scopes,
            )
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(Self::status_error(ep, &what, resp).await);
        }
        check_digest_header(ep, &what, &resp, digest)?;
        Ok(())
    }

    async fn push_blob<S: ContentStore>(
        &self,
        ep: &Endpoint,
        repo: &str,
        store: &S,
        desc: &Descriptor,
        scopes: &[String],
        opts: &PushOptions,
    ) -> Result<BlobOutcome> {
        let digest = &descriptor_digest(desc)?;
        let what = format!("blob {digest}");
        let progress = opts.progress.as_ref();
        let head = self
            .send(
                ep,
                Method::HEAD,
                ep.url(&format!("v2/{repo}/blobs/{digest}"))?,
                HeaderMap::new(),
                &BodySrc::None,
                scopes,
            )
            .await?;
        if head.status().is_success() {
            emit(progress, digest, ProgressEvent::AlreadyExists);
            return Ok(BlobOutcome::Existing);
        }
        if head.status() != StatusCode::NOT_FOUND {
            return Err(Self::status_error(ep, &what, head).await);
        }
        let (_, size) = store.read(digest).await.map_err(|e| Error::Store {
            op: "read",
            digest: digest.to_string(),
            source: e,
        })?;
        let mut start = ep.url(&format!("v2/{repo}/blobs/uploads/"))?;
        if let Some(from) = &opts.mount_from {
            start
                .query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
        }
        let resp = self
            .send(
                ep,
                Method::POST,
                start,
                zero_length(),
                &BodySrc::Bytes(Bytes::new()),
                scopes,
            )
            .await?;
        if resp.status() == StatusCode::CREATED && opts.mount_from.is_some() {
            emit(
                progress,
                digest,
                ProgressEvent::Mounted {
                    from: opts.mount_from.clone().unwrap_or_default(),
                },
            );
            return Ok(BlobOutcome::Mounted);
        }
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::status_error(ep, &format!("upload of {what}"), resp).await);
        }
        let mut location = location(ep, &what, &resp)?;
        let sent = Arc::new(AtomicU64::new(0));
        let chunk = self.options().chunk_size.filter(|c| *c > 0 && size > *c);
        let put_body;
        if let Some(chunk) = chunk {
            let (mut reader, _) = store.read(digest).await.map_err(|e| Error::Store {
                op: "read",
                digest: digest.to_string(),
                source: e,
            })?;
            let mut offset = 0u64;
            while offset < size {
                let n = chunk.min(size - offset);
                let mut buf = vec![0u8; n as usize];
                reader
                    .read_exact(&mut buf)
                    .await
                    .map_err(|e| Error::Store {
                        op: "read",
                        digest: digest.to_string(),
                        source: e,
                    })?;
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, OCTET);
                headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
                headers.insert(
                    CONTENT_RANGE,
                    HeaderValue::from_str(&format!("{offset}-{}", offset + n - 1)).expect("ascii"),
                );
                let resp = self
                    .send(
                        ep,
                        Method::PATCH,
                        location.clone(),
                        headers,
                        &BodySrc::Bytes(buf.into()),
                        scopes,
                    )
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(
                        Self::status_error(ep, &format!("chunk upload of {what}"), resp).await,
                    );
                }
                location = self::location(ep, &what, &resp)?;
                offset += n;
                emit(
                    progress,
                    digest,
                    ProgressEvent::Pushing {
                        current: offset,
                        total: size,
                    },
                );
            }
            put_body = None;
        } else {
            put_body = Some(());
        }
        location
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let sent2 = sent.clone();
        let progress2 = opts.progress.clone();
        let digest2 = digest.clone();
        let make = move || -> futures::future::BoxFuture<'_, Result<reqwest::Body>> {
            let sent = sent2.clone();
            let progress = progress2.clone();
            let digest = digest2.clone();
            Box::pin(async move {
                sent.store(0, Ordering::Relaxed);
                let (reader, _) = store.read(&digest).await.map_err(|e| Error::Store {
                    op: "read",
                    digest: digest.to_string(),
                    source: e,
                })?;
                let d = digest.clone();
                let stream = ReaderStream::with_capacity(reader, 256 << 10).inspect_ok(move |b| {
                    let now = sent.fetch_add(b.len() as u64, Ordering::Relaxed) + b.len() as u64;
                    emit(
                        progress.as_ref(),
                        &d,
                        ProgressEvent::Pushing {
                            current: now,
                            total: size,
                        },
                    );
                });
                Ok(reqwest::Body::wrap_stream(stream))
            })
        };
        let mut headers = HeaderMap::new();
        let resp = if put_body.is_some() {
            headers.insert(CONTENT_TYPE, OCTET);
            headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
            self.send(
                ep,
                Method::PUT,
                location,
                headers,
                &BodySrc::Stream(&make),
                scopes,
            )
            .await?
        } else {
            self.send(
                ep,
                Method::PUT,
                location,
                zero_length(),
                &BodySrc::Bytes(Bytes::new()),
                scopes,
            )
            .await?
        };
        if resp.status() != StatusCode::CREATED {
            return Err(Self::status_error(ep, &format!("upload of {what}"), resp).await);
        }
        check_digest_header(ep, &what, &resp, digest)?;
        emit(progress, digest, ProgressEvent::Pushed);
        Ok(BlobOutcome::Uploaded)
    }
}

fn zero_length() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
    h
}

/// The upload `Location`, resolved against the request URL and used exactly as given.
fn location(ep: &Endpoint, what: &str, resp: &Response) -> Result<Url> {
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Status {
            registry: ep.host.clone(),
            what: format!("upload of {what}"),
            status: resp.status().as_u16(),
            body: "no Location header".into(),
        })?;
    let url = resp.url().join(loc).map_err(|_| Error::Status {
        registry: ep.host.clone(),
        what: format!("upload of {what}"),
        status: resp.status().as_u16(),
        body: format!("invalid Location {loc:?}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Status {
            registry: ep.host.clone(),
            what: format!("upload of {what}"),
            status: resp.status().as_u16(),
            body: format!("upload Location {url} is not an http(s) URL"),
        });
    }
    // Followed exactly, even to another host (credentials are only ever sent to the
    // registry's own origin, see Client::send).
    Ok(url)
}

fn check_digest_header(ep: &Endpoint, what: &str, resp: &Response, want: &Digest) -> Result<()> {
    if let Some(got) = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        && got != want.to_string()
    {
        return Err(Error::DigestMismatch {
            registry: ep.host.clone(),
            what: format!("{what} (as stored by the registry)"),
            expected: want.to_string(),
            actual: got.to_string(),
        });
    }
    Ok(())
}

async fn read_whole<S: ContentStore>(store: &S, digest: &Digest, limit: u64) -> Result<Bytes> {
    let err = |source| Error::Store {
        op: "read",
        digest: digest.to_string(),
        source,
    };
    let (reader, size) = store.read(digest).await.map_err(err)?;
    if size > limit {
        return Err(Error::TooLarge {
            registry: "local store".into(),
            what: format!("manifest {digest}"),
            limit,
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(err)?;
    Ok(buf.into())
}
