//! cgroup v2 (unified): one directory, controllers enabled from the parents.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{
    CgroupError, CgroupLayout, CgroupManager, FREEZE_TIMEOUT, FreezerState, Stats,
    blkio_weight_to_io_weight, freeze_signal_thaw, mkdir_levels, parse_u64, poll_until, read_limit,
    read_pids, read_value, remove_cgroup_tree, retry_vanished, shares_to_weight, write_lines,
    write_value,
};

/// A container's cgroup on a unified host.
#[derive(Debug)]
pub(super) struct V2Manager {
    /// The cgroup2 mount, when known (not when rebuilt from a state file).
    mount: Option<PathBuf>,
    dir: PathBuf,
    warnings: Mutex<Vec<String>>,
}

/// runc's conversion of the OCI (v1) `memory.swap` (memory+swap) to v2's
/// `memory.swap.max` (swap alone). `Ok(None)`: leave unset; `Ok(Some(-1))`: "max".
pub(super) fn swap_to_v2(
    swap: Option<i64>,
    limit: Option<i64>,
) -> Result<Option<i64>, CgroupError> {
    let swap = swap.unwrap_or(0);
    let limit = limit.unwrap_or(0);
    if limit == -1 && swap == 0 {
        return Ok(Some(-1));
    }
    if swap == -1 {
        return Ok(Some(-1));
    }
    if swap == 0 {
        return Ok(None);
    }
    let bad = |reason: &str| CgroupError::InvalidValue {
        what: "memory.swap",
        value: swap.to_string(),
        reason: reason.into(),
    };
    if limit == 0 || limit == -1 {
        return Err(bad("a swap limit needs a memory limit"));
    }
    if swap < limit {
        return Err(bad("memory+swap must be >= the memory limit"));
    }
    Ok(Some(swap - limit))
}

