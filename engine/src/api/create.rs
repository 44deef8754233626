//! The body of `POST /containers/create` (Docker's container config and host config)
//! turned into a [`CreateRequest`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::body::ApiError;
use crate::CreateRequest;

/// A string or a list of strings (Docker's `strslice`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StrSlice {
    /// `"sh -c x"` (one element).
    One(String),
    /// `["sh", "-c", "x"]`.
    Many(Vec<String>),
}

impl StrSlice {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            StrSlice::One(s) => vec![s],
            StrSlice::Many(v) => v,
        }
    }
}

/// Docker's create body (the fields longshore uses; others are ignored, a field of the
/// wrong type is refused).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    hostname: Option<String>,
    domainname: Option<String>,
    user: Option<String>,
    attach_stdin: Option<bool>,
    attach_stdout: Option<bool>,
    attach_stderr: Option<bool>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    tty: Option<bool>,
    open_stdin: Option<bool>,
    env: Option<Vec<String>>,
    cmd: Option<StrSlice>,
    image: Option<String>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    working_dir: Option<String>,
    entrypoint: Option<StrSlice>,
    mac_address: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
    stop_timeout: Option<i64>,
    healthcheck: Option<crate::health::HealthConfig>,
    host_config: Option<HostConfigBody>,
    networking_config: Option<NetworkingConfigBody>,
}

