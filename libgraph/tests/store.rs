//! The image store end to end: import, containers, commit, history, rmi rules, save/load
//! (including archives converted by skopeo), the layer limit, crash recovery, check and gc.

mod common;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::{TarBuilder, gzip, tempdir};
use longshore_graph::{ArchiveFormat, CommitOptions, Digest, Error, Removed, Store, StoreOptions};

fn open(root: &Path, driver: &str) -> Store {
    Store::open(root, StoreOptions::new().driver(driver.to_string())).unwrap()
}

fn rootfs_tar() -> Vec<u8> {
    TarBuilder::new()
        .dir("bin/", 0o755)
        .file_full("bin/sh", b"#!fake shell", 0o755, 0, 0, 1_500_000_000)
        .dir("etc/", 0o755)
        .file("etc/hostname", b"box\n")
        .finish()
}

fn mounted_under(p: &Path) -> bool {
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    mi.lines().any(|l| l.contains(p.to_string_lossy().as_ref()))
}

fn import_commit_history(driver: &str) {
    longshore_test_support::require_root!();
    let tmp = tempdir("store");
    let s = open(tmp.path(), driver);
    let id = s
        .import(&gzip(&rootfs_tar())[..], Some("base:1"), None)
        .unwrap();
    assert_eq!(s.resolve("base:1").unwrap(), id);
    assert_eq!(s.resolve(&id.hex()[..12]).unwrap(), id);
    assert_eq!(s.resolve("docker.io/library/base:1").unwrap(), id);
    assert!(matches!(s.resolve("base:2"), Err(Error::ImageNotFound(_))));
    let img = s.image("base:1").unwrap();
    assert_eq!(img.tags, vec!["base:1"]);
    assert_eq!(img.diff_ids, vec![Digest::sha256_of(&rootfs_tar())]);
    assert_eq!(img.chain_id, Some(img.diff_ids[0].clone()));
    // the config is stored byte for byte and its digest is the ID
    assert_eq!(Digest::sha256_of(&s.config("base:1").unwrap()), id);

    s.create_container("c1", "base:1").unwrap();
    let root = s.mount_container("c1").unwrap();
    fs::write(root.join("etc/hostname"), b"changed\n").unwrap();
    fs::create_dir(root.join("data")).unwrap();
    fs::write(root.join("data/file"), vec![1u8; 1000]).unwrap();
    fs::remove_file(root.join("bin/sh")).unwrap();
    s.unmount_container("c1").unwrap();
    let changes: Vec<String> = s
        .container_changes("c1")
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert!(changes.contains(&"A /data".to_string()), "{changes:?}");
    assert!(changes.contains(&"A /data/file".to_string()), "{changes:?}");
    assert!(
        changes.contains(&"C /etc/hostname".to_string()),
        "{changes:?}"
    );
    assert!(changes.contains(&"D /bin/sh".to_string()), "{changes:?}");

    let new = s
        .commit(
            "c1",
            &CommitOptions::new()
                .reference("derived:v1")
                .author("Ann <ann@example.com>")
                .message("add data")
                .created_by("/bin/sh -c make"),
        )
        .unwrap();
    let di = s.image("derived:v1").unwrap();
    assert_eq!(di.id, new);
    assert_eq!(di.parent, Some(id.clone()));
    assert_eq!(di.diff_ids.len(), 2);
    let h = s.history("derived:v1").unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].id, Some(new.clone()));
    assert_eq!(h[0].comment, "add data");
    assert_eq!(h[0].created_by, "/bin/sh -c make");
    assert_eq!(h[0].size, 1000 + 8);
    assert_eq!(h[1].comment, "Imported from -");
    let cfg: serde_json::Value =
        serde_json::from_slice(&s.config(&new.to_string()).unwrap()).unwrap();
    assert_eq!(cfg["author"], "Ann <ann@example.com>");

    // a container of the new image sees the committed state
    s.create_container("c2", "derived:v1").unwrap();
    let r2 = s.mount_container("c2").unwrap();
    assert_eq!(fs::read(r2.join("etc/hostname")).unwrap(), b"changed\n");
    assert!(!r2.join("bin/sh").exists());
    assert_eq!(fs::read(r2.join("data/file")).unwrap().len(), 1000);
    s.unmount_container("c2").unwrap();

    // export gives the flattened filesystem
    let mut tar = Vec::new();
    s.export_container("c2", &mut tar).unwrap();
    let mut names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["bin/", "data/", "data/file", "etc/", "etc/hostname"]
    );

    // rmi rules
    let err = s
        .remove_image(&id.to_string(), &longshore_graph::RemoveOptions::new())
        .unwrap_err();
    assert!(err.to_string().contains("dependent child images"), "{err}");
    let err = s
        .remove_image("derived:v1", &longshore_graph::RemoveOptions::new())
        .unwrap_err();
    assert!(err.to_string().contains("must force"), "{err}");
    s.remove_container("c2").unwrap();
    s.remove_container("c1").unwrap();
    assert!(matches!(
        s.mount_container("c1"),
        Err(Error::LayerNotFound(_))
    ));
    s.tag("derived:v1", "other/repo:x").unwrap();
    let err = s
        .remove_image(&new.to_string(), &longshore_graph::RemoveOptions::new())
        .unwrap_err();
    assert!(err.to_string().contains("multiple repositories"), "{err}");
    assert_eq!(
        s.remove_image("other/repo:x", &longshore_graph::RemoveOptions::new())
            .unwrap(),
        vec![Removed::Untagged("other/repo:x".into())]
    );
    s.untag_for_test("base:1");
    // last tag of derived: deleted, and the now untagged parent pruned
    let out = s
        .remove_image("derived:v1", &longshore_graph::RemoveOptions::new())
        .unwrap();
    assert_eq!(
        out,
        vec![
            Removed::Untagged("derived:v1".into()),
            Removed::Deleted(new.clone()),
            Removed::Deleted(id.clone()),
        ]
    );
    assert!(s.images().unwrap().is_empty());
    assert!(s.db_layers_for_test().is_empty(), "all layers released");
    let check = s.check(false).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert!(
        s.content().list().unwrap().is_empty(),
        "blobs of deleted layers removed"
    );
    drop(s);
    assert!(!mounted_under(tmp.path()));
}

