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
    Store::open(root, StoreOptions::new().driver(driver.to_string())).unwrap()
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

/// A scratch directory removed with `rm -rf` (it may hold a tree deeper than the test's
/// own descriptor limit allows `std::fs::remove_dir_all` to remove).
struct Scratch(tempfile::TempDir);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("rm").arg("-rf").arg(self.0.path()).status();
    }
}

fn scratch(tag: &str) -> Scratch {
    Scratch(tempdir(tag))
}

/// Directories in the deep layer: about the deepest a tar path of at most 4095 bytes holds.
const DEEP: usize = 2000;

/// A layer of one file under `DEEP` nested directories: 4 KB of tar, 1 KB gzipped.
fn deep_layer(file: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(5);
    h.set_mtime(1_500_000_000);
    let path = format!("{}{file}", "d/".repeat(DEEP));
    b.append_data(&mut h, &path, &b"deep\n"[..]).unwrap();
    b.into_inner().unwrap()
}

/// What a store does with a deep layer, run by [`deep_tree_child`] in a process with the
/// usual 1024-descriptor limit, on a thread with the 2 MiB stack of a tokio blocking thread.
fn deep_tree_work(root: &Path, driver: &str) {
    let layer = gzip(&deep_layer("f"));
    assert!(layer.len() < 2048, "{} bytes", layer.len());
    {
        let s = open(root, driver);
        s.import(&layer[..], Some("deep:1"), None).unwrap();
        s.create_container("longshore-deep", "deep:1").unwrap();
        let rootfs = s.mount_container("longshore-deep").unwrap();
        fs::write(rootfs.join("top"), b"changed\n").unwrap();
        s.unmount_container("longshore-deep").unwrap();
        let opts = longshore_graph::CommitOptions::new().reference("deep:2");
        s.commit("longshore-deep", &opts).unwrap();
        s.create_container("longshore-deep2", "deep:2").unwrap();
        s.remove_container("longshore-deep2").unwrap();
        s.remove_container("longshore-deep").unwrap();
        s.remove_image("deep:2", &longshore_graph::RemoveOptions::new())
            .unwrap();
        s.remove_image("deep:1", &longshore_graph::RemoveOptions::new())
            .unwrap();
        s.gc().unwrap();
        // a load that fails after unpacking the deep tree into tmp/
        let mut archive = TarBuilder::new();
        archive.file(
            "manifest.json",
            b"[{\"Config\": \"missing.json\", \"Layers\": []}]",
        );
        let mut tar = archive.finish();
        tar.truncate(tar.len() - 1024); // no end blocks: append the deep entry
        tar.extend_from_slice(&deep_layer("g"));
        assert!(s.load(&tar[..]).is_err());
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    }
    let s = open(root, driver);
    let rep = s.check(false).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert!(s.images().unwrap().is_empty());
    let layers = match driver {
        "vfs" => fs::read_dir(root.join("vfs/dir")).unwrap().count(),
        _ => fs::read_dir(root.join("overlay"))
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                n != "l" && n != ".probe"
            })
            .count(),
    };
    assert_eq!(layers, 0, "layers left in the {driver} driver");
}

/// Run by [`deep_tree_in_a_small_process`] only (`--ignored`, with the store and driver in
/// the environment).
#[test]
#[ignore = "run in a child process with a 1024-descriptor limit by deep_tree_* tests"]
fn deep_tree_child() {
    let root = PathBuf::from(std::env::var("LONGSHORE_DEEP_ROOT").expect("run by deep_tree_*"));
    let driver = std::env::var("LONGSHORE_DEEP_DRIVER").unwrap();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || deep_tree_work(&root, &driver))
        .unwrap()
        .join()
        .unwrap();
    println!("deep tree child: done");
}

fn deep_tree_in_a_small_process(driver: &str) {
    longshore_test_support::require_root!();
    let tmp = scratch("hostile-deep");
    let out = Command::new("prlimit")
        .args(["--nofile=1024:1024", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "deep_tree_child", "--ignored", "--nocapture"])
        .env("LONGSHORE_DEEP_ROOT", tmp.0.path().join("store"))
        .env("LONGSHORE_DEEP_DRIVER", driver)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("deep tree child: done"),
        "child with a 1024-descriptor limit failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deep_tree_in_vfs_neither_crashes_nor_locks_the_store() {
    deep_tree_in_a_small_process("vfs");
}

