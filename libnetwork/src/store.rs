//! Small JSON state files guarded by `flock(2)` on a sibling `.lock` file.
//!
//! A [`Locked`] holds the exclusive lock for its lifetime. [`Locked::save`] rewrites the
//! file *in place* when old and new content both fit in its first page: one `pwrite(2)` at
//! offset 0 of the new content padded with spaces to the old length (JSON allows trailing
//! whitespace), so the file's inode and data blocks are reused. A write that stays within
//! one page-cache page is never torn by the writer's death (the kernel copies a page before
//! it looks at fatal signals), so a crash leaves either the old or the new content, as a
//! rename does. Larger tables go through a temporary file swapped in by [`replace_json`]'s
//! exchange.
//!
//! Why not always rename: on this ext4 (no journal, mounted with `discard`), replacing a
//! file by rename makes the kernel allocate the new file's blocks at once (`auto_da_alloc`)
//! and free the old ones with a synchronous discard, and creating an inode scans past every
//! inode freed in the last minute; a rename-over measured 0.2 ms median and 0.6 ms mean
//! against 3 µs for the in-place write. Locks are per open file description, so threads of
//! one process exclude each other as well as other processes.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, Flock, FlockArg, RenameFlags};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, file_err};

/// Content up to this size is rewritten in place (one page-cache page).
pub(crate) const IN_PLACE_MAX: usize = 4096;

/// A state file read under an exclusive lock.
pub(crate) struct Locked<T> {
    path: PathBuf,
    _lock: Flock<File>,
    file: File,
    /// Current length of the file (content and padding).
    len: usize,
    /// The content (default when the file did not exist or was empty).
    pub data: T,
}

impl<T: Serialize + DeserializeOwned + Default> Locked<T> {
    /// Locks `path` (via `path.lock`) and reads it.
    pub fn open(path: &Path) -> Result<Self> {
        let lock_path = path.with_extension("lock");
        let open_lock = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
        };
        let f = match open_lock() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(file_err(dir, "create state directory"))?;
                }
                open_lock()
            }
            r => r,
        }
        .map_err(file_err(&lock_path, "open lock file"))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::File {
            path: lock_path.clone(),
            what: "lock",
            source: e.into(),
        })?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(file_err(path, "open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(file_err(path, "read"))?;
        let data = if bytes.iter().all(u8::is_ascii_whitespace) {
            // created just now (or by a process that died before its first write)
            T::default()
        } else {
            serde_json::from_slice(&bytes).map_err(|e| Error::CorruptState {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
        };
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
            file,
            len: bytes.len(),
            data,
        })
    }

    /// Writes the content back: in place when it fits in one page, else by rename.
    pub fn save(&mut self) -> Result<()> {
        let mut bytes = serde_json::to_vec(&self.data).map_err(|e| Error::CorruptState {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        if bytes.len() <= IN_PLACE_MAX && self.len <= IN_PLACE_MAX {
            if bytes.len() < self.len {
                bytes.resize(self.len, b' ');
            }
            self.file
                .write_all_at(&bytes, 0)
                .map_err(file_err(&self.path, "write"))?;
            self.len = bytes.len();
            return Ok(());
        }
        replace_bytes(&self.path, &bytes)?;
        // later saves go to the new file (the lock is on the sibling, so it still holds)
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(file_err(&self.path, "open"))?;
        self.len = bytes.len();
        Ok(())
    }
}

/// Reads a JSON file; `None` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::CorruptState {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(path, "read")(e)),
    }
}

/// Writes a JSON file atomically (temporary file + rename).
pub(crate) fn write_json<T: Serialize>(path: &Path, data: &T) -> Result<()> {
    write_bytes(path, &to_json(path, data)?)
}

/// Writes a JSON file that must not exist yet (temporary file + `RENAME_NOREPLACE`, so of
/// two writers racing for one name exactly one wins). Returns false, changing nothing,
/// when `path` exists.
pub(crate) fn create_json<T: Serialize>(path: &Path, data: &T) -> Result<bool> {
    let tmp = write_tmp(path, &to_json(path, data)?)?;
    match renameat2(&tmp, path, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => {
            let _ = fs::remove_file(&tmp);
            Ok(false)
        }
        // a filesystem without renameat2 flags (e.g. overlayfs on old kernels)
        Err(Errno::EINVAL | Errno::ENOSYS) if !path.exists() => {
            rename_tmp(&tmp, path)?;
            Ok(true)
        }
        Err(Errno::EINVAL | Errno::ENOSYS) => {
            let _ = fs::remove_file(&tmp);
            Ok(false)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(file_err(path, "rename into place")(e.into()))
        }
    }
}