trait TestHooks {
    fn untag_for_test(&self, r: &str);
    fn db_layers_for_test(&self) -> Vec<String>;
}

impl TestHooks for Store {
    fn untag_for_test(&self, r: &str) {
        // `docker rmi tag` on an image with children only untags
        let out = self
            .remove_image(r, &longshore_graph::RemoveOptions::new())
            .unwrap();
        assert_eq!(out, vec![Removed::Untagged(r.to_string())]);
    }
    fn db_layers_for_test(&self) -> Vec<String> {
        let d = self.driver();
        let mut v = Vec::new();
        for e in fs::read_dir(d.home()).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            if n.len() == 64 {
                v.push(n);
            }
        }
        if d.name() == "vfs" {
            v = fs::read_dir(d.home().join("dir"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
        }
        v
    }
}

#[test]
fn import_commit_history_overlay() {
    import_commit_history("overlay");
}

#[test]
fn import_commit_history_vfs() {
    import_commit_history("vfs");
}

#[test]
fn layer_limit_is_enforced() {
    longshore_test_support::require_root!();
    let tmp = tempdir("store");
    let s = open(tmp.path(), "overlay");
    let mut parent: Option<String> = None;
    for i in 0..127 {
        let t = TarBuilder::new().file(&format!("f{i}"), b"").finish();
        let l = s.register_layer(parent.as_deref(), &t[..]).unwrap();
        assert_eq!(l.depth, i + 1);
        parent = Some(l.cache_id);
    }
    let t = TarBuilder::new().file("one-too-many", b"").finish();
    let err = s.register_layer(parent.as_deref(), &t[..]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooManyLayers {
                count: 128,
                max: 127
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("limit of 127"));
    let gc = s.gc().unwrap();
    assert_eq!(
        gc.layers_removed.len(),
        127,
        "unreferenced layers collected"
    );
}

fn save_load(format: ArchiveFormat) {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "overlay");
    let id = s.import(&rootfs_tar()[..], Some("app:1"), None).unwrap();
    s.create_container("c", "app:1").unwrap();
    let root = s.mount_container("c").unwrap();
    fs::write(root.join("new"), b"new").unwrap();
    s.unmount_container("c").unwrap();
    let id2 = s
        .commit("c", &CommitOptions::new().reference("app:2"))
        .unwrap();
    let mut archive = Vec::new();
    s.save(&["app:1", "app:2"], format, &mut archive).unwrap();

    let b = tempdir("store");
    let t = open(b.path(), "vfs");
    let loaded = t.load(&archive[..]).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].0, id);
    assert_eq!(loaded[1].0, id2);
    assert_eq!(t.resolve("app:1").unwrap(), id);
    assert_eq!(t.resolve("app:2").unwrap(), id2);
    assert_eq!(
        t.image("app:2").unwrap().diff_ids,
        s.image("app:2").unwrap().diff_ids
    );
    t.create_container("x", "app:2").unwrap();
    let r = t.mount_container("x").unwrap();
    assert_eq!(fs::read(r.join("new")).unwrap(), b"new");
    assert_eq!(fs::read(r.join("etc/hostname")).unwrap(), b"box\n");
    t.unmount_container("x").unwrap();
    // the shared base layer was stored once
    assert_eq!(t.images().unwrap().len(), 2);
    // loading again changes nothing
    t.load(&archive[..]).unwrap();
    assert_eq!(t.images().unwrap().len(), 2);
    assert!(t.check(false).unwrap().problems.is_empty());
}

#[test]
fn load_reports_each_new_layers_progress() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "vfs");
    // a layer of 3 MB (read in 1 MiB chunks: reported at least twice on the way) under a
    // small one
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let base = TarBuilder::new().file("big", &big).finish();
    s.import(&base[..], Some("prog:1"), None).unwrap();
    s.create_container("c", "prog:1").unwrap();
    let root = s.mount_container("c").unwrap();
    fs::write(root.join("small"), b"small").unwrap();
    s.unmount_container("c").unwrap();
    s.commit("c", &CommitOptions::new().reference("prog:2"))
        .unwrap();
    let mut archive = Vec::new();
    s.save(&["prog:2"], ArchiveFormat::Docker, &mut archive)
        .unwrap();

    let b = tempdir("store");
    let t = open(b.path(), "vfs");
    let seen = std::sync::Mutex::new(Vec::new());
    let record = |p: longshore_graph::LoadProgress<'_>| {
        seen.lock()
            .unwrap()
            .push((p.diff_id.clone(), p.current, p.total))
    };
    t.load_with_progress(&archive[..], &record).unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let diff_ids = s.image("prog:2").unwrap().diff_ids;
    assert_eq!(diff_ids.len(), 2);
    for (i, d) in diff_ids.iter().enumerate() {
        let mine: Vec<(u64, u64)> = seen
            .iter()
            .filter(|(x, _, _)| x == d)
            .map(|(_, c, t)| (*c, *t))
            .collect();
        assert!(mine.len() >= 2, "layer {i}: {mine:?}");
        let total = mine[0].1;
        assert!(
            total > 0 && mine.iter().all(|(_, t)| *t == total),
            "{mine:?}"
        );
        assert_eq!(mine.first().unwrap().0, 0, "starts at 0: {mine:?}");
        assert_eq!(mine.last().unwrap().0, total, "ends complete: {mine:?}");
        assert!(mine.windows(2).all(|w| w[0].0 <= w[1].0), "{mine:?}");
        if i == 0 {
            assert!(total > 3_000_000, "{total}");
            assert!(
                mine.iter().filter(|(c, _)| *c > 0 && *c < total).count() >= 2,
                "steps of 512 KiB while reading: {mine:?}"
            );
        }
    }
    // layers in order: all of the base's reports before the top's
    let first_top = seen.iter().position(|(x, _, _)| *x == diff_ids[1]).unwrap();
    assert!(seen[first_top..].iter().all(|(x, _, _)| *x == diff_ids[1]));
    // a second load has nothing new to read, so reports nothing
    let again = std::sync::Mutex::new(0);
    t.load_with_progress(&archive[..], &|_| *again.lock().unwrap() += 1)
        .unwrap();
    assert_eq!(*again.lock().unwrap(), 0);
    assert_eq!(t.resolve("prog:2").unwrap(), s.resolve("prog:2").unwrap());
}

