//! Capabilities: the five sets, and Docker's default set.
//!
//! [`drop_bounding`] and [`apply`] run in the container's init process after `fork`, so
//! they only make system calls (`prctl`, `capget`, `capset`): no allocation, no locks.
//! The order the init process follows is
//! `prctl(PR_SET_KEEPCAPS, 1)` → [`drop_bounding`] → `setgroups`/`setresgid`/`setresuid`
//! → [`apply`] (effective, permitted, inheritable, then ambient).
//!
//! Capabilities the running kernel does not know (newer than its `cap_last_cap`) are
//! skipped, not refused, as runc does; so are ambient capabilities the kernel will not
//! raise because they are not both permitted and inheritable (runc ignores those too).
//!
//! [`adjust`] applies `docker run --cap-add/--cap-drop` to a base set, with Docker's
//! rules for `ALL` and for names with or without the `CAP_` prefix:
//!
//! ```
//! use longshore_container::caps;
//! use oci_spec::runtime::Capability;
//!
//! let base = caps::docker_default_capabilities();
//! let set = caps::adjust(&base, &["net_admin".into()], &["CAP_CHOWN".into()])?;
//! assert!(set.contains(&Capability::NetAdmin));
//! assert!(!set.contains(&Capability::Chown));
//! assert!(caps::adjust(&base, &["CAP_FLY".into()], &[]).is_err());
//! # Ok::<(), caps::CapsError>(())
//! ```

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};
use rustix::io::Errno;
use rustix::thread::{CapabilitySet, CapabilitySets};

/// Errors from capability changes.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// A `--cap-add` / `--cap-drop` name is not a capability.
    #[error(
        "unknown capability: {name:?} (use a name from capabilities(7), with or without CAP_, or ALL)"
    )]
    UnknownName {
        /// The name as given, upper-cased and with `CAP_` added.
        name: String,
    },
    /// Reading the bounding set failed.
    #[error("cannot read {} in the bounding set: {errno}", cap_name(*cap))]
    BoundingRead {
        /// The capability's number.
        cap: u8,
        /// The kernel's error.
        errno: Errno,
    },
    /// Dropping a capability from the bounding set failed.
    #[error(
        "cannot drop {} from the bounding set: {errno} (dropping needs CAP_SETPCAP)",
        cap_name(*cap)
    )]
    BoundingDrop {
        /// The capability's number.
        cap: u8,
        /// The kernel's error.
        errno: Errno,
    },
    /// `capset` (effective, permitted, inheritable) failed.
    #[error(
        "cannot set capabilities (effective {effective:#x}, permitted {permitted:#x}, inheritable {inheritable:#x}): {errno} (a set can only shrink unless CAP_SETPCAP is held, and effective must be within permitted)"
    )]
    Capset {
        /// Effective mask asked for.
        effective: u64,
        /// Permitted mask asked for.
        permitted: u64,
        /// Inheritable mask asked for.
        inheritable: u64,
        /// The kernel's error.
        errno: Errno,
    },
    /// Clearing or raising an ambient capability failed.
    #[error("cannot change {} in the ambient set: {errno}", cap_name(*cap))]
    Ambient {
        /// The capability's number.
        cap: u8,
        /// The kernel's error.
        errno: Errno,
    },
}

