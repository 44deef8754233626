//! The build context: a directory or a tar stream, with its `.dockerignore`.
//!
//! Every path is resolved inside the context's root: symlinks are followed as if the root
//! were `/` (an absolute target starts at the root, `..` stops there), so nothing outside
//! the context is ever read; `COPY ../x` is refused; symlinks met while copying a directory
//! are copied as symlinks.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::ignore::{Ignore, clean};

/// A build context.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
    _tmp: Option<tempfile::TempDir>,
}

/// A reader that, once its input ends, reads as up to three blocks of zeros (a tar's
/// missing padding and end-of-archive marker); `real` counts the bytes that were there.
struct LenientEnd<R> {
    inner: R,
    real: std::rc::Rc<std::cell::Cell<u64>>,
    eof: bool,
    zeros: usize,
}

impl<R: Read> Read for LenientEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.eof {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.real.set(self.real.get() + n as u64);
                return Ok(n);
            }
            self.eof = true;
        }
        let n = buf.len().min(3 * 512 - self.zeros);
        buf[..n].fill(0);
        self.zeros += n;
        Ok(n)
    }
}

/// Follows symlinks like the kernel would with `root` as `/` (moby's
/// `FollowSymlinkInScope`). `rel` is relative to `root` (a leading `/` is allowed). With
/// `follow_last` false, a symlink as the last element is not followed. Missing elements are
/// kept as written.
pub fn resolve_in_root(root: &Path, rel: &str, follow_last: bool) -> io::Result<PathBuf> {
    let mut todo: Vec<String> = rel
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let mut p = root.to_path_buf();
        p.extend(&done);
        p.push(&c);
        let last = todo.is_empty();
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() && (!last || follow_last) => {
                links += 1;
                if links > 255 {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {rel}"
                    )));
                }
                let target = fs::read_link(&p)?;
                let t = target.to_string_lossy();
                if t.starts_with('/') {
                    done.clear();
                }
                for part in t.split('/').filter(|s| !s.is_empty()).rev() {
                    todo.push(part.to_string());
                }
            }
            _ => done.push(c),
        }
    }
    let mut p = root.to_path_buf();
    p.extend(&done);
    Ok(p)
}

/// Checks a context tar entry's path: relative, no `..` element.
fn safe_entry(path: &Path) -> Result<()> {
    let s = path.to_string_lossy();
    if s.starts_with('/') || s.split('/').any(|c| c == "..") {
        return Err(Error::Context(format!(
            "context tar entry {s:?} points outside the context (absolute or with \"..\"); refusing the whole context"
        )));
    }
    Ok(())
}

impl Context {
    /// A context directory (its `.dockerignore` is read now).
    pub fn dir(path: impl Into<PathBuf>) -> Result<Context> {
        let root: PathBuf = path.into();
        let meta = fs::metadata(&root).ctx("open build context", &root)?;
        if !meta.is_dir() {
            return Err(Error::Context(format!(
                "build context {} is not a directory",
                root.display()
            )));
        }
        let root = fs::canonicalize(&root).ctx("resolve build context", &root)?;
        let ignore = match fs::read_to_string(root.join(".dockerignore")) {
            Ok(t) => Ignore::parse(&t)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::default(),
            Err(e) => {
                return Err(Error::Io {
                    op: "read",
                    path: root.join(".dockerignore"),
                    source: e,
                });
            }
        };
        Ok(Context {
            root,
            ignore,
            _tmp: None,
        })
    }

    /// A context sent as a tar (`docker build -`): unpacked into a temporary directory that
    /// is removed with the context. An entry with an absolute path or a `..` element refuses
    /// the whole context; symlinks are kept as symlinks.
    pub fn tar(reader: impl Read) -> Result<Context> {
        let tmp = tempfile::Builder::new()
            .prefix("longshore-build-context-")
            .tempdir()
            .ctx("create", std::env::temp_dir())?;
        // `docker build - < context.tar.gz`: gzip is recognised by its magic bytes
        let mut r = io::BufReader::new(reader);
        let gzip = io::BufRead::fill_buf(&mut r)
            .ctx("read context tar", "-")?
            .starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read> = if gzip {
            Box::new(flate2::read::GzDecoder::new(r))
        } else {
            Box::new(r)
        };
        // the docker CLI ends a context it rewrote (`-f` outside the context) right after
        // the last entry's data, without its padding or the end-of-archive blocks, and
        // Docker accepts that: the missing zeros are supplied, but only after a complete
        // entry (a stream cut inside an entry's data is still refused below)
        let real = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let reader = LenientEnd {
            inner: reader,
            real: real.clone(),
            eof: false,
            zeros: 0,
        };
        let mut ar = tar::Archive::new(reader);
        ar.set_preserve_permissions(true);
        ar.set_preserve_mtime(true);
        ar.set_unpack_xattrs(false);
        let entries = ar.entries().ctx("read context tar", "-")?;
        for e in entries {
            let mut e = e.ctx("read context tar", "-")?;
            let path = e.path().ctx("read context tar", "-")?.into_owned();
            safe_entry(&path)?;
            if let Ok(Some(link)) = e.link_name()
                && e.header().entry_type().is_hard_link()
            {
                safe_entry(&link)?;
            }
            let end = e.raw_file_position() + e.size();
            // unpack_in refuses to write through symlinks that lead outside the directory
            let ok = e
                .unpack_in(tmp.path())
                .ctx("unpack context tar entry", &path)?;
            if end > real.get() {
                return Err(Error::Context(format!(
                    "context tar is cut short inside entry {:?}",
                    path.display()
                )));
            }
            if !ok {
                return Err(Error::Context(format!(
                    "context tar entry {:?} points outside the context",
                    path.display()
                )));
            }
        }
        let mut c = Context::dir(tmp.path())?;
        c._tmp = Some(tmp);
        Ok(c)
    }

