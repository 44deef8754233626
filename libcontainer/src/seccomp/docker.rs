//! Docker-format seccomp profiles, and Docker's default profile.
//!
//! A Docker profile is a runtime-spec seccomp section with three additions that are
//! resolved for one container on one host: `archMap` (the native architecture and its
//! sub-architectures), and per-rule `includes` / `excludes` filters on the container's
//! capabilities, the host's architecture and the kernel version. This module does that
//! resolution the way moby's `profiles/seccomp` package (`setupSeccomp`) does.
//!
//! The embedded `docker_default.json` is Docker's default profile, copied unchanged from
//! <https://github.com/moby/profiles> (`seccomp/default.json`, commit
//! 02e898b137aed1024e232d59bcb05e6179b72177). Copyright The Moby Authors, licensed
//! under the Apache License, Version 2.0 (the same licence as longshore).

use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSyscall,
};
use serde::Deserialize;

use super::SeccompError;

/// Docker's default profile (moby/profiles `seccomp/default.json`, Apache-2.0).
const DOCKER_DEFAULT_JSON: &str = include_str!("docker_default.json");

/// What a Docker profile's conditions are decided against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerProfileContext {
    /// The container's bounding capabilities, as `CAP_*` names.
    pub caps: Vec<String>,
    /// The host architecture in libseccomp's Go naming (`amd64`, `arm64`, `s390x`, ...).
    pub arch: String,
    /// The kernel's version and major revision (`6.1` for `6.1.0-18-amd64`), or `None`
    /// if unknown: then rules that need a minimum kernel are left out.
    pub kernel: Option<(u64, u64)>,
}

impl DockerProfileContext {
    /// The context for a container holding `caps` on this host.
    pub fn for_host(caps: &[Capability]) -> Self {
        Self {
            caps: caps.iter().map(|c| format!("CAP_{c}")).collect(),
            arch: native_arch().to_string(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .and_then(|r| parse_release(&r)),
        }
    }
}

/// Docker's default profile converted for `caps` on this host; see
/// [`super::docker_default_profile`].
pub(super) fn docker_default_profile(caps: &[Capability]) -> LinuxSeccomp {
    // The embedded profile is fixed at build time and parsed by the tests
    // (`docker_default_profile_parses`); conversion has no other failure.
    try_docker_default_profile(caps).expect("the embedded Docker default profile is valid")
}

/// Docker's default profile converted for a container holding `caps` on this host,
/// reporting a malformed profile instead of panicking.
pub fn try_docker_default_profile(caps: &[Capability]) -> Result<LinuxSeccomp, SeccompError> {
    docker_profile(DOCKER_DEFAULT_JSON, &DockerProfileContext::for_host(caps))?
        .ok_or_else(|| SeccompError::Profile("the default profile is empty".into()))
}

/// Converts a Docker-format seccomp profile (as given to `docker run --security-opt
/// seccomp=FILE`) into a runtime-spec section for one container.
///
/// Returns `None` when the profile has neither a default action nor syscalls (moby
/// treats that as "seccomp disabled").
pub fn docker_profile(
    json: &str,
    ctx: &DockerProfileContext,
) -> Result<Option<LinuxSeccomp>, SeccompError> {
    let profile: Profile = serde_json::from_str(json)
        .map_err(|e| SeccompError::Profile(format!("decoding the profile failed: {e}")))?;
    setup(profile, ctx)
}

/// A Docker profile as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    #[serde(default, deserialize_with = "empty_as_none")]
    default_action: Option<LinuxSeccompAction>,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<Syscall>>,
}

/// One `archMap` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

/// One rule, with Docker's conditions.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    #[serde(default)]
    names: Option<Vec<String>>,
    /// Deprecated single name.
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

/// An `includes` / `excludes` filter.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default, deserialize_with = "min_kernel")]
    min_kernel: Option<(u64, u64)>,
}

/// Reads `""` (Go's unset string) as `None`.
fn empty_as_none<'de, D>(d: D) -> Result<Option<LinuxSeccompAction>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let s: Option<String> = Option::deserialize(d)?;
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("unknown seccomp action {s:?}"))),
    }
}