/// Every capability oci-spec knows, by kernel number (index = `CAP_*` value).
const ALL: [(Capability, &str); 41] = [
    (Capability::Chown, "CAP_CHOWN"),
    (Capability::DacOverride, "CAP_DAC_OVERRIDE"),
    (Capability::DacReadSearch, "CAP_DAC_READ_SEARCH"),
    (Capability::Fowner, "CAP_FOWNER"),
    (Capability::Fsetid, "CAP_FSETID"),
    (Capability::Kill, "CAP_KILL"),
    (Capability::Setgid, "CAP_SETGID"),
    (Capability::Setuid, "CAP_SETUID"),
    (Capability::Setpcap, "CAP_SETPCAP"),
    (Capability::LinuxImmutable, "CAP_LINUX_IMMUTABLE"),
    (Capability::NetBindService, "CAP_NET_BIND_SERVICE"),
    (Capability::NetBroadcast, "CAP_NET_BROADCAST"),
    (Capability::NetAdmin, "CAP_NET_ADMIN"),
    (Capability::NetRaw, "CAP_NET_RAW"),
    (Capability::IpcLock, "CAP_IPC_LOCK"),
    (Capability::IpcOwner, "CAP_IPC_OWNER"),
    (Capability::SysModule, "CAP_SYS_MODULE"),
    (Capability::SysRawio, "CAP_SYS_RAWIO"),
    (Capability::SysChroot, "CAP_SYS_CHROOT"),
    (Capability::SysPtrace, "CAP_SYS_PTRACE"),
    (Capability::SysPacct, "CAP_SYS_PACCT"),
    (Capability::SysAdmin, "CAP_SYS_ADMIN"),
    (Capability::SysBoot, "CAP_SYS_BOOT"),
    (Capability::SysNice, "CAP_SYS_NICE"),
    (Capability::SysResource, "CAP_SYS_RESOURCE"),
    (Capability::SysTime, "CAP_SYS_TIME"),
    (Capability::SysTtyConfig, "CAP_SYS_TTY_CONFIG"),
    (Capability::Mknod, "CAP_MKNOD"),
    (Capability::Lease, "CAP_LEASE"),
    (Capability::AuditWrite, "CAP_AUDIT_WRITE"),
    (Capability::AuditControl, "CAP_AUDIT_CONTROL"),
    (Capability::Setfcap, "CAP_SETFCAP"),
    (Capability::MacOverride, "CAP_MAC_OVERRIDE"),
    (Capability::MacAdmin, "CAP_MAC_ADMIN"),
    (Capability::Syslog, "CAP_SYSLOG"),
    (Capability::WakeAlarm, "CAP_WAKE_ALARM"),
    (Capability::BlockSuspend, "CAP_BLOCK_SUSPEND"),
    (Capability::AuditRead, "CAP_AUDIT_READ"),
    (Capability::Perfmon, "CAP_PERFMON"),
    (Capability::Bpf, "CAP_BPF"),
    (Capability::CheckpointRestore, "CAP_CHECKPOINT_RESTORE"),
];

/// The 14 capabilities Docker grants a container by default.
pub fn docker_default_capabilities() -> Capabilities {
    [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ]
    .into_iter()
    .collect()
}

/// The kernel's number for `cap` (`CAP_CHOWN` = 0, ...).
pub fn capability_number(cap: Capability) -> u8 {
    // Fits: ALL has 41 entries.
    ALL.iter()
        .position(|(c, _)| *c == cap)
        .expect("ALL lists every oci-spec capability") as u8
}

/// The capability with kernel number `n`, if oci-spec knows it.
pub fn capability_from_number(n: u8) -> Option<Capability> {
    ALL.get(usize::from(n)).map(|(c, _)| *c)
}

/// The `CAP_*` name of capability number `n` (`"CAP_UNKNOWN"` past the known ones).
pub fn cap_name(n: u8) -> &'static str {
    ALL.get(usize::from(n))
        .map_or("CAP_UNKNOWN", |(_, name)| name)
}

/// Parses a Docker-style capability name: `CHOWN`, `cap_chown` and `CAP_CHOWN` are the
/// same. `ALL` is not a capability here; [`adjust`] handles it.
pub fn parse_capability(name: &str) -> Result<Capability, CapsError> {
    let upper = normalize(name);
    ALL.iter()
        .find(|(_, n)| *n == upper)
        .map(|(c, _)| *c)
        .ok_or(CapsError::UnknownName { name: upper })
}

/// Upper-cases a name and adds `CAP_` unless present (moby's
/// `normalizeLegacyCapabilities`); `ALL` stays `ALL`.
fn normalize(name: &str) -> String {
    let upper = name.to_uppercase();
    if upper == "ALL" || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The highest capability number the running kernel knows (its `cap_last_cap`), found
/// with `prctl(PR_CAPBSET_READ)`, which fails with `EINVAL` past it. Safe after fork.
pub fn last_cap() -> u8 {
    // the kernel's, asked once per process (one prctl per capability, ~41 of them)
    static LAST: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        let mut last = 0;
        for n in 0..64u8 {
            match rustix::thread::capability_is_in_bounding_set(bit(n)) {
                Err(Errno::INVAL) => break,
                _ => last = n,
            }
        }
        last
    })
}

/// Every capability both the running kernel and oci-spec know: what `--cap-add ALL`
/// and `--privileged` grant.
pub fn all_capabilities() -> Capabilities {
    let last = last_cap();
    ALL.iter()
        .enumerate()
        .filter(|(n, _)| *n <= usize::from(last))
        .map(|(_, (c, _))| *c)
        .collect()
}

