//! cgroup v1 (and hybrid hosts, driven as v1): one directory per hierarchy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources,
};

use super::mountinfo::{CgroupMounts, dir_in_mount};
use super::{
    CgroupError, CgroupLayout, CgroupManager, FREEZE_TIMEOUT, FreezerState, Stats, mkdir_levels,
    parse_u64, poll_until, read_limit, read_pids, read_value, remove_cgroup_tree, retry_vanished,
    write_lines, write_value,
};

/// One hierarchy's directory for this container.
#[derive(Debug, Clone)]
struct Hierarchy {
    /// Controllers (or `name=systemd`, or `unified` for hybrid's cgroup2) it carries.
    keys: Vec<String>,
    /// The container's directory in it.
    dir: PathBuf,
    /// The mount point and the container's path below it, when known (not when rebuilt
    /// from a state file).
    mount: Option<(PathBuf, PathBuf)>,
}

/// A container's cgroup on a v1 or hybrid host.
#[derive(Debug)]
pub(super) struct V1Manager {
    layout: CgroupLayout,
    hierarchies: Vec<Hierarchy>,
    warnings: Mutex<Vec<String>>,
}

impl V1Manager {
    /// The container at `rel` (relative to each hierarchy root) in every mounted hierarchy.
    pub(super) fn from_mounts(layout: CgroupLayout, mounts: &CgroupMounts, rel: &Path) -> Self {
        let mut hierarchies: Vec<Hierarchy> = mounts
            .v1
            .iter()
            .map(|h| {
                let dir = dir_in_mount(&h.mount_point, &h.root, rel);
                let below = dir
                    .strip_prefix(&h.mount_point)
                    .unwrap_or(rel)
                    .to_path_buf();
                Hierarchy {
                    keys: h.controllers.clone(),
                    dir,
                    mount: Some((h.mount_point.clone(), below)),
                }
            })
            .collect();
        if let (CgroupLayout::Hybrid, Some(mp)) = (layout, &mounts.unified) {
            let root = mounts.unified_root.clone().unwrap_or_else(|| "/".into());
            let dir = dir_in_mount(mp, &root, rel);
            let below = dir.strip_prefix(mp).unwrap_or(rel).to_path_buf();
            hierarchies.push(Hierarchy {
                keys: vec!["unified".into()],
                dir,
                mount: Some((mp.clone(), below)),
            });
        }
        // (a controller the host lacks is noted when a container asks for it, in `ctl`)
        V1Manager {
            layout,
            hierarchies,
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Rebuilds from saved `paths()`: keys are controllers, co-mounted controllers share
    /// a directory.
    pub(super) fn from_paths(layout: CgroupLayout, paths: &BTreeMap<String, PathBuf>) -> Self {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for (key, dir) in paths {
            match hierarchies.iter_mut().find(|h| &h.dir == dir) {
                Some(h) => h.keys.push(key.clone()),
                None => hierarchies.push(Hierarchy {
                    keys: vec![key.clone()],
                    dir: dir.clone(),
                    mount: None,
                }),
            }
        }
        V1Manager {
            layout,
            hierarchies,
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// The container's directory in `controller`'s hierarchy.
    fn dir(&self, controller: &str) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.keys.iter().any(|k| k == controller))
            .map(|h| h.dir.as_path())
    }

    fn warn(&self, msg: String) {
        if let Ok(mut w) = self.warnings.lock()
            && !w.contains(&msg)
        {
            w.push(msg);
        }
    }

    /// The controller's directory. A missing controller is an error when the spec asks
    /// for a non-default value, else a note and `None`.
    fn ctl(
        &self,
        controller: &'static str,
        non_default: bool,
        resource: impl FnOnce() -> String,
    ) -> Result<Option<&Path>, CgroupError> {
        match self.dir(controller) {
            Some(d) => Ok(Some(d)),
            None if non_default => Err(CgroupError::MissingController {
                controller,
                resource: resource(),
                layout: self.layout,
            }),
            None => {
                self.warn(format!(
                    "{} left at its default: no {controller} hierarchy on this host",
                    resource()
                ));
                Ok(None)
            }
        }
    }

    /// [`Self::ctl`] when `wanted`, else `None` without a note.
    fn ctl_if(
        &self,
        wanted: bool,
        controller: &'static str,
        non_default: bool,
        resource: impl FnOnce() -> String,
    ) -> Result<Option<&Path>, CgroupError> {
        if wanted {
            self.ctl(controller, non_default, resource)
        } else {
            Ok(None)
        }
    }

    fn apply_memory(&self, m: &LinuxMemory) -> Result<(), CgroupError> {
        #[allow(deprecated)]
        let kernel = m.kernel();
        if kernel.is_some() {
            self.warn(
                "memory.kernel is ignored (kernel memory limits are obsolete since Linux 5.4)"
                    .into(),
            );
        }
        // the TCP buffer limit still works on v1 (written below, where the kernel has it)
        let kernel_tcp = m.kernel_tcp().filter(|&v| v != 0);
        let limit = m.limit().filter(|&v| v != 0);
        let reservation = m.reservation().filter(|&v| v != 0);
        let mut swap = m.swap().filter(|&v| v != 0);
        let non_default = limit.is_some_and(|v| v > 0)
            || reservation.is_some_and(|v| v > 0)
            || swap.is_some_and(|v| v > 0)
            || kernel_tcp.is_some_and(|v| v > 0)
            || m.swappiness().is_some()
            || m.disable_oom_killer() == Some(true);
        let Some(dir) = self.ctl("memory", non_default, || "memory limits".into())? else {
            return Ok(());
        };
        let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
        if limit == Some(-1) && swap.is_none() && has_memsw {
            swap = Some(-1);
        }
        if let Some(s) = swap
            && !has_memsw
        {
            if s == -1 || Some(s) == limit {
                swap = None;
                self.warn("memory.swap not written: swap accounting is off on this host".into());
            } else {
                return Err(CgroupError::Unsupported {
                    what: "memory.swap",
                    version: "v1",
                    reason: "swap accounting is off (no memory.memsw.limit_in_bytes); boot with swapaccount=1",
                });
            }
        }
        let write_limit = |v: i64| {
            write_value(dir, "memory.limit_in_bytes", &v.to_string()).map_err(|e| busy_hint(dir, e))
        };
        let write_swap = |v: i64| write_value(dir, "memory.memsw.limit_in_bytes", &v.to_string());
        // memsw must stay >= limit at every step: order the writes as runc does.
        match (limit, swap) {
            (Some(l), Some(s)) => {
                let cur = read_limit(dir, "memory.limit_in_bytes")?;
                let swap_first = s == -1 || cur.is_some_and(|c| (c as i128) < i128::from(s));
                if swap_first {
                    write_swap(s)?;
                    write_limit(l)?;
                } else {
                    write_limit(l)?;
                    write_swap(s)?;
                }
            }
            (Some(l), None) => write_limit(l)?,
            (None, Some(s)) => write_swap(s)?,
            (None, None) => {}
        }
        if let Some(r) = reservation {
            write_value(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
        }
        if let Some(t) = kernel_tcp {
            if dir.join("memory.kmem.tcp.limit_in_bytes").exists() {
                write_value(dir, "memory.kmem.tcp.limit_in_bytes", &t.to_string())?;
            } else {
                self.warn(
                    "memory.kernelTCP is ignored: this kernel has no TCP memory limit".into(),
                );
            }
        }
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(CgroupError::InvalidValue {
                    what: "memory.swappiness",
                    value: s.to_string(),
                    reason: "must be 0..=100".into(),
                });
            }
            write_value(dir, "memory.swappiness", &s.to_string())?;
        }
        if m.disable_oom_killer() == Some(true) {
            write_value(dir, "memory.oom_control", "1")?;
        }
        if let Some(h) = m.use_hierarchy() {
            write_value(dir, "memory.use_hierarchy", if h { "1" } else { "0" })?;
        }
        Ok(())
    }

    fn apply_cpu(&self, c: &LinuxCpu) -> Result<(), CgroupError> {
        let shares = c.shares().filter(|&v| v != 0);
        let quota = c.quota().filter(|&v| v != 0);
        let period = c.period().filter(|&v| v != 0);
        let rt_runtime = c.realtime_runtime().filter(|&v| v != 0);
        let rt_period = c.realtime_period().filter(|&v| v != 0);
        let non_default = shares.is_some_and(|s| s != 1024)
            || quota.is_some_and(|q| q > 0)
            || period.is_some()
            || rt_runtime.is_some()
            || rt_period.is_some()
            || c.burst().is_some_and(|b| b > 0)
            || c.idle().is_some_and(|i| i != 0);
        let any = shares.is_some()
            || quota.is_some()
            || non_default
            || c.burst().is_some()
            || c.idle().is_some();
        if let Some(dir) = self.ctl_if(any, "cpu", non_default, || "cpu shares/quota".into())? {
            if let Some(s) = shares {
                if !(2..=262144).contains(&s) {
                    return Err(CgroupError::InvalidValue {
                        what: "cpu.shares",
                        value: s.to_string(),
                        reason: "must be 2..=262144".into(),
                    });
                }
                write_value(dir, "cpu.shares", &s.to_string())?;
            }
            match (period, quota) {
                (Some(p), Some(q)) => {
                    // A new period may be refused against the old quota: swap order.
                    if write_value(dir, "cpu.cfs_period_us", &p.to_string()).is_err() {
                        write_value(dir, "cpu.cfs_quota_us", &q.to_string())?;
                        write_value(dir, "cpu.cfs_period_us", &p.to_string())?;
                    } else {
                        write_value(dir, "cpu.cfs_quota_us", &q.to_string())?;
                    }
                }
                (Some(p), None) => write_value(dir, "cpu.cfs_period_us", &p.to_string())?,
                (None, Some(q)) => write_value(dir, "cpu.cfs_quota_us", &q.to_string())?,
                (None, None) => {}
            }
            if let Some(b) = c.burst() {
                write_value(dir, "cpu.cfs_burst_us", &b.to_string())?;
            }
            if let Some(i) = c.idle() {
                write_value(dir, "cpu.idle", &i.to_string())?;
            }
            if let Some(p) = rt_period {
                write_value(dir, "cpu.rt_period_us", &p.to_string())?;
            }
            if let Some(r) = rt_runtime {
                write_value(dir, "cpu.rt_runtime_us", &r.to_string())?;
            }
        }
        let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = c.mems().as_deref().filter(|s| !s.is_empty());
        let wanted = cpus.is_some() || mems.is_some();
        if let Some(dir) = self.ctl_if(wanted, "cpuset", true, || "cpuset cpus/mems".into())? {
            if let Some(v) = cpus {
                write_value(dir, "cpuset.cpus", v)?;
            }
            if let Some(v) = mems {
                write_value(dir, "cpuset.mems", v)?;
            }
        }
        Ok(())
    }

    fn apply_blkio(&self, b: &LinuxBlockIo) -> Result<(), CgroupError> {
        let weight = b.weight().filter(|&w| w != 0);
        let devs = |v: &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>| {
            v.iter()
                .flatten()
                .map(|d| format!("{}:{} {}", d.major(), d.minor(), d.rate()))
                .collect::<Vec<_>>()
        };
        let throttles = [
            (
                "blkio.throttle.read_bps_device",
                devs(b.throttle_read_bps_device()),
            ),
            (
                "blkio.throttle.write_bps_device",
                devs(b.throttle_write_bps_device()),
            ),
            (
                "blkio.throttle.read_iops_device",
                devs(b.throttle_read_iops_device()),
            ),
            (
                "blkio.throttle.write_iops_device",
                devs(b.throttle_write_iops_device()),
            ),
        ];
        let weight_devs: Vec<String> = b
            .weight_device()
            .iter()
            .flatten()
            .filter_map(|d| {
                d.weight()
                    .map(|w| format!("{}:{} {w}", d.major(), d.minor()))
            })
            .collect();
        let non_default = weight.is_some()
            || b.leaf_weight().is_some()
            || !weight_devs.is_empty()
            || throttles.iter().any(|(_, v)| !v.is_empty());
        if !non_default {
            return Ok(());
        }
        let Some(dir) = self.ctl("blkio", true, || "blockIO".into())? else {
            return Ok(());
        };
        // Without CFQ the kernel has only BFQ's files (as on this host).
        let bfq = !dir.join("blkio.weight").exists();
        if let Some(w) = weight {
            let file = if bfq {
                "blkio.bfq.weight"
            } else {
                "blkio.weight"
            };
            if !dir.join(file).exists() {
                return Err(CgroupError::Unsupported {
                    what: "blockIO.weight",
                    version: "v1",
                    reason: "neither blkio.weight (CFQ) nor blkio.bfq.weight (BFQ) exists; select the bfq I/O scheduler",
                });
            }
            write_value(dir, file, &w.to_string())?;
        }
        if let Some(w) = b.leaf_weight() {
            write_value(dir, "blkio.leaf_weight", &w.to_string())?;
        }
        let wd = if bfq {
            "blkio.bfq.weight_device"
        } else {
            "blkio.weight_device"
        };
        write_lines(dir, wd, &weight_devs)?;
        for (file, lines) in &throttles {
            write_lines(dir, file, lines)?;
        }
        Ok(())
    }

    fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
        if rules.is_empty() {
            return Ok(());
        }
        let Some(dir) = self.ctl("devices", true, || "device rules".into())? else {
            return Ok(());
        };
        // Consecutive rules of one kind go through one open file, one write each.
        let mut batch: Vec<String> = Vec::new();
        let mut batch_allow = None;
        for rule in rules {
            let Some(line) = device_rule_line(rule)? else {
                self.warn("a device rule of type p (fifo) was skipped: the v1 devices controller only knows a, b and c".into());
                continue;
            };
            if batch_allow.is_some_and(|a| a != rule.allow()) {
                flush_devices(dir, batch_allow, &mut batch)?;
            }
            batch_allow = Some(rule.allow());
            batch.push(line);
        }
        flush_devices(dir, batch_allow, &mut batch)
    }

