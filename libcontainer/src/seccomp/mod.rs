//! Seccomp: compile the spec's filter to BPF in the runtime, load it in the container.
//!
//! The work is split in two so that the container's init process never calls into
//! libseccomp (which allocates and is not async-signal-safe):
//!
//! 1. [`compile`] runs in the runtime, before `fork`. It turns the runtime spec's
//!    [`LinuxSeccomp`] into a classic-BPF program with libseccomp (`seccomp_init`,
//!    `seccomp_arch_add`, `seccomp_rule_add_array`, `seccomp_export_bpf`), with the same
//!    rules as runc: `SCMP_ACT_KILL` means kill-thread, `errnoRet` defaults to `EPERM`,
//!    a rule whose action equals the default action is dropped, syscall names this
//!    libseccomp does not know are skipped (and listed in
//!    [`CompiledFilter::unknown_syscalls`]), and several conditions on the same argument
//!    become separate rules (OR) while conditions on different arguments stay one rule
//!    (AND). Like runc's `patchbpf`, a short BPF prefix adds unconditional rules for
//!    syscalls newer than the installed libseccomp (by their native number) and answers
//!    `ENOSYS` for numbers above every syscall the filter knows.
//! 2. [`CompiledFilter::load`] runs in the container's init process. It is one
//!    `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)` system call: no allocation, no
//!    locks, safe in a child forked from a multi-threaded process.
//!
//! [`docker_default_profile`] builds Docker's default profile for a given capability set,
//! converted exactly as moby's `profiles/seccomp` package does.
//!
//! ```no_run
//! use longshore_container::{caps, seccomp};
//!
//! let caps: Vec<_> = caps::docker_default_capabilities().into_iter().collect();
//! let profile = seccomp::docker_default_profile(&caps);
//! let filter = seccomp::compile(&profile)?;
//! // ... fork; in the child, after setting up the rest of the container:
//! filter.load()?;
//! # Ok::<(), seccomp::SeccompError>(())
//! ```
//!
//! Not supported: `SCMP_ACT_NOTIFY` (the seccomp user-notification agent and
//! `listenerPath`); a spec that asks for it is refused with
//! [`SeccompError::NotifyUnsupported`].

mod cache;
mod docker;
mod patch;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use libseccomp::error::SeccompError as LibseccompError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

pub use docker::{DockerProfileContext, docker_profile, try_docker_default_profile};

