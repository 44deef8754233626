//! libregistry's [`ContentStore`](longshore_registry::ContentStore) trait on top of libgraph's
//! content store, so pulled blobs land (verified) exactly where libgraph applies them from.

use std::io::{self, Write};

use longshore_graph::{ContentStore, Digest, Error as GraphError, Writer};
use oci_spec::image::Digest as OciDigest;

/// Bytes gathered before one `write(2)` into the ingest file.
const BUF: usize = 1 << 20;

/// Converts a registry digest into a libgraph digest.
pub(crate) fn graph_digest(d: &OciDigest) -> io::Result<Digest> {
    Digest::parse(d.as_ref())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

fn other(e: GraphError) -> io::Error {
    io::Error::other(e)
}

/// libgraph's content store seen through libregistry's trait.
///
/// Each blob is written into libgraph's ingest area under the reference `pull-<digest>`
/// (`flock`ed, so two pulls of the same blob at once make the second fail instead of
/// interleaving); [`BlobWriter::commit`](longshore_registry::BlobWriter::commit) checks
/// size and digest, fsyncs and renames it into `blobs/`. A writer dropped or aborted
/// removes its ingest: a cancelled pull leaves no partial blob.
#[derive(Debug, Clone)]
pub struct GraphContent {
    content: ContentStore,
}

impl GraphContent {
    /// Wraps libgraph's content store (`Store::content().clone()`).
    pub fn new(content: ContentStore) -> GraphContent {
        GraphContent { content }
    }
}

impl longshore_registry::ContentStore for GraphContent {
    type Writer = GraphBlobWriter;
    type Reader = tokio::fs::File;

    async fn has(&self, digest: &OciDigest) -> io::Result<Option<u64>> {
        let d = graph_digest(digest)?;
        match self.content.size(&d) {
            Ok(n) => Ok(Some(n)),
            Err(GraphError::BlobNotFound(_)) => Ok(None),
            Err(e) => Err(other(e)),
        }
    }

    async fn writer(&self, digest: &OciDigest, size: u64) -> io::Result<GraphBlobWriter> {
        let d = graph_digest(digest)?;
        let mut w = self
            .content
            .writer(&format!("pull-{d}"), d.algorithm())
            .map_err(other)?;
        // libregistry streams from byte 0: drop what a crashed pull left behind.
        if w.offset() != 0 {
            w.truncate().map_err(other)?;
        }
        Ok(GraphBlobWriter {
            inner: Some(w),
            buf: Vec::with_capacity(BUF.min(size as usize)),
            digest: d,
            size,
            received: 0,
        })
    }

    async fn read(&self, digest: &OciDigest) -> io::Result<(tokio::fs::File, u64)> {
        let d = graph_digest(digest)?;
        let f = self.content.open_blob(&d).map_err(|e| match e {
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
}

impl GraphBlobWriter {
    fn flush_buf(&mut self) -> io::Result<()> {
        let w = self
            .inner
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))?;
        w.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
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
        self.received += data.len() as u64;
        // Page-cache writes of at most 1 MiB: short enough to do on the runtime thread.
        if self.buf.len() + data.len() > BUF {
            self.flush_buf()?;
        }
        if data.len() >= BUF {
            let w = self
                .inner
                .as_mut()
                .ok_or_else(|| io::Error::other("blob writer already finished"))?;
            w.write_all(data)?;
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
        // fsync and rename: off the runtime thread. If the pull is cancelled meanwhile
        // the commit still completes, leaving a whole, verified blob.
        tokio::task::spawn_blocking(move || w.commit(Some(size), Some(&digest)))
            .await
            .map_err(io::Error::other)?
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
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
