//! Leases: what a pull or build holds so that a `gc` at the same time keeps it.

use super::*;

/// What live [`Lease`]s protect from [`Store::gc`].
#[derive(Default)]
pub(super) struct Leases {
    pub(super) next: u64,
    pub(super) live: HashMap<u64, Leased>,
}

pub(super) struct Leased {
    pub(super) since: std::time::SystemTime,
    pub(super) blobs: HashSet<Digest>,
    pub(super) chains: HashSet<Digest>,
}

/// Protects what an operation in progress (a pull, a build) will reference but nothing
/// references yet from [`Store::gc`]: the blobs and layer chains added to it, and every blob
/// committed since the lease was taken. Dropping it ends the protection.
pub struct Lease {
    id: u64,
    leases: Arc<Mutex<Leases>>,
}

impl Lease {
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Leased) -> T) -> Option<T> {
        let mut l = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        l.live.get_mut(&self.id).map(f)
    }

    /// Protects a blob (for example one a pull found already present and will use). Once
    /// this returns, a `gc` running at the same time has either not removed it or has
    /// finished removing it.
    pub fn add_blob(&self, digest: &Digest) {
        self.with(|l| l.blobs.insert(digest.clone()));
    }

    /// Protects the complete layer with this chain ID (and so its parents) even while no
    /// image references it yet.
    pub fn add_chain(&self, chain: &Digest) {
        self.with(|l| l.chains.insert(chain.clone()));
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut l = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        l.live.remove(&self.id);
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).finish()
    }
}

impl Store {
    /// Takes a [`Lease`]: until it is dropped, `gc` keeps what it protects.
    pub fn lease(&self) -> Lease {
        let mut l = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        l.next += 1;
        let id = l.next;
        l.live.insert(
            id,
            Leased {
                // a little slack for filesystem timestamp granularity
                since: std::time::SystemTime::now() - std::time::Duration::from_secs(1),
                blobs: HashSet::new(),
                chains: HashSet::new(),
            },
        );
        Lease {
            id,
            leases: Arc::clone(&self.leases),
        }
    }
}