/// libseccomp's `SCMP_FLTATR_CTL_OPTIMIZE`: 2, a binary tree of the syscall numbers.
const OPTIMIZE: u32 = 2;
/// Size of one `struct sock_filter` instruction in bytes.
const INSN_SIZE: usize = 8;
/// The kernel's limit on instructions in one filter (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;
/// Syscalls take at most six arguments.
const MAX_ARGS: usize = 6;
/// The largest errno (the kernel's `MAX_ERRNO`; libseccomp refuses more).
const MAX_ERRNO: u32 = 4095;
/// `errnoRet` when the spec gives none (runc and crun use `EPERM`).
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// Errors from building or loading a seccomp filter.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The spec uses `SCMP_ACT_NOTIFY`, which needs a seccomp agent.
    #[error(
        "seccomp notify (listenerPath {}) not supported: SCMP_ACT_NOTIFY{} needs a seccomp agent, which longshore does not implement",
        .listener_path.as_ref().map_or_else(|| "unset".to_string(), |p| format!("{p:?}")),
        .syscall.as_ref().map_or_else(String::new, |s| format!(" (for {s:?})"))
    )]
    NotifyUnsupported {
        /// The spec's `listenerPath`, if any.
        listener_path: Option<PathBuf>,
        /// The syscall rule that asked for it, or `None` for the default action.
        syscall: Option<String>,
    },
    /// An `errnoRet` is not an errno (0-4095) or a trace value does not fit 16 bits.
    #[error("seccomp rule for {syscall:?}: return value {value} is out of range (0-{max})")]
    ReturnValueOutOfRange {
        /// The syscall (or `"defaultAction"`).
        syscall: String,
        /// The value given.
        value: u32,
        /// The largest value allowed for this action.
        max: u32,
    },
    /// An argument condition names an argument beyond the sixth.
    #[error("seccomp rule for {syscall:?}: argument index {index} is out of range (0-5)")]
    ArgIndexOutOfRange {
        /// The syscall.
        syscall: String,
        /// The index given.
        index: usize,
    },
    /// The installed libseccomp cannot handle an architecture the spec lists.
    #[error("seccomp architecture {arch}: not supported by the installed libseccomp: {source}")]
    UnsupportedArch {
        /// The architecture as named in the spec.
        arch: String,
        /// libseccomp's error.
        source: LibseccompError,
    },
    /// libseccomp refused a rule.
    #[error("seccomp rule {action} for {syscall:?}: libseccomp refused it: {source}")]
    Rule {
        /// The syscall.
        syscall: String,
        /// The rule's action.
        action: String,
        /// libseccomp's error.
        source: LibseccompError,
    },
    /// Another libseccomp call failed.
    #[error("seccomp: {what}: {source}")]
    Libseccomp {
        /// What we were doing.
        what: &'static str,
        /// libseccomp's error.
        source: LibseccompError,
    },
    /// Exporting the BPF program failed.
    #[error("seccomp: cannot export the BPF program: {0}")]
    Export(std::io::Error),
    /// The BPF program is empty, not whole instructions, or longer than the kernel takes.
    #[error(
        "seccomp: BPF program of {bytes} bytes is invalid: it must hold 1 to {MAX_INSNS} instructions of {INSN_SIZE} bytes"
    )]
    InvalidProgram {
        /// Program length in bytes.
        bytes: usize,
    },
    /// The kernel refused the filter.
    #[error(
        "seccomp: loading the filter (flags {flags:#x}) failed: {errno} (loading needs no_new_privs or CAP_SYS_ADMIN; flags need a recent kernel)"
    )]
    Load {
        /// The `SECCOMP_FILTER_FLAG_*` bits passed.
        flags: u32,
        /// The kernel's error.
        errno: nix::errno::Errno,
    },
    /// With `SECCOMP_FILTER_FLAG_TSYNC`, another thread could not be synchronised.
    #[error("seccomp: SECCOMP_FILTER_FLAG_TSYNC failed: thread {tid} cannot take the filter")]
    Tsync {
        /// The thread that failed.
        tid: i64,
    },
    /// A Docker-format profile is malformed.
    #[error("seccomp profile: {0}")]
    Profile(String),
}

/// A filter compiled to a classic BPF program, ready to load.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    /// The `struct sock_filter` array, 8 bytes an instruction.
    pub program: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` bits from the spec's `flags`, passed to `seccomp(2)`.
    pub flags: u32,
    /// Syscall names in the spec that neither the installed libseccomp nor the BPF
    /// prefix's table knows; they were skipped, as runc does.
    pub unknown_syscalls: Vec<String>,
}

impl CompiledFilter {
    /// Loads the filter into the calling thread (no allocation; safe after fork).
    ///
    /// Needs `no_new_privs` or `CAP_SYS_ADMIN` in the caller's user namespace.
    pub fn load(&self) -> Result<(), SeccompError> {
        let bytes = self.program.len();
        if bytes == 0 || !bytes.is_multiple_of(INSN_SIZE) || bytes / INSN_SIZE > MAX_INSNS {
            return Err(SeccompError::InvalidProgram { bytes });
        }
        match sys_seccomp_set_mode_filter(self.flags, &self.program) {
            Ok(0) => Ok(()),
            Ok(tid) => Err(SeccompError::Tsync { tid }),
            Err(nix::errno::Errno::ENOSYS) if self.flags == 0 => {
                // Kernels before 3.17 lack seccomp(2); prctl takes the same program.
                sys_prctl_set_seccomp(&self.program)
                    .map_err(|errno| SeccompError::Load { flags: 0, errno })
            }
            Err(errno) => Err(SeccompError::Load {
                flags: self.flags,
                errno,
            }),
        }
    }

    /// Number of BPF instructions in the program.
    pub fn instructions(&self) -> usize {
        self.program.len() / INSN_SIZE
    }
}

/// Builds the kernel's `struct sock_fprog` for `program` (whole 8-byte instructions,
/// at most [`MAX_INSNS`], checked by the caller).
fn sock_fprog(program: &[u8]) -> libc::sock_fprog {
    libc::sock_fprog {
        // Fits: the caller checked at most MAX_INSNS (4096) instructions.
        len: (program.len() / INSN_SIZE) as u16,
        // The kernel only reads through this pointer (copy_from_user, which has no
        // alignment requirement); Rust never dereferences it as a sock_filter.
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    }
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`; returns the syscall's non-negative
/// result (a thread id when TSYNC fails).
fn sys_seccomp_set_mode_filter(flags: u32, program: &[u8]) -> Result<i64, nix::errno::Errno> {
    let prog = sock_fprog(program);
    // SAFETY: `prog` lives on this stack frame for the whole call and points at
    // `program`, a live slice of `prog.len * 8` bytes; the kernel copies the program in
    // and keeps no pointer to our memory. SECCOMP_SET_MODE_FILTER takes exactly these
    // three arguments; no Rust invariant depends on the result.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            libc::c_ulong::from(flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(rc)
    }
}

