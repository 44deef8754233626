//! `update` (resources and restart policy of a container, applied to a running one's
//! cgroups at once) and `stats`.

use serde::Serialize;

use super::{RestartPolicy, parse_memory};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// A `docker update` request: only what is set changes.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UpdateRequest {
    /// `-m`.
    pub memory: Option<String>,
    /// `--memory-swap`.
    pub memory_swap: Option<String>,
    /// `-c`.
    pub cpu_shares: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--restart`.
    pub restart: Option<String>,
    /// `--cpu-period` (µs).
    pub cpu_period: Option<i64>,
    /// `--cpu-quota` (µs per period).
    pub cpu_quota: Option<i64>,
    /// `--memory-reservation`.
    pub memory_reservation: Option<String>,
    /// `--blkio-weight`.
    pub blkio_weight: Option<u16>,
}

/// One `docker stats` sample.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatsSample {
    /// Container ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// CPU time used so far, nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory in use, bytes.
    pub memory_usage: u64,
    /// Memory limit (0: none).
    pub memory_limit: u64,
    /// Tasks.
    pub pids: u64,
}

impl Engine {
    /// `docker update`: records the new values and writes them to a running container's
    /// cgroups.
    pub fn update_container(&self, name_or_id: &str, req: &UpdateRequest) -> Result<Vec<String>> {
        let mut c = self.container(name_or_id)?;
        let hc = &mut c.record.host_config;
        if let Some(m) = &req.memory {
            let m = parse_memory(m)?;
            if m > 0 && m < super::create::MIN_MEMORY {
                return Err(Error::InvalidArgument(
                    "Minimum memory limit allowed is 6MB".into(),
                ));
            }
            hc.memory = m;
        }
        if let Some(s) = &req.memory_swap {
            hc.memory_swap = if s == "-1" { -1 } else { parse_memory(s)? };
        }
        if hc.memory_swap > 0 && hc.memory_swap < hc.memory {
            return Err(Error::InvalidArgument(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
            ));
        }
        if let Some(s) = req.cpu_shares {
            hc.cpu_shares = s;
        }
        if let Some(c) = req.cpus {
            hc.nano_cpus = (c * 1e9) as i64;
        }
        if let Some(s) = &req.cpuset_cpus {
            hc.cpuset_cpus = s.clone();
        }
        if let Some(p) = req.pids_limit {
            hc.pids_limit = p;
        }
        if let Some(p) = req.cpu_period {
            hc.cpu_period = p;
        }
        if let Some(q) = req.cpu_quota {
            hc.cpu_quota = q;
        }
        if let Some(r) = &req.memory_reservation {
            hc.memory_reservation = parse_memory(r)?;
        }
        if let Some(w) = req.blkio_weight {
            hc.blkio_weight = w;
        }
        // --cpus replaces a period and quota and the other way round, as Docker's update
        if req.cpus.is_some() && req.cpu_period.is_none() && req.cpu_quota.is_none() {
            hc.cpu_period = 0;
            hc.cpu_quota = 0;
        } else if (req.cpu_period.is_some() || req.cpu_quota.is_some()) && req.cpus.is_none() {
            hc.nano_cpus = 0;
        }
        super::create::check_resources(
            hc.nano_cpus,
            hc.cpu_period,
            hc.cpu_quota,
            hc.memory,
            hc.memory_reservation,
            req.blkio_weight.unwrap_or(0),
        )?;
        if let Some(r) = &req.restart {
            let p = RestartPolicy::parse(r)?;
            if hc.auto_remove && !p.is_none() {
                return Err(Error::Conflict(
                    "Conflicting options: --restart and --rm".into(),
                ));
            }
            hc.restart_policy = p;
        }
        let mut warnings = Vec::new();
        if matches!(c.live_status(), "running" | "paused") {
            let res = super::spec::resource_limits(&c.record.host_config);
            let res: oci_spec::runtime::LinuxResources = serde_json::from_value(res)
                .map_err(|e| Error::InvalidArgument(format!("resources: {e}")))?;
            let rc = longshore_container::Container::load(self.runtime_root(), &c.record.id)
                .map_err(Error::runtime(format!("load container {}", c.record.name)))?;
            let st = rc.state();
            let layout = st.cgroup_layout.ok_or_else(|| {
                Error::WrongState(format!("container {} has no cgroup", c.record.id))
            })?;
            let cg = longshore_container::cgroups::manager_from_state(layout, &st.cgroup_paths)
                .map_err(|e| Error::runtime("open the container's cgroups")(e.into()))?;
            cg.apply(&res).map_err(|e| {
                Error::runtime(format!("update container {}", c.record.name))(e.into())
            })?;
            warnings = cg.warnings();
        }
        self.save_record(&c)?;
        self.event("container", "update", &c.record.id, c.event_attributes());
        Ok(warnings)
    }

    /// One `docker stats` sample of a running container.
    pub fn container_stats(&self, name_or_id: &str) -> Result<StatsSample> {
        let c = self.container(name_or_id)?;
        if !matches!(c.live_status(), "running" | "paused") {
            return Err(Error::WrongState(format!(
                "Container {} is not running",
                c.record.id
            )));
        }
        let rc = longshore_container::Container::load(self.runtime_root(), &c.record.id)
            .map_err(Error::runtime(format!("load container {}", c.record.name)))?;
        let s = rc.stats().map_err(Error::runtime(format!(
            "read the cgroups of {}",
            c.record.name
        )))?;
        Ok(StatsSample {
            id: c.record.id.clone(),
            name: c.record.name.clone(),
            cpu_usage_ns: s.cpu_usage_ns,
            memory_usage: s.memory_usage,
            memory_limit: s.memory_limit.unwrap_or(0),
            pids: s.pids_current,
        })
    }
}
