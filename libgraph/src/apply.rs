//! Applying a layer tar (plain, gzip or zstd) to a directory in one streaming pass.
//!
//! The compressed digest and the diff ID (sha256 of the uncompressed tar) are computed while
//! the stream is read. Every path is resolved inside the layer root with `openat2(2)` and
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, and the last component is never followed, so a
//! hostile tar (`..`, absolute paths, symlinks leading out, hardlinks to outside, over-long
//! names) gets [`Error::UnsafeTarEntry`] and nothing outside the root is touched.
//!
//! Whiteouts: `.wh.<name>` deletes `<name>` ([`WhiteoutMode::Delete`], for vfs) or becomes an
//! overlayfs whiteout, a 0/0 character device ([`WhiteoutMode::Overlay`]); `.wh..wh..opq`
//! empties the directory of what lower layers put there (Delete) or sets
//! `trusted.overlay.opaque=y` on it (Overlay).

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, mpsc};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4095;

/// How whiteout entries are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Delete the whited-out files (the layer is applied on top of its parent's full copy: vfs).
    Delete,
    /// Write overlayfs whiteouts (the layer is its own directory: overlay).
    Overlay,
}

/// The compression of a layer stream, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Detects the compression from the stream's first bytes.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Options for [`apply_layer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// Whiteout handling.
    pub whiteouts: WhiteoutMode,
    /// Keep the owners recorded in the tar (needs CAP_CHOWN).
    pub same_owner: bool,
    /// The blob digest of the stream when the caller verifies it itself (a download whose
    /// bytes the registry client hashes): the compressed stream is then not hashed a second
    /// time and [`ApplyReport::digest`] is this digest. The caller must discard the result
    /// if its own check fails.
    pub verified_blob: Option<Digest>,
}

impl ApplyOptions {
    /// The defaults (as [`Default`]), to change with the setters below.
    pub fn new() -> ApplyOptions {
        ApplyOptions::default()
    }

    /// Sets [`ApplyOptions::whiteouts`].
    pub fn whiteouts(mut self, whiteouts: WhiteoutMode) -> ApplyOptions {
        self.whiteouts = whiteouts;
        self
    }

    /// Sets [`ApplyOptions::same_owner`].
    pub fn same_owner(mut self, same_owner: bool) -> ApplyOptions {
        self.same_owner = same_owner;
        self
    }

    /// Sets [`ApplyOptions::verified_blob`].
    pub fn verified_blob(mut self, verified_blob: Option<Digest>) -> ApplyOptions {
        self.verified_blob = verified_blob;
        self
    }
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            same_owner: rustix::process::geteuid().is_root(),
            verified_blob: None,
        }
    }
}

/// What [`apply_layer`] found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Detected compression.
    pub compression: Compression,
    /// Digest of the bytes as read (the blob digest).
    pub digest: Digest,
    /// Number of bytes read.
    pub compressed_size: u64,
    /// sha256 of the uncompressed tar (the OCI diff ID).
    pub diff_id: Digest,
    /// Uncompressed tar size.
    pub tar_size: u64,
    /// Sum of regular file sizes written.
    pub content_size: u64,
    /// Number of tar entries processed.
    pub entries: u64,
    /// Extended attributes the filesystem refused (ENOTSUP/EPERM) and that were skipped.
    pub xattrs_skipped: u64,
}

/// Applies a layer stream to `root` (which must exist) and reports its digests.
///
/// On error the root may hold part of the layer (callers mark such layers incomplete and
/// remove them), but nothing outside `root` has been created, changed or removed.
pub fn apply_layer(
    reader: impl Read + Send,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    apply_layer_with(reader, root, opts, Algorithm::Sha256)
}

