//! `create`: a container's records and read-write layer from an image and the options of
//! `docker create` / `docker run`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use longshore_network::ports::{ExposedPort, PortSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Container, ContainerConfig, ContainerRecord, ContainerState, HostConfig, PortBinding,
    RestartPolicy, names, now_rfc3339, random_id,
};
use crate::engine::Engine;
use crate::error::{Error, Result, graph};

/// Docker's smallest memory limit.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// A `create` request: the options of `docker create` / `docker run` that describe the
/// container (the ones that only concern the client, such as `-d` or `--sig-proxy`, stay
/// with the client).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CreateRequest {
    /// The image (reference or ID).
    pub image: String,
    /// `[COMMAND] [ARG...]` (empty: the image's `Cmd`).
    pub cmd: Vec<String>,
    /// `--entrypoint` (`Some("")` clears the image's).
    pub entrypoint: Option<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `-e` (`NAME=value`, or `NAME` to take the value from `env_lookup`).
    pub env: Vec<String>,
    /// `-h`.
    pub hostname: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-l`.
    pub labels: BTreeMap<String, String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `-a` (stdin, stdout, stderr) for a foreground run.
    pub attach: Vec<String>,
    /// `--expose`.
    pub expose: Vec<String>,
    /// `-p`.
    pub publish: Vec<String>,
    /// `-P`.
    pub publish_all: bool,
    /// `--network` (default `bridge`).
    pub network: Option<String>,
    /// `--restart`.
    pub restart: Option<String>,
    /// `--rm`.
    pub auto_remove: bool,
    /// `-v`.
    pub volumes: Vec<String>,
    /// `--volumes-from`.
    pub volumes_from: Vec<String>,
    /// `--tmpfs path[:opts]`.
    pub tmpfs: Vec<String>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--privileged`.
    pub privileged: bool,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--add-host host:ip`.
    pub add_host: Vec<String>,
    /// `--link name[:alias]`.
    pub links: Vec<String>,
    /// `--mac-address`.
    pub mac_address: Option<String>,
    /// `-m` (`512m`, bytes).
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
    /// `--ulimit`.
    pub ulimits: Vec<String>,
    /// `--device`.
    pub devices: Vec<String>,
    /// `--ipc`.
    pub ipc: Option<String>,
    /// `--pid`.
    pub pid: Option<String>,
    /// `--uts`.
    pub uts: Option<String>,
    /// `--init`.
    pub init: bool,
    /// `--stop-signal`.
    pub stop_signal: Option<String>,
    /// `--stop-timeout`.
    pub stop_timeout: Option<i64>,
    /// `--log-driver`.
    pub log_driver: Option<String>,
    /// `--log-opt key=value`.
    pub log_opts: Vec<String>,
    /// `--lxc-conf` (refused: there is no LXC driver).
    pub lxc_conf: Vec<String>,
    /// `--health-cmd`, `--health-interval`, `--health-timeout`, `--health-start-period`,
    /// `--health-start-interval`, `--health-retries` (durations in ns), over the image's
    /// HEALTHCHECK.
    pub health: crate::health::HealthConfig,
    /// `--no-healthcheck`.
    pub no_healthcheck: bool,
    /// `--cpu-period` (µs).
    pub cpu_period: Option<i64>,
    /// `--cpu-quota` (µs per period).
    pub cpu_quota: Option<i64>,
    /// `--memory-reservation` (a soft limit: `256m`, bytes).
    pub memory_reservation: Option<String>,
    /// `--blkio-weight` (10..=1000).
    pub blkio_weight: Option<u16>,
    /// `--oom-kill-disable`.
    pub oom_kill_disable: bool,
    /// `--shm-size` (`64m`, bytes).
    pub shm_size: Option<String>,
    /// `--sysctl key=value` (namespaced ones only, as Docker).
    pub sysctls: Vec<String>,
    /// `--group-add` (group names of the image's /etc/group, or numbers).
    pub group_add: Vec<String>,
    /// `--cgroup-parent`.
    pub cgroup_parent: Option<String>,
    /// `--mount` (bind, volume, tmpfs).
    pub mounts: Vec<MountSpec>,
    /// `--network-alias` (user-defined networks).
    pub network_aliases: Vec<String>,
    /// `--ip` (user-defined networks).
    pub ip: Option<String>,
    /// `--platform`: the image must be of this platform (`os/arch[/variant]`).
    pub platform: Option<String>,
}

/// One `--mount` (Docker's `HostConfig.Mounts` entry, the same JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountSpec {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The host path (bind) or volume name (volume; empty: anonymous).
    pub source: String,
    /// Where in the container.
    pub target: String,
    /// `readonly`.
    pub read_only: bool,
    /// `volume-nocopy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<MountVolumeOptions>,
    /// `tmpfs-size`, `tmpfs-mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<MountTmpfsOptions>,
}