/// Writes a record that must not exist yet into `spare`, a retired record file (see
/// [`retire`]), and renames it into place with `RENAME_NOREPLACE`: no inode is created, and
/// none was deleted at the teardown that retired it. The spare is rewritten under an
/// exclusive `flock` because a reader may still hold it open under its old name: such a
/// reader then reads either the old record or this one, and must check that the record is
/// the one it asked for. Returns `Ok(None)` when `path` was created, `Ok(Some(spare))`
/// (unused, to keep) when it exists; `Err` when the spare cannot be used, which the caller
/// then drops and creates the record anew.
pub(crate) fn create_json_in<T: Serialize>(
    path: &Path,
    data: &T,
    spare: PathBuf,
) -> Result<Option<PathBuf>> {
    let mut bytes = to_json(path, data)?;
    let f = OpenOptions::new()
        .write(true)
        .open(&spare)
        .map_err(file_err(&spare, "open"))?;
    let f = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::File {
        path: spare.clone(),
        what: "lock",
        source: e.into(),
    })?;
    let len = f.metadata().map_err(file_err(&spare, "stat"))?.len() as usize;
    if len <= IN_PLACE_MAX {
        bytes.resize(bytes.len().max(len), b' ');
    } else {
        f.set_len(0).map_err(file_err(&spare, "truncate"))?;
    }
    f.write_all_at(&bytes, 0)
        .map_err(file_err(&spare, "write"))?;
    match renameat2(&spare, path, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(None),
        Err(Errno::EEXIST) => Ok(Some(spare)),
        Err(e) => Err(file_err(path, "rename into place")(e.into())),
    }
}

/// Rewrites an endpoint record in place under an exclusive `flock` on the record itself
/// (readers take it shared, see [`read_record`]), as [`Locked::save`] does for tables: one
/// padded `pwrite(2)` when old and new content fit in a page, else a new file swapped in
/// with `RENAME_EXCHANGE`. A record that is gone is written anew.
///
/// Neither way renames over the old file: that makes ext4 allocate the new file's blocks at
/// once (`auto_da_alloc`), and the unlink at teardown then frees them with a synchronous
/// discard on this disk (0.4-4 ms); nor creates an inode, which on this ext4 without a
/// journal scans past every inode freed in the last half minute (0.1-0.4 ms under churn).
pub(crate) fn update_record<T: Serialize>(path: &Path, data: &T) -> Result<()> {
    let mut bytes = to_json(path, data)?;
    let f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return write_bytes(path, &bytes),
        Err(e) => return Err(file_err(path, "open")(e)),
    };
    let f = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::File {
        path: path.to_path_buf(),
        what: "lock",
        source: e.into(),
    })?;
    let len = f.metadata().map_err(file_err(path, "stat"))?.len() as usize;
    if bytes.len() <= IN_PLACE_MAX && len <= IN_PLACE_MAX {
        bytes.resize(bytes.len().max(len), b' ');
        return f.write_all_at(&bytes, 0).map_err(file_err(path, "write"));
    }
    // readers that opened the old file read it whole once the lock is released
    replace_bytes(path, &bytes)
}

/// Reads an endpoint record under a shared `flock` (see [`update_record`]); `None` when it
/// does not exist.
pub(crate) fn read_record<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err(path, "open")(e)),
    };
    let mut f = Flock::lock(f, FlockArg::LockShared).map_err(|(_, e)| Error::File {
        path: path.to_path_buf(),
        what: "lock",
        source: e.into(),
    })?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(file_err(path, "read"))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::CorruptState {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Moves a file out of the way under a temporary name (`x.tmp<pid>-<n>`, which readers of
/// `*.json` ignore and [`stale_tmp_pid`] recognises), to be reused by [`create_json_in`] or
/// unlinked by a background thread: the unlink of a file whose blocks are allocated costs a
/// synchronous discard on this disk, and every inode freed makes the next ones slower to
/// allocate for half a minute. `None` when the file does not exist.
pub(crate) fn retire(path: &Path) -> Result<Option<PathBuf>> {
    let tmp = tmp_path(path);
    match fs::rename(path, &tmp) {
        Ok(()) => Ok(Some(tmp)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(path, "move aside")(e)),
    }
}

/// Swaps `bytes` in for the content of `path` with `RENAME_EXCHANGE` and unlinks the old
/// file (a plain rename where the old file is gone or the filesystem cannot exchange).
fn replace_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_tmp(path, bytes)?;
    match renameat2(&tmp, path, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => remove(&tmp),
        // the old file is gone, or the filesystem cannot exchange
        Err(Errno::ENOENT | Errno::EINVAL | Errno::ENOSYS) => rename_tmp(&tmp, path),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(file_err(path, "rename into place")(e.into()))
        }
    }
}

