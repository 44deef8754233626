//! libregistry's [`ContentStore`](longshore_registry::ContentStore) trait on top of libgraph's
//! content store, so pulled blobs land (verified) exactly where libgraph applies them from.

use std::io::{self, Write};
use std::sync::Arc;

use longshore_graph::{ContentStore, Digest, Error as GraphError, Lease, Store, Writer};

use crate::stage::{StreamUnpack, Streams};

/// Bytes gathered before one `write(2)` into the ingest file.
const BUF: usize = 1 << 18;

fn other(e: GraphError) -> io::Error {
    io::Error::other(e)
}

/// libgraph's content store seen through libregistry's trait.
///
/// Each blob is written into libgraph's ingest area under the reference `pull-<digest>`
/// (`flock`ed, so two pulls of the same blob at once make the second fail instead of
/// interleaving); [`BlobWriter::commit`](longshore_registry::BlobWriter::commit) checks
/// the size, fsyncs and renames it into `blobs/`. The digest is not computed a second
/// time: by the [`ContentStore`](longshore_registry::ContentStore) contract, libregistry
/// commits only bytes it has hashed and matched. A writer dropped or aborted removes its
/// ingest: a cancelled pull leaves no partial blob.
#[derive(Clone)]
pub struct GraphContent {
    content: ContentStore,
    unpack: Option<Unpack>,
    lease: Option<Arc<Lease>>,
}

/// Where layers are unpacked while they download (the pull job, overlay stores).
#[derive(Clone)]
struct Unpack {
    store: Arc<Store>,
    streams: Arc<Streams>,
    name: String,
}

impl std::fmt::Debug for GraphContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphContent")
            .field("content", &self.content)
            .field("unpack_while_downloading", &self.unpack.is_some())
            .finish()
    }
}

impl GraphContent {
    /// Wraps libgraph's content store (`Store::content().clone()`).
    pub fn new(content: ContentStore) -> GraphContent {
        GraphContent {
            content,
            unpack: None,
            lease: None,
        }
    }

    /// The pull job's adapter: every blob the pull finds present or commits is added to
    /// `lease` (so a `gc` at the same time keeps it), and with `unpack`, each compressed
    /// layer blob is also unpacked into a staged layer while it downloads, the unpack
    /// handed to the streams once the blob is committed.
    pub(crate) fn for_pull(
        store: &Arc<Store>,
        lease: Arc<Lease>,
        unpack: Option<(Arc<Streams>, &str)>,
    ) -> Self {
        GraphContent {
            content: store.content().clone(),
            unpack: unpack.map(|(streams, name)| Unpack {
                store: Arc::clone(store),
                streams,
                name: name.to_string(),
            }),
            lease: Some(lease),
        }
    }
}

