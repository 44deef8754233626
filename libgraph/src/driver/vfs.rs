//! The `vfs` driver: every layer is a full copy of its parent plus its own changes.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};

use super::{Driver, check_id};
use crate::apply::{ApplyOptions, ApplyReport, WhiteoutMode, apply_layer, remove_tree};
use crate::archive::{TarWriter, read_xattrs};
use crate::changes::{Change, changes_dirs};
use crate::error::{Error, IoContext, Result};

/// Full-copy graph driver.
#[derive(Debug)]
pub struct Vfs {
    home: PathBuf,
    users: Mutex<HashMap<String, usize>>,
}

impl Vfs {
    /// Opens the driver's home, removing half-created layers left by a crash.
    pub fn open(home: impl Into<PathBuf>) -> Result<Vfs> {
        let home = home.into();
        for sub in ["dir", "parent"] {
            fs::create_dir_all(home.join(sub)).ctx("create directory", home.join(sub))?;
        }
        // layers hold image content (set-user-ID files): only the owner may reach them
        crate::store::private_dir(&home, crate::store::PRIVATE_MODE)?;
        let dir = home.join("dir");
        for e in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let e = e.ctx("read directory", &dir)?;
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
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

    fn diff(&self, id: &str, out: &mut dyn Write) -> Result<()> {
        let changes = self.changes(id)?;
        let mut w = TarWriter::new(out);
        w.append_changes(&self.dir(id), &changes)?;
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
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut links = HashMap::new();
    copy_entry(src, dst, &mut links)?;
    Ok(())
}

fn copy_entry(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<()> {
    let m = fs::symlink_metadata(src).ctx("stat", src)?;
    let ft = m.file_type();
    if ft.is_dir() {
        fs::create_dir(dst).ctx("mkdir", dst)?;
        let mut names: Vec<_> = fs::read_dir(src)
            .ctx("read directory", src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .ctx("read directory", src)?;
        names.sort();
        for n in names {
            copy_entry(&src.join(&n), &dst.join(&n), links)?;
        }
    } else {
        if m.nlink() > 1 && !ft.is_symlink() {
            let key = (m.dev(), m.ino());
            if let Some(first) = links.get(&key) {
                return fs::hard_link(first, dst).ctx("link", dst);
            }
            links.insert(key, dst.to_path_buf());
        }
        if ft.is_symlink() {
            let t = fs::read_link(src).ctx("readlink", src)?;
            std::os::unix::fs::symlink(&t, dst).ctx("symlink", dst)?;
        } else if ft.is_file() {
            fs::copy(src, dst).ctx("copy", dst)?;
        } else {
            let kind = rustix::fs::FileType::from_raw_mode(m.mode());
            rustix::fs::mknodat(
                CWD,
                dst,
                kind,
                rustix::fs::Mode::from_raw_mode(m.mode() & 0o7777),
                m.rdev(),
            )
            .ctx("mknod", dst)?;
        }
    }
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid())).ctx("chown", dst)?;
    if !ft.is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))
            .ctx("chmod", dst)?;
    }
    for (k, v) in read_xattrs(src) {
        rustix::fs::lsetxattr(dst, k.as_str(), &v, rustix::fs::XattrFlags::empty())
            .ctx("setxattr", dst)?;
    }
    let ts = Timestamps {
        last_access: Timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(CWD, dst, &ts, AtFlags::SYMLINK_NOFOLLOW).ctx("set times", dst)?;
    Ok(())
}
