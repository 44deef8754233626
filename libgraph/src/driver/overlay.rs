//! The `overlay` driver: kernel overlayfs, laid out like Docker's overlay2.
//!
//! ```text
//! <home>/<id>/diff      the layer's own files (overlay upper dir when mounted)
//! <home>/<id>/work      overlayfs work dir
//! <home>/<id>/merged    mount point
//! <home>/<id>/link      the layer's short name, NAME below
//! <home>/<id>/lower     "l/NAME1:l/NAME2:..." parent chain, nearest first
//! <home>/<id>/parent    parent layer id ("" for none)
//! <home>/l/NAME         symlink to ../<id>/diff
//! ```
//!
//! Mounts use the new mount API (`fsopen`, one `lowerdir+` per layer, `fsmount`,
//! `move_mount`), so long chains do not hit the one-page limit of mount(2) options; the
//! short `l/` names keep a classic mount(2) fallback under that limit too.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use super::{Driver, MountOptions, check_id};
use crate::apply::{ApplyOptions, ApplyReport, WhiteoutMode, apply_layer, remove_tree};
use crate::archive::TarWriter;
use crate::changes::{Change, changes_overlay};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

/// Maximum number of lower layers we stack (the kernel's limit is 500).
pub const MAX_LOWERS: usize = 500;

/// overlayfs graph driver.
#[derive(Debug)]
pub struct Overlay {
    home: PathBuf,
    mounts: Mutex<HashMap<String, usize>>,
}

impl Overlay {
    /// Mounts layer `id` (read-write, on `lowers`) at `target`.
    fn mount_layer(
        &self,
        id: &str,
        lowers: &[PathBuf],
        target: &Path,
        opts: MountOptions,
    ) -> Result<()> {
        let dir = self.dir(id);
        // a volatile mount marks its work directory, and overlay refuses to mount one
        // that was left marked (by a crash while it was mounted): the layer is a
        // removed-at-exit container's, whose writes nobody needs any more
        let _ = remove_tree(&dir.join("work").join("work").join("incompat"));
        let (diff, work) = (dir.join("diff"), dir.join("work"));
        let upper = Some((diff.as_path(), work.as_path()));
        mount_overlay(lowers, upper, target, opts.volatile)
            .or_else(|e| match opts.volatile {
                // the legacy mount call of a kernel without `volatile`
                true => mount_overlay(lowers, upper, target, false),
                false => Err(e),
            })
            .map_err(|source| Error::Mount {
                op: "overlay mount",
                id: id.to_string(),
                source,
            })
    }

    /// Opens the driver, checking overlayfs works here with a probe mount, and removes
    /// half-created layers left by a crash.
    pub fn open(home: impl Into<PathBuf>) -> Result<Overlay> {
        Overlay::open_with(home, true)
    }