#[test]
fn save_load_docker_archive() {
    save_load(ArchiveFormat::Docker);
}

#[test]
fn save_load_oci_layout() {
    save_load(ArchiveFormat::Oci);
}

#[test]
fn load_what_skopeo_writes() {
    longshore_test_support::require_root!();
    if Command::new("skopeo").arg("--version").output().is_err() {
        longshore_test_support::skip!("skopeo is not installed (apt-get install -y skopeo)");
    }
    let a = tempdir("store");
    let s = open(a.path(), "overlay");
    // a real busybox root filesystem, tarred by tar(1)
    let rootfs = a.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    longshore_test_support::busybox_rootfs(&rootfs).unwrap();
    let rootfs_tar = a.path().join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf"])
        .arg(&rootfs_tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let id = s
        .import(fs::File::open(&rootfs_tar).unwrap(), Some("bb:1"), None)
        .unwrap();
    let docker_archive = a.path().join("docker.tar");
    s.save(
        &["bb:1"],
        ArchiveFormat::Docker,
        fs::File::create(&docker_archive).unwrap(),
    )
    .unwrap();
    let oci_archive = a.path().join("oci.tar");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", docker_archive.display()))
        .arg(format!("oci-archive:{}:bb:copied", oci_archive.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = tempdir("store");
    let t = open(b.path(), "overlay");
    if std::env::var("LONGSHORE_DEBUG_KEEP").is_ok() {
        fs::copy(&oci_archive, "/tmp/longshore-debug-oci.tar").unwrap();
        fs::copy(&docker_archive, "/tmp/longshore-debug-docker.tar").unwrap();
    }
    let loaded = t.load(fs::File::open(&oci_archive).unwrap()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].1, vec!["bb:copied"]);
    // skopeo gzips the layer and re-serialises the config (new image ID), same diff IDs
    let diff_ids = s.image("bb:1").unwrap().diff_ids;
    assert_eq!(t.image("bb:copied").unwrap().diff_ids, diff_ids);
    let gz_layer = t.layer_by_chain(&diff_ids[0]).unwrap().unwrap();
    assert_eq!(
        gz_layer.media_type.as_deref(),
        Some("application/vnd.oci.image.layer.v1.tar+gzip")
    );
    let _ = id;
    t.create_container("c", "bb:copied").unwrap();
    let r = t.mount_container("c").unwrap();
    assert!(r.join("bin/busybox").is_file());
    t.unmount_container("c").unwrap();
    // and the docker-archive written by skopeo from that OCI archive loads too
    let again = a.path().join("again.tar");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci-archive:{}", oci_archive.display()))
        .arg(format!("docker-archive:{}:bb:again", again.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded = t.load(fs::File::open(&again).unwrap()).unwrap();
    assert_eq!(loaded[0].1, vec!["bb:again"]);
    assert_eq!(t.image("bb:again").unwrap().diff_ids, diff_ids);
}

#[test]
fn hostile_archives_are_refused() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "vfs");
    let manifest = br#"[{"Config":"../../../etc/passwd","RepoTags":[],"Layers":[]}]"#;
    let tar = TarBuilder::new().file("manifest.json", manifest).finish();
    let err = s.load(&tar[..]).unwrap_err();
    assert!(err.to_string().contains("unsafe path"), "{err}");
    // a layer whose content does not match the config's diff ID
    let layer = TarBuilder::new().file("x", b"x").finish();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(b"something else").to_string()]}
    }))
    .unwrap();
    let manifest = br#"[{"Config":"config.json","RepoTags":["evil:1"],"Layers":["layer.tar"]}]"#;
    let tar = TarBuilder::new()
        .file("config.json", &config)
        .file("layer.tar", &layer)
        .file("manifest.json", manifest)
        .finish();
    let err = s.load(&tar[..]).unwrap_err();
    assert!(err.to_string().contains("diff ID"), "{err}");
    assert!(s.images().unwrap().is_empty());
    assert!(
        s.db_layers_for_test().is_empty(),
        "the mismatching layer was removed"
    );
}

#[test]
fn check_and_gc() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "vfs");
    let id = s.import(&rootfs_tar()[..], Some("x:1"), None).unwrap();
    let orphan = s.content().write_blob(b"nobody needs me", None).unwrap();
    // an ingest in progress protects blobs committed after it started
    let gc = s.gc().unwrap();
    assert_eq!(gc.blobs_removed, vec![orphan.clone()]);
    let _w = s
        .content()
        .writer("pull-in-progress", longshore_graph::Algorithm::Sha256)
        .unwrap();
    let fresh = s.content().write_blob(b"part of the pull", None).unwrap();
    assert!(s.gc().unwrap().blobs_removed.is_empty());
    assert!(s.content().exists(&fresh));
    // a corrupted config blob is found
    let p = s.content().blob_path(&id);
    let mut perm = fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    fs::set_permissions(&p, perm).unwrap();
    fs::write(&p, b"{}").unwrap();
    let rep = s.check(false).unwrap();
    assert!(
        rep.problems.iter().any(|p| p.contains("corrupt")),
        "{:?}",
        rep.problems
    );
}

