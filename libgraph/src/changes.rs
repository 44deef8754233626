//! Filesystem changes between a layer and its parent, with the same rules as `docker diff`.
//!
//! Two algorithms, as in Docker: [`changes_dirs`] compares two full trees (vfs), and
//! [`changes_overlay`] walks an overlay upper directory against its lower layers. Both
//! report parent directories of added or deleted entries as changed (`C`), and return the
//! list sorted by path.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{IoContext, Result};

/// The kind of a change, printed as `A`, `C` or `D` like `docker diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Modified (`C`).
    Modified,
    /// Added (`A`).
    Added,
    /// Deleted (`D`).
    Deleted,
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Modified => "C",
            ChangeKind::Added => "A",
            ChangeKind::Deleted => "D",
        })
    }
}

/// One changed path (absolute inside the container, e.g. `/etc/passwd`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// The path, starting with `/`.
    pub path: String,
    /// What happened to it.
    pub kind: ChangeKind,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.path)
    }
}

fn sort(changes: &mut [Change]) {
    changes.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
}

fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The stat fields the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct St {
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: i64,
    mtime: i64,
    mtime_nsec: i64,
}

impl St {
    fn from(s: &rustix::fs::Stat) -> St {
        St {
            mode: s.st_mode,
            uid: s.st_uid,
            gid: s.st_gid,
            rdev: s.st_rdev,
            size: s.st_size,
            mtime: s.st_mtime,
            mtime_nsec: s.st_mtime_nsec as i64,
        }
    }

    fn is_dir(&self) -> bool {
        FileType::from_raw_mode(self.mode) == FileType::Directory
    }

    fn is_whiteout(&self) -> bool {
        FileType::from_raw_mode(self.mode) == FileType::CharacterDevice && self.rdev == 0
    }
}

/// A tree walked through file descriptors: every directory is opened beneath the root with
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a running container that swaps a
/// directory for a symlink cannot make the walk list host directories.
struct Tree {
    root: PathBuf,
    fd: OwnedFd,
}