/// Like [`apply_layer`], hashing the compressed stream with `algorithm`.
pub fn apply_layer_with(
    reader: impl Read + Send,
    root: &Path,
    opts: &ApplyOptions,
    algorithm: Algorithm,
) -> Result<ApplyReport> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open layer root", root)?;
    // Three stages on three threads:
    //   decode: read, gunzip/unzstd            -> tar chunks (to hash and apply)
    //   hash:   sha256 of the blob and of the tar (the diff ID)
    //   apply:  parse the tar and write files (this thread)
    // Tar chunks are shared (Arc) between hash and apply; whichever finishes a chunk last
    // sends its buffer back to the decoder instead of freeing it.
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Chunk>>(PIPELINE_DEPTH);
        let (hash_tx, hash_rx) = mpsc::sync_channel::<HashMsg>(2 * PIPELINE_DEPTH);
        let (recycle_tx, recycle_rx) = mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH + 4);
        let hash_recycle = recycle_tx.clone();
        let hasher = scope.spawn(move || hash_stage(hash_rx, algorithm, hash_recycle));
        let hash_blob = opts.verified_blob.is_none();
        let producer =
            scope.spawn(move || decode_stage(reader, tx, hash_tx, recycle_rx, hash_blob));
        let mut input = ChannelReader {
            rx,
            recycle: recycle_tx,
            buf: Chunk::default(),
            pos: 0,
        };
        let mut applier = Applier {
            root,
            root_fd: root_fd.as_fd(),
            opts,
            created: HashSet::new(),
            dirs: Vec::new(),
            parent_cache: None,
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            umask: read_umask(),
            copy_buf: Vec::new(),
            content_size: 0,
            sparse_size: 0,
            entries: 0,
            xattrs_skipped: std::cell::Cell::new(0),
        };
        let applied = (|| {
            {
                let headers = Cell::new(HeaderState::Start);
                let mut guarded = HeaderGuard::new(&mut input, &headers);
                let mut archive = tar::Archive::new(&mut guarded);
                let mut entries = archive
                    .entries()
                    .map_err(|e| Error::InvalidLayer(format!("reading tar: {e}")))?;
                loop {
                    // what the tar crate reads from here to the entry is headers: capped
                    headers.set(HeaderState::Start);
                    let Some(entry) = entries.next() else { break };
                    let mut entry =
                        entry.map_err(|e| Error::InvalidLayer(format!("reading tar: {e}")))?;
                    applier.entry(&mut entry)?;
                    // the rest of the entry's data (of entries that have none to write), so
                    // that the next header starts at the next block boundary
                    io::copy(&mut entry, &mut io::sink())
                        .map_err(|e| Error::InvalidLayer(format!("reading tar: {e}")))?;
                }
            }
            applier.finish_dirs()?;
            // Read the rest (end blocks, padding): the diff ID covers the whole stream.
            io::copy(&mut input, &mut io::sink())
                .map_err(|e| Error::InvalidLayer(format!("reading tar trailer: {e}")))?;
            Ok::<_, Error>(())
        })();
        // on an early error this stops the producer (its next send fails)
        drop(input);
        let decoded = producer
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidLayer("decompression thread panicked".into())));
        // the producer has dropped its sender: the hasher has seen everything
        let hashed = hasher
            .join()
            .map_err(|_| Error::InvalidLayer("hashing thread panicked".into()));
        let decoded = match (decoded, hashed) {
            (Ok(d), Ok(h)) => Ok((d, h)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        match (applied, decoded) {
            (Ok(()), Ok((d, h))) => Ok(ApplyReport {
                compression: d.compression,
                digest: opts.verified_blob.clone().unwrap_or(h.blob),
                compressed_size: d.compressed_size,
                diff_id: h.tar,
                tar_size: d.tar_size,
                content_size: applier.content_size,
                entries: applier.entries,
                xattrs_skipped: applier.xattrs_skipped.get(),
            }),
            // the decoder stopped because the apply stage did: the apply error stands
            (Err(e), Err(Error::InvalidLayer(m))) if m == APPLY_STOPPED => Err(e),
            // a broken stream explains a tar error better than the tar error does
            (Err(Error::InvalidLayer(_)), Err(e)) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(e),
        }
    })
}

/// Tar chunks the decode stage may be ahead of the apply stage (the hash stage gets twice
/// as many). Every chunk in flight is memory the pipeline touches: with four layers
/// unpacking at once, 8 chunks of 1 MiB each made 12k of a pull's 15k page faults (40 MB
/// of peak RSS); 4 of [`CHUNK`] keep the decoder ahead just as well.
const PIPELINE_DEPTH: usize = 4;
/// The granularity at which sparse file content is checked for holes (a filesystem block).
const HOLE_BLOCK: usize = 4096;

/// Writes `buf` at the file's position, seeking over the [`HOLE_BLOCK`]s that are all zero
/// (so that they stay holes) and writing each run of the others at once.
fn write_sparse(file: &mut File, buf: &[u8]) -> io::Result<()> {
    const ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];
    let mut blocks = buf.chunks(HOLE_BLOCK).peekable();
    while let Some(first) = blocks.next() {
        let zero = first == &ZEROS[..first.len()];
        let mut len = first.len();
        while let Some(b) = blocks.next_if(|b| (*b == &ZEROS[..b.len()]) == zero) {
            len += b.len();
        }
        let start = first.as_ptr() as usize - buf.as_ptr() as usize;
        if zero {
            file.seek(io::SeekFrom::Current(len as i64))?;
        } else {
            file.write_all(&buf[start..start + len])?;
        }
    }
    Ok(())
}

/// The most the GNU sparse files of one layer may expand to (their apparent sizes added
/// up). Their holes stay holes on disk, so this bounds the time spent reading the zeros
/// the tar crate produces for them, not disk use: content that is not a hole is in the
/// layer stream, so a layer takes at most about its own uncompressed size on disk.
pub const MAX_SPARSE_SIZE: u64 = 64 << 30;
/// The decode stage's error when the apply stage stopped reading (on an error of its own).
const APPLY_STOPPED: &str = "layer apply stopped";
/// The decode stage's unit (tar bytes per message) and the apply stage's copy buffer.
const CHUNK: usize = 1 << 18;

/// A tar chunk, shared by the hash and apply stages.
type Chunk = Arc<Vec<u8>>;

/// What the decode stage sends to the hash stage, in stream order.
enum HashMsg {
    /// Bytes of the blob as read (compressed).
    Blob(Vec<u8>),
    /// Bytes of the uncompressed tar.
    Tar(Chunk),
}

struct Decoded {
    compression: Compression,
    compressed_size: u64,
    tar_size: u64,
}