fn max_or(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

impl V2Manager {
    pub(super) fn new(mount: Option<PathBuf>, dir: PathBuf) -> Self {
        V2Manager {
            mount,
            dir,
            warnings: Mutex::new(Vec::new()),
        }
    }

    fn warn(&self, msg: String) {
        if let Ok(mut w) = self.warnings.lock()
            && !w.contains(&msg)
        {
            w.push(msg);
        }
    }

    /// Whether `controller` is enabled for this cgroup; a missing one is an error when
    /// the spec asks for a non-default value, else a note and `false`.
    fn ctl(
        &self,
        enabled: &[String],
        controller: &'static str,
        non_default: bool,
        resource: impl FnOnce() -> String,
    ) -> Result<bool, CgroupError> {
        if enabled.iter().any(|c| c == controller) {
            return Ok(true);
        }
        if non_default {
            return Err(CgroupError::MissingController {
                controller,
                resource: resource(),
                layout: CgroupLayout::Unified,
            });
        }
        self.warn(format!(
            "{} left at its default: the {controller} controller is not enabled for {}",
            resource(),
            self.dir.display()
        ));
        Ok(false)
    }

    fn apply_memory(&self, en: &[String], m: &LinuxMemory) -> Result<(), CgroupError> {
        let d = &self.dir;
        #[allow(deprecated)]
        let kernel = m.kernel();
        if kernel.is_some() || m.kernel_tcp().is_some() {
            self.warn("memory.kernel and memory.kernelTCP are ignored (no kernel memory limits in cgroup v2)".into());
        }
        if m.swappiness().is_some() {
            self.warn(
                "memory.swappiness is ignored: cgroup v2 has no per-cgroup swappiness".into(),
            );
        }
        if m.disable_oom_killer() == Some(true) {
            self.warn(
                "memory.disableOOMKiller is ignored: cgroup v2 cannot disable the OOM killer"
                    .into(),
            );
        }
        let limit = m.limit().filter(|&v| v != 0);
        let reservation = m.reservation().filter(|&v| v != 0);
        let swap = swap_to_v2(m.swap().filter(|&v| v != 0), limit)?;
        if limit.is_none() && reservation.is_none() && swap.is_none() {
            return Ok(());
        }
        let non_default = limit.is_some_and(|v| v > 0)
            || reservation.is_some_and(|v| v > 0)
            || swap.is_some_and(|v| v >= 0);
        if !self.ctl(en, "memory", non_default, || "memory limits".into())? {
            return Ok(());
        }
        // Swap before the limit: runc's order; either order is valid on a fresh cgroup.
        if let Some(s) = swap {
            if d.join("memory.swap.max").exists() {
                write_value(d, "memory.swap.max", &max_or(s))?;
            } else if s != -1 && s != 0 {
                return Err(CgroupError::Unsupported {
                    what: "memory.swap",
                    version: "v2",
                    reason: "memory.swap.max does not exist (swap accounting is off)",
                });
            }
        }
        if let Some(l) = limit {
            write_value(d, "memory.max", &max_or(l))?;
        }
        if let Some(r) = reservation {
            write_value(d, "memory.low", &max_or(r))?;
        }
        Ok(())
    }

    fn apply_cpu(&self, en: &[String], c: &LinuxCpu) -> Result<(), CgroupError> {
        let d = &self.dir;
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return Err(CgroupError::Unsupported {
                what: "cpu.realtimeRuntime/realtimePeriod",
                version: "v2",
                reason: "cgroup v2 has no realtime CPU bandwidth",
            });
        }
        let shares = c.shares().filter(|&v| v != 0);
        let quota = c.quota().filter(|&v| v != 0);
        let period = c.period().filter(|&v| v != 0);
        let any = shares.is_some()
            || quota.is_some()
            || period.is_some()
            || c.burst().is_some()
            || c.idle().is_some();
        if any {
            let non_default = shares.is_some_and(|s| s != 1024)
                || quota.is_some_and(|q| q > 0)
                || period.is_some()
                || c.burst().is_some_and(|b| b > 0)
                || c.idle().is_some_and(|i| i != 0);
            if self.ctl(en, "cpu", non_default, || "cpu shares/quota".into())? {
                if let Some(s) = shares {
                    if !(2..=262144).contains(&s) {
                        return Err(CgroupError::InvalidValue {
                            what: "cpu.shares",
                            value: s.to_string(),
                            reason: "must be 2..=262144".into(),
                        });
                    }
                    write_value(d, "cpu.weight", &shares_to_weight(s).to_string())?;
                }
                if quota.is_some() || period.is_some() {
                    let mut v = match quota {
                        Some(q) if q > 0 => q.to_string(),
                        _ => "max".into(),
                    };
                    if let Some(p) = period {
                        v.push_str(&format!(" {p}"));
                    }
                    write_value(d, "cpu.max", &v)?;
                }
                if let Some(b) = c.burst() {
                    write_value(d, "cpu.max.burst", &b.to_string())?;
                }
                if let Some(i) = c.idle() {
                    write_value(d, "cpu.idle", &i.to_string())?;
                }
            }
        }
        let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = c.mems().as_deref().filter(|s| !s.is_empty());
        if (cpus.is_some() || mems.is_some())
            && self.ctl(en, "cpuset", true, || "cpuset cpus/mems".into())?
        {
            if let Some(v) = cpus {
                write_value(d, "cpuset.cpus", v)?;
            }
            if let Some(v) = mems {
                write_value(d, "cpuset.mems", v)?;
            }
        }
        Ok(())
    }

    fn apply_io(&self, en: &[String], b: &LinuxBlockIo) -> Result<(), CgroupError> {
        let d = &self.dir;
        let weight = b.weight().filter(|&w| w != 0);
        let mut max_lines: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
        for (key, list) in [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ] {
            for t in list.iter().flatten() {
                max_lines
                    .entry((t.major(), t.minor()))
                    .or_default()
                    .push(format!("{key}={}", t.rate()));
            }
        }
        let weight_devs: Vec<String> = b
            .weight_device()
            .iter()
            .flatten()
            .filter_map(|w| {
                w.weight()
                    .map(|v| format!("{}:{} {v}", w.major(), w.minor()))
            })
            .collect();
        if weight.is_none() && max_lines.is_empty() && weight_devs.is_empty() {
            return Ok(());
        }
        if !self.ctl(en, "io", true, || "blockIO".into())? {
            return Ok(());
        }
        if let Some(w) = weight {
            // BFQ takes the v1 scale as is; otherwise io.weight on the 1..10000 scale.
            if d.join("io.bfq.weight").exists() {
                write_value(d, "io.bfq.weight", &w.to_string())?;
            } else {
                write_value(d, "io.weight", &blkio_weight_to_io_weight(w).to_string())?;
            }
        }
        write_lines(d, "io.bfq.weight", &weight_devs)?;
        let lines: Vec<String> = max_lines
            .into_iter()
            .map(|((maj, min), kv)| format!("{maj}:{min} {}", kv.join(" ")))
            .collect();
        write_lines(d, "io.max", &lines)
    }

    /// One attempt at [`CgroupManager::create`].
    fn create_once(&self) -> Result<(), CgroupError> {
        let Some(mount) = &self.mount else {
            return std::fs::create_dir_all(&self.dir).map_err(|source| CgroupError::Dir {
                op: "create",
                path: self.dir.clone(),
                source,
            });
        };
        let rel = self.dir.strip_prefix(mount).map_err(|_| {
            CgroupError::BadState(format!(
                "{} is outside {}",
                self.dir.display(),
                mount.display()
            ))
        })?;
        // Enable every available controller in each ancestor's subtree_control, writing
        // only when something is missing (the common case is: nothing to do).
        let mut ancestor = mount.clone();
        let comps: Vec<_> = rel.components().collect();
        for i in 0..comps.len() {
            if i > 0 {
                ancestor.push(comps[i - 1]);
                let below: PathBuf = comps[..i].iter().collect();
                mkdir_levels(mount, &below, |_| Ok(()))?;
            }
            let available = read_value(&ancestor, "cgroup.controllers")?;
            let enabled = read_value(&ancestor, "cgroup.subtree_control")?;
            let missing: Vec<&str> = available
                .split_whitespace()
                .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
            if write_value(&ancestor, "cgroup.subtree_control", &all.join(" ")).is_err() {
                // One at a time, so one refused controller does not lose the others.
                for c in &all {
                    if let Err(e) = write_value(&ancestor, "cgroup.subtree_control", c) {
                        self.warn(format!("controller not enabled: {e}"));
                    }
                }
            }
        }
        mkdir_levels(mount, rel, |_| Ok(()))
    }

    fn wait_frozen(&self, want: bool) -> Result<(bool, String), CgroupError> {
        let d = &self.dir;
        let want_line = if want { "frozen 1" } else { "frozen 0" };
        poll_until(
            FREEZE_TIMEOUT,
            || {
                let ev = read_value(d, "cgroup.events")?;
                let line = ev
                    .lines()
                    .find(|l| l.starts_with("frozen "))
                    .unwrap_or("frozen ?")
                    .to_string();
                Ok((line == want_line, line))
            },
            || Ok(()),
        )
    }
}

