//! Network namespaces: references to existing ones, named ones we create, and running code
//! inside one.
//!
//! Everything that touches a namespace runs on a short-lived dedicated thread that
//! `setns(2)`s into it: network namespaces are per thread, so the calling thread (and the
//! rest of the process) never changes namespace. Sockets opened on that thread (netlink,
//! TCP, UDP) stay bound to the namespace after the thread ends, and processes it spawns
//! (`nft`) inherit it.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::error::{Error, Result};

/// A handle on a network namespace: an open `nsfs` file and the path it came from.
///
/// Cloning is cheap (the file descriptor is shared).
#[derive(Debug, Clone)]
pub struct NetnsRef {
    file: Arc<File>,
    path: PathBuf,
}

impl NetnsRef {
    /// Opens the namespace file at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`...).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| Error::Netns {
            path: path.clone(),
            what: "open",
            source,
        })?;
        Ok(Self {
            file: Arc::new(file),
            path,
        })
    }

    /// The network namespace of process `pid`.
    pub fn from_pid(pid: u32) -> Result<Self> {
        Self::from_path(format!("/proc/{pid}/ns/net"))
    }

    /// The namespace of the calling thread, opened now.
    pub fn current() -> Result<Self> {
        Self::from_path("/proc/thread-self/ns/net")
    }

    /// The path this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open namespace file (for `IFLA_NET_NS_FD`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// True when both handles name the same namespace (same nsfs inode).
    pub fn same_as(&self, other: &NetnsRef) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Runs `f` on a dedicated thread that has entered this namespace, and returns its result.
    ///
    /// The calling thread's namespace is never changed. When the calling thread is in this
    /// namespace already, `f` runs on it: a thread costs a clone, a setns and a join (most
    /// of a controller's work is in its own namespace). So `f` must not change its thread's
    /// namespace itself; what must run elsewhere goes through that namespace's `run`.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> Result<T> + Send,
    {
        if self.is_current() {
            return f();
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter()?;
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// True when the calling thread is in this namespace.
    fn is_current(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (
            self.file.metadata(),
            fs::metadata("/proc/thread-self/ns/net"),
        ) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Moves the calling thread into this namespace. Only for threads this crate owns.
    pub(crate) fn enter(&self) -> Result<()> {
        nix::sched::setns(&*self.file, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
            path: self.path.clone(),
            what: "setns",
            source: e.into(),
        })
    }
}

/// A named network namespace under `/run/netns` that this process created; deleted on drop.
///
/// `ip netns exec NAME ...` works on it. Its loopback is brought up at creation. Names should
/// start with `ls` so leak checks can find them.
#[derive(Debug)]
pub struct NamedNetns {
    name: String,
    ns: NetnsRef,
    /// [`NamedNetns::keep`]: left mounted on drop.
    keep: bool,
}

impl NamedNetns {
    /// Directory of named namespaces, as used by iproute2.
    pub const DIR: &'static str = "/run/netns";

    /// Creates the namespace `/run/netns/<name>` (fails if it exists) with `lo` up.
    pub fn create(name: &str) -> Result<Self> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::InvalidInput {
                what: "namespace name",
                value: name.to_string(),
                reason: "must be a plain file name".into(),
            });
        }
        let dir = Path::new(Self::DIR);
        fs::create_dir_all(dir).map_err(crate::error::file_err(dir, "create directory"))?;
        let path = dir.join(name);
        File::create_new(&path).map_err(|source| Error::Netns {
            path: path.clone(),
            what: "create mount point",
            source,
        })?;
        let bound = std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                let fail = |what, e: nix::Error| Error::Netns {
                    path: path.clone(),
                    what,
                    source: e.into(),
                };
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| fail("unshare", e))?;
                nix::mount::mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| fail("bind mount", e))?;
                // loopback up from this thread, which is in the new namespace already
                crate::netlink::Netlink::open()?.set_up_by_name("lo")
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
        if let Err(e) = bound {
            // the bind mount may be there (loopback failed): gone first, or the file stays
            let _ = nix::mount::umount2(&path, MntFlags::MNT_DETACH);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let this = Self {
            name: name.to_string(),
            ns: NetnsRef::from_path(&path)?,
            keep: false,
        };
        Ok(this)
    }

    /// The namespace's name (file name under `/run/netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle on the namespace.
    pub fn netns(&self) -> &NetnsRef {
        &self.ns
    }

    /// The namespace file path.
    pub fn path(&self) -> &Path {
        self.ns.path()
    }

    /// Leaves the namespace mounted at its path after this handle is gone (the caller
    /// unmounts and removes it later), and closes the handle's file: a process that kept
    /// the file open (`mem::forget` of the handle) would keep the namespace, and the
    /// veths in it, alive after the mount is gone, for as long as it runs.
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.ns.path.clone()
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let path = self.ns.path.clone();
        if let Err(e) = nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
            eprintln!("longshore-network: unmount {}: {e}", path.display());
        }
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            eprintln!("longshore-network: remove {}: {e}", path.display());
        }
    }
}
