//! Filesystem work of the executor: copying sources into a container's root (COPY/ADD),
//! hashing them for the cache key, and writing a container's changes as a reproducible
//! layer tar.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use longshore_graph::{Change, ChangeKind};
use sha2::{Digest as _, Sha256};

use crate::context::resolve_in_root;
use crate::error::{Error, IoContext, Result};
use crate::ignore::Ignore;

/// One source of a COPY: where it is read and which context path it is (for .dockerignore).
#[derive(Debug, Clone)]
pub(crate) struct Src {
    /// The host path (already resolved inside its root).
    pub path: PathBuf,
    /// Its path relative to the source root, slash-separated ("" for the root).
    pub rel: String,
    /// The name it gets in a destination directory.
    pub base: String,
}

/// Ownership and mode applied to copied files.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub chmod: Option<u32>,
}

fn excluded(ignore: Option<&Ignore>, rel: &str) -> bool {
    ignore.is_some_and(|i| !rel.is_empty() && i.excludes(rel))
}

fn join_rel(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut v: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .ctx("read directory", dir)?
        .map(|e| {
            let e = e.ctx("read directory", dir)?;
            Ok((e.file_name().to_string_lossy().into_owned(), e.path()))
        })
        .collect::<Result<_>>()?;
    v.sort();
    Ok(v)
}

type MemoKey = (u64, u64, u64, i64, i64, i64, i64);

/// File digests by (device, inode, size, mtime, ctime), kept between builds, so an unchanged
/// context file is not read again to compute a cache key (BuildKit's contenthash does the
/// same). Any write to a file changes its ctime, which the caller cannot set.
#[derive(Default)]
pub(crate) struct Memo {
    map: std::sync::Mutex<std::collections::HashMap<MemoKey, [u8; 32]>>,
}

/// At most this many digests are kept.
const MEMO_MAX: usize = 200_000;

impl Memo {
    pub(crate) fn load(path: &Path) -> Memo {
        let mut map = std::collections::HashMap::new();
        for line in fs::read_to_string(path).unwrap_or_default().lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 8 {
                continue;
            }
            let n = |i: usize| f[i].parse::<i64>().ok();
            let (Some(a), Some(b), Some(c), Some(d), Some(e), Some(g), Some(k)) =
                (n(0), n(1), n(2), n(3), n(4), n(5), n(6))
            else {
                continue;
            };
            let mut digest = [0u8; 32];
            if hex::decode_to_slice(f[7], &mut digest).is_ok() {
                map.insert((a as u64, b as u64, c as u64, d, e, g, k), digest);
            }
        }
        Memo {
            map: std::sync::Mutex::new(map),
        }
    }

    /// Writes the memo (temp file and rename).
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::new();
        for ((a, b, c, d, e, g, k), digest) in map.iter().take(MEMO_MAX) {
            text.push_str(&format!(
                "{a} {b} {c} {d} {e} {g} {k} {}\n",
                hex::encode(digest)
            ));
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, text).ctx("write", &tmp)?;
        fs::rename(&tmp, path).ctx("rename", &tmp)
    }

    fn file_digest(&self, path: &Path, m: &fs::Metadata) -> Result<[u8; 32]> {
        let key = (
            m.dev(),
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        );
        if let Some(d) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(*d);
        }
        let mut f = fs::File::open(path).ctx("open", path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).ctx("read", path)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let d: [u8; 32] = h.finalize().into();
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, d);
        Ok(d)
    }
}

