//! Background deletion of host-side veths.
//!
//! Deleting a veth pair (`RTM_DELLINK`) blocks the caller for about 20 ms: the kernel waits
//! for RCU grace periods (`synchronize_net`) while it unregisters both ends. Teardown hands
//! the veth to the [`Reaper`] instead: a thread in the host namespace that waits up to
//! [`LINGER`] for more, moves every ready veth into the interface group [`DYING_GROUP`]
//! (cheap) and then deletes the whole group with one request, so the kernel unregisters them
//! as one batch and pays the grace periods (and holds the RTNL lock that concurrent setups
//! need) once per batch rather than once per container.
//!
//! A veth whose container namespace is being destroyed anyway is queued with a grace period:
//! the kernel removes both ends when the namespace dies, and the reaper only deletes what is
//! still there afterwards (a namespace that someone else keeps alive).
//!
//! [`Reaper::flush`] makes everything queued ready now and waits until it is gone; dropping
//! the reaper flushes and joins the thread, except for veths queued as dying whose
//! namespace path no longer exists (left to the kernel). Addresses, rules, ports and records are released
//! by the caller synchronously; only the link itself is deferred, and
//! [`Reaper::wait_clear`] keeps a new container from reusing a name or address whose old
//! veth is still queued.
//!
//! The thread also unlinks files handed to it with [`Reaper::remove_file`] (endpoint records
//! already moved aside): on a filesystem mounted with `discard`, unlinking a file whose
//! blocks are allocated waits for the discard.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::netns::NetnsRef;

/// Interface group of veths queued for deletion (`"lsdv"`).
pub const DYING_GROUP: u32 = 0x6c73_6476;

/// How long a veth whose namespace is being destroyed is left to the kernel.
pub const NETNS_GRACE: Duration = Duration::from_secs(1);

/// How long a queued veth waits for others to share its batch (one set of RCU grace
/// periods, one hold of the RTNL lock, which setups wait for, per batch).
pub const LINGER: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
struct Entry {
    veth: String,
    ip: Option<Ipv4Addr>,
    netns: PathBuf,
    not_before: Instant,
    /// Queued by `disconnect_dying`: the kernel removes it with the namespace.
    dying: bool,
}