/// Crash test: a child process is SIGKILLed while it writes a layer; reopening the store
/// removes the half-written layer and leaves a consistent store.
#[test]
fn crash_mid_layer_write_is_cleaned_at_open() {
    if let Ok(root) = std::env::var("LONGSHORE_GRAPH_CRASH_CHILD") {
        crash_child(Path::new(&root));
        return;
    }
    longshore_test_support::require_root!();
    let a = tempdir("store");
    {
        let s = open(a.path(), "overlay");
        s.import(&rootfs_tar()[..], Some("keep:1"), None).unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_mid_layer_write_is_cleaned_at_open",
            "--nocapture",
        ])
        .env("LONGSHORE_GRAPH_CRASH_CHILD", a.path())
        .spawn()
        .unwrap();
    let marker = a.path().join("child-writing");
    let mut waited = 0;
    while !marker.exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
        assert!(waited < 1200, "child never started writing");
        if let Some(st) = child.try_wait().unwrap() {
            panic!("child exited early: {st}");
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // the child left an incomplete layer and a partial ingest behind
    let s = open(a.path(), "overlay");
    let rep = s.check(false).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert_eq!(s.images().unwrap().len(), 1);
    assert!(
        s.content().ingests().unwrap().is_empty(),
        "partial ingest removed"
    );
    let layer_dirs: Vec<_> = fs::read_dir(s.driver().home())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            (n.len() == 64).then_some(n)
        })
        .collect();
    assert_eq!(
        layer_dirs.len(),
        1,
        "only the imported layer remains: {layer_dirs:?}"
    );
    s.create_container("after", "keep:1").unwrap();
    s.remove_container("after").unwrap();
}

/// Runs in the child: starts a layer whose stream stalls forever after 1 MB.
fn crash_child(root: &Path) {
    struct Stall {
        sent: usize,
        marker: std::path::PathBuf,
        gz: Vec<u8>,
    }
    impl Read for Stall {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.sent >= self.gz.len() / 2 {
                fs::write(&self.marker, b"").unwrap();
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
            let n = buf.len().min(self.gz.len() / 2 - self.sent).min(4096);
            buf[..n].copy_from_slice(&self.gz[self.sent..self.sent + n]);
            self.sent += n;
            Ok(n)
        }
    }
    let mut tb = TarBuilder::new();
    for i in 0..200 {
        tb.file(&format!("f{i}"), &vec![i as u8; 10_000]);
    }
    let gz = gzip(&tb.finish());
    let s = Store::open(root, StoreOptions::new().driver("overlay")).unwrap();
    let stall = Stall {
        sent: 0,
        marker: root.join("child-writing"),
        gz,
    };
    let _ = s.register_layer(None, stall);
    unreachable!("the parent kills us while we write");
}

#[test]
fn rmi_rules() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "vfs");
    let id = s.import(&rootfs_tar()[..], Some("app:1"), None).unwrap();
    s.tag("app:1", "app:2").unwrap();
    s.tag("app:1", "app:latest").unwrap();
    // by ID, all tags in one repository: untag all and delete, no force needed
    let out = s
        .remove_image(&id.to_string(), &longshore_graph::RemoveOptions::new())
        .unwrap();
    assert_eq!(
        out,
        vec![
            Removed::Untagged("app:1".into()),
            Removed::Untagged("app:2".into()),
            Removed::Untagged("app:latest".into()),
            Removed::Deleted(id.clone()),
        ]
    );
    assert!(s.images().unwrap().is_empty());

    // a stopped container's image: by ID needs force; forced, it is deleted (Docker's
    // rules) while the container keeps working: mount, commit, check
    let id = s.import(&rootfs_tar()[..], Some("app:1"), None).unwrap();
    s.create_container("c", "app:1").unwrap();
    let err = s
        .remove_image(&id.hex()[..12], &longshore_graph::RemoveOptions::new())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("being used by stopped container c"),
        "{err}"
    );
    let out = s
        .remove_image(
            &id.hex()[..12],
            &longshore_graph::RemoveOptions::new().force(true),
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            Removed::Untagged("app:1".into()),
            Removed::Deleted(id.clone())
        ]
    );
    assert!(matches!(
        s.image(&id.to_string()),
        Err(Error::ImageNotFound(_))
    ));
    assert!(s.images().unwrap().is_empty());
    assert!(s.check(false).unwrap().problems.is_empty());
    assert!(
        s.gc().unwrap().layers_removed.is_empty(),
        "the container's layers stay"
    );
    let root = s.mount_container("c").unwrap();
    assert_eq!(fs::read(root.join("etc/hostname")).unwrap(), b"box\n");
    fs::write(root.join("new"), b"n").unwrap();
    s.unmount_container("c").unwrap();
    let committed = s.commit("c", &CommitOptions::default()).unwrap();
    let h = s.history(&committed.to_string()).unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(
        s.remove_image(
            &committed.to_string(),
            &longshore_graph::RemoveOptions::new()
        )
        .unwrap()
        .len(),
        1
    );
    // removing the container frees what only it held: config blob and layers
    s.remove_container("c").unwrap();
    assert!(!s.content().exists(&id));
    assert!(s.check(false).unwrap().problems.is_empty());
    assert!(
        s.gc().unwrap().layers_removed.is_empty(),
        "nothing left to collect"
    );
    // by its last tag, forced: the same
    let id = s.import(&rootfs_tar()[..], Some("app:1"), None).unwrap();
    s.create_container("c", "app:1").unwrap();
    let err = s
        .remove_image("app:1", &longshore_graph::RemoveOptions::new())
        .unwrap_err();
    assert!(err.to_string().contains("must force"), "{err}");
    let out = s
        .remove_image("app:1", &longshore_graph::RemoveOptions::new().force(true))
        .unwrap();
    assert_eq!(
        out,
        vec![
            Removed::Untagged("app:1".into()),
            Removed::Deleted(id.clone())
        ]
    );
    s.remove_container("c").unwrap();
    assert!(s.check(false).unwrap().problems.is_empty());

    // --no-prune keeps the untagged parent
    let base = s.import(&rootfs_tar()[..], None, None).unwrap();
    s.create_container("c2", &base.to_string()).unwrap();
    let child = s
        .commit("c2", &CommitOptions::new().reference("child:1"))
        .unwrap();
    s.remove_container("c2").unwrap();
    let out = s
        .remove_image(
            "child:1",
            &longshore_graph::RemoveOptions::new().prune(false),
        )
        .unwrap();
    assert_eq!(
        out,
        vec![Removed::Untagged("child:1".into()), Removed::Deleted(child)]
    );
    assert!(
        s.image(&base.to_string()).is_ok(),
        "parent kept with no_prune"
    );
    assert!(matches!(
        s.remove_image("nope:1", &longshore_graph::RemoveOptions::new()),
        Err(Error::ImageNotFound(_))
    ));
    // tags and references are validated
    assert!(matches!(
        s.tag(&base.to_string(), "Bad:Name"),
        Err(Error::InvalidReference { .. })
    ));
    assert!(s.check(false).unwrap().problems.is_empty());
}

