//! # longshore-network
//!
//! Container networking, the seed's network driver (4.2.5.2) and the run options of 6.1.19
//! (`--net`, `-p`/`-P`, `--expose`, `--link`, `--dns`, `--dns-search`, `--add-host`, `-h`,
//! `--mac-address`) with the daemon's `--bridge`, `--bip`, `--fixed-cidr`, `--mtu`, `--icc`,
//! `--ip`, `--ip-forward`, `--ip-masq` and `--iptables`, as a library.
//!
//! A [`Controller`] owns the networks of one state directory inside one *host* network
//! namespace. [`Controller::connect`] takes a container's namespace (a [`netns::NetnsRef`] from
//! a path or a pid) and returns what it set up ([`Endpoint`]): address, MAC, veth, published
//! ports, the contents of `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, and the
//! environment of `--link`. [`Controller::disconnect`] undoes all of it, and
//! [`Controller::cleanup`] removes what a crashed process left behind.
//!
//! * drivers behind the [`Driver`] trait: [`BridgeDriver`] (default and user-defined bridge
//!   networks), [`HostDriver`], [`NoneDriver`], [`ContainerDriver`] (`container:<id>`);
//! * [`netlink`]: a thin synchronous rtnetlink layer (bridge, veth pair created with its peer
//!   directly in the container's namespace, addresses, routes, bridge port isolation for
//!   `--icc=false` when `--iptables=false`);
//! * [`ipam`]: leases persisted under the state directory with `flock`, Docker 1.4's
//!   candidate subnets skipping the host's routes;
//! * [`nft`]: DNAT, masquerade and hairpin rules in the nftables table `ip longshore`, and
//!   `--icc=false` isolation with link exceptions in `bridge longshore`;
//! * [`proxy`]: the tokio userland proxy (TCP and UDP) for traffic to loopback;
//! * [`files`]: hosts, resolv.conf, hostname and link variables in Docker 1.4's format.
//!
//! ## Attaching a namespace to a bridge with a published port
//!
//! The example plays the host in a namespace of its own, so it leaves the machine's network
//! alone (it needs root and skips otherwise):
//!
//! ```
//! use longshore_network::netns::NamedNetns;
//! use longshore_network::{Controller, DaemonOptions, EndpointConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # if !nix::unistd::Uid::effective().is_root() { return Ok(()); }
//! let pid = std::process::id();
//! let host = NamedNetns::create(&format!("lsdh{pid}"))?; // the "host"
//! let ctr = NamedNetns::create(&format!("lsdc{pid}"))?; // the container's namespace
//! let state = tempfile::Builder::new().prefix("longshore-").tempdir()?;
//!
//! let opts = DaemonOptions {
//!     bridge: format!("lsdb{pid}"),
//!     ..DaemonOptions::default()
//! };
//! let ctl = Controller::new(state.path(), host.netns().clone(), opts)?;
//!
//! let mut cfg = EndpointConfig::new("web", Some(ctr.netns().clone()));
//! cfg.publish = vec!["8080:80".parse()?]; // -p 8080:80
//! let ep = ctl.connect(&cfg)?;
//! assert_eq!(ep.info.ip.unwrap().to_string(), "172.17.0.1/16");
//! assert_eq!(ep.info.mac.as_deref(), Some("02:42:ac:11:00:01"));
//! assert_eq!(ep.info.ports[0].to_string(), "0.0.0.0:8080->80/tcp");
//! assert!(ep.files.hosts.starts_with("172.17.0.1 web\n127.0.0.1 localhost\n"));
//!
//! ctl.disconnect("web")?; // veth, rules, proxy, port and lease are gone
//! # Ok(())
//! # }
//! ```
//!
//! ## Speed
//!
//! `benches/setup.rs` (`benches/setup.sh`) measures one container on the default bridge in
//! its own namespaces. On the 2-core development VM, under a load average of 4-6 from other
//! builds: setup (veth pair, eth0 address and route, loopback, lease, record, three files)
//! 3.1-4.8 ms; teardown about 30 ms; with one published port, setup 11-16 ms and teardown
//! 50-56 ms. Teardown is bound by the kernel: deleting a veth pair (`RTM_DELLINK`) waits for
//! RCU grace periods and takes about 20 ms here even with `ip link del`. The port case is
//! bound by `nft` process spawns (one to add, two to list and delete) and the proxy thread.
//! Docker spends about 70 ms on networking per `docker run` on the same machine.
//!
//! ## Safety of the machine's network
//!
//! Nothing here changes the calling thread's namespace: work inside a namespace runs on a
//! short-lived thread that `setns(2)`s into it ([`netns::NetnsRef::run`]). Link names created
//! here start with `ls` and the nftables table is `longshore`.

pub mod controller;
pub mod error;
pub mod files;
pub mod ipam;
pub mod libnft;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod ports;
pub mod proxy;
pub mod reaper;
mod store;

pub use controller::{
    BridgeDriver, CleanupReport, ContainerDriver, Controller, DEFAULT_BRIDGE, DEFAULT_NETWORK,
    DaemonOptions, Driver, Endpoint, EndpointConfig, EndpointInfo, HostDriver, NetMode,
    NetworkCreate, NetworkInfo, NoneDriver, parse_mac, veth_name,
};
pub use error::{Error, Result};
pub use reaper::ReaperStats;

/// The package name, for diagnostics.
pub const CRATE_NAME: &str = "longshore-network";