#[test]
fn deep_tree_in_overlay_neither_crashes_nor_locks_the_store() {
    deep_tree_in_a_small_process("overlay");
}

/// Opens every FIFO under `dir` for writing and closes it: a reader blocked on one returns.
fn unblock_fifos(dir: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_fifo() {
                let _ = rustix::fs::open(
                    e.path(),
                    rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK,
                    rustix::fs::Mode::empty(),
                );
            }
        }
    }
}

/// Loads `archive`, failing the test if the load does not return within a minute (a hang:
/// the FIFOs it may be blocked on are then opened for writing, so that it returns).
fn load_or_hang(s: &Store, archive: &[u8]) -> longshore_graph::Result<Vec<String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let r = s
                .load(archive)
                .map(|v| v.into_iter().map(|(id, _)| id.to_string()).collect());
            let _ = tx.send(r);
        });
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(r) => r,
            Err(_) => {
                unblock_fifos(&s.root().join("tmp"));
                let _ = rx.recv();
                panic!("load did not return within a minute (blocked on a FIFO?)");
            }
        }
    })
}

fn config_for(layer_tar: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [longshore_graph::Digest::sha256_of(layer_tar).to_string()]}
    }))
    .unwrap()
}

fn assert_store_clean(root: &Path, driver: &str) {
    let s = open(root, driver);
    let rep = s.check(false).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert!(rep.unreferenced_layers.is_empty(), "{rep:?}");
    assert_eq!(
        fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "tmp/ is empty"
    );
}

#[test]
fn load_refuses_fifos_and_devices_without_opening_them() {
    longshore_test_support::require_root!();
    let tmp = tempdir("hostile-fifo");
    let root = tmp.path().join("store");
    let layer = TarBuilder::new().file("etc/motd", b"hi\n").finish();
    let config = config_for(&layer);
    let manifest = br#"[{"Config":"config.json","RepoTags":["fifo:1"],"Layers":["layer.tar"]}]"#;
    // the config is a FIFO; the config is a device; the layer is a FIFO
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "FIFO",
            TarBuilder::new()
                .file("manifest.json", manifest)
                .node("config.json", tar::EntryType::Fifo, 0, 0)
                .file("layer.tar", &layer)
                .finish(),
        ),
        (
            "character device",
            TarBuilder::new()
                .file("manifest.json", manifest)
                .node("config.json", tar::EntryType::Char, 1, 3)
                .file("layer.tar", &layer)
                .finish(),
        ),
        (
            "FIFO",
            TarBuilder::new()
                .file("manifest.json", manifest)
                .file("config.json", &config)
                .node("layer.tar", tar::EntryType::Fifo, 0, 0)
                .finish(),
        ),
    ];
    // an OCI layout whose layer blob is a FIFO
    let config_d = longshore_graph::Digest::sha256_of(&config);
    let layer_d = longshore_graph::Digest::sha256_of(&layer);
    let oci_manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_d.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_d.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let manifest_d = longshore_graph::Digest::sha256_of(&oci_manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_d.to_string(), "size": oci_manifest.len()}],
    }))
    .unwrap();
    let mut cases = cases;
    cases.push((
        "FIFO",
        TarBuilder::new()
            .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
            .file("index.json", &index)
            .file(&format!("blobs/sha256/{}", manifest_d.hex()), &oci_manifest)
            .file(&format!("blobs/sha256/{}", config_d.hex()), &config)
            .node(
                &format!("blobs/sha256/{}", layer_d.hex()),
                tar::EntryType::Fifo,
                0,
                0,
            )
            .finish(),
    ));
    for (i, (kind, archive)) in cases.iter().enumerate() {
        {
            let s = open(&root, "vfs");
            let err = load_or_hang(&s, archive).unwrap_err().to_string();
            assert!(
                err.contains("not a regular file") && err.contains(kind),
                "case {i}: {err}"
            );
            assert!(s.images().unwrap().is_empty(), "case {i}");
        }
        assert_store_clean(&root, "vfs");
    }
}