#[test]
fn archive_symlinks_are_not_followed() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "vfs");
    let manifest = br#"[{"Config":"cfg.json","RepoTags":[],"Layers":["layer.tar"]}]"#;
    let tar = TarBuilder::new()
        .symlink("cfg.json", "/etc/passwd")
        .symlink("layer.tar", "/dev/zero")
        .file("manifest.json", manifest)
        .finish();
    let err = s.load(&tar[..]).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(s.images().unwrap().is_empty());
}

#[test]
fn load_legacy_docker_save_layout() {
    longshore_test_support::require_root!();
    // what `docker save` wrote before Docker 25: <id>/layer.tar, <config hex>.json
    let layer = rootfs_tar();
    let diff = Digest::sha256_of(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2015-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]},
        "history": [{"created": "2015-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file"}]
    }))
    .unwrap();
    let id = Digest::sha256_of(&config);
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["legacy:1.4"],"Layers":["0123abcd/layer.tar"]}}]"#,
        id.hex()
    );
    let tar = TarBuilder::new()
        .dir("0123abcd/", 0o755)
        .file("0123abcd/VERSION", b"1.0")
        .file("0123abcd/layer.tar", &layer)
        .file(&format!("{}.json", &id.hex()[..40]), b"wrong name, ignored")
        .long(&format!("{}.json", id.hex()), &config)
        .file("manifest.json", manifest.as_bytes())
        .file("repositories", br#"{"legacy":{"1.4":"0123abcd"}}"#)
        .finish();
    let a = tempdir("store");
    let s = open(a.path(), "overlay");
    let loaded = s.load(&tar[..]).unwrap();
    assert_eq!(loaded, vec![(id.clone(), vec!["legacy:1.4".to_string()])]);
    let h = s.history("legacy:1.4").unwrap();
    assert_eq!(h[0].created_by, "/bin/sh -c #(nop) ADD file");
    assert_eq!(h[0].size, 12 + 4);
}

#[test]
fn register_layer_from_pulled_blob() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "overlay");
    let gz = gzip(&rootfs_tar());
    // a pull writes the blob through the content store first
    let blob = s.content().write_blob(&gz, None).unwrap();
    let l = s.register_layer_blob(None, &blob).unwrap();
    assert_eq!(l.diff_id, Some(Digest::sha256_of(&rootfs_tar())));
    assert_eq!(l.blob_digest, Some(blob.clone()));
    assert_eq!(
        l.media_type.as_deref(),
        Some("application/vnd.oci.image.layer.v1.tar+gzip")
    );
    // a blob corrupted on disk is refused and leaves no layer behind
    let other = gzip(&TarBuilder::new().file("x", b"x").finish());
    let d = s.content().write_blob(&other, None).unwrap();
    let p = s.content().blob_path(&d);
    let mut perm = fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    fs::set_permissions(&p, perm).unwrap();
    let mut bad = other.clone();
    let n = bad.len();
    bad[n - 5] ^= 0xff; // the gzip trailer's size field: decompresses, but the digest differs
    fs::write(&p, &bad).unwrap();
    let err = s.register_layer_blob(Some(&l.cache_id), &d).unwrap_err();
    assert!(
        matches!(err, Error::BlobCorrupt { .. } | Error::InvalidLayer(_)),
        "{err}"
    );
    let gc = s.gc().unwrap();
    assert_eq!(
        gc.layers_removed,
        vec![l.cache_id.clone()],
        "only the good, unreferenced layer"
    );
}

/// Unmounts whatever a killed child left mounted under a directory.
struct MountSweeper(std::path::PathBuf);

