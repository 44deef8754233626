//! Caches for compiled filters.
//!
//! libseccomp needs about 20 ms (release build, 2 cores) to compile Docker's default
//! profile for x86-64 + x86 + x32, more than a whole `crun run`. The filter depends only
//! on the spec's seccomp section, the libseccomp version and this build, so it is
//! cached:
//!
//! - in memory, inside [`super::compile`], for long-lived processes (the engine);
//! - on disk, with [`super::compile_cached`], for the one-shot runtime binary. The
//!   directory must belong to the caller and be closed to group and others (a cached
//!   program is loaded as the container's filter, so whoever can write it could weaken
//!   the filter); otherwise the disk cache is not used. Entries hold the whole key and
//!   are checked on read, written to a temp file and renamed into place, and a corrupt
//!   or mismatched entry is simply compiled again.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::runtime::LinuxSeccomp;
use serde::{Deserialize, Serialize};

use super::{CompiledFilter, INSN_SIZE, MAX_INSNS};

/// Entries kept in memory.
const MEMORY_ENTRIES: usize = 8;

/// Most recently used last.
static MEMORY: Mutex<Vec<(String, CompiledFilter)>> = Mutex::new(Vec::new());

/// The cache key: the spec section plus everything else the program depends on;
/// `None` (do not cache) if either cannot be had.
pub(super) fn key(seccomp: &LinuxSeccomp) -> Option<String> {
    let v = libseccomp::ScmpVersion::current().ok()?;
    let spec = serde_json::to_string(seccomp).ok()?;
    Some(format!(
        "longshore-container {} {} libseccomp {}.{}.{} optimize {}\n{spec}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        v.major,
        v.minor,
        v.micro,
        super::OPTIMIZE,
    ))
}

/// A filter compiled earlier in this process.
pub(super) fn memory_get(key: &str) -> Option<CompiledFilter> {
    let mut memory = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let at = memory.iter().position(|(k, _)| k == key)?;
    let entry = memory.remove(at);
    let filter = entry.1.clone();
    memory.push(entry);
    Some(filter)
}

/// Remembers a compiled filter, dropping the least recently used past the limit.
pub(super) fn memory_put(key: String, filter: &CompiledFilter) {
    let mut memory = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    memory.retain(|(k, _)| *k != key);
    if memory.len() >= MEMORY_ENTRIES {
        memory.remove(0);
    }
    memory.push((key, filter.clone()));
}

/// One on-disk entry.
#[derive(Serialize, Deserialize)]
struct DiskEntry {
    key: String,
    flags: u32,
    unknown_syscalls: Vec<String>,
    /// The program, hex-encoded.
    program: String,
}

/// The entry's file for `key` under `dir`.
fn entry_path(dir: &Path, key: &str) -> PathBuf {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    dir.join(format!("{:016x}.json", h.finish()))
}

/// Whether `dir` exists (creating it 0700 if needed), belongs to us and is closed to
/// group and others.
pub(super) fn usable_dir(dir: &Path) -> bool {
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    meta.is_dir() && meta.uid() == euid && meta.permissions().mode() & 0o077 == 0
}

/// The cached filter for `key`, if `dir` holds a valid entry for exactly that key.
pub(super) fn disk_get(dir: &Path, key: &str) -> Option<CompiledFilter> {
    let text = std::fs::read_to_string(entry_path(dir, key)).ok()?;
    let entry: DiskEntry = serde_json::from_str(&text).ok()?;
    if entry.key != key {
        return None;
    }
    let program = from_hex(&entry.program)?;
    let bytes = program.len();
    if bytes == 0 || bytes % INSN_SIZE != 0 || bytes / INSN_SIZE > MAX_INSNS {
        return None;
    }
    Some(CompiledFilter {
        program,
        flags: entry.flags,
        unknown_syscalls: entry.unknown_syscalls,
    })
}

/// Stores `filter` for `key` under `dir`: temp file, then rename.
pub(super) fn disk_put(dir: &Path, key: &str, filter: &CompiledFilter) -> std::io::Result<()> {
    let entry = DiskEntry {
        key: key.to_string(),
        flags: filter.flags,
        unknown_syscalls: filter.unknown_syscalls.clone(),
        program: to_hex(&filter.program),
    };
    let text = serde_json::to_string(&entry)?;
    let path = entry_path(dir, key);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        std::fs::rename(&tmp, &path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_garbage() {
        let b = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(from_hex(&to_hex(&b)).unwrap(), b);
        assert_eq!(to_hex(&b), "00017f80ff");
        assert!(from_hex("abc").is_none());
        assert!(from_hex("zz").is_none());
    }

    fn filter(n: u8) -> CompiledFilter {
        CompiledFilter {
            program: vec![n; 16],
            flags: 2,
            unknown_syscalls: vec!["x".into()],
        }
    }

    #[test]
    fn disk_round_trip_and_bad_entries() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-seccomp-cache-")
            .tempdir()
            .unwrap();
        let d = dir.path().join("cache");
        assert!(usable_dir(&d), "created 0700");
        assert!(disk_get(&d, "k1").is_none());
        disk_put(&d, "k1", &filter(7)).unwrap();
        let got = disk_get(&d, "k1").unwrap();
        assert_eq!(
            (got.program, got.flags, got.unknown_syscalls),
            (vec![7; 16], 2, vec!["x".to_string()])
        );
        // Only the entry file is left behind, no temp files.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        // Another key does not match.
        assert!(disk_get(&d, "k2").is_none());
        // An entry holding another key at this key's path is ignored.
        std::fs::copy(entry_path(&d, "k1"), entry_path(&d, "k2")).unwrap();
        assert!(disk_get(&d, "k2").is_none());
        // Corrupt JSON, bad hex, or a program that is not whole instructions: ignored.
        let p = entry_path(&d, "k1");
        for bad in [
            "{".to_string(),
            r#"{"key":"k1","flags":0,"unknown_syscalls":[],"program":"zz"}"#.to_string(),
            format!(
                r#"{{"key":"k1","flags":0,"unknown_syscalls":[],"program":"{}"}}"#,
                to_hex(&[0; 7])
            ),
            r#"{"key":"k1","flags":0,"unknown_syscalls":[],"program":""}"#.to_string(),
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(disk_get(&d, "k1").is_none());
        }
        // A directory others can write is not used.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!usable_dir(&d));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(!usable_dir(&d));
        // A symlink to a good directory is not used either.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(!usable_dir(&link));
    }

    #[test]
    fn memory_is_bounded_and_keyed() {
        for n in 0..(MEMORY_ENTRIES as u8 + 3) {
            memory_put(format!("test-key-{n}"), &filter(n));
        }
        assert!(memory_get("test-key-0").is_none());
        assert_eq!(memory_get("test-key-9").unwrap().program, vec![9; 16]);
        assert!(MEMORY.lock().unwrap().len() <= MEMORY_ENTRIES);
    }
}
