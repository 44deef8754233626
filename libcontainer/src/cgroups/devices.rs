//! cgroup v2 device rules: a `BPF_PROG_TYPE_CGROUP_DEVICE` program generated from the
//! spec's rules and attached to the container's cgroup (`BPF_F_ALLOW_MULTI`), replacing
//! the one attached before (an update), as runc and youki do.
//!
//! The program is a handful of instructions emitted here rather than built with aya: the
//! whole generator is ~150 lines with no dependency, it needs no BTF or ELF loading, and
//! it costs one `bpf(PROG_LOAD)` per container (aya would add a large dependency tree for
//! the same three system calls).
//!
//! Semantics (v1's, as runc emulates them): the rules are tried from the last to the
//! first and the first match decides; a rule matches when the type matches (`a`: any),
//! the major and minor match (absent: any) and the access asked for is within the rule's;
//! no match denies.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;
use crate::sys;

/// `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }

    fn bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        b
    }
}

// opcodes
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV64_REG: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_IMM: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND64_IMM: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH64_IMM: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JNE_IMM: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_REG: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// registers: r1 = ctx, r3 = device type, r4 = access, r5 = major, r6 = minor, r7 = scratch
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;

const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |a, c| {
        a | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

/// The program for `rules` (already validated: access letters from "rwm").
fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut p = vec![
        // r2 = ctx->access_type; r3 = type (low 16 bits); r4 = access (high 16 bits)
        Insn::new(LDX_MEM_W, R2, R1, 0, 0),
        Insn::new(MOV64_REG, R3, R2, 0, 0),
        Insn::new(AND64_IMM, R3, 0, 0, 0xffff),
        Insn::new(MOV64_REG, R4, R2, 0, 0),
        Insn::new(RSH64_IMM, R4, 0, 0, 16),
        // r5 = ctx->major; r6 = ctx->minor
        Insn::new(LDX_MEM_W, R5, R1, 4, 0),
        Insn::new(LDX_MEM_W, R6, R1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // the checks of this rule, each jumping to the end of the block on a mismatch
        let mut checks: Vec<Insn> = Vec::new();
        let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::B => Some(DEV_BLOCK),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
            LinuxDeviceType::A => None,
            // fifos are not device files: no device access ever asks about them
            LinuxDeviceType::P => continue,
        };
        if let Some(t) = typ {
            checks.push(Insn::new(JNE_IMM, R3, 0, 0, t));
        }
        let access = access_bits(rule.access().as_deref().unwrap_or("rwm"));
        if access != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // the access asked for must be within the rule's: (r4 & access) == r4
            checks.push(Insn::new(MOV64_REG, R7, R4, 0, 0));
            checks.push(Insn::new(AND64_IMM, R7, 0, 0, access));
            checks.push(Insn::new(JNE_REG, R7, R4, 0, 0));
        }
        if let Some(major) = rule.major().filter(|m| *m >= 0) {
            checks.push(Insn::new(JNE_IMM, R5, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor().filter(|m| *m >= 0) {
            checks.push(Insn::new(JNE_IMM, R6, 0, 0, minor as i32));
        }
        let verdict = [
            Insn::new(MOV64_IMM, R0, 0, 0, i32::from(rule.allow())),
            Insn::new(EXIT, 0, 0, 0, 0),
        ];
        // a jump's offset counts the instructions it skips after itself
        let n = checks.len();
        for (i, c) in checks.iter_mut().enumerate() {
            if c.code == JNE_IMM || c.code == JNE_REG {
                c.off = (n - i - 1 + verdict.len()) as i16;
            }
        }
        let unconditional = checks.is_empty();
        p.extend(checks);
        p.extend(verdict);
        if unconditional {
            // it matches everything: the rules before it can never decide (and the
            // verifier refuses unreachable instructions)
            return p;
        }
    }
    // no rule matched: deny
    p.push(Insn::new(MOV64_IMM, R0, 0, 0, 0));
    p.push(Insn::new(EXIT, 0, 0, 0, 0));
    p
}

/// True when the last rule that could match anything allows everything (so that a host
/// without eBPF loses nothing by having no filter).
pub(super) fn allows_everything(rules: &[LinuxDeviceCgroup]) -> bool {
    rules.last().is_some_and(|r| {
        r.allow()
            && r.typ().unwrap_or(LinuxDeviceType::A) == LinuxDeviceType::A
            && r.major().is_none_or(|m| m < 0)
            && r.minor().is_none_or(|m| m < 0)
            && access_bits(r.access().as_deref().unwrap_or("rwm")) == 7
    })
}

const BPF_PROG_LOAD: i32 = 5;
const BPF_PROG_ATTACH: i32 = 8;
const BPF_PROG_DETACH: i32 = 9;
const BPF_PROG_GET_FD_BY_ID: i32 = 13;
const BPF_PROG_QUERY: i32 = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

fn put32(attr: &mut [u8; 128], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(attr: &mut [u8; 128], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Loads the program for `rules`; the verifier's log is in the error.
fn load(rules: &[LinuxDeviceCgroup]) -> std::io::Result<OwnedFd> {
    let insns: Vec<u8> = program(rules).iter().flat_map(|i| i.bytes()).collect();
    let license = c"Apache";
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
    put32(&mut attr, 4, (insns.len() / 8) as u32);
    put64(&mut attr, 8, insns.as_ptr() as u64);
    put64(&mut attr, 16, license.as_ptr() as u64);
    put32(&mut attr, 24, 1); // log_level
    put32(&mut attr, 28, log.len() as u32);
    put64(&mut attr, 32, log.as_mut_ptr() as u64);
    attr[48..48 + 14].copy_from_slice(b"longshore_devs");
    put32(&mut attr, 68, BPF_CGROUP_DEVICE); // expected_attach_type
    // SAFETY: `insns`, `license` and `log` outlive the call and the attribute holds their
    // exact lengths; the kernel writes only into `log` (up to its length).
    match unsafe { sys::bpf_fd(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => Ok(fd),
        Err(e) => {
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            Err(std::io::Error::new(
                e.kind(),
                format!("{e}{}{text}", if text.is_empty() { "" } else { ": " }),
            ))
        }
    }
}

/// The ids of the device programs attached to the cgroup at `cg`.
fn attached(cg: &OwnedFd) -> std::io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, cg.as_raw_fd() as u32);
    put32(&mut attr, 4, BPF_CGROUP_DEVICE);
    put64(&mut attr, 16, ids.as_mut_ptr() as u64);
    put32(&mut attr, 24, ids.len() as u32);
    // SAFETY: the kernel writes at most prog_cnt (64) ids into `ids`, which outlives the
    // call, and the count back into `attr`.
    unsafe { sys::bpf(BPF_PROG_QUERY, &mut attr) }?;
    let n = u32::from_ne_bytes([attr[24], attr[25], attr[26], attr[27]]) as usize;
    Ok(ids[..n.min(ids.len())].to_vec())
}

/// Attaches (`attach`) or detaches the program `prog` on the cgroup `cg`.
fn attach_or_detach(cg: &OwnedFd, prog: &OwnedFd, attach: bool) -> std::io::Result<()> {
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, cg.as_raw_fd() as u32);
    put32(&mut attr, 4, prog.as_raw_fd() as u32);
    put32(&mut attr, 8, BPF_CGROUP_DEVICE);
    let cmd = if attach {
        put32(&mut attr, 12, BPF_F_ALLOW_MULTI);
        BPF_PROG_ATTACH
    } else {
        BPF_PROG_DETACH
    };
    // SAFETY: the attribute holds only integers (descriptors and flags).
    unsafe { sys::bpf(cmd, &mut attr) }.map(|_| ())
}

fn prog_by_id(id: u32) -> std::io::Result<OwnedFd> {
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, id);
    // SAFETY: the attribute holds only integers.
    unsafe { sys::bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut attr) }
}