impl Tree {
    fn open(root: &Path) -> Result<Tree> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx("open", root)?;
        Ok(Tree {
            root: root.to_path_buf(),
            fd,
        })
    }

    fn resolve(&self, rel: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
        let r = rel.trim_start_matches('/');
        rustix::fs::openat2(
            &self.fd,
            if r.is_empty() { "." } else { r },
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
    }

    fn err(&self, rel: &str, e: Errno) -> crate::error::Error {
        match e {
            Errno::LOOP | Errno::XDEV => crate::error::Error::UnsafeTarEntry {
                entry: rel.to_string(),
                reason: "a directory on its path is a symlink (was it replaced during the walk?)"
                    .into(),
            },
            e => crate::error::Error::io(
                "read directory",
                self.root.join(rel.trim_start_matches('/')),
                e.into(),
            ),
        }
    }

    /// Sorted (name, stat) pairs of a directory.
    fn list(&self, rel: &str) -> Result<(OwnedFd, Vec<(String, St)>)> {
        let dir = self
            .resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| self.err(rel, e))?;
        let mut out = Vec::new();
        let mut d = rustix::fs::Dir::read_from(&dir).map_err(|e| self.err(rel, e))?;
        for ent in d.by_ref() {
            let ent = ent.map_err(|e| self.err(rel, e))?;
            let name = ent.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let st = rustix::fs::statat(&dir, ent.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.err(rel, e))?;
            out.push((String::from_utf8_lossy(name).into_owned(), St::from(&st)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((dir, out))
    }

    /// The stat of `rel` if it exists as a real path (no symlinks on the way).
    fn stat(&self, rel: &str) -> Option<St> {
        let fd = self.resolve(rel, OFlags::PATH | OFlags::NOFOLLOW).ok()?;
        rustix::fs::fstat(&fd).ok().map(|s| St::from(&s))
    }
}

/// `security.capability` of `dir/name`, not following `name`.
fn capability(dir: &OwnedFd, name: &str) -> Option<Vec<u8>> {
    let p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    let mut buf = vec![0u8; 1024];
    rustix::fs::lgetxattr(&p, "security.capability", &mut buf)
        .ok()
        .map(|n| buf[..n].to_vec())
}

/// Docker's `statDifferent`: mode, owner, rdev; and for non-directories size and mtime.
fn stat_different(old: &St, new: &St) -> bool {
    old.mode != new.mode
        || old.uid != new.uid
        || old.gid != new.gid
        || old.rdev != new.rdev
        || (!new.is_dir()
            && (old.mtime != new.mtime || old.mtime_nsec != new.mtime_nsec || old.size != new.size))
}

/// Changes of the full tree `new` against the full tree `old` (or against nothing).
pub fn changes_dirs(new: &Path, old: Option<&Path>) -> Result<Vec<Change>> {
    let new = Tree::open(new)?;
    let old = old.map(Tree::open).transpose()?;
    let mut out = Vec::new();
    walk_dirs(&new, old.as_ref(), &mut out)?;
    sort(&mut out);
    Ok(out)
}

/// An entry of a directory being compared, with what the comparison needs from the old
/// tree (read while the directory was open: no descriptor is held across levels).
struct Entry {
    name: String,
    new: St,
    old: Option<St>,
    caps_differ: bool,
}

/// A directory being compared: its entries still to visit (popped from the end), and what
/// its own entry recorded, so that a directory whose content changed is reported once.
struct Frame {
    dir: String,
    entries: Vec<Entry>,
    start: usize,
    recorded: bool,
}

/// Lists `dir` in both trees, reports what was deleted from it and returns its entries.
fn open_frame(
    new: &Tree,
    old: Option<&Tree>,
    dir: String,
    start: usize,
    recorded: bool,
    out: &mut Vec<Change>,
) -> Result<Frame> {
    let (new_fd, new_entries) = new.list(&dir)?;
    let (old_fd, old_entries) = match old {
        Some(o) => {
            let (fd, e) = o.list(&dir)?;
            (Some(fd), e)
        }
        None => (None, Vec::new()),
    };
    let new_names: HashSet<&str> = new_entries.iter().map(|(n, _)| n.as_str()).collect();
    for (name, _) in &old_entries {
        if !new_names.contains(name.as_str()) {
            out.push(Change {
                path: join(&dir, name),
                kind: ChangeKind::Deleted,
            });
        }
    }
    let old_map: HashMap<&str, St> = old_entries.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let mut entries: Vec<Entry> = new_entries
        .into_iter()
        .map(|(name, st)| {
            let old = old_map.get(name.as_str()).copied();
            let caps_differ = match (&old_fd, old) {
                (Some(ofd), Some(_)) => capability(ofd, &name) != capability(&new_fd, &name),
                _ => false,
            };
            Entry {
                name,
                new: st,
                old,
                caps_differ,
            }
        })
        .collect();
    entries.reverse();
    Ok(Frame {
        dir,
        entries,
        start,
        recorded,
    })
}

/// Compares two trees depth first without recursion (a layer may be thousands of
/// directories deep), holding descriptors only for the directory being listed.
fn walk_dirs(new: &Tree, old: Option<&Tree>, out: &mut Vec<Change>) -> Result<()> {
    // the root's own entry is never reported
    let mut stack = vec![open_frame(new, old, "/".into(), 0, true, out)?];
    // per frame: whether the old tree has the directory
    let mut in_old = vec![old.is_some()];
    while let Some(f) = stack.last_mut() {
        let Some(e) = f.entries.pop() else {
            let f = stack.pop().expect("the loop saw it");
            in_old.pop();
            if out.len() > f.start && !f.recorded {
                out.push(Change {
                    path: f.dir,
                    kind: ChangeKind::Modified,
                });
            }
            continue;
        };
        let path = join(&f.dir, &e.name);
        let start = out.len();
        let mut recorded = false;
        match e.old {
            None => {
                out.push(Change {
                    path: path.clone(),
                    kind: ChangeKind::Added,
                });
                recorded = true;
            }
            Some(m) => {
                if stat_different(&m, &e.new) || e.caps_differ {
                    out.push(Change {
                        path: path.clone(),
                        kind: ChangeKind::Modified,
                    });
                    recorded = true;
                }
            }
        }
        if e.new.is_dir() {
            let here = in_old.last().copied().unwrap_or(false);
            let old_dir = match e.old {
                Some(m) if m.is_dir() && here => old,
                _ => None,
            };
            stack.push(open_frame(new, old_dir, path, start, recorded, out)?);
            in_old.push(old_dir.is_some());
        }
    }
    Ok(())
}

fn is_opaque(dir: &OwnedFd) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::fgetxattr(dir, "trusted.overlay.opaque", &mut buf), Ok(1) if buf[0] == b'y')
}

/// Changes recorded in an overlay upper directory over its lower layers (top first).
pub fn changes_overlay(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let upper = Tree::open(upper)?;
    let lowers: Vec<Tree> = lowers
        .iter()
        .map(|l| Tree::open(l))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    let mut changed_dirs = HashSet::new();
    walk_overlay(&upper, &lowers, &mut out, &mut changed_dirs)?;
    sort(&mut out);
    Ok(out)
}

