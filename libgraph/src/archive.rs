//! Writing layer tars: a whole tree (export) or a list of changes (a layer diff with whiteouts).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::changes::{Change, ChangeKind};
use crate::error::{Error, IoContext, Result};

/// Writes tar entries for files under a root, keeping hardlinks, xattrs and devices.
pub struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    links: HashMap<(u64, u64), String>,
}

impl<W: Write> TarWriter<W> {
    /// Starts a tar stream.
    pub fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        builder.follow_symlinks(false);
        TarWriter {
            builder,
            links: HashMap::new(),
        }
    }

    /// Appends `root/rel` as entry `rel` (no leading slash; directories get a trailing one).
    ///
    /// The entry is opened beneath `root` without following any symlink on the way, so a
    /// running container that swaps a directory for a symlink cannot make this read host files.
    pub fn append(&mut self, root: &Path, rel: &str) -> Result<()> {
        let rel = rel.trim_start_matches('/');
        let path = root.join(rel);
        let handle = open_beneath(root, rel, OFlags::PATH | OFlags::NOFOLLOW)?;
        let handle = fs::File::from(handle);
        let meta = handle.metadata().ctx("stat", &path)?;
        let werr = |e: std::io::Error| Error::io("write tar entry", &path, e);
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
        let xattrs = read_xattrs_following(&proc_path);
        if !xattrs.is_empty() {
            let keys: Vec<(String, Vec<u8>)> = xattrs
                .into_iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
                .collect();
            self.builder
                .append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(werr)?;
        }
        let ft = meta.file_type();
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                return self
                    .builder
                    .append_link(&mut header, rel, first)
                    .map_err(werr);
            }
            self.links.insert(key, rel.to_string());
        }
        if ft.is_dir() {
            header.set_size(0);
            let name = format!("{rel}/");
            self.builder
                .append_data(&mut header, name, std::io::empty())
                .map_err(werr)
        } else if ft.is_symlink() {
            let target = rustix::fs::readlinkat(&handle, "", Vec::new()).ctx("readlink", &path)?;
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
            header.set_size(0);
            self.builder
                .append_link(&mut header, rel, target)
                .map_err(werr)
        } else if ft.is_file() {
            let f = fs::File::from(open_beneath(root, rel, OFlags::RDONLY | OFlags::NOFOLLOW)?);
            let now = f.metadata().ctx("stat", &path)?;
            if now.ino() != meta.ino() {
                return Err(Error::UnsafeTarEntry {
                    entry: rel.to_string(),
                    reason: "the file was replaced while it was being archived".into(),
                });
            }
            self.builder.append_data(&mut header, rel, f).map_err(werr)
        } else {
            header.set_size(0);
            self.builder
                .append_data(&mut header, rel, std::io::empty())
                .map_err(werr)
        }
    }

    /// Appends a whiteout (`.wh.<name>`) for the deleted path `rel`.
    pub fn whiteout(&mut self, rel: &str) -> Result<()> {
        let rel = rel.trim_start_matches('/');
        let (dir, base) = match rel.rsplit_once('/') {
            Some((d, b)) => (format!("{d}/"), b),
            None => (String::new(), rel),
        };
        let name = format!("{dir}.wh.{base}");
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(0);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        self.builder
            .append_data(&mut header, &name, std::io::empty())
            .map_err(|e| Error::io("write tar entry", name, e))
    }

    /// Appends every entry of a tree (the whole filesystem, as `docker export` does).
    pub fn append_tree(&mut self, root: &Path) -> Result<()> {
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            let abs = root.join(&dir);
            let mut names: Vec<_> = fs::read_dir(&abs)
                .ctx("read directory", &abs)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()
                .ctx("read directory", &abs)?;
            names.sort();
            let mut subdirs = Vec::new();
            for n in names {
                let rel = if dir.is_empty() {
                    String::from_utf8_lossy(n.as_bytes()).into_owned()
                } else {
                    format!("{dir}/{}", String::from_utf8_lossy(n.as_bytes()))
                };
                self.append(root, &rel)?;
                if fs::symlink_metadata(root.join(&rel))
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
                {
                    subdirs.push(rel);
                }
            }
            subdirs.reverse();
            stack.extend(subdirs);
        }
        Ok(())
    }

    /// Appends a change list: whiteouts for deletions, entries from `root` for the rest.
    pub fn append_changes(&mut self, root: &Path, changes: &[Change]) -> Result<()> {
        for c in changes {
            match c.kind {
                ChangeKind::Deleted => self.whiteout(&c.path)?,
                ChangeKind::Added | ChangeKind::Modified => self.append(root, &c.path)?,
            }
        }
        Ok(())
    }

    /// Writes the end-of-archive blocks and returns the writer.
    pub fn finish(self) -> Result<W> {
        self.builder
            .into_inner()
            .map_err(|e| Error::io("finish tar", "<stream>", e))
    }
}

/// Opens `rel` beneath `root` refusing symlinks on the whole path (see [`TarWriter::append`]).
fn open_beneath(root: &Path, rel: &str, flags: OFlags) -> Result<OwnedFd> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open", root)?;
    let rel_path = if rel.is_empty() { "." } else { rel };
    rustix::fs::openat2(
        &root_fd,
        rel_path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        Errno::LOOP | Errno::XDEV => Error::UnsafeTarEntry {
            entry: rel.to_string(),
            reason: "a directory on its path is a symlink (was it replaced while archiving?)"
                .into(),
        },
        e => Error::io("open", root.join(rel), e.into()),
    })
}

/// Like [`read_xattrs`], following the final component (for `/proc/self/fd/N` handles).
fn read_xattrs_following(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::listxattr(path, &mut names) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name.starts_with("trusted.overlay.") {
            continue;
        }
        let mut val = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::getxattr(path, name, &mut val) {
            out.push((name.to_string(), val[..len].to_vec()));
        }
    }
    out.sort();
    out
}

/// Extended attributes worth keeping in a layer (not overlayfs' own `trusted.overlay.*`).
pub(crate) fn read_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name.starts_with("trusted.overlay.") {
            continue;
        }
        let mut val = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut val) {
            out.push((name.to_string(), val[..len].to_vec()));
        }
    }
    out.sort();
    out
}
