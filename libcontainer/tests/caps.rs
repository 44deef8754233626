//! Capability sets changed for real in a forked child, checked by what the child can do
//! and by its `/proc/self/status`.
//!
//! The test harness is multi-threaded, so each child only makes system calls between
//! `fork` and `_exit`, and reports through its exit code and a pipe.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::panic::AssertUnwindSafe;

use longshore_container::caps::{self, CapsError};
use longshore_test_support::require_root;
use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Uid, fork};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxCapabilitiesBuilder};

/// Runs `child` in a forked process; returns its exit code and the u64 values it wrote
/// to the pipe it was given. `child` must only make system calls.
fn in_child(child: impl FnOnce(&OwnedFd) -> i32) -> (i32, Vec<u64>) {
    let (rd, wr) = nix::unistd::pipe().expect("pipe");
    // SAFETY: the child runs `child` (plain system calls into stack buffers) and then
    // `_exit`, so it never touches a lock or allocator state copied from other threads.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(rd);
            let code = std::panic::catch_unwind(AssertUnwindSafe(|| child(&wr))).unwrap_or(101);
            // SAFETY: `_exit` ends the child at once, running no destructors or atexit
            // handlers that belong to the parent's state.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut bytes = Vec::new();
            let mut buf = [0u8; 256];
            loop {
                match nix::unistd::read(&rd, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    Err(Errno::EINTR) => continue,
                    Err(e) => panic!("read from child: {e}"),
                }
            }
            let status = waitpid(child, None).expect("waitpid");
            let code = match status {
                WaitStatus::Exited(_, code) => code,
                other => panic!("child did not exit normally: {other:?}"),
            };
            let values = bytes
                .chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
                .collect();
            (code, values)
        }
    }
}

/// Sends one value to the parent.
fn report(pipe: &OwnedFd, value: u64) {
    let _ = nix::unistd::write(pipe.as_fd(), &value.to_ne_bytes());
}

/// Reads the hex mask of `field` (e.g. `b"CapBnd:"`) from `/proc/self/status`, with a
/// stack buffer only.
fn status_mask(field: &[u8]) -> Option<u64> {
    let path = c"/proc/self/status";
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    while len < buf.len() {
        match nix::unistd::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    let text = &buf[..len];
    let start = text.windows(field.len()).position(|w| w == field)? + field.len();
    let mut value = 0u64;
    for &b in text[start..].iter().skip_while(|b| b.is_ascii_whitespace()) {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => break,
        };
        value = (value << 4) | u64::from(d);
    }
    Some(value)
}

fn set(caps: &[Capability]) -> Capabilities {
    caps.iter().copied().collect()
}

/// The same set in effective, permitted, inheritable and bounding; ambient as given.
fn all_sets(caps: &Capabilities, ambient: &Capabilities) -> LinuxCapabilities {
    LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        .inheritable(caps.clone())
        .ambient(ambient.clone())
        .build()
        .unwrap()
}

fn temp_file() -> (tempfile::TempDir, CString) {
    let dir = tempfile::Builder::new()
        .prefix("longshore-caps-")
        .tempdir()
        .unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let c = CString::new(file.as_os_str().as_bytes()).unwrap();
    (dir, c)
}

/// In a child running as root: prctl(KEEPCAPS), drop the bounding set, apply `caps`
/// to every set, then chown `path` to 1000:1000. Returns the chown errno (0 = success).
fn chown_with(caps: &LinuxCapabilities, path: &CStr) -> i32 {
    let (code, _) = in_child(|_| {
        if nix::sys::prctl::set_keepcaps(true).is_err() {
            return 200;
        }
        if caps::drop_bounding(caps.bounding().as_ref().unwrap()).is_err() {
            return 201;
        }
        if caps::apply(caps).is_err() {
            return 202;
        }
        match nix::unistd::chown(path, Some(Uid::from_raw(1000)), Some(Gid::from_raw(1000))) {
            Ok(()) => 0,
            Err(e) => e as i32,
        }
    });
    code
}

