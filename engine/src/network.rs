//! Network jobs on containers: `docker network connect` and `disconnect`, of running
//! and of stopped containers.
//!
//! A container joins its first network at start (containers/start.rs); its libnetwork
//! endpoint is keyed by the container's id. Every further network is an additional
//! endpoint keyed `<id>.<network>`, with its own veth whose container side is `eth1`,
//! `eth2`, ... in the container's namespace (the default route stays on `eth0`). The
//! container's `/etc/hosts` (a bind mount of `<dir>/hosts`) gets the new network's
//! members and its own address there, rewritten in place; libnetwork keeps it current as
//! other members come and go, and the other members' files get the container's name.
//! When the container stops for good its monitor removes every endpoint
//! (`disconnect_all`).
//!
//! What the container is attached to is kept in `<dir>/networks.json` (`Attachments`):
//! the networks connected later (with their aliases and address) and whether the network
//! of its network mode was disconnected. Every start joins what it says, so a stopped
//! container can be connected (it joins at its next start) and disconnected, and a
//! running one keeps its networks across a restart, as with Docker.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use longshore_network::netns::NetnsRef;
use longshore_network::{Controller, EndpointConfig, EndpointInfo, NetMode, NetworkInfo};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// What `docker network connect` may set besides the network and the container.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// `--alias`: more names on this network.
    pub aliases: Vec<String>,
    /// `--ip`: a specific address in the network's range.
    pub ip: Option<Ipv4Addr>,
}

impl ConnectOptions {
    /// No alias, any address.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A container's network attachments besides its network mode's (`networks.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attachments {
    /// The network of the network mode was disconnected: a start does not join it.
    #[serde(default)]
    pub first_disconnected: bool,
    /// Networks connected with `network connect`, joined at each start in this order.
    #[serde(default)]
    pub extra: Vec<Attachment>,
}

/// One network connected with `network connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attachment {
    /// The network's name.
    pub network: String,
    /// `--alias`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
}

