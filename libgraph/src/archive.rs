//! Writing layer tars: a whole tree (export) or a list of changes (a layer diff with whiteouts).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
    pub fn append(&mut self, root: &Path, rel: &str) -> Result<()> {
        let rel = rel.trim_start_matches('/');
        let path = root.join(rel);
        let meta = fs::symlink_metadata(&path).ctx("stat", &path)?;
        let werr = |e: std::io::Error| Error::io("write tar entry", &path, e);
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        let xattrs = read_xattrs(&path);
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
            let target = fs::read_link(&path).ctx("readlink", &path)?;
            header.set_size(0);
            self.builder
                .append_link(&mut header, rel, target)
                .map_err(werr)
        } else if ft.is_file() {
            let f = fs::File::open(&path).ctx("open", &path)?;
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
