//! Test fixtures shared by longshore's crates (dev-only, never published).
//!
//! * [`busybox_rootfs`] lays out a root filesystem from Debian's `busybox-static`,
//!   with every applet as a symlink, `/etc/passwd` and `/etc/group`.
//! * [`unique_name`] gives names that stay unique across parallel tests and processes,
//!   for containers, cgroups, bridges and namespaces.
//! * [`require_root!`] skips a test with a loud message when not running as root, and
//!   [`skip!`] for any other reason; both fail instead under `LONGSHORE_REQUIRE_ROOT=1`.
//!
//! ```no_run
//! let dir = tempfile::tempdir().unwrap();
//! longshore_test_support::busybox_rootfs(dir.path()).unwrap();
//! assert!(dir.path().join("bin/sh").exists());
//! ```

pub mod registry;

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// True when the current process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when skipping a test is a failure: `LONGSHORE_REQUIRE_ROOT=1` (CI sets it), so a
/// green run means every test ran.
pub fn skips_are_failures() -> bool {
    std::env::var_os("LONGSHORE_REQUIRE_ROOT").is_some_and(|v| v == "1")
}

/// Reports a test that cannot run here: a loud message, then a failure when
/// [`skips_are_failures`] (in CI), an early return otherwise. Use [`skip!`] in tests.
pub fn report_skip(location: &str, why: &str) {
    let msg = format!("*** SKIPPED {location}: {why} ***");
    if skips_are_failures() {
        panic!("{msg} (LONGSHORE_REQUIRE_ROOT=1: a skipped test is a failure)");
    }
    eprintln!("\n{msg}\n");
}

/// Skips the rest of a test with a reason (`skip!("runc missing: apt-get install -y runc")`):
/// a loud message and an early return for a developer, a failure under
/// `LONGSHORE_REQUIRE_ROOT=1`, where every test must run.
#[macro_export]
macro_rules! skip {
    ($($why:tt)+) => {{
        $crate::report_skip(concat!(file!(), ":", line!()), &format!($($why)+));
        return;
    }};
}

/// Returns early from a test with a loud message when not root, or fails it under
/// `LONGSHORE_REQUIRE_ROOT=1` (see [`skip!`]).
///
/// Every test that creates namespaces, cgroups, mounts or network devices starts with it.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            $crate::skip!("this test needs root (namespaces, cgroups, mounts)");
        }
    };
}

/// A command's output as text (lossy UTF-8).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The stdout of `o`, which must have succeeded: else a panic naming `what` with its exit
/// code, stdout and stderr.
pub fn succeeded(what: &str, o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {}{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// A name unique to this process and call, `prefix` first: `ls-<prefix>-<pid>-<n>`.
///
/// Kept short (at most 15 bytes for prefixes of up to 4 characters) so that it also fits
/// network interface names.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!("{prefix}{:x}{n:x}", pid & 0xfffff)
}

/// Where Debian's `busybox-static` installs its binary.
pub fn busybox_binary() -> io::Result<PathBuf> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let p = Path::new(p);
        if p.exists() {
            return Ok(p.to_path_buf());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "busybox not found: install Debian's busybox-static (apt-get install -y busybox-static)",
    ))
}

/// Lays out a busybox root filesystem at `root` (which may already exist).
///
/// Creates the usual top-level directories, copies the static busybox binary to
/// `/bin/busybox`, links every applet it lists (`busybox --list-full`), and writes
/// `/etc/passwd` (root, daemon, nobody and `user` 1000) and `/etc/group`.
pub fn busybox_rootfs(root: &Path) -> io::Result<()> {
    let bin = busybox_binary()?;
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/user",
        "var",
        "run",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::copy(&bin, root.join("bin/busybox"))?;
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755))?;
    let out = Command::new(&bin).arg("--list-full").output()?;
    if !out.status.success() {
        return Err(io::Error::other("busybox --list-full failed"));
    }
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let depth = applet.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        let link = root.join(applet);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        if link.symlink_metadata().is_err() {
            symlink(&target, &link)?;
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
         user:x:1000:1000:user:/home/user:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(
        root.join("etc/group"),
        "root:x:0:\ndaemon:x:1:\nwheel:x:10:user\nuser:x:1000:\nnogroup:x:65534:\n",
    )?;
    Ok(())
}

/// A fresh temporary directory holding a busybox root filesystem in `rootfs/`.
///
/// The directory lives under `/tmp`; it is removed when the guard drops.
pub fn busybox_bundle_dir() -> io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("longshore-bundle-")
        .tempdir()?;
    busybox_rootfs(&dir.path().join("rootfs"))?;
    Ok(dir)
}

/// The entry names of the layer with diff ID `diff_id` (`sha256:...`) in a saved image
/// archive (`docker save`'s format, layers under `blobs/sha256/`); empty when it has none.
pub fn archive_layer_names(archive: &[u8], diff_id: &str) -> Vec<String> {
    use std::io::Read;
    let want = format!("blobs/sha256/{}", diff_id.trim_start_matches("sha256:"));
    let mut layer = Vec::new();
    for entry in tar::Archive::new(archive).entries().expect("a tar archive") {
        let mut entry = entry.expect("an archive entry");
        if entry.path().expect("an entry path").to_string_lossy() == want {
            entry.read_to_end(&mut layer).expect("the layer");
        }
    }
    tar::Archive::new(&layer[..])
        .entries()
        .expect("a layer tar")
        .map(|e| {
            let e = e.expect("a layer entry");
            e.path()
                .expect("a layer path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_fit_interfaces() {
        let a = unique_name("br");
        let b = unique_name("br");
        assert_ne!(a, b);
        assert!(a.len() <= 15, "{a} is too long for an interface name");
    }

    #[test]
    fn rootfs_has_shell_and_users() {
        if busybox_binary().is_err() {
            eprintln!("*** SKIPPED: busybox-static is not installed ***");
            return;
        }
        let dir = busybox_bundle_dir().unwrap();
        let root = dir.path().join("rootfs");
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            PathBuf::from("../bin/busybox")
        );
        assert!(
            fs::read_to_string(root.join("etc/passwd"))
                .unwrap()
                .contains("user:x:1000")
        );
    }
}