    fn apply_others(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(p) = r.pids() {
            let limit = p.limit();
            if let Some(dir) = self.ctl_if(limit != 0, "pids", limit > 0, || {
                format!("pids.limit {limit}")
            })? {
                let v = if limit > 0 {
                    limit.to_string()
                } else {
                    "max".into()
                };
                write_value(dir, "pids.max", &v)?;
            }
        }
        let limits = r.hugepage_limits().as_deref().unwrap_or(&[]);
        if let Some(dir) = self.ctl_if(!limits.is_empty(), "hugetlb", true, || {
            "hugepageLimits".into()
        })? {
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
                    dir,
                    &format!("hugetlb.{size}.limit_in_bytes"),
                    &l.limit().to_string(),
                )?;
            }
        }
        if let Some(net) = r.network() {
            let id = net.class_id();
            let dir = self.ctl_if(id.is_some(), "net_cls", true, || "network.classID".into())?;
            if let (Some(id), Some(dir)) = (id, dir) {
                write_value(dir, "net_cls.classid", &id.to_string())?;
            }
            let prios = net.priorities().as_deref().unwrap_or(&[]);
            if let Some(dir) = self.ctl_if(!prios.is_empty(), "net_prio", true, || {
                "network.priorities".into()
            })? {
                let lines: Vec<String> = prios
                    .iter()
                    .map(|p| format!("{} {}", p.name(), p.priority()))
                    .collect();
                write_lines(dir, "net_prio.ifpriomap", &lines)?;
            }
        }
        let rdma = r.rdma().as_ref().filter(|m| !m.is_empty());
        if let (Some(rdma), Some(dir)) = (
            rdma,
            self.ctl_if(rdma.is_some(), "rdma", true, || "rdma limits".into())?,
        ) {
            let mut lines = Vec::new();
            for (dev, l) in rdma {
                let mut line = dev.clone();
                if let Some(h) = l.hca_handles() {
                    line.push_str(&format!(" hca_handle={h}"));
                }
                if let Some(o) = l.hca_objects() {
                    line.push_str(&format!(" hca_object={o}"));
                }
                lines.push(line);
            }
            write_lines(dir, "rdma.max", &lines)?;
        }
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::Unsupported {
                what: "linux.resources.unified",
                version: "v1",
                reason: "unified keys are cgroup v2 files; this host is driven as v1",
            });
        }
        Ok(())
    }

    fn unique_dirs(&self) -> impl Iterator<Item = &Hierarchy> {
        self.hierarchies.iter()
    }

    fn freezer_dir(&self) -> Result<&Path, CgroupError> {
        self.dir("freezer")
            .ok_or_else(|| CgroupError::MissingController {
                controller: "freezer",
                resource: "pause/resume".into(),
                layout: self.layout,
            })
    }
}

