//! The `vfs` driver: every layer is a full copy of its parent plus its own changes.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::{Driver, check_id};
use crate::apply::{ApplyOptions, ApplyReport, WhiteoutMode, apply_layer, remove_tree};
use crate::archive::{TarWriter, read_xattrs};
use crate::changes::{Change, changes_dirs};
use crate::error::{Error, IoContext, Result};
use crate::walk::{DirChain, read_names};

/// Full-copy graph driver.
#[derive(Debug)]
pub struct Vfs {
    home: PathBuf,
    users: Mutex<HashMap<String, usize>>,
}

impl Vfs {
    /// Opens the driver's home, removing half-created layers left by a crash.
    pub fn open(home: impl Into<PathBuf>) -> Result<Vfs> {
        Vfs::open_with(home, true)
    }

    /// Like [`Vfs::open`]; without `cleanup`, half-created layers are left alone (another
    /// process may be creating them).
    pub fn open_with(home: impl Into<PathBuf>, cleanup: bool) -> Result<Vfs> {
        let home = home.into();
        for sub in ["dir", "parent"] {
            fs::create_dir_all(home.join(sub)).ctx("create directory", home.join(sub))?;
        }
        // layers hold image content (set-user-ID files): only the owner may reach them
        crate::store::private_dir(&home, crate::store::PRIVATE_MODE)?;
        let dir = home.join("dir");
        for e in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let e = e.ctx("read directory", &dir)?;
            if cleanup && e.file_name().to_string_lossy().starts_with(".tmp-") {
                remove_tree(&e.path())?;
            }
        }
        Ok(Vfs {
            home,
            users: Mutex::new(HashMap::new()),
        })
    }

    fn existing(&self, id: &str) -> Result<PathBuf> {
        check_id(id)?;
        if !self.exists(id) {
            return Err(Error::LayerNotFound(id.to_string()));
        }
        Ok(self.dir(id))
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.home.join("dir").join(id)
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // a panic while holding the lock leaves a usable map
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn parent_file(&self, id: &str) -> PathBuf {
        self.home.join("parent").join(id)
    }
}

impl Driver for Vfs {
    fn name(&self) -> &'static str {
        "vfs"
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>) -> Result<()> {
        check_id(id)?;
        if self.exists(id) {
            return Err(Error::LayerExists(id.to_string()));
        }
        let tmp = self.home.join("dir").join(format!(".tmp-{id}"));
        remove_tree(&tmp)?;
        match parent {
            Some(p) => {
                check_id(p)?;
                if !self.exists(p) {
                    return Err(Error::LayerNotFound(p.to_string()));
                }
                copy_tree(&self.dir(p), &tmp)?;
            }
            None => {
                fs::create_dir(&tmp).ctx("create layer directory", &tmp)?;
                fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).ctx("chmod", &tmp)?;
            }
        }
        let pf = self.parent_file(id);
        fs::write(&pf, parent.unwrap_or("")).ctx("write parent", &pf)?;
        let dir = self.dir(id);
        fs::rename(&tmp, &dir).ctx("rename layer directory", &dir)?;
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<()> {
        check_id(id)?;
        if !self.exists(id) {
            return Err(Error::LayerNotFound(id.to_string()));
        }
        if self.users().get(id).copied().unwrap_or(0) > 0 {
            return Err(Error::LayerBusy {
                id: id.to_string(),
                reason: "it is in use; put() it first".into(),
            });
        }
        remove_tree(&self.dir(id))?;
        let _ = fs::remove_file(self.parent_file(id));
        Ok(())
    }

    fn remove_to(&self, id: &str, to: &Path) -> Result<()> {
        check_id(id)?;
        if !self.exists(id) || self.users().get(id).copied().unwrap_or(0) > 0 {
            // the errors are remove's
            return self.remove(id);
        }
        if fs::rename(self.dir(id), to).is_err() {
            remove_tree(&self.dir(id))?;
        }
        let _ = fs::remove_file(self.parent_file(id));
        Ok(())
    }

    fn exists(&self, id: &str) -> bool {
        check_id(id).is_ok() && self.dir(id).is_dir()
    }

    fn get(&self, id: &str) -> Result<PathBuf> {
        check_id(id)?;
        if !self.exists(id) {
            return Err(Error::LayerNotFound(id.to_string()));
        }
        *self.users().entry(id.to_string()).or_insert(0) += 1;
        Ok(self.dir(id))
    }

    fn put(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let mut users = self.users();
        if let Some(n) = users.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                users.remove(id);
            }
        }
        Ok(())
    }

    fn apply_diff(&self, id: &str, diff: &mut (dyn Read + Send)) -> Result<ApplyReport> {
        let root = self.existing(id)?;
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            ..ApplyOptions::default()
        };
        apply_layer(diff, &root, &opts)
    }

    fn changes(&self, id: &str) -> Result<Vec<Change>> {
        let root = self.existing(id)?;
        let parent = self.parent(id)?.map(|p| self.dir(&p));
        changes_dirs(&root, parent.as_deref())
    }

    fn diff_of(&self, id: &str, changes: &[Change], out: &mut dyn Write) -> Result<()> {
        self.existing(id)?;
        let mut w = TarWriter::new(out);
        w.append_changes(&self.dir(id), changes)?;
        w.finish()?;
        Ok(())
    }

    fn parent(&self, id: &str) -> Result<Option<String>> {
        check_id(id)?;
        let pf = self.parent_file(id);
        match fs::read_to_string(&pf) {
            Ok(s) if s.is_empty() => Ok(None),
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::LayerNotFound(id.to_string()))
            }
            Err(e) => Err(Error::io("read parent", pf, e)),
        }
    }
}