    /// Uses `<dockerfile>.dockerignore` instead of `.dockerignore` when the context has one
    /// (BuildKit's per-Dockerfile ignore file: `-f build/app.Dockerfile` reads
    /// `build/app.Dockerfile.dockerignore`); without one the context's rules stay.
    pub fn with_dockerfile_ignore(mut self, dockerfile: &str) -> Result<Context> {
        let rel = context_rel(&format!("{dockerfile}.dockerignore"))?;
        let p = resolve_in_root(&self.root, &rel, true).ctx("resolve", &rel)?;
        match fs::read_to_string(&p) {
            Ok(t) => self.ignore = Ignore::parse(&t)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    op: "read",
                    path: p,
                    source: e,
                });
            }
        }
        Ok(self)
    }

    /// The context's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.dockerignore` rules.
    pub fn ignore(&self) -> &Ignore {
        &self.ignore
    }

    /// Reads a file of the context (the Dockerfile), whatever `.dockerignore` says.
    pub fn read_file(&self, rel: &str) -> Result<String> {
        let rel = context_rel(rel)?;
        let p = resolve_in_root(&self.root, &rel, true).ctx("resolve", &rel)?;
        fs::read_to_string(&p).ctx("read", p)
    }
}

/// A COPY source path made relative to the context root, refusing what leaves it.
pub fn context_rel(src: &str) -> Result<String> {
    let c = clean(&format!("/{src}"));
    // a source like "../x" cleans to "/x" when rooted: check the unrooted form
    let unrooted = clean(src.trim_start_matches('/'));
    if unrooted == ".." || unrooted.starts_with("../") {
        return Err(Error::Context(format!(
            "forbidden path outside the build context: {src}"
        )));
    }
    Ok(c.trim_start_matches('/').to_string())
}

/// Whether a source contains glob characters.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go's `filepath.Match` on one path element.
pub fn element_match(pattern: &str, name: &str) -> bool {
    // reuse the .dockerignore element globs: a one-element pattern
    Ignore::parse(pattern).is_ok_and(|ig| !ig.is_empty() && ig.excludes(name))
        && !pattern.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir(r.join("a")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../..", r.join("a/up")).unwrap();
        assert_eq!(
            resolve_in_root(r, "abs/passwd", true).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(resolve_in_root(r, "a/up/etc", true).unwrap(), r.join("etc"));
        assert_eq!(resolve_in_root(r, "abs", false).unwrap(), r.join("abs"));
        symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_in_root(r, "loop/x", true).is_err());
    }

    #[test]
    fn dockerfile_specific_ignore() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(".dockerignore"), "a\n").unwrap();
        fs::create_dir(d.path().join("build")).unwrap();
        fs::write(d.path().join("build/app.Dockerfile.dockerignore"), "b\n").unwrap();
        let c = Context::dir(d.path()).unwrap();
        assert!(c.ignore().excludes("a") && !c.ignore().excludes("b"));
        let c = c.with_dockerfile_ignore("build/app.Dockerfile").unwrap();
        assert!(!c.ignore().excludes("a") && c.ignore().excludes("b"));
        let c = Context::dir(d.path())
            .unwrap()
            .with_dockerfile_ignore("Dockerfile")
            .unwrap();
        assert!(c.ignore().excludes("a"));
    }

    #[test]
    fn a_tar_without_its_end_blocks_is_read_and_a_cut_one_refused() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("Dockerfile", &b"FROM busybox\n"[..]), ("a", b"AB")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        }
        let full = b.into_inner().unwrap();
        // as the docker CLI sends it: the last entry's data, then nothing
        let data_end = 512 * 3 + 2;
        let c = Context::tar(&full[..data_end]).unwrap();
        assert_eq!(fs::read(c.root().join("a")).unwrap(), b"AB");
        assert_eq!(c.read_file("Dockerfile").unwrap(), "FROM busybox\n");
        // cut inside the last entry's data
        let e = Context::tar(&full[..data_end - 1]).unwrap_err().to_string();
        assert!(e.contains("cut short inside entry \"a\""), "{e}");
    }

    #[test]
    fn outside_sources_refused() {
        assert!(context_rel("../x").is_err());
        assert!(context_rel("a/../../x").is_err());
        assert_eq!(context_rel("/etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(context_rel("./a/./b").unwrap(), "a/b");
        assert_eq!(context_rel(".").unwrap(), "");
        assert!(element_match("*.txt", "a.txt") && !element_match("*.txt", "a.md"));
    }
}
