//! Writes into `/proc` through a procfs the runtime trusts (CVE-2025-52881,
//! CVE-2019-16884 class).
//!
//! The container's `/proc` is assembled from the spec's mounts, and what is mounted on or
//! under it (a volume at `/proc/sys/net` holding symlinks, a tmpfs at `/proc/self/attr`)
//! would redirect a write by path: a sysctl into `/proc/sys/kernel/hostname`, an AppArmor
//! profile into a plain file. So every write the runtime makes under `/proc` (sysctls,
//! `oom_score_adj`, AppArmor attributes, time namespace offsets) goes through [`ProcFs`]:
//! a procfs instance of our own (`fsopen`/`fsmount`, never attached to any mount tree,
//! so nothing can be mounted on it; the runtime's own `/proc`, checked to be a procfs
//! root, where the new mount API is refused), opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)` and checked with `fstatfs` to be procfs.
//!
//! Sysctls resolve against the writer's namespaces (net, uts, ipc), and `/proc/<pid>`
//! is found by reading `self` in this procfs, so a handle made by the runtime serves
//! the init and exec processes in every namespace.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// `PROC_SUPER_MAGIC`.
const PROC_SUPER_MAGIC: u64 = 0x9fa0;
/// The inode number of a procfs root (`PROC_ROOT_INO`).
const PROC_ROOT_INO: u64 = 1;

/// The root of a procfs that nothing in a container can have changed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcFs<'a> {
    root: BorrowedFd<'a>,
}

/// This process's trusted procfs, made on first use.
pub(crate) fn handle() -> io::Result<ProcFs<'static>> {
    static FD: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = FD.get() {
        return Ok(ProcFs { root: fd.as_fd() });
    }
    let made = private().or_else(|_| hosts())?;
    let fd = FD.get_or_init(|| made);
    Ok(ProcFs { root: fd.as_fd() })
}

/// A detached procfs mount of our own.
fn private() -> io::Result<OwnedFd> {
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, fsconfig_create, fsmount, fsopen,
    };
    let fs = fsopen("proc", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_create(&fs)?;
    let mnt = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )?;
    check_root(&mnt)?;
    Ok(mnt)
}

/// The calling process's own `/proc`, if it is the root of a procfs.
fn hosts() -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        "/proc",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    check_root(&fd)?;
    Ok(fd)
}

fn check_root(fd: &OwnedFd) -> io::Result<()> {
    check_procfs(fd)?;
    if rustix::fs::fstat(fd)?.st_ino != PROC_ROOT_INO {
        return Err(io::Error::other("/proc is not the root of a procfs"));
    }
    Ok(())
}

fn check_procfs(fd: impl AsFd) -> io::Result<()> {
    let st = rustix::fs::fstatfs(fd)?;
    if st.f_type as u64 != PROC_SUPER_MAGIC {
        return Err(io::Error::other(format!(
            "not procfs (filesystem magic {:#x})",
            st.f_type
        )));
    }
    Ok(())
}

impl<'a> ProcFs<'a> {
    /// Uses the procfs whose root is open at `root` (inherited by the init process).
    pub(crate) fn from_root(root: BorrowedFd<'a>) -> Self {
        ProcFs { root }
    }

    /// The descriptor of the procfs root.
    pub(crate) fn root(&self) -> BorrowedFd<'a> {
        self.root
    }

    /// Opens `rel` (relative to the procfs root) with `flags`, refusing symlinks, `..`
    /// out of the root and mount crossings, and checks that what opened is on procfs.
    pub(crate) fn open(&self, rel: &str, flags: OFlags) -> io::Result<File> {
        let fd = rustix::fs::openat2(
            self.root,
            rel,
            flags | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
        )
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("/proc/{rel}: {e}")))?;
        check_procfs(&fd).map_err(|e| io::Error::other(format!("/proc/{rel}: {e}")))?;
        Ok(File::from(fd))
    }

    /// This process's directory (`<pid>` as this procfs numbers it; `self` is a symlink
    /// and so refused by [`ProcFs::open`]).
    pub(crate) fn own_dir(&self) -> io::Result<String> {
        let link = rustix::fs::readlinkat(self.root, "self", Vec::new())?;
        let pid = link.to_string_lossy().into_owned();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(io::Error::other(format!("/proc/self points at {pid:?}")));
        }
        Ok(pid)
    }

    /// Writes `data` to `rel` in one `write`, as the kernel's proc files expect.
    pub(crate) fn write(&self, rel: &str, data: &[u8]) -> io::Result<()> {
        let mut f = self.open(rel, OFlags::WRONLY)?;
        f.write_all(data)
    }

    /// Writes `data` to `<own pid>/rel`.
    pub(crate) fn write_own(&self, rel: &str, data: &[u8]) -> io::Result<()> {
        let dir = self.own_dir()?;
        self.write(&format!("{dir}/{rel}"), data)
    }

    /// True when `<own pid>/rel` exists.
    pub(crate) fn own_exists(&self, rel: &str) -> bool {
        self.own_dir()
            .and_then(|dir| self.open(&format!("{dir}/{rel}"), OFlags::PATH))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_refuses_what_is_not_procfs() {
        longshore_test_support::require_root!();
        let p = handle().unwrap();
        let pid = p.own_dir().unwrap();
        assert_eq!(pid, std::process::id().to_string());
        let adj = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
        p.write_own("oom_score_adj", adj.trim().as_bytes()).unwrap();
        // symlinks are refused, even procfs's own
        assert!(p.open("self/status", OFlags::RDONLY).is_err());
        assert!(p.open("../etc/passwd", OFlags::RDONLY).is_err());
        // a directory that is not procfs is not accepted as its root
        let tmp = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(tmp.path(), OFlags::PATH, Mode::empty()).unwrap();
        assert!(check_root(&fd).is_err());
    }
}
