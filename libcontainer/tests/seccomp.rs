//! Seccomp filters compiled in the parent and loaded in a forked child, checked by the
//! errno or signal the child sees.
//!
//! The test harness is multi-threaded, so each child only makes system calls between
//! `fork` and `_exit`: it loads the filter, probes, and reports through its exit code.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::panic::AssertUnwindSafe;

use longshore_container::caps;
use longshore_container::seccomp::{self, CompiledFilter};
use longshore_test_support::require_root;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
    LinuxSyscallBuilder,
};

/// Exit code of a child whose filter did not load.
const LOAD_FAILED: i32 = 250;

/// Runs `child` in a forked process and returns how it ended. `child` must only make
/// system calls: the parent has other threads, whose locks the child inherits.
fn in_child(child: impl FnOnce() -> i32) -> WaitStatus {
    // SAFETY: the child runs `child` (plain system calls, no allocation) and then
    // `_exit`, so it never touches a lock or allocator state copied from other threads.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // No core files from the SIGSYS tests, in the test's cwd or anywhere.
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
            let _ = nix::sys::prctl::set_dumpable(false);
            let code = std::panic::catch_unwind(AssertUnwindSafe(child)).unwrap_or(101);
            // SAFETY: `_exit` ends the child at once, running no destructors or atexit
            // handlers that belong to the parent's state.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    }
}

/// Loads `filter` in a child, runs `probe`, and returns the child's exit code.
fn probe_with(filter: &CompiledFilter, probe: impl FnOnce() -> i32) -> WaitStatus {
    in_child(|| match filter.load() {
        Ok(()) => probe(),
        Err(_) => LOAD_FAILED,
    })
}

/// The exit code of an exited child; panics on anything else.
fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => {
            assert_ne!(code, LOAD_FAILED, "the filter failed to load in the child");
            code
        }
        other => panic!("child did not exit normally: {other:?}"),
    }
}

/// An errno as an exit code, 0 for success.
fn errno_code<T>(r: nix::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e as i32,
    }
}

/// `syscall(nr, a0, a1)`, returning the errno or 0. Only used with syscalls that read
/// no memory through their arguments.
fn raw2(nr: libc::c_long, a0: u64, a1: u64) -> i32 {
    // SAFETY: callers pass syscalls that ignore these arguments or treat them as plain
    // numbers (getpid, personality, unshare, keyctl queries); no memory is read or written.
    let rc = unsafe { libc::syscall(nr, a0, a1, 0u64, 0u64) };
    if rc < 0 {
        // Not nix's Errno: it folds values it has no name for into 0.
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

fn rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscallBuilder {
    LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(action)
}

fn arg(index: usize, op: LinuxSeccompOperator, value: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .build()
        .unwrap()
}

fn spec(default: LinuxSeccompAction, rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
    LinuxSeccompBuilder::default()
        .default_action(default)
        .syscalls(rules)
        .build()
        .unwrap()
}

/// A path inside a fresh `longshore-` temp dir, as a C string for the child.
fn temp_path(dir: &tempfile::TempDir, name: &str) -> CString {
    CString::new(dir.path().join(name).as_os_str().as_bytes()).unwrap()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("longshore-seccomp-")
        .tempdir()
        .unwrap()
}

#[test]
fn errno_defaults_to_eperm() {
    require_root!();
    let dir = tempdir();
    let path = temp_path(&dir, "blocked");
    let filter = seccomp::compile(&spec(
        LinuxSeccompAction::ScmpActAllow,
        vec![
            rule(&["mkdir", "mkdirat"], LinuxSeccompAction::ScmpActErrno)
                .build()
                .unwrap(),
        ],
    ))
    .unwrap();
    let code = exit_code(probe_with(&filter, || {
        errno_code(nix::unistd::mkdir(
            path.as_c_str(),
            Mode::from_bits_truncate(0o755),
        ))
    }));
    assert_eq!(code, libc::EPERM, "mkdir under the filter");
    assert!(!dir.path().join("blocked").exists());

    // Control: the same mkdir without a filter works.
    let code = exit_code(in_child(|| {
        errno_code(nix::unistd::mkdir(
            path.as_c_str(),
            Mode::from_bits_truncate(0o755),
        ))
    }));
    assert_eq!(code, 0);
    assert!(dir.path().join("blocked").is_dir());
}

#[test]
fn custom_errno_ret() {
    require_root!();
    let filter = seccomp::compile(&spec(
        LinuxSeccompAction::ScmpActAllow,
        vec![
            rule(&["getcwd"], LinuxSeccompAction::ScmpActErrno)
                .errno_ret(38u32)
                .build()
                .unwrap(),
            rule(&["getppid"], LinuxSeccompAction::ScmpActErrno)
                .errno_ret(123u32)
                .build()
                .unwrap(),
        ],
    ))
    .unwrap();
    let status = probe_with(&filter, || {
        let mut buf = [0u8; 512];
        // SAFETY: getcwd writes at most `buf.len()` bytes into the live stack buffer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_getcwd,
                buf.as_mut_ptr(),
                buf.len() as libc::c_ulong,
            )
        };
        if rc >= 0 {
            return 1;
        }
        if Errno::last() != Errno::ENOSYS {
            return 2;
        }
        if raw2(libc::SYS_getppid, 0, 0) != 123 {
            return 3;
        }
        // getpid has no rule and still works.
        if raw2(libc::SYS_getpid, 0, 0) != 0 {
            return 4;
        }
        0
    });
    assert_eq!(exit_code(status), 0);
}

