//! Container escapes (issue 14), each performed as an attacker controlling the image or
//! the container would, against a real container; each test shows the host untouched.
//! Needs root, `cc` (for the CVE-2019-5736 payload) and busybox-static.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fixture, exec_capture};
use longshore_container::Stdio;
use longshore_test_support::{report_skip, require_root};

/// Compiles the CVE-2019-5736 payload (`tests/data/exe_overwrite.c`) into `rootfs` as
/// the dynamic loader, and makes the image's `/bin/sh` the script `#!/proc/self/exe`.
/// False (after reporting the skip) when there is no C compiler.
fn plant_exe_payload(rootfs: &Path) -> bool {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/exe_overwrite.c");
    let lib64 = rootfs.join("lib64");
    std::fs::create_dir_all(&lib64).unwrap();
    let out = Command::new("cc")
        .args([
            "-static",
            "-nostdlib",
            "-fno-pie",
            "-no-pie",
            "-O1",
            "-fno-stack-protector",
            "-o",
        ])
        .arg(lib64.join("ld-linux-x86-64.so.2"))
        .arg(&src)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("cc failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            report_skip("CVE-2019-5736 payload", &format!("cannot run cc: {e}"));
            return false;
        }
    }
    let sh = rootfs.join("bin/sh");
    std::fs::remove_file(&sh).unwrap();
    std::fs::write(&sh, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&sh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    true
}

/// What the payload reached: the inode it opened as `/proc/self/exe`, if it ran at all.
fn payload_opened(rootfs: &Path) -> Option<String> {
    std::fs::read_to_string(rootfs.join("payload-started")).ok()
}

fn rootfs(f: &Fixture) -> PathBuf {
    f.bundle().join("rootfs")
}

/// A fixture whose root is writable (the payloads leave their marks in it).
fn writable(args: &[&str]) -> Fixture {
    let mut f = Fixture::new(args);
    f.spec
        .root_mut()
        .as_mut()
        .unwrap()
        .set_readonly(Some(false));
    f
}

/// CVE-2019-5736 through the library: the embedding program (this test binary) is what
/// the init and exec processes are forked from. The image's `/bin/sh` is
/// `#!/proc/self/exe` with a loader that grabs `/proc/self/exe`; neither the init's
/// execve (create+start) nor an exec may hand it this binary.
#[test]
#[cfg(target_arch = "x86_64")]
fn cve_2019_5736_shebang_to_proc_self_exe_never_reaches_the_embedder() {
    require_root!();
    let me = std::fs::metadata("/proc/self/exe").unwrap().ino();

    // the init's execve
    let f = writable(&["/bin/sh"]);
    if !plant_exe_payload(&rootfs(&f)) {
        return;
    }
    let (code, out) = f.run();
    let got = payload_opened(&rootfs(&f));
    assert!(
        got.is_none(),
        "the payload ran as the runtime's loader and opened inode {got:?} (this binary is \
         {me}); exit {code}: {out}"
    );

    // an exec into a running container
    let f = writable(&["sleep", "100"]);
    if !plant_exe_payload(&rootfs(&f)) {
        return;
    }
    let mut c = f.builder().stdio(Stdio::Null).create().unwrap();
    c.start().unwrap();
    let mut p = f.spec.process().clone().unwrap();
    p.set_args(Some(vec!["/bin/sh".into()]));
    let (code, out) = exec_capture(&c, &p);
    let got = payload_opened(&rootfs(&f));
    assert!(
        got.is_none(),
        "exec: the payload opened inode {got:?} (this binary is {me}); exit {code}: {out}"
    );
    // the script reached only the trampoline, which refused to run it
    assert_eq!(code, 126, "{out}");
    c.delete(true).unwrap();
}