/// Walks the upper directory depth first without recursion (see [`walk_dirs`]).
fn walk_overlay(
    upper: &Tree,
    lowers: &[Tree],
    out: &mut Vec<Change>,
    changed_dirs: &mut HashSet<String>,
) -> Result<()> {
    let mut stack = vec!["/".to_string()];
    while let Some(dir) = stack.pop() {
        let (_dir_fd, entries) = upper.list(&dir)?;
        let mut subdirs = Vec::new();
        for (name, m) in entries {
            let path = join(&dir, &name);
            let in_lower = || lowers.iter().any(|l| l.stat(&path).is_some());
            let opaque = m.is_dir()
                && upper
                    .resolve(&path, OFlags::RDONLY | OFlags::DIRECTORY)
                    .map(|fd| is_opaque(&fd))
                    .unwrap_or(false);
            let kind = if m.is_whiteout() || (opaque && in_lower()) {
                Some(ChangeKind::Deleted)
            } else {
                let mut kind = Some(ChangeKind::Added);
                for l in lowers {
                    if let Some(lm) = l.stat(&path) {
                        if lm.is_dir()
                            && m.is_dir()
                            && lm.size == m.size
                            && lm.mode == m.mode
                            && lm.mtime == m.mtime
                            && lm.mtime_nsec == m.mtime_nsec
                        {
                            kind = None;
                        } else {
                            kind = Some(ChangeKind::Modified);
                        }
                        break;
                    }
                }
                kind
            };
            if let Some(kind) = kind {
                if m.is_dir() {
                    changed_dirs.insert(path.clone());
                }
                if kind != ChangeKind::Modified
                    && dir != "/"
                    && changed_dirs.insert(dir.to_string())
                {
                    out.push(Change {
                        path: dir.to_string(),
                        kind: ChangeKind::Modified,
                    });
                }
                out.push(Change {
                    path: path.clone(),
                    kind,
                });
            }
            if m.is_dir() {
                subdirs.push(path);
            }
        }
        // in name order, depth first
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// `changes` without the paths in `exclude` and what is under them, nor the directories
/// above them that hold no other change (made or copied up only to hold them): what a
/// container shows of a runtime's mount points (`/etc/hosts`...) when they live in its
/// read-write layer instead of an init layer under it, as Docker keeps them.
pub fn except(changes: Vec<Change>, exclude: &[String]) -> Vec<Change> {
    if exclude.is_empty() {
        return changes;
    }
    // `path` is strictly below the directory `dir`
    let under = |path: &str, dir: &str| {
        (dir == "/" && path != "/")
            || (path.len() > dir.len()
                && path.starts_with(dir)
                && path.as_bytes()[dir.len()] == b'/')
    };
    let excluded = |path: &str| {
        exclude
            .iter()
            .any(|e| path == e.as_str() || under(path, e.as_str()))
    };
    let (dropped, kept): (Vec<Change>, Vec<Change>) =
        changes.into_iter().partition(|c| excluded(&c.path));
    let holds = |dir: &str, set: &[Change]| set.iter().any(|c| under(&c.path, dir));
    let mut out = Vec::with_capacity(kept.len());
    for c in &kept {
        // a directory above a dropped path and above nothing kept: only its holder
        if c.kind != ChangeKind::Deleted && holds(&c.path, &dropped) && !holds(&c.path, &kept) {
            continue;
        }
        out.push(c.clone());
    }
    out
}

#[cfg(test)]
mod except_tests {
    use super::*;

    fn ch(s: &str) -> Change {
        let (k, p) = s.split_once(' ').unwrap();
        Change {
            path: p.to_string(),
            kind: match k {
                "A" => ChangeKind::Added,
                "C" => ChangeKind::Modified,
                _ => ChangeKind::Deleted,
            },
        }
    }

    fn run(changes: &[&str], exclude: &[&str]) -> Vec<String> {
        let ex: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
        except(changes.iter().map(|c| ch(c)).collect(), &ex)
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    #[test]
    fn mount_points_and_their_holders_go_other_changes_stay() {
        let mounts = [
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/dev/pts",
            "/proc",
        ];
        // only the runtime's stubs: nothing
        let stubs = [
            "C /etc",
            "A /etc/hosts",
            "A /etc/hostname",
            "A /etc/resolv.conf",
            "A /dev",
            "A /dev/pts",
            "A /proc",
            "A /proc/x",
        ];
        assert!(run(&stubs, &mounts).is_empty());
        // a real change under the same directory keeps it
        let mut more = stubs.to_vec();
        more.extend(["C /etc/passwd", "A /newfile", "D /etc/group"]);
        assert_eq!(
            run(&more, &mounts),
            ["C /etc", "C /etc/passwd", "A /newfile", "D /etc/group"]
        );
        // a path that only starts like an excluded one stays
        assert_eq!(
            run(&["A /etc/hosts.allow", "A /procfile"], &mounts),
            ["A /etc/hosts.allow", "A /procfile"]
        );
        // nothing excluded: unchanged
        assert_eq!(run(&stubs, &[]).len(), stubs.len());
    }
}
