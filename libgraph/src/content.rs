//! The content store: blobs addressed by digest, written through an ingest area.
//!
//! Layout under the store root:
//!
//! ```text
//! blobs/<alg>/<hex>        committed blobs, mode 0444
//! ingest/<sha256(ref)>/    one directory per ingest in progress
//!     ref                  the ingest reference, for listing
//!     lock                 flock(2)ed while a writer owns the ingest (works across processes)
//!     data                 the partial content; its length is the resume offset
//! ```
//!
//! A [`Writer`] hashes while writing; [`Writer::commit`] checks size and digest, fsyncs the data,
//! makes it read-only, renames it into `blobs/` and fsyncs that directory. A mismatch removes the
//! ingest and commits nothing. An ingest left behind by a crash (or dropped writer) keeps its data:
//! opening a writer with the same reference resumes at its end.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext, Result};

/// A content-addressed blob store rooted at a directory.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

/// An ingest in progress (or abandoned), as listed by [`ContentStore::ingests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    /// The reference the writer was opened with.
    pub reference: String,
    /// Bytes written so far.
    pub offset: u64,
}

impl ContentStore {
    /// Opens (creating if needed) a content store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<ContentStore> {
        let root = root.into();
        for sub in ["blobs/sha256", "blobs/sha512", "ingest"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).ctx("create directory", &p)?;
        }
        // blobs are image content: only the owner may reach them
        crate::store::private_dir(&root, crate::store::PRIVATE_MODE)?;
        Ok(ContentStore { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// Whether the blob is present.
    pub fn exists(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The blob's size.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(Error::io("stat blob", self.blob_path(digest), e)),
        }
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        match File::open(&p) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(Error::io("open blob", p, e)),
        }
    }

    /// Reads a whole blob into memory, checking its digest.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        let p = self.blob_path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut data)
            .ctx("read blob", &p)?;
        let mut h = digest.algorithm().hasher();
        h.update(&data);
        let got = h.finish();
        if &got != digest {
            return Err(Error::BlobCorrupt {
                digest: digest.clone(),
                reason: format!("content hashes to {got}"),
            });
        }
        Ok(data)
    }

    /// Re-hashes a blob and reports whether it still matches its name.
    pub fn verify(&self, digest: &Digest) -> Result<()> {
        let p = self.blob_path(digest);
        let mut f = self.open_blob(digest)?;
        let mut h = digest.algorithm().hasher();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).ctx("read blob", &p)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let got = h.finish();
        if &got != digest {
            return Err(Error::BlobCorrupt {
                digest: digest.clone(),
                reason: format!("content hashes to {got}"),
            });
        }
        Ok(())
    }

    /// Writes a whole blob in one call (through the ingest area) and returns its digest.
    pub fn write_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let digest = match expected {
            Some(d) => d.clone(),
            None => Digest::sha256_of(data),
        };
        if self.exists(&digest) {
            return Ok(digest);
        }
        let reference = format!("write-{digest}");
        let mut w = self.writer(
            &reference,
            expected.map_or(Algorithm::Sha256, |d| d.algorithm()),
        )?;
        if w.offset() != 0 {
            w.truncate()?;
        }
        w.write_all(data).ctx("write ingest", w.data_path())?;
        w.commit(Some(data.len() as u64), Some(&digest))
    }

    /// Removes a blob (making it writable first). Missing blobs are not an error.
    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove blob", p, e)),
        }
    }

    /// Lists every committed blob. Files whose names are not valid digests are skipped.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.name());
            for entry in fs::read_dir(&dir).ctx("list blobs", &dir)? {
                let entry = entry.ctx("list blobs", &dir)?;
                if let Some(name) = entry.file_name().to_str()
                    && let Ok(d) = Digest::parse(&format!("{alg}:{name}"))
                {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens (or resumes) the ingest keyed by `reference`, hashing with `algorithm`.
    ///
    /// Fails with [`Error::IngestLocked`] if another writer (in any process) holds it.
    /// If a previous writer left partial data, the new writer re-hashes it and continues at
    /// [`Writer::offset`].
    pub fn writer(&self, reference: &str, algorithm: Algorithm) -> Result<Writer> {
        if reference.is_empty() || reference.len() > 255 || reference.contains('\0') {
            return Err(Error::InvalidIngestRef(reference.to_string()));
        }
        let dir = self.ingest_dir(reference);
        let lock_path = dir.join("lock");
        // Lock, then make sure the lock file we hold is still the one in the directory (a
        // committing writer removes the directory while holding its lock).
        let lock = loop {
            fs::create_dir_all(&dir).ctx("create ingest directory", &dir)?;
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&lock_path)
                .ctx("open ingest lock", &lock_path)?;
            match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(Error::IngestLocked(reference.to_string()));
                }
                Err(e) => return Err(Error::io("lock ingest", &lock_path, e.into())),
            }
            let held = lock.metadata().ctx("stat ingest lock", &lock_path)?;
            match fs::metadata(&lock_path) {
                Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => break lock,
                _ => continue,
            }
        };
        let ref_path = dir.join("ref");
        if !ref_path.exists() {
            fs::write(&ref_path, reference).ctx("write ingest ref", &ref_path)?;
        }
        let data_path = dir.join("data");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&data_path)
            .ctx("open ingest data", &data_path)?;
        // Resume: re-hash what is already there.
        let mut hasher = algorithm.hasher();
        let mut offset = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).ctx("read ingest data", &data_path)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        Ok(Writer {
            store: self.clone(),
            reference: reference.to_string(),
            dir,
            data_path,
            file,
            lock,
            hasher,
            algorithm,
            offset,
            trusted: None,
        })
    }

    /// Lists ingests present on disk (in progress or abandoned).
    pub fn ingests(&self) -> Result<Vec<IngestStatus>> {
        let dir = self.root.join("ingest");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).ctx("list ingests", &dir)? {
            let entry = entry.ctx("list ingests", &dir)?;
            let Ok(reference) = fs::read_to_string(entry.path().join("ref")) else {
                continue;
            };
            let offset = fs::metadata(entry.path().join("data")).map_or(0, |m| m.len());
            out.push(IngestStatus { reference, offset });
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Removes an ingest's partial data, unless a writer currently holds it.
    pub fn abort(&self, reference: &str) -> Result<()> {
        let w = self.writer(reference, Algorithm::Sha256)?;
        w.abort()
    }

    fn ingest_dir(&self, reference: &str) -> PathBuf {
        self.root
            .join("ingest")
            .join(Digest::sha256_of(reference.as_bytes()).hex())
    }
}