/// Copies a tree with owners, modes, times, xattrs, hardlinks, symlinks and device nodes.
///
/// `src` must be a directory; `dst` must not exist. The walk is iterative and holds a
/// bounded number of descriptors ([`crate::walk`]), so a tree of any depth is copied (a
/// recursive copy overflowed a 2 MiB thread stack on a 2000-deep layer). Nothing is
/// followed: every entry is opened relative to its directory with `O_NOFOLLOW`.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let src_root = rustix::fs::open(src, DIR_FLAGS, Mode::empty()).ctx("open directory", src)?;
    let root_stat = rustix::fs::fstat(&src_root).ctx("stat", src)?;
    fs::create_dir(dst).ctx("mkdir", dst)?;
    let dst_root = rustix::fs::open(dst, DIR_FLAGS, Mode::empty()).ctx("open directory", dst)?;
    let mut copier = Copier {
        src,
        dst,
        links: HashMap::new(),
    };
    let mut sdirs = DirChain::new(src_root.as_fd());
    let mut ddirs = DirChain::new(dst_root.as_fd());
    // per open directory: the entries still to copy (sorted, popped from the end) and the
    // directory's own stat, applied when it is left (its children change its times)
    let mut stack: Vec<(Vec<Vec<u8>>, rustix::fs::Stat)> =
        vec![(sorted_names(src_root.as_fd(), src)?, root_stat)];
    while let Some((todo, _)) = stack.last_mut() {
        let Some(name) = todo.pop() else {
            let Some((_, st)) = stack.pop() else { break };
            sdirs.reopen().ctx("open directory", src)?;
            ddirs.reopen().ctx("open directory", dst)?;
            let shown = copier.shown(&ddirs, b"");
            copier.set_fd_meta(sdirs.fd(), ddirs.fd(), &st, &shown)?;
            sdirs.pop();
            ddirs.pop();
            continue;
        };
        sdirs.reopen().ctx("open directory", src)?;
        ddirs.reopen().ctx("open directory", dst)?;
        let (s, d) = (sdirs.fd(), ddirs.fd());
        let st = rustix::fs::statat(s, os(&name), AtFlags::SYMLINK_NOFOLLOW)
            .ctx("stat", copier.src.join(os(&name)))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            rustix::fs::mkdirat(d, os(&name), Mode::from_raw_mode(0o700))
                .ctx("mkdir", copier.dst.join(os(&name)))?;
            let sfd = rustix::fs::openat(s, os(&name), DIR_FLAGS, Mode::empty())
                .ctx("open directory", copier.src.join(os(&name)))?;
            let dfd = rustix::fs::openat(d, os(&name), DIR_FLAGS, Mode::empty())
                .ctx("open directory", copier.dst.join(os(&name)))?;
            let names = sorted_names(sfd.as_fd(), src)?;
            sdirs.push(name.clone(), sfd);
            ddirs.push(name, dfd);
            stack.push((names, st));
        } else {
            copier.leaf(s, d, &name, &st, &ddirs, dst_root.as_fd())?;
        }
    }
    Ok(())
}

const DIR_FLAGS: OFlags = crate::walk::DIR_FLAGS;

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn sorted_names(dir: BorrowedFd<'_>, shown: &Path) -> Result<Vec<Vec<u8>>> {
    let mut names = read_names(dir).ctx("read directory", shown)?;
    // popped from the end: copied in name order
    names.sort_by(|a, b| b.cmp(a));
    Ok(names)
}

/// The state of one [`copy_tree`]: where the first copy of each hardlinked inode went.
struct Copier<'p> {
    src: &'p Path,
    dst: &'p Path,
    /// (dev, ino) of the source -> the destination path as names from the destination root.
    links: HashMap<(u64, u64), Vec<Vec<u8>>>,
}