struct Hashed {
    blob: Digest,
    tar: Digest,
}

/// A reader that counts what passes through it and sends a copy to the hash stage
/// (unless the caller verifies the blob digest itself).
struct TeeReader<R> {
    inner: R,
    hash: Option<mpsc::SyncSender<HashMsg>>,
    count: u64,
}

impl<R: Read> Read for TeeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if n > 0
            && let Some(hash) = &self.hash
        {
            hash.send(HashMsg::Blob(buf[..n].to_vec()))
                .map_err(|_| io::Error::other("hashing stopped"))?;
        }
        Ok(n)
    }
}

/// Hash stage: the blob digest (with `algorithm`) and the diff ID (sha256 of the tar).
fn hash_stage(
    rx: mpsc::Receiver<HashMsg>,
    algorithm: Algorithm,
    recycle: mpsc::SyncSender<Vec<u8>>,
) -> Hashed {
    let mut blob = algorithm.hasher();
    let mut tar = Algorithm::Sha256.hasher();
    for msg in rx {
        match msg {
            HashMsg::Blob(b) => blob.update(&b),
            HashMsg::Tar(c) => {
                tar.update(&c);
                give_back(c, &recycle);
            }
        }
    }
    Hashed {
        blob: blob.finish(),
        tar: tar.finish(),
    }
}

/// Drops a shared chunk; the last holder sends the buffer back for reuse.
fn give_back(chunk: Chunk, recycle: &mpsc::SyncSender<Vec<u8>>) {
    if let Some(v) = Arc::into_inner(chunk)
        && v.capacity() >= CHUNK
    {
        let _ = recycle.try_send(v);
    }
}

/// Decode stage: reads the stream (a copy of each read goes to the hash stage), decompresses
/// it and sends the tar on in [`CHUNK`]s, to the hash stage and to the apply stage.
fn decode_stage(
    reader: impl Read,
    tx: mpsc::SyncSender<io::Result<Chunk>>,
    hash: mpsc::SyncSender<HashMsg>,
    recycled: mpsc::Receiver<Vec<u8>>,
    hash_blob: bool,
) -> Result<Decoded> {
    let mut outer = TeeReader {
        inner: reader,
        hash: hash_blob.then(|| hash.clone()),
        count: 0,
    };
    let fail = |tx: &mpsc::SyncSender<io::Result<Chunk>>, e: io::Error| {
        let msg = e.to_string();
        let _ = tx.send(Err(e));
        Error::InvalidLayer(msg)
    };
    let (compression, tar_size) = {
        let mut buffered = BufReader::with_capacity(1 << 17, &mut outer);
        let magic = match buffered.fill_buf() {
            Ok(m) => m,
            Err(e) => return Err(fail(&tx, e)),
        };
        let compression = Compression::detect(magic);
        let mut decoded: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(buffered),
            Compression::Gzip => crate::gzip::decoder(buffered),
            Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(buffered) {
                Ok(d) => Box::new(d),
                Err(e) => return Err(fail(&tx, e)),
            },
        };
        let mut total = 0u64;
        loop {
            let mut chunk = recycled.try_recv().unwrap_or_default();
            chunk.resize(CHUNK, 0);
            let mut filled = 0;
            while filled < CHUNK {
                match decoded.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let what = match compression {
                            Compression::None => "reading layer",
                            Compression::Gzip => "gzip",
                            Compression::Zstd => "zstd",
                        };
                        return Err(fail(&tx, io::Error::new(e.kind(), format!("{what}: {e}"))));
                    }
                }
            }
            if filled == 0 {
                break;
            }
            chunk.truncate(filled);
            total += filled as u64;
            let chunk = Arc::new(chunk);
            if hash.send(HashMsg::Tar(chunk.clone())).is_err() || tx.send(Ok(chunk)).is_err() {
                // the writer stopped on an error of its own, which it reports
                return Err(Error::InvalidLayer(APPLY_STOPPED.into()));
            }
        }
        (compression, total)
    };
    drop(tx);
    // bytes after the compressed stream still belong to the blob
    io::copy(&mut outer, &mut io::sink())
        .map_err(|e| Error::InvalidLayer(format!("reading stream trailer: {e}")))?;
    Ok(Decoded {
        compression,
        compressed_size: outer.count,
        tar_size,
    })
}

/// Reads the chunks the first stage sends.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Chunk>>,
    recycle: mpsc::SyncSender<Vec<u8>>,
    buf: Chunk,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let old = std::mem::replace(&mut self.buf, chunk);
                    give_back(old, &self.recycle);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The most bytes one extended tar header (GNU long name, GNU long link, PAX local or
/// global records) may have: the tar crate reads each whole into memory. Docker's limit.
pub const MAX_EXTENDED_HEADER: u64 = 1 << 20;

/// Where the [`HeaderGuard`] is in the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HeaderState {
    /// The tar crate is about to read headers: they start at the next block boundary.
    Start,
    /// Reading headers; the next one starts at this offset.
    Header(u64),
    /// Reading GNU sparse extension blocks; the next one starts at this offset.
    SparseExt(u64),
    /// Reading an entry's data (not looked at).
    Data,
}

