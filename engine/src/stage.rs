//! Unpacking the layers of one pull at the same time (graph drivers whose layers are
//! independent diffs, like overlay): each blob is unpacked as soon as it is in the content
//! store, into a layer with no parent yet (libgraph's [`StagedLayer`]); the ordered phase
//! attaches them base first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use longshore_graph::{Digest, StagedLayer, Store};
use longshore_registry::{ProgressEvent, ProgressSender};
use tokio::task::JoinSet;

use crate::error::{Error, Result, graph};
use crate::pull::send;

/// A staged layer that is discarded unless it is taken for attaching, so an error or a
/// dropped pull leaves no layer behind, even for unpacks that finish after the drop.
pub(crate) struct Staged {
    store: Arc<Store>,
    layer: Option<StagedLayer>,
}

impl Staged {
    /// The diff ID computed while unpacking.
    pub(crate) fn diff_id(&self) -> &Digest {
        self.layer.as_ref().expect("present until taken").diff_id()
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
    running: JoinSet<(Digest, Result<Staged>)>,
    started: HashSet<Digest>,
    staged: HashMap<Digest, Staged>,
    failed: HashMap<Digest, Error>,
}

impl Stager {
    pub(crate) fn new(store: Arc<Store>, name: &str, progress: Option<ProgressSender>) -> Self {
        // Each unpack keeps about 1.5 cores busy (inflate, hashing and file writes on
        // three threads); more than one per core only adds contention.
        let jobs = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        Stager {
            store,
            name: name.to_string(),
            progress,
            jobs,
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

    /// Starts unpacking `blob` (already in the content store).
    pub(crate) fn start(&mut self, blob: &Digest) {
        if !self.started.insert(blob.clone()) {
            return;
        }
        let store = Arc::clone(&self.store);
        let blob = blob.clone();
        let name = self.name.clone();
        let progress = self.progress.clone();
        self.running.spawn_blocking(move || {
            let total = store.content().size(&blob).unwrap_or(0);
            send(
                progress.as_ref(),
                &blob,
                ProgressEvent::Extracting { current: 0, total },
            );
            let r = store
                .stage_layer_blob(&blob)
                .map(|l| Staged {
                    store: Arc::clone(&store),
                    layer: Some(l),
                })
                .map_err(graph(format!("unpack layer {blob} of {name}")));
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