impl Drop for MountSweeper {
    fn drop(&mut self) {
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.0.to_string_lossy().into_owned();
        let mut points: Vec<String> = mi
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = rustix::mount::unmount(p.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// Crash test over many operations: a child loops import / container / commit / save / load /
/// rmi and is SIGKILLed at a different moment each round; every reopen must find a store
/// that `check` calls consistent and that keeps working.
#[test]
fn killed_at_random_points_the_store_stays_consistent() {
    if let Ok(root) = std::env::var("LONGSHORE_GRAPH_CHURN_CHILD") {
        churn_child(Path::new(&root));
        return;
    }
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let _sweep = MountSweeper(a.path().to_path_buf());
    for round in 0..4u64 {
        let marker = a.path().join("churning");
        let _ = fs::remove_file(&marker);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "killed_at_random_points_the_store_stays_consistent",
                "--quiet",
            ])
            .env("LONGSHORE_GRAPH_CHURN_CHILD", a.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut waited = 0;
        while !marker.exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
            waited += 1;
            assert!(waited < 3000, "child never started");
            if let Some(st) = child.try_wait().unwrap() {
                panic!("child exited early: {st}");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(37 + round * 131));
        child.kill().unwrap();
        child.wait().unwrap();
        // a killed process cannot unmount: the mounts it left behind are stale, not harmful
        let s = open(a.path(), "overlay");
        let rep = s.check(false).unwrap();
        assert!(rep.problems.is_empty(), "round {round}: {:?}", rep.problems);
        // and the store still works end to end
        s.import(&rootfs_tar()[..], Some("probe:1"), None).unwrap();
        s.create_container("probe", "probe:1").unwrap();
        let r = s.mount_container("probe").unwrap();
        assert!(r.join("etc/hostname").exists());
        s.unmount_container("probe").unwrap();
        s.remove_container("probe").unwrap();
        s.remove_image("probe:1", &longshore_graph::RemoveOptions::new())
            .unwrap();
    }
    // the sweeper unmounts what the last child left mounted before the tempdir goes
}

fn churn_child(root: &Path) {
    let s = Store::open(root, StoreOptions::new().driver("overlay")).unwrap();
    let archive = root.join("churn-save.tar");
    for i in 0u64.. {
        let base = format!("churn-base:{i}");
        s.import(&gzip(&rootfs_tar())[..], Some(&base), None)
            .unwrap();
        let c = format!("churn{i}");
        s.create_container(&c, &base).unwrap();
        let r = s.mount_container(&c).unwrap();
        for j in 0..50 {
            fs::write(r.join(format!("f{j}")), vec![j as u8; 20_000]).unwrap();
        }
        s.unmount_container(&c).unwrap();
        let img = format!("churn-img:{i}");
        s.commit(&c, &CommitOptions::new().reference(img.clone()))
            .unwrap();
        s.save(
            &[&img],
            ArchiveFormat::Docker,
            fs::File::create(&archive).unwrap(),
        )
        .unwrap();
        s.remove_container(&c).unwrap();
        s.remove_image(&img, &longshore_graph::RemoveOptions::new())
            .unwrap();
        s.load(fs::File::open(&archive).unwrap()).unwrap();
        s.remove_image(&img, &longshore_graph::RemoveOptions::new())
            .unwrap();
        let _ = s.remove_image(&base, &longshore_graph::RemoveOptions::new());
        if i == 0 {
            fs::write(root.join("churning"), b"").unwrap();
        }
    }
}

#[test]
fn several_stores_share_a_root_and_crash_leftovers_wait_until_one_is_alone() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let first = open(a.path(), "vfs");
    // what a crashed process left: a half-created layer directory
    let leftover = a.path().join("vfs/dir/.tmp-crashed");
    fs::create_dir(&leftover).unwrap();
    // a second store on the same root (another process would do the same): not alone, so
    // it must not remove what may be another user's work in progress
    let second = open(a.path(), "vfs");
    assert!(
        leftover.exists(),
        "removed while another user had the store open"
    );
    second
        .import(&gzip(&rootfs_tar())[..], Some("shared:1"), None)
        .unwrap();
    assert!(
        first.image("shared:1").is_ok(),
        "one store sees the other's image"
    );
    drop(first);
    drop(second);
    // alone: the leftover goes
    let third = open(a.path(), "vfs");
    assert!(!leftover.exists());
    assert!(third.check(false).unwrap().problems.is_empty());
}

#[test]
fn manifest_for_push_references_stored_blobs() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "vfs");
    s.import(&gzip(&rootfs_tar())[..], Some("push:1"), None)
        .unwrap();
    let (bytes, layers) = s.manifest("push:1").unwrap();
    let longshore_graph::image::Parsed::Manifest {
        config,
        layers: descs,
    } = longshore_graph::image::parse(&bytes).unwrap()
    else {
        panic!("not a manifest")
    };
    assert_eq!(config.digest, s.resolve("push:1").unwrap());
    assert_eq!(descs.len(), 1);
    assert_eq!(
        descs[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(Some(&descs[0].digest), layers[0].blob_digest.as_ref());
    // the blob is there, and hashes to its name
    s.content().verify(&descs[0].digest).unwrap();
    assert_eq!(s.content().size(&descs[0].digest).unwrap(), descs[0].size);
}

/// Three layers: a base, one that changes, deletes (whiteout) and adds, one that empties a
/// directory (opaque) and adds to it.
fn three_layers() -> [Vec<u8>; 3] {
    [
        gzip(&rootfs_tar()),
        gzip(
            &TarBuilder::new()
                .file("etc/hostname", b"changed\n")
                .file("bin/.wh.sh", b"")
                .dir("a/", 0o755)
                .file("a/b", b"b")
                .dir("keep/", 0o755)
                .file("keep/old", b"old")
                .finish(),
        ),
        gzip(
            &TarBuilder::new()
                .file("a/c", b"c")
                .dir("keep/", 0o755)
                .file("keep/.wh..wh..opq", b"")
                .file("keep/new", b"new")
                .finish(),
        ),
    ]
}

#[test]
fn staged_layers_unpack_at_once_and_attach_in_order() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "overlay");
    assert!(s.supports_staging());
    let blobs: Vec<Digest> = three_layers()
        .iter()
        .map(|b| s.content().write_blob(b, None).unwrap())
        .collect();
    // all three unpack at the same time, on their own threads, before any has a parent
    let mut staged: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = blobs
            .iter()
            .rev()
            .map(|b| sc.spawn(|| s.stage_layer_blob(b).unwrap()))
            .collect();
        handles
            .into_iter()
            .rev()
            .map(|h| h.join().unwrap())
            .collect()
    });
    let l3 = staged.pop().unwrap();
    let l2 = staged.pop().unwrap();
    let l1 = staged.pop().unwrap();
    assert_eq!(l1.diff_id(), &Digest::sha256_of(&rootfs_tar()));
    // a staged layer is invisible: incomplete, not found by chain
    assert!(s.layer(l1.cache_id()).unwrap().unwrap().incomplete);
    assert!(s.layer_by_chain(l1.diff_id()).unwrap().is_none());
    // a parent must be complete
    let l2_id = l2.cache_id().to_string();
    let err = s.attach_layer(l2, Some(l3.cache_id())).unwrap_err();
    assert!(matches!(err, Error::LayerNotFound(_)), "{err}");
    assert!(
        s.layer(&l2_id).unwrap().is_none(),
        "a failed attach discards"
    );
    assert!(!s.driver().exists(&l2_id));
    let r1 = s.attach_layer(l1, None).unwrap();
    let l2 = s.stage_layer_blob(&blobs[1]).unwrap();
    let r2 = s.attach_layer(l2, Some(&r1.cache_id)).unwrap();
    let r3 = s.attach_layer(l3, Some(&r2.cache_id)).unwrap();
    assert_eq!(r3.parent_cache.as_deref(), Some(r2.cache_id.as_str()));
    assert_eq!((r1.depth, r2.depth, r3.depth), (1, 2, 3));
    assert_eq!(r3.blob_digest.as_ref(), Some(&blobs[2]));
    // the same chain as registering one after the other
    let b = tempdir("store");
    let t = open(b.path(), "overlay");
    let mut parent: Option<String> = None;
    let mut seq = Vec::new();
    for blob in three_layers() {
        let d = t.content().write_blob(&blob, None).unwrap();
        let row = t.register_layer_blob(parent.as_deref(), &d).unwrap();
        parent = Some(row.cache_id.clone());
        seq.push(row.chain_id.clone());
    }
    assert_eq!(
        vec![
            r1.chain_id.clone(),
            r2.chain_id.clone(),
            r3.chain_id.clone()
        ],
        seq
    );
    // and the same filesystem when mounted
    let merged = s.driver().get(&r3.cache_id).unwrap();
    assert_eq!(fs::read(merged.join("etc/hostname")).unwrap(), b"changed\n");
    assert!(!merged.join("bin/sh").exists(), "the whiteout hides bin/sh");
    assert_eq!(fs::read(merged.join("a/b")).unwrap(), b"b");
    assert_eq!(fs::read(merged.join("a/c")).unwrap(), b"c");
    assert!(
        !merged.join("keep/old").exists(),
        "the opaque dir hides keep/old"
    );
    assert_eq!(fs::read(merged.join("keep/new")).unwrap(), b"new");
    s.driver().put(&r3.cache_id).unwrap();
    // a second staging of a chain that exists is discarded in favour of the existing layer
    let again = s.stage_layer_blob(&blobs[0]).unwrap();
    let again_id = again.cache_id().to_string();
    assert_eq!(s.attach_layer(again, None).unwrap().cache_id, r1.cache_id);
    assert!(!s.driver().exists(&again_id));
}