/// Sits between the tar crate and the stream and reads the headers the tar crate reads
/// before each entry, to refuse an extended header over [`MAX_EXTENDED_HEADER`] (or more
/// sparse map blocks than that) before the tar crate allocates it. The apply loop sets
/// [`HeaderState::Start`] before asking for each entry, after reading all of the
/// previous entry's data.
struct HeaderGuard<'s, R> {
    inner: R,
    state: &'s Cell<HeaderState>,
    /// Offset in the stream.
    pos: u64,
    block: [u8; 512],
    fill: usize,
    sparse_blocks: u64,
}

impl<'s, R: Read> HeaderGuard<'s, R> {
    fn new(inner: R, state: &'s Cell<HeaderState>) -> Self {
        HeaderGuard {
            inner,
            state,
            pos: 0,
            block: [0; 512],
            fill: 0,
            sparse_blocks: 0,
        }
    }

    /// Looks at the bytes `buf` just read at offset `self.pos`.
    fn inspect(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut i = 0usize;
        while i < buf.len() {
            let at = self.pos + i as u64;
            let next = match self.state.get() {
                HeaderState::Data => return Ok(()),
                HeaderState::Start => {
                    let next = at.div_ceil(512) * 512;
                    self.state.set(HeaderState::Header(next));
                    self.fill = 0;
                    next
                }
                HeaderState::Header(n) | HeaderState::SparseExt(n) => n,
            };
            if self.fill == 0 && at < next {
                // padding or extended header data
                i += (next - at).min((buf.len() - i) as u64) as usize;
                continue;
            }
            let take = (512 - self.fill).min(buf.len() - i);
            self.block[self.fill..self.fill + take].copy_from_slice(&buf[i..i + take]);
            self.fill += take;
            i += take;
            if self.fill == 512 {
                self.fill = 0;
                self.block_done(next)?;
            }
        }
        Ok(())
    }

    /// A whole header block at offset `at` was read.
    fn block_done(&mut self, at: u64) -> io::Result<()> {
        let b = &self.block;
        let too_big = |what: &str, size: u64| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{what} of {size} bytes at offset {at} is over the {} MiB limit for extended tar headers",
                    MAX_EXTENDED_HEADER >> 20
                ),
            )
        };
        if let HeaderState::SparseExt(_) = self.state.get() {
            self.sparse_blocks += 1;
            if self.sparse_blocks * 512 > MAX_EXTENDED_HEADER {
                return Err(too_big("a GNU sparse map", self.sparse_blocks * 512));
            }
            self.state.set(if b[504] == 1 {
                HeaderState::SparseExt(at + 512)
            } else {
                HeaderState::Data
            });
            return Ok(());
        }
        if b.iter().all(|&x| x == 0) {
            // end of archive
            self.state.set(HeaderState::Data);
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(b);
        let what = match b[156] {
            b'L' => Some("a GNU long name"),
            b'K' => Some("a GNU long link name"),
            b'x' => Some("a PAX header"),
            b'g' => Some("a PAX global header"),
            _ => None,
        };
        if let Some(what) = what {
            // an unreadable size is the tar crate's error to report
            let size = header.entry_size().unwrap_or(0);
            if size > MAX_EXTENDED_HEADER {
                return Err(too_big(what, size));
            }
            let next = (at + 512).saturating_add(size.div_ceil(512).saturating_mul(512));
            self.state.set(HeaderState::Header(next));
        } else if b[156] == b'S' && header.as_gnu().is_some() && b[482] == 1 {
            self.sparse_blocks = 0;
            self.state.set(HeaderState::SparseExt(at + 512));
        } else {
            self.state.set(HeaderState::Data);
        }
        Ok(())
    }
}

impl<R: Read> Read for HeaderGuard<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inspect(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

struct Applier<'a> {
    root: &'a Path,
    root_fd: BorrowedFd<'a>,
    opts: &'a ApplyOptions,
    /// Paths this layer created (an opaque marker must keep them).
    created: HashSet<Vec<u8>>,
    /// Directories whose times are set at the end, as (path, mtime).
    dirs: Vec<(Vec<u8>, i64)>,
    /// The last parent directory: its path, an `O_PATH` fd and its group.
    parent_cache: Option<(Vec<u8>, Rc<OwnedFd>, u32)>,
    /// Our effective uid and gid: the owner of what we create, so `chown` to them is skipped.
    euid: u32,
    egid: u32,
    /// The process umask when it could be read: files whose mode it does not change are
    /// created with their final mode and need no `chmod`.
    umask: Option<u32>,
    /// Reused buffer for file contents (small files are written with one `write`).
    copy_buf: Vec<u8>,
    content_size: u64,
    /// Apparent size of the GNU sparse files so far (bounded by [`MAX_SPARSE_SIZE`]).
    sparse_size: u64,
    entries: u64,
    xattrs_skipped: std::cell::Cell<u64>,
}

/// A tar path split into a safe relative parent and a final name.
struct SafePath {
    full: Vec<u8>,
    parent: Vec<u8>,
    name: Vec<u8>,
}