impl Copier<'_> {
    /// A destination path for messages (it may be too long to use).
    fn shown(&self, dirs: &DirChain<'_>, name: &[u8]) -> PathBuf {
        let mut p = self.dst.to_path_buf();
        for n in dirs.names() {
            p.push(os(n));
        }
        if !name.is_empty() {
            p.push(os(name));
        }
        p
    }

    /// Copies a non-directory `name` from `s` to `d`.
    fn leaf(
        &mut self,
        s: BorrowedFd<'_>,
        d: BorrowedFd<'_>,
        name: &[u8],
        st: &rustix::fs::Stat,
        dirs: &DirChain<'_>,
        dst_root: BorrowedFd<'_>,
    ) -> Result<()> {
        let shown = self.shown(dirs, name);
        let ft = FileType::from_raw_mode(st.st_mode);
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                let (tdir, tname) = open_parent(dst_root, first).ctx("open directory", &shown)?;
                return rustix::fs::linkat(&tdir, os(tname), d, os(name), AtFlags::empty())
                    .ctx("link", &shown);
            }
            let mut path: Vec<Vec<u8>> = dirs.names().map(<[u8]>::to_vec).collect();
            path.push(name.to_vec());
            self.links.insert(key, path);
        }
        match ft {
            FileType::RegularFile => {
                let sf = rustix::fs::openat(
                    s,
                    os(name),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ctx("open", self.src.join(os(name)))?;
                let df = rustix::fs::openat(
                    d,
                    os(name),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .ctx("create", &shown)?;
                copy_data(&sf, &df, st.st_size as u64).ctx("copy", &shown)?;
                return self.set_fd_meta(sf.as_fd(), df.as_fd(), st, &shown);
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(s, os(name), Vec::new())
                    .ctx("readlink", self.src.join(os(name)))?;
                rustix::fs::symlinkat(os(target.as_bytes()), d, os(name)).ctx("symlink", &shown)?;
            }
            _ => {
                rustix::fs::mknodat(
                    d,
                    os(name),
                    ft,
                    Mode::from_raw_mode(st.st_mode & 0o7777),
                    st.st_rdev,
                )
                .ctx("mknod", &shown)?;
            }
        }
        // symlinks and nodes: by name in the parent, never following
        rustix::fs::chownat(
            d,
            os(name),
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .ctx("chown", &shown)?;
        if ft != FileType::Symlink {
            rustix::fs::chmodat(
                d,
                os(name),
                Mode::from_raw_mode(st.st_mode & 0o7777),
                AtFlags::empty(),
            )
            .ctx("chmod", &shown)?;
        }
        let sp = fd_path(s).join(os(name));
        let dp = fd_path(d).join(os(name));
        for (k, v) in read_xattrs(&sp) {
            rustix::fs::lsetxattr(&dp, k.as_str(), &v, rustix::fs::XattrFlags::empty())
                .ctx("setxattr", &shown)?;
        }
        rustix::fs::utimensat(d, os(name), &times(st), AtFlags::SYMLINK_NOFOLLOW)
            .ctx("set times", &shown)
    }

    /// Owner, mode (after the owner: chown clears set-ID bits), xattrs and times of `s` on `d`.
    fn set_fd_meta(
        &self,
        s: BorrowedFd<'_>,
        d: BorrowedFd<'_>,
        st: &rustix::fs::Stat,
        shown: &Path,
    ) -> Result<()> {
        rustix::fs::fchown(
            d,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        )
        .ctx("chown", shown)?;
        rustix::fs::fchmod(d, Mode::from_raw_mode(st.st_mode & 0o7777)).ctx("chmod", shown)?;
        for (k, v) in read_xattrs(&fd_path(s)) {
            rustix::fs::lsetxattr(fd_path(d), k.as_str(), &v, rustix::fs::XattrFlags::empty())
                .ctx("setxattr", shown)?;
        }
        rustix::fs::futimens(d, &times(st)).ctx("set times", shown)
    }
}

/// Copies a regular file's content, keeping its holes holes (a sparse file from a layer
/// stays sparse in every container made from it): only the data ranges `SEEK_DATA` /
/// `SEEK_HOLE` find are copied, with `copy_file_range`, and the size is set at the end.
fn copy_data(src: &OwnedFd, dst: &OwnedFd, size: u64) -> std::io::Result<()> {
    use rustix::fs::SeekFrom;
    let mut off = 0u64;
    while off < size {
        let start = match rustix::fs::seek(src, SeekFrom::Data(off)) {
            Ok(p) => p,
            Err(Errno::NXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let end = rustix::fs::seek(src, SeekFrom::Hole(start))?.min(size);
        let (mut i, mut o) = (start, start);
        while i < end {
            let len = (end - i).min(1 << 30) as usize;
            let n = rustix::fs::copy_file_range(src, Some(&mut i), dst, Some(&mut o), len)?;
            if n == 0 {
                break; // the file shrank meanwhile
            }
        }
        off = end.max(start + 1);
    }
    rustix::fs::ftruncate(dst, size)?;
    Ok(())
}

/// `/proc/self/fd/N`: a path for the open file (its last component is a magic link that
/// the `l*xattr` calls do not follow, so it names the file itself; a name joined to it is
/// looked up in that directory).
fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn times(st: &rustix::fs::Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Opens the directory holding `path` (names from `root`), one component at a time, never
/// following a symlink; returns it and the last name.
fn open_parent<'p>(
    root: BorrowedFd<'_>,
    path: &'p [Vec<u8>],
) -> rustix::io::Result<(OwnedFd, &'p [u8])> {
    let (last, dirs) = path.split_last().ok_or(Errno::INVAL)?;
    let mut cur = rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
    for n in dirs {
        cur = rustix::fs::openat(&cur, os(n), DIR_FLAGS, Mode::empty())?;
    }
    Ok((cur, last))
}