/// Writes one blob into the ingest area; see [`ContentStore::writer`].
///
/// Dropping a writer without committing keeps the partial data for a later resume.
#[derive(Debug)]
pub struct Writer {
    store: ContentStore,
    reference: String,
    dir: PathBuf,
    data_path: PathBuf,
    file: File,
    /// Holds the ingest's flock; released explicitly on drop (see `Drop`).
    lock: File,
    hasher: Hasher,
    algorithm: Algorithm,
    offset: u64,
    /// Set by [`Writer::verified_by_caller`]: the digest the caller checks itself.
    trusted: Option<Digest>,
}

impl Writer {
    /// Declares that the caller verifies what it writes against `digest` itself (a
    /// registry client hashes every download and commits only on a match): the writer
    /// stops hashing, and [`Writer::commit`] checks the size and that the expected digest
    /// is `digest`. Only at offset 0.
    pub fn verified_by_caller(&mut self, digest: &Digest) -> Result<()> {
        if self.offset != 0 {
            return Err(Error::ContentMismatch {
                reference: self.reference.clone(),
                reason: format!(
                    "a writer at offset {} cannot switch to caller verification",
                    self.offset
                ),
            });
        }
        self.trusted = Some(digest.clone());
        Ok(())
    }

    /// Bytes written so far (including bytes from a resumed ingest).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The ingest reference.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The digest of what has been written so far (the caller's digest once it verifies).
    pub fn digest(&self) -> Digest {
        match &self.trusted {
            Some(d) => d.clone(),
            None => self.hasher.clone().finish(),
        }
    }

    /// The partial data file.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// Discards what was written and restarts at offset 0.
    pub fn truncate(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .ctx("truncate ingest", &self.data_path)?;
        std::io::Seek::seek(&mut self.file, io::SeekFrom::Start(0))
            .ctx("seek ingest", &self.data_path)?;
        self.hasher = self.algorithm.hasher();
        self.offset = 0;
        self.trusted = None;
        Ok(())
    }

    /// Verifies size and digest, then moves the data into `blobs/` durably.
    ///
    /// On a mismatch the ingest is removed and nothing is committed. If the blob already
    /// exists, the ingest is dropped and the existing blob's digest returned.
    pub fn commit(
        mut self,
        expected_size: Option<u64>,
        expected: Option<&Digest>,
    ) -> Result<Digest> {
        let digest = self.digest();
        let mismatch = match expected_size.filter(|&s| s != self.offset) {
            Some(size) => Some(format!("expected {size} bytes, got {}", self.offset)),
            None => expected
                .filter(|&d| d != &digest)
                .map(|want| format!("expected {want}, got {digest}")),
        };
        if let Some(reason) = mismatch {
            let reference = self.reference.clone();
            self.remove_dir()?;
            return Err(Error::ContentMismatch { reference, reason });
        }
        self.file.flush().ctx("flush ingest", &self.data_path)?;
        self.file.sync_all().ctx("fsync ingest", &self.data_path)?;
        self.file
            .set_permissions(fs::Permissions::from_mode(0o444))
            .ctx("chmod ingest", &self.data_path)?;
        let target = self.store.blob_path(&digest);
        if !target.exists() {
            fs::rename(&self.data_path, &target).ctx("commit blob", &target)?;
            let blob_dir = target.parent().unwrap_or(&self.store.root);
            fsync_dir(blob_dir)?;
        }
        self.remove_dir()?;
        Ok(digest)
    }

