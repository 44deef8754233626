//! Filesystem changes between a layer and its parent, with the same rules as `docker diff`.
//!
//! Two algorithms, as in Docker: [`changes_dirs`] compares two full trees (vfs), and
//! [`changes_overlay`] walks an overlay upper directory against its lower layers. Both
//! report parent directories of added or deleted entries as changed (`C`), and return the
//! list sorted by path.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

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

fn rel(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).ctx("read directory", dir)? {
        let e = e.ctx("read directory", dir)?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Docker's `statDifferent`: mode, owner, rdev; and for non-directories size and mtime.
fn stat_different(old: &Metadata, new: &Metadata) -> bool {
    old.mode() != new.mode()
        || old.uid() != new.uid()
        || old.gid() != new.gid()
        || old.rdev() != new.rdev()
        || (!new.is_dir()
            && (old.mtime() != new.mtime()
                || old.mtime_nsec() != new.mtime_nsec()
                || old.len() != new.len()))
}

fn capability(path: &Path) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    rustix::fs::lgetxattr(path, "security.capability", &mut buf)
        .ok()
        .map(|n| buf[..n].to_vec())
}

/// Changes of the full tree `new` against the full tree `old` (or against nothing).
pub fn changes_dirs(new: &Path, old: Option<&Path>) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk_dirs(new, old, "/", &mut out)?;
    sort(&mut out);
    Ok(out)
}

fn walk_dirs(new: &Path, old: Option<&Path>, dir: &str, out: &mut Vec<Change>) -> Result<()> {
    let new_names = sorted_names(&rel(new, dir))?;
    let old_names: Vec<String> = match old {
        Some(o) => sorted_names(&rel(o, dir))?,
        None => Vec::new(),
    };
    let new_set: HashSet<&String> = new_names.iter().collect();
    for name in &old_names {
        if !new_set.contains(name) {
            out.push(Change {
                path: join(dir, name),
                kind: ChangeKind::Deleted,
            });
        }
    }
    let old_set: HashSet<&String> = old_names.iter().collect();
    for name in &new_names {
        let path = join(dir, name);
        let np = rel(new, &path);
        let nm = fs::symlink_metadata(&np).ctx("stat", &np)?;
        let om = match old {
            Some(o) if old_set.contains(name) => {
                let op = rel(o, &path);
                Some((fs::symlink_metadata(&op).ctx("stat", &op)?, op))
            }
            _ => None,
        };
        let start = out.len();
        let mut recorded = false;
        match &om {
            None => {
                out.push(Change {
                    path: path.clone(),
                    kind: ChangeKind::Added,
                });
                recorded = true;
            }
            Some((m, op)) => {
                if stat_different(m, &nm) || capability(op) != capability(&np) {
                    out.push(Change {
                        path: path.clone(),
                        kind: ChangeKind::Modified,
                    });
                    recorded = true;
                }
            }
        }
        if nm.is_dir() {
            let old_dir = match &om {
                Some((m, _)) if m.is_dir() => old,
                _ => None,
            };
            walk_dirs(new, old_dir, &path, out)?;
            if out.len() > start && !recorded {
                out.insert(
                    start,
                    Change {
                        path,
                        kind: ChangeKind::Modified,
                    },
                );
            }
        }
    }
    Ok(())
}

fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut buf), Ok(1) if buf[0] == b'y')
}

/// Changes recorded in an overlay upper directory over its lower layers (top first).
pub fn changes_overlay(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    let mut changed_dirs = HashSet::new();
    walk_overlay(upper, lowers, "/", &mut out, &mut changed_dirs)?;
    sort(&mut out);
    Ok(out)
}

fn walk_overlay(
    upper: &Path,
    lowers: &[PathBuf],
    dir: &str,
    out: &mut Vec<Change>,
    changed_dirs: &mut HashSet<String>,
) -> Result<()> {
    for name in sorted_names(&rel(upper, dir))? {
        let path = join(dir, &name);
        let up = rel(upper, &path);
        let m = fs::symlink_metadata(&up).ctx("stat", &up)?;
        let in_lower = || {
            lowers
                .iter()
                .any(|l| fs::symlink_metadata(rel(l, &path)).is_ok())
        };
        let kind = if is_whiteout(&m) || (m.is_dir() && is_opaque(&up) && in_lower()) {
            Some(ChangeKind::Deleted)
        } else {
            let mut kind = Some(ChangeKind::Added);
            for l in lowers {
                if let Ok(lm) = fs::symlink_metadata(rel(l, &path)) {
                    if lm.is_dir()
                        && m.is_dir()
                        && lm.len() == m.len()
                        && lm.mode() == m.mode()
                        && lm.mtime() == m.mtime()
                        && lm.mtime_nsec() == m.mtime_nsec()
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
            if kind != ChangeKind::Modified && dir != "/" && changed_dirs.insert(dir.to_string()) {
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
            walk_overlay(upper, lowers, &path, out, changed_dirs)?;
        }
    }
    Ok(())
}