/// `VolumeOptions` of a [`MountSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountVolumeOptions {
    /// `volume-nocopy`: the image's content is not copied into a new volume.
    pub no_copy: bool,
}

/// `TmpfsOptions` of a [`MountSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountTmpfsOptions {
    /// `tmpfs-size` in bytes (0: the kernel's default).
    pub size_bytes: i64,
    /// `tmpfs-mode` (0: 1777).
    pub mode: u32,
}

impl MountSpec {
    /// Docker's `--mount type=...,source=...,target=...[,readonly][,volume-nocopy]
    /// [,tmpfs-size=...][,tmpfs-mode=...]` (`src`, `dst`/`destination` and `ro` too).
    pub fn parse(s: &str) -> Result<MountSpec> {
        let bad = |why: String| {
            Error::InvalidArgument(format!(
                "invalid argument {s:?} for \"--mount\" flag: {why}"
            ))
        };
        let mut m = MountSpec::default();
        for field in s.split(',').filter(|f| !f.is_empty()) {
            let (k, v) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (field.trim().to_ascii_lowercase(), None),
            };
            let flag = |v: Option<&str>| -> Result<bool> {
                match v.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("true") | Some("1") => Ok(true),
                    Some("false") | Some("0") => Ok(false),
                    Some(x) => Err(bad(format!("invalid value for {k}: {x}"))),
                }
            };
            let val = || {
                v.map(String::from)
                    .ok_or_else(|| bad(format!("invalid field '{field}' must be a key=value pair")))
            };
            match k.as_str() {
                "type" => m.kind = val()?,
                "source" | "src" => m.source = val()?,
                "target" | "dst" | "destination" => m.target = val()?,
                "readonly" | "ro" => m.read_only = flag(v)?,
                "volume-nocopy" => {
                    m.volume_options
                        .get_or_insert_with(Default::default)
                        .no_copy = flag(v)?
                }
                "tmpfs-size" => {
                    m.tmpfs_options
                        .get_or_insert_with(Default::default)
                        .size_bytes = parse_memory(&val()?)?
                }
                "tmpfs-mode" => {
                    let v = val()?;
                    m.tmpfs_options.get_or_insert_with(Default::default).mode =
                        u32::from_str_radix(&v, 8)
                            .map_err(|_| bad(format!("invalid value for tmpfs-mode: {v}")))?
                }
                "consistency" | "bind-propagation" => {}
                _ => return Err(bad(format!("unexpected key '{k}' in '{field}'"))),
            }
        }
        if m.kind.is_empty() {
            m.kind = "volume".into();
        }
        Ok(m)
    }

    /// The mount as `-v` (`Ok(Left)`) or `--tmpfs` (`Ok(Right)`) say it.
    fn as_flag(&self) -> Result<(Option<String>, Option<String>)> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "invalid mount config for type \"{}\": {why}",
                self.kind
            ))
        };
        if !self.target.starts_with('/') {
            return Err(bad(if self.target.is_empty() {
                "field Target must not be empty"
            } else {
                "the target must be an absolute path"
            }));
        }
        let ro = if self.read_only { ":ro" } else { "" };
        match self.kind.as_str() {
            "bind" => {
                if !self.source.starts_with('/') {
                    return Err(bad("field Source must be an absolute host path"));
                }
                if !Path::new(&self.source).exists() {
                    return Err(bad(&format!(
                        "bind source path does not exist: {}",
                        self.source
                    )));
                }
                if self.volume_options.is_some() || self.tmpfs_options.is_some() {
                    return Err(bad("volume or tmpfs options on a bind mount"));
                }
                Ok((Some(format!("{}:{}{ro}", self.source, self.target)), None))
            }
            "volume" => {
                if self.tmpfs_options.is_some() {
                    return Err(bad("tmpfs options on a volume mount"));
                }
                if self.source.is_empty() {
                    return Ok((Some(self.target.clone()), None));
                }
                let nocopy = self.volume_options.as_ref().is_some_and(|o| o.no_copy);
                let opts = match (self.read_only, nocopy) {
                    (false, false) => String::new(),
                    (true, false) => ":ro".into(),
                    (false, true) => ":nocopy".into(),
                    (true, true) => ":ro,nocopy".into(),
                };
                Ok((Some(format!("{}:{}{opts}", self.source, self.target)), None))
            }
            "tmpfs" => {
                if !self.source.is_empty() {
                    return Err(bad("field Source must not be specified"));
                }
                let mut o = Vec::new();
                if let Some(t) = &self.tmpfs_options {
                    if t.size_bytes > 0 {
                        o.push(format!("size={}", t.size_bytes));
                    }
                    if t.mode != 0 {
                        o.push(format!("mode={:o}", t.mode));
                    }
                }
                if self.read_only {
                    o.push("ro".into());
                }
                Ok((None, Some(format!("{}:{}", self.target, o.join(",")))))
            }
            other => Err(Error::InvalidArgument(format!(
                "mount type {other:?} is not supported (bind, volume, tmpfs)"
            ))),
        }
    }
}