    /// Removes the ingest and its data.
    pub fn abort(mut self) -> Result<()> {
        self.remove_dir()
    }

    fn remove_dir(&mut self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove ingest", &self.dir, e)),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Unlock before the descriptor closes: a process another thread forked holds a copy
        // of it until it execs, and a flock is released only when every copy is closed, or
        // by an explicit unlock through any of them. Without this, a writer opened right
        // after this one is dropped could find the ingest still locked.
        let _ = rustix::fs::flock(&self.lock, FlockOperation::Unlock);
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if self.trusted.is_none() {
            self.hasher.update(&buf[..n]);
        }
        self.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// fsyncs a directory so a rename into it is durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync directory", dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let tmp = tempfile::Builder::new()
            .prefix("longshore-cs-")
            .tempdir()
            .unwrap();
        let cs = ContentStore::open(tmp.path()).unwrap();
        (tmp, cs)
    }

    #[test]
    fn write_commit_read() {
        let (_t, cs) = store();
        let mut w = cs.writer("blob-1", Algorithm::Sha256).unwrap();
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let want = Digest::sha256_of(b"hello world");
        assert_eq!(w.digest(), want);
        let d = w.commit(Some(11), Some(&want)).unwrap();
        assert_eq!(d, want);
        assert!(cs.exists(&d));
        assert_eq!(cs.read(&d).unwrap(), b"hello world");
        assert_eq!(cs.size(&d).unwrap(), 11);
        let mode = fs::metadata(cs.blob_path(&d)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444, "committed blobs are read-only");
        assert!(cs.ingests().unwrap().is_empty());
        assert_eq!(cs.list().unwrap(), vec![d]);
    }

    #[test]
    fn sha512_blobs() {
        let (_t, cs) = store();
        let mut h = Algorithm::Sha512.hasher();
        h.update(b"data");
        let want = h.finish();
        let d = cs.write_blob(b"data", Some(&want)).unwrap();
        assert_eq!(d, want);
        assert!(cs.blob_path(&d).to_string_lossy().contains("blobs/sha512/"));
        cs.verify(&d).unwrap();
    }

    #[test]
    fn wrong_digest_is_refused_and_nothing_committed() {
        let (_t, cs) = store();
        let claimed = Digest::sha256_of(b"the real content");
        let mut w = cs.writer("bad", Algorithm::Sha256).unwrap();
        w.write_all(b"the fake content").unwrap();
        let err = w.commit(Some(16), Some(&claimed)).unwrap_err();
        assert!(matches!(err, Error::ContentMismatch { .. }), "{err}");
        assert!(err.to_string().contains("nothing was committed"));
        assert!(!cs.exists(&claimed));
        assert!(cs.list().unwrap().is_empty());
        assert!(cs.ingests().unwrap().is_empty(), "bad ingest removed");
    }

    #[test]
    fn caller_verified_writes_check_size_and_the_named_digest() {
        let (_t, cs) = store();
        let want = Digest::sha256_of(b"verified elsewhere");
        let mut w = cs.writer("trusted", Algorithm::Sha256).unwrap();
        w.verified_by_caller(&want).unwrap();
        w.write_all(b"verified elsewhere").unwrap();
        assert_eq!(w.digest(), want);
        assert_eq!(w.commit(Some(18), Some(&want)).unwrap(), want);
        assert_eq!(cs.read(&want).unwrap(), b"verified elsewhere");
        // a size or a digest other than the one declared is still refused
        let other = Digest::sha256_of(b"other");
        let mut w = cs.writer("trusted-2", Algorithm::Sha256).unwrap();
        w.verified_by_caller(&other).unwrap();
        w.write_all(b"other").unwrap();
        assert!(w.commit(Some(6), Some(&other)).is_err(), "wrong size");
        let mut w = cs.writer("trusted-3", Algorithm::Sha256).unwrap();
        w.verified_by_caller(&other).unwrap();
        w.write_all(b"other").unwrap();
        assert!(w.commit(Some(5), Some(&want)).is_err(), "another digest");
        assert!(!cs.exists(&other));
        // only from the start: the bytes already written were not checked by the caller
        let mut w = cs.writer("trusted-4", Algorithm::Sha256).unwrap();
        w.write_all(b"x").unwrap();
        assert!(w.verified_by_caller(&other).is_err());
    }

