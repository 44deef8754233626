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

/// Drops the spec's tmpfs on /dev: the image's own /dev is what the container gets.
fn without_dev_tmpfs(f: &mut Fixture) {
    let mounts: Vec<_> = f
        .spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.destination() != Path::new("/dev"))
        .collect();
    f.spec.set_mounts(Some(mounts));
}

/// A mount of `src` at `dest` with `typ` and `options`.
fn mount_of(dest: &str, typ: &str, src: &Path, options: &[&str]) -> oci_spec::runtime::Mount {
    oci_spec::runtime::MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(src)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap()
}

/// Runs `f` to completion; (exit code, output) or the create/run error as text.
fn try_run(f: &Fixture) -> std::result::Result<(i32, String), String> {
    let (r, w) = nix::unistd::pipe().unwrap();
    let res = f.builder().stdio(common::all_to(&w)).run();
    drop(w);
    let out = common::read_all(r);
    res.map(|code| (code, out)).map_err(|e| e.to_string())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// CVE-2025-31133 class: no tmpfs on /dev in the spec, and the image's `/dev/null` is a
/// symlink to `/proc/sys/kernel/hostname`. Masking must not bind that file read-write
/// over `/proc/timer_list` (a write through it would set the hostname; with
/// `core_pattern` as the target it runs code on the host), and the tmpfs that masks a
/// directory is read-only, nosuid, nodev and noexec.
#[test]
fn masking_never_binds_the_images_dev_null() {
    require_root!();
    let host_before = hostname();
    let mut f = writable(&[
        "sh",
        "-c",
        "echo pwned > /proc/timer_list; echo pwned > /proc/keys; hostname; \
         grep ' /proc/scsi \\| /sys/firmware ' /proc/self/mountinfo",
    ]);
    without_dev_tmpfs(&mut f);
    let dev = rootfs(&f).join("dev");
    std::os::unix::fs::symlink("/proc/sys/kernel/hostname", dev.join("null")).unwrap();
    let (code, out) = try_run(&f).unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("longshore"), "exit {code}: {out}");
    let masks: Vec<&str> = lines.collect();
    assert!(!masks.is_empty(), "no masking tmpfs found: {out}");
    for m in masks {
        let opts = m.split(' ').nth(5).unwrap_or("");
        for want in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(opts.split(',').any(|o| o == want), "{want} missing: {m}");
        }
    }
    assert_eq!(hostname(), host_before);
}