/// Docker's namespaced sysctls (the ones a container may set): IPC ones unless
/// `--ipc host`, `net.*` unless `--network host`, `kernel.domainname`/`hostname` unless
/// the host's UTS namespace.
fn check_sysctl(key: &str, ipc_host: bool, net_host: bool, uts_host: bool) -> Result<()> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let refuse = |why: &str| Err(Error::InvalidArgument(format!("sysctl {key:?} {why}")));
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return if ipc_host {
            refuse("is not allowed with --ipc host (it would change the host's)")
        } else {
            Ok(())
        };
    }
    if key.starts_with("net.") {
        return if net_host {
            refuse("is not allowed in the host network namespace")
        } else {
            Ok(())
        };
    }
    if key == "kernel.domainname" || key == "kernel.hostname" {
        return if uts_host {
            refuse("is not allowed in the host's UTS namespace")
        } else {
            Ok(())
        };
    }
    refuse("is not in a separate kernel namespace (only namespaced sysctls may be set)")
}

/// True when this host's cgroups take a block I/O weight (CFQ's `blkio.weight`, BFQ's
/// `blkio.bfq.weight`, or cgroup v2's `io.weight`).
fn blkio_weight_supported() -> bool {
    let v1 = Path::new("/sys/fs/cgroup/blkio");
    v1.join("blkio.weight").exists()
        || v1.join("blkio.bfq.weight").exists()
        || (!v1.exists()
            && std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .is_ok_and(|c| c.split_whitespace().any(|x| x == "io")))
}

/// The resource options shared by `create` and `update`, checked as Docker's daemon does.
pub(crate) fn check_resources(
    nano_cpus: i64,
    cpu_period: i64,
    cpu_quota: i64,
    memory: i64,
    memory_reservation: i64,
    blkio_weight: u16,
) -> Result<()> {
    if nano_cpus > 0 && (cpu_period > 0 || cpu_quota > 0) {
        return Err(Error::InvalidArgument(
            "Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set".into(),
        ));
    }
    if cpu_period != 0 && !(1000..=1_000_000).contains(&cpu_period) {
        return Err(Error::InvalidArgument(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
                .into(),
        ));
    }
    if cpu_quota > 0 && cpu_quota < 1000 {
        return Err(Error::InvalidArgument(
            "CPU cfs quota can not be less than 1ms (i.e. 1000)".into(),
        ));
    }
    if memory > 0 && memory_reservation > 0 && memory < memory_reservation {
        return Err(Error::InvalidArgument(
            "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
        ));
    }
    if blkio_weight > 0 {
        if !(10..=1000).contains(&blkio_weight) {
            return Err(Error::InvalidArgument(
                "Range of blkio weight is from 10 to 1000".into(),
            ));
        }
        if !blkio_weight_supported() {
            return Err(Error::InvalidArgument(
                "--blkio-weight is not supported on this host: its cgroups have no block I/O weight (neither blkio.weight nor blkio.bfq.weight: select the bfq I/O scheduler)".into(),
            ));
        }
    }
    Ok(())
}