/// Parses `minKernel` as moby does: `"<kernel>.<major>"`, each 0-255, not `0.0`.
fn min_kernel<'de, D>(d: D) -> Result<Option<(u64, u64)>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let s: Option<String> = Option::deserialize(d)?;
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        serde::de::Error::custom(format!(
            "invalid kernel version: {s:?}, expected \"<kernel>.<major>\""
        ))
    };
    let parts: Vec<&str> = s.splitn(3, '.').collect();
    if parts.len() != 2 {
        return Err(bad());
    }
    let kernel = parts[0].parse::<u8>().map_err(|_| bad())?;
    let major = parts[1].parse::<u8>().map_err(|_| bad())?;
    if kernel == 0 && major == 0 {
        return Err(bad());
    }
    Ok(Some((u64::from(kernel), u64::from(major))))
}

/// Parses a kernel release (`6.1.0-18-amd64`, `3.12-1-amd64`) into (kernel, major),
/// like moby's `fmt.Sscanf(release, "%d.%d")`.
pub(super) fn parse_release(release: &str) -> Option<(u64, u64)> {
    let (kernel, rest) = release.trim().split_once('.')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((kernel.parse().ok()?, rest[..digits].parse().ok()?))
}

/// The host architecture as moby names it (`goToNative[runtime.GOARCH]`).
pub(super) fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "x86",
        "x86_64" => "amd64",
        "arm" => "arm",
        "aarch64" => "arm64",
        "loongarch64" => "loongarch64",
        "mips" => "mipsel",
        "mips64" if cfg!(target_endian = "little") => "mipsel64",
        "mips64" => "mips64",
        "powerpc" => "ppc",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

/// moby's `nativeToSeccomp`: the seccomp architecture for a native name.
///
/// moby keys loongarch as `loong64` while naming the host `loongarch64`, so its archMap
/// never applies there; this table uses the name the host gets.
fn seccomp_arch(native: &str) -> Option<Arch> {
    Some(match native {
        "x86" => Arch::ScmpArchX86,
        "amd64" => Arch::ScmpArchX86_64,
        "arm" => Arch::ScmpArchArm,
        "arm64" => Arch::ScmpArchAarch64,
        "loongarch64" => Arch::ScmpArchLoongarch64,
        "mips64" => Arch::ScmpArchMips64,
        "mips64n32" => Arch::ScmpArchMips64n32,
        "mipsel64" => Arch::ScmpArchMipsel64,
        "mips3l64n32" => Arch::ScmpArchMipsel64n32,
        "mipsel" => Arch::ScmpArchMipsel,
        "ppc" => Arch::ScmpArchPpc,
        "ppc64" => Arch::ScmpArchPpc64,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "riscv64" => Arch::ScmpArchRiscv64,
        "s390" => Arch::ScmpArchS390,
        "s390x" => Arch::ScmpArchS390x,
        _ => return None,
    })
}

/// A filter list that is present and not empty.
fn non_empty(list: &Option<Vec<String>>) -> Option<&Vec<String>> {
    list.as_ref().filter(|l| !l.is_empty())
}

/// Whether the host kernel is at least `min`; unknown kernels are not.
fn kernel_at_least(kernel: Option<(u64, u64)>, min: (u64, u64)) -> bool {
    kernel.is_some_and(|k| k >= min)
}

