//! What a caller fills in and what it gets back.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{ContainerFiles, HostsEntry, Link};
use crate::netns::NetnsRef;
use crate::ports::{ExposedPort, PortMapping, PortSpec};

/// Name of the default bridge network.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Default bridge device name.
pub const DEFAULT_BRIDGE: &str = "longshore0";

/// The daemon-wide options of the seed (`docker -d --bridge --bip ...`).
///
/// Start from [`DaemonOptions::default`] (Docker's defaults) and change the fields you need:
///
/// ```
/// let mut opts = longshore_network::DaemonOptions::default();
/// opts.bridge = "lsdemo0".into();
/// opts.userland_proxy = false;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
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
#[non_exhaustive]
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
    /// `docker network create --label`: metadata, kept with the record.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `--aux-address name=ip`: addresses of the subnet never handed out (leased to
    /// `aux-address <name>` in the pool).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    /// `--internal`: no traffic between the bridge and the outside.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
}

impl NetworkInfo {
    /// The subnet (`172.17.0.0/16`).
    pub fn subnet(&self) -> Ipv4Network {
        Ipv4Network::new(self.gateway.network(), self.gateway.prefix()).expect("same prefix")
    }
}

/// Inter-container communication on a bridge network (`--icc`,
/// `com.docker.network.bridge.enable_icc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Icc {
    /// Containers of the network reach each other (Docker's default).
    #[default]
    Allowed,
    /// Containers reach each other only through `--link` exceptions and published ports.
    Isolated,
}

/// Options of a user-defined network, built from [`NetworkCreate::new`]:
///
/// ```
/// use longshore_network::{Icc, NetworkCreate};
///
/// let req = NetworkCreate::new("backend")
///     .gateway("10.77.0.1/24".parse().unwrap())
///     .mtu(1400)
///     .icc(Icc::Isolated);
/// assert_eq!(req.driver, "bridge");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NetworkCreate {
    /// Network name.
    pub name: String,
    /// Driver name; only `bridge` creates networks (`host` and `none` exist already), any
    /// other name is refused with [`Error::UnknownDriver`].
    pub driver: String,
    /// Bridge device (default `lsbr` + a hash of the name).
    pub bridge: Option<String>,
    /// Gateway/prefix (default: the first free subnet of the pool).
    pub gateway: Option<Ipv4Network>,
    /// Allocation range.
    pub fixed_cidr: Option<Ipv4Network>,
    /// MTU (default as for the default network).
    pub mtu: Option<u32>,
    /// Inter-container communication.
    pub icc: Icc,
    /// Labels (metadata only).
    pub labels: BTreeMap<String, String>,
    /// Addresses of the subnet the pool must not hand out (`--aux-address`).
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    /// `--internal`: containers reach each other only, nothing outside.
    pub internal: bool,
}

impl NetworkCreate {
    /// A bridge network named `name` with every other option at its default.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            driver: DEFAULT_NETWORK.into(),
            bridge: None,
            gateway: None,
            fixed_cidr: None,
            mtu: None,
            icc: Icc::Allowed,
            labels: BTreeMap::new(),
            aux_addresses: BTreeMap::new(),
            internal: false,
        }
    }

    /// The driver (`bridge`).
    pub fn driver(mut self, driver: impl Into<String>) -> Self {
        self.driver = driver.into();
        self
    }

    /// The bridge device (at most 15 characters).
    pub fn bridge(mut self, bridge: impl Into<String>) -> Self {
        self.bridge = Some(bridge.into());
        self
    }

    /// The gateway address with the subnet's prefix (`--subnet`; the gateway is usually the
    /// subnet's first address).
    pub fn gateway(mut self, gateway: Ipv4Network) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// The range containers get addresses from (`--ip-range`).
    pub fn fixed_cidr(mut self, range: Ipv4Network) -> Self {
        self.fixed_cidr = Some(range);
        self
    }

    /// The MTU of the bridge and the veths.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Inter-container communication.
    pub fn icc(mut self, icc: Icc) -> Self {
        self.icc = icc;
        self
    }
}

/// `--net`: which network a container joins.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