/// Whether a blob starting with `head` is a compressed layer (gzip, zstd), not a config
/// or manifest (JSON).
fn compressed_layer(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

impl longshore_registry::ContentStore for GraphContent {
    type Writer = GraphBlobWriter;
    type Reader = tokio::fs::File;

    async fn has(&self, d: &Digest) -> io::Result<Option<u64>> {
        // leased before the look-up: a gc running now has either removed it already (and
        // it is downloaded again) or keeps it
        if let Some(l) = &self.lease {
            l.add_blob(d);
        }
        match self.content.size(d) {
            Ok(n) => Ok(Some(n)),
            Err(GraphError::BlobNotFound(_)) => Ok(None),
            Err(e) => Err(other(e)),
        }
    }

    async fn writer(&self, d: &Digest, size: u64) -> io::Result<GraphBlobWriter> {
        let mut w = self
            .content
            .writer(&format!("pull-{d}"), d.algorithm())
            .map_err(other)?;
        // libregistry streams from byte 0: drop what a crashed pull left behind.
        if w.offset() != 0 {
            w.truncate().map_err(other)?;
        }
        // libregistry hashes every blob as it streams and commits only on a match (its
        // ContentStore contract): the ingest writer need not hash the bytes again
        w.verified_by_caller(d).map_err(other)?;
        Ok(GraphBlobWriter {
            inner: Some(w),
            buf: Vec::with_capacity(BUF.min(size as usize)),
            digest: d.clone(),
            size,
            received: 0,
            unpack: self.unpack.clone(),
            stream: None,
        })
    }

    async fn read(&self, d: &Digest) -> io::Result<(tokio::fs::File, u64)> {
        let f = self.content.open_blob(d).map_err(|e| match e {
            GraphError::BlobNotFound(_) => {
                io::Error::new(io::ErrorKind::NotFound, format!("blob {d} not found"))
            }
            e => other(e),
        })?;
        let len = f.metadata()?.len();
        Ok((tokio::fs::File::from_std(f), len))
    }
}

/// One blob being written into libgraph's ingest area; its ingest is removed when it is
/// dropped or aborted without a successful commit.
pub struct GraphBlobWriter {
    inner: Option<Writer>,
    buf: Vec<u8>,
    digest: Digest,
    size: u64,
    received: u64,
    unpack: Option<Unpack>,
    /// The unpack of this layer, following its ingest file as it is written.
    stream: Option<(StreamUnpack, Unpack)>,
}

impl GraphBlobWriter {
    fn ingest(&mut self) -> io::Result<&mut Writer> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))
    }

    /// Writes `data` to the ingest file and tells the unpack following it.
    fn write_out(&mut self, data: &[u8]) -> io::Result<()> {
        let w = self.ingest()?;
        w.write_all(data)?;
        let len = w.offset();
        if let Some((s, _)) = &self.stream {
            s.wrote(len);
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let r = self.write_out(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    /// Starts unpacking this compressed layer from its ingest file as it is written (the
    /// first bytes are not written yet). Without room or on any error, the layer is
    /// unpacked from its blob once committed.
    fn start_unpack(&mut self, u: Unpack) {
        let Some(w) = self.inner.as_ref() else { return };
        let Ok(file) = std::fs::File::open(w.data_path()) else {
            return;
        };
        self.stream = StreamUnpack::start(
            &u.streams,
            Arc::clone(&u.store),
            self.digest.clone(),
            u.name.clone(),
            file,
        )
        .ok()
        .map(|t| (t, u));
    }
}

impl longshore_registry::BlobWriter for GraphBlobWriter {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.received + data.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is larger than the expected {} bytes",
                    self.digest, self.size
                ),
            ));
        }
        if self.received == 0
            && let Some(u) = self.unpack.take()
            && compressed_layer(data)
        {
            self.start_unpack(u);
        }
        self.received += data.len() as u64;
        // Page-cache writes of at most 1 MiB: short enough to do on the runtime thread.
        if self.buf.len() + data.len() > BUF {
            self.flush_buf()?;
        }
        if data.len() >= BUF {
            self.write_out(data)?;
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(())
    }

    async fn commit(mut self) -> io::Result<()> {
        self.flush_buf()?;
        let w = self
            .inner
            .take()
            .ok_or_else(|| io::Error::other("blob writer already finished"))?;
        let (size, digest) = (self.size, self.digest.clone());
        // the unpack reads the end of the file during the fsync
        let unpacking = self.stream.take();
        if let Some((tee, _)) = &unpacking {
            tee.complete(w.offset());
        }
        // fsync and rename: off the runtime thread. If the pull is cancelled meanwhile
        // the commit still completes, leaving a whole, verified blob.
        let d = digest.clone();
        tokio::task::spawn_blocking(move || w.commit(Some(size), Some(&d)))
            .await
            .map_err(io::Error::other)?
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        // (on an error above, dropping the unpack stops it and discards its layer)
        if let Some((tee, u)) = unpacking {
            // the blob is clean now: what the unpack has read leaves the page cache (see
            // stage::FollowReader::drop_behind; it drops the rest as it goes)
            let consumed = std::num::NonZeroU64::new(tee.consumed());
            if let Some(len) = consumed
                && let Ok(f) = u.store.content().open_blob(&digest)
            {
                let _ = rustix::fs::fadvise(&f, 0, Some(len), rustix::fs::Advice::DontNeed);
            }
            if let Some(job) = tee.into_job() {
                u.streams.finished(digest, job);
            }
        }
        Ok(())
    }

    async fn abort(mut self) {
        if let Some(w) = self.inner.take() {
            let _ = w.abort();
        }
    }
}

impl Drop for GraphBlobWriter {
    fn drop(&mut self) {
        if let Some(w) = self.inner.take() {
            let _ = w.abort();
        }
    }
}
