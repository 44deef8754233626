//! Where pulled blobs go and pushed blobs come from.
//!
//! [`ContentStore`] is the small trait libgraph implements; [`DirStore`] is an
//! [OCI image layout](https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
//! directory (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) that writes each blob to
//! `ingest/`, verifies size and digest, then renames it into `blobs/`. A blob that was
//! not committed is removed when its writer is dropped, so a cancelled pull never leaves
//! a partial blob behind.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};
use tokio::io::{AsyncRead, AsyncWriteExt, BufWriter};

use crate::error::{Error, Result};
use crate::reference::{Algorithm, Digest};

/// The annotation naming a manifest in an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A content-addressed blob store that the client streams into and reads from.
///
/// Implementations must make a blob visible only on [`BlobWriter::commit`], and must
/// discard the data of a writer that is dropped or aborted. The client calls `commit`
/// only after it has checked that the bytes it wrote have the writer's size and digest
/// (it hashes every blob as it streams), so a store may rely on that check instead of
/// hashing the bytes a second time.
pub trait ContentStore: Send + Sync {
    /// Writer for one incoming blob.
    type Writer: BlobWriter;
    /// Reader for one stored blob.
    type Reader: AsyncRead + Send + Unpin + 'static;

    /// The size of the blob if it is present and committed.
    fn has(&self, digest: &Digest) -> impl Future<Output = io::Result<Option<u64>>> + Send;

    /// Starts writing a blob of `size` bytes that must hash to `digest`.
    fn writer(
        &self,
        digest: &Digest,
        size: u64,
    ) -> impl Future<Output = io::Result<Self::Writer>> + Send;

    /// Opens a committed blob, returning the reader and the blob size.
    fn read(&self, digest: &Digest)
    -> impl Future<Output = io::Result<(Self::Reader, u64)>> + Send;
}

/// One blob being written into a [`ContentStore`].
pub trait BlobWriter: Send {
    /// Appends bytes.
    fn write(&mut self, data: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Verifies size and digest and makes the blob visible. On error nothing is kept.
    fn commit(self) -> impl Future<Output = io::Result<()>> + Send;
    /// Discards everything written.
    fn abort(self) -> impl Future<Output = ()> + Send;
}

/// Incremental sha256 of a stream, compared to an expected digest at the end.
#[derive(Clone, Debug)]
pub struct Verifier {
    hasher: longshore_reference::Hasher,
    len: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A fresh verifier.
    pub fn new() -> Self {
        Verifier {
            hasher: Algorithm::Sha256.hasher(),
            len: 0,
        }
    }
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }
    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// True when nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        self.hasher.finish()
    }
}

/// The sha256 digest of `data`.
pub fn sha256_digest(data: &[u8]) -> Digest {
    let mut v = Verifier::new();
    v.update(data);
    v.finish()
}

/// Checks that a digest is a sha256 digest this crate can verify and returns its hex part.
pub fn sha256_hex(digest: &Digest) -> Result<&str> {
    match digest.algorithm() {
        Algorithm::Sha256 => Ok(digest.hex()),
        _ => Err(Error::UnsupportedDigest(digest.to_string())),
    }
}

/// The digest of a descriptor read from a registry or a layout, checked once at that edge:
/// a sha256 digest this crate can verify (anything else is refused, as before a download).
pub(crate) fn descriptor_digest(desc: &Descriptor) -> Result<Digest> {
    let digest = Digest::try_from(desc.digest())?;
    sha256_hex(&digest)?;
    Ok(digest)
}

/// An OCI image layout directory used as a content store.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    fsync: bool,
}