/// Docker's NetworkingConfig: the endpoint of the network mode's network.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkingConfigBody {
    endpoints_config: Option<BTreeMap<String, EndpointBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointBody {
    aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<IpamBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamBody {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
}

/// Docker's HostConfig (the fields longshore uses).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfigBody {
    binds: Option<Vec<String>>,
    network_mode: Option<String>,
    port_bindings: Option<BTreeMap<String, Option<Vec<PortBindingBody>>>>,
    publish_all_ports: Option<bool>,
    restart_policy: Option<RestartPolicyBody>,
    auto_remove: Option<bool>,
    volumes_from: Option<Vec<String>>,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    dns: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    extra_hosts: Option<Vec<String>>,
    links: Option<Vec<String>>,
    privileged: Option<bool>,
    readonly_rootfs: Option<bool>,
    security_opt: Option<Vec<String>>,
    tmpfs: Option<BTreeMap<String, String>>,
    #[serde(rename = "IpcMode")]
    ipc_mode: Option<String>,
    pid_mode: Option<String>,
    #[serde(rename = "UTSMode")]
    uts_mode: Option<String>,
    init: Option<bool>,
    memory: Option<i64>,
    memory_swap: Option<i64>,
    cpu_shares: Option<i64>,
    nano_cpus: Option<i64>,
    cpuset_cpus: Option<String>,
    pids_limit: Option<i64>,
    ulimits: Option<Vec<UlimitBody>>,
    devices: Option<Vec<DeviceBody>>,
    log_config: Option<LogConfigBody>,
    cpu_period: Option<i64>,
    cpu_quota: Option<i64>,
    memory_reservation: Option<i64>,
    blkio_weight: Option<u16>,
    oom_kill_disable: Option<bool>,
    shm_size: Option<i64>,
    sysctls: Option<BTreeMap<String, String>>,
    group_add: Option<Vec<String>>,
    cgroup_parent: Option<String>,
    mounts: Option<Vec<crate::MountSpec>>,
    userns_mode: Option<String>,
    runtime: Option<String>,
    storage_opt: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PortBindingBody {
    host_ip: Option<String>,
    host_port: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartPolicyBody {
    name: Option<String>,
    maximum_retry_count: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UlimitBody {
    name: String,
    soft: i64,
    hard: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeviceBody {
    path_on_host: String,
    path_in_container: String,
    cgroup_permissions: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct LogConfigBody {
    #[serde(rename = "Type")]
    kind: Option<String>,
    config: Option<BTreeMap<String, String>>,
}

/// Parses a create body; a malformed one is a 400 that says where.
pub fn parse(body: &[u8]) -> Result<CreateBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad(
            "create: the request body is empty (a container config is required)",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("invalid JSON in the container config: {e}")))
}

impl CreateBody {
    /// The engine's request, with the container's `name`.
    pub fn into_request(self, name: Option<String>) -> Result<CreateRequest, ApiError> {
        let image = self
            .image
            .filter(|i| !i.is_empty())
            .ok_or_else(|| ApiError::bad("create: no image specified (Image is empty)"))?;
        let mut req = CreateRequest {
            image,
            name: name.filter(|n| !n.is_empty()),
            ..Default::default()
        };
        let mut cmd = self.cmd.map(StrSlice::into_vec).unwrap_or_default();
        if let Some(ep) = self.entrypoint.map(StrSlice::into_vec) {
            // the engine takes one entrypoint word (the CLI's --entrypoint): the others
            // go before the command, which gives the same argv
            match ep.split_first() {
                None => req.entrypoint = Some(String::new()),
                Some((first, rest)) => {
                    req.entrypoint = Some(first.clone());
                    cmd = rest.iter().cloned().chain(cmd).collect();
                }
            }
        }
        req.cmd = cmd;
        // a bare NAME would take the daemon's own value: Docker's clients resolve it,
        // the daemon never hands its environment to a container
        req.env = self
            .env
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.contains('='))
            .collect();
        req.hostname = self.hostname.filter(|s| !s.is_empty());
        if let Some(d) = self.domainname.filter(|s| !s.is_empty()) {
            req.hostname = Some(format!("{}.{d}", req.hostname.clone().unwrap_or_default()));
        }
        req.user = self.user.filter(|s| !s.is_empty());
        req.workdir = self.working_dir.filter(|s| !s.is_empty());
        req.labels = self.labels.unwrap_or_default();
        req.tty = self.tty.unwrap_or(false);
        req.interactive = self.open_stdin.unwrap_or(false);
        for (on, s) in [
            (self.attach_stdin, "stdin"),
            (self.attach_stdout, "stdout"),
            (self.attach_stderr, "stderr"),
        ] {
            if on == Some(true) {
                req.attach.push(s.into());
            }
        }
        req.expose = self.exposed_ports.unwrap_or_default().into_keys().collect();
        req.volumes = self.volumes.unwrap_or_default().into_keys().collect();
        req.mac_address = self.mac_address.filter(|s| !s.is_empty());
        req.stop_signal = self.stop_signal.filter(|s| !s.is_empty());
        req.stop_timeout = self.stop_timeout;
        // `--no-healthcheck` arrives as Test ["NONE"]; `[]` inherits the image's
        match self.healthcheck {
            Some(h) if h.test == ["NONE"] => req.no_healthcheck = true,
            Some(h) => req.health = h,
            None => {}
        }
        // the network mode's endpoint: --network-alias, --ip
        for (_, ep) in self
            .networking_config
            .and_then(|n| n.endpoints_config)
            .unwrap_or_default()
        {
            req.network_aliases.extend(ep.aliases.unwrap_or_default());
            if let Some(ip) = ep
                .ipam_config
                .and_then(|i| i.ipv4_address)
                .filter(|s| !s.is_empty())
            {
                req.ip = Some(ip);
            }
        }
        let Some(h) = self.host_config else {
            return Ok(req);
        };
        // what longshore cannot honour is refused, not dropped
        if let Some(u) = h.userns_mode.as_deref().filter(|s| !s.is_empty()) {
            return Err(ApiError::bad(format!(
                "UsernsMode {u:?} is not supported: longshore has no user namespace remapping"
            )));
        }
        if let Some(r) = h
            .runtime
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "runc" && *s != "longshore")
        {
            return Err(ApiError::bad(format!(
                "Runtime {r:?} is not supported: longshore runs containers with its own runtime"
            )));
        }
        if h.storage_opt.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::bad(
                "StorageOpt is not supported: the storage drivers here take no per-container options",
            ));
        }
        req.cpu_period = h.cpu_period.filter(|v| *v != 0);
        req.cpu_quota = h.cpu_quota.filter(|v| *v != 0);
        req.memory_reservation = h
            .memory_reservation
            .filter(|v| *v != 0)
            .map(|v| v.to_string());
        req.blkio_weight = h.blkio_weight.filter(|v| *v != 0);
        req.oom_kill_disable = h.oom_kill_disable.unwrap_or(false);
        req.shm_size = h.shm_size.filter(|v| *v != 0).map(|v| v.to_string());
        req.sysctls = h
            .sysctls
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        req.group_add = h.group_add.unwrap_or_default();
        req.cgroup_parent = h.cgroup_parent.filter(|s| !s.is_empty());
        req.mounts = h.mounts.unwrap_or_default();
        req.volumes.extend(h.binds.unwrap_or_default());
        req.network = h.network_mode.filter(|n| !n.is_empty() && n != "default");
        for (port, bindings) in h.port_bindings.unwrap_or_default() {
            let bindings = bindings.unwrap_or_default();
            if bindings.is_empty() {
                req.publish.push(port.clone());
            }
            for b in bindings {
                let ip = b.host_ip.unwrap_or_default();
                let hp = b.host_port.unwrap_or_default();
                req.publish.push(match (ip.is_empty(), hp.is_empty()) {
                    (true, true) => port.clone(),
                    (true, false) => format!("{hp}:{port}"),
                    (false, _) if ip.contains(':') => format!("[{ip}]:{hp}:{port}"),
                    (false, _) => format!("{ip}:{hp}:{port}"),
                });
            }
        }
        req.publish_all = h.publish_all_ports.unwrap_or(false);
        if let Some(p) = h.restart_policy {
            if p.maximum_retry_count.is_some_and(|n| n < 0) {
                return Err(ApiError::bad(
                    "invalid restart policy: maximum retry count cannot be negative",
                ));
            }
            let name = p.name.unwrap_or_default();
            if !name.is_empty() {
                req.restart = Some(match p.maximum_retry_count {
                    Some(n) if n > 0 => format!("{name}:{n}"),
                    _ => name,
                });
            }
        }
        req.auto_remove = h.auto_remove.unwrap_or(false);
        req.volumes_from = h.volumes_from.unwrap_or_default();
        req.cap_add = h.cap_add.unwrap_or_default();
        req.cap_drop = h.cap_drop.unwrap_or_default();
        req.dns = h.dns.unwrap_or_default();
        req.dns_search = h.dns_search.unwrap_or_default();
        req.add_host = h.extra_hosts.unwrap_or_default();
        req.links = h.links.unwrap_or_default();
        req.privileged = h.privileged.unwrap_or(false);
        req.read_only = h.readonly_rootfs.unwrap_or(false);
        req.security_opt = h.security_opt.unwrap_or_default();
        req.tmpfs = h
            .tmpfs
            .unwrap_or_default()
            .into_iter()
            .map(|(p, o)| if o.is_empty() { p } else { format!("{p}:{o}") })
            .collect();
        req.ipc = h.ipc_mode.filter(|s| !s.is_empty());
        req.pid = h.pid_mode.filter(|s| !s.is_empty());
        req.uts = h.uts_mode.filter(|s| !s.is_empty());
        req.init = h.init.unwrap_or(false);
        req.memory = h.memory.filter(|m| *m != 0).map(|m| m.to_string());
        req.memory_swap = h.memory_swap.filter(|m| *m != 0).map(|m| m.to_string());
        req.cpu_shares = h.cpu_shares.filter(|c| *c != 0);
        req.cpus = h.nano_cpus.filter(|c| *c != 0).map(|c| c as f64 / 1e9);
        req.cpuset_cpus = h.cpuset_cpus.filter(|s| !s.is_empty());
        req.pids_limit = h.pids_limit.filter(|p| *p != 0);
        req.ulimits = h
            .ulimits
            .unwrap_or_default()
            .into_iter()
            .map(|u| format!("{}={}:{}", u.name, u.soft, u.hard))
            .collect();
        req.devices = h
            .devices
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let mut s = d.path_on_host;
                if !d.path_in_container.is_empty() {
                    s = format!("{s}:{}", d.path_in_container);
                }
                if !d.cgroup_permissions.is_empty() {
                    s = format!("{s}:{}", d.cgroup_permissions);
                }
                s
            })
            .collect();
        if let Some(l) = h.log_config {
            req.log_driver = l.kind.filter(|s| !s.is_empty());
            req.log_opts = l
                .config
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_cli_body_maps_to_the_request() {
        let body = br#"{"Image":"busybox","Cmd":["echo","hi"],"Entrypoint":["sh","-c"],
            "Env":["A=1","HOME"],"Tty":false,"Labels":{"k":"v"},"ExposedPorts":{"80/tcp":{}},
            "HostConfig":{"Binds":["/a:/b:ro"],"NetworkMode":"none","AutoRemove":true,
            "PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}]},
            "RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3},"Memory":67108864}}"#;
        let r = parse(body).unwrap().into_request(Some("x".into())).unwrap();
        assert_eq!(r.image, "busybox");
        assert_eq!(r.entrypoint.as_deref(), Some("sh"));
        assert_eq!(r.cmd, ["-c", "echo", "hi"]);
        assert_eq!(r.env, ["A=1"]);
        assert_eq!(r.network.as_deref(), Some("none"));
        assert_eq!(r.publish, ["127.0.0.1:8080:80/tcp"]);
        assert_eq!(r.restart.as_deref(), Some("on-failure:3"));
        assert_eq!(r.memory.as_deref(), Some("67108864"));
        assert!(r.auto_remove);
        assert_eq!(r.volumes, ["/a:/b:ro"]);
    }

    #[test]
    fn wrong_types_are_refused_with_the_field() {
        let e = parse(br#"{"Image":"busybox","Tty":"yes"}"#).unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
        assert!(parse(b"{not json").is_err());
        assert!(parse(b"").is_err());
        let e = parse(br#"{"Cmd":["true"]}"#)
            .unwrap()
            .into_request(None)
            .unwrap_err();
        assert!(e.message.contains("no image"), "{}", e.message);
    }
}