#[test]
fn default_errno_ret_applies_to_the_default_action() {
    require_root!();
    let dir = tempdir();
    let path = temp_path(&dir, "x");
    let filter = seccomp::compile(
        &LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .default_errno_ret(libc::EACCES as u32)
            .syscalls(vec![
                rule(
                    &["exit_group", "exit", "getpid"],
                    LinuxSeccompAction::ScmpActAllow,
                )
                .build()
                .unwrap(),
            ])
            .build()
            .unwrap(),
    )
    .unwrap();
    let status = probe_with(&filter, || {
        if raw2(libc::SYS_getpid, 0, 0) != 0 {
            return 1;
        }
        errno_code(nix::unistd::mkdir(
            path.as_c_str(),
            Mode::from_bits_truncate(0o755),
        ))
    });
    assert_eq!(exit_code(status), libc::EACCES);
}

/// Loads a filter that makes `getpid` fail with errno 77 when `args` match, calls
/// `getpid(a0, a1)` for each probe, and returns the bitmask of probes that were blocked.
fn blocked_probes(args: Vec<LinuxSeccompArg>, probes: &[(u64, u64)]) -> i32 {
    assert!(probes.len() <= 7);
    let filter = seccomp::compile(&spec(
        LinuxSeccompAction::ScmpActAllow,
        vec![
            rule(&["getpid"], LinuxSeccompAction::ScmpActErrno)
                .errno_ret(77u32)
                .args(args)
                .build()
                .unwrap(),
        ],
    ))
    .unwrap();
    exit_code(probe_with(&filter, || {
        let mut mask = 0;
        for (i, (a0, a1)) in probes.iter().enumerate() {
            match raw2(libc::SYS_getpid, *a0, *a1) {
                0 => {}
                77 => mask |= 1 << i,
                _ => return 127,
            }
        }
        mask
    }))
}

#[test]
fn argument_conditions_every_operator() {
    require_root!();
    use LinuxSeccompOperator::*;
    let probes = [(1, 0), (5, 0), (9, 0), (0x1_0000_0005, 0)];
    for (op, want) in [
        (ScmpCmpNe, 0b1101),
        (ScmpCmpLt, 0b0001),
        (ScmpCmpLe, 0b0011),
        (ScmpCmpEq, 0b0010),
        (ScmpCmpGe, 0b1110),
        (ScmpCmpGt, 0b1100),
    ] {
        assert_eq!(
            blocked_probes(vec![arg(0, op, 5)], &probes),
            want,
            "{op:?} 5 over probes {probes:x?}"
        );
    }
    // MASKED_EQ: value is the mask, valueTwo the expected result.
    let masked = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .op(ScmpCmpMaskedEq)
        .value(0x0fu64)
        .value_two(0x05u64)
        .build()
        .unwrap();
    assert_eq!(
        blocked_probes(vec![masked], &[(0x15, 0), (0x05, 0), (0x06, 0), (0xf5, 0)]),
        0b1011
    );
    // Conditions on different arguments are ANDed.
    assert_eq!(
        blocked_probes(
            vec![arg(0, ScmpCmpEq, 1), arg(1, ScmpCmpEq, 2)],
            &[(1, 2), (1, 3), (0, 2)]
        ),
        0b001
    );
    // Conditions on the same argument become separate rules, ORed (runc's behaviour).
    assert_eq!(
        blocked_probes(
            vec![arg(0, ScmpCmpEq, 1), arg(0, ScmpCmpEq, 2)],
            &[(1, 0), (2, 0), (3, 0)]
        ),
        0b011
    );
}