/// Bytes of attacker data in the memory tests: the old code held all of it (and more).
const BIG: u64 = 256 << 20;
/// What the child process may use at its peak (VmHWM) while refusing `BIG` bytes.
const PEAK_LIMIT_KB: u64 = 128 << 10;

/// A tar stream written header by header into a gzip encoder, with entry data streamed
/// (so a 256 MiB entry costs no memory to build).
struct TarStream(flate2::write::GzEncoder<Vec<u8>>);

impl TarStream {
    fn new() -> Self {
        TarStream(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ))
    }

    fn header(&mut self, name: &str, kind: tar::EntryType, size: u64) {
        use std::io::Write;
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(1_500_000_000);
        h.set_cksum();
        self.0.write_all(h.as_bytes()).unwrap();
    }

    /// `size` bytes of `byte` (padded to the block), with `tail` as the last bytes.
    fn data(&mut self, size: u64, byte: u8, tail: &[u8]) {
        use std::io::Write;
        let chunk = vec![byte; 1 << 16];
        let mut left = size - tail.len() as u64;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            self.0.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        self.0.write_all(tail).unwrap();
        let pad = (512 - size % 512) % 512;
        self.0.write_all(&vec![0u8; pad as usize]).unwrap();
    }

    fn file(&mut self, name: &str, data: &[u8]) {
        self.header(name, tar::EntryType::Regular, data.len() as u64);
        self.data(data.len() as u64, 0, data);
    }

    fn finish(mut self) -> Vec<u8> {
        use std::io::Write;
        self.0.write_all(&[0u8; 1024]).unwrap();
        self.0.finish().unwrap()
    }
}

/// The hostile input of a memory case: (gzip stream, whether it is loaded or imported).
fn memory_case(case: &str) -> (Vec<u8>, bool) {
    let mut t = TarStream::new();
    let load = match case {
        "long-name" => {
            t.header("././@LongLink", tar::EntryType::GNULongName, BIG);
            t.data(BIG, b'a', b"\0");
            t.file("f", b"x");
            false
        }
        "long-link" => {
            t.header("././@LongLink", tar::EntryType::GNULongLink, BIG);
            t.data(BIG, b'a', b"\0");
            t.header("l", tar::EntryType::Symlink, 0);
            false
        }
        "pax" => {
            t.header("pax", tar::EntryType::XHeader, BIG);
            t.data(BIG, b'a', b"\n");
            t.file("f", b"x");
            false
        }
        "pax-global" => {
            t.header("pax", tar::EntryType::XGlobalHeader, BIG);
            t.data(BIG, b'a', b"\n");
            t.file("f", b"x");
            false
        }
        "manifest.json" => {
            t.header("manifest.json", tar::EntryType::Regular, BIG);
            t.data(BIG, b' ', b"[]");
            true
        }
        "config" => {
            t.file(
                "manifest.json",
                br#"[{"Config":"config.json","RepoTags":["big:1"],"Layers":[]}]"#,
            );
            t.header("config.json", tar::EntryType::Regular, BIG);
            t.data(BIG, b' ', b"{}");
            true
        }
        "index.json" => {
            t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
            t.header("index.json", tar::EntryType::Regular, BIG);
            t.data(BIG, b' ', b"{}");
            true
        }
        other => panic!("unknown case {other}"),
    };
    (t.finish(), load)
}

/// Peak resident memory of this process, in KiB.
fn peak_kb() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Run by [`hostile_memory`] only, in a fresh process per case (so the peak is the case's).
#[test]
#[ignore = "run in a child process by hostile_memory_* tests"]
fn hostile_memory_child() {
    let root = PathBuf::from(std::env::var("LONGSHORE_MEM_ROOT").expect("run by hostile_memory"));
    let case = std::env::var("LONGSHORE_MEM_CASE").unwrap();
    let (input, load) = memory_case(&case);
    println!("input: {} bytes of gzip", input.len());
    let s = open(&root, "vfs");
    let err = if load {
        s.load(&input[..]).map(|_| ()).unwrap_err()
    } else {
        s.import(&input[..], Some("big:1"), None)
            .map(|_| ())
            .unwrap_err()
    };
    println!("error: {err}");
    println!("peak_kb: {}", peak_kb());
}

fn hostile_memory(case: &str, want: &str) {
    longshore_test_support::require_root!();
    let tmp = tempdir("hostile-mem");
    let root = tmp.path().join("store");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hostile_memory_child",
            "--ignored",
            "--nocapture",
        ])
        .env("LONGSHORE_MEM_ROOT", &root)
        .env("LONGSHORE_MEM_CASE", case)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{case}: child failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |k: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{case}: no {k} in {stdout}"))
            .to_string()
    };
    let err = field("error: ");
    assert!(err.contains(want), "{case}: {err}");
    let peak: u64 = field("peak_kb: ").trim().parse().unwrap();
    assert!(
        peak < PEAK_LIMIT_KB,
        "{case}: the process peaked at {peak} KiB for {} MiB of attacker data ({err})",
        BIG >> 20
    );
    let s = open(&root, "vfs");
    assert!(s.images().unwrap().is_empty());
    drop(s);
    assert_store_clean(&root, "vfs");
}

