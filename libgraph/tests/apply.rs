//! Layer apply: formats, digests, metadata, whiteouts and the hostile tar set.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::{TarBuilder, gzip, listing, noise, tempdir, zstd};
use longshore_graph::{ApplyOptions, Compression, Digest, Error, WhiteoutMode, apply_layer};

fn opts(w: WhiteoutMode) -> ApplyOptions {
    ApplyOptions::new().whiteouts(w)
}

fn sample_tar() -> Vec<u8> {
    TarBuilder::new()
        .dir("etc/", 0o755)
        .file_full(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\n",
            0o644,
            0,
            0,
            1_400_000_000,
        )
        .dir("home/", 0o755)
        .dir("home/user/", 0o700)
        .file_full("home/user/notes", b"mine", 0o600, 1000, 1000, 1_300_000_000)
        .file_full("usr/bin/suid", b"#!", 0o4755, 0, 0, 1_500_000_000)
        .symlink("etc/mtab", "/proc/mounts")
        .symlink("etc/rel", "passwd")
        .hardlink("etc/passwd-link", "etc/passwd")
        .node("dev-null", tar::EntryType::Char, 1, 3)
        .node("fifo", tar::EntryType::Fifo, 0, 0)
        .xattr_file("xattr-file", b"x", &[("user.comment", b"hello")])
        .finish()
}