/// What a container asks for (the run options of the seed's 6.1.19), built from
/// [`EndpointConfig::new`]:
///
/// ```
/// use longshore_network::{EndpointConfig, NetMode};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cfg = EndpointConfig::new("4f2a0c", None)
///     .name("web")
///     .mode("backend".parse()?) // --net backend
///     .alias("www") // --network-alias www
///     .publish("8080:80".parse()?) // -p 8080:80
///     .files_dir("/var/lib/longshore/containers/4f2a0c");
/// assert_eq!(cfg.mode, NetMode::Bridge("backend".into()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// Container id (owner of leases, rules and ports).
    pub container_id: String,
    /// Container name (for links' `ALIAS_NAME=/name/alias` and hosts entries).
    pub container_name: String,
    /// `--network-alias`: more names the container has for the other members of a
    /// user-defined network (besides its name).
    pub aliases: Vec<String>,
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
    /// Where to write `hosts`, `resolv.conf` and `hostname` (none: only returned). On a
    /// user-defined network the controller keeps `hosts` up to date as other containers
    /// join and leave (rewritten in place, so a bind mount of it sees the change).
    pub files_dir: Option<PathBuf>,
    /// The interface's name inside the container (default `eth0`). An endpoint given
    /// another name is an additional one (a running container connected to one more
    /// network): it gets its address on that interface, and the default route stays on
    /// the first endpoint's `eth0`.
    pub interface: Option<String>,
}

impl EndpointConfig {
    /// A config for the default bridge with everything else unset.
    pub fn new(container_id: &str, netns: Option<NetnsRef>) -> Self {
        Self {
            container_id: container_id.into(),
            container_name: container_id.into(),
            aliases: vec![],
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
            interface: None,
        }
    }

    /// An additional endpoint's interface name inside the container (`eth1`): no default
    /// route through it.
    pub fn interface(mut self, name: impl Into<String>) -> Self {
        self.interface = Some(name.into());
        self
    }

    /// The container's name (default: its id).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.container_name = name.into();
        self
    }

    /// Another name on user-defined networks (`--network-alias`).
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// The network (`--net`).
    pub fn mode(mut self, mode: NetMode) -> Self {
        self.mode = mode;
        self
    }

    /// The hostname (`-h`).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// The domain name.
    pub fn domainname(mut self, domainname: impl Into<String>) -> Self {
        self.domainname = Some(domainname.into());
        self
    }

    /// The MAC address (`--mac-address`, see [`crate::parse_mac`]).
    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = Some(mac);
        self
    }

    /// A specific address (`--ip`).
    pub fn ip(mut self, ip: Ipv4Addr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// One more published port (`-p`).
    pub fn publish(mut self, spec: PortSpec) -> Self {
        self.publish.push(spec);
        self
    }

    /// Publishes every exposed port on a dynamic host port (`-P`).
    pub fn publish_all(mut self) -> Self {
        self.publish_all = true;
        self
    }

    /// One more exposed port (`--expose`, the image's exposed ports).
    pub fn expose(mut self, port: ExposedPort) -> Self {
        self.expose.push(port);
        self
    }

    /// One more `--link`.
    pub fn link(mut self, link: Link) -> Self {
        self.links.push(link);
        self
    }

    /// One more `--dns` server.
    pub fn dns(mut self, server: IpAddr) -> Self {
        self.dns.push(server);
        self
    }

    /// One more `--dns-search` domain.
    pub fn dns_search(mut self, domain: impl Into<String>) -> Self {
        self.dns_search.push(domain.into());
        self
    }

    /// One more `--add-host` entry.
    pub fn extra_host(mut self, entry: HostsEntry) -> Self {
        self.extra_hosts.push(entry);
        self
    }

    /// Where the container's `hosts`, `resolv.conf` and `hostname` are written.
    pub fn files_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.files_dir = Some(dir.into());
        self
    }
}

/// What was set up for a container; persisted in `<state>/endpoints/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointInfo {
    /// Container id.
    pub container_id: String,
    /// Container name.
    pub container_name: String,
    /// `--network-alias` names.
    #[serde(default)]
    pub aliases: Vec<String>,
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
    /// Set in the complete record (none in the first one, written before anything is
    /// allocated): the handle of the nftables table the controller found when it opened.
    /// A controller of another process that finds the same table deletes the port rules by
    /// `rule_handles` (a table created again has another handle), and knows that a record
    /// without ports has no rules to delete.
    #[serde(default)]
    pub(crate) rules_table: Option<u64>,
    /// Pid of the process that set it up (crash detection).
    pub owner_pid: u32,
    /// Instance token of the controller that set it up.
    pub owner_token: String,
}

impl EndpointInfo {
    /// The names other members of a user-defined network know the container by: its name,
    /// then its aliases.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![self.container_name.clone()];
        names.extend(
            self.aliases
                .iter()
                .filter(|a| **a != self.container_name)
                .cloned(),
        );
        names
    }
}

/// The result of [`crate::Controller::connect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Endpoint {
    /// What was set up.
    pub info: EndpointInfo,
    /// `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` contents.
    pub files: ContainerFiles,
    /// Environment variables from `--link`.
    pub link_env: Vec<String>,
}

/// What [`crate::Controller::cleanup`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