/// moby's `setupSeccomp`.
fn setup(
    profile: Profile,
    ctx: &DockerProfileContext,
) -> Result<Option<LinuxSeccomp>, SeccompError> {
    let syscalls = profile.syscalls.unwrap_or_default();
    if profile.default_action.is_none() && syscalls.is_empty() {
        return Ok(None);
    }
    let arch_map = profile.arch_map.unwrap_or_default();
    let mut architectures = profile.architectures.unwrap_or_default();
    if !architectures.is_empty() && !arch_map.is_empty() {
        return Err(SeccompError::Profile(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'".into(),
        ));
    }
    let default_action = profile.default_action.ok_or_else(|| {
        SeccompError::Profile("the profile has syscalls but no defaultAction".into())
    })?;
    let native = seccomp_arch(&ctx.arch);
    if let Some(entry) = arch_map.iter().find(|a| Some(a.architecture) == native) {
        architectures.push(entry.architecture);
        architectures.extend(entry.sub_architectures.iter().flatten().copied());
    }

    let mut out = Vec::new();
    for call in syscalls {
        let names = match (call.name.filter(|n| !n.is_empty()), call.names) {
            (Some(_), Some(names)) if !names.is_empty() => {
                return Err(SeccompError::Profile(
                    "both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'".into(),
                ));
            }
            (Some(name), _) => vec![name],
            (None, names) => names.unwrap_or_default(),
        };
        if let Some(ex) = &call.excludes {
            if non_empty(&ex.arches).is_some_and(|a| a.contains(&ctx.arch)) {
                continue;
            }
            if non_empty(&ex.caps).is_some_and(|caps| caps.iter().any(|c| ctx.caps.contains(c))) {
                continue;
            }
            if ex
                .min_kernel
                .is_some_and(|min| kernel_at_least(ctx.kernel, min))
            {
                continue;
            }
        }
        if let Some(inc) = &call.includes {
            if non_empty(&inc.arches).is_some_and(|a| !a.contains(&ctx.arch)) {
                continue;
            }
            if non_empty(&inc.caps).is_some_and(|caps| caps.iter().any(|c| !ctx.caps.contains(c))) {
                continue;
            }
            if inc
                .min_kernel
                .is_some_and(|min| !kernel_at_least(ctx.kernel, min))
            {
                continue;
            }
        }
        let mut rule = LinuxSyscall::default();
        rule.set_names(names)
            .set_action(call.action)
            .set_errno_ret(call.errno_ret)
            .set_args(call.args);
        out.push(rule);
    }

    let mut spec = LinuxSeccomp::default();
    spec.set_default_action(default_action)
        .set_default_errno_ret(profile.default_errno_ret)
        .set_architectures((!architectures.is_empty()).then_some(architectures))
        .set_flags(profile.flags.filter(|f| !f.is_empty()))
        .set_listener_path(profile.listener_path)
        .set_listener_metadata(profile.listener_metadata)
        .set_syscalls((!out.is_empty()).then_some(out));
    Ok(Some(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(caps: &[&str], arch: &str, kernel: Option<(u64, u64)>) -> DockerProfileContext {
        DockerProfileContext {
            caps: caps.iter().map(|s| s.to_string()).collect(),
            arch: arch.into(),
            kernel,
        }
    }

    fn allowed(spec: &LinuxSeccomp, name: &str) -> bool {
        spec.syscalls().iter().flatten().any(|r| {
            r.action() == LinuxSeccompAction::ScmpActAllow
                && r.args().as_ref().is_none_or(|a| a.is_empty())
                && r.names().iter().any(|n| n == name)
        })
    }

    fn named(spec: &LinuxSeccomp, name: &str) -> Vec<LinuxSyscall> {
        spec.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == name))
            .cloned()
            .collect()
    }

    #[test]
    fn docker_default_profile_parses() {
        let p: Profile = serde_json::from_str(DOCKER_DEFAULT_JSON).unwrap();
        assert_eq!(p.default_action, Some(LinuxSeccompAction::ScmpActErrno));
        assert_eq!(p.default_errno_ret, Some(1));
        let calls = p.syscalls.unwrap();
        // The big allow list holds a few hundred names; a shortened copy would fail here.
        assert!(calls[0].names.as_ref().unwrap().len() > 350);
        assert_eq!(p.arch_map.unwrap().len(), 9);
    }

    #[test]
    fn amd64_gets_x86_and_x32() {
        let spec = docker_profile(DOCKER_DEFAULT_JSON, &ctx(&[], "amd64", Some((6, 1))))
            .unwrap()
            .unwrap();
        assert_eq!(
            spec.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert_eq!(spec.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(spec.default_errno_ret(), Some(1));
        assert!(allowed(&spec, "arch_prctl"));
        assert!(allowed(&spec, "modify_ldt"));
        assert!(!allowed(&spec, "s390_runtime_instr"));
        assert!(!allowed(&spec, "riscv_flush_icache"));
        let arm = docker_profile(DOCKER_DEFAULT_JSON, &ctx(&[], "arm64", Some((6, 1))))
            .unwrap()
            .unwrap();
        assert_eq!(
            arm.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        assert!(!allowed(&arm, "arch_prctl"));
        assert!(allowed(&arm, "set_tls"));
    }

    #[test]
    fn caps_select_rules() {
        let plain = docker_profile(DOCKER_DEFAULT_JSON, &ctx(&[], "amd64", Some((6, 1))))
            .unwrap()
            .unwrap();
        for name in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "reboot",
            "chroot",
            "keyctl",
            "kexec_load",
        ] {
            assert!(!allowed(&plain, name), "{name} allowed without caps");
        }
        // Without CAP_SYS_ADMIN: clone only with the namespace-flag mask, clone3 ENOSYS.
        let clone = named(&plain, "clone");
        assert_eq!(clone.len(), 1);
        let arg = clone[0].args().as_ref().unwrap()[0];
        assert_eq!((arg.index(), arg.value()), (0, 2114060288));
        let clone3 = named(&plain, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));

        let admin = docker_profile(
            DOCKER_DEFAULT_JSON,
            &ctx(&["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"], "amd64", Some((6, 1))),
        )
        .unwrap()
        .unwrap();
        for name in ["mount", "unshare", "setns", "clone", "clone3", "chroot"] {
            assert!(
                allowed(&admin, name),
                "{name} not allowed with CAP_SYS_ADMIN"
            );
        }
        assert!(
            named(&admin, "clone3")
                .iter()
                .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
        );
    }

    #[test]
    fn min_kernel_selects_rules() {
        let old = docker_profile(DOCKER_DEFAULT_JSON, &ctx(&[], "amd64", Some((4, 4))))
            .unwrap()
            .unwrap();
        assert!(!allowed(&old, "ptrace"));
        let new = docker_profile(DOCKER_DEFAULT_JSON, &ctx(&[], "amd64", Some((4, 8))))
            .unwrap()
            .unwrap();
        assert!(allowed(&new, "ptrace"));
        let unknown = docker_profile(DOCKER_DEFAULT_JSON, &ctx(&[], "amd64", None))
            .unwrap()
            .unwrap();
        assert!(!allowed(&unknown, "ptrace"));
    }

    #[test]
    fn release_parsing() {
        assert_eq!(parse_release("6.18.44-fc-v669\n"), Some((6, 18)));
        assert_eq!(parse_release("3.12-1-amd64"), Some((3, 12)));
        assert_eq!(parse_release("5.4"), Some((5, 4)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn malformed_profiles_are_refused() {
        let c = ctx(&[], "amd64", Some((6, 1)));
        for (json, want) in [
            ("{", "decoding"),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":null}]}"#,
                "archMap",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}"#,
                "'name' and 'names'",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["b"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"4"}}]}"#,
                "invalid kernel version",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["b"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"0.0"}}]}"#,
                "invalid kernel version",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#,
                "unknown seccomp action",
            ),
            (
                r#"{"syscalls":[{"names":["b"],"action":"SCMP_ACT_ERRNO"}]}"#,
                "no defaultAction",
            ),
        ] {
            let err = docker_profile(json, &c).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
        assert!(docker_profile("{}", &c).unwrap().is_none());
    }

    #[test]
    fn legacy_name_field() {
        let c = ctx(&[], "amd64", Some((6, 1)));
        let spec = docker_profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"mkdir","action":"SCMP_ACT_ERRNO","errnoRet":5}]}"#,
            &c,
        )
        .unwrap()
        .unwrap();
        let r = &spec.syscalls().as_ref().unwrap()[0];
        assert_eq!(r.names(), &vec!["mkdir".to_string()]);
        assert_eq!(r.errno_ret(), Some(5));
        assert!(spec.architectures().is_none());
    }
}