fn renameat2(from: &Path, to: &Path, flags: RenameFlags) -> std::result::Result<(), Errno> {
    nix::fcntl::renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)
}

fn to_json<T: Serialize>(path: &Path, data: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(data).map_err(|e| Error::CorruptState {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `name.tmp<pid>-<n>`: unique per process and call, so threads never share one, and
/// [`stale_tmp_pid`] can tell whose it is.
fn tmp_path(path: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    path.with_extension(format!("tmp{}-{n}", std::process::id()))
}

/// The pid in the name of a temporary file of this module (`x.tmp<pid>-<n>`, or the older
/// `x.tmp<pid>`), if it is one.
pub(crate) fn stale_tmp_pid(name: &str) -> Option<u32> {
    let (_, ext) = name.rsplit_once('.')?;
    let rest = ext.strip_prefix("tmp")?;
    let pid = rest.split_once('-').map_or(rest, |(p, _)| p);
    pid.parse().ok()
}

/// Writes `bytes` to a new temporary file next to `path`; returns its path.
fn write_tmp(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = tmp_path(path);
    let mut f = match File::create(&tmp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(file_err(dir, "create state directory"))?;
            }
            File::create(&tmp)
        }
        r => r,
    }
    .map_err(file_err(&tmp, "create"))?;
    if let Err(e) = f.write_all(bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(file_err(&tmp, "write")(e));
    }
    Ok(tmp)
}

/// Writes `bytes` to a temporary file and renames it to `path`.
fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    rename_tmp(&write_tmp(path, bytes)?, path)
}

/// Renames a temporary file to `path`; removes it when that fails.
fn rename_tmp(tmp: &Path, path: &Path) -> Result<()> {
    fs::rename(tmp, path).map_err(|e| {
        let _ = fs::remove_file(tmp);
        file_err(path, "rename into place")(e)
    })
}