/// CVE-2025-52881 class: a volume mounted at `/proc/sys/net` holds
/// `ipv4/ip_unprivileged_port_start` as a symlink to `/proc/sys/kernel/hostname`; the
/// spec's sysctl must not end up as the hostname. (The runtime refuses the mount, and
/// writes sysctls through its own procfs anyway.)
#[test]
fn sysctl_is_not_redirected_by_a_volume_over_proc_sys() {
    require_root!();
    let mut f = writable(&["hostname"]);
    let vol = tempfile::Builder::new()
        .prefix("longshore-vol-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(vol.path().join("ipv4")).unwrap();
    std::os::unix::fs::symlink(
        "/proc/sys/kernel/hostname",
        vol.path().join("ipv4/ip_unprivileged_port_start"),
    )
    .unwrap();
    let mut mounts = f.spec.mounts().clone().unwrap_or_default();
    mounts.push(mount_of(
        "/proc/sys/net",
        "bind",
        vol.path(),
        &["rbind", "rw"],
    ));
    f.spec.set_mounts(Some(mounts));
    let linux = f.spec.linux_mut().as_mut().unwrap();
    linux.set_sysctl(Some(
        [(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "1000".to_string(),
        )]
        .into(),
    ));
    // also unmask /proc/sys so that only the runtime's own write is judged
    linux.set_readonly_paths(Some(vec![]));
    match try_run(&f) {
        Err(e) => assert!(e.contains("/proc"), "refused, but not for /proc: {e}"),
        Ok((code, out)) => assert_eq!(out.trim(), "longshore", "exit {code}: {out}"),
    }
    assert!(
        std::fs::symlink_metadata(vol.path().join("ipv4/ip_unprivileged_port_start"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// CVE-2019-16884 / CVE-2023-27561: mounts on or under `/proc` other than procfs are
/// refused, judged after resolution (a symlink in the image naming `/proc` too), while
/// LXCFS-style binds of single files stay allowed.
#[test]
fn mounts_over_proc_are_refused_after_resolution() {
    require_root!();
    let tmpfs_at = |dest: &str| mount_of(dest, "tmpfs", Path::new("tmpfs"), &[]);
    for dest in [
        "/proc/self/attr",
        "/proc",
        "/proclink/sys",
        "/proclink/self/attr",
    ] {
        let mut f = writable(&["true"]);
        std::os::unix::fs::symlink("/proc", rootfs(&f).join("proclink")).unwrap();
        let mut mounts = f.spec.mounts().clone().unwrap_or_default();
        if dest == "/proc" {
            mounts.retain(|m| m.destination() != Path::new("/proc"));
        }
        mounts.push(tmpfs_at(dest));
        f.spec.set_mounts(Some(mounts));
        match try_run(&f) {
            Err(e) => assert!(
                e.contains("on or under /proc"),
                "{dest}: refused for another reason: {e}"
            ),
            Ok(r) => panic!("a tmpfs at {dest} was accepted: {r:?}"),
        }
    }
    // a bind of a file over /proc/meminfo (what LXCFS does) still works
    let mut f = writable(&["head", "-c", "12", "/proc/meminfo"]);
    let fake = f.bundle().join("meminfo");
    std::fs::write(&fake, "MemTotal: 42 kB\n").unwrap();
    let mut mounts = f.spec.mounts().clone().unwrap_or_default();
    mounts.push(mount_of("/proc/meminfo", "bind", &fake, &["bind", "ro"]));
    f.spec.set_mounts(Some(mounts));
    let (code, out) = try_run(&f).unwrap();
    assert_eq!((code, out.as_str()), (0, "MemTotal: 42"));
}

/// The same class where the mount itself is allowed: an LXCFS-style bind of a file over
/// `/proc/sys/kernel/ns_last_pid` must not catch the spec's `kernel.ns_last_pid` sysctl
/// (written by path, it lands in the volume's file on the host).
#[test]
fn sysctl_goes_to_the_kernel_not_to_a_file_bound_over_it() {
    require_root!();
    let mut f = writable(&["cat", "/proc/sys/kernel/ns_last_pid"]);
    let vol = tempfile::Builder::new()
        .prefix("longshore-vol-")
        .tempdir()
        .unwrap();
    let file = vol.path().join("ns_last_pid");
    std::fs::write(&file, "untouched\n").unwrap();
    let mut mounts = f.spec.mounts().clone().unwrap_or_default();
    mounts.push(mount_of(
        "/proc/sys/kernel/ns_last_pid",
        "bind",
        &file,
        &["bind", "rw"],
    ));
    f.spec.set_mounts(Some(mounts));
    let linux = f.spec.linux_mut().as_mut().unwrap();
    linux.set_sysctl(Some(
        [("kernel.ns_last_pid".to_string(), "300".to_string())].into(),
    ));
    linux.set_readonly_paths(Some(vec![]));
    let (code, out) = try_run(&f).unwrap();
    assert_eq!((code, out.trim()), (0, "untouched"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "untouched\n");
}

/// A writable fixture without a mount namespace of its own (the container is the init's
/// chroot in the runtime's mount namespace), with a marker file only its root has.
fn without_mount_ns(args: &[&str]) -> Fixture {
    let mut f = writable(args);
    let linux = f.spec.linux_mut().as_mut().unwrap();
    let ns: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Mount)
        .collect();
    linux.set_namespaces(Some(ns));
    std::fs::write(rootfs(&f).join("longshore-marker"), "inside\n").unwrap();
    f
}

/// exec into a container with no mount namespace of its own must land in the init's root,
/// not in the host's (the exec'd process saw the host's `/`).
#[test]
fn exec_without_mount_namespace_enters_the_containers_root() {
    require_root!();
    let f = without_mount_ns(&["sleep", "100"]);
    // (released through the channel: see the next test for the fifo)
    let mut c = f.builder().stdio(Stdio::Null).create_attached().unwrap();
    c.start().unwrap();
    let mut p = f.spec.process().clone().unwrap();
    p.set_args(Some(vec![
        "/bin/busybox".into(),
        "cat".into(),
        "/longshore-marker".into(),
    ]));
    let (code, out) = exec_capture(&c, &p);
    assert_eq!(
        (code, out.as_str()),
        (0, "inside\n"),
        "the exec'd process is not in the container's root"
    );
    c.delete(true).unwrap();
}

/// `create` then `start` (the exec fifo) of a container without a mount namespace of its
/// own works as a foreground run does (it was already stopped when start came).
#[test]
fn create_and_start_without_mount_namespace() {
    require_root!();
    let f = without_mount_ns(&[
        "/bin/busybox",
        "sh",
        "-c",
        "cat /longshore-marker > /out; sleep 100",
    ]);
    let mut c = f.builder().stdio(Stdio::Null).create().unwrap();
    c.start().unwrap();
    let out = rootfs(&f).join("out");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // (the shell creates the file before cat fills it)
    while std::fs::read_to_string(&out).unwrap_or_default() != "inside\n"
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_default(),
        "inside\n"
    );
    assert_eq!(c.status(), longshore_container::Status::Running);
    c.delete(true).unwrap();
}

/// The capability bitmasks (`CapEff`, `CapBnd`) a process reports.
fn cap_masks(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| l.starts_with("CapEff:") || l.starts_with("CapBnd:"))
        .map(str::to_string)
        .collect()
}

/// An exec'd process whose spec has no `capabilities` gets the container's, not every
/// capability the runtime holds (CAP_SYS_ADMIN among them).
#[test]
fn exec_without_capabilities_gets_the_containers() {
    require_root!();
    // (the default spec's process holds runc's three: AUDIT_WRITE, KILL, NET_BIND_SERVICE)
    let f = Fixture::new(&["sleep", "100"]);
    let mut c = f.builder().stdio(Stdio::Null).create().unwrap();
    c.start().unwrap();
    let init = cap_masks(&std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap());
    let mut p = f.spec.process().clone().unwrap();
    p.set_capabilities(None);
    p.set_args(Some(vec!["cat".into(), "/proc/self/status".into()]));
    let (code, out) = exec_capture(&c, &p);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        cap_masks(&out),
        init,
        "the exec'd process has other capabilities than the container"
    );
    c.delete(true).unwrap();
}

/// The pid file is not written through a symlink planted at its temporary name.
#[test]
fn pid_file_is_not_written_through_a_symlink() {
    require_root!();
    let f = Fixture::new(&["true"]);
    let dir = tempfile::Builder::new()
        .prefix("longshore-pidfile-")
        .tempdir()
        .unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "host file\n").unwrap();
    let pid_file = dir.path().join("c.pid");
    std::os::unix::fs::symlink(&victim, pid_file.with_extension("tmp")).unwrap();
    let mut c = f
        .builder()
        .stdio(Stdio::Null)
        .pid_file(&pid_file)
        .create()
        .unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file\n");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        c.pid().to_string()
    );
    assert!(
        !std::fs::symlink_metadata(&pid_file)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    c.delete(true).unwrap();
}

/// The default spec masks what Docker masks today: `/proc/interrupts` reads empty.
#[test]
fn default_spec_masks_interrupts_and_powercap() {
    require_root!();
    let spec = longshore_container::spec::default_spec();
    let masked = spec
        .linux()
        .as_ref()
        .unwrap()
        .masked_paths()
        .clone()
        .unwrap();
    assert!(
        masked.iter().any(|m| m == "/sys/devices/virtual/powercap"),
        "{masked:?}"
    );
    let f = Fixture::new(&["wc", "-c", "/proc/interrupts"]);
    let (code, out) = f.run();
    assert_eq!(
        (code, out.split_whitespace().next()),
        (0, Some("0")),
        "{out}"
    );
}

/// CVE-2019-19921 / CVE-2021-30465 class: a neighbour sharing a volume swaps a path
/// component between a directory and a symlink to a host directory, over and over, while
/// containers mounting under that volume start. The directories, the file for a file
/// bind and the device node the runtime makes must never land on the host.
#[test]
fn racing_symlink_on_a_shared_volume_never_reaches_the_host() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    require_root!();
    let victim = tempfile::Builder::new()
        .prefix("longshore-victim-")
        .tempdir()
        .unwrap();
    let vol = tempfile::Builder::new()
        .prefix("longshore-vol-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(vol.path().join("dir")).unwrap();
    std::os::unix::fs::symlink(victim.path(), vol.path().join("alt")).unwrap();
    let file = vol.path().join("source-file");
    std::fs::write(&file, "x").unwrap();

    // the neighbour: exchange dir <-> alt (a symlink to the victim) as fast as it can
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = {
        let stop = stop.clone();
        let (a, b) = (vol.path().join("dir"), vol.path().join("alt"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &a,
                    rustix::fs::CWD,
                    &b,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                n += 1;
            }
            n
        })
    };
    let mut made = 0;
    for _ in 0..30 {
        let mut f = writable(&["true"]);
        let mut mounts = f.spec.mounts().clone().unwrap_or_default();
        let m = mount_of;
        mounts.push(m("/data", "bind", vol.path(), &["rbind", "rw"]));
        mounts.push(m("/data/dir/sub/deeper", "tmpfs", Path::new("tmpfs"), &[]));
        mounts.push(m("/data/dir/f", "bind", &file, &["bind", "ro"]));
        f.spec.set_mounts(Some(mounts));
        let dev = oci_spec::runtime::LinuxDeviceBuilder::default()
            .path("/data/dir/nulldev")
            .typ(oci_spec::runtime::LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .build()
            .unwrap();
        f.spec
            .linux_mut()
            .as_mut()
            .unwrap()
            .set_devices(Some(vec![dev]));
        // failures are fine (the path changes under the runtime's feet); escapes are not
        if let Ok(mut c) = f.builder().stdio(Stdio::Null).create() {
            made += 1;
            c.delete(true).unwrap();
        }
        let leaked: Vec<_> = std::fs::read_dir(victim.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            leaked.is_empty(),
            "created on the host through the race: {leaked:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let n = swaps.join().unwrap();
    eprintln!("{made}/30 containers created during {n} swaps");
}

/// CVE-2025-52565 class: with the image's own /dev (no tmpfs in the spec), its
/// `/dev/console` is a symlink; the pty must be bound on `/dev/console` itself, never on
/// what the symlink names.
#[test]
fn console_is_not_bound_through_a_symlink() {
    require_root!();
    let mut f = writable(&[
        "sh",
        "-c",
        "echo mounts-on-target $(grep -c ' /etc/target ' /proc/self/mountinfo) \
         on-console $(grep -c ' /dev/console ' /proc/self/mountinfo) done-tty",
    ]);
    without_dev_tmpfs(&mut f);
    let root = rootfs(&f);
    std::fs::write(root.join("etc/target"), "image file\n").unwrap();
    std::os::unix::fs::symlink("/etc/target", root.join("dev/console")).unwrap();
    std::os::unix::fs::symlink("pts/ptmx", root.join("dev/ptmx")).unwrap();
    let out = common::run_on_console(&mut f, "done-tty");
    assert!(
        out.contains("mounts-on-target 0 on-console 1"),
        "the pty went through the image's symlink: {out}"
    );
}

/// CVE-2019-5736 through a hook: startContainer hooks run inside the container, from the
/// init, so a hook program of the image (`#!/proc/self/exe` with the payload loader) must
/// reach only the sealed trampoline, never this binary.
#[test]
#[cfg(target_arch = "x86_64")]
fn cve_2019_5736_through_a_start_container_hook() {
    require_root!();
    let me = std::fs::metadata("/proc/self/exe").unwrap().ino();
    let mut f = writable(&["true"]);
    if !plant_exe_payload(&rootfs(&f)) {
        return;
    }
    let hook = oci_spec::runtime::HookBuilder::default()
        .path("/bin/sh")
        .args(vec!["sh".to_string()])
        .build()
        .unwrap();
    f.spec.set_hooks(Some(
        oci_spec::runtime::HooksBuilder::default()
            .start_container(vec![hook])
            .build()
            .unwrap(),
    ));
    // the hook fails (the trampoline refuses the script); what matters is what it reached
    let res = try_run(&f);
    let got = payload_opened(&rootfs(&f));
    assert!(
        got.is_none(),
        "the hook ran this binary with the image's loader: opened inode {got:?} (this binary \
         is {me}); {res:?}"
    );
}