#[test]
fn personality_denied_only_for_one_value() {
    require_root!();
    const PER_LINUX32: u64 = 0x0008;
    let filter = seccomp::compile(&spec(
        LinuxSeccompAction::ScmpActAllow,
        vec![
            rule(&["personality"], LinuxSeccompAction::ScmpActErrno)
                .args(vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, PER_LINUX32)])
                .build()
                .unwrap(),
        ],
    ))
    .unwrap();
    let status = probe_with(&filter, || {
        // 0xffffffff queries the persona; allowed.
        if raw2(libc::SYS_personality, 0xffff_ffff, 0) != 0 {
            return 1;
        }
        if raw2(libc::SYS_personality, PER_LINUX32, 0) != libc::EPERM {
            return 2;
        }
        // PER_LINUX (0) is another value: allowed.
        if raw2(libc::SYS_personality, 0, 0) != 0 {
            return 3;
        }
        0
    });
    assert_eq!(exit_code(status), 0);
}

#[test]
fn kill_actions_end_the_child_with_sigsys() {
    require_root!();
    for action in [
        LinuxSeccompAction::ScmpActKill,
        LinuxSeccompAction::ScmpActKillThread,
        LinuxSeccompAction::ScmpActKillProcess,
        LinuxSeccompAction::ScmpActTrap,
    ] {
        let filter = seccomp::compile(&spec(
            LinuxSeccompAction::ScmpActAllow,
            vec![rule(&["getppid"], action).build().unwrap()],
        ))
        .unwrap();
        let status = probe_with(&filter, || {
            raw2(libc::SYS_getppid, 0, 0);
            0
        });
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
            "{action:?}: {status:?}"
        );
    }
}

#[test]
fn trace_without_tracer_is_enosys_and_log_allows() {
    require_root!();
    let dir = tempdir();
    let path = temp_path(&dir, "logged");
    let filter = seccomp::compile(&spec(
        LinuxSeccompAction::ScmpActAllow,
        vec![
            rule(&["getppid"], LinuxSeccompAction::ScmpActTrace)
                .build()
                .unwrap(),
            rule(&["mkdir", "mkdirat"], LinuxSeccompAction::ScmpActLog)
                .build()
                .unwrap(),
        ],
    ))
    .unwrap();
    let status = probe_with(&filter, || {
        // With no tracer attached, SECCOMP_RET_TRACE fails the call with ENOSYS.
        if raw2(libc::SYS_getppid, 0, 0) != libc::ENOSYS {
            return 1;
        }
        errno_code(nix::unistd::mkdir(
            path.as_c_str(),
            Mode::from_bits_truncate(0o755),
        ))
    });
    assert_eq!(exit_code(status), 0);
    assert!(dir.path().join("logged").is_dir());
}

#[test]
fn spec_flags_are_passed_at_load() {
    require_root!();
    let mut s = spec(
        LinuxSeccompAction::ScmpActAllow,
        vec![
            rule(&["getppid"], LinuxSeccompAction::ScmpActErrno)
                .errno_ret(99u32)
                .build()
                .unwrap(),
        ],
    );
    s.set_flags(Some(vec![
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    ]));
    let filter = seccomp::compile(&s).unwrap();
    assert_eq!(
        filter.flags,
        (libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_TSYNC) as u32
    );
    let status = probe_with(&filter, || raw2(libc::SYS_getppid, 0, 0));
    assert_eq!(exit_code(status), 99);

    // A flag the kernel does not have is refused at load with a clear error.
    let bogus = CompiledFilter {
        flags: 1 << 30,
        ..filter.clone()
    };
    let status = in_child(|| match bogus.load() {
        Err(seccomp::SeccompError::Load { errno, .. }) => errno as i32,
        Err(_) => 2,
        Ok(()) => 1,
    });
    assert_eq!(exit_code(status), libc::EINVAL);
}