fn clean_path(raw: &[u8], what: &str) -> Result<Option<SafePath>> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let unsafe_entry = |reason: &str| Error::UnsafeTarEntry {
        entry: shown.clone(),
        reason: format!("{what} {reason}"),
    };
    if raw.starts_with(b"/") {
        return Err(unsafe_entry("is an absolute path"));
    }
    if raw.contains(&0) {
        return Err(unsafe_entry("contains a NUL byte"));
    }
    let mut comps: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry("contains a '..' component")),
            c if c.len() > NAME_MAX => {
                return Err(unsafe_entry(&format!(
                    "has a {}-byte component, more than the {NAME_MAX}-byte limit",
                    c.len()
                )));
            }
            c => comps.push(c),
        }
    }
    let Some((name, parents)) = comps.split_last() else {
        return Ok(None); // the root itself
    };
    let full = comps.join(&b'/');
    if full.len() > PATH_MAX {
        return Err(unsafe_entry(&format!(
            "is {} bytes long, more than the {PATH_MAX}-byte limit",
            full.len()
        )));
    }
    Ok(Some(SafePath {
        parent: parents.join(&b'/'),
        name: name.to_vec(),
        full,
    }))
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn errno_io(e: Errno) -> io::Error {
    e.into()
}

impl<'a> Applier<'a> {
    fn io_err(&self, op: &'static str, rel: &[u8], e: Errno) -> Error {
        Error::io(op, self.root.join(os(rel)), errno_io(e))
    }

    fn unsafe_err(&self, entry: &[u8], reason: &str) -> Error {
        Error::UnsafeTarEntry {
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.to_string(),
        }
    }

    /// Opens `rel` (a cleaned relative path) beneath the root, never leaving it.
    fn open_beneath(&self, rel: &[u8], flags: OFlags, entry: &[u8]) -> Result<OwnedFd> {
        let path = if rel.is_empty() { &b"."[..] } else { rel };
        rustix::fs::openat2(
            self.root_fd,
            os(path),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| match e {
            Errno::XDEV | Errno::LOOP => self.unsafe_err(
                entry,
                &format!(
                    "path {:?} goes through a symlink that leads outside the layer",
                    String::from_utf8_lossy(rel)
                ),
            ),
            Errno::NOTDIR => self.unsafe_err(
                entry,
                &format!("{:?} is not a directory", String::from_utf8_lossy(rel)),
            ),
            e => self.io_err("open", rel, e),
        })
    }