/// `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)` for kernels without seccomp(2).
fn sys_prctl_set_seccomp(program: &[u8]) -> Result<(), nix::errno::Errno> {
    let prog = sock_fprog(program);
    // SAFETY: as in `sys_seccomp_set_mode_filter`: `prog` and the program it points at
    // outlive the call, and the kernel only copies from them.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(())
    }
}

/// Compiles the spec's seccomp section for the host's architecture.
///
/// The host's native architecture is always in the filter; the spec's `architectures`
/// are added to it. Results are cached in memory (a few entries), so a long-lived
/// process pays libseccomp's cost (about 20 ms for Docker's profile) once per profile.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let Some(key) = cache::key(seccomp) else {
        return compile_uncached(seccomp);
    };
    if let Some(filter) = cache::memory_get(&key) {
        return Ok(filter);
    }
    let filter = compile_uncached(seccomp)?;
    cache::memory_put(key, &filter);
    Ok(filter)
}

/// Like [`compile`], with an on-disk cache in `dir` for one-shot processes (the
/// runtime binary): `dir` is created with mode 0700 if missing, and only used if it
/// belongs to the caller and is closed to group and others, since whoever can write a
/// cached program can weaken the filter. Cache entries that are corrupt or for another
/// spec are ignored and rewritten; failing to write one is not an error.
pub fn compile_cached(seccomp: &LinuxSeccomp, dir: &Path) -> Result<CompiledFilter, SeccompError> {
    let Some(key) = cache::key(seccomp) else {
        return compile_uncached(seccomp);
    };
    if let Some(filter) = cache::memory_get(&key) {
        return Ok(filter);
    }
    let use_disk = cache::usable_dir(dir);
    if let Some(filter) = use_disk.then(|| cache::disk_get(dir, &key)).flatten() {
        cache::memory_put(key, &filter);
        return Ok(filter);
    }
    let filter = compile_uncached(seccomp)?;
    if use_disk {
        // Best effort: the filter is correct whether or not the cache could be written.
        let _ = cache::disk_put(dir, &key, &filter);
    }
    cache::memory_put(key, &filter);
    Ok(filter)
}

/// [`compile`] without the cache.
pub fn compile_uncached(seccomp: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    compile_with(seccomp, OPTIMIZE)
}