/// Enforces `rules` on the cgroup v2 directory `dir`: attaches the new program, then
/// detaches the ones attached before (for a moment both apply: never less strict).
pub(super) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let fail = |reason: String| CgroupError::DeviceFilter {
        path: dir.to_path_buf(),
        reason,
    };
    let cg: OwnedFd = std::fs::File::open(dir)
        .map_err(|e| fail(format!("open the cgroup: {e}")))?
        .into();
    let before = attached(&cg).map_err(|e| fail(format!("BPF_PROG_QUERY: {e}")))?;
    let prog = load(rules).map_err(|e| fail(format!("BPF_PROG_LOAD: {e}")))?;
    attach_or_detach(&cg, &prog, true).map_err(|e| fail(format!("BPF_PROG_ATTACH: {e}")))?;
    for id in before {
        let old = prog_by_id(id).map_err(|e| fail(format!("BPF_PROG_GET_FD_BY_ID {id}: {e}")))?;
        attach_or_detach(&cg, &old, false)
            .map_err(|e| fail(format!("BPF_PROG_DETACH {id}: {e}")))?;
    }
    Ok(())
}

/// How many device programs are attached to the cgroup at `dir` (for tests and checks).
pub fn attached_programs(dir: &Path) -> std::io::Result<usize> {
    let cg: OwnedFd = std::fs::File::open(dir)?.into();
    attached(&cg).map(|ids| ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .major(major.unwrap_or(-1))
            .access(access)
            .build()
            .unwrap()
    }

    #[test]
    fn jumps_land_on_the_next_rule() {
        let rules = [
            rule(false, LinuxDeviceType::A, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), "rw"),
        ];
        let p = program(&rules);
        // prologue 7; rule 2 (last first): type, 3 access, major, 2 verdict = 7; rule 1:
        // verdict only (a, rwm, any) = 2, which ends the program (no final deny)
        assert_eq!(p.len(), 7 + 7 + 2);
        for (i, insn) in p.iter().enumerate() {
            if insn.code == JNE_IMM || insn.code == JNE_REG {
                // every jump of the first rule block lands on the second block's start
                assert_eq!(i as i16 + 1 + insn.off, 14, "{i}: {insn:?}");
            }
        }
        assert!(!allows_everything(&rules));
        assert!(allows_everything(&[rule(
            true,
            LinuxDeviceType::A,
            None,
            "rwm"
        )]));
    }
}