    /// Like [`Overlay::open`]; without `cleanup`, half-created layers are left alone
    /// (another process may be creating them).
    pub fn open_with(home: impl Into<PathBuf>, cleanup: bool) -> Result<Overlay> {
        let home = home.into();
        let unavailable = |reason: String| Error::DriverUnavailable {
            name: "overlay".into(),
            reason,
        };
        let fss = fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !fss.lines().any(|l| l.trim_end().ends_with("\toverlay")) {
            return Err(unavailable("the kernel has no overlay filesystem".into()));
        }
        fs::create_dir_all(home.join("l")).ctx("create directory", home.join("l"))?;
        // layers hold image content (set-user-ID files): only the owner may reach them
        crate::store::private_dir(&home, crate::store::PRIVATE_MODE)?;
        // (a listing of every layer: only when there is something to do with it)
        let entries = if cleanup {
            Some(fs::read_dir(&home).ctx("read directory", &home)?)
        } else {
            None
        };
        for e in entries.into_iter().flatten() {
            let e = e.ctx("read directory", &home)?;
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let merged = e.path().join("merged");
                let _ = rustix::mount::unmount(&merged, UnmountFlags::DETACH);
                remove_tree(&e.path())?;
            }
        }
        // The probe: an overlay superblock on `.probe/{lower,upper,work}`. It is kept, with
        // a stamp of the kernel and filesystem it passed on, so later opens skip it, and
        // its directories are never removed (removing them costs ~4 ms each on this ext4).
        let probe = home.join(".probe");
        let stamp_path = probe.join("passed");
        let stamp = format!(
            "{} {}\n",
            rustix::system::uname().release().to_string_lossy(),
            fs::metadata(&home).map(|m| m.dev()).unwrap_or(0)
        );
        if fs::read_to_string(&stamp_path).ok().as_deref() != Some(stamp.as_str()) {
            for sub in ["lower", "upper", "work", "merged"] {
                fs::create_dir_all(probe.join(sub)).ctx("create directory", probe.join(sub))?;
            }
            let r = probe_overlay(&probe)
                .map_err(std::io::Error::from)
                .or_else(|_| {
                    // kernels without the new mount API: a real mount (and unmount)
                    let r = mount_overlay(
                        &[probe.join("lower")],
                        Some((&probe.join("upper"), &probe.join("work"))),
                        &probe.join("merged"),
                        false,
                    );
                    if r.is_ok() {
                        let _ = rustix::mount::unmount(probe.join("merged"), UnmountFlags::DETACH);
                    }
                    r
                });
            r.map_err(|e| {
                unavailable(format!("probe mount under {} failed: {e}", home.display()))
            })?;
            // only a hint: losing it costs one probe
            let _ = fs::write(&stamp_path, &stamp);
        }
        Ok(Overlay {
            home,
            mounts: Mutex::new(HashMap::new()),
        })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.home.join(id)
    }

    fn lowers(&self, id: &str) -> Result<Vec<String>> {
        let p = self.dir(id).join("lower");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(s
                .split(':')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("read lower", p, e)),
        }
    }

    fn apply(
        &self,
        id: &str,
        diff: &mut (dyn Read + Send),
        verified_blob: Option<crate::Digest>,
    ) -> Result<ApplyReport> {
        check_id(id)?;
        if !self.exists(id) {
            return Err(Error::LayerNotFound(id.to_string()));
        }
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            verified_blob,
            ..ApplyOptions::default()
        };
        apply_layer(diff, &self.dir(id).join("diff"), &opts)
    }

    /// The `lower` file's content for a layer on `parent`: the parent's short link first,
    /// then the parent's own lowers.
    fn lower_chain(&self, parent: Option<&str>) -> Result<String> {
        let Some(p) = parent else {
            return Ok(String::new());
        };
        check_id(p)?;
        if !self.exists(p) {
            return Err(Error::LayerNotFound(p.to_string()));
        }
        let plink = fs::read_to_string(self.dir(p).join("link"))
            .ctx("read link", self.dir(p).join("link"))?;
        let mut lower = vec![format!("l/{plink}")];
        lower.extend(self.lowers(p)?);
        if lower.len() > MAX_LOWERS {
            return Err(Error::TooManyLayers {
                count: lower.len() + 1,
                max: MAX_LOWERS + 1,
            });
        }
        Ok(lower.join(":"))
    }

    fn lower_dirs(&self, id: &str) -> Result<Vec<PathBuf>> {
        Ok(self.lowers(id)?.iter().map(|l| self.home.join(l)).collect())
    }

    fn is_mounted(&self, id: &str) -> bool {
        let dir = self.dir(id);
        match (fs::metadata(&dir), fs::metadata(dir.join("merged"))) {
            (Ok(a), Ok(b)) => a.dev() != b.dev(),
            _ => false,
        }
    }

    fn mounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // a panic while holding the lock leaves a usable map
        self.mounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A short link name that is free (or already ours) for `id`.
    fn short_name(&self, id: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        for attempt in 0u32.. {
            let d = Digest::sha256_of(format!("{id}/{attempt}").as_bytes());
            let name: String = d.hex().as_bytes()[..13]
                .iter()
                .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
                .collect();
            if fs::symlink_metadata(self.home.join("l").join(&name)).is_err() {
                return name;
            }
        }
        unreachable!("the attempt counter is unbounded")
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let ids: Vec<String> = self.mounts().drain().map(|(k, _)| k).collect();
        for id in ids {
            let merged = self.dir(&id).join("merged");
            if self.is_mounted(&id) {
                let _ = rustix::mount::unmount(&merged, UnmountFlags::DETACH);
            }
        }
    }
}

/// Creates an overlayfs superblock on the probe's directories without mounting it: the
/// kernel checks the upper filesystem (d_type, xattrs, whiteouts) as for a mount, but
/// nothing is attached, so there is no unmount (whose RCU grace period costs 10-250 ms
/// here). The superblock's teardown (about 20 ms) happens on a detached thread.
fn probe_overlay(probe: &Path) -> rustix::io::Result<()> {
    let fsfd = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    rustix::mount::fsconfig_set_string(&fsfd, "lowerdir", probe.join("lower"))?;
    rustix::mount::fsconfig_set_string(&fsfd, "upperdir", probe.join("upper"))?;
    rustix::mount::fsconfig_set_string(&fsfd, "workdir", probe.join("work"))?;
    rustix::mount::fsconfig_create(&fsfd)?;
    // (if no thread can be made, the fd is closed right here, and the caller waits)
    let _ = std::thread::Builder::new()
        .name("overlay-probe".into())
        .spawn(move || drop(fsfd));
    Ok(())
}