/// [`compile_uncached`] with libseccomp's optimization level (1: a chain, 2: a tree).
fn compile_with(seccomp: &LinuxSeccomp, optimize: u32) -> Result<CompiledFilter, SeccompError> {
    let listener_path = seccomp.listener_path().clone();
    let default_action = scmp_action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "defaultAction",
    )
    .map_err(|e| notify_context(e, &listener_path))?;

    let mut ctx =
        ScmpFilterContext::new(default_action).map_err(|source| SeccompError::Libseccomp {
            what: "cannot create a filter context",
            source,
        })?;
    // a binary tree over the syscall numbers instead of libseccomp's default chain of
    // one comparison per syscall (~350 for Docker's profile on each architecture): a
    // syscall in the container takes ~9 comparisons instead of up to 350, and loading the
    // filter, where the kernel runs the program once for every syscall number to build
    // its always-allowed bitmap (`seccomp_cache_prepare`), takes a fraction of the time.
    // libseccomp before 2.5 has no such choice: it builds the chain, which means the same
    let _ = ctx.set_ctl_optimize(optimize);
    ctx.add_arch(ScmpArch::native())
        .map_err(|source| SeccompError::Libseccomp {
            what: "cannot add the native architecture",
            source,
        })?;
    for arch in seccomp.architectures().iter().flatten() {
        ctx.add_arch(scmp_arch(*arch))
            .map_err(|source| SeccompError::UnsupportedArch {
                arch: arch.to_string(),
                source,
            })?;
    }

    let mut unknown_syscalls = Vec::new();
    // Rules for names libseccomp does not know, added by the BPF prefix instead.
    let mut extra: Vec<(u32, u32)> = Vec::new();
    // The highest native syscall number the filter knows.
    let mut max_known: Option<u32> = None;
    for rule in seccomp.syscalls().iter().flatten() {
        let first = rule.names().first().map(String::as_str).unwrap_or("");
        let action = scmp_action(rule.action(), rule.errno_ret(), first)
            .map_err(|e| notify_context(e, &listener_path))?;
        let args = rule.args().as_deref().unwrap_or(&[]);
        for name in rule.names() {
            let resolved = ScmpSyscall::from_name(name).ok();
            let native = match resolved {
                // Negative numbers are libseccomp's pseudo-syscalls (not on this arch).
                Some(s) => u32::try_from(s.as_raw_syscall()).ok(),
                None => patch::native_number(name),
            };
            if let Some(nr) = native {
                max_known = Some(max_known.map_or(nr, |m| m.max(nr)));
            }
            // libseccomp refuses a rule that repeats the default action; runc skips it.
            if action == default_action {
                continue;
            }
            let conditions = conditions(name, args)?;
            let Some(syscall) = resolved else {
                match native {
                    Some(nr) if conditions.is_empty() => {
                        if !extra.iter().any(|(n, _)| *n == nr) {
                            extra.push((nr, kernel_action(action)));
                        }
                    }
                    _ => {
                        if !unknown_syscalls.contains(name) {
                            unknown_syscalls.push(name.clone());
                        }
                    }
                }
                continue;
            };
            let mut per_arg = [0usize; MAX_ARGS];
            for a in args {
                // `index` was checked < MAX_ARGS in `conditions`.
                per_arg[a.index()] += 1;
            }
            let one_rule_per_condition = per_arg.iter().any(|&n| n > 1);
            add_rule(
                &mut ctx,
                action,
                syscall,
                name,
                &conditions,
                one_rule_per_condition,
            )?;
        }
    }

    // Numbers above every syscall the filter knows get ENOSYS when the default denies
    // (runc's behaviour), so programs can fall back from syscalls newer than the profile.
    let denies = !matches!(
        default_action,
        ScmpAction::Allow | ScmpAction::Log | ScmpAction::Errno(libc::ENOSYS)
    );
    let enosys_above = max_known.filter(|_| denies);
    let program = patch::prefix(export(&ctx)?, &extra, enosys_above);
    let bytes = program.len();
    if bytes == 0 || !bytes.is_multiple_of(INSN_SIZE) || bytes / INSN_SIZE > MAX_INSNS {
        return Err(SeccompError::InvalidProgram { bytes });
    }
    Ok(CompiledFilter {
        program,
        flags: filter_flags(seccomp.flags().as_deref().unwrap_or(&[])),
        unknown_syscalls,
    })
}

/// Docker's default seccomp profile as a runtime-spec section, for a container that
/// holds `caps`.
///
/// `caps` is the container's bounding set (moby checks `process.capabilities.bounding`).
/// Rules that depend on the kernel version are decided against the running kernel; if
/// its release cannot be parsed, rules needing a minimum kernel are left out (which
/// denies more, never less).
pub fn docker_default_profile(caps: &[Capability]) -> LinuxSeccomp {
    docker::docker_default_profile(caps)
}

/// Puts the spec's `listenerPath` into a notify error.
fn notify_context(err: SeccompError, listener: &Option<PathBuf>) -> SeccompError {
    match err {
        SeccompError::NotifyUnsupported { syscall, .. } => SeccompError::NotifyUnsupported {
            listener_path: listener.clone(),
            syscall,
        },
        other => other,
    }
}

/// Maps a spec action (with its `errnoRet`) to libseccomp's, as runc does.
fn scmp_action(
    action: LinuxSeccompAction,
    ret: Option<u32>,
    syscall: &str,
) -> Result<ScmpAction, SeccompError> {
    let value = |default: u32, max: u32| -> Result<u16, SeccompError> {
        let v = ret.unwrap_or(default);
        u16::try_from(v).ok().filter(|_| v <= max).ok_or_else(|| {
            SeccompError::ReturnValueOutOfRange {
                syscall: syscall.to_string(),
                value: v,
                max,
            }
        })
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(i32::from(value(DEFAULT_ERRNO, MAX_ERRNO)?))
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(value(DEFAULT_ERRNO, u32::from(u16::MAX))?)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::NotifyUnsupported {
                listener_path: None,
                syscall: (syscall != "defaultAction").then(|| syscall.to_string()),
            });
        }
    })
}