/// Gives `cpuset.cpus`/`cpuset.mems` of a new cpuset cgroup its parent's values (a
/// new v1 cpuset is empty and refuses tasks). A parent that is itself still empty (just
/// created by a concurrent start) is filled first.
fn cpuset_init(dir: &Path, mount: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        cpuset_fill(dir, mount, file)?;
    }
    Ok(())
}

fn cpuset_fill(dir: &Path, mount: &Path, file: &str) -> Result<String, CgroupError> {
    let parent = match dir.parent() {
        Some(p) if dir != mount && p.starts_with(mount) => p,
        _ => return read_value(dir, file),
    };
    let mut v = read_value(parent, file)?;
    if v.is_empty() {
        v = cpuset_fill(parent, mount, file)?;
    }
    write_value(dir, file, &v)?;
    Ok(v)
}

/// `devices.allow` / `devices.deny` line for a rule; `None` for fifo rules.
fn device_rule_line(rule: &LinuxDeviceCgroup) -> Result<Option<String>, CgroupError> {
    let typ = match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => return Ok(None),
    };
    let num = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".into(),
    };
    let access = rule.access().as_deref().unwrap_or("rwm");
    let access = if access.is_empty() { "rwm" } else { access };
    if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(CgroupError::InvalidValue {
            what: "device rule access",
            value: access.into(),
            reason: "use letters from \"rwm\"".into(),
        });
    }
    Ok(Some(format!(
        "{typ} {}:{} {access}",
        num(rule.major()),
        num(rule.minor())
    )))
}