#[derive(Default)]
struct State {
    queue: Vec<Entry>,
    busy: Vec<Entry>,
    errors: Vec<Error>,
    /// Files to unlink, and how many the thread is unlinking now.
    files: Vec<PathBuf>,
    files_busy: usize,
    deleted: u64,
    gone_already: u64,
    stop: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counters of what the reaper did (for tests and diagnostics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReaperStats {
    /// Veths this process deleted.
    pub deleted: u64,
    /// Queued veths that were already gone (their namespace took them along).
    pub gone_already: u64,
    /// Veths queued or being deleted now.
    pub pending: usize,
}

/// The background veth deleter of one host namespace.
pub struct Reaper {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

impl Reaper {
    /// Starts the thread; it enters `host` before doing anything.
    pub fn start(host: &NetnsRef) -> Result<Self> {
        let shared: Shared = Arc::default();
        let (s, ns) = (shared.clone(), host.clone());
        let thread = std::thread::Builder::new()
            .name("ls-veth-reaper".into())
            .spawn(move || worker(&s, &ns))
            .map_err(|source| Error::Netns {
                path: host.path().to_path_buf(),
                what: "start the veth reaper thread",
                source,
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `veth` (whose container had `ip` and the namespace at `netns`) for deletion:
    /// after [`LINGER`], or after [`NETNS_GRACE`] when its namespace is going away and will
    /// most likely take it along.
    pub fn queue(&self, veth: &str, ip: Option<Ipv4Addr>, netns: &Path, netns_dying: bool) {
        let delay = if netns_dying { NETNS_GRACE } else { LINGER };
        let mut st = lock(&self.shared);
        st.queue.push(Entry {
            veth: veth.to_string(),
            ip,
            netns: netns.to_path_buf(),
            not_before: Instant::now() + delay,
            dying: netns_dying,
        });
        self.shared.1.notify_all();
    }

    /// Unlinks `path` on the thread (soon, without waiting for a batch of veths).
    pub fn remove_file(&self, path: PathBuf) {
        lock(&self.shared).files.push(path);
        self.shared.1.notify_all();
    }

    /// Waits until no queued veth has the name `veth`, the address `ip` or its peer in the
    /// namespace at `netns` (where the new peer would meet the old `eth0`); such veths are
    /// deleted now.
    pub fn wait_clear(&self, veth: &str, ip: Option<Ipv4Addr>, netns: &Path) {
        let hit = |e: &Entry| e.veth == veth || (ip.is_some() && e.ip == ip) || e.netns == netns;
        let mut st = lock(&self.shared);
        let mut promoted = false;
        let now = Instant::now();
        for e in st.queue.iter_mut().filter(|e| hit(e)) {
            e.not_before = now;
            promoted = true;
        }
        if promoted {
            self.shared.1.notify_all();
        }
        while st.queue.iter().chain(&st.busy).any(hit) {
            st = self.shared.1.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Deletes everything queued now and waits until it is gone. Returns the first error of
    /// the deletions since the last flush.
    pub fn flush(&self) -> Result<()> {
        let mut st = lock(&self.shared);
        let now = Instant::now();
        for e in &mut st.queue {
            e.not_before = now;
        }
        self.shared.1.notify_all();
        while !(st.queue.is_empty()
            && st.busy.is_empty()
            && st.files.is_empty()
            && st.files_busy == 0)
        {
            st = self.shared.1.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let mut errs = std::mem::take(&mut st.errors);
        match errs.is_empty() {
            true => Ok(()),
            false => Err(errs.swap_remove(0)),
        }
    }

    /// What the reaper did so far.
    pub fn stats(&self) -> ReaperStats {
        let st = lock(&self.shared);
        ReaperStats {
            deleted: st.deleted,
            gone_already: st.gone_already,
            pending: st.queue.len() + st.busy.len(),
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // a veth whose namespace is gone from its path (unpinned: the runtime released it)
        // is the kernel's to remove with the namespace; the process need not wait 20 ms for
        // it. Should the namespace live on through another reference, the veth has no
        // record any more and `Controller::cleanup` deletes it.
        lock(&self.shared)
            .queue
            .retain(|e| !(e.dying && !e.netns.as_os_str().is_empty() && !e.netns.exists()));
        if let Err(e) = self.flush() {
            eprintln!("longshore-network: veth reaper: {e}");
        }
        lock(&self.shared).stop = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn worker(shared: &Shared, host: &NetnsRef) {
    let entered = host.enter();
    let mut nl: Option<Netlink> = None;
    loop {
        let (batch, files): (Vec<String>, Vec<PathBuf>) = {
            let mut st = lock(shared);
            loop {
                let now = Instant::now();
                if st.queue.iter().any(|e| e.not_before <= now) || !st.files.is_empty() {
                    break;
                }
                if st.stop {
                    return;
                }
                st = match st.queue.iter().map(|e| e.not_before).min() {
                    Some(t) => {
                        shared
                            .1
                            .wait_timeout(st, t - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                    None => shared.1.wait(st).unwrap_or_else(|p| p.into_inner()),
                };
            }
            let files = std::mem::take(&mut st.files);
            st.files_busy = files.len();
            // everything that would be ready within LINGER joins the batch (when one is
            // ready: the thread may have woken for files only)
            let now = Instant::now();
            if st.queue.iter().any(|e| e.not_before <= now) {
                let soon = now + LINGER;
                let (ready, later): (Vec<Entry>, Vec<Entry>) =
                    st.queue.drain(..).partition(|e| e.not_before <= soon);
                st.queue = later;
                st.busy = ready;
            }
            (st.busy.iter().map(|e| e.veth.clone()).collect(), files)
        };
        let file_errs: Vec<Error> = files
            .iter()
            .filter_map(|f| crate::store::remove(f).err())
            .collect();
        if !files.is_empty() {
            let mut st = lock(shared);
            st.files_busy = 0;
            st.errors.extend(file_errs);
            shared.1.notify_all();
        }
        if batch.is_empty() {
            continue;
        }
        let res = match (&entered, nl.as_mut()) {
            (Err(e), _) => Err(Error::Netlink {
                op: format!("delete veths {batch:?}: enter the host namespace"),
                source: std::io::Error::other(e.to_string()),
            }),
            (Ok(()), Some(n)) => delete(n, &batch),
            (Ok(()), None) => Netlink::open().and_then(|n| delete(nl.insert(n), &batch)),
        };
        let mut st = lock(shared);
        st.busy.clear();
        match res {
            Ok((deleted, gone)) => {
                st.deleted += deleted;
                st.gone_already += gone;
            }
            Err(e) => st.errors.push(e),
        }
        shared.1.notify_all();
    }
}

/// Marks each veth dying, then deletes the group in one request. Returns (deleted, already
/// gone).
fn delete(nl: &mut Netlink, batch: &[String]) -> Result<(u64, u64)> {
    let (mut marked, mut gone) = (0u64, 0u64);
    let mut first_err = None;
    for v in batch {
        match nl.set_group(v, DYING_GROUP) {
            Ok(true) => marked += 1,
            Ok(false) => gone += 1,
            // cannot mark it: delete it on its own
            Err(e) => match nl.delete_link(v) {
                Ok(true) => marked += 1,
                Ok(false) => gone += 1,
                Err(_) => {
                    first_err.get_or_insert(e);
                }
            },
        }
    }
    if marked > 0 {
        nl.delete_group(DYING_GROUP)?;
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((marked, gone)),
    }
}