impl Attachments {
    /// The attachments of the container in `dir` (none recorded: the default).
    pub(crate) fn load(dir: &Path) -> Attachments {
        fs::read(dir.join("networks.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let data = serde_json::to_vec(self).expect("attachments serialize");
        crate::containers::write_atomic(&dir.join("networks.json"), &data)
    }
}

/// True when a container in `state` (its directory `dir`) has endpoints to remove at its
/// stop or removal: its network mode's, or, in its pinned namespace, networks connected
/// later (`network connect`). A namespace without any (`--network none`, nothing
/// connected) needs no controller, and opening one makes the default bridge in the
/// caller's namespace.
pub(crate) fn has_endpoints(state: &crate::containers::ContainerState, dir: &Path) -> bool {
    state.network.is_some() || (state.netns.is_some() && !Attachments::load(dir).extra.is_empty())
}

/// The network a container's network mode names, as its inspect shows it without a
/// controller: `bridge` for the default, `host` and `none` as such, a user network as
/// named (`None`: `container:`).
pub(crate) fn mode_network_name(mode: &str) -> Option<&str> {
    match mode {
        "" | "bridge" | "default" => Some("bridge"),
        m if m.starts_with("container:") => None,
        m => Some(m),
    }
}

/// The name of the network container `c` joins through its network mode (`None`: host,
/// none, `container:`, or a network that is gone).
fn mode_network(ctl: &Controller, c: &crate::containers::Container) -> Option<String> {
    match c.record.host_config.network_mode.as_str() {
        "host" | "none" => None,
        m if m.starts_with("container:") => None,
        "" | "bridge" | "default" => Some("bridge".into()),
        m => Some(
            find_network(ctl, m)
                .map(|n| n.name)
                .unwrap_or_else(|_| m.to_string()),
        ),
    }
}

/// The key of container `id`'s additional endpoint on `network`.
fn extra_key(id: &str, network: &str) -> String {
    format!("{id}.{network}")
}

/// The container an endpoint record belongs to: its key up to the first `.` (the first
/// endpoint is keyed by the container's id, an additional one by `<id>.<network>`).
pub fn endpoint_container(key: &str) -> &str {
    key.split_once('.').map(|(id, _)| id).unwrap_or(key)
}

/// Container `id`'s additional endpoints (none when the listing fails).
fn extra_endpoints(ctl: &Controller, id: &str) -> Vec<EndpointInfo> {
    let prefix = format!("{id}.");
    ctl.endpoints()
        .map(|all| {
            all.into_iter()
                .filter(|e| e.container_id.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes every endpoint of container `id`: its first and its additional ones. With
/// `dying` the namespace is already released (the container's processes are gone and its
/// pin removed), so the veths are left to the kernel (`disconnect_dying`).
pub(crate) fn disconnect_all(ctl: &Controller, id: &str, dying: bool) {
    let extras = extra_endpoints(ctl, id);
    let keys = std::iter::once(id.to_string()).chain(extras.into_iter().map(|e| e.container_id));
    for key in keys {
        let _ = if dying {
            ctl.disconnect_dying(&key)
        } else {
            ctl.disconnect(&key)
        };
    }
}

/// A network by name, full ID or unique ID prefix.
pub(crate) fn find_network(ctl: &Controller, id: &str) -> Result<NetworkInfo> {
    if let Ok(n) = ctl.network(id) {
        return Ok(n);
    }
    let mut hits: Vec<NetworkInfo> = ctl
        .list_networks()
        .map_err(Error::network("list networks"))?
        .into_iter()
        .filter(|n| !n.id.is_empty() && n.id.starts_with(id))
        .collect();
    match hits.len() {
        1 => Ok(hits.remove(0)),
        _ => Err(Error::NoSuchNetwork(id.to_string())),
    }
}

/// The lowest `ethN` (N >= 1) not in the namespace of process `pid`.
fn free_interface(pid: i32) -> String {
    let dev = fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let taken: Vec<&str> = dev
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim()))
        .collect();
    (1..)
        .map(|n| format!("eth{n}"))
        .find(|n| !taken.contains(&n.as_str()))
        .expect("some ethN is free")
}

/// Waits (up to two seconds) until no interface named like the host side of endpoint
/// `key`'s veth is in this process's network namespace. The previous run of a container
/// left its veth to the kernel (`disconnect_dying`: deleted when that run's namespace
/// goes, which the kernel does in the background), so a quick restart can find it still
/// there ("File exists"). One read of `/proc/thread-self/net/dev` when there is none.
pub(crate) fn wait_veth_gone(key: &str) {
    let name = longshore_network::veth_name(key);
    let present = || {
        fs::read_to_string("/proc/thread-self/net/dev")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_once(':').is_some_and(|(n, _)| n.trim() == name))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut pause = std::time::Duration::from_micros(500);
    while present() && std::time::Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(10));
    }
}

/// Rewrites `path` in place (the container sees it through a bind mount of the file).
fn write_in_place(path: &std::path::Path, data: &str) -> Result<()> {
    fs::write(path, data).map_err(Error::io(format!("write {}", path.display())))
}

impl Engine {
    /// Container `container` under its directory's lock (the one its create and its
    /// removal hold), as it is once the lock is held. A connect or disconnect holds it
    /// from reading `networks.json` to writing it back (and, for a running container,
    /// across the choice of the next free `ethN` and the join): two of them on one
    /// container at once would otherwise both read the same record and the second write
    /// would drop the first's network.
    fn container_locked(
        &self,
        container: &str,
    ) -> Result<(crate::containers::DirLock, crate::containers::Container)> {
        let c = self.container(container)?;
        let lock = crate::containers::lock_dir(&c.dir, true)
            .ok_or_else(|| Error::NoSuchContainer(container.to_string()))?;
        // read again: it may have changed, or been removed, while this waited
        let c = self.container(&c.record.id)?;
        Ok((lock, c))
    }

    /// `docker network connect NETWORK CONTAINER`: a running container gets one more
    /// interface, on `network`, and its name there for the other members; a stopped one
    /// (created or exited) is recorded to join it at its next start. Either way it
    /// rejoins at every later start.
    pub fn connect_network(
        &self,
        network: &str,
        container: &str,
        opts: &ConnectOptions,
    ) -> Result<()> {
        let ctl = self.network()?;
        let net = find_network(ctl, network)?;
        let (_lock, c) = self.container_locked(container)?;
        let name = &c.record.name;
        let mode = c.record.host_config.network_mode.as_str();
        if mode == "host" || mode == "none" || mode.starts_with("container:") {
            return Err(Error::InvalidArgument(format!(
                "container {name} cannot be connected to network {}: its network mode is {mode} (it shares or has no network stack)",
                net.name
            )));
        }
        if let Some(ip) = opts.ip
            && !net.subnet().contains(ip)
        {
            return Err(Error::InvalidArgument(format!(
                "invalid address {ip}: it is not in the subnet of network {} ({})",
                net.name,
                net.subnet()
            )));
        }
        let mut att = Attachments::load(&c.dir);
        let exists = || {
            Error::Conflict(format!(
                "endpoint with name {name} already exists in network {}",
                net.name
            ))
        };
        let running = c.state.is_alive();
        let key = extra_key(&c.record.id, &net.name);
        if att.extra.iter().any(|a| a.network == net.name) || ctl.endpoint(&key).is_ok() {
            return Err(exists());
        }
        let is_first = mode_network(ctl, &c).as_deref() == Some(net.name.as_str());
        if is_first && !att.first_disconnected {
            return Err(exists());
        }
        if running {
            let netns_path = c
                .state
                .netns
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("/proc/{}/ns/net", c.state.pid)));
            let iface = free_interface(c.state.pid);
            let a = Attachment {
                network: net.name.clone(),
                aliases: opts.aliases.clone(),
                ip: opts.ip,
            };
            self.join(ctl, &c, &net, &a, &netns_path, iface)?;
        }
        if is_first {
            // the network mode's network again: joined as the first at the next start
            att.first_disconnected = false;
        } else {
            att.extra.push(Attachment {
                network: net.name.clone(),
                aliases: opts.aliases.clone(),
                ip: opts.ip,
            });
        }
        att.save(&c.dir)?;
        self.event(
            "network",
            "connect",
            &net.id,
            vec![
                ("container".into(), c.record.id.clone()),
                ("name".into(), net.name.clone()),
                ("type".into(), "bridge".into()),
            ],
        );
        Ok(())
    }

