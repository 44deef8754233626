//! Unpacking the layers of one pull at the same time (graph drivers whose layers are
//! independent diffs, like overlay): each blob is unpacked as soon as it is in the content
//! store, into a layer with no parent yet (libgraph's [`StagedLayer`]); the ordered phase
//! attaches them base first.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use longshore_graph::{Digest, StagedLayer, Store};
use longshore_registry::{ProgressEvent, ProgressSender};
use tokio::task::JoinSet;

use crate::error::{Error, Result, graph};
use crate::pull::send;

/// Layers being unpacked straight from their downloads, by blob digest: the content
/// adapter starts them ([`StreamTee`]) and hands them over when the blob is committed; the
/// stager picks them up. A handle dropped unclaimed lets its thread finish and discard.
#[derive(Default)]
pub(crate) struct Streams {
    done: Mutex<HashMap<Digest, JoinHandle<Result<Staged>>>>,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, JoinHandle<Result<Staged>>>> {
        self.done.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files the unpack of a blob whose download was committed.
    pub(crate) fn finished(&self, blob: Digest, job: JoinHandle<Result<Staged>>) {
        self.lock().insert(blob, job);
    }

    fn take(&self, blob: &Digest) -> Option<JoinHandle<Result<Staged>>> {
        self.lock().remove(blob)
    }
}

/// Bytes gathered before one hand-off to a streaming unpack.
const TEE_CHUNK: usize = 256 << 10;
/// Chunks in flight to one streaming unpack (bounds its memory to about 4 MiB).
const TEE_DEPTH: usize = 16;

/// The download side of a streaming unpack: the blob's bytes go to a thread that stages
/// the layer from them while they are also written to the content store.
pub(crate) struct StreamTee {
    tx: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    pending: Vec<u8>,
    job: Option<JoinHandle<Result<Staged>>>,
}

impl StreamTee {
    /// Starts unpacking `blob` from the bytes [`StreamTee::write`] will pass on.
    pub(crate) fn start(store: Arc<Store>, blob: Digest, name: String) -> io::Result<StreamTee> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(TEE_DEPTH);
        let job = std::thread::Builder::new()
            .name("longshore-unpack".into())
            .spawn(move || {
                let reader = TeeReader {
                    rx,
                    buf: Vec::new(),
                    pos: 0,
                };
                // the bytes are the download's, which libregistry hashes: not again here
                // (the layer is attached only once the blob committed, so verified)
                let r = store.stage_layer_download(&blob, reader);
                Staged::new(&store, r, true, &blob, &name)
            })?;
        Ok(StreamTee {
            tx: Some(tx),
            pending: Vec::with_capacity(TEE_CHUNK),
            job: Some(job),
        })
    }

    /// Passes bytes on. An unpack that stopped (its error is reported when the stager
    /// asks for the layer, which it then unpacks from the stored blob) just stops the tee.
    pub(crate) async fn write(&mut self, data: &[u8]) {
        if self.tx.is_none() {
            return;
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= TEE_CHUNK {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(TEE_CHUNK));
        if let Some(tx) = &self.tx
            && tx.send(chunk).await.is_err()
        {
            self.tx = None;
        }
    }

    /// The whole blob was passed on (and committed): ends the stream and returns the
    /// unpack for [`Streams::finished`].
    pub(crate) async fn finish(mut self) -> Option<JoinHandle<Result<Staged>>> {
        if !self.pending.is_empty() {
            self.flush().await;
        }
        self.tx = None;
        self.job.take()
    }
}

/// The unpacking thread's side of the tee.
struct TeeReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for TeeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                // the download ended or was dropped: a cut stream fails the digest check
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A staged layer that is discarded unless it is taken for attaching, so an error or a
/// dropped pull leaves no layer behind, even for unpacks that finish after the drop.
pub(crate) struct Staged {
    store: Arc<Store>,
    layer: Option<StagedLayer>,
    from_download: bool,
}

impl Staged {
    /// Wraps the result of unpacking `blob` of image `name`.
    fn new(
        store: &Arc<Store>,
        staged: longshore_graph::Result<StagedLayer>,
        from_download: bool,
        blob: &Digest,
        name: &str,
    ) -> Result<Staged> {
        staged
            .map(|l| Staged {
                store: Arc::clone(store),
                layer: Some(l),
                from_download,
            })
            .map_err(graph(format!("unpack layer {blob} of {name}")))
    }

    /// The diff ID computed while unpacking.
    pub(crate) fn diff_id(&self) -> &Digest {
        self.layer.as_ref().expect("present until taken").diff_id()
    }

