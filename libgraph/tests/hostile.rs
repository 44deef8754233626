//! Issue 15: the store under hostile images. Each test builds what an attacker controlling
//! an image (a pulled layer, a `docker load` archive) would supply and shows that the
//! store survives it: no root for local users, no crash, no hang, no locked store, bounded
//! memory and disk, nothing left behind, and `check` clean afterwards.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TarBuilder, gzip, tempdir};
use longshore_graph::{Store, StoreOptions};

fn open(root: &Path, driver: &str) -> Store {
    Store::open(
        root,
        StoreOptions {
            driver: Some(driver.to_string()),
        },
    )
    .unwrap()
}

/// Runs a command as `nobody` (uid/gid 65534, no supplementary groups), through a shell
/// that already runs as nobody: setpriv keeps its capabilities until its own exec, so the
/// path of the program it starts is looked up with root's rights.
fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sh", "-c", "exec \"$@\"", "sh"])
        .args(args)
        .output()
        .expect("setpriv (util-linux) runs")
}

/// Every regular file under `dir` whose name is `name`, found as root.
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && e.file_name() == name {
                out.push(e.path());
            }
        }
    }
    out
}

/// The directories a local user would walk through to reach `p`, made world-searchable
/// (a store under /var/lib sits below such directories).
fn open_path_to(tmp: &Path) {
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).unwrap();
}

fn setuid_attack(driver: &str) {
    longshore_test_support::require_root!();
    let tmp = tempdir("hostile-suid");
    open_path_to(tmp.path());
    let root = tmp.path().join("store");
    let id_bin = fs::read("/usr/bin/id").unwrap();
    let layer = TarBuilder::new()
        .dir("bin/", 0o755)
        .file_full("bin/rootme", &id_bin, 0o4755, 0, 0, 1_500_000_000)
        .file_full("etc/secret", b"image secret\n", 0o644, 0, 0, 1_500_000_000)
        .finish();
    let attack = |root: &Path| {
        let copies = find_named(root, "rootme");
        assert!(!copies.is_empty(), "the layer's file is in the store");
        for f in &copies {
            let m = fs::metadata(f).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o4755, "{}", f.display());
            let out = as_nobody(&[f.to_str().unwrap(), "-u"]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                !out.status.success() && stdout.trim() != "0",
                "nobody ran {} from the store: status {:?}, euid {stdout:?}; modes: {}",
                f.display(),
                out.status,
                f.ancestors()
                    .take_while(|a| a.starts_with(root))
                    .map(|a| format!("{:o}", mode(a)))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        for f in find_named(root, "secret") {
            let out = as_nobody(&["cat", f.to_str().unwrap()]);
            assert!(!out.status.success(), "nobody read {}", f.display());
        }
        // the blobs too (the layer tar holds the same file)
        let blobs = root.join("content/blobs/sha256");
        for e in fs::read_dir(&blobs).unwrap() {
            let p = e.unwrap().path();
            let out = as_nobody(&["cat", p.to_str().unwrap()]);
            assert!(!out.status.success(), "nobody read blob {}", p.display());
        }
    };
    {
        let s = open(&root, driver);
        s.import(&gzip(&layer)[..], Some("suid:1"), None).unwrap();
        s.create_container("longshore-suid", "suid:1").unwrap();
        let rootfs = s.mount_container("longshore-suid").unwrap();
        assert!(rootfs.join("bin/rootme").is_file());
        attack(&root);
        assert_eq!(mode(&root), 0o710);
        for sub in ["content", driver, "tmp"] {
            assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
        }
        s.unmount_container("longshore-suid").unwrap();
    }
    // a store created before the fix: everything 0755; open fixes the modes
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    for e in fs::read_dir(&root).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            fs::set_permissions(e.path(), fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let s = open(&root, driver);
    let _rootfs = s.mount_container("longshore-suid").unwrap();
    attack(&root);
    s.unmount_container("longshore-suid").unwrap();
    s.remove_container("longshore-suid").unwrap();
    assert!(s.check(false).unwrap().problems.is_empty());
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn setuid_file_in_a_vfs_layer_gives_other_users_nothing() {
    setuid_attack("vfs");
}

#[test]
fn setuid_file_in_an_overlay_layer_gives_other_users_nothing() {
    setuid_attack("overlay");
}
