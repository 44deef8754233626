//! # longshore-network
//!
//! Container networking as a library: the seed's network driver (4.2.5.2), the run options
//! of 6.1.19 (`--net`, `-p`/`-P`, `--expose`, `--link`, `--dns`, `--dns-search`,
//! `--add-host`, `-h`, `--mac-address`, `--network-alias`) and the daemon's `--bridge`,
//! `--bip`, `--fixed-cidr`, `--mtu`, `--icc`, `--ip`, `--ip-forward`, `--ip-masq` and
//! `--iptables`. No daemon: every process that opens a [`Controller`] on the same state
//! directory shares its networks, leases, ports and rules (file locks coordinate them).
//!
//! ## Using it
//!
//! 1. Open a [`Controller`] on a state directory and the namespace that plays the host
//!    ([`netns::NetnsRef::current`] for the machine's own), with [`DaemonOptions`]. The
//!    first open creates the default bridge network `bridge` and its nftables rules; later
//!    opens find them in place.
//! 2. Create the container's network namespace (a runtime does; [`netns::NamedNetns`] here)
//!    and [`Controller::connect`] it with an [`EndpointConfig`]: it returns the
//!    [`Endpoint`] it set up (address, MAC, veth, published ports), the contents of the
//!    container's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` (also written to
//!    [`EndpointConfig::files_dir`] when set, for the runtime to bind-mount) and the
//!    environment of `--link`.
//! 3. [`Controller::disconnect`] undoes all of it when the container stops;
//!    [`Controller::cleanup`] removes what a crashed process left behind.
//!
//! User-defined networks ([`Controller::create_network`] with a [`NetworkCreate`]) give
//! their members name resolution without a DNS server: each member's `hosts` file lists the
//! others by name and alias, and is rewritten in place as members join and leave.
//!
//! The example plays the host in a namespace of its own, so it leaves the machine's network
//! alone. It needs root (namespaces, a bridge, nftables) and returns early without it:
//!
//! ```
//! use longshore_network::netns::NamedNetns;
//! use longshore_network::{Controller, DaemonOptions, EndpointConfig, NetworkCreate};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! if !nix::unistd::Uid::effective().is_root() {
//!     eprintln!("skipped: needs root");
//!     return Ok(());
//! }
//! let pid = std::process::id();
//! let host = NamedNetns::create(&format!("lsdh{pid}"))?; // the "host"
//! let web = NamedNetns::create(&format!("lsdw{pid}"))?; // two containers' namespaces
//! let db = NamedNetns::create(&format!("lsdd{pid}"))?;
//! let state = tempfile::Builder::new().prefix("longshore-").tempdir()?;
//!
//! let mut opts = DaemonOptions::default();
//! opts.bridge = format!("lsdb{pid}");
//! let ctl = Controller::new(state.path(), host.netns().clone(), opts)?;
//!
//! // the default bridge, with a published port (-p 8080:80)
//! let cfg = EndpointConfig::new("web", Some(web.netns().clone())).publish("8080:80".parse()?);
//! let ep = ctl.connect(&cfg)?;
//! assert_eq!(ep.info.ip.unwrap().to_string(), "172.17.0.1/16");
//! assert_eq!(ep.info.ports[0].to_string(), "0.0.0.0:8080->80/tcp");
//! assert!(ep.files.hosts.starts_with("172.17.0.1 web\n127.0.0.1 localhost\n"));
//! ctl.disconnect("web")?; // rules, proxy, port and lease are gone
//!
//! // a user-defined network: its members find each other by name
//! ctl.create_network(&NetworkCreate::new(format!("back{pid}")))?;
//! let mode: longshore_network::NetMode = format!("back{pid}").parse()?;
//! let a = EndpointConfig::new("a1", Some(web.netns().clone())).name("api").mode(mode.clone());
//! let b = EndpointConfig::new("d1", Some(db.netns().clone())).name("db").mode(mode);
//! let api = ctl.connect(&a)?;
//! let dbe = ctl.connect(&b)?;
//! let api_ip = api.info.ip.unwrap().ip();
//! assert!(dbe.files.hosts.contains(&format!("{api_ip} api\n")));
//! ctl.disconnect("a1")?;
//! ctl.disconnect("d1")?;
//! ctl.remove_network(&format!("back{pid}"))?;
//! ctl.flush()?; // waits for the veths, deleted in the background
//! # Ok(())
//! # }
//! ```
//!
//! ## Inside
//!
//! A bridge network is a Linux bridge; a container joins it through a veth pair created
//! with its peer directly in the container's namespace (synchronous rtnetlink, from a
//! short-lived thread that enters each namespace). Addresses are leased from files under
//! the state directory (`flock`), skipping the host's routes as Docker 1.4 did. Firewall
//! rules live in the nftables tables `ip longshore` and `bridge longshore`; the
//! per-container DNAT rules go to the kernel as raw `nf_tables` netlink batches.
//! Host-side veths are deleted in batches by a background thread, because the kernel
//! takes about 20 ms per deletion. Published ports to loopback are served by a tokio
//! userland proxy. Measurements and what bounds them: `BENCHMARKS.md` in this crate.
//!
//! ## Safety of the machine's network
//!
//! Nothing here changes the calling thread's namespace: work inside a namespace runs on a
//! short-lived thread that `setns(2)`s into it ([`netns::NetnsRef::run`]). Link names created
//! here start with `ls` and the nftables table is `longshore`.
//!
//! ## What the firewall rules hold, and what they do not
//!
//! With `--iptables` (the default), in the host namespace (`src/nft.rs` has the rule sets):
//!
//! * ports published on a loopback address (`-p 127.0.0.1:8080:80`) stay local: packets to
//!   127.0.0.0/8 that did not arrive on `lo` are dropped before any DNAT, so a neighbour
//!   that routes 127.0.0.1 via the host reaches nothing (CVE-2020-8558; Docker 28 does the
//!   same);
//! * forwarding is filtered (policy drop in `ip longshore`, Docker's since 1.13): established
//!   and related traffic, published ports, containers' own outgoing traffic,
//!   inter-container traffic where `--icc` allows it, links, and what the user accepts in
//!   the chain `ip longshore forward-user` (kept across restarts, like Docker's
//!   `DOCKER-USER`) pass; nothing else, so a neighbour that routes a container subnet via
//!   the host does not reach unpublished ports, and the host does not route between its
//!   other interfaces. Other tables are not touched; being a separate base chain, ours
//!   drops what another table's forward chain accepts, as Docker's policy does;
//! * `--icc=false` holds at both layers and at every moment: between isolated ports every
//!   frame but ARP is dropped (tagged 802.1Q/VLAN 0 frames included), and the ip family
//!   drops traffic routed from an isolated bridge back into it (a container routing to its
//!   neighbour via the gateway). A veth joins its network's isolation set before it is
//!   created and leaves it only after it is down; a controller start replaces rules in one
//!   transaction. Link exceptions are stateful in the ip family: the parent opens
//!   connections to the linked ports, replies pass as established.
//!
//! Not prevented, as with Docker: a container with `CAP_NET_RAW` (a default capability) can
//! send frames with another container's IP or MAC address as source. Nothing binds an
//! address to its veth, so a container on a network with inter-container communication can
//! spoof its neighbours' addresses and poison their ARP caches, and on an isolated network
//! it can send as its linked parent to the linked ports of the child (a spoofed source
//! does not get the replies, which go to the real owner). ARP itself passes between
//! isolated ports, so an isolated container can still poison a neighbour's ARP entry for
//! the gateway: that neighbour's frames then go to the attacker's port and are dropped (a
//! denial of service, not a way to read or reach it). Without `--iptables`, `--icc=false` is bridge port isolation only (no
//! link exceptions) and nothing filters forwarding; IPv6 forwarding is not enabled and not
//! filtered.

#![deny(unsafe_code)]

mod controller;
mod error;
pub mod files;
mod ipam;
// loads libnftables.so.1 with dlopen: the crate's only unsafe code, each block with a
// SAFETY comment
#[allow(unsafe_code)]
mod libnft;
mod netlink;
pub mod netns;
mod nfnl;
mod nft;
pub mod ports;
mod proxy;
mod reaper;
mod store;
// the tests send raw frames (AF_PACKET) as an attacker would
#[cfg(test)]
#[allow(unsafe_code)]
mod tests;

pub use controller::{
    CleanupReport, Controller, DEFAULT_BRIDGE, DEFAULT_NETWORK, DaemonOptions, Endpoint,
    EndpointConfig, EndpointInfo, Icc, NetMode, NetworkCreate, NetworkInfo, parse_mac, veth_name,
};
pub use error::{Error, Result};
pub use reaper::ReaperStats;

/// The package name, for diagnostics.
pub const CRATE_NAME: &str = "longshore-network";