/// Adds to `h` what a COPY of `src` would write: paths, types, modes, contents, link
/// targets (after .dockerignore).
pub(crate) fn hash_source(
    h: &mut Sha256,
    src: &Src,
    ignore: Option<&Ignore>,
    memo: &Memo,
) -> Result<()> {
    fn walk(
        h: &mut Sha256,
        path: &Path,
        rel: &str,
        name: &str,
        ignore: Option<&Ignore>,
        memo: &Memo,
    ) -> Result<()> {
        let m = fs::symlink_metadata(path).ctx("stat", path)?;
        let ft = m.file_type();
        h.update(format!("{name}\0{:o}\0", m.mode()).as_bytes());
        if ft.is_symlink() {
            h.update(b"L");
            h.update(
                fs::read_link(path)
                    .ctx("readlink", path)?
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if ft.is_dir() {
            h.update(b"D");
            for (n, p) in sorted_entries(path)? {
                let r = join_rel(rel, &n);
                if excluded(ignore, &r)
                    && !(p.is_dir() && ignore.is_some_and(|i| i.may_include_below(&r)))
                {
                    continue;
                }
                walk(h, &p, &r, &format!("{name}/{n}"), ignore, memo)?;
            }
        } else if ft.is_file() {
            h.update(format!("F{}\0", m.len()).as_bytes());
            h.update(memo.file_digest(path, &m)?);
        } else {
            h.update(format!("S{}\0", m.rdev()).as_bytes());
        }
        h.update(b"\n");
        Ok(())
    }
    walk(h, &src.path, &src.rel, &src.base, ignore, memo)
}

/// Creates the directories of `rel` (absolute in the container) inside `rootfs`, resolving
/// symlinks inside it; returns the host path.
pub(crate) fn mkdir_in_root(rootfs: &Path, rel: &str, attrs: Attrs) -> Result<PathBuf> {
    let mut cur = String::new();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        cur = format!("{cur}/{part}");
        let p = resolve_in_root(rootfs, &cur, true).ctx("resolve", &cur)?;
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Context(format!(
                    "cannot create directory {cur}: a file of that name exists in the image"
                )));
            }
            Err(_) => {
                fs::create_dir(&p).ctx("create directory", &p)?;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).ctx("chmod", &p)?;
                std::os::unix::fs::lchown(&p, Some(attrs.uid), Some(attrs.gid)).ctx("chown", &p)?;
            }
        }
    }
    resolve_in_root(rootfs, rel, true).ctx("resolve", rel)
}

/// Like [`mkdir_in_root`] (root-owned, 0755), returning the directories it created.
pub(crate) fn mkdir_in_root_tracked(rootfs: &Path, rel: &str) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    let mut cur = String::new();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        cur = format!("{cur}/{part}");
        let p = resolve_in_root(rootfs, &cur, true).ctx("resolve", &cur)?;
        if fs::symlink_metadata(&p).is_err() {
            fs::create_dir(&p).ctx("create directory", &p)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).ctx("chmod", &p)?;
            made.push(p);
        }
    }
    Ok(made)
}

