//! One conformance suite, run against both graph drivers (overlay with real mounts, as root).

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::{TarBuilder, gzip, tempdir};
use longshore_graph::driver::{self, Driver};
use longshore_graph::{ChangeKind, Error};

struct Env {
    // dropped first: the overlay driver unmounts what it still has mounted
    driver: Box<dyn Driver>,
    tmp: tempfile::TempDir,
}

fn env(name: &str) -> Env {
    let tmp = tempdir("drv");
    let driver = driver::open(tmp.path(), Some(name)).unwrap();
    assert_eq!(driver.name(), name);
    Env { driver, tmp }
}

/// Releases a `get` even when the test fails.
struct Held<'a> {
    d: &'a dyn Driver,
    id: String,
    path: PathBuf,
}

impl<'a> Held<'a> {
    fn new(d: &'a dyn Driver, id: &str) -> Held<'a> {
        let path = d.get(id).unwrap();
        Held {
            d,
            id: id.to_string(),
            path,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.d.put(&self.id);
    }
}

fn mounted_under(p: &Path) -> bool {
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = p.to_string_lossy();
    mi.lines().any(|l| l.contains(p.as_ref()))
}

fn base_layer() -> Vec<u8> {
    TarBuilder::new()
        .dir("bin/", 0o755)
        .file_full("bin/sh", b"#!shell", 0o755, 0, 0, 1_500_000_000)
        .dir("etc/", 0o755)
        .file("etc/passwd", b"root:x:0:0\n")
        .dir("a/", 0o755)
        .file("a/x", b"x")
        .file("a/y", b"y")
        .file("gone", b"g")
        .dir("gonedir/", 0o755)
        .file("gonedir/f", b"f")
        .finish()
}

fn second_layer() -> Vec<u8> {
    TarBuilder::new()
        .file(".wh.gone", b"")
        .file(".wh.gonedir", b"")
        .dir("a/", 0o755)
        .file("a/.wh..wh..opq", b"")
        .file("a/z", b"z")
        .dir("etc/", 0o755)
        .file("etc/new", b"new")
        .file("etc/passwd", b"root:x:0:0\nuser:x:1000:1000\n")
        .finish()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn tar_names(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    let mut v: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    v.sort();
    v
}

fn lifecycle(name: &str) {
    longshore_test_support::require_root!();
    let e = env(name);
    let d = e.driver.as_ref();
    d.create("base", None).unwrap();
    let rep = d.apply_diff("base", &mut &gzip(&base_layer())[..]).unwrap();
    assert_eq!(
        rep.diff_id,
        longshore_graph::Digest::sha256_of(&base_layer())
    );
    d.create("l2", Some("base")).unwrap();
    d.apply_diff("l2", &mut &second_layer()[..]).unwrap();
    d.create("ctr", Some("l2")).unwrap();
    assert_eq!(d.parent("ctr").unwrap().as_deref(), Some("l2"));
    assert_eq!(d.parent("base").unwrap(), None);
    {
        let view = Held::new(d, "ctr");
        let root = &view.path;
        assert_eq!(names(root), ["a", "bin", "etc"]);
        assert_eq!(
            names(&root.join("a")),
            ["z"],
            "opaque dir hides lower entries"
        );
        assert_eq!(
            fs::read(root.join("etc/passwd")).unwrap(),
            b"root:x:0:0\nuser:x:1000:1000\n"
        );
        assert_eq!(fs::read(root.join("bin/sh")).unwrap(), b"#!shell");
        // the container writes
        fs::write(root.join("added"), b"hello").unwrap();
        fs::write(root.join("bin/sh"), b"#!patched shell").unwrap();
        fs::remove_file(root.join("etc/new")).unwrap();
        // a second user shares the mount
        let again = Held::new(d, "ctr");
        assert_eq!(again.path, view.path);
        let err = d.remove("ctr").unwrap_err();
        assert!(matches!(err, Error::LayerBusy { .. }), "{err}");
    }
    // the lower layers were not changed by the container's writes
    {
        let l2 = Held::new(d, "l2");
        assert_eq!(fs::read(l2.path.join("bin/sh")).unwrap(), b"#!shell");
        assert!(l2.path.join("etc/new").exists());
        assert!(!l2.path.join("added").exists());
    }
    let changes: Vec<String> = d
        .changes("ctr")
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let want: &[&str] = if name == "vfs" {
        &["A /added", "C /bin", "C /bin/sh", "C /etc", "D /etc/new"]
    } else {
        // overlay, like Docker's overlay2: a modified file's unchanged parent is not listed
        &["A /added", "C /bin/sh", "C /etc", "D /etc/new"]
    };
    assert_eq!(changes, want);

    let mut tar = Vec::new();
    d.diff("ctr", &mut tar).unwrap();
    let mut got = tar_names(&tar);
    got.retain(|n| n != "bin/");
    assert_eq!(got, ["added", "bin/sh", "etc/", "etc/.wh.new"]);
    let mut a = tar::Archive::new(&tar[..]);
    for ent in a.entries().unwrap() {
        let mut ent = ent.unwrap();
        if ent.path_bytes().as_ref() == b"bin/sh" {
            let mut s = String::new();
            ent.read_to_string(&mut s).unwrap();
            assert_eq!(s, "#!patched shell");
        }
    }

    // the diff applied on l2 elsewhere reproduces the container's view
    d.create("replay", Some("l2")).unwrap();
    d.apply_diff("replay", &mut &tar[..]).unwrap();
    {
        let r = Held::new(d, "replay");
        assert_eq!(fs::read(r.path.join("added")).unwrap(), b"hello");
        assert_eq!(fs::read(r.path.join("bin/sh")).unwrap(), b"#!patched shell");
        assert!(!r.path.join("etc/new").exists());
        assert!(r.path.join("etc/passwd").exists());
    }

    for id in ["replay", "ctr", "l2", "base"] {
        d.remove(id).unwrap();
        assert!(!d.exists(id));
    }
    assert!(matches!(d.remove("base"), Err(Error::LayerNotFound(_))));
    assert!(!mounted_under(e.tmp.path()));
}

fn errors(name: &str) {
    longshore_test_support::require_root!();
    let e = env(name);
    let d = e.driver.as_ref();
    assert!(matches!(
        d.create("x", Some("missing")),
        Err(Error::LayerNotFound(_))
    ));
    assert!(!d.exists("x"));
    for bad in ["", "../escape", "a/b", ".hidden", &"x".repeat(200)] {
        assert!(
            matches!(d.create(bad, None), Err(Error::InvalidLayerId(_))),
            "{bad:?}"
        );
    }
    d.create("x", None).unwrap();
    assert!(matches!(d.create("x", None), Err(Error::LayerExists(_))));
    assert!(matches!(d.get("nope"), Err(Error::LayerNotFound(_))));
    // a hostile diff is refused and leaves the driver's other files alone
    let evil = TarBuilder::new().file("../../escape", b"x").finish();
    assert!(matches!(
        d.apply_diff("x", &mut &evil[..]),
        Err(Error::UnsafeTarEntry { .. })
    ));
    assert!(!e.tmp.path().join("escape").exists());
    d.remove("x").unwrap();
}

fn long_chain(name: &str) {
    longshore_test_support::require_root!();
    let e = env(name);
    let d = e.driver.as_ref();
    let n = 60;
    let mut parent: Option<String> = None;
    for i in 0..n {
        // long IDs, as chain IDs are: the lowerdir list would overflow a page without l/ links
        let id = format!("{i:03}{}", "f".repeat(61));
        d.create(&id, parent.as_deref()).unwrap();
        let t = TarBuilder::new()
            .file(&format!("f{i:03}"), b"data")
            .finish();
        d.apply_diff(&id, &mut &t[..]).unwrap();
        parent = Some(id);
    }
    let top = parent.unwrap();
    {
        let h = Held::new(d, &top);
        let files = names(&h.path);
        assert_eq!(files.len(), n);
        assert_eq!(files[0], "f000");
        assert_eq!(files[n - 1], format!("f{:03}", n - 1));
    }
    assert!(!mounted_under(e.tmp.path()));
}

fn drop_unmounts(name: &str) {
    longshore_test_support::require_root!();
    let e = env(name);
    e.driver.create("a", None).unwrap();
    e.driver.create("b", Some("a")).unwrap();
    let _p = e.driver.get("b").unwrap(); // never put
    let tmp_path = e.tmp.path().to_path_buf();
    drop(e.driver);
    assert!(!mounted_under(&tmp_path));
}

macro_rules! suite {
    ($module:ident, $name:literal) => {
        mod $module {
            #[test]
            fn lifecycle() {
                super::lifecycle($name);
            }
            #[test]
            fn errors() {
                super::errors($name);
            }
            #[test]
            fn long_chain() {
                super::long_chain($name);
            }
            #[test]
            fn drop_unmounts() {
                super::drop_unmounts($name);
            }
        }
    };
}

suite!(vfs, "vfs");
suite!(overlay, "overlay");

#[test]
fn driver_selection() {
    let tmp = tempdir("drv");
    let err = driver::open(tmp.path(), Some("aufs")).err().unwrap();
    assert!(err.to_string().contains("unknown driver"), "{err}");
    if std::env::var(driver::DRIVER_ENV).is_err() && longshore_test_support::is_root() {
        assert_eq!(driver::open(tmp.path(), None).unwrap().name(), "overlay");
    }
}

#[test]
fn changes_kinds_display() {
    assert_eq!(ChangeKind::Added.to_string(), "A");
    assert_eq!(ChangeKind::Modified.to_string(), "C");
    assert_eq!(ChangeKind::Deleted.to_string(), "D");
}

/// `LONGSHORE_DRIVER` picks the driver (checked in a child process: the environment is
/// process-wide and tests run in parallel).
#[test]
fn driver_env_var_selects() {
    if let Ok(want) = std::env::var("LONGSHORE_GRAPH_ENV_CHILD") {
        let tmp = tempdir("drv");
        assert_eq!(driver::open(tmp.path(), None).unwrap().name(), want);
        return;
    }
    longshore_test_support::require_root!();
    for name in ["vfs", "overlay"] {
        let st = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "driver_env_var_selects", "--quiet"])
            .env("LONGSHORE_GRAPH_ENV_CHILD", name)
            .env(driver::DRIVER_ENV, name)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "{}={name} did not select {name}",
            driver::DRIVER_ENV
        );
    }
    let st = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "driver_env_var_selects", "--quiet"])
        .env("LONGSHORE_GRAPH_ENV_CHILD", "vfs")
        .env(driver::DRIVER_ENV, "btrfs")
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        !st.success(),
        "an unknown driver in the environment must be refused"
    );
}