static INGEST_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DirStore {
    /// Opens (creating if needed) an OCI image layout at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        for dir in [root.join("blobs/sha256"), root.join("ingest")] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            std::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(io_err(&layout))?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            std::fs::write(&index, br#"{"schemaVersion":2,"manifests":[]}"#)
                .map_err(io_err(&index))?;
        }
        // Leftovers of a crashed process: never visible as blobs, safe to delete.
        if let Ok(entries) = std::fs::read_dir(root.join("ingest")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(DirStore { root, fsync: true })
    }

    /// Whether committed blobs are fsynced before the rename (default true).
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a committed blob.
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(sha256_hex(digest)?))
    }

    /// Reads a whole committed blob (for manifests and configs).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest)?;
        std::fs::read(&p).map_err(|source| Error::Store {
            op: "read",
            digest: digest.to_string(),
            source,
        })
    }

    /// Stores a small blob given in full (verifying nothing: the digest is computed).
    pub fn write_blob(&self, data: &[u8]) -> Result<Digest> {
        let digest = sha256_digest(data);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            let tmp = self.ingest_path(&digest)?;
            let store_err = |source| Error::Store {
                op: "write",
                digest: digest.to_string(),
                source,
            };
            std::fs::write(&tmp, data).map_err(store_err)?;
            std::fs::rename(&tmp, &path).map_err(store_err)?;
        }
        Ok(digest)
    }

    fn ingest_path(&self, digest: &Digest) -> Result<PathBuf> {
        let n = INGEST_COUNTER.fetch_add(1, Ordering::Relaxed);
        Ok(self.root.join("ingest").join(format!(
            "{}-{}-{n}",
            sha256_hex(digest)?,
            std::process::id()
        )))
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<ImageIndex> {
        let p = self.root.join("index.json");
        let data = std::fs::read(&p).map_err(|source| Error::Io {
            path: p.clone(),
            source,
        })?;
        serde_json::from_slice(&data).map_err(|e| Error::InvalidManifest {
            registry: self.root.display().to_string(),
            what: "index.json".into(),
            reason: e.to_string(),
        })
    }

    /// Finds the manifest descriptor named `name` (the ref-name annotation) in `index.json`.
    pub fn resolve(&self, name: &str) -> Result<Descriptor> {
        self.index()?
            .manifests()
            .iter()
            .find(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME_ANNOTATION))
                    .is_some_and(|n| n == name)
            })
            .cloned()
            .ok_or_else(|| Error::LocalNotFound {
                path: self.root.clone(),
                name: name.to_string(),
            })
    }

    /// Names `desc` as `name` in `index.json` (replacing an earlier entry of that name).
    ///
    /// Serialised within this process; separate processes must not update one layout
    /// at the same time.
    pub fn set_ref(&self, name: &str, desc: &Descriptor) -> Result<()> {
        static INDEX_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INDEX_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let index = self.index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME_ANNOTATION))
                    .is_none_or(|n| n != name)
            })
            .cloned()
            .collect();
        let mut desc = desc.clone();
        let mut ann = desc.annotations().clone().unwrap_or_default();
        ann.insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
        desc.set_annotations(Some(ann));
        manifests.push(desc);
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(|e| Error::InvalidManifest {
                registry: self.root.display().to_string(),
                what: "index.json".into(),
                reason: e.to_string(),
            })?;
        let p = self.root.join("index.json");
        let tmp = self.root.join(format!(
            "index.json.tmp-{}-{}",
            std::process::id(),
            INGEST_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let data = serde_json::to_vec(&index).expect("an index serialises");
        std::fs::write(&tmp, data)
            .and_then(|_| std::fs::rename(&tmp, &p))
            .map_err(|source| Error::Io { path: p, source })
    }
}

impl ContentStore for DirStore {
    type Writer = DirBlobWriter;
    type Reader = tokio::fs::File;

