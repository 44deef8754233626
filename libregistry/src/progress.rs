//! Per-layer progress events for drawing Docker-style progress bars.

use crate::reference::Digest;
use tokio::sync::mpsc::UnboundedSender;

/// Where progress events go.
pub type ProgressSender = UnboundedSender<Progress>;

/// One event about one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Short id, as Docker shows it (first 12 hex digits of the digest).
    pub id: String,
    /// The blob's digest.
    pub digest: Digest,
    /// What happened.
    pub event: ProgressEvent,
}

/// What happened to a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// Queued behind other transfers.
    Waiting,
    /// Bytes transferred so far out of the total.
    Downloading {
        /// Bytes received.
        current: u64,
        /// Blob size.
        total: u64,
    },
    /// A transfer failed and is being retried (resuming where it stopped).
    Retrying {
        /// Attempt number, from 1.
        attempt: u32,
        /// Why the last attempt failed.
        reason: String,
    },
    /// All bytes are in; checking the digest.
    Verifying,
    /// Being unpacked (emitted by the layer store, e.g. libgraph, not by this crate).
    Extracting {
        /// Bytes unpacked.
        current: u64,
        /// Blob size.
        total: u64,
    },
    /// Committed to the content store.
    Done,
    /// The blob was already present; nothing transferred.
    AlreadyExists,
    /// Bytes uploaded so far out of the total.
    Pushing {
        /// Bytes sent.
        current: u64,
        /// Blob size.
        total: u64,
    },
    /// Mounted from another repository of the same registry; nothing uploaded.
    Mounted {
        /// The source repository.
        from: String,
    },
    /// Uploaded.
    Pushed,
}

pub(crate) fn short_id(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

pub(crate) fn emit(tx: Option<&ProgressSender>, digest: &Digest, event: ProgressEvent) {
    if let Some(tx) = tx {
        // A closed receiver only means nobody is watching.
        let _ = tx.send(Progress {
            id: short_id(digest),
            digest: digest.clone(),
            event,
        });
    }
}