/// Mounts overlayfs at `target` with the new mount API, falling back to mount(2).
fn mount_overlay(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    volatile: bool,
) -> std::io::Result<()> {
    let new_api = || -> rustix::io::Result<()> {
        let fsfd = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        for l in lowers {
            rustix::mount::fsconfig_set_string(&fsfd, "lowerdir+", l)?;
        }
        if let Some((u, w)) = upper {
            rustix::mount::fsconfig_set_string(&fsfd, "upperdir", u)?;
            rustix::mount::fsconfig_set_string(&fsfd, "workdir", w)?;
        }
        let _ = rustix::mount::fsconfig_set_string(&fsfd, "index", "off");
        if volatile {
            // kernels before 5.10 lack it: the mount is then an ordinary one
            let _ = rustix::mount::fsconfig_set_flag(&fsfd, "volatile");
        }
        rustix::mount::fsconfig_create(&fsfd)?;
        let mfd = rustix::mount::fsmount(
            &fsfd,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::empty(),
        )?;
        rustix::mount::move_mount(
            &mfd,
            "",
            rustix::fs::CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    match new_api() {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            let lower: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
            let mut data = format!("lowerdir={}", lower.join(":"));
            if let Some((u, w)) = upper {
                data.push_str(&format!(
                    ",upperdir={},workdir={}",
                    u.display(),
                    w.display()
                ));
            }
            if volatile {
                data.push_str(",volatile");
            }
            if data.len() >= 4096 {
                return Err(std::io::Error::other(format!(
                    "overlay mount options are {} bytes, over the 4096-byte page limit",
                    data.len()
                )));
            }
            let data = std::ffi::CString::new(data).map_err(std::io::Error::other)?;
            rustix::mount::mount(
                "overlay",
                target,
                "overlay",
                MountFlags::empty(),
                data.as_c_str(),
            )
            .map_err(Into::into)
        }
        Err(e) => Err(e.into()),
    }
}

impl Driver for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>) -> Result<()> {
        check_id(id)?;
        if self.exists(id) {
            return Err(Error::LayerExists(id.to_string()));
        }
        let lower = self.lower_chain(parent)?;
        let tmp = self.home.join(format!(".tmp-{id}"));
        remove_tree(&tmp)?;
        for sub in ["diff", "work", "merged"] {
            fs::create_dir_all(tmp.join(sub)).ctx("create directory", tmp.join(sub))?;
        }
        let short = self.short_name(id);
        fs::write(tmp.join("link"), &short).ctx("write link", tmp.join("link"))?;
        fs::write(tmp.join("lower"), &lower).ctx("write lower", tmp.join("lower"))?;
        fs::write(tmp.join("parent"), parent.unwrap_or(""))
            .ctx("write parent", tmp.join("parent"))?;
        let dir = self.dir(id);
        fs::rename(&tmp, &dir).ctx("rename layer directory", &dir)?;
        let link = self.home.join("l").join(&short);
        std::os::unix::fs::symlink(format!("../{id}/diff"), &link).ctx("symlink", &link)?;
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<()> {
        check_id(id)?;
        if !self.exists(id) {
            return Err(Error::LayerNotFound(id.to_string()));
        }
        if self.mounts().get(id).copied().unwrap_or(0) > 0 {
            return Err(Error::LayerBusy {
                id: id.to_string(),
                reason: "it is mounted; put() it first".into(),
            });
        }
        if self.is_mounted(id) {
            rustix::mount::unmount(self.dir(id).join("merged"), UnmountFlags::empty()).map_err(
                |e| Error::Mount {
                    op: "unmount",
                    id: id.to_string(),
                    source: e.into(),
                },
            )?;
        }
        if let Ok(short) = fs::read_to_string(self.dir(id).join("link")) {
            let _ = fs::remove_file(self.home.join("l").join(short.trim()));
        }
        remove_tree(&self.dir(id))
    }

    fn remove_to(&self, id: &str, to: &Path) -> Result<()> {
        check_id(id)?;
        if !self.exists(id) {
            return Err(Error::LayerNotFound(id.to_string()));
        }
        if self.mounts().get(id).copied().unwrap_or(0) > 0 || self.is_mounted(id) {
            // the unmount and its checks are remove's
            return self.remove(id);
        }
        if let Ok(short) = fs::read_to_string(self.dir(id).join("link")) {
            let _ = fs::remove_file(self.home.join("l").join(short.trim()));
        }
        match fs::rename(self.dir(id), to) {
            Ok(()) => Ok(()),
            Err(_) => remove_tree(&self.dir(id)),
        }
    }