/// Copies `src` to `dest` (a host path inside the container root `rootfs`, already
/// resolved; its parent exists). Directories are merged; symlinks are copied as symlinks.
pub(crate) fn copy_entry(
    rootfs: &Path,
    src: &Src,
    dest: &Path,
    ignore: Option<&Ignore>,
    attrs: Attrs,
    top_dir_contents: bool,
) -> Result<()> {
    let m = fs::symlink_metadata(&src.path).ctx("stat", &src.path)?;
    let ft = m.file_type();
    if ft.is_dir() {
        if !top_dir_contents || !dest.exists() {
            match fs::symlink_metadata(dest) {
                Ok(d) if d.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(dest).ctx("remove", dest)?;
                    fs::create_dir(dest).ctx("create directory", dest)?;
                }
                Err(_) => fs::create_dir(dest).ctx("create directory", dest)?,
            }
            let mode = attrs.chmod.unwrap_or(m.mode() & 0o7777);
            fs::set_permissions(dest, fs::Permissions::from_mode(mode)).ctx("chmod", dest)?;
            std::os::unix::fs::lchown(dest, Some(attrs.uid), Some(attrs.gid)).ctx("chown", dest)?;
        }
        for (n, p) in sorted_entries(&src.path)? {
            let r = join_rel(&src.rel, &n);
            if excluded(ignore, &r)
                && !(p.is_dir() && ignore.is_some_and(|i| i.may_include_below(&r)))
            {
                continue;
            }
            // the image may hold a symlink where the entry goes: follow it inside the root
            let target = match dest.strip_prefix(rootfs) {
                Ok(inside) => {
                    let inside = format!("/{}/{n}", inside.to_string_lossy());
                    resolve_in_root(rootfs, &inside, false).ctx("resolve", &inside)?
                }
                Err(_) => dest.join(&n),
            };
            let child = Src {
                path: p,
                rel: r,
                base: n,
            };
            copy_entry(rootfs, &child, &target, ignore, attrs, false)?;
        }
        if !top_dir_contents {
            keep_mtime(dest, &m)?;
        }
        return Ok(());
    }
    match fs::symlink_metadata(dest) {
        Ok(d) if d.is_dir() && !ft.is_dir() => {
            return Err(Error::Context(format!(
                "cannot copy {} over the directory {}",
                src.rel,
                dest.display()
            )));
        }
        Ok(_) => fs::remove_file(dest).ctx("replace", dest)?,
        Err(_) => {}
    }
    if ft.is_symlink() {
        let t = fs::read_link(&src.path).ctx("readlink", &src.path)?;
        std::os::unix::fs::symlink(&t, dest).ctx("symlink", dest)?;
    } else if ft.is_file() {
        let mut from = fs::File::open(&src.path).ctx("open", &src.path)?;
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .ctx("create", dest)?;
        io::copy(&mut from, &mut to).ctx("copy to", dest)?;
        let mode = attrs.chmod.unwrap_or(m.mode() & 0o7777);
        fs::set_permissions(dest, fs::Permissions::from_mode(mode)).ctx("chmod", dest)?;
    } else {
        // devices, fifos and sockets are not copied from a context
        return Ok(());
    }
    std::os::unix::fs::lchown(dest, Some(attrs.uid), Some(attrs.gid)).ctx("chown", dest)?;
    keep_mtime(dest, &m)
}

/// Gives `dest` the modification time of the source (`m`), as Docker's COPY and ADD keep
/// it (layers clamp it to the build's epoch); a symlink's own time, not its target's.
fn keep_mtime(dest: &Path, m: &fs::Metadata) -> Result<()> {
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        dest,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::Io {
        op: "set the time of",
        path: dest.to_path_buf(),
        source: e.into(),
    })
}