/// Applies `docker run --cap-add` / `--cap-drop` to `base`, as moby's
/// `TweakCapabilities` does:
///
/// - names are case-insensitive and may omit `CAP_`; an unknown name is an error;
/// - `--cap-add ALL`: every capability the kernel knows, minus `drop`;
/// - otherwise `--cap-drop ALL`: exactly `add`;
/// - otherwise `base` minus `drop`, plus `add`.
pub fn adjust(
    base: &Capabilities,
    add: &[String],
    drop: &[String],
) -> Result<Capabilities, CapsError> {
    if add.is_empty() && drop.is_empty() {
        return Ok(base.clone());
    }
    let parse = |names: &[String]| -> Result<(bool, Capabilities), CapsError> {
        let mut all = false;
        let mut set = Capabilities::new();
        for name in names {
            if normalize(name) == "ALL" {
                all = true;
            } else {
                set.insert(parse_capability(name)?);
            }
        }
        Ok((all, set))
    };
    let (drop_all, drop) = parse(drop)?;
    let (add_all, add) = parse(add)?;
    Ok(if add_all {
        all_capabilities().difference(&drop).copied().collect()
    } else if drop_all {
        add
    } else {
        base.difference(&drop).chain(add.iter()).copied().collect()
    })
}

/// The bitmask of `caps` (bit n = capability number n).
pub fn mask(caps: &Capabilities) -> u64 {
    caps.iter()
        .fold(0, |m, c| m | (1u64 << capability_number(*c)))
}

/// The bitmask of every capability number up to and including `last`.
fn mask_upto(last: u8) -> u64 {
    if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}

/// A one-capability rustix set.
fn bit(n: u8) -> CapabilitySet {
    CapabilitySet::from_bits_retain(1u64 << n)
}

/// Drops every capability outside `keep` from the bounding set.
///
/// Capabilities the kernel does not know are ignored. Needs `CAP_SETPCAP` if anything
/// is to be dropped. Allocation-free; safe after fork.
pub fn drop_bounding(keep: &Capabilities) -> Result<(), CapsError> {
    let keep = mask(keep);
    for n in 0..=last_cap() {
        if keep & (1u64 << n) != 0 {
            continue;
        }
        match rustix::thread::capability_is_in_bounding_set(bit(n)) {
            Ok(false) | Err(Errno::INVAL) => continue,
            Ok(true) => {}
            Err(errno) => return Err(CapsError::BoundingRead { cap: n, errno }),
        }
        rustix::thread::remove_capability_from_bounding_set(bit(n))
            .map_err(|errno| CapsError::BoundingDrop { cap: n, errno })?;
    }
    Ok(())
}