    fn exists(&self, id: &str) -> bool {
        check_id(id).is_ok() && self.dir(id).join("diff").is_dir()
    }

    fn get(&self, id: &str) -> Result<PathBuf> {
        self.get_with(id, MountOptions::default())
    }

    fn get_with(&self, id: &str, opts: MountOptions) -> Result<PathBuf> {
        check_id(id)?;
        if !self.exists(id) {
            return Err(Error::LayerNotFound(id.to_string()));
        }
        let mut mounts = self.mounts();
        let lowers = self.lower_dirs(id)?;
        let dir = self.dir(id);
        let path = if lowers.is_empty() {
            dir.join("diff")
        } else {
            dir.join("merged")
        };
        let count = mounts.entry(id.to_string()).or_insert(0);
        if *count == 0 && !lowers.is_empty() {
            if self.is_mounted(id) {
                // left by a previous process
                let _ = rustix::mount::unmount(&path, UnmountFlags::DETACH);
            }
            self.mount_layer(id, &lowers, &path, opts)?;
        }
        *count += 1;
        Ok(path)
    }

    fn mount_at(&self, id: &str, target: &Path, opts: MountOptions) -> Result<()> {
        check_id(id)?;
        if !self.exists(id) {
            return Err(Error::LayerNotFound(id.to_string()));
        }
        let lowers = self.lower_dirs(id)?;
        if lowers.is_empty() {
            return rustix::mount::mount_bind_recursive(self.dir(id).join("diff"), target).map_err(
                |e| Error::Mount {
                    op: "bind mount",
                    id: id.to_string(),
                    source: e.into(),
                },
            );
        }
        // one overlay mount, made where the caller wants it: no mount at `merged` to bind
        // from and unmount again (an unmount waits for an RCU grace period)
        self.mount_layer(id, &lowers, target, opts)
    }

    fn put(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let mut mounts = self.mounts();
        let Some(count) = mounts.get_mut(id) else {
            return Ok(());
        };
        *count -= 1;
        if *count > 0 {
            return Ok(());
        }
        mounts.remove(id);
        if self.is_mounted(id) {
            rustix::mount::unmount(self.dir(id).join("merged"), UnmountFlags::empty()).map_err(
                |e| Error::Mount {
                    op: "unmount",
                    id: id.to_string(),
                    source: e.into(),
                },
            )?;
        }
        Ok(())
    }

    fn apply_diff(&self, id: &str, diff: &mut (dyn Read + Send)) -> Result<ApplyReport> {
        self.apply(id, diff, None)
    }

    fn apply_diff_verified(
        &self,
        id: &str,
        diff: &mut (dyn Read + Send),
        blob: &crate::Digest,
    ) -> Result<ApplyReport> {
        self.apply(id, diff, Some(blob.clone()))
    }

    fn changes(&self, id: &str) -> Result<Vec<Change>> {
        check_id(id)?;
        if !self.exists(id) {
            return Err(Error::LayerNotFound(id.to_string()));
        }
        changes_overlay(&self.dir(id).join("diff"), &self.lower_dirs(id)?)
    }

    fn diff_of(&self, id: &str, changes: &[Change], out: &mut dyn Write) -> Result<()> {
        let root = self.get(id)?;
        let mut w = TarWriter::new(out);
        let r = w
            .append_changes(&root, changes)
            .and_then(|()| w.finish().map(|_| ()));
        self.put(id)?;
        r
    }

    fn independent_layers(&self) -> bool {
        true
    }

    fn set_parent(&self, id: &str, parent: Option<&str>) -> Result<()> {
        check_id(id)?;
        if !self.exists(id) {
            return Err(Error::LayerNotFound(id.to_string()));
        }
        if parent == Some(id) {
            return Err(Error::Unsupported(format!(
                "layer {id} cannot be its own parent"
            )));
        }
        if self.mounts().get(id).copied().unwrap_or(0) > 0 || self.is_mounted(id) {
            return Err(Error::LayerBusy {
                id: id.to_string(),
                reason: "it is mounted; a mounted layer keeps its parent".into(),
            });
        }
        let lower = self.lower_chain(parent)?;
        // each file replaced by rename: a crash leaves the old or the new one, never half
        for (name, content) in [("lower", lower.as_str()), ("parent", parent.unwrap_or(""))] {
            let tmp = self.dir(id).join(format!(".{name}.tmp"));
            fs::write(&tmp, content).ctx("write", &tmp)?;
            let dst = self.dir(id).join(name);
            fs::rename(&tmp, &dst).ctx("rename", &dst)?;
        }
        Ok(())
    }

    fn parent(&self, id: &str) -> Result<Option<String>> {
        check_id(id)?;
        let pf = self.dir(id).join("parent");
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
