//! A classic-BPF prefix for what the installed libseccomp cannot express.
//!
//! libseccomp resolves syscall names from its own table, so a libseccomp older than the
//! kernel (Debian 12 ships 2.5.4; the kernel here is 6.x) drops rules for new syscalls
//! such as `mseal` or `listmount`, and those then get the default action (`EPERM`) even
//! where the profile allows them. Like runc's `patchbpf`, the prefix built here runs
//! before libseccomp's program, on the native architecture only:
//!
//! 1. unconditional rules for names libseccomp did not know but this build knows the
//!    native number of get their action;
//! 2. syscall numbers above the highest one the filter knows return `ENOSYS` (when the
//!    default action denies), so that a program can tell "too new for this filter" from
//!    "forbidden" and fall back, as glibc does for `clone3`.
//!
//! libseccomp's program starts by loading the architecture again (`ld [4]`), so jumping
//! to its first instruction is always valid; the prefix checks that before patching.

/// `struct seccomp_data` offsets.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

/// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

/// x32 syscalls share x86-64's audit arch with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The audit architecture of this build's target, if the prefix supports it.
fn native_audit_arch() -> Option<u32> {
    if cfg!(target_arch = "x86_64") {
        Some(0xc000_003e) // AUDIT_ARCH_X86_64
    } else if cfg!(target_arch = "aarch64") {
        Some(0xc000_00b7) // AUDIT_ARCH_AARCH64
    } else {
        None
    }
}

/// The native number of syscalls newer than some libseccomp releases know.
///
/// Since Linux 5.1 (number 424) new syscalls get the same number on every architecture
/// but alpha, ia64 and mips (include/uapi/asm-generic/unistd.h,
/// arch/x86/entry/syscalls/syscall_64.tbl); glibc's libc crate does not list them all.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) fn native_number(name: &str) -> Option<u32> {
    Some(match name {
        "cachestat" => 451,
        "fchmodat2" => 452,
        "map_shadow_stack" => 453,
        "futex_wake" => 454,
        "futex_wait" => 455,
        "futex_requeue" => 456,
        "statmount" => 457,
        "listmount" => 458,
        "lsm_get_self_attr" => 459,
        "lsm_set_self_attr" => 460,
        "lsm_list_modules" => 461,
        "mseal" => 462,
        "setxattrat" => 463,
        "getxattrat" => 464,
        "listxattrat" => 465,
        "removexattrat" => 466,
        "open_tree_attr" => 467,
        // x86-64 only, and outside the shared range.
        #[cfg(target_arch = "x86_64")]
        "uretprobe" => 335,
        _ => return None,
    })
}

/// No fallback numbers on other architectures.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) fn native_number(_name: &str) -> Option<u32> {
    None
}

/// One instruction, in the kernel's `struct sock_filter` layout (host byte order).
fn insn(out: &mut Vec<u8>, code: u16, jt: u8, jf: u8, k: u32) {
    out.extend_from_slice(&code.to_ne_bytes());
    out.push(jt);
    out.push(jf);
    out.extend_from_slice(&k.to_ne_bytes());
}

/// Whether `program` starts with `ld [4]` (libseccomp's architecture load).
fn starts_with_arch_load(program: &[u8]) -> bool {
    program.len() >= 8
        && u16::from_ne_bytes([program[0], program[1]]) == LD_W_ABS
        && u32::from_ne_bytes([program[4], program[5], program[6], program[7]]) == ARCH_OFFSET
}

/// Builds the prefix for `extra` (native number, `SECCOMP_RET_*` value) and, if
/// `enosys_above` is set, the `ENOSYS` rule for numbers above it; returns `program`
/// unchanged if there is nothing to add, the architecture is not supported, or the
/// program does not start as expected.
pub(super) fn prefix(program: Vec<u8>, extra: &[(u32, u32)], enosys_above: Option<u32>) -> Vec<u8> {
    let Some(arch) = native_audit_arch() else {
        return program;
    };
    if (extra.is_empty() && enosys_above.is_none()) || !starts_with_arch_load(&program) {
        return program;
    }
    let len = 4 + 2 * extra.len() + if enosys_above.is_some() { 2 } else { 0 };
    // Jump offsets are 8 bits; the prefix is a few instructions in practice.
    let Ok(to_orig_from_1) = u8::try_from(len - 2) else {
        return program;
    };
    let to_orig_from_3 = to_orig_from_1 - 2;
    let mut out = Vec::with_capacity(len * 8 + program.len());
    insn(&mut out, LD_W_ABS, 0, 0, ARCH_OFFSET);
    insn(&mut out, JEQ_K, 0, to_orig_from_1, arch);
    insn(&mut out, LD_W_ABS, 0, 0, NR_OFFSET);
    insn(&mut out, JGE_K, to_orig_from_3, 0, X32_SYSCALL_BIT);
    for &(nr, action) in extra {
        insn(&mut out, JEQ_K, 0, 1, nr);
        insn(&mut out, RET_K, 0, 0, action);
    }
    if let Some(max) = enosys_above {
        insn(&mut out, JGT_K, 0, 1, max);
        insn(
            &mut out,
            RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        );
    }
    debug_assert_eq!(out.len(), len * 8);
    out.extend_from_slice(&program);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(p: &[u8]) -> Vec<(u16, u8, u8, u32)> {
        p.chunks_exact(8)
            .map(|c| {
                (
                    u16::from_ne_bytes([c[0], c[1]]),
                    c[2],
                    c[3],
                    u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect()
    }

    #[test]
    fn prefix_jumps_land_on_the_original_program() {
        if native_audit_arch().is_none() {
            return;
        }
        let mut orig = Vec::new();
        insn(&mut orig, LD_W_ABS, 0, 0, ARCH_OFFSET);
        insn(&mut orig, RET_K, 0, 0, 0x7fff_0000);
        let p = prefix(
            orig.clone(),
            &[(462, 0x7fff_0000), (458, 0x0005_0001)],
            Some(466),
        );
        let d = decode(&p);
        let orig_at = d.len() - 2;
        assert_eq!(&p[orig_at * 8..], &orig[..]);
        // Wrong arch: from insn 1 jump to the original program.
        assert_eq!(1 + 1 + usize::from(d[1].2), orig_at);
        // x32 numbers: from insn 3 jump to the original program.
        assert_eq!(d[3].0, JGE_K);
        assert_eq!(3 + 1 + usize::from(d[3].1), orig_at);
        // Extras, then the ENOSYS rule.
        assert_eq!((d[4].0, d[4].3), (JEQ_K, 462));
        assert_eq!((d[5].0, d[5].3), (RET_K, 0x7fff_0000));
        assert_eq!((d[8].0, d[8].3), (JGT_K, 466));
        assert_eq!(d[9].3, 0x0005_0000 | libc::ENOSYS as u32);
    }

    #[test]
    fn nothing_to_add_or_unexpected_program_is_unchanged() {
        let mut orig = Vec::new();
        insn(&mut orig, RET_K, 0, 0, 0x7fff_0000);
        assert_eq!(prefix(orig.clone(), &[(1, 2)], Some(3)), orig);
        let mut orig = Vec::new();
        insn(&mut orig, LD_W_ABS, 0, 0, ARCH_OFFSET);
        assert_eq!(prefix(orig.clone(), &[], None), orig);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn known_new_numbers() {
        assert_eq!(native_number("mseal"), Some(462));
        assert_eq!(native_number("listmount"), Some(458));
        assert_eq!(native_number("uretprobe"), Some(335));
        assert_eq!(native_number("mkdir"), None);
    }
}
