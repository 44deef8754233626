//! Control groups, v1 and v2, behind one trait.
//!
//! (Interface placeholder: being implemented. Every function returns
//! [`CgroupError::Unimplemented`] until then.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

/// Errors from cgroup management.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Not implemented yet.
    #[error("cgroups: {0} is not implemented yet")]
    Unimplemented(&'static str),
}

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupLayout {
    /// Only v1 hierarchies.
    V1,
    /// cgroup2 mounted at the root with controllers.
    Unified,
    /// v1 controllers with an (often empty) cgroup2 hierarchy beside them; treated as v1.
    Hybrid,
}

/// The freezer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreezerState {
    /// Running.
    Thawed,
    /// Being frozen.
    Freezing,
    /// Frozen.
    Frozen,
}

/// Resource usage of a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Total CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory in use, bytes.
    pub memory_usage: u64,
    /// Memory limit, bytes (`None` when unlimited).
    pub memory_limit: Option<u64>,
    /// Number of tasks.
    pub pids_current: u64,
    /// Task limit (`None` when unlimited).
    pub pids_limit: Option<u64>,
}

/// One container's cgroup(s).
pub trait CgroupManager: Send + Sync + std::fmt::Debug {
    /// The layout this manager drives.
    fn layout(&self) -> CgroupLayout;
    /// Creates the cgroup directories.
    fn create(&self) -> Result<(), CgroupError>;
    /// Writes the resource limits.
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Moves a process into the cgroup(s).
    fn add_task(&self, pid: i32) -> Result<(), CgroupError>;
    /// Freezes every process.
    fn freeze(&self) -> Result<(), CgroupError>;
    /// Thaws every process.
    fn thaw(&self) -> Result<(), CgroupError>;
    /// The freezer state.
    fn freezer_state(&self) -> Result<FreezerState, CgroupError>;
    /// Pids of every process in the cgroup.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Resource usage.
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// Removes the cgroup directories (the cgroup must be empty).
    fn destroy(&self) -> Result<(), CgroupError>;
    /// Controller name to directory, for the state file.
    fn paths(&self) -> BTreeMap<String, PathBuf>;
}

/// Detects the host's cgroup layout from `/proc/self/mountinfo`.
pub fn detect() -> Result<CgroupLayout, CgroupError> {
    Err(CgroupError::Unimplemented("detect"))
}

/// A manager for `cgroups_path` (the spec's `linux.cgroupsPath`, or a default derived
/// from the container id) on the host's layout.
pub fn manager(
    cgroups_path: &Path,
    container_id: &str,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let _ = (cgroups_path, container_id);
    Err(CgroupError::Unimplemented("manager"))
}