fn flush_devices(
    dir: &Path,
    allow: Option<bool>,
    batch: &mut Vec<String>,
) -> Result<(), CgroupError> {
    if let Some(allow) = allow {
        let file = if allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write_lines(dir, file, batch)?;
    }
    batch.clear();
    Ok(())
}

/// Makes EBUSY on `memory.limit_in_bytes` say why: usage above the new limit.
fn busy_hint(dir: &Path, e: CgroupError) -> CgroupError {
    match e {
        CgroupError::Write { value, source, .. } if source.raw_os_error() == Some(libc::EBUSY) => {
            let usage = read_value(dir, "memory.usage_in_bytes").unwrap_or_default();
            CgroupError::InvalidValue {
                what: "memory limit",
                value,
                reason: format!("the cgroup already uses {usage} bytes, more than the new limit"),
            }
        }
        e => e,
    }
}

impl CgroupManager for V1Manager {
    fn layout(&self) -> CgroupLayout {
        self.layout
    }

    fn create(&self) -> Result<(), CgroupError> {
        for h in self.unique_dirs() {
            match &h.mount {
                Some((mount, below)) => {
                    let is_cpuset = h.keys.iter().any(|k| k == "cpuset");
                    retry_vanished(|| {
                        mkdir_levels(mount, below, |new| {
                            if is_cpuset {
                                cpuset_init(new, mount)
                            } else {
                                Ok(())
                            }
                        })
                    })?;
                }
                None => {
                    std::fs::create_dir_all(&h.dir).map_err(|source| CgroupError::Dir {
                        op: "create",
                        path: h.dir.clone(),
                        source,
                    })?;
                }
            }
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        super::validate(r)?;
        if let Some(c) = r.cpu() {
            self.apply_cpu(c)?;
        }
        if let Some(m) = r.memory() {
            self.apply_memory(m)?;
        }
        if let Some(b) = r.block_io() {
            self.apply_blkio(b)?;
        }
        if let Some(d) = r.devices() {
            self.apply_devices(d)?;
        }
        self.apply_others(r)
    }

    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for h in self.unique_dirs() {
            write_value(&h.dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let dir = self.freezer_dir()?;
        write_value(dir, "freezer.state", "FROZEN")?;
        let (done, state) = poll_until(
            FREEZE_TIMEOUT,
            || {
                let s = read_value(dir, "freezer.state")?;
                Ok((s == "FROZEN", s))
            },
            || write_value(dir, "freezer.state", "FROZEN"),
        )?;
        if done {
            return Ok(());
        }
        let _ = write_value(dir, "freezer.state", "THAWED");
        Err(CgroupError::FreezeTimeout {
            path: dir.join("freezer.state"),
            waited: FREEZE_TIMEOUT,
            state,
        })
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        let dir = self.freezer_dir()?;
        write_value(dir, "freezer.state", "THAWED")
    }

    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        let dir = self.freezer_dir()?;
        match read_value(dir, "freezer.state")?.as_str() {
            "THAWED" => Ok(FreezerState::Thawed),
            "FREEZING" => Ok(FreezerState::Freezing),
            "FROZEN" => Ok(FreezerState::Frozen),
            other => Err(CgroupError::InvalidValue {
                what: "freezer.state",
                value: other.into(),
                reason: "expected THAWED, FREEZING or FROZEN".into(),
            }),
        }
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = ["pids", "freezer", "memory", "devices", "cpu"]
            .iter()
            .find_map(|c| self.dir(c))
            .or_else(|| self.hierarchies.first().map(|h| h.dir.as_path()))
            .ok_or_else(|| CgroupError::BadState("no hierarchy".into()))?;
        read_pids(dir)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut s = Stats::default();
        if let Some(dir) = self.dir("cpuacct") {
            let usage = read_value(dir, "cpuacct.usage")?;
            s.cpu_usage_ns = parse_u64(&dir.join("cpuacct.usage"), &usage)?;
            // user/system come in USER_HZ (100 on Linux) ticks.
            let stat = read_value(dir, "cpuacct.stat")?;
            for line in stat.lines() {
                let mut it = line.split_whitespace();
                let (Some(k), Some(v)) = (it.next(), it.next()) else {
                    continue;
                };
                let ns = v.parse::<u64>().unwrap_or(0) * 10_000_000;
                match k {
                    "user" => s.cpu_user_ns = ns,
                    "system" => s.cpu_system_ns = ns,
                    _ => {}
                }
            }
        }
        if let Some(dir) = self.dir("memory") {
            let usage = read_value(dir, "memory.usage_in_bytes")?;
            s.memory_usage = parse_u64(&dir.join("memory.usage_in_bytes"), &usage)?;
            s.memory_limit = read_limit(dir, "memory.limit_in_bytes")?;
            s.memory_max_usage = read_limit(dir, "memory.max_usage_in_bytes")?;
            let oom = read_value(dir, "memory.oom_control")?;
            s.oom_kills = oom
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
        if let Some(dir) = self.dir("pids") {
            let cur = read_value(dir, "pids.current")?;
            s.pids_current = parse_u64(&dir.join("pids.current"), &cur)?;
            s.pids_limit = read_limit(dir, "pids.max")?;
        }
        Ok(s)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for h in self.unique_dirs() {
            if let Err(e) = remove_cgroup_tree(&h.dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn paths(&self) -> BTreeMap<String, PathBuf> {
        let mut out = BTreeMap::new();
        for h in &self.hierarchies {
            for k in &h.keys {
                out.insert(k.clone(), h.dir.clone());
            }
        }
        out
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    use super::*;

    fn rule(
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: Option<&str>,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(true);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        if let Some(a) = access {
            b = b.access(a.to_string());
        }
        b.build().unwrap()
    }

    #[test]
    fn device_rule_lines() {
        let line = |r| device_rule_line(&r).unwrap();
        assert_eq!(
            line(rule(None, None, None, None)).as_deref(),
            Some("a *:* rwm")
        );
        assert_eq!(
            line(rule(Some(LinuxDeviceType::C), Some(1), Some(3), Some("rw"))).as_deref(),
            Some("c 1:3 rw")
        );
        assert_eq!(
            line(rule(Some(LinuxDeviceType::B), Some(8), None, Some("m"))).as_deref(),
            Some("b 8:* m")
        );
        assert_eq!(
            line(rule(Some(LinuxDeviceType::U), Some(-1), Some(2), Some(""))).as_deref(),
            Some("c *:2 rwm")
        );
        assert_eq!(line(rule(Some(LinuxDeviceType::P), None, None, None)), None);
        assert!(device_rule_line(&rule(None, None, None, Some("rwx"))).is_err());
    }
}