/// Whether an ancestor of `path` (inside `root`) is a symlink: such a path cannot be a real
/// change and is never read (it would lead outside the root).
fn through_symlink(root: &Path, path: &str) -> bool {
    let mut cur = root.to_path_buf();
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return true,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Writes the changes of a container (its root mounted at `rootfs`) as a layer tar:
/// entries in path order, times clamped to `epoch`, no user or group names, deleted paths as
/// whiteouts. The same changes give the same bytes.
pub(crate) fn changes_tar(
    rootfs: &Path,
    changes: &[Change],
    epoch: u64,
    out: impl Write,
) -> Result<()> {
    let mut b = tar::Builder::new(out);
    let werr = |e: io::Error| Error::Io {
        op: "write layer tar",
        path: PathBuf::from("<layer>"),
        source: e,
    };
    // hard links among the files this layer writes: later paths become link entries
    let mut links: std::collections::HashMap<(u64, u64), String> = std::collections::HashMap::new();
    let mut sorted: Vec<&Change> = changes.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    for c in sorted {
        let rel = c.path.trim_start_matches('/');
        if rel.is_empty() || through_symlink(rootfs, rel) {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mtime(epoch);
        h.set_uid(0);
        h.set_gid(0);
        if c.kind == ChangeKind::Deleted {
            let (dir, name) = match rel.rsplit_once('/') {
                Some((d, n)) => (format!("{d}/"), n),
                None => (String::new(), rel),
            };
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0);
            h.set_size(0);
            b.append_data(&mut h, format!("{dir}.wh.{name}"), io::empty())
                .map_err(werr)?;
            continue;
        }
        let p = rootfs.join(rel);
        let m = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::Io {
                    op: "stat",
                    path: p,
                    source: e,
                });
            }
        };
        let mtime = u64::try_from(m.mtime()).unwrap_or(0).min(epoch);
        h.set_mtime(mtime);
        h.set_mode(m.mode() & 0o7777);
        h.set_uid(u64::from(m.uid()));
        h.set_gid(u64::from(m.gid()));
        let ft = m.file_type();
        let xattrs = kept_xattrs(&p);
        if !xattrs.is_empty() {
            b.append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(werr)?;
        }
        if ft.is_file() && m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, rel, first).map_err(werr)?;
                continue;
            }
            links.insert((m.dev(), m.ino()), rel.to_string());
        }
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{rel}/"), io::empty())
                .map_err(werr)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            let t = fs::read_link(&p).ctx("readlink", &p)?;
            b.append_link(&mut h, rel, &t).map_err(werr)?;
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            let f = fs::File::open(&p).ctx("open", &p)?;
            b.append_data(&mut h, rel, f.take(m.len())).map_err(werr)?;
        } else {
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                continue;
            };
            h.set_entry_type(kind);
            h.set_size(0);
            let rdev = m.rdev();
            h.set_device_major(libc::major(rdev)).map_err(werr)?;
            h.set_device_minor(libc::minor(rdev)).map_err(werr)?;
            b.append_data(&mut h, rel, io::empty()).map_err(werr)?;
        }
    }
    b.into_inner().and_then(|mut w| w.flush()).map_err(werr)?;
    Ok(())
}

/// The extended attributes a layer keeps (file capabilities and `user.*`), sorted.
fn kept_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name != "security.capability" && !name.starts_with("user.") {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            value.truncate(len);
            out.push((format!("SCHILY.xattr.{name}"), value));
        }
    }
    out.sort();
    out
}

/// Every entry below `root` as an added change (for a layer made in an empty directory).
pub(crate) fn all_as_added(root: &Path) -> Result<Vec<Change>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<Change>) -> Result<()> {
        for (n, p) in sorted_entries(dir)? {
            let r = format!("{rel}/{n}");
            let is_dir = fs::symlink_metadata(&p).ctx("stat", &p)?.is_dir();
            out.push(Change {
                path: r.clone(),
                kind: ChangeKind::Added,
            });
            if is_dir {
                walk(&p, &r, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, "", &mut out)?;
    Ok(out)
}

/// Looks `user[:group]` up in the container's `/etc/passwd` and `/etc/group`.
pub(crate) fn resolve_owner(rootfs: &Path, spec: &str) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Result<Option<(u32, u32)>> {
        let p = resolve_in_root(rootfs, file, true).ctx("resolve", file)?;
        let text = fs::read_to_string(&p).unwrap_or_default();
        Ok(text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name).then(|| {
                let id = f[2].parse().unwrap_or(0);
                let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                (id, gid)
            })
        }))
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(u) => (u, u),
        Err(_) => lookup("/etc/passwd", user)?.ok_or_else(|| {
            Error::Context(format!(
                "unable to find user {user}: no matching entries in passwd file"
            ))
        })?,
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(g) => g,
            Err(_) => lookup("/etc/group", g)?.map(|(id, _)| id).ok_or_else(|| {
                Error::Context(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })?,
        },
    };
    Ok((uid, gid))
}

/// Whether a file starts like an archive `ADD` extracts (tar, gzip, bzip2, xz, zstd).
pub(crate) fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let h = &head[..n];
    h.starts_with(&[0x1f, 0x8b])
        || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &h[257..262] == b"ustar")
}
