//! The controller: networks, endpoints, drivers, teardown and crash cleanup.

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, file_err};
use crate::files::{ContainerFiles, HostsEntry, Link, hosts_file, resolv_conf};
use crate::ipam::{Ipam, pick_subnet};
use crate::libnft::NftSession;
use crate::netlink::{Netlink, VethPeer};
use crate::netns::NetnsRef;
use crate::nfnl::NfTables;
use crate::nft;
use crate::ports::{ExposedPort, PortAllocator, PortMapping, PortSpec, Proto};
use crate::proxy::{Proxy, ProxyRuntime};
use crate::reaper::{Reaper, ReaperStats};
use crate::store::{self, read_json, write_json};

/// Name of the default bridge network.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Default bridge device name.
pub const DEFAULT_BRIDGE: &str = "longshore0";

/// The daemon-wide options of the seed (`docker -d --bridge --bip ...`).
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// `--bridge`: the default network's bridge device.
    pub bridge: String,
    /// `--bip`: the bridge's address and prefix (gateway of the default network).
    pub bip: Option<Ipv4Network>,
    /// `--fixed-cidr`: containers of the default network get addresses from this range.
    pub fixed_cidr: Option<Ipv4Network>,
    /// `--mtu` (else the default route's interface MTU, else 1500).
    pub mtu: Option<u32>,
    /// `--icc`: containers of the default bridge may talk to each other.
    pub icc: bool,
    /// `--ip`: default host address for published ports.
    pub ip: Ipv4Addr,
    /// `--ip-forward`: set `net.ipv4.ip_forward=1` in the host namespace.
    pub ip_forward: bool,
    /// `--ip-masq`: masquerade traffic leaving the bridge.
    pub ip_masq: bool,
    /// `--iptables`: install firewall (nftables) rules at all.
    pub iptables: bool,
    /// Run the userland proxy for published ports (reaches them through loopback).
    pub userland_proxy: bool,
    /// The host's resolv.conf that containers' files derive from.
    pub host_resolv_conf: PathBuf,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        Self {
            bridge: DEFAULT_BRIDGE.into(),
            bip: None,
            fixed_cidr: None,
            mtu: None,
            icc: true,
            ip: Ipv4Addr::UNSPECIFIED,
            ip_forward: true,
            ip_masq: true,
            iptables: true,
            userland_proxy: true,
            host_resolv_conf: "/etc/resolv.conf".into(),
        }
    }
}

/// A bridge network as stored in `<state>/networks/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Network name (`bridge` for the default one).
    pub name: String,
    /// Network ID: 32 random hex digits, unique within the state directory; names the
    /// network's nftables isolation set. Empty in records written before IDs existed.
    #[serde(default)]
    pub id: String,
    /// Bridge device.
    pub bridge: String,
    /// Gateway (the bridge's address) with the subnet's prefix, e.g. `172.17.42.1/16`.
    pub gateway: Ipv4Network,
    /// Allocation range inside the subnet.
    pub fixed_cidr: Option<Ipv4Network>,
    /// MTU of the bridge and the veths.
    pub mtu: u32,
    /// Inter-container communication allowed.
    pub icc: bool,
    /// Masquerade outgoing traffic.
    pub masquerade: bool,
}

impl NetworkInfo {
    /// The subnet (`172.17.0.0/16`).
    pub fn subnet(&self) -> Ipv4Network {
        Ipv4Network::new(self.gateway.network(), self.gateway.prefix()).expect("same prefix")
    }
}

/// Options of a user-defined bridge network.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    /// Network name.
    pub name: String,
    /// Bridge device (default `lsbr` + a hash of the name).
    pub bridge: Option<String>,
    /// Gateway/prefix (default: the first free subnet of the pool).
    pub gateway: Option<Ipv4Network>,
    /// Allocation range.
    pub fixed_cidr: Option<Ipv4Network>,
    /// MTU (default as for the default network).
    pub mtu: Option<u32>,
    /// Isolate containers from each other.
    pub no_icc: bool,
}

/// `--net`: which network a container joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// `bridge` (the default network) or the name of a user-defined bridge network.
    Bridge(String),
    /// `host`: the host's namespace.
    Host,
    /// `none`: only loopback.
    None,
    /// `container:<id or name>`: another container's namespace.
    Container(String),
}

impl FromStr for NetMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "" | "bridge" | "default" => NetMode::Bridge(DEFAULT_NETWORK.into()),
            "host" => NetMode::Host,
            "none" => NetMode::None,
            _ => match s.strip_prefix("container:") {
                Some("") => {
                    return Err(Error::InvalidInput {
                        what: "--net",
                        value: s.into(),
                        reason: "container: needs a container id or name".into(),
                    });
                }
                Some(c) => NetMode::Container(c.into()),
                None => NetMode::Bridge(s.into()),
            },
        })
    }
}

/// What a container asks for (the run options of the seed's 6.1.19).
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Container id (owner of leases, rules and ports).
    pub container_id: String,
    /// Container name (for links' `ALIAS_NAME=/name/alias` and hosts entries).
    pub container_name: String,
    /// The container's network namespace (needed for `bridge` and `none`).
    pub netns: Option<NetnsRef>,
    /// `--net`.
    pub mode: NetMode,
    /// `-h` (default: the first 12 characters of the id).
    pub hostname: Option<String>,
    /// Domain name.
    pub domainname: Option<String>,
    /// `--mac-address` (default 02:42 + the IPv4 address).
    pub mac: Option<[u8; 6]>,
    /// A specific address.
    pub ip: Option<Ipv4Addr>,
    /// `-p`.
    pub publish: Vec<PortSpec>,
    /// `-P`.
    pub publish_all: bool,
    /// `--expose` and the image's exposed ports.
    pub expose: Vec<ExposedPort>,
    /// `--link`.
    pub links: Vec<Link>,
    /// `--dns`.
    pub dns: Vec<IpAddr>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--add-host`.
    pub extra_hosts: Vec<HostsEntry>,
    /// Where to write `hosts`, `resolv.conf` and `hostname` (none: only returned).
    pub files_dir: Option<PathBuf>,
}

impl EndpointConfig {
    /// A config for the default bridge with everything else unset.
    pub fn new(container_id: &str, netns: Option<NetnsRef>) -> Self {
        Self {
            container_id: container_id.into(),
            container_name: container_id.into(),
            netns,
            mode: NetMode::Bridge(DEFAULT_NETWORK.into()),
            hostname: None,
            domainname: None,
            mac: None,
            ip: None,
            publish: vec![],
            publish_all: false,
            expose: vec![],
            links: vec![],
            dns: vec![],
            dns_search: vec![],
            extra_hosts: vec![],
            files_dir: None,
        }
    }
}

/// What was set up for a container; persisted in `<state>/endpoints/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// Container id.
    pub container_id: String,
    /// Container name.
    pub container_name: String,
    /// `bridge`, `host`, `none` or `container`.
    pub driver: String,
    /// Network name (bridge driver).
    pub network: Option<String>,
    /// Address and prefix on the network.
    pub ip: Option<Ipv4Network>,
    /// Default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// MAC address of eth0.
    pub mac: Option<String>,
    /// Host side of the veth pair.
    pub veth: Option<String>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Exposed ports (for links).
    pub exposed: Vec<ExposedPort>,
    /// The namespace the container's processes must run in.
    pub netns: PathBuf,
    /// Hostname.
    pub hostname: String,
    /// Where the container's files were written (kept up to date on user networks).
    #[serde(default)]
    pub files_dir: Option<PathBuf>,
    /// Handles of the DNAT rules of `ports` in chain `ip longshore ports` (deleted by handle
    /// by the controller instance that added them, by comment tag otherwise).
    #[serde(default)]
    pub rule_handles: Vec<u64>,
    /// Pid of the process that set it up (crash detection).
    pub owner_pid: u32,
    /// Instance token of the controller that set it up.
    pub owner_token: String,
}