/// The i386 `getpid` (number 20) through `int 0x80`, from this 64-bit process.
#[cfg(target_arch = "x86_64")]
fn ia32_getpid() -> i64 {
    let ret: i64;
    // SAFETY: `int 0x80` with eax = 20 is the i386 getpid: no arguments, no memory
    // access. The kernel preserves every register but rax (r8-r11 are declared clobbered
    // to be safe) and the instruction does not touch the stack.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") 20i64 => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack)
        );
    }
    ret
}

#[cfg(target_arch = "x86_64")]
#[test]
fn architectures_cover_32_bit_syscalls() {
    require_root!();
    // Without a filter the i386 entry point works here (CONFIG_IA32_EMULATION) ...
    let status = in_child(|| if ia32_getpid() > 0 { 0 } else { 1 });
    if exit_code(status) != 0 {
        longshore_test_support::skip!("this kernel has no i386 syscall entry");
    }
    // ... a native-only filter kills a caller that uses another architecture ...
    let native = seccomp::compile(&spec(LinuxSeccompAction::ScmpActAllow, vec![])).unwrap();
    let status = probe_with(&native, || if ia32_getpid() > 0 { 0 } else { 1 });
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{status:?}"
    );
    // ... and with SCMP_ARCH_X86 listed, rules apply to i386 numbers too.
    let mut s = spec(
        LinuxSeccompAction::ScmpActAllow,
        vec![
            rule(&["getpid"], LinuxSeccompAction::ScmpActErrno)
                .errno_ret(77u32)
                .build()
                .unwrap(),
        ],
    );
    s.set_architectures(Some(vec![
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX86,
        Arch::ScmpArchX32,
    ]));
    let multi = seccomp::compile(&s).unwrap();
    let status = probe_with(&multi, || {
        if ia32_getpid() != -77 {
            return 1;
        }
        if raw2(libc::SYS_getpid, 0, 0) != 77 {
            return 2;
        }
        0
    });
    assert_eq!(exit_code(status), 0);
}

/// Syscall numbers shared by x86-64 and aarch64 that glibc's libc crate lacks.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SYS_MSEAL: libc::c_long = 462;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SYS_OPEN_TREE_ATTR: libc::c_long = 467;

/// Probes Docker's default profile; returns 0 or the number of the failed check.
fn docker_profile_probe(devnull: &CString) -> i32 {
    // Allowed: ordinary calls.
    if raw2(libc::SYS_getpid, 0, 0) != 0 {
        return 10;
    }
    let fd = match nix::fcntl::open(
        devnull.as_c_str(),
        nix::fcntl::OFlag::O_WRONLY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(_) => return 11,
    };
    if nix::unistd::write(&fd, b"hello") != Ok(5) {
        return 12;
    }
    if nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .is_err()
    {
        return 13;
    }
    // Denied with EPERM: namespaces, keyrings, kexec, AF_VSOCK sockets.
    if raw2(libc::SYS_unshare, libc::CLONE_NEWUSER as u64, 0) != libc::EPERM {
        return 20;
    }
    if raw2(libc::SYS_keyctl, 0, (-3i64) as u64) != libc::EPERM {
        return 21;
    }
    if raw2(libc::SYS_kexec_load, 0, 0) != libc::EPERM {
        return 22;
    }
    if raw2(
        libc::SYS_socket,
        libc::AF_VSOCK as u64,
        libc::SOCK_STREAM as u64,
    ) != libc::EPERM
    {
        return 23;
    }
    // personality: only the listed values.
    if raw2(libc::SYS_personality, 0xffff_ffff, 0) != 0 {
        return 24;
    }
    if raw2(libc::SYS_personality, 0x0040_0000, 0) != libc::EPERM {
        return 25;
    }
    // clone3 answers ENOSYS so that libc falls back to clone.
    if raw2(libc::SYS_clone3, 0, 0) != libc::ENOSYS {
        return 26;
    }
    // mseal is allowed by the profile although libseccomp 2.5 does not know it (the
    // kernel answers 0 or EINVAL, never EPERM) ...
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if raw2(SYS_MSEAL, 0, 0) == libc::EPERM {
        return 27;
    }
    // ... and a syscall newer than every one the profile names answers ENOSYS.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if raw2(SYS_OPEN_TREE_ATTR, u64::MAX, 0) != libc::ENOSYS {
        return 28;
    }
    0
}