/// The kernel's `SECCOMP_RET_*` value for a libseccomp action.
fn kernel_action(action: ScmpAction) -> u32 {
    match action {
        ScmpAction::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        ScmpAction::KillThread => libc::SECCOMP_RET_KILL_THREAD,
        ScmpAction::Trap => libc::SECCOMP_RET_TRAP,
        ScmpAction::Errno(e) => libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA),
        ScmpAction::Trace(t) => libc::SECCOMP_RET_TRACE | u32::from(t),
        ScmpAction::Log => libc::SECCOMP_RET_LOG,
        // Allow, and Notify which `scmp_action` never returns.
        _ => libc::SECCOMP_RET_ALLOW,
    }
}

/// Maps a spec architecture to libseccomp's token.
fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Turns the spec's argument conditions into libseccomp comparisons.
fn conditions(
    syscall: &str,
    args: &[LinuxSeccompArg],
) -> Result<Vec<ScmpArgCompare>, SeccompError> {
    args.iter()
        .map(|a| {
            let index = a.index();
            if index >= MAX_ARGS {
                return Err(SeccompError::ArgIndexOutOfRange {
                    syscall: syscall.to_string(),
                    index,
                });
            }
            let (op, datum) = match a.op() {
                LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
                LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
                LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
                LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
                LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
                LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
                // OCI: `value` is the mask, `valueTwo` the value the masked argument
                // must equal (libseccomp's MakeCondition order, as runc passes them).
                LinuxSeccompOperator::ScmpCmpMaskedEq => (
                    ScmpCompareOp::MaskedEqual(a.value()),
                    a.value_two().unwrap_or(0),
                ),
            };
            // Fits: index < MAX_ARGS (6).
            Ok(ScmpArgCompare::new(index as u32, op, datum))
        })
        .collect()
}

/// Adds the rule(s) for one syscall: all conditions in one rule (AND), unless one
/// argument is compared more than once, then one rule per condition (OR), as runc does.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    action: ScmpAction,
    syscall: ScmpSyscall,
    name: &str,
    conditions: &[ScmpArgCompare],
    one_rule_per_condition: bool,
) -> Result<(), SeccompError> {
    let rule_err = |source| SeccompError::Rule {
        syscall: name.to_string(),
        action: format!("{action:?}"),
        source,
    };
    if one_rule_per_condition {
        for c in conditions {
            ctx.add_rule_conditional(action, syscall, std::slice::from_ref(c))
                .map_err(rule_err)?;
        }
    } else {
        ctx.add_rule_conditional(action, syscall, conditions)
            .map_err(rule_err)?;
    }
    Ok(())
}

/// Exports the filter's BPF program through a memfd (libseccomp 2.5 has no in-memory
/// export).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    let fd = rustix::fs::memfd_create("longshore-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&file)
        .map_err(|source| SeccompError::Libseccomp {
            what: "cannot export the BPF program",
            source,
        })?;
    let mut program = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut program))
        .map_err(SeccompError::Export)?;
    Ok(program)
}