#[test]
fn huge_gnu_long_name_is_refused_in_bounded_memory() {
    hostile_memory("long-name", "GNU long name of 268435456 bytes");
}

#[test]
fn huge_gnu_long_link_is_refused_in_bounded_memory() {
    hostile_memory("long-link", "GNU long link name of 268435456 bytes");
}

#[test]
fn huge_pax_header_is_refused_in_bounded_memory() {
    hostile_memory("pax", "PAX header of 268435456 bytes");
}

#[test]
fn huge_pax_global_header_is_refused_in_bounded_memory() {
    hostile_memory("pax-global", "PAX global header of 268435456 bytes");
}

#[test]
fn huge_manifest_json_is_refused_in_bounded_memory() {
    hostile_memory("manifest.json", "over the 4 MiB limit");
}

#[test]
fn huge_config_is_refused_in_bounded_memory() {
    hostile_memory("config", "over the 16 MiB limit");
}

#[test]
fn huge_oci_index_is_refused_in_bounded_memory() {
    hostile_memory("index.json", "over the 4 MiB limit");
}

/// A GNU sparse entry of apparent size `real` with 512 bytes of `a` at the start and 512
/// bytes of `b` at the end: 1.5 KB of tar.
fn sparse_entry(t: &mut tar::Builder<Vec<u8>>, name: &str, real: u64) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_mtime(1_500_000_000);
    h.set_size(1024);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.sparse[0].set_offset(0);
    gnu.sparse[0].set_length(512);
    gnu.sparse[1].set_offset(real - 512);
    gnu.sparse[1].set_length(512);
    gnu.set_real_size(real);
    h.set_cksum();
    let mut data = vec![b'a'; 512];
    data.extend_from_slice(&[b'b'; 512]);
    t.append(&h, &data[..]).unwrap();
}

/// Bytes allocated on disk for everything under `dir`.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

fn sparse_file_stays_sparse(driver: &str) {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    longshore_test_support::require_root!();
    let tmp = tempdir("hostile-sparse");
    let root = tmp.path().join("store");
    const REAL: u64 = 2 << 30;
    let mut t = tar::Builder::new(Vec::new());
    sparse_entry(&mut t, "big", REAL);
    let layer = t.into_inner().unwrap();
    assert!(layer.len() < 4096, "{} bytes of tar", layer.len());
    {
        let s = open(&root, driver);
        s.import(&layer[..], Some("sparse:1"), None).unwrap();
        s.create_container("longshore-sparse", "sparse:1").unwrap();
        let rootfs = s.mount_container("longshore-sparse").unwrap();
        let mut f = fs::File::open(rootfs.join("big")).unwrap();
        assert_eq!(f.metadata().unwrap().len(), REAL);
        let mut buf = [0u8; 512];
        f.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [b'a'; 512]);
        f.seek(SeekFrom::Start(REAL / 2)).unwrap();
        f.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [0; 512]);
        f.seek(SeekFrom::Start(REAL - 512)).unwrap();
        f.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [b'b'; 512]);
        drop(f);
        s.unmount_container("longshore-sparse").unwrap();
        for f in find_named(&root, "big") {
            let m = fs::metadata(&f).unwrap();
            assert_eq!(m.len(), REAL);
            assert!(
                m.blocks() * 512 < 1 << 20,
                "{} takes {} bytes on disk",
                f.display(),
                m.blocks() * 512
            );
        }
        // the image layer, the container's copy (vfs) and the blob: a few MiB at most
        let used = disk_usage(&root);
        assert!(used < 16 << 20, "the store takes {used} bytes on disk");
        s.remove_container("longshore-sparse").unwrap();
    }
    assert_store_clean(&root, driver);
}