/// Sets effective, permitted, inheritable and ambient sets (after the uid switch).
///
/// A set the spec leaves out is empty. Capabilities the kernel does not know are
/// skipped. The ambient set is cleared, then each ambient capability is raised; one the
/// kernel refuses to raise (not both permitted and inheritable) is skipped, as runc
/// does; on kernels without ambient capabilities (before 4.3) the ambient set is
/// skipped. Allocation-free; safe after fork.
pub fn apply(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let known = mask_upto(last_cap());
    let get = |set: &Option<Capabilities>| set.as_ref().map_or(0, mask) & known;
    let (effective, permitted, inheritable, ambient) = (
        get(caps.effective()),
        get(caps.permitted()),
        get(caps.inheritable()),
        get(caps.ambient()),
    );
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::from_bits_retain(effective),
            permitted: CapabilitySet::from_bits_retain(permitted),
            inheritable: CapabilitySet::from_bits_retain(inheritable),
        },
    )
    .map_err(|errno| CapsError::Capset {
        effective,
        permitted,
        inheritable,
        errno,
    })?;

    match rustix::thread::clear_ambient_capability_set() {
        Ok(()) => {}
        // No ambient capabilities in this kernel.
        Err(Errno::INVAL) => return Ok(()),
        Err(errno) => return Err(CapsError::Ambient { cap: 0, errno }),
    }
    for n in 0..64u8 {
        if ambient & (1u64 << n) == 0 {
            continue;
        }
        match rustix::thread::configure_capability_in_ambient_set(bit(n), true) {
            Ok(()) | Err(Errno::PERM) | Err(Errno::INVAL) => {}
            Err(errno) => return Err(CapsError::Ambient { cap: n, errno }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> Capabilities {
        caps.iter().copied().collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn table_matches_kernel_numbers_and_oci_names() {
        assert_eq!(capability_number(Capability::Chown), 0);
        assert_eq!(capability_number(Capability::NetBindService), 10);
        assert_eq!(capability_number(Capability::SysAdmin), 21);
        assert_eq!(capability_number(Capability::Setfcap), 31);
        assert_eq!(capability_number(Capability::CheckpointRestore), 40);
        for (n, (cap, name)) in ALL.iter().enumerate() {
            // oci-spec serialises capabilities as their CAP_ name.
            assert_eq!(serde_json::to_string(cap).unwrap(), format!("\"{name}\""));
            assert_eq!(capability_from_number(n as u8), Some(*cap));
            assert_eq!(cap_name(n as u8), *name);
        }
        assert_eq!(capability_from_number(41), None);
        assert_eq!(cap_name(63), "CAP_UNKNOWN");
    }

    #[test]
    fn docker_defaults_are_the_14() {
        let d = docker_default_capabilities();
        assert_eq!(d.len(), 14);
        assert_eq!(mask(&d), 0xa80425fb);
        assert!(!d.contains(&Capability::SysAdmin));
        assert!(!d.contains(&Capability::NetAdmin));
    }

    #[test]
    fn parse_names() {
        for n in ["CHOWN", "chown", "CAP_CHOWN", "cap_chown", "Cap_Chown"] {
            assert_eq!(parse_capability(n).unwrap(), Capability::Chown, "{n}");
        }
        assert_eq!(parse_capability("sys_admin").unwrap(), Capability::SysAdmin);
        let err = parse_capability("fly").unwrap_err();
        assert!(err.to_string().contains("\"CAP_FLY\""), "{err}");
        assert!(parse_capability("ALL").is_err());
        assert!(parse_capability("").is_err());
    }

    #[test]
    fn adjust_like_docker() {
        let base = docker_default_capabilities();
        // Nothing to do.
        assert_eq!(adjust(&base, &[], &[]).unwrap(), base);
        // --cap-drop CHOWN
        let s = adjust(&base, &[], &names(&["CHOWN"])).unwrap();
        assert_eq!(s.len(), 13);
        assert!(!s.contains(&Capability::Chown));
        // --cap-add sys_admin --cap-drop cap_net_raw
        let s = adjust(&base, &names(&["sys_admin"]), &names(&["cap_net_raw"])).unwrap();
        assert!(s.contains(&Capability::SysAdmin));
        assert!(!s.contains(&Capability::NetRaw));
        assert_eq!(s.len(), 14);
        // --cap-drop ALL --cap-add CHOWN: exactly CHOWN.
        let s = adjust(&base, &names(&["CHOWN"]), &names(&["all"])).unwrap();
        assert_eq!(s, set(&[Capability::Chown]));
        // --cap-drop ALL alone: empty.
        assert!(adjust(&base, &[], &names(&["ALL"])).unwrap().is_empty());
        // --cap-add ALL --cap-drop MKNOD: everything the kernel has but MKNOD.
        let s = adjust(&base, &names(&["ALL"]), &names(&["MKNOD"])).unwrap();
        assert!(!s.contains(&Capability::Mknod));
        assert!(s.contains(&Capability::SysAdmin));
        assert_eq!(s.len(), all_capabilities().len() - 1);
        // --cap-add ALL wins over --cap-drop ALL (Docker checks add first).
        assert_eq!(
            adjust(&base, &names(&["ALL"]), &names(&["ALL"])).unwrap(),
            all_capabilities()
                .difference(&Capabilities::new())
                .copied()
                .collect()
        );
        // An unknown name in either list is an error naming it.
        for (add, drop) in [(names(&["BOGUS"]), vec![]), (vec![], names(&["cap_bogus"]))] {
            let err = adjust(&base, &add, &drop).unwrap_err();
            assert!(
                matches!(&err, CapsError::UnknownName { name } if name == "CAP_BOGUS"),
                "{err}"
            );
        }
    }

    #[test]
    fn kernel_knows_the_classic_caps() {
        // Every kernel since 3.16 has CAP_AUDIT_READ (37).
        assert!(last_cap() >= 37);
        assert!(all_capabilities().contains(&Capability::AuditRead));
        assert_eq!(mask_upto(0), 1);
        assert_eq!(mask_upto(40), (1u64 << 41) - 1);
        assert_eq!(mask_upto(63), u64::MAX);
    }
}