#[test]
fn cap_drop_chown_makes_chown_fail() {
    require_root!();
    // The seed's `docker run --cap-drop CHOWN` example.
    let without = caps::adjust(
        &caps::docker_default_capabilities(),
        &[],
        &["CHOWN".to_string()],
    )
    .unwrap();
    let (dir, path) = temp_file();
    assert_eq!(
        chown_with(&all_sets(&without, &Capabilities::new()), &path),
        libc::EPERM
    );
    assert_eq!(std::fs::metadata(dir.path().join("f")).unwrap().uid(), 0);

    // With Docker's default set (CHOWN kept) the same chown works.
    let with = caps::docker_default_capabilities();
    assert_eq!(chown_with(&all_sets(&with, &Capabilities::new()), &path), 0);
    let meta = std::fs::metadata(dir.path().join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
}

#[test]
fn sets_are_what_the_spec_says() {
    require_root!();
    let defaults = caps::docker_default_capabilities();
    let spec = all_sets(&defaults, &Capabilities::new());
    let (code, v) = in_child(|pipe| {
        if caps::drop_bounding(&defaults).is_err() {
            return 1;
        }
        if caps::apply(&spec).is_err() {
            return 2;
        }
        for field in [
            &b"CapBnd:"[..],
            b"CapEff:",
            b"CapPrm:",
            b"CapInh:",
            b"CapAmb:",
        ] {
            report(pipe, status_mask(field).unwrap_or(u64::MAX));
        }
        // A dropped capability cannot come back: raising it fails.
        if caps::apply(&all_sets(
            &set(&[Capability::SysAdmin]),
            &Capabilities::new(),
        ))
        .is_ok()
        {
            return 3;
        }
        0
    });
    assert_eq!(code, 0);
    let want = caps::mask(&defaults);
    assert_eq!(want, 0xa80425fb, "Docker's default set");
    assert_eq!(
        v,
        vec![want, want, want, want, 0],
        "CapBnd, CapEff, CapPrm, CapInh, CapAmb"
    );
}

#[test]
fn bounding_drop_keeps_only_the_listed() {
    require_root!();
    let keep = set(&[Capability::Kill, Capability::NetBindService]);
    let (code, v) = in_child(|pipe| {
        if caps::drop_bounding(&keep).is_err() {
            return 1;
        }
        report(pipe, status_mask(b"CapBnd:").unwrap_or(u64::MAX));
        // The other sets are untouched by a bounding-set drop.
        report(pipe, status_mask(b"CapEff:").unwrap_or(u64::MAX));
        0
    });
    assert_eq!(code, 0);
    assert_eq!(v[0], (1 << 5) | (1 << 10), "CapBnd after the drop");
    assert_eq!(v[1], status_mask(b"CapEff:").unwrap(), "CapEff unchanged");
}

/// In a child: keep caps over a switch to uid/gid 1000, apply `caps` (with `ambient`),
/// then exec `busybox grep -q <pattern> /proc/self/status` as uid 1000. Returns grep's
/// exit code (0: the exec'd process's status matched).
fn exec_as_1000(caps: &LinuxCapabilities, pattern: &str) -> i32 {
    let busybox = longshore_test_support::busybox_binary().expect("busybox-static");
    let busybox = CString::new(busybox.as_os_str().as_bytes()).unwrap();
    let argv_owned = [
        busybox.clone(),
        CString::new("grep").unwrap(),
        CString::new("-q").unwrap(),
        CString::new(pattern).unwrap(),
        CString::new("/proc/self/status").unwrap(),
    ];
    let mut argv: Vec<*const libc::c_char> = argv_owned.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let (code, _) = in_child(|_| {
        if nix::sys::prctl::set_keepcaps(true).is_err() {
            return 200;
        }
        if caps::drop_bounding(caps.bounding().as_ref().unwrap()).is_err() {
            return 201;
        }
        let (uid, gid) = (Uid::from_raw(1000), Gid::from_raw(1000));
        if nix::unistd::setgroups(&[]).is_err()
            || nix::unistd::setresgid(gid, gid, gid).is_err()
            || nix::unistd::setresuid(uid, uid, uid).is_err()
        {
            return 202;
        }
        if caps::apply(caps).is_err() {
            return 203;
        }
        // SAFETY: `argv` and `envp` are null-terminated arrays of pointers to C strings
        // that the parent keeps alive (`argv_owned`) until after waitpid.
        unsafe { libc::execve(busybox.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        204
    });
    code
}

#[test]
fn ambient_caps_survive_exec_as_non_root() {
    require_root!();
    // CAP_NET_BIND_SERVICE is bit 10: 0x400.
    let nbs = set(&[Capability::NetBindService]);
    let pattern = "^CapEff:\t0000000000000400$";
    // In the ambient set: the non-root program gets it in its effective set.
    assert_eq!(exec_as_1000(&all_sets(&nbs, &nbs), pattern), 0);
    assert_eq!(
        exec_as_1000(&all_sets(&nbs, &nbs), "^CapAmb:\t0000000000000400$"),
        0
    );
    // Only inheritable/permitted, not ambient: exec as uid 1000 leaves it empty.
    assert_eq!(
        exec_as_1000(&all_sets(&nbs, &Capabilities::new()), pattern),
        1
    );
    assert_eq!(
        exec_as_1000(
            &all_sets(&nbs, &Capabilities::new()),
            "^CapEff:\t0000000000000000$"
        ),
        0
    );
}

#[test]
fn keepcaps_then_apply_gives_a_non_root_user_chown() {
    require_root!();
    let (dir, path) = temp_file();
    let chown = set(&[Capability::Chown]);
    let spec = all_sets(&chown, &Capabilities::new());
    let (code, _) = in_child(|_| {
        if nix::sys::prctl::set_keepcaps(true).is_err() {
            return 200;
        }
        let (uid, gid) = (Uid::from_raw(1000), Gid::from_raw(1000));
        if nix::unistd::setgroups(&[]).is_err()
            || nix::unistd::setresgid(gid, gid, gid).is_err()
            || nix::unistd::setresuid(uid, uid, uid).is_err()
        {
            return 201;
        }
        if caps::apply(&spec).is_err() {
            return 202;
        }
        // uid 1000 changing a root-owned file's owner: only CAP_CHOWN allows it.
        match nix::unistd::chown(path.as_c_str(), Some(Uid::from_raw(1001)), None) {
            Ok(()) => 0,
            Err(e) => e as i32,
        }
    });
    assert_eq!(code, 0);
    assert_eq!(std::fs::metadata(dir.path().join("f")).unwrap().uid(), 1001);
}

#[test]
fn impossible_requests_fail_clearly() {
    require_root!();
    // Effective outside permitted: capset refuses.
    let bad = LinuxCapabilitiesBuilder::default()
        .effective(set(&[Capability::Chown, Capability::Kill]))
        .permitted(set(&[Capability::Kill]))
        .build()
        .unwrap();
    let (code, _) = in_child(|_| match caps::apply(&bad) {
        Err(CapsError::Capset { errno, .. }) => errno.raw_os_error(),
        Err(_) => 1,
        Ok(()) => 2,
    });
    assert_eq!(code, libc::EPERM);

    // Dropping from the bounding set without CAP_SETPCAP.
    let no_setpcap = all_sets(&set(&[Capability::Kill]), &Capabilities::new());
    let (code, _) = in_child(|_| {
        if caps::apply(&no_setpcap).is_err() {
            return 1;
        }
        match caps::drop_bounding(&set(&[Capability::Kill])) {
            Err(CapsError::BoundingDrop { errno, .. }) => errno.raw_os_error(),
            Err(_) => 2,
            Ok(()) => 3,
        }
    });
    assert_eq!(code, libc::EPERM);

    let err = CapsError::BoundingDrop {
        cap: 21,
        errno: rustix::io::Errno::PERM,
    };
    assert!(err.to_string().contains("CAP_SYS_ADMIN"), "{err}");
    assert!(err.to_string().contains("CAP_SETPCAP"), "{err}");
}