    /// Whether it was unpacked from the download's bytes as they arrived.
    pub(crate) fn streamed(&self) -> bool {
        self.from_download
    }

    /// Takes the layer out, to attach it.
    pub(crate) fn take(mut self) -> StagedLayer {
        self.layer.take().expect("present until taken")
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(l) = self.layer.take() {
            self.store.discard_staged(l);
        }
    }
}

/// Unpacks up to `jobs` blobs at once, each on a blocking thread.
pub(crate) struct Stager {
    store: Arc<Store>,
    name: String,
    progress: Option<ProgressSender>,
    jobs: usize,
    streams: Arc<Streams>,
    running: JoinSet<(Digest, Result<Staged>)>,
    started: HashSet<Digest>,
    staged: HashMap<Digest, Staged>,
    failed: HashMap<Digest, Error>,
}

impl Stager {
    pub(crate) fn new(
        store: Arc<Store>,
        name: &str,
        progress: Option<ProgressSender>,
        streams: Arc<Streams>,
    ) -> Self {
        // Each unpack keeps about 1.5 cores busy (inflate, hashing and file writes on
        // three threads); more than one per core only adds contention.
        let jobs = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        Stager {
            store,
            name: name.to_string(),
            progress,
            jobs,
            streams,
            running: JoinSet::new(),
            started: HashSet::new(),
            staged: HashMap::new(),
            failed: HashMap::new(),
        }
    }

    /// Whether another unpack may start now.
    pub(crate) fn has_room(&self) -> bool {
        self.running.len() < self.jobs
    }

    /// Whether some unpack is running.
    pub(crate) fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// Whether `blob` was started (and is running, staged or failed).
    pub(crate) fn started(&self, blob: &Digest) -> bool {
        self.started.contains(blob)
    }

    /// Starts unpacking `blob` (already in the content store), or waiting for the
    /// unpack that ran during its download.
    pub(crate) fn start(&mut self, blob: &Digest) {
        if !self.started.insert(blob.clone()) {
            return;
        }
        let store = Arc::clone(&self.store);
        let blob = blob.clone();
        let name = self.name.clone();
        let progress = self.progress.clone();
        let streamed = self.streams.take(&blob);
        self.running.spawn_blocking(move || {
            let total = store.content().size(&blob).unwrap_or(0);
            send(
                progress.as_ref(),
                &blob,
                ProgressEvent::Extracting { current: 0, total },
            );
            let from_download = streamed.and_then(|job| match job.join() {
                Ok(Ok(staged)) => Some(staged),
                Ok(Err(e)) => {
                    tracing::debug!("unpack during download failed, unpacking the blob: {e}");
                    None
                }
                Err(_) => None,
            });
            let r = match from_download {
                Some(staged) => Ok(staged),
                None => Staged::new(&store, store.stage_layer_blob(&blob), false, &blob, &name),
            };
            if r.is_ok() {
                send(
                    progress.as_ref(),
                    &blob,
                    ProgressEvent::Extracting {
                        current: total,
                        total,
                    },
                );
            }
            (blob, r)
        });
    }

    /// Waits for one running unpack to end and files its result.
    pub(crate) async fn next(&mut self) -> Result<()> {
        match self.running.join_next().await {
            Some(Ok((blob, Ok(s)))) => {
                self.staged.insert(blob, s);
                Ok(())
            }
            Some(Ok((blob, Err(e)))) => {
                self.failed.insert(blob, e);
                Ok(())
            }
            Some(Err(e)) => Err(Error::Worker {
                what: "unpacking a layer".into(),
                reason: e.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The staged layer of `blob`, unpacking it first if needed (and, while waiting,
    /// starting the blobs of `ahead` that are not started, as room allows).
    pub(crate) async fn take(&mut self, blob: &Digest, ahead: &[Digest]) -> Result<Staged> {
        loop {
            if let Some(s) = self.staged.remove(blob) {
                // the same blob later in the image needs a staging of its own
                self.started.remove(blob);
                return Ok(s);
            }
            if let Some(e) = self.failed.remove(blob) {
                return Err(e);
            }
            if !self.started(blob) {
                self.start(blob);
            }
            for b in ahead {
                if !self.has_room() {
                    break;
                }
                if !self.started(b) {
                    self.start(b);
                }
            }
            self.next().await?;
        }
    }

    /// Waits for every running unpack (their layers are discarded when the stager is
    /// dropped unless taken).
    pub(crate) async fn drain(&mut self) -> Result<()> {
        while self.busy() {
            self.next().await?;
        }
        Ok(())
    }
}