fn check_sample(root: &Path) {
    assert_eq!(
        fs::read(root.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    let m = fs::metadata(root.join("etc/passwd")).unwrap();
    assert_eq!(m.mtime(), 1_400_000_000);
    assert_eq!(m.nlink(), 2, "hardlink kept");
    assert_eq!(
        fs::metadata(root.join("etc/passwd-link")).unwrap().ino(),
        m.ino()
    );
    let n = fs::metadata(root.join("home/user/notes")).unwrap();
    assert_eq!((n.uid(), n.gid(), n.mode() & 0o7777), (1000, 1000, 0o600));
    assert_eq!(n.mtime(), 1_300_000_000);
    assert_eq!(
        fs::metadata(root.join("home/user")).unwrap().mode() & 0o7777,
        0o700
    );
    assert_eq!(
        fs::metadata(root.join("usr/bin/suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::read_link(root.join("etc/mtab")).unwrap().to_str(),
        Some("/proc/mounts")
    );
    assert_eq!(
        fs::read_link(root.join("etc/rel")).unwrap().to_str(),
        Some("passwd")
    );
    let d = fs::symlink_metadata(root.join("dev-null")).unwrap();
    assert!(d.file_type().is_char_device());
    assert_eq!(d.rdev(), libc::makedev(1, 3));
    assert!(
        fs::symlink_metadata(root.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let x = xattr_get(&root.join("xattr-file"), "user.comment");
    assert_eq!(x.as_deref(), Some(&b"hello"[..]));
    // directory mtimes are set after their children were written
    assert_eq!(
        fs::metadata(root.join("etc")).unwrap().mtime(),
        1_500_000_000
    );
}

fn xattr_get(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(p, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

#[test]
fn plain_gzip_zstd_give_the_same_tree_and_digests() {
    longshore_test_support::require_root!();
    let tar = sample_tar();
    let diff_id = Digest::sha256_of(&tar);
    for (data, kind) in [
        (tar.clone(), Compression::None),
        (gzip(&tar), Compression::Gzip),
        (zstd(&tar), Compression::Zstd),
    ] {
        let dir = tempdir("apply");
        let rep = apply_layer(&data[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap();
        assert_eq!(rep.compression, kind);
        assert_eq!(rep.diff_id, diff_id, "{kind:?}");
        assert_eq!(rep.digest, Digest::sha256_of(&data), "{kind:?}");
        assert_eq!(rep.compressed_size, data.len() as u64);
        assert_eq!(rep.tar_size, tar.len() as u64);
        check_sample(dir.path());
    }
}

#[test]
fn a_blob_the_caller_verifies_is_not_hashed_but_the_diff_id_is() {
    longshore_test_support::require_root!();
    let tar = sample_tar();
    let gz = gzip(&tar);
    // the digest the caller vouches for is reported as is; the diff ID is still computed
    let claimed = Digest::sha256_of(b"what the caller checks elsewhere");
    let dir = tempdir("apply");
    let o = opts(WhiteoutMode::Delete).verified_blob(Some(claimed.clone()));
    let rep = apply_layer(&gz[..], dir.path(), &o).unwrap();
    assert_eq!(rep.digest, claimed);
    assert_eq!(rep.diff_id, Digest::sha256_of(&tar));
    assert_eq!(rep.compressed_size, gz.len() as u64);
    check_sample(dir.path());
}

#[test]
fn corrupt_gzip_is_a_clear_error() {
    let tar = sample_tar();
    let mut gz = gzip(&tar);
    let mid = gz.len() / 2;
    gz.truncate(mid);
    let dir = tempdir("apply");
    let err = apply_layer(&gz[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap_err();
    assert!(matches!(err, Error::InvalidLayer(_)), "{err}");
}

#[test]
fn whiteouts_delete_mode() {
    longshore_test_support::require_root!();
    let dir = tempdir("apply");
    let base = TarBuilder::new()
        .dir("a/", 0o755)
        .file("a/old1", b"1")
        .dir("a/sub/", 0o755)
        .file("a/sub/old2", b"2")
        .file("keep", b"k")
        .file("gone", b"g")
        .dir("gonedir/", 0o755)
        .file("gonedir/f", b"f")
        .finish();
    apply_layer(&base[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap();
    let upper = TarBuilder::new()
        .dir("a/", 0o755)
        .file("a/new", b"n")
        .file("a/.wh..wh..opq", b"")
        .file(".wh.gone", b"")
        .file(".wh.gonedir", b"")
        .file(".wh.never-existed", b"")
        .finish();
    apply_layer(&upper[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap();
    assert_eq!(listing(dir.path()), vec!["a", "a/new", "keep"]);
}

#[test]
fn whiteouts_overlay_mode() {
    longshore_test_support::require_root!();
    let dir = tempdir("apply");
    let upper = TarBuilder::new()
        .dir("a/", 0o755)
        .file("a/.wh..wh..opq", b"")
        .file("a/new", b"n")
        .file(".wh.gone", b"")
        .file("deep/er/.wh.x", b"")
        .finish();
    apply_layer(&upper[..], dir.path(), &opts(WhiteoutMode::Overlay)).unwrap();
    let w = fs::symlink_metadata(dir.path().join("gone")).unwrap();
    assert!(w.file_type().is_char_device());
    assert_eq!(w.rdev(), 0);
    assert!(
        fs::symlink_metadata(dir.path().join("deep/er/x"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert_eq!(
        xattr_get(&dir.path().join("a"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(dir.path().join("a/new").exists());
    assert!(!dir.path().join(".wh.gone").exists());
}

#[test]
fn later_entries_replace_earlier_ones() {
    longshore_test_support::require_root!();
    let dir = tempdir("apply");
    let tar = TarBuilder::new()
        .file("x", b"file first")
        .dir("x/", 0o755)
        .file("x/inside", b"i")
        .symlink("y", "x")
        .file("y", b"now a file")
        .finish();
    apply_layer(&tar[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap();
    assert!(dir.path().join("x").is_dir());
    assert_eq!(fs::read(dir.path().join("x/inside")).unwrap(), b"i");
    assert!(
        fs::symlink_metadata(dir.path().join("y"))
            .unwrap()
            .is_file()
    );
}

/// Applies a hostile tar in `<tmp>/layer` next to `<tmp>/outside/secret` and checks that the
/// error is an UnsafeTarEntry and nothing outside the layer changed.
fn hostile(tar: Vec<u8>, want_in_msg: &str) {
    let tmp = tempdir("hostile");
    let layer = tmp.path().join("layer");
    let outside = tmp.path().join("outside");
    fs::create_dir(&layer).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    let before: Vec<String> = listing(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("layer"))
        .collect();
    let secret_meta = fs::metadata(outside.join("secret")).unwrap();
    let err = apply_layer(&tar[..], &layer, &opts(WhiteoutMode::Delete)).unwrap_err();
    assert!(matches!(err, Error::UnsafeTarEntry { .. }), "{err}");
    assert!(err.to_string().contains(want_in_msg), "{err}");
    let after: Vec<String> = listing(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("layer"))
        .collect();
    assert_eq!(
        before, after,
        "nothing created or removed outside the layer"
    );
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
    let m = fs::metadata(outside.join("secret")).unwrap();
    assert_eq!(m.mode(), secret_meta.mode());
    assert_eq!(m.nlink(), 1, "no hardlink made to the outside file");
    assert_eq!(
        (m.uid(), m.mtime()),
        (secret_meta.uid(), secret_meta.mtime())
    );
}

#[test]
fn hostile_dotdot_path() {
    hostile(
        TarBuilder::new().file("../outside/pwned", b"x").finish(),
        "'..'",
    );
    hostile(
        TarBuilder::new()
            .file("a/../../outside/pwned", b"x")
            .finish(),
        "'..'",
    );
}

#[test]
fn hostile_absolute_path() {
    hostile(
        TarBuilder::new()
            .file("/tmp/longshore-pwned", b"x")
            .finish(),
        "absolute",
    );
    assert!(!Path::new("/tmp/longshore-pwned").exists());
}

#[test]
fn hostile_relative_symlink_escape_then_write() {
    hostile(
        TarBuilder::new()
            .symlink("up", "../outside")
            .file("up/pwned", b"x")
            .finish(),
        "outside the layer",
    );
    hostile(
        TarBuilder::new()
            .symlink("up", "../outside")
            .file("up/secret", b"overwritten")
            .finish(),
        "outside the layer",
    );
}

#[test]
fn hostile_absolute_symlink_then_write() {
    // an absolute target can never be followed beneath the root
    hostile(
        TarBuilder::new()
            .symlink("abs", "/tmp")
            .file("abs/longshore-pwned-abs", b"x")
            .finish(),
        "outside the layer",
    );
    assert!(!Path::new("/tmp/longshore-pwned-abs").exists());
}

#[test]
fn hostile_symlink_replacing_a_directory_then_write() {
    // the parent directory is first real, then swapped for a symlink out: no stale handle
    // may be used, and the write must not follow the new symlink
    hostile(
        TarBuilder::new()
            .dir("d/", 0o755)
            .file("d/ok", b"fine")
            .symlink("d", "../outside")
            .file("d/pwned", b"x")
            .finish(),
        "outside the layer",
    );
}

#[test]
fn hostile_hardlinks() {
    hostile(
        TarBuilder::new()
            .hardlink("link", "../outside/secret")
            .finish(),
        "'..'",
    );
    hostile(
        TarBuilder::new()
            .symlink("up", "../outside")
            .hardlink("link", "up/secret")
            .finish(),
        "outside the layer",
    );
    hostile(
        TarBuilder::new().hardlink("link", "/etc/passwd").finish(),
        "absolute",
    );
}

#[test]
fn hostile_whiteout_through_symlink() {
    hostile(
        TarBuilder::new()
            .symlink("up", "../outside")
            .file("up/.wh.secret", b"")
            .finish(),
        "outside the layer",
    );
    hostile(
        TarBuilder::new()
            .file("../outside/.wh.secret", b"")
            .finish(),
        "'..'",
    );
}

#[test]
fn hostile_overlong_names() {
    let long_comp = "a".repeat(300);
    hostile(
        TarBuilder::new().long(&long_comp, b"x").finish(),
        "component",
    );
    let long_path = vec!["d".repeat(200); 25].join("/");
    hostile(TarBuilder::new().long(&long_path, b"x").finish(), "limit");
}

#[test]
fn writes_through_symlinks_inside_the_layer_are_allowed() {
    longshore_test_support::require_root!();
    let dir = tempdir("apply");
    let tar = TarBuilder::new()
        .dir("real/", 0o755)
        .symlink("alias", "real")
        .file("alias/f", b"via alias")
        .finish();
    apply_layer(&tar[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap();
    assert_eq!(fs::read(dir.path().join("real/f")).unwrap(), b"via alias");
}

#[test]
fn archiving_never_follows_symlinks_out_of_the_root() {
    use longshore_graph::archive::TarWriter;
    let dir = tempdir("archive");
    let root = dir.path();
    std::os::unix::fs::symlink("/etc", root.join("d")).unwrap();
    fs::create_dir(root.join("real")).unwrap();
    fs::write(root.join("real/f"), b"mine").unwrap();
    let mut w = TarWriter::new(Vec::new());
    // a container swapped directory "d" for a symlink to the host's /etc
    let err = w.append(root, "d/passwd").unwrap_err();
    assert!(matches!(err, Error::UnsafeTarEntry { .. }), "{err}");
    // the symlink itself and real files are archived
    w.append(root, "d").unwrap();
    w.append(root, "real").unwrap();
    w.append(root, "real/f").unwrap();
    let tar = w.finish().unwrap();
    let mut a = tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == "d" {
            assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
            assert_eq!(e.link_name().unwrap().unwrap().to_str(), Some("/etc"));
        }
        seen.push(p);
    }
    assert_eq!(seen, ["d", "real/", "real/f"]);
}

#[test]
fn unsupported_xattrs_are_skipped_like_docker() {
    longshore_test_support::require_root!();
    let dir = tempdir("apply");
    // the kernel refuses user.* xattrs on symlinks (EPERM): Docker skips those
    let tar = TarBuilder::new()
        .file("target", b"t")
        .xattr_symlink(
            "link",
            "target",
            &[("user.note", b"x"), ("trusted.kept", b"y")],
        )
        .finish();
    let rep = apply_layer(&tar[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap();
    assert_eq!(rep.xattrs_skipped, 1);
    let mut buf = [0u8; 8];
    let n = rustix::fs::lgetxattr(dir.path().join("link"), "trusted.kept", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
}

/// The process umask, read without changing it.
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .unwrap();
    u32::from_str_radix(line.trim(), 8).unwrap()
}

/// Files are created with their final mode when the umask allows and chown is skipped when
/// the owner is already right: every mode and owner must still come out as the tar says,
/// whatever the umask, set-id bits or the group of the directory (setgid directories give
/// new files their group, so a chown to our own gid is not a no-op there).
#[test]
fn modes_and_owners_survive_the_skipped_chmod_and_chown() {
    longshore_test_support::require_root!();
    let modes = [
        0o644, 0o755, 0o666, 0o777, 0o600, 0o000, 0o4755, 0o2755, 0o1777, 0o640,
    ];
    let mut b = TarBuilder::new();
    b.dir("m", 0o755);
    for m in modes {
        b.file_full(&format!("m/{m:o}"), b"x", m, 0, 0, 1_400_000_000);
        b.file_full(&format!("m/u{m:o}"), b"y", m, 1000, 1000, 1_400_000_000);
    }
    // a setgid directory of group 1000 in the layer, a root:root file in it
    b.dir_owned("sg", 0o2775, 0, 1000);
    b.file_full("sg/root", b"r", 0o644, 0, 0, 1_400_000_000);
    b.file_full("sg/user", b"u", 0o644, 1000, 1000, 1_400_000_000);
    // a directory of group 1000 that the target already has (a lower layer's copy)
    b.file_full("pre/root", b"p", 0o644, 0, 0, 1_400_000_000);
    let tar = b.finish();
    let dir = tempdir("apply");
    let pre = dir.path().join("pre");
    fs::create_dir(&pre).unwrap();
    std::os::unix::fs::chown(&pre, Some(0), Some(1000)).unwrap();
    fs::set_permissions(&pre, fs::Permissions::from_mode(0o2775)).unwrap();

    apply_layer(&gzip(&tar)[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap();
    eprintln!("umask {:o}", umask());
    for m in modes {
        for (name, owner) in [(format!("{m:o}"), 0), (format!("u{m:o}"), 1000)] {
            let md = fs::symlink_metadata(dir.path().join("m").join(&name)).unwrap();
            assert_eq!(md.mode() & 0o7777, m, "mode of m/{name}");
            assert_eq!((md.uid(), md.gid()), (owner, owner), "owner of m/{name}");
            assert_eq!(md.mtime(), 1_400_000_000, "mtime of m/{name}");
        }
    }
    for (rel, owner) in [("sg/root", 0), ("sg/user", 1000), ("pre/root", 0)] {
        let md = fs::metadata(dir.path().join(rel)).unwrap();
        assert_eq!((md.uid(), md.gid()), (owner, owner), "owner of {rel}");
        assert_eq!(md.mode() & 0o7777, 0o644, "mode of {rel}");
    }
    assert_eq!(
        fs::metadata(dir.path().join("sg")).unwrap().mode() & 0o7777,
        0o2775
    );
}

/// A layer of several MiB goes through the decode, hash and apply threads in many chunks (and
/// recycled buffers): contents of files larger than the copy buffer, empty files, and both
/// digests (sha256 and sha512 blob digests) must be exact.
#[test]
fn large_layers_keep_contents_and_digests_across_chunks() {
    longshore_test_support::require_root!();
    use sha2::Digest as _;
    let big = noise(3 * (1 << 20) + 123, 1);
    let exact = noise(1 << 20, 2);
    let mut b = TarBuilder::new();
    b.file("big", &big).file("empty", b"").file("exact", &exact);
    let mut small = Vec::new();
    for i in 0..300 {
        let data = noise(i * 97 % 20_000, i as u64 + 3);
        b.file(&format!("small/{i}"), &data);
        small.push(data);
    }
    b.file("tail", &big[..5000]);
    let tar = b.finish();
    assert!(tar.len() > 4 << 20);
    let gz = gzip(&tar);

    let dir = tempdir("apply");
    let rep = apply_layer(&gz[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap();
    assert_eq!(rep.digest, Digest::sha256_of(&gz));
    assert_eq!(rep.diff_id, Digest::sha256_of(&tar));
    assert_eq!(rep.tar_size, tar.len() as u64);
    assert_eq!(rep.compressed_size, gz.len() as u64);
    assert_eq!(fs::read(dir.path().join("big")).unwrap(), big);
    assert_eq!(fs::read(dir.path().join("exact")).unwrap(), exact);
    assert_eq!(fs::read(dir.path().join("tail")).unwrap(), &big[..5000]);
    assert!(fs::read(dir.path().join("empty")).unwrap().is_empty());
    for (i, data) in small.iter().enumerate() {
        assert_eq!(
            &fs::read(dir.path().join(format!("small/{i}"))).unwrap(),
            data
        );
    }

    let dir = tempdir("apply");
    let rep = longshore_graph::apply::apply_layer_with(
        &gz[..],
        dir.path(),
        &opts(WhiteoutMode::Delete),
        longshore_graph::Algorithm::Sha512,
    )
    .unwrap();
    let want = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&gz)));
    assert_eq!(rep.digest.to_string(), want);
    assert_eq!(rep.diff_id, Digest::sha256_of(&tar));
}

/// An error in the apply stage while the decode and hash stages still have megabytes to send
/// (first entry) or after many chunks (last entry) ends all three threads with that error.
#[test]
fn hostile_entries_stop_every_pipeline_stage() {
    let big = noise(6 << 20, 9);
    hostile(
        TarBuilder::new()
            .file("../outside/pwned", b"x")
            .file("big", &big)
            .finish(),
        "'..'",
    );
    let gz = gzip(
        &TarBuilder::new()
            .file("big", &big)
            .file("/outside/pwned", b"x")
            .finish(),
    );
    let dir = tempdir("apply");
    let err = apply_layer(&gz[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap_err();
    assert!(matches!(err, Error::UnsafeTarEntry { .. }), "{err}");
    // corrupt after several chunks: a gzip error, not a hang
    let mut bad = gz.clone();
    let at = bad.len() * 3 / 4;
    for b in &mut bad[at..at + 64] {
        *b ^= 0x5a;
    }
    let dir = tempdir("apply");
    let err = apply_layer(&bad[..], dir.path(), &opts(WhiteoutMode::Delete)).unwrap_err();
    assert!(matches!(err, Error::InvalidLayer(_)), "{err}");
}
