//! The OCI runtime spec of a container: its image config and options on top of Docker's
//! defaults (14 capabilities, the default seccomp profile, masked and read-only paths,
//! a 64 MB `/dev/shm`, `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::Container;
use crate::error::{Error, Result};

/// Docker's masked paths (today's, with `/proc/interrupts` and powercap).
pub(crate) const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub(crate) const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Signal names and numbers as `docker kill -s` and `--stop-signal` take them.
pub fn parse_signal(s: &str) -> Result<i32> {
    let bad = || Error::InvalidArgument(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(rt) = name.strip_prefix("RTMIN") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.strip_prefix('+')
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?
        };
        let n = libc::SIGRTMIN() + off;
        return if n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(bad()),
    };
    Ok(n)
}

/// `--ulimit name=soft[:hard]` as an OCI rlimit.
pub(crate) fn parse_ulimit(s: &str) -> Result<Value> {
    let bad = |why: &str| Error::InvalidArgument(format!("invalid ulimit argument {s:?}: {why}"));
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| bad("expected name=soft[:hard]"))?;
    let known = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if !known.contains(&name) {
        return Err(bad("unknown ulimit type"));
    }
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let num = |v: &str| -> Result<u64> {
        if v == "-1" || v == "unlimited" {
            Ok(u64::MAX)
        } else {
            v.parse().map_err(|_| bad("invalid number"))
        }
    };
    let (soft, hard) = (num(soft)?, num(hard)?);
    if soft > hard {
        return Err(bad("soft limit must not exceed the hard limit"));
    }
    Ok(json!({"type": format!("RLIMIT_{}", name.to_ascii_uppercase()), "soft": soft, "hard": hard}))
}

/// Reads a file of the container's root filesystem, resolved inside it (a symlink in the
/// image cannot make the engine read a host file).
pub(crate) fn read_in_root(root: &Path, path: &str) -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let fd = rustix::fs::openat2(
        &dir,
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let mut f = std::fs::File::from(fd);
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut s = String::new();
    f.by_ref().take(4 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}

/// The process's user: `-u name|uid[:group|gid]` resolved through the image's
/// `/etc/passwd` and `/etc/group`, with the supplementary groups of the user.
pub fn resolve_user(root: &Path, user: &str) -> Result<(u32, u32, Vec<u32>, String)> {
    let passwd = read_in_root(root, "/etc/passwd").unwrap_or_default();
    let group = read_in_root(root, "/etc/group").unwrap_or_default();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && (f[0] == u || f[2] == u)).then(|| {
            (
                f[0].to_string(),
                f[2].parse::<u32>().unwrap_or(0),
                f[3].parse::<u32>().unwrap_or(0),
                f[5].to_string(),
            )
        })
    });
    let (uname, uid, mut gid, home) = match entry {
        Some(e) => e,
        None => match u.parse::<u32>() {
            Ok(n) => (String::new(), n, 0, "/".to_string()),
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                )));
            }
        },
    };
    if let Some(g) = g {
        gid = match group.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && (f[0] == g || f[2] == g)).then(|| f[2].parse::<u32>().unwrap_or(0))
        }) {
            Some(n) => n,
            None => g.parse().map_err(|_| {
                Error::InvalidArgument(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })?,
        };
    }
    let mut extra = Vec::new();
    if !uname.is_empty() {
        for l in group.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4
                && f[3].split(',').any(|m| m == uname)
                && let Ok(n) = f[2].parse::<u32>()
                && n != gid
            {
                extra.push(n);
            }
        }
    }
    Ok((uid, gid, extra, home))
}

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// Every capability this process may hand on (`--privileged`, `--cap-add ALL`, as Docker
/// gives what the daemon has): those of its bounding set, up to the kernel's last one.
pub(crate) fn kernel_capabilities() -> Vec<String> {
    let last = longshore_container::caps::last_cap();
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("CapBnd:")
                    .map(|v| u64::from_str_radix(v.trim(), 16))
            })
        })
        .and_then(|r| r.ok())
        .unwrap_or(u64::MAX);
    longshore_container::caps::all_capabilities()
        .iter()
        .map(|cap| longshore_container::caps::capability_number(*cap))
        .filter(|n| *n <= last && bounding & (1u64 << n) != 0)
        .map(|n| longshore_container::caps::cap_name(n).to_string())
        .collect()
}