#[test]
fn sparse_file_in_vfs_is_written_as_holes() {
    sparse_file_stays_sparse("vfs");
}

#[test]
fn sparse_file_in_overlay_is_written_as_holes() {
    sparse_file_stays_sparse("overlay");
}

#[test]
fn sparse_files_of_a_layer_are_bounded() {
    longshore_test_support::require_root!();
    let tmp = tempdir("hostile-sparse-limit");
    let root = tmp.path().join("store");
    let limit = longshore_graph::apply::MAX_SPARSE_SIZE;
    // one file over the limit; two that are over it together
    let mut one = tar::Builder::new(Vec::new());
    sparse_entry(&mut one, "huge", limit + 1);
    let mut two = tar::Builder::new(Vec::new());
    sparse_entry(&mut two, "first", 1 << 30);
    sparse_entry(&mut two, "second", limit - (1 << 30) + 512);
    for (name, layer) in [
        ("huge", one.into_inner().unwrap()),
        ("second", two.into_inner().unwrap()),
    ] {
        {
            let s = open(&root, "vfs");
            let err = s.import(&layer[..], None, None).unwrap_err().to_string();
            assert!(
                err.contains(&format!("sparse file \"{name}\"")) && err.contains("64 GiB limit"),
                "{err}"
            );
            assert!(s.images().unwrap().is_empty());
        }
        assert_store_clean(&root, "vfs");
        assert!(disk_usage(&root) < 16 << 20);
        assert_eq!(fs::read_dir(root.join("vfs/dir")).unwrap().count(), 0);
    }
}

/// A docker archive of one image over `layers` (plain tars), with `repo_tags`.
fn docker_archive(layers: &[Vec<u8>], repo_tags: &[&str]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| longshore_graph::Digest::sha256_of(l).to_string())
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let names: Vec<String> = (0..layers.len()).map(|i| format!("l{i}.tar")).collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": "config.json", "RepoTags": repo_tags, "Layers": names
    }]))
    .unwrap();
    let mut t = TarBuilder::new();
    t.file("manifest.json", &manifest)
        .file("config.json", &config);
    for (n, l) in names.iter().zip(layers) {
        t.file(n, l);
    }
    t.finish()
}

/// (layers in the metadata, layer directories in the vfs driver, blobs).
fn store_counts(s: &Store) -> (usize, usize, usize) {
    let dirs = fs::read_dir(s.root().join("vfs/dir")).unwrap().count();
    let blobs = fs::read_dir(s.root().join("content/blobs/sha256"))
        .unwrap()
        .count();
    let layers = s
        .images()
        .unwrap()
        .iter()
        .map(|i| i.diff_ids.len())
        .sum::<usize>();
    (layers, dirs, blobs)
}

fn small_layer(i: usize) -> Vec<u8> {
    TarBuilder::new()
        .file(&format!("f{i}"), format!("{i}\n").as_bytes())
        .finish()
}