#[test]
fn staging_refuses_corrupt_blobs_vfs_and_is_cleaned_after_a_crash() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "overlay");
    let [base, ..] = three_layers();
    let d = s.content().write_blob(&base, None).unwrap();
    // corrupt the stored blob: the digest check refuses it and no layer stays
    let p = s.content().blob_path(&d);
    let mut perm = fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    fs::set_permissions(&p, perm).unwrap();
    let mut bad = base.clone();
    let n = bad.len();
    bad[n - 5] ^= 0xff;
    fs::write(&p, &bad).unwrap();
    let err = s.stage_layer_blob(&d).unwrap_err();
    assert!(
        matches!(err, Error::BlobCorrupt { .. } | Error::InvalidLayer(_)),
        "{err}"
    );
    fs::write(&p, &base).unwrap();
    let layers_dir = |root: &Path| {
        fs::read_dir(root.join("overlay"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "l" && !n.starts_with('.'))
            .count()
    };
    assert_eq!(
        layers_dir(a.path()),
        0,
        "the refused layer left a directory"
    );
    // staged and never attached (the process dies): gone at the next open
    let staged = s.stage_layer_blob(&d).unwrap();
    let id = staged.cache_id().to_string();
    std::mem::forget(staged);
    drop(s);
    let s = open(a.path(), "overlay");
    assert!(s.layer(&id).unwrap().is_none());
    assert!(!s.driver().exists(&id));
    // vfs layers start as copies of their parents: staging is refused with a clear error
    let b = tempdir("store");
    let v = open(b.path(), "vfs");
    assert!(!v.supports_staging());
    let d = v.content().write_blob(&base, None).unwrap();
    let err = v.stage_layer_blob(&d).unwrap_err();
    assert!(
        err.to_string().contains("vfs driver cannot unpack"),
        "{err}"
    );
}

#[test]
fn gc_keeps_what_a_lease_protects() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "overlay");
    // an old unreferenced blob and an unreferenced complete layer, as a pull in progress
    // would have them before it creates its image
    let old = s.content().write_blob(b"old blob", None).unwrap();
    let layer_blob = s.content().write_blob(&gzip(&rootfs_tar()), None).unwrap();
    let layer = s.register_layer_blob(None, &layer_blob).unwrap();
    let chain = layer.chain_id.clone().unwrap();
    let lease = s.lease();
    lease.add_blob(&old);
    lease.add_chain(&chain);
    let young = s
        .content()
        .write_blob(b"committed after the lease", None)
        .unwrap();
    let gc = s.gc().unwrap();
    assert!(
        gc.layers_removed.is_empty() && gc.blobs_removed.is_empty(),
        "{gc:?}"
    );
    assert!(s.content().exists(&old) && s.content().exists(&young));
    assert!(s.layer(&layer.cache_id).unwrap().is_some());
    // a second lease ending changes nothing while the first lives
    drop(s.lease());
    assert!(s.gc().unwrap().layers_removed.is_empty());
    drop(lease);
    let gc = s.gc().unwrap();
    assert_eq!(gc.layers_removed, vec![layer.cache_id.clone()]);
    for d in [&old, &young, &layer_blob] {
        assert!(!s.content().exists(d), "{d} kept: {gc:?}");
    }
    assert!(s.check(false).unwrap().problems.is_empty());
}