/// Parses Docker's memory sizes: `512`, `512b`, `64k`, `256m`, `1g` (binary units).
pub fn parse_memory(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        None => (t.as_str(), 1i64),
        Some((i, _)) => {
            let unit = t[i..].trim_end_matches('b');
            let mult = match unit {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => {
                    return Err(Error::InvalidArgument(format!("invalid size: '{s}'")));
                }
            };
            (&t[..i], mult)
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("invalid size: '{s}'")))?;
    if v < 0.0 {
        return Err(Error::InvalidArgument(format!("invalid size: '{s}'")));
    }
    Ok((v * mult as f64) as i64)
}

/// Expands `-p` ranges (`8000-8001:80-81/udp`) into single mappings.
pub(crate) fn expand_publish(spec: &str) -> Result<Vec<PortSpec>> {
    let bad = |why: &str| Error::InvalidArgument(format!("invalid port mapping {spec:?}: {why}"));
    let (main, proto) = match spec.rsplit_once('/') {
        Some((m, p)) => (m, Some(p)),
        None => (spec, None),
    };
    let parts: Vec<&str> = main.rsplitn(3, ':').collect();
    // parts: [container, host?, ip?]
    let range = |s: &str| -> Result<(u16, u16)> {
        let parse = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
        match s.split_once('-') {
            Some((a, b)) => match (parse(a), parse(b)) {
                (Some(a), Some(b)) if a <= b => Ok((a, b)),
                _ => Err(bad("invalid port range")),
            },
            None => parse(s).map(|p| (p, p)).ok_or_else(|| bad("invalid port")),
        }
    };
    let (c0, c1) = range(parts[0])?;
    let host = parts.get(1).copied().filter(|h| !h.is_empty());
    let ip = parts.get(2).copied();
    let hosts = match host {
        Some(h) => Some(range(h)?),
        None => None,
    };
    if let Some((h0, h1)) = hosts
        && h1 - h0 != c1 - c0
        && h0 != h1
    {
        return Err(bad("host and container port ranges differ in size"));
    }
    let mut out = Vec::new();
    for (i, c) in (c0..=c1).enumerate() {
        let mut s = String::new();
        if let Some(ip) = ip {
            s.push_str(ip);
            s.push(':');
        }
        match hosts {
            Some((h0, h1)) if h0 == h1 => s.push_str(&format!("{h0}:")),
            Some((h0, _)) => s.push_str(&format!("{}:", h0 + i as u16)),
            None if ip.is_some() => s.push(':'),
            None => {}
        }
        s.push_str(&c.to_string());
        if let Some(p) = proto {
            s.push('/');
            s.push_str(p);
        }
        out.push(
            s.parse::<PortSpec>().map_err(|e| {
                Error::InvalidArgument(format!("invalid port mapping {spec:?}: {e}"))
            })?,
        );
    }
    Ok(out)
}

