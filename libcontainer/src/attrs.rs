//! Per-process attributes from the spec that map to one system call each: personality,
//! I/O priority, scheduler (`sched_setattr`), CPU affinity (`execCPUAffinity`), NUMA
//! memory policy, and the AppArmor profile.

use oci_spec::runtime::{
    ExecCPUAffinity, IOPriorityClass, LinuxIOPriority, LinuxMemoryPolicy, LinuxPersonality,
    LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType,
    MemoryPolicyModeType, Scheduler,
};

use crate::error::{Error, Result, SysContext};
use crate::sys;

/// Parses a CPU or node list such as `0-3,7` into the numbers it names.
pub(crate) fn parse_list(list: &str) -> Result<Vec<usize>> {
    let bad = || Error::InvalidSpec(format!("{list:?} is not a list like 0-3,7"));
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a > b || b >= 4096 {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// A bitmask of `unsigned long` words with the listed bits set.
fn mask(bits: &[usize]) -> Vec<libc::c_ulong> {
    let words = bits.iter().max().map_or(1, |m| m / 64 + 1);
    let mut v = vec![0 as libc::c_ulong; words];
    for &b in bits {
        v[b / 64] |= 1 << (b % 64);
    }
    v
}

/// `personality(2)` from `linux.personality`.
pub(crate) fn personality(p: &LinuxPersonality) -> Result<()> {
    let mut persona: libc::c_ulong = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    for flag in p.flags().iter().flatten() {
        persona |= match flag.as_str() {
            "UNAME26" => 0x0020000,
            "ADDR_NO_RANDOMIZE" => 0x0040000,
            "FDPIC_FUNCPTRS" => 0x0080000,
            "MMAP_PAGE_ZERO" => 0x0100000,
            "ADDR_COMPAT_LAYOUT" => 0x0200000,
            "READ_IMPLIES_EXEC" => 0x0400000,
            "ADDR_LIMIT_32BIT" => 0x0800000,
            "SHORT_INODE" => 0x1000000,
            "WHOLE_SECONDS" => 0x2000000,
            "STICKY_TIMEOUTS" => 0x4000000,
            "ADDR_LIMIT_3GB" => 0x8000000,
            other => {
                return Err(Error::InvalidSpec(format!(
                    "unknown personality flag {other:?}"
                )));
            }
        };
    }
    sys::personality(persona).ctx(|| format!("personality {persona:#x}"))
}

/// `ioprio_set(2)` from `process.ioPriority`.
pub(crate) fn io_priority(p: &LinuxIOPriority) -> Result<()> {
    let class: i64 = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    if !(0..=7).contains(&p.priority()) {
        return Err(Error::InvalidSpec(format!(
            "ioPriority.priority {} is outside 0-7",
            p.priority()
        )));
    }
    let value = (class << 13) | p.priority();
    sys::ioprio_set(value as i32).ctx(|| format!("ioprio_set {:?} {}", p.class(), p.priority()))
}

/// `sched_setattr(2)` from `process.scheduler`.
pub(crate) fn scheduler(s: &Scheduler) -> Result<()> {
    use LinuxSchedulerPolicy as P;
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => {
            return Err(Error::Unsupported(
                "SCHED_ISO: Linux has no such policy".into(),
            ));
        }
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        use LinuxSchedulerFlag as F;
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = sys::SchedAttr {
        size: std::mem::size_of::<sys::SchedAttr>() as u32,
        sched_policy: policy,
        sched_flags: flags,
        sched_nice: s.nice().unwrap_or(0),
        sched_priority: s.priority().unwrap_or(0).max(0) as u32,
        sched_runtime: s.runtime().unwrap_or(0),
        sched_deadline: s.deadline().unwrap_or(0),
        sched_period: s.period().unwrap_or(0),
        sched_util_min: 0,
        sched_util_max: 1024,
    };
    sys::sched_setattr(&attr).ctx(|| format!("sched_setattr {:?}", s.policy()))
}

/// `sched_setaffinity(2)` to the CPUs in `list`.
pub(crate) fn cpu_affinity(list: &str) -> Result<()> {
    let cpus = parse_list(list)?;
    let mut set = nix::sched::CpuSet::new();
    for c in cpus {
        set.set(c)
            .map_err(|_| Error::InvalidSpec(format!("CPU {c} in {list:?} is out of range")))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .ctx(|| format!("set CPU affinity {list}"))
}

/// The `initial` half of `execCPUAffinity` (before joining the cgroups).
pub(crate) fn initial_affinity(a: Option<&ExecCPUAffinity>) -> Result<()> {
    match a
        .and_then(|a| a.initial().as_deref())
        .filter(|l| !l.is_empty())
    {
        Some(list) => cpu_affinity(list),
        None => Ok(()),
    }
}

/// The `final` half of `execCPUAffinity` (after joining the cgroups).
pub(crate) fn final_affinity(a: Option<&ExecCPUAffinity>) -> Result<()> {
    match a
        .and_then(|a| a.cpu_affinity_final().as_deref())
        .filter(|l| !l.is_empty())
    {
        Some(list) => cpu_affinity(list),
        None => Ok(()),
    }
}

/// `set_mempolicy(2)` from `linux.memoryPolicy`.
pub(crate) fn memory_policy(m: &LinuxMemoryPolicy) -> Result<()> {
    use MemoryPolicyModeType as M;
    let mut mode: i32 = match m.mode() {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    };
    for f in m.flags().iter().flatten() {
        mode |= match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        };
    }
    let nodes = match m.nodes().as_deref().filter(|n| !n.is_empty()) {
        Some(list) => parse_list(list)?,
        None => Vec::new(),
    };
    let bits = mask(&nodes);
    let maxnode = if nodes.is_empty() {
        0
    } else {
        bits.len() * 64 + 1
    };
    sys::set_mempolicy(mode, &bits, maxnode)
        .ctx(|| format!("set_mempolicy {:?} nodes {:?}", m.mode(), m.nodes()))
}

/// True when the kernel runs AppArmor.
pub(crate) fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Asks AppArmor to confine the process with `profile` from its next `execve`, through
/// the trusted procfs (a mount over `/proc/self/attr` cannot catch it).
pub(crate) fn apparmor_exec(proc: crate::procfs::ProcFs<'_>, profile: &str) -> Result<()> {
    let attr = if proc.own_exists("attr/apparmor/exec") {
        "attr/apparmor/exec"
    } else {
        "attr/exec"
    };
    proc.write_own(attr, format!("exec {profile}").as_bytes())
        .ctx(|| format!("set AppArmor profile {profile:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("0-3,7").unwrap(), vec![0, 1, 2, 3, 7]);
        assert_eq!(parse_list("1").unwrap(), vec![1]);
        assert!(parse_list("3-1").is_err());
        assert!(parse_list("a").is_err());
        assert_eq!(mask(&[0, 65]), vec![1, 2]);
    }
}