/// The result of [`Controller::connect`].
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// What was set up.
    pub info: EndpointInfo,
    /// `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` contents.
    pub files: ContainerFiles,
    /// Environment variables from `--link`.
    pub link_env: Vec<String>,
}

/// A network driver: configures a container's namespace for one kind of network.
pub trait Driver: Send + Sync {
    /// `bridge`, `host`, `none` or `container`.
    fn name(&self) -> &'static str;
    /// Sets the container up and fills `ep`; undoes its own partial work on error.
    fn join(&self, ctl: &Controller, cfg: &EndpointConfig, ep: &mut EndpointInfo) -> Result<()>;
    /// Undoes `join`, except for the host-side veth recorded in `ep.veth`: the controller
    /// deletes that in the background. Must tolerate objects that are already gone.
    fn leave(&self, ctl: &Controller, ep: &EndpointInfo) -> Result<()>;
}

/// Bridge networks: veth pair, IPAM, routes, published ports.
pub struct BridgeDriver;
/// The host's namespace: nothing to set up.
pub struct HostDriver;
/// Loopback only.
pub struct NoneDriver;
/// Join another container's namespace.
pub struct ContainerDriver;

/// What [`Controller::cleanup`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Endpoints of dead owners torn down.
    pub endpoints: Vec<String>,
    /// Veths on our bridges with no endpoint record, deleted.
    pub orphan_veths: Vec<String>,
    /// Rule tags with no endpoint record, deleted.
    pub orphan_rules: Vec<String>,
    /// Leases (`network/address`) whose owner has no endpoint record, released.
    pub orphan_leases: Vec<String>,
    /// Host port reservations whose owner has no endpoint record, released.
    pub orphan_ports: Vec<String>,
    /// Temporary state files of dead processes (a crash between writing and renaming),
    /// removed; paths relative to the state directory.
    pub temp_files: Vec<String>,
}

/// Owns the networks of one state directory in one host namespace.
pub struct Controller {
    state: PathBuf,
    host: NetnsRef,
    opts: DaemonOptions,
    token: String,
    ipam: Ipam,
    ports: PortAllocator,
    proxies: Mutex<HashMap<String, Vec<Proxy>>>,
    proxy_rt: ProxyRuntime,
    reaper: Reaper,
    nft: Option<NftSession>,
    nfnl: Option<Mutex<NfTables>>,
    /// Retired endpoint record files, reused for new records (see [`store::create_json_in`]).
    spares: Mutex<Vec<PathBuf>>,
}

/// How many retired record files a controller keeps for reuse.
const MAX_SPARE_RECORDS: usize = 16;

impl Drop for Controller {
    fn drop(&mut self) {
        // unlinked by the reaper thread, which the reaper's own drop then waits for
        let spares = std::mem::take(self.spares.get_mut().unwrap_or_else(|p| p.into_inner()));
        for f in spares {
            self.reaper.remove_file(f);
        }
    }
}

fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (`--mac-address`).
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bad = |r: &str| Error::InvalidInput {
        what: "MAC address",
        value: s.into(),
        reason: r.into(),
    };
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad("expected six hex bytes separated by ':'"));
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad("each byte needs two hex digits"));
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad("not hex"))?;
    }
    if m[0] & 1 == 1 {
        return Err(bad("multicast addresses cannot be assigned"));
    }
    Ok(m)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// The host-side veth name of a container: `lsv` + 12 hex digits of a hash of its id.
pub fn veth_name(container_id: &str) -> String {
    format!("lsv{:012x}", fnv(container_id) & 0xffff_ffff_ffff)
}