/// The names of Docker's 14 default capabilities (`CAP_CHOWN`, ...).
pub(crate) fn default_capabilities() -> Vec<String> {
    longshore_container::caps::docker_default_capabilities()
        .iter()
        .map(|cap| {
            longshore_container::caps::cap_name(longshore_container::caps::capability_number(*cap))
                .to_string()
        })
        .collect()
}

/// The capability set after `--cap-add`/`--cap-drop` (`ALL` in either) and `--privileged`.
pub(crate) fn capabilities(c: &Container) -> Vec<String> {
    let hc = &c.record.host_config;
    let all = kernel_capabilities();
    if hc.privileged {
        return all;
    }
    let mut caps = default_capabilities();
    if hc.cap_drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        caps.clear();
    } else {
        let drop: Vec<String> = hc.cap_drop.iter().map(|d| cap_name(d)).collect();
        caps.retain(|c| !drop.contains(c));
    }
    if hc.cap_add.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        return all;
    }
    for a in &hc.cap_add {
        let a = cap_name(a);
        if !caps.contains(&a) {
            caps.push(a);
        }
    }
    caps.sort();
    caps
}

/// Where `--init`'s process is in the container (Docker's docker-init path).
pub(crate) const INIT_PATH: &str = "/sbin/docker-init";

/// The `--init` program, built static by the build script.
const INIT_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/longshore-init"));

/// Writes the `--init` program under the engine's root once (content-addressed, so an
/// upgraded engine writes its own beside an old one a running container still holds).
pub(crate) fn init_binary(root: &Path) -> Result<PathBuf> {
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(INIT_BINARY)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = root.join("init");
    let path = dir.join(format!("longshore-init-{}", &hex[..16]));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == INIT_BINARY.len() as u64) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("create {}", dir.display())))?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)
            .map_err(Error::io(format!("create {}", tmp.display())))?;
        std::io::Write::write_all(&mut f, INIT_BINARY)
            .and_then(|()| f.sync_all())
            .map_err(Error::io(format!("write {}", tmp.display())))?;
    }
    std::fs::rename(&tmp, &path).map_err(Error::io(format!("rename to {}", path.display())))?;
    Ok(path)
}

/// Where named volumes live.
pub(crate) fn volume_dir(root: &Path, name: &str) -> PathBuf {
    root.join("volumes").join(name).join("_data")
}

/// Everything [`build`] needs besides the container.
pub(crate) struct SpecInputs<'a> {
    pub rootfs: &'a Path,
    /// The named network namespace to join (bridge), `None` for a new one (none) or the
    /// host's (`host`).
    pub netns: Option<&'a Path>,
    /// Mounts from `--volumes-from` and volumes (source, destination, read-only).
    pub volume_mounts: &'a [(PathBuf, String, bool)],
    /// The host's `longshore-init` with `--init`: bound read-only at /sbin/docker-init
    /// (where Docker puts its docker-init) and run as pid 1 in front of the command.
    pub init: Option<&'a Path>,
}

