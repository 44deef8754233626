//! longshore-runtime as containerd's runc: runs `examples/containerd/run-under-containerd.sh`
//! (a private Debian containerd, a busybox image built from /bin/busybox, `ctr run` with
//! `--runtime io.containerd.runc.v2 --runc-binary longshore-runtime`, a detached task
//! driven through exec/ps/pause/resume/kill/delete) and asserts that it succeeds.
//! Needs root and Debian's `containerd` package (containerd, ctr, the runc v2 shim).

use std::path::Path;
use std::process::Command;

use longshore_test_support::require_root;

#[test]
fn runs_under_containerd_runc_v2_shim() {
    require_root!();
    let missing: Vec<&str> = [
        "/usr/bin/containerd",
        "/usr/bin/ctr",
        "/usr/bin/containerd-shim-runc-v2",
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists())
    .collect();
    if !missing.is_empty() {
        longshore_test_support::skip!("{missing:?} missing; apt-get install -y containerd");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("containerd/run-under-containerd.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_longshore-runtime"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        script.display(),
        out.status
    );
    assert!(
        stdout.contains("hello from longshore under containerd"),
        "{stdout}"
    );
    assert!(
        stdout.contains("OK: longshore-runtime works as containerd's runc"),
        "{stdout}"
    );

    // it cleaned up: no directory, mount or cgroup of its private containerd is left
    let dir = stderr
        .lines()
        .find_map(|l| l.strip_prefix("== starting containerd in "))
        .expect("the script names its directory");
    assert!(!Path::new(dir).exists(), "{dir} left behind");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir), "mounts under {dir} left behind");
    let ns = Path::new(dir)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_ascii_lowercase();
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cg = e.path().join(&ns);
        assert!(!cg.exists(), "cgroup {} left behind", cg.display());
    }
}