/// The `SECCOMP_FILTER_FLAG_*` bits for the spec's flags.
///
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` only has a meaning with a notify listener,
/// which is refused earlier, so it is dropped (the kernel would refuse it alone).
fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> u32 {
    flags.iter().fold(0, |acc, f| {
        acc | match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        } as u32
    })
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    use super::*;

    fn rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscallBuilder {
        LinuxSyscallBuilder::default()
            .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .action(action)
    }

    /// Runs a classic-BPF seccomp program on `data` (a `struct seccomp_data`) and returns
    /// its action. Every opcode libseccomp and the prefix emit is here; another one fails
    /// the test.
    fn run_filter(program: &[u8], data: &[u8; 64]) -> u32 {
        let insns: Vec<(u16, u8, u8, u32)> = program
            .chunks_exact(INSN_SIZE)
            .map(|c| {
                (
                    u16::from_ne_bytes([c[0], c[1]]),
                    c[2],
                    c[3],
                    u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0usize;
        loop {
            let (code, jt, jf, k) = insns[pc];
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { jt } else { jf });
            match code {
                0x20 => {
                    let o = k as usize;
                    a = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
                }
                0x00 => a = k,
                0x01 => x = k,
                0x60 => a = mem[k as usize],
                0x61 => x = mem[k as usize],
                0x02 => mem[k as usize] = a,
                0x03 => mem[k as usize] = x,
                0x54 => a &= k,
                0x5c => a &= x,
                0x44 => a |= k,
                0x07 => x = a,
                0x87 => a = x,
                0x05 => pc += k as usize,
                0x15 => pc += jump(a == k),
                0x25 => pc += jump(a > k),
                0x35 => pc += jump(a >= k),
                0x45 => pc += jump(a & k != 0),
                0x1d => pc += jump(a == x),
                0x2d => pc += jump(a > x),
                0x3d => pc += jump(a >= x),
                0x4d => pc += jump(a & x != 0),
                0x06 => return k,
                0x16 => return a,
                other => panic!("opcode {other:#x} at {}", pc - 1),
            }
        }
    }

    fn seccomp_data(arch: u32, nr: u32, args: [u64; 6]) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_ne_bytes());
        d[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, v) in args.iter().enumerate() {
            d[16 + 8 * i..24 + 8 * i].copy_from_slice(&v.to_ne_bytes());
        }
        d
    }

    /// The binary tree allows and denies exactly what libseccomp's chain did, for
    /// Docker's profile with its 14 default capabilities and with all of them: every
    /// syscall number (0-1023) of x86-64, x32 and x86 with all-zero and all-one
    /// arguments, and each syscall the profile has argument rules for with every value
    /// the profile compares against in every argument. It also runs a few numbers of an
    /// architecture the filter does not know.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_tree_decides_as_the_chain_for_dockers_profile() {
        const X86_64: u32 = 0xc000_003e;
        const I386: u32 = 0x4000_0003;
        const AARCH64: u32 = 0xc000_00b7;
        let default: Vec<Capability> = crate::caps::docker_default_capabilities()
            .into_iter()
            .collect();
        let all: Vec<Capability> = crate::caps::all_capabilities().into_iter().collect();
        for caps in [default, all] {
            let profile = docker_default_profile(&caps);
            let tree = compile_with(&profile, 2).unwrap();
            let chain = compile_with(&profile, 1).unwrap();
            assert_ne!(tree.program, chain.program, "libseccomp built no tree");
            // the values the rules compare against, and the syscalls that have such rules
            let mut values = vec![0u64, u64::MAX, 1, 0xffff_ffff, 1 << 32];
            let mut conditional = Vec::new();
            for rule in profile.syscalls().iter().flatten() {
                let Some(args) = rule.args().as_ref().filter(|a| !a.is_empty()) else {
                    continue;
                };
                for a in args {
                    values.extend([a.value(), a.value() | 1, a.value().wrapping_sub(1)]);
                    // a mask's and a value's bits one by one (a flag alone in `clone`)
                    for v in [Some(a.value()), a.value_two()].into_iter().flatten() {
                        values.push(v);
                        values.extend((0..64).map(|b| 1u64 << b).filter(|bit| v & bit != 0));
                    }
                }
                conditional.extend(rule.names().iter().cloned());
            }
            values.sort_unstable();
            values.dedup();
            let numbers = |arch: ScmpArch| -> Vec<u32> {
                conditional
                    .iter()
                    .filter_map(|n| ScmpSyscall::from_name_by_arch(n, arch).ok())
                    .filter_map(|s| u32::try_from(s.as_raw_syscall()).ok())
                    .collect()
            };
            let sets = [
                (X86_64, 0u32, numbers(ScmpArch::X8664)),
                (X86_64, 0x4000_0000, numbers(ScmpArch::X32)),
                (I386, 0, numbers(ScmpArch::X86)),
            ];
            let mut checked = 0usize;
            let mut same = |arch: u32, nr: u32, args: [u64; 6]| {
                let d = seccomp_data(arch, nr, args);
                let (t, c) = (
                    run_filter(&tree.program, &d),
                    run_filter(&chain.program, &d),
                );
                assert_eq!(t, c, "arch {arch:#x} nr {nr:#x} args {args:x?}");
                checked += 1;
            };
            for (arch, base, cond) in &sets {
                for n in 0..1024u32 {
                    same(*arch, base + n, [0; 6]);
                    same(*arch, base + n, [u64::MAX; 6]);
                }
                for nr in cond {
                    let nr = if *base != 0 { *nr | base } else { *nr };
                    for i in 0..6 {
                        for v in &values {
                            let mut args = [0u64; 6];
                            args[i] = *v;
                            same(*arch, nr, args);
                        }
                    }
                }
            }
            for n in [0u32, 59, 1000] {
                same(AARCH64, n, [0; 6]);
            }
            assert!(checked > 6000, "{checked}");
        }
    }

    #[test]
    fn unknown_syscalls_are_skipped_and_recorded() {
        let spec = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![
                rule(
                    &["mkdir", "no_such_syscall_xyz", "no_such_syscall_xyz"],
                    LinuxSeccompAction::ScmpActErrno,
                )
                .build()
                .unwrap(),
            ])
            .build()
            .unwrap();
        let f = compile(&spec).unwrap();
        assert_eq!(f.unknown_syscalls, vec!["no_such_syscall_xyz".to_string()]);
        assert!(f.instructions() > 4);
    }

    #[test]
    fn notify_is_refused_with_listener_path() {
        let spec = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .listener_path("/run/agent.sock")
            .syscalls(vec![
                rule(&["mkdir"], LinuxSeccompAction::ScmpActNotify)
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        let err = compile(&spec).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("seccomp notify"), "{msg}");
        assert!(msg.contains("/run/agent.sock"), "{msg}");
        assert!(msg.contains("mkdir"), "{msg}");

        let spec = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActNotify)
            .build()
            .unwrap();
        assert!(matches!(
            compile(&spec),
            Err(SeccompError::NotifyUnsupported { syscall: None, .. })
        ));
    }

    #[test]
    fn bad_arg_index_and_return_value_are_refused() {
        let spec = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![
                rule(&["personality"], LinuxSeccompAction::ScmpActErrno)
                    .args(vec![
                        LinuxSeccompArgBuilder::default()
                            .index(6usize)
                            .value(1u64)
                            .op(LinuxSeccompOperator::ScmpCmpEq)
                            .build()
                            .unwrap(),
                    ])
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        let err = compile(&spec).unwrap_err();
        assert!(
            matches!(err, SeccompError::ArgIndexOutOfRange { index: 6, .. }),
            "{err}"
        );

        let spec = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .default_errno_ret(4096u32)
            .build()
            .unwrap();
        let err = compile(&spec).unwrap_err();
        assert!(
            matches!(
                err,
                SeccompError::ReturnValueOutOfRange {
                    value: 4096,
                    max: 4095,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rule_equal_to_default_is_dropped() {
        let base = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .build()
            .unwrap();
        let with_redundant = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![
                rule(&["getpid"], LinuxSeccompAction::ScmpActAllow)
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        assert_eq!(
            compile(&base).unwrap().program,
            compile(&with_redundant).unwrap().program
        );
    }

    #[test]
    fn flags_map_to_kernel_bits() {
        assert_eq!(
            filter_flags(&[
                LinuxSeccompFilterFlag::SeccompFilterFlagLog,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
            ]),
            (libc::SECCOMP_FILTER_FLAG_LOG
                | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                | libc::SECCOMP_FILTER_FLAG_TSYNC) as u32
        );
    }

    #[test]
    fn invalid_programs_are_not_loaded() {
        for program in [vec![], vec![0u8; 7], vec![0u8; 8 * (MAX_INSNS + 1)]] {
            let f = CompiledFilter {
                program,
                flags: 0,
                unknown_syscalls: vec![],
            };
            assert!(matches!(f.load(), Err(SeccompError::InvalidProgram { .. })));
        }
    }

    #[test]
    fn every_arch_maps() {
        for name in [
            "SCMP_ARCH_X86",
            "SCMP_ARCH_X86_64",
            "SCMP_ARCH_X32",
            "SCMP_ARCH_AARCH64",
            "SCMP_ARCH_ARM",
            "SCMP_ARCH_S390X",
            "SCMP_ARCH_MIPS64N32",
            "SCMP_ARCH_PPC64LE",
            "SCMP_ARCH_RISCV64",
        ] {
            let arch: Arch = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            let token = scmp_arch(arch);
            assert_eq!(token, name.parse::<ScmpArch>().unwrap(), "{name}");
        }
    }
}