#[test]
fn docker_default_profile_blocks_and_allows() {
    require_root!();
    let default_caps: Vec<Capability> = caps::docker_default_capabilities().into_iter().collect();
    let profile = seccomp::docker_default_profile(&default_caps);
    let filter = seccomp::compile(&profile).unwrap();
    eprintln!(
        "docker default profile: {} BPF instructions, names unknown to libseccomp: {:?}",
        filter.instructions(),
        filter.unknown_syscalls
    );
    let devnull = CString::new("/dev/null").unwrap();
    assert_eq!(
        exit_code(probe_with(&filter, || docker_profile_probe(&devnull))),
        0
    );

    // Control: without the filter, root may create a user namespace.
    let status = in_child(|| raw2(libc::SYS_unshare, libc::CLONE_NEWUSER as u64, 0));
    assert_eq!(
        exit_code(status),
        0,
        "unshare(CLONE_NEWUSER) without a filter"
    );
}

#[test]
fn docker_default_profile_with_sys_admin_allows_namespaces() {
    require_root!();
    let mut with_admin: Vec<Capability> = caps::docker_default_capabilities().into_iter().collect();
    with_admin.push(Capability::SysAdmin);
    let profile = seccomp::docker_default_profile(&with_admin);
    let names = |p: &LinuxSeccomp| -> Vec<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
            .flat_map(|r| r.names().clone())
            .collect()
    };
    assert!(names(&profile).iter().any(|n| n == "mount"));
    let without = seccomp::docker_default_profile(
        &caps::docker_default_capabilities()
            .into_iter()
            .collect::<Vec<_>>(),
    );
    assert!(!names(&without).iter().any(|n| n == "mount"));

    let filter = seccomp::compile(&profile).unwrap();
    let status = probe_with(&filter, || {
        if raw2(libc::SYS_unshare, libc::CLONE_NEWUSER as u64, 0) != 0 {
            return 1;
        }
        // Still denied: not in any rule, whatever the capabilities.
        if raw2(libc::SYS_kexec_load, 0, 0) != libc::EPERM {
            return 2;
        }
        // clone3 is allowed now (EFAULT/EINVAL from the kernel, not ENOSYS).
        if raw2(libc::SYS_clone3, 0, 0) == libc::ENOSYS {
            return 3;
        }
        0
    });
    assert_eq!(exit_code(status), 0);
}

#[test]
fn disk_cache_only_in_a_private_directory() {
    require_root!();
    // Specs no other test compiles, so the in-memory cache cannot answer first.
    let unique = |n: u32| {
        spec(
            LinuxSeccompAction::ScmpActAllow,
            vec![
                rule(&["getppid"], LinuxSeccompAction::ScmpActErrno)
                    .errno_ret(std::process::id() % 1000 + n)
                    .build()
                    .unwrap(),
            ],
        )
    };
    let (a, b) = (unique(1000), unique(2000));
    let dir = tempdir();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let from_open = seccomp::compile_cached(&a, &open).unwrap();
    assert_eq!(
        std::fs::read_dir(&open).unwrap().count(),
        0,
        "nothing cached"
    );
    assert_eq!(
        from_open.program,
        seccomp::compile_uncached(&a).unwrap().program
    );

    let private = dir.path().join("private");
    let from_private = seccomp::compile_cached(&b, &private).unwrap();
    assert_eq!(std::fs::read_dir(&private).unwrap().count(), 1, "one entry");
    assert_eq!(
        from_private.program,
        seccomp::compile_uncached(&b).unwrap().program
    );
    // And the cached program is the working filter.
    let want = (std::process::id() % 1000 + 2000) as i32 & 0xff;
    let status = probe_with(&from_private, || raw2(libc::SYS_getppid, 0, 0) & 0xff);
    assert_eq!(exit_code(status), want);
}