/// Removes a file; a missing file is fine.
pub(crate) fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(file_err(path, "remove")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    type Table = BTreeMap<String, String>;

    fn table(n: usize, width: usize) -> Table {
        (0..n)
            .map(|i| (format!("k{i}"), "x".repeat(width)))
            .collect()
    }

    fn save(path: &Path, t: &Table) {
        let mut l: Locked<Table> = Locked::open(path).unwrap();
        l.data = t.clone();
        l.save().unwrap();
    }

    fn load(path: &Path) -> Table {
        Locked::<Table>::open(path).unwrap().data
    }

    #[test]
    fn small_tables_are_rewritten_in_place_and_large_ones_by_rename() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("sub").join("t.json");
        assert!(load(&path).is_empty(), "a new table is empty");
        let big = table(3, 100);
        save(&path, &big);
        let ino = fs::metadata(&path).unwrap().ino();
        let len = fs::metadata(&path).unwrap().len();
        // shrinking in place pads with whitespace: same inode, same length, valid JSON
        let small = table(1, 10);
        save(&path, &small);
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino);
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
        assert_eq!(load(&path), small);
        // more than a page goes through a new file
        let huge = table(100, 100);
        save(&path, &huge);
        let ino2 = fs::metadata(&path).unwrap().ino();
        assert_ne!(ino2, ino);
        assert!(fs::metadata(&path).unwrap().len() > IN_PLACE_MAX as u64);
        assert_eq!(load(&path), huge);
        // and back: the large file is replaced by a small one, then rewritten in place
        save(&path, &small);
        assert!(fs::metadata(&path).unwrap().len() <= IN_PLACE_MAX as u64);
        assert_eq!(load(&path), small);
        let ino3 = fs::metadata(&path).unwrap().ino();
        save(&path, &big);
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino3);
        assert_eq!(load(&path), big);
        // two saves under one lock, across the page limit and back
        let mut l: Locked<Table> = Locked::open(&path).unwrap();
        l.data = huge.clone();
        l.save().unwrap();
        l.data = small.clone();
        l.save().unwrap();
        drop(l);
        assert_eq!(load(&path), small);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains("tmp")),
            "no temporary file is left: {names:?}"
        );
    }

    #[test]
    fn records_are_created_once_updated_in_place_and_retired() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("ep.json");
        let (a, b) = (table(1, 3), table(2, 5));
        assert!(create_json(&path, &a).unwrap());
        // a second creator loses and changes nothing
        assert!(!create_json(&path, &b).unwrap());
        assert_eq!(read_record::<Table>(&path).unwrap().unwrap(), a);
        let ino = fs::metadata(&path).unwrap().ino();
        update_record(&path, &b).unwrap();
        assert_eq!(read_record::<Table>(&path).unwrap().unwrap(), b);
        assert_eq!(
            fs::metadata(&path).unwrap().ino(),
            ino,
            "rewritten in place"
        );
        // shorter content is padded, longer than a page is swapped in as a new file
        update_record(&path, &a).unwrap();
        assert_eq!(read_record::<Table>(&path).unwrap().unwrap(), a);
        let huge = table(100, 100);
        update_record(&path, &huge).unwrap();
        assert_eq!(read_record::<Table>(&path).unwrap().unwrap(), huge);
        assert_ne!(fs::metadata(&path).unwrap().ino(), ino);
        // retired: out of the way under a temporary name of this process
        let gone = retire(&path).unwrap().unwrap();
        assert!(read_record::<Table>(&path).unwrap().is_none());
        let name = gone.file_name().unwrap().to_str().unwrap();
        assert_eq!(stale_tmp_pid(name), Some(std::process::id()));
        assert_eq!(read_json::<Table>(&gone).unwrap().unwrap(), huge);
        assert!(retire(&path).unwrap().is_none());
        remove(&gone).unwrap();
        // updating a record that is gone writes it
        update_record(&path, &a).unwrap();
        assert_eq!(read_record::<Table>(&path).unwrap().unwrap(), a);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["ep.json".to_string()],
            "no temporary file is left"
        );
        // a garbled record is a clear error
        fs::write(&path, b"{\"k0\":").unwrap();
        let err = read_record::<Table>(&path).unwrap_err();
        assert!(matches!(err, Error::CorruptState { .. }), "{err}");
    }

    #[test]
    fn retired_files_take_new_records_and_are_handed_back_when_the_name_is_taken() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-")
            .tempdir()
            .unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        let big = table(3, 50);
        assert!(create_json(&a, &big).unwrap());
        let ino = fs::metadata(&a).unwrap().ino();
        let spare = retire(&a).unwrap().unwrap();
        // a shorter record in the longer file: padded, same inode
        let small = table(1, 1);
        assert!(create_json_in(&b, &small, spare).unwrap().is_none());
        assert_eq!(fs::metadata(&b).unwrap().ino(), ino);
        assert_eq!(read_record::<Table>(&b).unwrap().unwrap(), small);
        // the name is taken: the spare comes back and the record is untouched
        let spare = retire(&b).unwrap().unwrap();
        assert!(create_json(&a, &big).unwrap());
        let back = create_json_in(&a, &small, spare.clone()).unwrap();
        assert_eq!(back.as_deref(), Some(spare.as_path()));
        assert!(spare.exists());
        assert_eq!(read_record::<Table>(&a).unwrap().unwrap(), big);
        // a spare that is gone is an error (the caller then creates a new file)
        remove(&spare).unwrap();
        assert!(create_json_in(&b, &small, spare).is_err());
        assert!(!b.exists());
    }

    #[test]
    fn temporary_file_names_carry_the_pid() {
        let t = tmp_path(Path::new("/s/endpoints/web.1.json"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("web.1.tmp"), "{name}");
        assert_eq!(stale_tmp_pid(name), Some(std::process::id()));
        assert_ne!(
            tmp_path(Path::new("/s/x.json")),
            tmp_path(Path::new("/s/x.json"))
        );
        assert_eq!(stale_tmp_pid("ports.tmp77"), Some(77));
        for not_tmp in [
            "web.json",
            "web.tmp7.json",
            "tmp5",
            "x.tmp",
            "x.tmpab-1",
            "x.lock",
        ] {
            assert_eq!(stale_tmp_pid(not_tmp), None, "{not_tmp}");
        }
    }

    #[test]
    fn empty_or_blank_files_are_empty_tables_and_garbage_is_corrupt() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("t.json");
        fs::write(&path, b"  \n  ").unwrap();
        assert!(load(&path).is_empty());
        // a half-written table (as a torn multi-page write would leave) is refused clearly
        fs::write(&path, br#"{"k1":"x","k2""#).unwrap();
        let err = Locked::<Table>::open(&path).err().unwrap();
        assert!(matches!(err, Error::CorruptState { .. }), "{err}");
        assert!(err.to_string().contains("t.json"), "{err}");
    }
}