/// The OCI spec of `c`.
pub(crate) fn build(c: &Container, inp: &SpecInputs<'_>) -> Result<Value> {
    let rc = &c.record;
    let hc = &rc.host_config;
    let cfg = &rc.config;
    let (uid, gid, mut extra_gids, home) = resolve_user(inp.rootfs, &cfg.user)?;
    // --group-add: names from the image's /etc/group, or numbers
    if !hc.group_add.is_empty() {
        let group = read_in_root(inp.rootfs, "/etc/group").unwrap_or_default();
        for g in &hc.group_add {
            let n = group
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g).then(|| f[2].parse::<u32>().ok())?
                })
                .or_else(|| g.parse().ok())
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "Unable to find group {g}: no matching entries in group file"
                    ))
                })?;
            if n != gid && !extra_gids.contains(&n) {
                extra_gids.push(n);
            }
        }
    }
    let mut env = cfg.env.clone();
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(0, format!("HOSTNAME={}", cfg.hostname));
    }
    if cfg.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            if home.is_empty() { "/" } else { &home }
        ));
    }
    let args: Vec<String> = inp
        .init
        .map(|_| [INIT_PATH.to_string(), "--".to_string()])
        .into_iter()
        .flatten()
        .chain(std::iter::once(rc.path.clone()))
        .chain(rc.args.iter().cloned())
        .collect();
    let caps = capabilities(c);
    let no_new_privs = hc.security_opt.iter().any(|s| {
        s == "no-new-privileges" || s == "no-new-privileges:true" || s == "no-new-privileges=true"
    });
    let mut rlimits = Vec::new();
    for u in &hc.ulimits {
        rlimits.push(parse_ulimit(u)?);
    }
    let process = json!({
        "terminal": cfg.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
        "args": args,
        "env": env,
        "cwd": if cfg.working_dir.is_empty() { "/" } else { cfg.working_dir.as_str() },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": no_new_privs,
        "rlimits": rlimits,
        "oomScoreAdj": 0,
    });

    let dir = &c.dir;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={}", if hc.shm_size > 0 { hc.shm_size } else { 67_108_864 })]}),
    ];
    for (f, dest) in [
        ("resolv.conf", "/etc/resolv.conf"),
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
    ] {
        let src = dir.join(f);
        if src.exists() {
            mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
        }
    }
    for (path, opts) in &hc.tmpfs {
        let mut o = vec![
            "nosuid".to_string(),
            "nodev".to_string(),
            "noexec".to_string(),
        ];
        o.extend(opts.split(',').filter(|s| !s.is_empty()).map(String::from));
        mounts.push(json!({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": o}));
    }
    if let Some(init) = inp.init {
        mounts.push(json!({"destination": INIT_PATH, "type": "bind", "source": init, "options": ["bind", "rprivate", "ro", "nosuid", "nodev"]}));
    }
    for (src, dest, ro) in inp.volume_mounts {
        let mut o = vec!["rbind", "rprivate"];
        if *ro {
            o.push("ro");
        }
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": o}));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match (hc.network_mode.as_str(), inp.netns) {
        ("host", _) => {}
        (_, Some(p)) => namespaces.push(json!({"type": "network", "path": p})),
        (_, None) => namespaces.push(json!({"type": "network"})),
    }
    if hc.pid_mode == "host" {
        namespaces.retain(|n| n["type"] != "pid");
    }
    if hc.ipc_mode == "host" {
        namespaces.retain(|n| n["type"] != "ipc");
    }
    if hc.uts_mode == "host" || hc.network_mode == "host" {
        namespaces.retain(|n| n["type"] != "uts");
    }

    let mut resources = json!({
        "devices": default_device_rules(hc.privileged),
    });
    if let Value::Object(limits) = resource_limits(hc) {
        for (k, v) in limits {
            resources[k] = v;
        }
    }
    let mut devices = Vec::new();
    for d in &hc.devices {
        let (dev, rule) = device(d)?;
        devices.push(dev);
        resources["devices"]
            .as_array_mut()
            .expect("array")
            .push(rule);
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        // --cgroup-parent: an absolute path from each hierarchy's root, a relative one
        // under longshore/ (libcontainer's rules), as Docker's cgroupfs driver joins them
        "cgroupsPath": if hc.cgroup_parent.is_empty() {
            format!("longshore/{}", rc.id)
        } else {
            format!("{}/{}", hc.cgroup_parent.trim_end_matches('/'), rc.id)
        },
        "devices": devices,
        "sysctl": hc.sysctls,
    });
    if !hc.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        let unconfined = hc
            .security_opt
            .iter()
            .any(|s| s == "seccomp=unconfined" || s == "seccomp:unconfined");
        let profile = hc.security_opt.iter().find_map(|s| {
            s.strip_prefix("seccomp=")
                .or_else(|| s.strip_prefix("seccomp:"))
                .filter(|p| *p != "unconfined")
        });
        if let Some(p) = profile {
            let data = std::fs::read(p).map_err(Error::io(format!("read seccomp profile {p}")))?;
            let v: Value = serde_json::from_slice(&data)
                .map_err(|e| Error::InvalidArgument(format!("seccomp profile {p}: {e}")))?;
            linux["seccomp"] = v;
        } else if !unconfined {
            linux["seccomp"] = default_seccomp(&caps);
        }
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inp.rootfs, "readonly": hc.readonly_rootfs},
        "hostname": if hc.network_mode == "host" || hc.uts_mode == "host" { Value::Null } else { cfg.hostname.clone().into() },
        "mounts": mounts,
        "linux": linux,
        "annotations": {"org.opencontainers.image.ref.name": cfg.image},
    }))
}

