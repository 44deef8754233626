//! Small JSON state files guarded by `flock(2)` on a sibling `.lock` file.
//!
//! A [`Locked`] holds the exclusive lock for its lifetime; [`Locked::save`] writes a
//! temporary file and renames it over the old one, so a crash leaves either the old or the
//! new content, never a torn file. Locks are per open file description, so threads of one
//! process exclude each other as well as other processes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, file_err};

/// A state file read under an exclusive lock.
pub(crate) struct Locked<T> {
    path: PathBuf,
    _lock: Flock<File>,
    /// The content (default when the file did not exist).
    pub data: T,
}

impl<T: Serialize + DeserializeOwned + Default> Locked<T> {
    /// Locks `path` (via `path.lock`) and reads it.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(file_err(dir, "create state directory"))?;
        }
        let lock_path = path.with_extension("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(file_err(&lock_path, "open lock file"))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::File {
            path: lock_path.clone(),
            what: "lock",
            source: e.into(),
        })?;
        let data = read_json(path)?.unwrap_or_default();
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
            data,
        })
    }

    /// Writes the content back (temporary file + rename).
    pub fn save(&self) -> Result<()> {
        write_json(&self.path, &self.data)
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
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(file_err(dir, "create state directory"))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(data).map_err(|e| Error::CorruptState {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut f = File::create(&tmp).map_err(file_err(&tmp, "create"))?;
    f.write_all(&bytes).map_err(file_err(&tmp, "write"))?;
    drop(f);
    fs::rename(&tmp, path).map_err(file_err(path, "rename into place"))
}

/// Removes a file; a missing file is fine.
pub(crate) fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(file_err(path, "remove")(e)),
    }
}