    /// Joins container `c` (its network namespace at `netns_path`) to `net` as an
    /// additional endpoint with the container-side interface `iface`; its hosts file gets
    /// the network's members.
    fn join(
        &self,
        ctl: &Controller,
        c: &crate::containers::Container,
        net: &NetworkInfo,
        a: &Attachment,
        netns_path: &Path,
        iface: String,
    ) -> Result<()> {
        let name = &c.record.name;
        let key = extra_key(&c.record.id, &net.name);
        let ns = NetnsRef::from_path(netns_path)
            .map_err(Error::network("open the container's network namespace"))?;
        let mut cfg = EndpointConfig::new(&key, Some(ns))
            .name(name.clone())
            .mode(NetMode::Bridge(net.name.clone()))
            .hostname(c.record.config.hostname.clone())
            .interface(iface)
            .files_dir(c.dir.clone());
        for alias in &a.aliases {
            cfg = cfg.alias(alias.clone());
        }
        if let Some(ip) = a.ip {
            cfg = cfg.ip(ip);
        }
        // libnetwork writes the three files for this network alone: the container keeps
        // its own, with this network's members added
        let files = ["hosts", "resolv.conf", "hostname"].map(|f| c.dir.join(f));
        let before = files
            .clone()
            .map(|p| fs::read_to_string(p).unwrap_or_default());
        wait_veth_gone(&key);
        ctl.connect(&cfg).map_err(|e| match e {
            longshore_network::Error::InvalidInput { .. } => Error::InvalidArgument(e.to_string()),
            e => Error::Network {
                op: format!("connect container {name} to network {}", net.name),
                source: e,
            },
        })?;
        let now = fs::read_to_string(&files[0]).unwrap_or_default();
        let mut merged = before[0].clone();
        for line in now.lines() {
            if !before[0].lines().any(|l| l == line) {
                merged.push_str(line);
                merged.push('\n');
            }
        }
        write_in_place(&files[0], &merged)?;
        for (p, old) in files.iter().zip(&before).skip(1) {
            if fs::read_to_string(p).ok().as_ref() != Some(old) {
                write_in_place(p, old)?;
            }
        }
        Ok(())
    }

    /// At a start, after the network mode's network (or none, when it was disconnected):
    /// joins the networks recorded by `network connect`, as `eth1`, `eth2`, ... of the
    /// namespace at `netns_path`. A network that is gone fails the start, naming it.
    pub(crate) fn join_attachments(
        &self,
        c: &crate::containers::Container,
        netns_path: &Path,
    ) -> Result<()> {
        let att = Attachments::load(&c.dir);
        if att.extra.is_empty() {
            return Ok(());
        }
        let ctl = self.network()?;
        for (i, a) in att.extra.iter().enumerate() {
            let net = find_network(ctl, &a.network).map_err(|_| {
                Error::NoSuchNetwork(format!(
                    "{} (container {} was connected to it)",
                    a.network, c.record.name
                ))
            })?;
            self.join(ctl, c, &net, a, netns_path, format!("eth{}", i + 1))?;
        }
        Ok(())
    }