#[test]
fn removing_a_mounted_container_is_refused_and_changes_nothing() {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), "overlay");
    s.import(&rootfs_tar()[..], Some("app:1"), None).unwrap();
    s.create_container("busy", "app:1").unwrap();
    let root = s.mount_container("busy").unwrap();
    let err = s.remove_container("busy").unwrap_err();
    assert!(matches!(err, Error::LayerBusy { .. }), "{err}");
    // still there, still mounted, still removable once unmounted
    assert!(root.join("etc/hostname").exists());
    assert!(s.check(false).unwrap().problems.is_empty());
    s.unmount_container("busy").unwrap();
    drop(s);
    let s = open(a.path(), "overlay");
    assert!(
        s.mount_container("busy").is_ok(),
        "the container survived a reopen"
    );
    s.unmount_container("busy").unwrap();
    s.remove_container("busy").unwrap();
    assert!(s.check(false).unwrap().problems.is_empty());
}

/// A digest the store did not write (a row changed behind its back) is an error that names
/// the row, never taken for an absent value (a parent that vanishes, a tag that points
/// nowhere, a layer without a chain ID).
#[test]
fn corrupt_digest_in_the_database_is_an_error_naming_the_row() {
    let tmp = tempdir("corrupt-db");
    let id = open(tmp.path(), "vfs")
        .import(&rootfs_tar()[..], Some("base:1"), None)
        .unwrap();
    let db = rusqlite::Connection::open(tmp.path().join("metadata.db")).unwrap();
    // what corrupts a database does not check its foreign keys either
    db.pragma_update(None, "foreign_keys", false).unwrap();
    let cache_id: String = db
        .query_row("SELECT cache_id FROM layers", [], |r| r.get(0))
        .unwrap();
    let set = |sql: &str, key: &str| {
        assert_eq!(db.execute(sql, [key]).unwrap(), 1, "{sql}");
    };

    // an image's parent
    set(
        "UPDATE images SET parent_image = 'sha256:nothex' WHERE id = ?1",
        &id.to_string(),
    );
    let s = open(tmp.path(), "vfs");
    let err = s.image("base:1").unwrap_err();
    match &err {
        Error::CorruptRow(row) => {
            assert_eq!(
                (row.table, row.key.as_str(), row.column),
                ("images", id.to_string().as_str(), "parent_image")
            );
            assert_eq!(row.value, "sha256:nothex");
        }
        e => panic!("expected CorruptRow, got {e:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&id.to_string()) && msg.contains("parent_image"),
        "{msg}"
    );
    assert!(s.images().is_err(), "listing images reads the same row");
    drop(s);
    set(
        "UPDATE images SET parent_image = NULL WHERE id = ?1",
        &id.to_string(),
    );

    // the image a tag points at
    set(
        "UPDATE tags SET image_id = 'md5:d41d8cd98f00b204e9800998ecf8427e' WHERE reference = ?1",
        "docker.io/library/base:1",
    );
    let s = open(tmp.path(), "vfs");
    let msg = s.image("base:1").unwrap_err().to_string();
    assert!(
        msg.contains("tags row")
            && msg.contains("docker.io/library/base:1")
            && msg.contains("image_id"),
        "{msg}"
    );
    drop(s);
    set("UPDATE tags SET image_id = ?1", &id.to_string());
    assert!(open(tmp.path(), "vfs").image("base:1").is_ok());

    // a layer's diff ID: the store reads every layer when it opens
    set(
        "UPDATE layers SET diff_id = 'sha256:' WHERE cache_id = ?1",
        &cache_id,
    );
    let err = Store::open(tmp.path(), StoreOptions::new().driver("vfs"))
        .and_then(|s| s.check(false).map(|_| ()))
        .unwrap_err();
    assert!(
        matches!(&err, Error::CorruptRow(row) if (row.table, row.column, &row.key) == ("layers", "diff_id", &cache_id)),
        "{err:?}"
    );
}

/// `mount_container_at`: the container's filesystem where the caller wants it (a
/// container's root), not counted with `mount_container`; what is written there lands in
/// the container's layer, and the caller's unmount is all it takes.
fn mount_at_a_callers_target(driver: &str) {
    longshore_test_support::require_root!();
    let a = tempdir("store");
    let s = open(a.path(), driver);
    s.import(&rootfs_tar()[..], Some("app:1"), None).unwrap();
    s.create_container("held", "app:1").unwrap();
    let target = a.path().join("rootfs");
    fs::create_dir(&target).unwrap();
    let opts = longshore_graph::driver::MountOptions::default().volatile(true);
    s.mount_container_at("held", &target, opts).unwrap();
    assert!(mounted_under(&target), "nothing mounted at the target");
    assert_eq!(fs::read(target.join("etc/hostname")).unwrap(), b"box\n");
    fs::write(target.join("etc/hostname"), b"written\n").unwrap();
    // the store's own counted mount is another view of the same layer
    let root = s.mount_container("held").unwrap();
    assert_eq!(fs::read(root.join("etc/hostname")).unwrap(), b"written\n");
    s.unmount_container("held").unwrap();
    rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH).unwrap();
    assert!(!mounted_under(&target));
    let changes: Vec<String> = s
        .container_changes("held")
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert!(
        changes.iter().any(|c| c == "C /etc/hostname"),
        "{changes:?}"
    );
    // an unknown container is refused and mounts nothing
    assert!(matches!(
        s.mount_container_at("none", &target, Default::default()),
        Err(Error::LayerNotFound(_))
    ));
    assert!(!mounted_under(&target));
    s.remove_container("held").unwrap();
    assert!(s.check(false).unwrap().problems.is_empty());
}

#[test]
fn mount_at_a_callers_target_overlay() {
    mount_at_a_callers_target("overlay");
}

#[test]
fn mount_at_a_callers_target_vfs() {
    mount_at_a_callers_target("vfs");
}