/// Checks a `-v` argument: `/ctr`, `name:/ctr[:opts]` or `/host:/ctr[:opts]`.
pub(crate) fn check_volume(spec: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::InvalidArgument(format!("invalid volume specification: '{spec}': {why}"))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (dest, opts) = match parts.as_slice() {
        [d] => (*d, None),
        [_, d] => (*d, None),
        [_, d, o] => (*d, Some(*o)),
        _ => return Err(bad("too many colons")),
    };
    if !dest.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    if dest == "/" {
        return Err(bad("invalid mount config: destination can't be '/'"));
    }
    if parts.len() > 1 && parts[0].is_empty() {
        return Err(bad("empty source"));
    }
    if let Some(o) = opts {
        for o in o.split(',') {
            if !matches!(
                o,
                "ro" | "rw"
                    | "z"
                    | "Z"
                    | "nocopy"
                    | "rprivate"
                    | "private"
                    | "rshared"
                    | "shared"
                    | "rslave"
                    | "slave"
            ) {
                return Err(bad(&format!("invalid mode: {o}")));
            }
        }
    }
    Ok(())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

impl Engine {
    /// Creates a container (`docker create`): checks every option, reserves the name,
    /// creates the read-write layer on the image and writes the records. Nothing is left
    /// behind when it fails.
    pub fn create_container(&self, req: &CreateRequest) -> Result<Container> {
        // --mount: the same mounts as -v and --tmpfs say them
        let translated;
        let req = if req.mounts.is_empty() {
            req
        } else {
            let mut r = req.clone();
            for m in &req.mounts {
                match m.as_flag()? {
                    (Some(v), _) => r.volumes.push(v),
                    (_, Some(t)) => r.tmpfs.push(t),
                    (None, None) => {}
                }
            }
            translated = r;
            &translated
        };
        if !req.lxc_conf.is_empty() {
            return Err(Error::InvalidArgument(
                "--lxc-conf is not supported: longshore has no LXC exec driver (use --ulimit, \
                 --cap-add, --security-opt or --device for what it set)"
                    .into(),
            ));
        }
        let image_id = self
            .store()?
            .resolve(&req.image)
            .map_err(|_| Error::NoSuchImage(req.image.clone()))?;
        let config_bytes = self
            .store()?
            .config(&image_id.to_string())
            .map_err(graph(format!("read the config of image {}", req.image)))?;
        let image: Value = serde_json::from_slice(&config_bytes).unwrap_or_default();
        let ic = image.get("config").cloned().unwrap_or_default();
        if let Some(p) = req.platform.as_deref().filter(|p| !p.is_empty()) {
            let want: longshore_registry::Platform = p.parse().map_err(|_| {
                Error::InvalidArgument(format!(
                    "invalid platform {p:?}: expected os/arch[/variant]"
                ))
            })?;
            let os = image["os"].as_str().unwrap_or_default();
            let arch = image["architecture"].as_str().unwrap_or_default();
            let variant = image["variant"].as_str();
            if want.os != os
                || want.architecture != arch
                || (want.variant.is_some() && want.variant.as_deref() != variant)
            {
                return Err(Error::InvalidArgument(format!(
                    "image with reference {} was found but does not match the specified platform: wanted {want}, actual: {os}/{arch}{}",
                    req.image,
                    variant.map(|v| format!("/{v}")).unwrap_or_default()
                )));
            }
        }

        // the command: Entrypoint and Cmd as the seed's 7.1.8 and today's Docker combine them
        let entrypoint: Vec<String> = match &req.entrypoint {
            Some(e) if e.is_empty() => vec![],
            Some(e) => vec![e.clone()],
            None => strings(&ic["Entrypoint"]),
        };
        let cmd: Vec<String> = if !req.cmd.is_empty() {
            req.cmd.clone()
        } else if req.entrypoint.is_some() {
            vec![]
        } else {
            strings(&ic["Cmd"])
        };
        let argv: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
        if argv.is_empty() {
            return Err(Error::InvalidArgument("no command specified".into()));
        }

        // environment: the image's, overridden by -e
        let mut env: Vec<String> = strings(&ic["Env"]);
        if env.is_empty() {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        for e in &req.env {
            let e = if e.contains('=') {
                e.clone()
            } else {
                match std::env::var(e) {
                    Ok(v) => format!("{e}={v}"),
                    Err(_) => continue,
                }
            };
            let key = e.split('=').next().unwrap_or_default().to_string();
            if key.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "invalid environment variable: {e}"
                )));
            }
            env.retain(|x| x.split('=').next() != Some(key.as_str()));
            env.push(e);
        }

        let mut exposed: BTreeMap<String, Value> = BTreeMap::new();
        if let Some(o) = ic["ExposedPorts"].as_object() {
            for k in o.keys() {
                exposed.insert(k.clone(), serde_json::json!({}));
            }
        }
        for e in &req.expose {
            let p: ExposedPort = e
                .parse()
                .map_err(|err| Error::InvalidArgument(format!("invalid --expose {e:?}: {err}")))?;
            exposed.insert(format!("{}/{}", p.port, p.proto), serde_json::json!({}));
        }
        let mut port_bindings: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
        for p in &req.publish {
            for s in expand_publish(p)? {
                let key = format!("{}/{}", s.container.port, s.container.proto);
                exposed.insert(key.clone(), serde_json::json!({}));
                port_bindings.entry(key).or_default().push(PortBinding {
                    host_ip: s.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                    host_port: s.host_port.map(|p| p.to_string()).unwrap_or_default(),
                });
            }
        }
        let mut volumes: BTreeMap<String, Value> = BTreeMap::new();
        if let Some(o) = ic["Volumes"].as_object() {
            for k in o.keys() {
                volumes.insert(k.clone(), serde_json::json!({}));
            }
        }
        for v in &req.volumes {
            check_volume(v)?;
            if !v.contains(':') {
                volumes.insert(v.clone(), serde_json::json!({}));
            }
        }
        let mut labels: BTreeMap<String, String> = ic["Labels"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        labels.extend(req.labels.clone());

        let restart = RestartPolicy::parse(req.restart.as_deref().unwrap_or(""))?;
        if req.auto_remove && !restart.is_none() {
            return Err(Error::Conflict(
                "Conflicting options: --restart and --rm".into(),
            ));
        }
        let memory = req
            .memory
            .as_deref()
            .map(parse_memory)
            .transpose()?
            .unwrap_or(0);
        if memory > 0 && memory < MIN_MEMORY {
            return Err(Error::InvalidArgument(
                "Minimum memory limit allowed is 6MB".into(),
            ));
        }
        let memory_swap = match req.memory_swap.as_deref() {
            Some("-1") => -1,
            Some(s) => parse_memory(s)?,
            None => 0,
        };
        if memory_swap > 0 && memory_swap < memory {
            return Err(Error::InvalidArgument(
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            ));
        }
        if memory_swap != 0 && memory == 0 {
            return Err(Error::InvalidArgument(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
                    .into(),
            ));
        }
        let nano_cpus = match req.cpus {
            Some(c) if !(0.0..=1024.0).contains(&c) => {
                return Err(Error::InvalidArgument(format!("invalid --cpus {c}")));
            }
            Some(c) => (c * 1e9) as i64,
            None => 0,
        };
        let network = req.network.clone().unwrap_or_else(|| "bridge".into());
        let network = if network == "default" {
            "bridge".into()
        } else {
            network
        };
        let cpu_period = req.cpu_period.unwrap_or(0);
        let cpu_quota = req.cpu_quota.unwrap_or(0);
        let memory_reservation = req
            .memory_reservation
            .as_deref()
            .map(parse_memory)
            .transpose()?
            .unwrap_or(0);
        let blkio_weight = req.blkio_weight.unwrap_or(0);
        check_resources(
            nano_cpus,
            cpu_period,
            cpu_quota,
            memory,
            memory_reservation,
            blkio_weight,
        )?;
        // 0: Docker's default (64 MiB)
        let shm_size = req
            .shm_size
            .as_deref()
            .map(parse_memory)
            .transpose()?
            .unwrap_or(0);
        let mut sysctls = BTreeMap::new();
        for s in &req.sysctls {
            let (k, v) = s.split_once('=').ok_or_else(|| {
                Error::InvalidArgument(format!("invalid --sysctl {s:?}: expected key=value"))
            })?;
            check_sysctl(
                k,
                req.ipc.as_deref() == Some("host"),
                network == "host",
                req.uts.as_deref() == Some("host") || network == "host",
            )?;
            sysctls.insert(k.to_string(), v.to_string());
        }
        if let Some(p) = &req.cgroup_parent
            && (p.split('/').any(|c| c == "..") || p.contains(':'))
        {
            return Err(Error::InvalidArgument(format!(
                "invalid --cgroup-parent {p:?}: a cgroupfs path without '..' (there is no systemd driver for slices)"
            )));
        }
        let user_network = !matches!(network.as_str(), "bridge" | "host" | "none")
            && !network.starts_with("container:");
        if !req.network_aliases.is_empty() && !user_network {
            return Err(Error::InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            ));
        }
        if let Some(ip) = &req.ip {
            if !user_network {
                return Err(Error::InvalidArgument(
                    "user specified IP address is supported on user defined networks only".into(),
                ));
            }
            ip.parse::<std::net::Ipv4Addr>()
                .map_err(|_| Error::InvalidArgument(format!("invalid IPv4 address: {ip}")))?;
        }
        if network == "host" && (!req.publish.is_empty() || req.publish_all) {
            // Docker ignores published ports with --network host and says so
            tracing::warn!("published ports are discarded when using host network mode");
        }
        if let Some(m) = &req.mac_address {
            longshore_network::parse_mac(m)
                .map_err(|e| Error::InvalidArgument(format!("invalid --mac-address {m:?}: {e}")))?;
        }
        for c in req.cap_add.iter().chain(req.cap_drop.iter()) {
            if !c.eq_ignore_ascii_case("ALL") {
                let n = c.to_ascii_uppercase();
                let n = if n.starts_with("CAP_") {
                    n
                } else {
                    format!("CAP_{n}")
                };
                longshore_container::caps::parse_capability(&n)
                    .map_err(|_| Error::InvalidArgument(format!("invalid capability: {c}")))?;
            }
        }
        if let Some(s) = &req.stop_signal {
            spec::parse_signal(s)?;
        }
        if req.no_healthcheck && !req.health.test.is_empty() {
            return Err(Error::InvalidArgument(
                "--no-healthcheck conflicts with --health-* options".into(),
            ));
        }
        for (what, v) in [
            ("--health-interval", req.health.interval),
            ("--health-timeout", req.health.timeout),
            ("--health-start-period", req.health.start_period),
            ("--health-start-interval", req.health.start_interval),
        ] {
            if v != 0 && v < 1_000_000 {
                return Err(Error::InvalidArgument(format!(
                    "Interval {what} cannot be less than 1ms"
                )));
            }
        }
        if req.health.retries < 0 {
            return Err(Error::InvalidArgument(
                "--health-retries cannot be negative".into(),
            ));
        }
        let mut tmpfs = BTreeMap::new();
        for t in &req.tmpfs {
            let (p, o) = t.split_once(':').unwrap_or((t, ""));
            if !p.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "invalid --tmpfs {t:?}: the path must be absolute"
                )));
            }
            tmpfs.insert(p.to_string(), o.to_string());
        }
        for u in &req.ulimits {
            spec::parse_ulimit(u)?;
        }
        let log_driver = req.log_driver.clone().unwrap_or_else(|| "json-file".into());
        if !matches!(log_driver.as_str(), "json-file" | "none") {
            return Err(Error::InvalidArgument(format!(
                "logging driver {log_driver:?} is not supported (json-file, none)"
            )));
        }
        let mut log_opts = BTreeMap::new();
        for o in &req.log_opts {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| Error::InvalidArgument(format!("invalid --log-opt {o:?}")))?;
            match k {
                "max-size" => {
                    parse_memory(v)?;
                }
                "max-file" => {
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| Error::InvalidArgument(format!("invalid max-file {v:?}")))?;
                }
                // the attributes `logs --details` shows (label keys, variable names)
                "labels" | "env" => {}
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown log opt '{k}' for json-file log driver"
                    )));
                }
            }
            log_opts.insert(k.to_string(), v.to_string());
        }
        for n in [&req.ipc, &req.pid, &req.uts].into_iter().flatten() {
            if !(n == "host" || n == "private" || n == "shareable" || n.starts_with("container:")) {
                return Err(Error::InvalidArgument(format!(
                    "invalid namespace mode {n:?}"
                )));
            }
        }

        let id = random_id()?;
        let containers = self.containers_dir();
        if let Some(n) = &req.name {
            names::validate(n.strip_prefix('/').unwrap_or(n))?;
        }
        // the directory first, locked until the state is written: a process killed from
        // here on leaves a directory without state.json that nobody holds, which the next
        // listing sweeps (with the name and the layer)
        // (made and locked under a name listings skip, then renamed: a listing between
        // the mkdir and the lock would find it unlocked and sweep it)
        let dir = containers.join(&id);
        // (a listing sweeps a `.new-` directory it can lock: one made by a killed process;
        // should it take one between our mkdir and our lock, we make it again)
        let tmp = containers.join(format!(".new-{id}"));
        let mut tries = 0;
        let _lock = loop {
            tries += 1;
            fs::create_dir(&tmp).map_err(Error::io(format!("create {}", tmp.display())))?;
            match super::lock_dir(&tmp, true) {
                Some(l) if tmp.exists() => break l,
                _ if tries < 5 => continue,
                _ => {
                    return Err(Error::io(format!("lock {}", tmp.display()))(
                        std::io::Error::other("removed while being created"),
                    ));
                }
            }
        };
        fs::rename(&tmp, &dir).map_err(Error::io(format!("create {}", dir.display())))?;
        let name = match &req.name {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(n);
                names::reserve(&containers, n, &id).inspect_err(|_| {
                    let _ = fs::remove_dir_all(&dir);
                })?;
                n.to_string()
            }
            None => names::reserve_random(&containers, &id).inspect_err(|_| {
                let _ = fs::remove_dir_all(&dir);
            })?,
        };
        let undo = |with_layer: bool| {
            if with_layer && let Ok(g) = self.store() {
                let _ = g.remove_container(&id);
            }
            let _ = fs::remove_dir_all(&dir);
            names::release(&containers, &name);
        };
        if let Err(e) = self.store()?.create_container(&id, &image_id.to_string()) {
            undo(false);
            return Err(graph(format!("create the read-write layer of {name}"))(e));
        }
        let (path, args) = (argv[0].clone(), argv[1..].to_vec());
        let attach_all = req.attach.is_empty();
        let record = ContainerRecord {
            id: id.clone(),
            name: name.clone(),
            created: now_rfc3339(),
            image_id: image_id.to_string(),
            path,
            args,
            config: ContainerConfig {
                hostname: req.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
                domainname: String::new(),
                user: req
                    .user
                    .clone()
                    .unwrap_or_else(|| ic["User"].as_str().unwrap_or_default().to_string()),
                attach_stdin: req.interactive
                    && (attach_all || req.attach.iter().any(|a| a == "stdin")),
                attach_stdout: attach_all || req.attach.iter().any(|a| a == "stdout"),
                attach_stderr: attach_all || req.attach.iter().any(|a| a == "stderr"),
                exposed_ports: exposed,
                tty: req.tty,
                open_stdin: req.interactive,
                stdin_once: req.interactive,
                env,
                cmd,
                image: req.image.clone(),
                volumes,
                working_dir: req
                    .workdir
                    .clone()
                    .unwrap_or_else(|| ic["WorkingDir"].as_str().unwrap_or_default().to_string()),
                entrypoint: (!entrypoint.is_empty()).then_some(entrypoint),
                labels,
                stop_signal: req
                    .stop_signal
                    .clone()
                    .or_else(|| ic["StopSignal"].as_str().map(String::from)),
                stop_timeout: req.stop_timeout,
                healthcheck: {
                    let image: crate::health::HealthConfig =
                        serde_json::from_value(ic["Healthcheck"].clone()).unwrap_or_default();
                    let hc = if req.no_healthcheck {
                        crate::health::HealthConfig {
                            test: vec!["NONE".into()],
                            ..Default::default()
                        }
                    } else {
                        req.health.clone().over(&image)
                    };
                    (!hc.test.is_empty()).then_some(hc)
                },
            },
            host_config: HostConfig {
                binds: req
                    .volumes
                    .iter()
                    .filter(|v| v.contains(':'))
                    .cloned()
                    .collect(),
                network_mode: network,
                publish: req.publish.clone(),
                port_bindings,
                publish_all_ports: req.publish_all,
                restart_policy: restart,
                auto_remove: req.auto_remove,
                privileged: req.privileged,
                readonly_rootfs: req.read_only,
                cap_add: req.cap_add.clone(),
                cap_drop: req.cap_drop.clone(),
                dns: req.dns.clone(),
                dns_search: req.dns_search.clone(),
                extra_hosts: req.add_host.clone(),
                links: req.links.clone(),
                security_opt: req.security_opt.clone(),
                tmpfs,
                memory,
                memory_swap,
                cpu_shares: req.cpu_shares.unwrap_or(0),
                nano_cpus,
                cpuset_cpus: req.cpuset_cpus.clone().unwrap_or_default(),
                pids_limit: req.pids_limit.unwrap_or(0),
                ulimits: req.ulimits.clone(),
                devices: req.devices.clone(),
                ipc_mode: req.ipc.clone().unwrap_or_else(|| "private".into()),
                pid_mode: req.pid.clone().unwrap_or_default(),
                uts_mode: req.uts.clone().unwrap_or_default(),
                init: req.init,
                volumes_from: req.volumes_from.clone(),
                mac_address: req.mac_address.clone().unwrap_or_default(),
                log_driver,
                log_opts,
                cpu_period,
                cpu_quota,
                memory_reservation,
                blkio_weight,
                oom_kill_disable: req.oom_kill_disable,
                shm_size,
                sysctls,
                group_add: req.group_add.clone(),
                cgroup_parent: req.cgroup_parent.clone().unwrap_or_default(),
                network_aliases: req.network_aliases.clone(),
                ip_address: req.ip.clone().unwrap_or_default(),
            },
        };
        let c = Container {
            record,
            state: ContainerState::created(),
            dir: dir.clone(),
        };
        // the state last: a directory without it is not a container yet
        if let Err(e) = self.save_record(&c).and_then(|()| self.save_state(&c)) {
            undo(true);
            return Err(e);
        }
        self.event("container", "create", &c.record.id, c.event_attributes());
        Ok(c)
    }
}

use super::spec;