    /// `docker network disconnect [-f] NETWORK CONTAINER`: removes a network from the
    /// container, the one it started on included (its interface goes; it is not joined
    /// at later starts). A stopped container forgets it for its next start. With `force`
    /// a container that is gone is disconnected by name.
    pub fn disconnect_network(&self, network: &str, container: &str, force: bool) -> Result<()> {
        let ctl = self.network()?;
        let net = find_network(ctl, network)?;
        let (id, name, found, _lock) = match self.container_locked(container) {
            Ok((lock, c)) => (
                c.record.id.clone(),
                c.record.name.clone(),
                Some(c),
                Some(lock),
            ),
            // -f: the endpoint of a container that is gone, by its name on the network
            Err(Error::NoSuchContainer(_)) if force => {
                let wanted = container.trim_start_matches('/');
                let ep = ctl
                    .endpoints()
                    .map_err(Error::network("list endpoints"))?
                    .into_iter()
                    .find(|e| {
                        e.network.as_deref() == Some(net.name.as_str())
                            && (e.container_name == wanted
                                || endpoint_container(&e.container_id).starts_with(wanted))
                    })
                    .ok_or_else(|| Error::NoSuchContainer(container.to_string()))?;
                (
                    endpoint_container(&ep.container_id).to_string(),
                    ep.container_name.clone(),
                    None,
                    None,
                )
            }
            Err(e) => return Err(e),
        };
        let not_connected = || {
            Error::WrongState(format!(
                "container {name} is not connected to network {}",
                net.name
            ))
        };
        let extra = extra_key(&id, &net.name);
        let on = |key: &str| ctl.endpoint(key).is_ok_and(|ep| ep.container_id == key);
        // the endpoint to remove (a running container's), and the record to change
        let (key, mut att) = match &found {
            Some(c) => {
                let mut att = Attachments::load(&c.dir);
                let first = !att.first_disconnected
                    && mode_network(ctl, c).as_deref() == Some(net.name.as_str());
                let recorded = att.extra.iter().any(|a| a.network == net.name);
                if !first && !recorded && !on(&extra) {
                    return Err(not_connected());
                }
                if first {
                    att.first_disconnected = true;
                } else {
                    att.extra.retain(|a| a.network != net.name);
                }
                let running = c.state.is_alive();
                let key = if !running {
                    None
                } else if first && on(&id) {
                    Some(id.clone())
                } else if on(&extra) {
                    Some(extra.clone())
                } else {
                    None
                };
                (key, Some(att))
            }
            None if on(&extra) => (Some(extra.clone()), None),
            None => return Err(not_connected()),
        };
        if let Some(key) = &key {
            ctl.disconnect(key).map_err(|e| Error::Network {
                op: format!("disconnect container {name} from network {}", net.name),
                source: e,
            })?;
            // the veth's deletion is queued to the controller's background thread: waited
            // for, so that the interface is gone from the container when this returns (a
            // test saw eth1 still there right after the disconnect)
            ctl.flush().map_err(|e| Error::Network {
                op: format!("delete the interface of {name} on network {}", net.name),
                source: e,
            })?;
        }
        if let (Some(c), Some(att)) = (&found, att.as_mut()) {
            att.save(&c.dir)?;
        }
        // the container's hosts file forgets this network's addresses (its own and its
        // peers'), which all lie in the network's subnet
        if key.is_some()
            && let Some(c) = &found
        {
            let path = c.dir.join("hosts");
            if let Ok(old) = fs::read_to_string(&path) {
                let subnet = net.subnet();
                let kept: String = old
                    .lines()
                    .filter(|l| {
                        !l.split_whitespace()
                            .next()
                            .and_then(|a| a.parse::<Ipv4Addr>().ok())
                            .is_some_and(|a| subnet.contains(a))
                    })
                    .map(|l| format!("{l}\n"))
                    .collect();
                if kept != old {
                    write_in_place(&path, &kept)?;
                }
            }
        }
        self.event(
            "network",
            "disconnect",
            &net.id,
            vec![
                ("container".into(), id),
                ("name".into(), net.name.clone()),
                ("type".into(), "bridge".into()),
            ],
        );
        Ok(())
    }

    /// The networks container `id` was connected to after its start: (network, endpoint).
    pub fn extra_networks(&self, id: &str) -> Result<Vec<EndpointInfo>> {
        Ok(extra_endpoints(self.network()?, id))
    }
}
