//! Walking trees of any depth without recursion and with a bounded number of open
//! descriptors: removing ([`remove_at`]) and copying
//! ([`copy_tree`](crate::driver::vfs::copy_tree)).
//!
//! A layer may be thousands of directories deep (a 1 KB gzip layer can hold a 2000-deep
//! chain). A recursive walk overflows a 2 MiB thread stack on it, and one that holds a
//! descriptor per level runs out of the usual 1024. [`DirChain`] keeps the path from a base
//! directory as names and holds descriptors only for the deepest [`HELD`] levels; an
//! ancestor whose descriptor was closed is reopened by name from the nearest open one, each
//! component with `O_NOFOLLOW | O_DIRECTORY`, so the walk never leaves the base.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

/// Directory descriptors a [`DirChain`] holds at most (plus one while reopening).
pub(crate) const HELD: usize = 16;

/// Flags to open a directory of the walk: never through a symlink.
pub(crate) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn os(b: &[u8]) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(b)
}

/// The directories from a base down to the current one, as names, with descriptors for the
/// deepest [`HELD`] of them.
pub(crate) struct DirChain<'a> {
    base: BorrowedFd<'a>,
    levels: Vec<(Vec<u8>, Option<OwnedFd>)>,
}

impl<'a> DirChain<'a> {
    pub(crate) fn new(base: BorrowedFd<'a>) -> Self {
        DirChain {
            base,
            levels: Vec::new(),
        }
    }

    /// How many levels below the base the current directory is.
    pub(crate) fn depth(&self) -> usize {
        self.levels.len()
    }

    /// The names from the base to the current directory.
    pub(crate) fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.levels.iter().map(|(n, _)| n.as_slice())
    }

    /// Enters `name`, a directory in the current one, opened as `fd`.
    pub(crate) fn push(&mut self, name: Vec<u8>, fd: OwnedFd) {
        self.levels.push((name, Some(fd)));
        let n = self.levels.len();
        if n > HELD {
            self.levels[n - 1 - HELD].1 = None;
        }
    }

    /// Leaves the current directory; returns its name (`None` at the base).
    pub(crate) fn pop(&mut self) -> Option<Vec<u8>> {
        self.levels.pop().map(|(n, _)| n)
    }

    /// The current directory's descriptor, reopened if it was closed.
    pub(crate) fn current(&mut self) -> rustix::io::Result<BorrowedFd<'_>> {
        self.reopen()?;
        Ok(self.fd())
    }

    /// The current directory's descriptor; [`DirChain::reopen`] must have been called
    /// since the last [`DirChain::pop`].
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self.levels.last() {
            None => self.base,
            Some((_, Some(fd))) => fd.as_fd(),
            Some((_, None)) => unreachable!("reopen() is called before fd()"),
        }
    }

    /// Opens the current directory again if its descriptor was closed, with the closed
    /// ancestors on the way from the nearest open one (keeping at most [`HELD`] open).
    pub(crate) fn reopen(&mut self) -> rustix::io::Result<()> {
        let Some(top) = self.levels.len().checked_sub(1) else {
            return Ok(());
        };
        if self.levels[top].1.is_none() {
            let from = (0..top)
                .rev()
                .find(|&i| self.levels[i].1.is_some())
                .map_or(0, |i| i + 1);
            for i in from..=top {
                let fd = {
                    let parent = match i.checked_sub(1) {
                        None => self.base,
                        Some(p) => match &self.levels[p].1 {
                            Some(fd) => fd.as_fd(),
                            None => unreachable!("level {p} was opened just before"),
                        },
                    };
                    rustix::fs::openat(parent, os(&self.levels[i].0), DIR_FLAGS, Mode::empty())?
                };
                self.levels[i].1 = Some(fd);
                if i >= HELD {
                    self.levels[i - HELD].1 = None;
                }
            }
        }
        Ok(())
    }
}

/// The entry names of a directory (without `.` and `..`), in directory order.
pub(crate) fn read_names(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir)?;
    for ent in d.by_ref() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

/// Unlinks every non-directory in `dir`; returns the names of its subdirectories.
fn empty_files(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<Vec<u8>>> {
    let mut subdirs = Vec::new();
    for n in read_names(dir)? {
        match rustix::fs::unlinkat(dir, os(&n), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) | Err(Errno::PERM) => subdirs.push(n),
            Err(e) => return Err(e),
        }
    }
    Ok(subdirs)
}

/// Removes `name` in `dir` (the whole tree for a directory), never following symlinks,
/// without recursion and with at most [`HELD`] + 2 descriptors open. A missing entry is
/// not an error.
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    let first = match rustix::fs::unlinkat(dir, os(name), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(e @ (Errno::ISDIR | Errno::PERM)) => e,
        Err(e) => return Err(e),
    };
    let mut chain = DirChain::new(dir);
    // per level below `dir`: the subdirectories still to remove
    let mut pending: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut next = Some(name.to_vec());
    loop {
        if let Some(n) = next.take() {
            let opened = rustix::fs::openat(chain.current()?, os(&n), DIR_FLAGS, Mode::empty());
            match opened {
                Ok(fd) => {
                    let subdirs = empty_files(fd.as_fd())?;
                    chain.push(n, fd);
                    pending.push(subdirs);
                }
                // removed meanwhile: nothing to do for it
                Err(Errno::NOENT) if chain.depth() == 0 => return Ok(()),
                Err(Errno::NOENT) => {}
                // not a directory after all: the first unlink's error stands
                Err(Errno::NOTDIR) if chain.depth() == 0 => return Err(first),
                Err(e) => return Err(e),
            }
        }
        let Some(todo) = pending.last_mut() else {
            return Ok(());
        };
        if let Some(sub) = todo.pop() {
            next = Some(sub);
            continue;
        }
        // the current directory is empty now: remove it from its parent
        pending.pop();
        let Some(done) = chain.pop() else {
            return Ok(());
        };
        match rustix::fs::unlinkat(chain.current()?, os(&done), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        if pending.is_empty() {
            return Ok(());
        }
    }
}