    /// Returns an fd for the parent directory, creating missing directories (mode 0755).
    fn parent_dir(&mut self, parent: &[u8], entry: &[u8]) -> Result<Rc<OwnedFd>> {
        let hit = matches!(&self.parent_cache, Some((p, _, _)) if p == parent);
        if !hit {
            let flags = OFlags::PATH | OFlags::DIRECTORY;
            let fd = match self.open_beneath(parent, flags, entry) {
                Ok(fd) => fd,
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    // Create the missing components one at a time, each resolved beneath root.
                    let mut cur: Vec<u8> = Vec::new();
                    for comp in parent.split(|&b| b == b'/') {
                        let dir_fd = self.open_beneath(&cur, flags, entry)?;
                        match rustix::fs::mkdirat(&dir_fd, os(comp), Mode::from_raw_mode(0o755)) {
                            Ok(()) | Err(Errno::EXIST) => {}
                            Err(e) => return Err(self.io_err("mkdir", comp, e)),
                        }
                        if !cur.is_empty() {
                            cur.push(b'/');
                        }
                        cur.extend_from_slice(comp);
                    }
                    self.open_beneath(parent, flags, entry)?
                }
                Err(e) => return Err(e),
            };
            let gid = rustix::fs::fstat(&fd)
                .map_err(|e| self.io_err("stat", parent, e))?
                .st_gid;
            self.parent_cache = Some((parent.to_vec(), Rc::new(fd), gid));
        }
        match &self.parent_cache {
            Some((_, fd, _)) => Ok(fd.clone()),
            None => unreachable!("cache was just filled"),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        self.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let Some(path) = clean_path(&raw, "path")? else {
            return Ok(()); // "./": the root keeps its own metadata
        };
        let name_str = String::from_utf8_lossy(&path.name).into_owned();
        if name_str == OPAQUE_MARKER {
            return self.opaque(&path, &raw);
        }
        if let Some(target) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if target.is_empty() || target == "." || target == ".." {
                return Err(self.unsafe_err(&raw, "whiteout names no file"));
            }
            return self.whiteout(&path, target.as_bytes(), &raw);
        }

        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| self.bad_header(&raw, e))? & 0o7777;
        let uid =
            lenient(header.uid(), &header.as_old().uid).map_err(|e| self.bad_header(&raw, e))?;
        let gid =
            lenient(header.gid(), &header.as_old().gid).map_err(|e| self.bad_header(&raw, e))?;
        let mtime = lenient(header.mtime(), &header.as_old().mtime)
            .map_err(|e| self.bad_header(&raw, e))? as i64;
        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| Error::InvalidLayer(format!("pax header of {raw:?}: {e}")))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| Error::InvalidLayer(format!("pax header: {e}")))?;
                if let Ok(key) = ext.key()
                    && let Some(name) = key.strip_prefix("SCHILY.xattr.")
                {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        let meta = Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        };

        match kind {
            tar::EntryType::Directory => self.directory(&path, &meta, &raw),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.regular(&path, &meta, entry, &raw, false)
            }
            tar::EntryType::GNUSparse => {
                // the tar crate has read the sparse map: size() is the file's apparent size
                self.sparse_size = self.sparse_size.saturating_add(entry.size());
                if self.sparse_size > MAX_SPARSE_SIZE {
                    return Err(Error::InvalidLayer(format!(
                        "sparse file {:?} ({} bytes) makes the sparse files of the layer expand to {} bytes, over the {} GiB limit",
                        String::from_utf8_lossy(&raw),
                        entry.size(),
                        self.sparse_size,
                        MAX_SPARSE_SIZE >> 30
                    )));
                }
                self.regular(&path, &meta, entry, &raw, true)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_err(&raw, "symlink without a target"))?
                    .into_owned();
                self.symlink(&path, &target, &meta, &raw)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_err(&raw, "hardlink without a target"))?
                    .into_owned();
                self.hardlink(&path, &target, &raw)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                self.node(&path, ft, rustix::fs::makedev(major, minor), &meta, &raw)
            }
            // pax/GNU headers are consumed by the tar crate; other types carry nothing to write
            _ => Ok(()),
        }
    }

    fn bad_header(&self, raw: &[u8], e: io::Error) -> Error {
        Error::InvalidLayer(format!(
            "bad header for {:?}: {e}",
            String::from_utf8_lossy(raw)
        ))
    }

    /// Removes whatever is at `parent/name` (recursively), if anything.
    fn remove_existing(&mut self, parent: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
        remove_at(parent, name).map_err(|e| self.io_err("remove", name, e))?;
        self.parent_cache = None;
        Ok(())
    }

    fn directory(&mut self, path: &SafePath, meta: &Meta, raw: &[u8]) -> Result<()> {
        let name = path.name.clone();
        let parent = self.parent_dir(&path.parent, raw)?;
        match rustix::fs::mkdirat(&parent, os(&name), Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(&parent, os(&name), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io_err("stat", &path.full, e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    self.remove_existing(parent.as_fd(), &name)?;
                    rustix::fs::mkdirat(&parent, os(&name), Mode::from_raw_mode(0o700))
                        .map_err(|e| self.io_err("mkdir", &path.full, e))?;
                }
            }
            Err(e) => return Err(self.io_err("mkdir", &path.full, e)),
        }
        let fd = rustix::fs::openat(
            &parent,
            os(&name),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io_err("open directory", &path.full, e))?;
        self.set_fd_meta(&fd, meta, &path.full, false, Done::default())?;
        self.created.insert(path.full.clone());
        self.dirs.push((path.full.clone(), meta.mtime));
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        path: &SafePath,
        meta: &Meta,
        data: &mut R,
        raw: &[u8],
        sparse: bool,
    ) -> Result<()> {
        let parent = self.parent_dir(&path.parent, raw)?;
        let parent_gid = self.parent_cache.as_ref().map_or(u32::MAX, |c| c.2);
        // Create with the final mode when the umask leaves it alone and it has no set-id or
        // sticky bits (those are set by chmod after chown, which would clear them).
        let final_mode = meta.mode & 0o7000 == 0 && self.umask.is_some_and(|u| meta.mode & u == 0);
        let create_mode = Mode::from_raw_mode(if final_mode { meta.mode } else { 0o600 });
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&parent, os(&path.name), flags, create_mode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                self.remove_existing(parent.as_fd(), &path.name)?;
                rustix::fs::openat(&parent, os(&path.name), flags, create_mode)
                    .map_err(|e| self.io_err("create", &path.full, e))?
            }
            Err(e) => return Err(self.io_err("create", &path.full, e)),
        };
        let mut file = File::from(fd);
        self.content_size += self.copy_content(data, &mut file, path, raw, sparse)?;
        let done = Done {
            // a new file belongs to our euid and to our egid or its directory's group
            owner: meta.uid == u64::from(self.euid)
                && meta.gid == u64::from(self.egid)
                && parent_gid == self.egid,
            mode: final_mode,
        };
        self.set_fd_meta(&file, meta, &path.full, true, done)?;
        self.created.insert(path.full.clone());
        Ok(())
    }

    /// Copies a file's content through one reused buffer: files up to [`CHUNK`] bytes get a
    /// single `write`. For a `sparse` file, blocks of zeros (its holes, which the tar crate
    /// fills in) are skipped with a seek and stay holes.
    fn copy_content<R: Read>(
        &mut self,
        data: &mut R,
        file: &mut File,
        path: &SafePath,
        raw: &[u8],
        sparse: bool,
    ) -> Result<u64> {
        if self.copy_buf.len() < CHUNK {
            self.copy_buf.resize(CHUNK, 0);
        }
        let mut total = 0u64;
        loop {
            let mut filled = 0;
            while filled < CHUNK {
                match data.read(&mut self.copy_buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(Error::InvalidLayer(format!(
                            "reading content of {:?}: {e}",
                            String::from_utf8_lossy(raw)
                        )));
                    }
                }
            }
            let werr = |e| Error::io("write", self.root.join(os(&path.full)), e);
            if filled == 0 {
                break;
            }
            if sparse {
                write_sparse(file, &self.copy_buf[..filled]).map_err(werr)?;
            } else {
                file.write_all(&self.copy_buf[..filled]).map_err(werr)?;
            }
            total += filled as u64;
            if filled < CHUNK {
                break;
            }
        }
        if sparse {
            // a trailing hole: the size is set without writing it
            file.set_len(total)
                .map_err(|e| Error::io("truncate", self.root.join(os(&path.full)), e))?;
        }
        Ok(total)
    }

    fn symlink(&mut self, path: &SafePath, target: &[u8], meta: &Meta, raw: &[u8]) -> Result<()> {
        if target.contains(&0) || target.len() > PATH_MAX {
            return Err(self.unsafe_err(raw, "symlink target is invalid or too long"));
        }
        let parent = self.parent_dir(&path.parent, raw)?;
        // A symlink may point anywhere: it is only ever followed beneath the root.
        match rustix::fs::symlinkat(os(target), &parent, os(&path.name)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.remove_existing(parent.as_fd(), &path.name)?;
                rustix::fs::symlinkat(os(target), &parent, os(&path.name))
                    .map_err(|e| self.io_err("symlink", &path.full, e))?;
            }
            Err(e) => return Err(self.io_err("symlink", &path.full, e)),
        }
        self.parent_cache = None;
        self.set_at_meta(parent.as_fd(), path, meta, false)?;
        self.created.insert(path.full.clone());
        Ok(())
    }

    fn hardlink(&mut self, path: &SafePath, target: &[u8], raw: &[u8]) -> Result<()> {
        let Some(tpath) = clean_path(target, "hardlink target")? else {
            return Err(self.unsafe_err(raw, "hardlink to the layer root"));
        };
        let tparent = self.open_beneath(&tpath.parent, OFlags::PATH | OFlags::DIRECTORY, raw)?;
        let parent = self.parent_dir(&path.parent, raw)?;
        let link = |s: &Self| {
            rustix::fs::linkat(
                &tparent,
                os(&tpath.name),
                &parent,
                os(&path.name),
                AtFlags::empty(),
            )
            .map_err(|e| match e {
                Errno::NOENT => s.unsafe_err(
                    raw,
                    &format!(
                        "hardlink target {:?} is not in this layer",
                        String::from_utf8_lossy(target)
                    ),
                ),
                e => s.io_err("link", &path.full, e),
            })
        };
        if tpath.full == path.full {
            return Ok(()); // a link to itself changes nothing
        }
        match link(self) {
            Err(Error::Io { ref source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {
                self.remove_existing(parent.as_fd(), &path.name)?;
                link(self)?;
            }
            r => r?,
        }
        self.created.insert(path.full.clone());
        Ok(())
    }

    fn node(
        &mut self,
        path: &SafePath,
        ft: FileType,
        dev: rustix::fs::Dev,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<()> {
        let parent = self.parent_dir(&path.parent, raw)?;
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        match rustix::fs::mknodat(&parent, os(&path.name), ft, mode, dev) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.remove_existing(parent.as_fd(), &path.name)?;
                rustix::fs::mknodat(&parent, os(&path.name), ft, mode, dev)
                    .map_err(|e| self.io_err("mknod", &path.full, e))?;
            }
            Err(e) => return Err(self.io_err("mknod", &path.full, e)),
        }
        self.set_at_meta(parent.as_fd(), path, meta, true)?;
        self.created.insert(path.full.clone());
        Ok(())
    }

    fn whiteout(&mut self, path: &SafePath, target: &[u8], raw: &[u8]) -> Result<()> {
        let parent = self.parent_dir(&path.parent, raw)?;
        let mut full = path.parent.clone();
        if !full.is_empty() {
            full.push(b'/');
        }
        full.extend_from_slice(target);
        match self.opts.whiteouts {
            WhiteoutMode::Delete => self.remove_existing(parent.as_fd(), target),
            WhiteoutMode::Overlay => {
                let dev = rustix::fs::makedev(0, 0);
                let mk = || {
                    rustix::fs::mknodat(
                        &parent,
                        os(target),
                        FileType::CharacterDevice,
                        Mode::empty(),
                        dev,
                    )
                };
                match mk() {
                    Ok(()) => Ok(()),
                    Err(Errno::EXIST) => {
                        self.remove_existing(parent.as_fd(), target)?;
                        mk().map_err(|e| self.io_err("mknod whiteout", &full, e))
                    }
                    Err(e) => Err(self.io_err("mknod whiteout", &full, e)),
                }
            }
        }
    }

    fn opaque(&mut self, path: &SafePath, raw: &[u8]) -> Result<()> {
        // make sure the directory exists (it may have no entry of its own in this layer)
        self.parent_dir(&path.parent, raw)?;
        let dir = self.open_beneath(
            &path.parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            raw,
        )?;
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => rustix::fs::fsetxattr(
                &dir,
                "trusted.overlay.opaque",
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| self.io_err("set opaque xattr", &path.parent, e)),
            WhiteoutMode::Delete => {
                let mut names = Vec::new();
                let mut d = rustix::fs::Dir::read_from(&dir)
                    .map_err(|e| self.io_err("read directory", &path.parent, e))?;
                for ent in d.by_ref() {
                    let ent = ent.map_err(|e| self.io_err("read directory", &path.parent, e))?;
                    let n = ent.file_name().to_bytes();
                    if n == b"." || n == b".." {
                        continue;
                    }
                    let mut full = path.parent.clone();
                    if !full.is_empty() {
                        full.push(b'/');
                    }
                    full.extend_from_slice(n);
                    if !self.created.contains(&full) {
                        names.push(n.to_vec());
                    }
                }
                for n in names {
                    self.remove_existing(dir.as_fd(), &n)?;
                }
                Ok(())
            }
        }
    }

    /// Like Docker, an xattr the filesystem does not support (ENOTSUP) or does not allow here
    /// (EPERM, e.g. `user.*` on a symlink) is skipped and counted, not fatal.
    fn xattr_result(&self, r: rustix::io::Result<()>, rel: &[u8]) -> Result<()> {
        match r {
            Ok(()) => Ok(()),
            Err(Errno::NOTSUP) | Err(Errno::PERM) => {
                self.xattrs_skipped.set(self.xattrs_skipped.get() + 1);
                Ok(())
            }
            Err(e) => Err(self.io_err("setxattr", rel, e)),
        }
    }

    fn set_fd_meta(
        &self,
        fd: impl AsFd,
        meta: &Meta,
        rel: &[u8],
        times: bool,
        done: Done,
    ) -> Result<()> {
        let fd = fd.as_fd();
        if self.opts.same_owner && !done.owner {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(meta.uid as u32)),
                Some(rustix::fs::Gid::from_raw(meta.gid as u32)),
            )
            .map_err(|e| self.io_err("chown", rel, e))?;
        }
        // after chown, which clears set-id bits
        if !done.mode {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
                .map_err(|e| self.io_err("chmod", rel, e))?;
        }
        for (k, v) in &meta.xattrs {
            let r = rustix::fs::fsetxattr(fd, k.as_str(), v, rustix::fs::XattrFlags::empty());
            self.xattr_result(r, rel)?;
        }
        if times {
            rustix::fs::futimens(fd, &timestamps(meta.mtime))
                .map_err(|e| self.io_err("set times", rel, e))?;
        }
        Ok(())
    }

    /// Metadata for entries that cannot be opened (symlinks, device nodes), never following.
    fn set_at_meta(
        &self,
        parent: BorrowedFd<'_>,
        path: &SafePath,
        meta: &Meta,
        chmod: bool,
    ) -> Result<()> {
        let name = os(&path.name);
        if self.opts.same_owner {
            rustix::fs::chownat(
                parent,
                name,
                Some(rustix::fs::Uid::from_raw(meta.uid as u32)),
                Some(rustix::fs::Gid::from_raw(meta.gid as u32)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.io_err("chown", &path.full, e))?;
        }
        if chmod {
            // only for device nodes and fifos we just created: not a symlink
            rustix::fs::chmodat(
                parent,
                name,
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| self.io_err("chmod", &path.full, e))?;
        }
        if !meta.xattrs.is_empty() {
            let proc_path = PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&parent)
            ))
            .join(name);
            for (k, v) in &meta.xattrs {
                let r = rustix::fs::lsetxattr(
                    &proc_path,
                    k.as_str(),
                    v,
                    rustix::fs::XattrFlags::empty(),
                );
                self.xattr_result(r, &path.full)?;
            }
        }
        rustix::fs::utimensat(
            parent,
            name,
            &timestamps(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io_err("set times", &path.full, e))?;
        Ok(())
    }

    /// Sets directory times last (creating children changed them), deepest first.
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, mtime) in dirs.iter().rev() {
            let fd = match self.open_beneath(
                rel,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                rel,
            ) {
                Ok(fd) => fd,
                // removed or replaced later in the same layer
                Err(_) => continue,
            };
            rustix::fs::futimens(&fd, &timestamps(*mtime))
                .map_err(|e| self.io_err("set times", rel, e))?;
        }
        Ok(())
    }
}

/// Metadata a new file already has, so setting it again is skipped.
#[derive(Default, Clone, Copy)]
struct Done {
    /// Owner and group are the ones the tar asks for.
    owner: bool,
    /// The mode is the one the tar asks for.
    mode: bool,
}

/// The umask, from `/proc/self/status` (reading it with `umask(2)` would change it for a
/// moment, for every thread).
fn read_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// An empty numeric header field (all NUL or spaces, as some writers leave uid/gid) reads as 0.
fn lenient(v: io::Result<u64>, field: &[u8]) -> io::Result<u64> {
    match v {
        Err(_) if field.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        v => v,
    }
}

fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

pub(crate) use crate::walk::remove_at;

/// Removes a directory tree without following symlinks (like `rm -rf`, for layer dirs).
pub fn remove_tree(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let Some(name) = path.file_name() else {
        return Err(Error::io(
            "remove",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        ));
    };
    let pfd = match rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::io("open", parent, e.into())),
    };
    remove_at(pfd.as_fd(), name.as_bytes()).ctx("remove", path)
}