/// The memory, CPU and pids limits of a host config as OCI `linux.resources` (what `create`
/// writes into the spec and `update` into a running container's cgroups).
pub(crate) fn resource_limits(hc: &super::HostConfig) -> Value {
    let mut resources = json!({});
    let mut memory = serde_json::Map::new();
    if hc.memory > 0 {
        let swap = match hc.memory_swap {
            0 => hc.memory * 2,
            -1 => -1,
            s => s,
        };
        memory.insert("limit".into(), hc.memory.into());
        memory.insert("swap".into(), swap.into());
    }
    if hc.memory_reservation > 0 {
        memory.insert("reservation".into(), hc.memory_reservation.into());
    }
    if hc.oom_kill_disable {
        memory.insert("disableOOMKiller".into(), true.into());
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    if hc.blkio_weight > 0 {
        resources["blockIO"] = json!({"weight": hc.blkio_weight});
    }
    let mut cpu = serde_json::Map::new();
    if hc.cpu_shares > 0 {
        cpu.insert("shares".into(), hc.cpu_shares.into());
    }
    if hc.nano_cpus > 0 {
        cpu.insert("period".into(), 100_000.into());
        cpu.insert("quota".into(), (hc.nano_cpus / 10_000).into());
    }
    if hc.cpu_period > 0 {
        cpu.insert("period".into(), hc.cpu_period.into());
    }
    if hc.cpu_quota != 0 {
        cpu.insert("quota".into(), hc.cpu_quota.into());
    }
    if !hc.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), hc.cpuset_cpus.clone().into());
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if hc.pids_limit != 0 {
        resources["pids"] = json!({"limit": hc.pids_limit});
    }
    resources
}

/// Docker's default device cgroup rules: deny all, then the usual character devices.
fn default_device_rules(privileged: bool) -> Value {
    if privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    let allow = |t: &str, maj: i64, min: Option<i64>, a: &str| {
        let mut r = json!({"allow": true, "type": t, "major": maj, "access": a});
        if let Some(m) = min {
            r["minor"] = m.into();
        }
        r
    };
    json!([
        {"allow": false, "access": "rwm"},
        allow("c", 1, Some(3), "rwm"),  // null
        allow("c", 1, Some(5), "rwm"),  // zero
        allow("c", 1, Some(7), "rwm"),  // full
        allow("c", 1, Some(8), "rwm"),  // random
        allow("c", 1, Some(9), "rwm"),  // urandom
        allow("c", 5, Some(0), "rwm"),  // tty
        allow("c", 5, Some(1), "rwm"),  // console
        allow("c", 5, Some(2), "rwm"),  // ptmx
        allow("c", 136, None, "rwm"),   // pts
        allow("c", 10, Some(200), "rwm"), // tun
    ])
}

/// `--device /dev/x[:/dev/y[:rwm]]`: the device node and its cgroup rule.
fn device(spec: &str) -> Result<(Value, Value)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] if c.chars().all(|x| "rwm".contains(x)) => (*h, *h, *c),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "invalid device specification: {spec}"
            )));
        }
    };
    let md = std::fs::metadata(host).map_err(|e| {
        Error::InvalidArgument(format!(
            "error gathering device information while adding device {host:?}: {e}"
        ))
    })?;
    let t = if md.file_type().is_char_device() {
        "c"
    } else if md.file_type().is_block_device() {
        "b"
    } else {
        return Err(Error::InvalidArgument(format!("{host} is not a device")));
    };
    let rdev = md.rdev();
    let (maj, min) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
    Ok((
        json!({"path": ctr, "type": t, "major": maj, "minor": min, "fileMode": md.mode() & 0o777, "uid": 0, "gid": 0}),
        json!({"allow": true, "type": t, "major": maj, "minor": min, "access": perms}),
    ))
}

/// Docker's default seccomp profile for a container holding `caps` (their names), as the
/// spec's JSON. Built once per capability set in a process (the daemon starts many
/// containers with Docker's 14): the profile's ~350 rules took ~0.2 ms to build and
/// convert at every start.
fn default_seccomp(caps: &[String]) -> Value {
    type Built = Vec<(Vec<String>, Value)>;
    static BUILT: std::sync::Mutex<Built> = std::sync::Mutex::new(Vec::new());
    let mut key = caps.to_vec();
    key.sort();
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, v)) = built.iter().find(|(k, _)| *k == key) {
        return v.clone();
    }
    let set: Vec<_> = caps
        .iter()
        .filter_map(|c| longshore_container::caps::parse_capability(c).ok())
        .collect();
    let v = serde_json::to_value(longshore_container::seccomp::docker_default_profile(&set))
        .unwrap_or_default();
    if built.len() >= 8 {
        built.remove(0);
    }
    built.push((key, v.clone()));
    v
}