fn safe_name(what: &'static str, s: &str) -> Result<()> {
    if s.is_empty()
        || s.len() > 128
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || s.starts_with('.')
    {
        return Err(Error::InvalidInput {
            what,
            value: s.into(),
            reason: "use letters, digits, '-', '_' and '.' only".into(),
        });
    }
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

impl Controller {
    /// Opens the state directory, prepares the host namespace (`--ip-forward`, the nftables
    /// table) and creates or reuses the default bridge network.
    ///
    /// `host` is the namespace that plays the host: the bridge, the veths' host sides, the
    /// rules and the proxies live there.
    pub fn new(state_dir: impl Into<PathBuf>, host: NetnsRef, opts: DaemonOptions) -> Result<Self> {
        let state = state_dir.into();
        fs::create_dir_all(state.join("endpoints"))
            .map_err(file_err(state.join("endpoints"), "create state directory"))?;
        fs::create_dir_all(state.join("networks"))
            .map_err(file_err(state.join("networks"), "create state directory"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        // the per-container rules go through a raw nf_tables socket (libnftables or nft
        // only when it cannot be opened)
        let nfnl = if opts.iptables {
            NfTables::open_in(&host).ok().map(Mutex::new)
        } else {
            None
        };
        let nfnl_missing = nfnl.is_none();
        let ctl = Self {
            reaper: Reaper::start(&host)?,
            proxy_rt: ProxyRuntime::new(&host),
            nfnl,
            nft: if opts.iptables && nfnl_missing {
                NftSession::start(&host)
            } else {
                None
            },
            ipam: Ipam::new(&state),
            ports: PortAllocator::new(&state),
            state,
            host,
            token: format!("{}-{nanos:x}", std::process::id()),
            opts,
            proxies: Mutex::new(HashMap::new()),
            spares: Mutex::new(Vec::new()),
        };
        if ctl.opts.ip_forward {
            ctl.host.run(|| {
                let p = Path::new("/proc/sys/net/ipv4/ip_forward");
                fs::write(p, "1\n").map_err(file_err(p, "enable IP forwarding"))
            })?;
        }
        // the base chains and the default network's rules in one transaction; alone, so that
        // two processes starting controllers on one state directory (a container's monitor
        // tearing down while the next `run` starts) never delete each other's rule handles
        {
            let _alone = ctl.connect_lock(true)?;
            ctl.ensure_default_network()?;
        }
        Ok(ctl)
    }

    /// The host namespace.
    pub fn host_netns(&self) -> &NetnsRef {
        &self.host
    }

    /// The daemon options.
    pub fn options(&self) -> &DaemonOptions {
        &self.opts
    }

    fn network_path(&self, name: &str) -> PathBuf {
        self.state.join("networks").join(format!("{name}.json"))
    }

    fn endpoint_path(&self, id: &str) -> PathBuf {
        self.state.join("endpoints").join(format!("{id}.json"))
    }

    /// The record of container `id` at `path`. A record file is reused for another
    /// container once retired, so a reader that opened it under the old name may find the
    /// new container's record: that counts as not found.
    fn read_endpoint(path: &Path, id: &str) -> Result<Option<EndpointInfo>> {
        Ok(store::read_record::<EndpointInfo>(path)?.filter(|e| e.container_id == id))
    }

    /// Writes the first record of an endpoint, into a retired record file when there is
    /// one; false when the container has a record already.
    fn create_record(&self, ep: &EndpointInfo) -> Result<bool> {
        let path = self.endpoint_path(&ep.container_id);
        let spare = self.spares.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(spare) = spare {
            match store::create_json_in(&path, ep, spare.clone()) {
                Ok(None) => return Ok(true),
                Ok(Some(unused)) => {
                    self.keep_spare(unused);
                    return Ok(false);
                }
                // a new file instead
                Err(_) => self.reaper.remove_file(spare),
            }
        }
        store::create_json(&path, ep)
    }

    fn keep_spare(&self, f: PathBuf) {
        let mut spares = self.spares.lock().unwrap_or_else(|p| p.into_inner());
        if spares.len() < MAX_SPARE_RECORDS {
            spares.push(f);
        } else {
            drop(spares);
            self.reaper.remove_file(f);
        }
    }

    fn default_mtu(&self, nl: &mut Netlink) -> Result<u32> {
        if let Some(m) = self.opts.mtu {
            return Ok(m);
        }
        let routes = nl.routes_v4()?;
        if let Some(oif) = routes
            .iter()
            .find(|r| r.destination.prefix() == 0)
            .and_then(|r| r.oif)
            && let Some(l) = nl.links()?.into_iter().find(|l| l.index == oif)
            && let Some(m) = l.mtu
        {
            return Ok(m);
        }
        Ok(1500)
    }

    fn ensure_default_network(&self) -> Result<()> {
        let existing: Option<NetworkInfo> = read_json(&self.network_path(DEFAULT_NETWORK))?;
        let others: Vec<Ipv4Network> = self
            .list_networks()?
            .into_iter()
            .filter(|n| n.name != DEFAULT_NETWORK)
            .map(|n| n.subnet())
            .collect();
        let bridge = self.opts.bridge.clone();
        safe_name("bridge name", &bridge)?;
        let (gateway, mtu) = self.host.run(|| {
            let mut nl = Netlink::open()?;
            let mtu = self.default_mtu(&mut nl)?;
            if let Some(b) = self.opts.bip {
                return Ok((b, mtu));
            }
            if let Some(e) = existing.as_ref().filter(|e| e.bridge == bridge) {
                return Ok((e.gateway, mtu));
            }
            if let Some(l) = nl.link(&bridge)?
                && let Some(IpNetwork::V4(a)) = nl.addresses_v4(l.index)?.into_iter().next()
            {
                return Ok((a, mtu));
            }
            let routes: Vec<IpNetwork> =
                nl.routes_v4()?.into_iter().map(|r| r.destination).collect();
            pick_subnet(&routes, &others)
                .map(|g| (g, mtu))
                .ok_or_else(|| Error::NoFreeSubnet {
                    network: DEFAULT_NETWORK.into(),
                })
        })?;
        // a record of before network IDs keeps its (empty) ID, and so its isolation set
        let id = match &existing {
            Some(e) => e.id.clone(),
            None => self.new_network_id()?,
        };
        let info = NetworkInfo {
            name: DEFAULT_NETWORK.into(),
            id,
            bridge,
            gateway,
            fixed_cidr: self.opts.fixed_cidr,
            mtu,
            icc: self.opts.icc,
            masquerade: self.opts.ip_masq,
        };
        self.setup_network(&info, true)?;
        Ok(())
    }

    /// A network ID no network of the state directory has.
    fn new_network_id(&self) -> Result<String> {
        let taken: Vec<String> = self.list_networks()?.into_iter().map(|n| n.id).collect();
        loop {
            let mut b = [0u8; 16];
            let path = Path::new("/dev/urandom");
            fs::File::open(path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
                .map_err(file_err(path, "read"))?;
            let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
            if !taken.contains(&id) {
                return Ok(id);
            }
        }
    }

    fn network_rules<'a>(info: &'a NetworkInfo) -> nft::NetworkRules<'a> {
        nft::NetworkRules {
            name: &info.name,
            id: &info.id,
            subnet: info.subnet(),
            bridge: &info.bridge,
            masquerade: info.masquerade,
            icc: info.icc,
        }
    }

    /// Creates the bridge, the address pool and the rules of a network; with `base`, the
    /// table's base chains too, in the same transaction as the network's rules.
    fn setup_network(&self, info: &NetworkInfo, base: bool) -> Result<()> {
        self.host.run(|| {
            let mut nl = Netlink::open()?;
            let idx = nl.ensure_bridge(&info.bridge, info.mtu)?;
            nl.add_address(idx, &info.bridge, IpNetwork::V4(info.gateway))
        })?;
        self.ipam.create_pool(
            &info.name,
            info.subnet(),
            info.fixed_cidr,
            info.gateway.ip(),
        )?;
        if self.opts.iptables {
            nft::set_network_rules(&self.host, &Self::network_rules(info), base)?;
        }
        write_json(&self.network_path(&info.name), info)
    }

    /// Creates a user-defined bridge network.
    pub fn create_network(&self, req: &NetworkCreate) -> Result<NetworkInfo> {
        safe_name("network name", &req.name)?;
        if req.name == DEFAULT_NETWORK || req.name == "host" || req.name == "none" {
            return Err(Error::NetworkExists(req.name.clone()));
        }
        if read_json::<NetworkInfo>(&self.network_path(&req.name))?.is_some() {
            return Err(Error::NetworkExists(req.name.clone()));
        }
        let bridge = req
            .bridge
            .clone()
            .unwrap_or_else(|| format!("lsbr{:08x}", fnv(&req.name) & 0xffff_ffff));
        if bridge.len() > 15 {
            return Err(Error::InvalidInput {
                what: "bridge name",
                value: bridge,
                reason: "at most 15 characters".into(),
            });
        }
        safe_name("bridge name", &bridge)?;
        let taken: Vec<Ipv4Network> = self.list_networks()?.iter().map(|n| n.subnet()).collect();
        if let Some(g) = req.gateway
            && let Some(t) = taken.iter().find(|t| crate::ipam::overlaps(t, &g))
        {
            return Err(Error::InvalidInput {
                what: "subnet",
                value: g.to_string(),
                reason: format!("overlaps the existing network {t}"),
            });
        }
        let (gateway, mtu) = self.host.run(|| {
            let mut nl = Netlink::open()?;
            let mtu = match req.mtu {
                Some(m) => m,
                None => self.default_mtu(&mut nl)?,
            };
            if let Some(g) = req.gateway {
                return Ok((g, mtu));
            }
            let routes: Vec<IpNetwork> =
                nl.routes_v4()?.into_iter().map(|r| r.destination).collect();
            pick_subnet(&routes, &taken)
                .map(|g| (g, mtu))
                .ok_or_else(|| Error::NoFreeSubnet {
                    network: req.name.clone(),
                })
        })?;
        let info = NetworkInfo {
            name: req.name.clone(),
            id: self.new_network_id()?,
            bridge,
            gateway,
            fixed_cidr: req.fixed_cidr,
            mtu,
            icc: !req.no_icc,
            masquerade: self.opts.ip_masq,
        };
        if let Err(e) = self.setup_network(&info, false) {
            let _ = self.remove_network_objects(&info);
            return Err(e);
        }
        Ok(info)
    }

    /// Every network of the state directory, sorted by name.
    pub fn list_networks(&self) -> Result<Vec<NetworkInfo>> {
        let dir = self.state.join("networks");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(file_err(&dir, "list"))? {
            let e = e.map_err(file_err(&dir, "list"))?;
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json")
                && let Some(n) = read_json::<NetworkInfo>(&p)?
            {
                out.push(n);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A network by name.
    pub fn network(&self, name: &str) -> Result<NetworkInfo> {
        safe_name("network name", name).map_err(|_| Error::NetworkNotFound(name.into()))?;
        read_json(&self.network_path(name))?.ok_or_else(|| Error::NetworkNotFound(name.into()))
    }

    /// Removes a user-defined network (its bridge, rules and pool). Refused while endpoints
    /// use it.
    pub fn remove_network(&self, name: &str) -> Result<()> {
        let info = self.network(name)?;
        let count = self
            .endpoints()?
            .iter()
            .filter(|e| e.network.as_deref() == Some(name))
            .count();
        if count > 0 {
            return Err(Error::NetworkInUse {
                network: name.into(),
                count,
            });
        }
        self.remove_network_objects(&info)
    }

    fn remove_network_objects(&self, info: &NetworkInfo) -> Result<()> {
        self.host
            .run(|| Netlink::open()?.delete_link(&info.bridge).map(drop))?;
        if self.opts.iptables {
            nft::delete_network_rules(&self.host, &info.name, &info.id)?;
        }
        self.ipam.remove_pool(&info.name)?;
        store::remove(&self.network_path(&info.name))
    }

    /// The address leases of a network (address to container id).
    pub fn leases(&self, network: &str) -> Result<std::collections::BTreeMap<Ipv4Addr, String>> {
        self.network(network)?;
        self.ipam.leases(network)
    }

    /// Every endpoint record of the state directory.
    pub fn endpoints(&self) -> Result<Vec<EndpointInfo>> {
        let dir = self.state.join("endpoints");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(file_err(&dir, "list"))? {
            let p = e.map_err(file_err(&dir, "list"))?.path();
            if p.extension().is_some_and(|x| x == "json") {
                let Some(id) = p.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                if let Some(ep) = Self::read_endpoint(&p, id)? {
                    out.push(ep);
                }
            }
        }
        Ok(out)
    }

    /// The endpoint of a container, by id or name.
    pub fn endpoint(&self, id_or_name: &str) -> Result<EndpointInfo> {
        if safe_name("container id", id_or_name).is_ok()
            && let Some(e) = Self::read_endpoint(&self.endpoint_path(id_or_name), id_or_name)?
        {
            return Ok(e);
        }
        self.endpoints()?
            .into_iter()
            .find(|e| e.container_name == id_or_name.trim_start_matches('/'))
            .ok_or_else(|| Error::EndpointNotFound(id_or_name.into()))
    }

    fn driver(&self, mode: &NetMode) -> &'static dyn Driver {
        match mode {
            NetMode::Bridge(_) => &BridgeDriver,
            NetMode::Host => &HostDriver,
            NetMode::None => &NoneDriver,
            NetMode::Container(_) => &ContainerDriver,
        }
    }

    fn driver_by_name(name: &str) -> &'static dyn Driver {
        match name {
            "host" => &HostDriver,
            "none" => &NoneDriver,
            "container" => &ContainerDriver,
            _ => &BridgeDriver,
        }
    }

    /// The state directory's connect lock: every `connect` (in any process) holds it shared
    /// for its whole run and `cleanup` holds it exclusive. Without it, a record written after
    /// cleanup listed the endpoints would make the new lease, port and rules look orphaned.
    fn connect_lock(&self, exclusive: bool) -> Result<nix::fcntl::Flock<fs::File>> {
        let path = self.state.join("connect.lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(file_err(&path, "open lock file"))?;
        let arg = if exclusive {
            nix::fcntl::FlockArg::LockExclusive
        } else {
            nix::fcntl::FlockArg::LockShared
        };
        nix::fcntl::Flock::lock(f, arg).map_err(|(_, e)| Error::File {
            path,
            what: "lock",
            source: e.into(),
        })
    }

    /// Connects a container: runs its driver, publishes ports, builds its files and link
    /// environment. On error everything done so far is undone.
    pub fn connect(&self, cfg: &EndpointConfig) -> Result<Endpoint> {
        safe_name("container id", &cfg.container_id)?;
        let _connecting = self.connect_lock(false)?;
        let path = self.endpoint_path(&cfg.container_id);
        if path.exists() {
            return Err(Error::AlreadyConnected(cfg.container_id.clone()));
        }
        Self::check_config(cfg)?;
        let driver = self.driver(&cfg.mode);
        let hostname = cfg
            .hostname
            .clone()
            .unwrap_or_else(|| cfg.container_id.chars().take(12).collect());
        let mut exposed = cfg.expose.clone();
        exposed.extend(cfg.publish.iter().map(|p| p.container));
        exposed.sort();
        exposed.dedup();
        let mut ep = EndpointInfo {
            container_id: cfg.container_id.clone(),
            container_name: cfg.container_name.trim_start_matches('/').to_string(),
            driver: driver.name().into(),
            network: None,
            ip: None,
            gateway: None,
            mac: None,
            veth: None,
            ports: vec![],
            rule_handles: vec![],
            exposed,
            netns: cfg
                .netns
                .as_ref()
                .map(|n| n.path().to_path_buf())
                .unwrap_or_default(),
            hostname,
            files_dir: cfg.files_dir.clone(),
            owner_pid: std::process::id(),
            owner_token: self.token.clone(),
        };
        driver.join(self, cfg, &mut ep)?;
        let built = self.build_files(cfg, &ep).and_then(|files| {
            if let Some(d) = &cfg.files_dir {
                files.write_to(d)?;
            }
            Ok(files)
        });
        let files = match built {
            Ok(f) => f,
            Err(e) => {
                let _ = self.teardown(&ep);
                return Err(e);
            }
        };
        self.update_peer_hosts(&ep, true);
        let link_env = cfg
            .links
            .iter()
            .flat_map(|l| l.env_vars(&ep.container_name))
            .collect();
        Ok(Endpoint {
            info: ep,
            files,
            link_env,
        })
    }

    fn check_config(cfg: &EndpointConfig) -> Result<()> {
        use crate::files::check_name;
        check_name("container name", cfg.container_name.trim_start_matches('/'))?;
        if let Some(h) = &cfg.hostname {
            check_name("hostname", h)?;
        }
        if let Some(d) = &cfg.domainname {
            check_name("domain name", d)?;
        }
        for s in &cfg.dns_search {
            check_name("--dns-search domain", s)?;
        }
        for e in &cfg.extra_hosts {
            for n in &e.names {
                check_name("--add-host name", n)?;
            }
        }
        for l in &cfg.links {
            check_name("--link alias", &l.alias)?;
            check_name("--link name", &l.name)?;
            if !l
                .alias
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(Error::InvalidInput {
                    what: "--link alias",
                    value: l.alias.clone(),
                    reason:
                        "use letters, digits, '-', '_' and '.' (it names environment variables)"
                            .into(),
                });
            }
        }
        Ok(())
    }

    fn build_files(&self, cfg: &EndpointConfig, ep: &EndpointInfo) -> Result<ContainerFiles> {
        let host_resolv = match fs::read_to_string(&self.opts.host_resolv_conf) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(file_err(&self.opts.host_resolv_conf, "read")(e)),
        };
        let mut extra = cfg.extra_hosts.clone();
        extra.extend(cfg.links.iter().map(Link::hosts_entry));
        // DNS-free name resolution on user-defined networks: the other members' names
        if let Some(net) = ep.network.as_deref().filter(|n| *n != DEFAULT_NETWORK) {
            for other in self.endpoints()? {
                if other.network.as_deref() == Some(net)
                    && other.container_id != ep.container_id
                    && let Some(ip) = other.ip
                {
                    extra.push(HostsEntry {
                        ip: IpAddr::V4(ip.ip()),
                        names: vec![other.container_name.clone()],
                    });
                }
            }
        }
        Ok(ContainerFiles {
            hosts: hosts_file(
                ep.ip.map(|i| IpAddr::V4(i.ip())),
                &ep.hostname,
                cfg.domainname.as_deref(),
                &extra,
            ),
            resolv_conf: resolv_conf(&host_resolv, &cfg.dns, &cfg.dns_search),
            hostname: format!("{}\n", ep.hostname),
        })
    }

    /// Disconnects a container: removes its rules, proxies, ports, lease, record and its name
    /// from its peers' hosts files before returning, and hands its veth to a background
    /// thread (deleting a veth blocks for about 20 ms in the kernel). [`Controller::flush`]
    /// waits for that thread; a new container never gets the name or address of a veth still
    /// waiting.
    pub fn disconnect(&self, container_id: &str) -> Result<()> {
        self.disconnect_as(container_id, false)
    }

    /// Disconnects a container whose network namespace is about to be destroyed (its last
    /// process is gone and the runtime drops its last reference): as [`Controller::disconnect`],
    /// but the veth pair is left to the kernel, which removes both ends with the namespace.
    /// Should the namespace live on after all, the background thread deletes the veth after
    /// a grace period ([`crate::reaper::NETNS_GRACE`]) or at the next [`Controller::flush`].
    pub fn disconnect_dying(&self, container_id: &str) -> Result<()> {
        self.disconnect_as(container_id, true)
    }

    fn disconnect_as(&self, container_id: &str, netns_dying: bool) -> Result<()> {
        safe_name("container id", container_id)?;
        let ep = Self::read_endpoint(&self.endpoint_path(container_id), container_id)?
            .ok_or_else(|| Error::EndpointNotFound(container_id.into()))?;
        self.teardown_as(&ep, netns_dying)
    }

    /// Waits until every veth handed to the background thread is deleted; returns the first
    /// error the thread met since the last flush. Dropping the controller flushes too.
    pub fn flush(&self) -> Result<()> {
        self.reaper.flush()
    }

    /// What the background veth thread did so far.
    pub fn reaper_stats(&self) -> ReaperStats {
        self.reaper.stats()
    }

    /// On user-defined networks, adds (or removes) `ep`'s name in the `/etc/hosts` of the
    /// other members whose files this controller wrote. Best effort: a member whose file
    /// cannot be rewritten keeps its old entries.
    fn update_peer_hosts(&self, ep: &EndpointInfo, add: bool) {
        let (Some(net), Some(ip)) = (ep.network.as_deref(), ep.ip) else {
            return;
        };
        if net == DEFAULT_NETWORK {
            return;
        }
        let line = format!("{} {}", ip.ip(), ep.container_name);
        let Ok(all) = self.endpoints() else {
            return;
        };
        for other in all {
            if other.network.as_deref() != Some(net) || other.container_id == ep.container_id {
                continue;
            }
            let Some(dir) = &other.files_dir else {
                continue;
            };
            let path = dir.join("hosts");
            let Ok(old) = fs::read_to_string(&path) else {
                continue;
            };
            let mut lines: Vec<&str> = old.lines().filter(|l| *l != line).collect();
            if add {
                lines.push(&line);
            }
            let mut new = lines.join("\n");
            new.push('\n');
            if new != old
                && let Err(e) = fs::write(&path, new)
            {
                eprintln!("longshore-network: update {}: {e}", path.display());
            }
        }
    }

    fn teardown(&self, ep: &EndpointInfo) -> Result<()> {
        self.teardown_as(ep, false)
    }

    fn teardown_as(&self, ep: &EndpointInfo, netns_dying: bool) -> Result<()> {
        self.update_peer_hosts(ep, false);
        let r = Self::driver_by_name(&ep.driver).leave(self, ep);
        if let Some(v) = &ep.veth {
            self.reaper
                .queue(v, ep.ip.map(|i| i.ip()), &ep.netns, netns_dying);
        }
        // gone from the directory now; its file is kept for the next record
        let path = self.endpoint_path(&ep.container_id);
        let r2 = match store::retire(&path) {
            Ok(Some(aside)) => {
                self.keep_spare(aside);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(_) => store::remove(&path),
        };
        r.and(r2)
    }

    /// Removes what crashed processes left: endpoints whose owner process is dead (or is this
    /// process under an earlier controller instance), and veths on our bridges, rules, leases
    /// and host ports that no endpoint record accounts for. Safe to run while controllers (in
    /// this or other processes) connect containers: it waits for the connects in progress,
    /// and new ones wait for it.
    pub fn cleanup(&self) -> Result<CleanupReport> {
        // no connect is half done while this looks for orphans (see connect_lock)
        let _alone = self.connect_lock(true)?;
        // veths still queued have no record any more: delete them first, so that they are
        // not reported as orphans (whatever the thread could not delete is swept below)
        let mut first_err = self.reaper.flush().err();
        let mut report = CleanupReport::default();
        let mut live = Vec::new();
        for ep in self.endpoints()? {
            let dead = !pid_alive(ep.owner_pid)
                || (ep.owner_pid == std::process::id() && ep.owner_token != self.token);
            if dead {
                match self.teardown(&ep) {
                    Ok(()) => report.endpoints.push(ep.container_id.clone()),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            } else {
                live.push(ep);
            }
        }
        if let Err(e) = self.reaper.flush() {
            first_err.get_or_insert(e);
        }
        let bridges: Vec<String> = self
            .list_networks()?
            .into_iter()
            .map(|n| n.bridge)
            .collect();
        let known: Vec<String> = live.iter().filter_map(|e| e.veth.clone()).collect();
        report.orphan_veths = self.host.run(|| {
            let mut nl = Netlink::open()?;
            let links = nl.links()?;
            let bridge_idx: Vec<u32> = links
                .iter()
                .filter(|l| bridges.contains(&l.name))
                .map(|l| l.index)
                .collect();
            let mut gone = Vec::new();
            for l in links {
                if l.controller.is_some_and(|c| bridge_idx.contains(&c))
                    && l.name.starts_with("lsv")
                    && !known.contains(&l.name)
                    && nl.delete_link(&l.name)?
                {
                    gone.push(l.name);
                }
            }
            Ok(gone)
        })?;
        if self.opts.iptables {
            let ids: Vec<String> = live
                .iter()
                .map(|e| format!("ep:{}", e.container_id))
                .collect();
            let mut tags = nft::tags(&self.host)?;
            tags.sort();
            tags.dedup();
            for tag in tags {
                if tag.starts_with("ep:") && !ids.contains(&tag) {
                    nft::delete_tagged(&self.host, &tag)?;
                    report.orphan_rules.push(tag);
                }
            }
        }
        let owners: Vec<&str> = live.iter().map(|e| e.container_id.as_str()).collect();
        for net in self.list_networks()? {
            for (ip, owner) in self.ipam.leases(&net.name)? {
                if !owners.contains(&owner.as_str()) && self.ipam.release(&net.name, ip)? {
                    report.orphan_leases.push(format!("{}/{ip}", net.name));
                }
            }
        }
        for (key, owner) in self.ports.used()? {
            if !owners.contains(&owner.as_str()) {
                self.ports.release_owner(&owner)?;
                report.orphan_ports.push(key);
            }
        }
        report.temp_files = self.remove_stale_temp_files()?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Removes the temporary files (`*.tmp<pid>-<n>`) of dead processes from the state
    /// directory and its subdirectories.
    fn remove_stale_temp_files(&self) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for sub in ["", "endpoints", "networks", "ipam"] {
            let dir = self.state.join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(file_err(&dir, "list")(e)),
            };
            for e in entries {
                let e = e.map_err(file_err(&dir, "list"))?;
                let name = e.file_name();
                let Some(pid) = name.to_str().and_then(store::stale_tmp_pid) else {
                    continue;
                };
                if pid != std::process::id() && !pid_alive(pid) {
                    store::remove(&e.path())?;
                    gone.push(Path::new(sub).join(&name).display().to_string());
                }
            }
        }
        gone.sort();
        Ok(gone)
    }

    fn publish(
        &self,
        cfg: &EndpointConfig,
        ep: &mut EndpointInfo,
        cip: Ipv4Addr,
        bridge: &str,
    ) -> Result<()> {
        let mut specs = cfg.publish.clone();
        if cfg.publish_all {
            for e in &ep.exposed {
                if !specs.iter().any(|s| s.container == *e) {
                    specs.push(PortSpec {
                        host_ip: None,
                        host_port: None,
                        container: *e,
                    });
                }
            }
        }
        let mut proxies = Vec::new();
        let res = (|| {
            for s in &specs {
                let host_ip = s.host_ip.unwrap_or(self.opts.ip);
                let proto = s.container.proto;
                let target = SocketAddr::from((cip, s.container.port));
                let mut started = None;
                let port =
                    self.ports
                        .allocate(&ep.container_id, host_ip, s.host_port, proto, |p| {
                            let listen = SocketAddr::from((host_ip, p));
                            if self.opts.userland_proxy {
                                started = Some(self.proxy_rt.start(proto, listen, target)?);
                                Ok(())
                            } else {
                                self.host.run(|| {
                                    let r = match proto {
                                        Proto::Tcp => TcpListener::bind(listen).map(drop),
                                        Proto::Udp => UdpSocket::bind(listen).map(drop),
                                    };
                                    r.map_err(|e| Error::PortAllocated {
                                        host_ip: host_ip.to_string(),
                                        host_port: p,
                                        proto: proto.as_str(),
                                        by: format!(" by another process: {e}"),
                                    })
                                })
                            }
                        });
                let port = port.map_err(|e| match e {
                    Error::Proxy { source, .. }
                        if source.kind() == std::io::ErrorKind::AddrInUse =>
                    {
                        Error::PortAllocated {
                            host_ip: host_ip.to_string(),
                            host_port: s.host_port.unwrap_or_default(),
                            proto: proto.as_str(),
                            by: " by another process".into(),
                        }
                    }
                    e => e,
                })?;
                proxies.extend(started);
                ep.ports.push(PortMapping {
                    host_ip,
                    host_port: port,
                    container_ip: cip,
                    container_port: s.container.port,
                    proto,
                });
            }
            // the caller writes the record once, with all ports and their rules' handles
            if self.opts.iptables && !ep.ports.is_empty() {
                let skip_iif = self.opts.userland_proxy.then_some(bridge);
                ep.rule_handles = match &self.nfnl {
                    Some(n) => n.lock().unwrap_or_else(|p| p.into_inner()).add_port_rules(
                        &ep.container_id,
                        &ep.ports,
                        skip_iif,
                    )?,
                    None => nft::add_port_rules(
                        &self.host,
                        self.nft.as_ref(),
                        &ep.container_id,
                        &ep.ports,
                        skip_iif,
                    )?,
                };
            }
            Ok(())
        })();
        self.proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ep.container_id.clone(), proxies);
        res
    }
}

impl Driver for BridgeDriver {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn join(&self, ctl: &Controller, cfg: &EndpointConfig, ep: &mut EndpointInfo) -> Result<()> {
        let NetMode::Bridge(name) = &cfg.mode else {
            unreachable!("bridge driver used for {:?}", cfg.mode)
        };
        let net = ctl.network(name)?;
        let netns = cfg.netns.as_ref().ok_or_else(|| Error::InvalidInput {
            what: "endpoint config",
            value: cfg.container_id.clone(),
            reason: "a bridge network needs the container's network namespace".into(),
        })?;
        if netns.same_as(&ctl.host) {
            return Err(Error::InvalidInput {
                what: "endpoint config",
                value: cfg.container_id.clone(),
                reason: "the container namespace is the host namespace; use --net=host".into(),
            });
        }
        // recorded before anything is allocated or created: crash cleanup finds partial
        // setups, and a lease or port whose owner has no record is certainly orphaned
        let path = ctl.endpoint_path(&cfg.container_id);
        let veth = veth_name(&cfg.container_id);
        ep.network = Some(net.name.clone());
        ep.veth = Some(veth.clone());
        if !ctl.create_record(ep)? {
            return Err(Error::AlreadyConnected(cfg.container_id.clone()));
        }
        let ip = match ctl.ipam.allocate(&net.name, &cfg.container_id, cfg.ip) {
            Ok(ip) => ip,
            Err(e) => {
                let _ = store::remove(&path);
                return Err(e);
            }
        };
        // an earlier container's veth with this name, address or namespace may still be
        // queued for deletion: never have two on the bridge (same address and MAC), nor
        // meet the old eth0 in the namespace
        ctl.reaper.wait_clear(&veth, Some(ip), netns.path());
        let cidr = Ipv4Network::new(ip, net.gateway.prefix()).expect("prefix of a valid network");
        let mac = cfg.mac.unwrap_or_else(|| mac_for(ip));
        ep.ip = Some(cidr);
        ep.gateway = Some(net.gateway.ip());
        ep.mac = Some(mac_string(mac));
        // --icc=false: the veth joins the isolation set (which matches names) and the link
        // exceptions are in place before the veth exists, so its first frame is isolated
        let isolate = || -> Result<()> {
            if net.icc || !ctl.opts.iptables {
                return Ok(());
            }
            nft::icc_member(&ctl.host, &net.name, &net.id, &veth, true)?;
            for l in &cfg.links {
                if let IpAddr::V4(child) = l.ip {
                    nft::add_link_rules(
                        &ctl.host,
                        &cfg.container_id,
                        &net.bridge,
                        ip,
                        child,
                        &l.ports,
                    )?;
                }
            }
            Ok(())
        };
        let res = isolate()
            .and_then(|()| {
                ctl.host.run(|| {
                    let mut h = Netlink::open()?;
                    let br = h.link(&net.bridge)?.ok_or_else(|| Error::Netlink {
                        op: format!("find bridge {} of network {}", net.bridge, net.name),
                        source: std::io::Error::from_raw_os_error(libc::ENODEV),
                    })?;
                    let peer = VethPeer {
                        name: "eth0",
                        mac,
                        netns,
                    };
                    let idx = match h.create_veth(&veth, br.index, net.mtu, &peer) {
                        // a queued veth under another path of the same namespace: delete the
                        // queue now and try once more
                        Err(Error::Netlink { source, .. })
                            if source.raw_os_error() == Some(libc::EEXIST)
                                && ctl.reaper.stats().pending > 0 =>
                        {
                            ctl.reaper.flush()?;
                            h.create_veth(&veth, br.index, net.mtu, &peer)?
                        }
                        r => r?,
                    };
                    // without firewall rules, --icc=false falls back to bridge port isolation
                    // (no link exceptions possible)
                    if !net.icc && !ctl.opts.iptables {
                        h.set_port_isolated(idx, &veth, true)?;
                    }
                    netns.enter()?;
                    let mut c = Netlink::open()?;
                    let eth = c.link("eth0")?.ok_or_else(|| Error::Netlink {
                        op: format!("find eth0 in {}", netns.path().display()),
                        source: std::io::Error::from_raw_os_error(libc::ENODEV),
                    })?;
                    c.set_up(eth.index, "eth0")?;
                    c.add_address(eth.index, "eth0", IpNetwork::V4(cidr))?;
                    c.add_default_route(eth.index, net.gateway.ip())?;
                    c.set_up_by_name("lo")
                })
            })
            .and_then(|()| ctl.publish(cfg, ep, ip, &net.bridge))
            // the complete record (address, ports, rule handles) in one more write: a crash
            // before it leaves the first record, from which cleanup deletes the veth by
            // name, the rules by tag and the ports by owner, and whose lease (an owner
            // without a live record) it releases as an orphan
            .and_then(|()| store::update_record(&path, &*ep));
        if let Err(e) = res {
            let _ = ctl.teardown(ep);
            return Err(e);
        }
        Ok(())
    }

    fn leave(&self, ctl: &Controller, ep: &EndpointInfo) -> Result<()> {
        let mut first: Option<Error> = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        let proxies = ctl
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ep.container_id);
        drop(proxies);
        let isolated = ep
            .network
            .as_deref()
            .and_then(|n| ctl.network(n).ok())
            .filter(|n| !n.icc);
        // the DNAT rules by handle (one nft run) when this controller instance added them
        // (so the handles are of this incarnation of the table); link rules and everything
        // else by tag (listing the ruleset first)
        // a record of another incarnation may lack the ports whose rules a crash left
        let mut by_tag = isolated.is_some() || ep.owner_token != ctl.token;
        if ctl.opts.iptables && !ep.ports.is_empty() {
            if ep.owner_token == ctl.token && ep.rule_handles.len() == ep.ports.len() {
                let deleted = match &ctl.nfnl {
                    Some(n) => n
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .delete_port_rules(&ep.container_id, &ep.rule_handles),
                    None => nft::delete_port_rules(
                        &ctl.host,
                        ctl.nft.as_ref(),
                        &ep.container_id,
                        &ep.rule_handles,
                    ),
                };
                match deleted {
                    Ok(true) => {}
                    Ok(false) => by_tag = true,
                    Err(e) => {
                        keep(Err(e));
                        by_tag = true;
                    }
                }
            } else {
                by_tag = true;
            }
        }
        if ctl.opts.iptables && by_tag {
            keep(nft::delete_tagged(&ctl.host, &format!("ep:{}", ep.container_id)).map(drop));
        }
        if let (true, Some(net), Some(v)) = (ctl.opts.iptables, &isolated, &ep.veth) {
            // the veth leaves the isolation set only once it forwards nothing (it is deleted
            // later, in the background): no window at teardown either
            let down = ctl
                .host
                .run(|| Netlink::open()?.set_down_by_name(v))
                .map(drop);
            if down.is_ok() {
                keep(nft::icc_member(&ctl.host, &net.name, &net.id, v, false));
            } else {
                keep(down);
            }
        }
        keep(ctl.ports.release_owner(&ep.container_id).map(drop));
        // the veth (ep.veth) is deleted by the controller's background thread
        if let (Some(net), Some(ip)) = (&ep.network, ep.ip) {
            keep(ctl.ipam.release(net, ip.ip()).map(drop));
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Writes the record of an endpoint set up in one step.
fn create_record(ctl: &Controller, ep: &EndpointInfo) -> Result<()> {
    if ctl.create_record(ep)? {
        Ok(())
    } else {
        Err(Error::AlreadyConnected(ep.container_id.clone()))
    }
}

impl Driver for HostDriver {
    fn name(&self) -> &'static str {
        "host"
    }

    fn join(&self, ctl: &Controller, _cfg: &EndpointConfig, ep: &mut EndpointInfo) -> Result<()> {
        ep.netns = ctl.host.path().to_path_buf();
        if let Ok(h) = fs::read_to_string("/proc/sys/kernel/hostname") {
            ep.hostname = h.trim().to_string();
        }
        create_record(ctl, ep)
    }

    fn leave(&self, _ctl: &Controller, _ep: &EndpointInfo) -> Result<()> {
        Ok(())
    }
}

impl Driver for NoneDriver {
    fn name(&self) -> &'static str {
        "none"
    }

    fn join(&self, ctl: &Controller, cfg: &EndpointConfig, ep: &mut EndpointInfo) -> Result<()> {
        let netns = cfg.netns.as_ref().ok_or_else(|| Error::InvalidInput {
            what: "endpoint config",
            value: cfg.container_id.clone(),
            reason: "--net=none needs the container's network namespace".into(),
        })?;
        netns.run(|| Netlink::open()?.set_up_by_name("lo"))?;
        create_record(ctl, ep)
    }

    fn leave(&self, _ctl: &Controller, _ep: &EndpointInfo) -> Result<()> {
        Ok(())
    }
}

impl Driver for ContainerDriver {
    fn name(&self) -> &'static str {
        "container"
    }

    fn join(&self, ctl: &Controller, cfg: &EndpointConfig, ep: &mut EndpointInfo) -> Result<()> {
        let NetMode::Container(other) = &cfg.mode else {
            unreachable!("container driver used for {:?}", cfg.mode)
        };
        let o = ctl.endpoint(other)?;
        ep.netns = o.netns.clone();
        ep.ip = o.ip;
        ep.gateway = o.gateway;
        ep.mac = o.mac.clone();
        ep.network = None;
        ep.hostname = o.hostname.clone();
        create_record(ctl, ep)
    }

    fn leave(&self, _ctl: &Controller, _ep: &EndpointInfo) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_modes_and_macs() {
        assert_eq!(
            "bridge".parse::<NetMode>().unwrap(),
            NetMode::Bridge("bridge".into())
        );
        assert_eq!("host".parse::<NetMode>().unwrap(), NetMode::Host);
        assert_eq!("none".parse::<NetMode>().unwrap(), NetMode::None);
        assert_eq!(
            "container:abc".parse::<NetMode>().unwrap(),
            NetMode::Container("abc".into())
        );
        assert!("container:".parse::<NetMode>().is_err());
        assert_eq!(
            mac_string(mac_for("172.17.0.8".parse().unwrap())),
            "02:42:ac:11:00:08"
        );
        assert_eq!(
            parse_mac("02:42:ac:11:00:0a").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 0xa]
        );
        assert!(parse_mac("01:00:00:00:00:00").is_err());
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("zz:42:ac:11:00:00").is_err());
        assert_eq!(veth_name("abc").len(), 15);
        assert!(safe_name("x", "../etc").is_err());
    }
}