#[test]
fn failed_load_changes_nothing() {
    longshore_test_support::require_root!();
    let tmp = tempdir("hostile-load");
    let root = tmp.path().join("store");
    let s = open(&root, "vfs");
    let good = s
        .load(&docker_archive(&[small_layer(0)], &["good:1"])[..])
        .unwrap();
    let good_id = good[0].0.clone();
    let before = store_counts(&s);
    let bad_digest = format!("foo@sha256:{}", "0".repeat(63));
    let unsafe_layer = TarBuilder::new().file("../escape", b"x").finish();
    let oci_named = |name: &str| {
        let layer = small_layer(7);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [longshore_graph::Digest::sha256_of(&layer).to_string()]}
        }))
        .unwrap();
        let (cd, ld) = (
            longshore_graph::Digest::sha256_of(&config),
            longshore_graph::Digest::sha256_of(&layer),
        );
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cd.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": ld.to_string(), "size": layer.len()}],
        }))
        .unwrap();
        let md = longshore_graph::Digest::sha256_of(&m);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": md.to_string(), "size": m.len(),
                           "annotations": {"io.containerd.image.name": name}}],
        }))
        .unwrap();
        TarBuilder::new()
            .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
            .file("index.json", &index)
            .file(&format!("blobs/sha256/{}", md.hex()), &m)
            .file(&format!("blobs/sha256/{}", cd.hex()), &config)
            .file(&format!("blobs/sha256/{}", ld.hex()), &layer)
            .finish()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a bad tag after a good one",
            docker_archive(&[small_layer(1), small_layer(2)], &["good:1", &bad_digest]),
            "invalid reference format",
        ),
        (
            "a tag with a digest",
            docker_archive(
                &[small_layer(1)],
                &["good:1", &format!("foo@sha256:{}", "0".repeat(64))],
            ),
            "cannot be a tag",
        ),
        (
            "an OCI image name that is not a reference",
            oci_named(&bad_digest),
            "invalid reference format",
        ),
        (
            "a bad third layer",
            docker_archive(&[small_layer(3), small_layer(4), unsafe_layer], &["good:1"]),
            "unsafe",
        ),
        (
            "a manifest.json that is an object",
            TarBuilder::new()
                .file("manifest.json", br#"{"Config":"c.json","Layers":[]}"#)
                .finish(),
            "not a list of images but a JSON object",
        ),
    ];
    for (what, archive, want) in &cases {
        let err = s.load(&archive[..]).unwrap_err().to_string();
        assert!(err.contains(want), "{what}: {err}");
        assert_eq!(
            s.resolve("good:1").unwrap(),
            good_id,
            "{what}: good:1 moved"
        );
        assert_eq!(s.images().unwrap().len(), 1, "{what}");
        assert_eq!(store_counts(&s), before, "{what}: layers or blobs left");
        let rep = s.check(false).unwrap();
        assert!(rep.problems.is_empty(), "{what}: {:?}", rep.problems);
        assert!(rep.unreferenced_layers.is_empty(), "{what}: {rep:?}");
    }
    drop(s);
    assert_store_clean(&root, "vfs");
}

#[test]
fn layer_limit_is_checked_before_layer_files_are_opened() {
    longshore_test_support::require_root!();
    let tmp = tempdir("hostile-limit");
    let root = tmp.path().join("store");
    let s = open(&root, "vfs");
    // 30,000 layers, all the same file: the old code opened each before counting
    let layer = small_layer(0);
    let n = 30_000;
    let diff = longshore_graph::Digest::sha256_of(&layer).to_string();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": vec![diff; n]}
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": "config.json", "RepoTags": ["many:1"], "Layers": vec!["l.tar"; n]
    }]))
    .unwrap();
    let archive = TarBuilder::new()
        .file("manifest.json", &manifest)
        .file("config.json", &config)
        .file("l.tar", &layer)
        .finish();
    match s.load(&archive[..]) {
        Err(longshore_graph::Error::TooManyLayers { count, max }) => {
            assert_eq!((count, max), (n, 127));
        }
        other => panic!("expected the layer limit, got {other:?}"),
    }
    assert!(s.images().unwrap().is_empty());
    drop(s);
    assert_store_clean(&root, "vfs");
}

#[test]
fn check_reports_and_gc_removes_unreferenced_layers() {
    longshore_test_support::require_root!();
    let tmp = tempdir("hostile-orphan");
    let root = tmp.path().join("store");
    let s = open(&root, "vfs");
    // what a load cut short by a crash left: layers with no image
    let base = s.register_layer(None, &small_layer(0)[..]).unwrap();
    let top = s
        .register_layer(Some(&base.cache_id), &small_layer(1)[..])
        .unwrap();
    let rep = s.check(false).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    // the top one (the base is used by it)
    assert_eq!(rep.unreferenced_layers, vec![top.cache_id.clone()]);
    let gc = s.gc().unwrap();
    assert_eq!(gc.layers_removed, vec![top.cache_id, base.cache_id]);
    let rep = s.check(false).unwrap();
    assert!(
        rep.problems.is_empty() && rep.unreferenced_layers.is_empty(),
        "{rep:?}"
    );
    assert_eq!(fs::read_dir(root.join("vfs/dir")).unwrap().count(), 0);
}