    async fn has(&self, digest: &Digest) -> io::Result<Option<u64>> {
        let path = self.blob_path(digest).map_err(io::Error::other)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn writer(&self, digest: &Digest, size: u64) -> io::Result<DirBlobWriter> {
        let final_path = self.blob_path(digest).map_err(io::Error::other)?;
        let tmp = self.ingest_path(digest).map_err(io::Error::other)?;
        // Created synchronously: no await point between creating the file and owning
        // the writer whose Drop removes it, so a cancelled pull cannot orphan it.
        let file = tokio::fs::File::from_std(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?,
        );
        Ok(DirBlobWriter {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            final_path,
            expected: digest.clone(),
            size,
            verifier: Verifier::new(),
            fsync: self.fsync,
            done: false,
        })
    }

    async fn read(&self, digest: &Digest) -> io::Result<(tokio::fs::File, u64)> {
        let path = self.blob_path(digest).map_err(io::Error::other)?;
        let f = tokio::fs::File::open(&path).await?;
        let len = f.metadata().await?.len();
        Ok((f, len))
    }
}

/// A blob being written into a [`DirStore`]; removed on drop unless committed.
pub struct DirBlobWriter {
    file: Option<BufWriter<tokio::fs::File>>,
    tmp: PathBuf,
    final_path: PathBuf,
    expected: Digest,
    size: u64,
    verifier: Verifier,
    fsync: bool,
    done: bool,
}

impl BlobWriter for DirBlobWriter {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.verifier.len() + data.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than the expected {} bytes", self.size),
            ));
        }
        self.verifier.update(data);
        match &mut self.file {
            Some(f) => f.write_all(data).await,
            None => Err(io::Error::other("writer already finished")),
        }
    }

    async fn commit(mut self) -> io::Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("writer already finished"))?;
        file.flush().await?;
        if self.verifier.len() != self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("got {} bytes, expected {}", self.verifier.len(), self.size),
            ));
        }
        let actual = self.verifier.clone().finish();
        if actual != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("content hashes to {actual}"),
            ));
        }
        if self.fsync {
            file.get_ref().sync_data().await?;
        }
        drop(file);
        std::fs::rename(&self.tmp, &self.final_path)?;
        self.done = true;
        Ok(())
    }

    async fn abort(mut self) {
        self.file.take();
        let _ = tokio::fs::remove_file(&self.tmp).await;
        self.done = true;
    }
}

impl Drop for DirBlobWriter {
    fn drop(&mut self) {
        if !self.done {
            self.file.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, DirStore) {
        let dir = tempfile::Builder::new()
            .prefix("longshore-store")
            .tempdir()
            .unwrap();
        let s = DirStore::open(dir.path()).unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn commit_verifies_size_and_digest() {
        let (_d, s) = store();
        let good = sha256_digest(b"hello");
        let mut w = s.writer(&good, 5).await.unwrap();
        w.write(b"hello").await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(s.has(&good).await.unwrap(), Some(5));

        // Wrong content for the digest: refused, nothing visible, nothing left in ingest.
        let other = sha256_digest(b"world");
        let mut w = s.writer(&other, 5).await.unwrap();
        w.write(b"WORLD").await.unwrap();
        assert!(w.commit().await.is_err());
        assert_eq!(s.has(&other).await.unwrap(), None);
        // Too many bytes: refused at write time.
        let mut w = s.writer(&other, 5).await.unwrap();
        assert!(w.write(b"world!").await.is_err());
        drop(w);
        // Too few bytes: refused at commit.
        let mut w = s.writer(&other, 5).await.unwrap();
        w.write(b"worl").await.unwrap();
        assert!(w.commit().await.is_err());
        assert_eq!(
            std::fs::read_dir(s.root().join("ingest")).unwrap().count(),
            0
        );
    }

    #[test]
    fn open_removes_stale_ingest_files_and_refs_round_trip() {
        let (d, s) = store();
        std::fs::write(s.root().join("ingest/stale"), b"x").unwrap();
        let s = DirStore::open(d.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(s.root().join("ingest")).unwrap().count(),
            0
        );
        let digest = s.write_blob(b"{}").unwrap();
        let desc = Descriptor::new(MediaType::ImageManifest, 2, digest.clone());
        s.set_ref("a", &desc).unwrap();
        s.set_ref("b", &desc).unwrap();
        s.set_ref("a", &desc).unwrap();
        assert_eq!(s.index().unwrap().manifests().len(), 2);
        assert_eq!(
            Digest::try_from(s.resolve("b").unwrap().digest()).unwrap(),
            digest
        );
        assert!(matches!(s.resolve("c"), Err(Error::LocalNotFound { .. })));
    }
}
