//! Loading and checking an OCI bundle's `config.json`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Error, Result};

/// Loads `config.json` from `bundle` and checks its `ociVersion` is a 1.x release
/// from 1.0.0 through 1.3.x.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let bad = |reason: String| Error::BadBundle {
        path: bundle.to_path_buf(),
        reason,
    };
    let text = std::fs::read(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    parse(&text).map_err(|e| match e {
        Error::InvalidSpec(reason) => bad(reason),
        other => other,
    })
}

/// Parses a `config.json` document and checks its version.
pub fn parse(json: &[u8]) -> Result<Spec> {
    let spec: Spec = serde_json::from_slice(json)
        .map_err(|e| Error::InvalidSpec(format!("config.json: {e}")))?;
    check_version(spec.version())?;
    Ok(spec)
}

/// Accepts OCI runtime-spec versions 1.0.0 through 1.3.x (pre-release suffixes included).
pub(crate) fn check_version(version: &str) -> Result<()> {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0] == "1"
        && parts[1].parse::<u32>().is_ok_and(|minor| minor <= 3);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "ociVersion {version:?} is not supported: this runtime accepts 1.0.0 through 1.3.x"
        )))
    }
}

/// The root filesystem's absolute path (relative paths are relative to the bundle).
pub(crate) fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("spec has no root".into()))?;
    let p = root.path();
    let p = if p.is_absolute() {
        p.clone()
    } else {
        bundle.join(p)
    };
    p.canonicalize().map_err(|e| Error::BadBundle {
        path: bundle.to_path_buf(),
        reason: format!("root.path {}: {e}", p.display()),
    })
}

/// Refuses, with a clear error, what the spec asks for and this runtime or host cannot
/// do, before anything is created.
pub(crate) fn check_supported(spec: &Spec) -> Result<()> {
    if let Some(linux) = spec.linux() {
        if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(Error::Unsupported(
                "linux.netDevices (moving host network devices into the container)".into(),
            ));
        }
        if linux.intel_rdt().is_some() {
            return Err(Error::Unsupported("linux.intelRdt (resctrl)".into()));
        }
    }
    for m in spec.mounts().iter().flatten() {
        if m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty())
            || m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty())
        {
            return Err(Error::Unsupported(format!(
                "id-mapped mount of {}",
                m.destination().display()
            )));
        }
    }
    if let Some(p) = spec.process() {
        check_process_supported(p)?;
    }
    Ok(())
}

/// The process-level part of [`check_supported`] (also for `exec`).
pub(crate) fn check_process_supported(p: &oci_spec::runtime::Process) -> Result<()> {
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty())
        && !crate::attrs::apparmor_enabled()
    {
        return Err(Error::InvalidSpec(format!(
            "apparmor profile {profile:?} specified but AppArmor is not enabled on this host"
        )));
    }
    Ok(())
}

/// A starting spec, as `runc spec` writes: `sh` on a terminal, the default mounts,
/// namespaces, masked and read-only paths, a read-only root and every device denied.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version("1.0.2".to_string());
    spec.set_hostname(Some("longshore".to_string()));
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(true));
    }
    if let Some(linux) = spec.linux_mut() {
        let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .expect("a device rule with allow and access builds");
        let mut res = linux.resources().clone().unwrap_or_default();
        res.set_devices(Some(vec![deny_all]));
        linux.set_resources(Some(res));
        // what Docker masks today beyond runc's list
        let mut masked = linux.masked_paths().clone().unwrap_or_default();
        for extra in ["/proc/interrupts", "/sys/devices/virtual/powercap"] {
            if !masked.iter().any(|m| m == extra) {
                masked.push(extra.to_string());
            }
        }
        linux.set_masked_paths(Some(masked));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_round_trips() {
        let spec = default_spec();
        let json = serde_json::to_vec(&spec).unwrap();
        let back = parse(&json).unwrap();
        assert_eq!(back, spec);
        assert_eq!(
            back.process().as_ref().unwrap().args().as_ref().unwrap(),
            &["sh"]
        );
    }

    #[test]
    fn versions() {
        for v in [
            "1.0.0",
            "1.0.2",
            "1.1.0",
            "1.2.1",
            "1.3.0",
            "1.0.0-rc5",
            "1.2.0+dev",
        ] {
            check_version(v).unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        for v in ["0.9.0", "2.0.0", "1.4.0", "1.0", "", "one", "1.x.0"] {
            let e = check_version(v).unwrap_err().to_string();
            assert!(e.contains("not supported"), "{v}: {e}");
        }
    }
}