impl CgroupManager for V2Manager {
    fn layout(&self) -> CgroupLayout {
        CgroupLayout::Unified
    }

    fn create(&self) -> Result<(), CgroupError> {
        retry_vanished(|| self.create_once())
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        super::validate(r)?;
        if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            match super::devices::apply(&self.dir, rules) {
                Ok(()) => {}
                Err(e) if super::devices::allows_everything(rules) => self.warn(format!(
                    "no device filter (the rules allow every device): {e}"
                )),
                Err(e) => return Err(e),
            }
        }
        let enabled_text = read_value(&self.dir, "cgroup.controllers")?;
        let en: Vec<String> = enabled_text
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if let Some(c) = r.cpu() {
            self.apply_cpu(&en, c)?;
        }
        if let Some(m) = r.memory() {
            self.apply_memory(&en, m)?;
        }
        if let Some(b) = r.block_io() {
            self.apply_io(&en, b)?;
        }
        if let Some(p) = r.pids() {
            let limit = p.limit();
            if limit != 0 && self.ctl(&en, "pids", limit > 0, || format!("pids.limit {limit}"))? {
                write_value(&self.dir, "pids.max", &max_or(limit))?;
            }
        }
        if let Some(limits) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty())
            && self.ctl(&en, "hugetlb", true, || "hugepageLimits".into())?
        {
            for l in limits {
                let size = l.page_size();
                if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(CgroupError::InvalidValue {
                        what: "hugepage pageSize",
                        value: size.clone(),
                        reason: "expected a size such as 2MB or 1GB".into(),
                    });
                }
                write_value(
                    &self.dir,
                    &format!("hugetlb.{size}.max"),
                    &max_or(l.limit()),
                )?;
            }
        }
        if let Some(net) = r.network()
            && (net.class_id().is_some()
                || net.priorities().as_ref().is_some_and(|p| !p.is_empty()))
        {
            return Err(CgroupError::Unsupported {
                what: "linux.resources.network",
                version: "v2",
                reason: "net_cls and net_prio do not exist in cgroup v2",
            });
        }
        if let Some(rdma) = r.rdma().as_ref().filter(|m| !m.is_empty())
            && self.ctl(&en, "rdma", true, || "rdma limits".into())?
        {
            let lines: Vec<String> = rdma
                .iter()
                .map(|(dev, l)| {
                    let mut s = dev.clone();
                    if let Some(h) = l.hca_handles() {
                        s.push_str(&format!(" hca_handle={h}"));
                    }
                    if let Some(o) = l.hca_objects() {
                        s.push_str(&format!(" hca_object={o}"));
                    }
                    s
                })
                .collect();
            write_lines(&self.dir, "rdma.max", &lines)?;
        }
        if let Some(unified) = r.unified() {
            let mut keys: Vec<_> = unified.iter().collect();
            keys.sort();
            for (file, value) in keys {
                if file.is_empty()
                    || file.contains('/')
                    || file.starts_with('.')
                    || file.starts_with("cgroup.")
                {
                    return Err(CgroupError::InvalidValue {
                        what: "linux.resources.unified key",
                        value: file.clone(),
                        reason: "must be a controller file name such as memory.high".into(),
                    });
                }
                if !self.dir.join(file).exists() {
                    let controller = file.split('.').next().unwrap_or(file).to_string();
                    return Err(CgroupError::InvalidValue {
                        what: "linux.resources.unified key",
                        value: file.clone(),
                        reason: format!(
                            "no such file in {}: is the {controller} controller enabled?",
                            self.dir.display()
                        ),
                    });
                }
                write_value(&self.dir, file, value)?;
            }
        }
        Ok(())
    }

    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        write_value(&self.dir, "cgroup.procs", &pid.to_string())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        if !self.dir.join("cgroup.freeze").exists() {
            return Err(CgroupError::MissingController {
                controller: "freezer",
                resource: "pause/resume".into(),
                layout: CgroupLayout::Unified,
            });
        }
        write_value(&self.dir, "cgroup.freeze", "1")?;
        let (done, state) = self.wait_frozen(true)?;
        if done {
            return Ok(());
        }
        let _ = write_value(&self.dir, "cgroup.freeze", "0");
        Err(CgroupError::FreezeTimeout {
            path: self.dir.join("cgroup.events"),
            waited: FREEZE_TIMEOUT,
            state,
        })
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        if !self.dir.join("cgroup.freeze").exists() {
            return Err(CgroupError::MissingController {
                controller: "freezer",
                resource: "pause/resume".into(),
                layout: CgroupLayout::Unified,
            });
        }
        write_value(&self.dir, "cgroup.freeze", "0")
    }

    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        if read_value(&self.dir, "cgroup.freeze")? != "1" {
            return Ok(FreezerState::Thawed);
        }
        let ev = read_value(&self.dir, "cgroup.events")?;
        if ev.lines().any(|l| l == "frozen 1") {
            Ok(FreezerState::Frozen)
        } else {
            Ok(FreezerState::Freezing)
        }
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        read_pids(&self.dir)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let d = &self.dir;
        let mut s = Stats::default();
        if let Ok(cpu) = read_value(d, "cpu.stat") {
            for line in cpu.lines() {
                let mut it = line.split_whitespace();
                let (Some(k), Some(v)) = (it.next(), it.next()) else {
                    continue;
                };
                let ns = v.parse::<u64>().unwrap_or(0).saturating_mul(1000);
                match k {
                    "usage_usec" => s.cpu_usage_ns = ns,
                    "user_usec" => s.cpu_user_ns = ns,
                    "system_usec" => s.cpu_system_ns = ns,
                    _ => {}
                }
            }
        }
        if d.join("memory.current").exists() {
            let cur = read_value(d, "memory.current")?;
            s.memory_usage = parse_u64(&d.join("memory.current"), &cur)?;
            s.memory_limit = read_limit(d, "memory.max")?;
            if d.join("memory.peak").exists() {
                s.memory_max_usage = read_limit(d, "memory.peak")?;
            }
            if let Ok(ev) = read_value(d, "memory.events") {
                s.oom_kills = ev
                    .lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
            }
        }
        if d.join("pids.current").exists() {
            let cur = read_value(d, "pids.current")?;
            s.pids_current = parse_u64(&d.join("pids.current"), &cur)?;
            s.pids_limit = read_limit(d, "pids.max")?;
        }
        Ok(s)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        remove_cgroup_tree(&self.dir)
    }

    fn paths(&self) -> BTreeMap<String, PathBuf> {
        BTreeMap::from([("unified".to_string(), self.dir.clone())])
    }

    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        // cgroup.kill (Linux 5.14) SIGKILLs the whole subtree atomically.
        if signal == libc::SIGKILL && self.dir.join("cgroup.kill").exists() {
            return write_value(&self.dir, "cgroup.kill", "1");
        }
        freeze_signal_thaw(self, signal)
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_conversion_matches_runc() {
        assert_eq!(swap_to_v2(None, None).unwrap(), None);
        assert_eq!(swap_to_v2(None, Some(-1)).unwrap(), Some(-1));
        assert_eq!(swap_to_v2(Some(-1), Some(100)).unwrap(), Some(-1));
        assert_eq!(swap_to_v2(Some(300), Some(100)).unwrap(), Some(200));
        assert_eq!(swap_to_v2(Some(100), Some(100)).unwrap(), Some(0));
        assert!(swap_to_v2(Some(50), Some(100)).is_err());
        assert!(swap_to_v2(Some(50), None).is_err());
    }
}