    #[test]
    fn short_blob_is_refused() {
        let (_t, cs) = store();
        let full = b"0123456789";
        let want = Digest::sha256_of(full);
        let mut w = cs.writer("short", Algorithm::Sha256).unwrap();
        w.write_all(&full[..7]).unwrap();
        let err = w.commit(Some(10), Some(&want)).unwrap_err();
        assert!(
            err.to_string().contains("expected 10 bytes, got 7"),
            "{err}"
        );
        assert!(!cs.exists(&want));
        assert!(cs.list().unwrap().is_empty());
    }

    #[test]
    fn resume_after_drop() {
        let (_t, cs) = store();
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let want = Digest::sha256_of(&content);
        {
            let mut w = cs.writer("layer-x", Algorithm::Sha256).unwrap();
            w.write_all(&content[..40_000]).unwrap();
            // dropped without commit: simulates a broken download
        }
        let st = cs.ingests().unwrap();
        assert_eq!(
            st,
            vec![IngestStatus {
                reference: "layer-x".into(),
                offset: 40_000
            }]
        );
        let mut w = cs.writer("layer-x", Algorithm::Sha256).unwrap();
        assert_eq!(w.offset(), 40_000);
        w.write_all(&content[40_000..]).unwrap();
        let d = w.commit(Some(content.len() as u64), Some(&want)).unwrap();
        assert_eq!(d, want);
        assert_eq!(cs.read(&d).unwrap(), content);
    }

    /// The cause of `resume_after_drop`'s intermittent failure: a process forked by another
    /// thread (another test's `flock`, a container the engine starts) holds a copy of the
    /// lock descriptor until it execs, and a flock lives as long as any copy is open. A
    /// dropped writer unlocks explicitly, so a copy held elsewhere does not keep its
    /// ingest locked. The copy here is a `dup`, which shares the lock as a fork's does.
    #[test]
    fn a_dropped_writer_unlocks_even_while_a_copy_of_its_descriptor_lives() {
        let (_t, cs) = store();
        let mut w = cs.writer("layer-y", Algorithm::Sha256).unwrap();
        w.write_all(b"partial").unwrap();
        let copy = w.lock.try_clone().unwrap();
        drop(w);
        let w = cs
            .writer("layer-y", Algorithm::Sha256)
            .expect("the dropped writer's lock is released");
        assert_eq!(w.offset(), 7);
        drop(copy);
    }

    #[test]
    fn second_writer_on_same_ref_is_locked_out() {
        let (_t, cs) = store();
        let w1 = cs.writer("same", Algorithm::Sha256).unwrap();
        let err = cs.writer("same", Algorithm::Sha256).unwrap_err();
        assert!(matches!(err, Error::IngestLocked(_)), "{err}");
        // A different process is locked out too: flock is per open file description, and
        // a child `flock -n` on the same file must fail while we hold it.
        let lock = cs.ingest_dir("same").join("lock");
        let status = std::process::Command::new("flock")
            .args(["-n", "-E", "42"])
            .arg(&lock)
            .arg("true")
            .status();
        if let Ok(status) = status {
            assert_eq!(
                status.code(),
                Some(42),
                "other process must not get the lock"
            );
        }
        drop(w1);
        let _w2 = cs.writer("same", Algorithm::Sha256).unwrap();
    }

    #[test]
    fn concurrent_writers_same_content() {
        let (_t, cs) = store();
        let content = vec![7u8; 300_000];
        let want = Digest::sha256_of(&content);
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let cs = cs.clone();
                let content = content.clone();
                let want = want.clone();
                std::thread::spawn(move || {
                    let mut w = cs.writer(&format!("w{i}"), Algorithm::Sha256).unwrap();
                    for chunk in content.chunks(10_000) {
                        w.write_all(chunk).unwrap();
                    }
                    w.commit(Some(content.len() as u64), Some(&want)).unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), want);
        }
        cs.verify(&want).unwrap();
        assert!(cs.ingests().unwrap().is_empty());
    }

    #[test]
    fn corrupted_blob_detected() {
        let (_t, cs) = store();
        let d = cs.write_blob(b"pristine", None).unwrap();
        let p = cs.blob_path(&d);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"tampered").unwrap();
        assert!(matches!(cs.verify(&d), Err(Error::BlobCorrupt { .. })));
        assert!(matches!(cs.read(&d), Err(Error::BlobCorrupt { .. })));
    }

    #[test]
    fn bad_ingest_refs() {
        let (_t, cs) = store();
        assert!(cs.writer("", Algorithm::Sha256).is_err());
        assert!(cs.writer(&"x".repeat(256), Algorithm::Sha256).is_err());
        // path-like refs are fine: the directory name is a hash of the ref
        let w = cs.writer("../../etc/passwd", Algorithm::Sha256).unwrap();
        assert!(w.data_path().starts_with(cs.root().join("ingest")));
    }
}
