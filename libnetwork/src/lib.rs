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
//! environment of `--link`. [`Controller::disconnect`] undoes all of it (the veth in the
//! background, see [`Controller::flush`]), and [`Controller::cleanup`] removes what a crashed
//! process left behind.
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
//! * [`libnft`]: the same rules through `libnftables` in process, without spawning `nft`;
//! * [`reaper`]: host-side veths deleted in batches on a background thread;
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
//! ctl.disconnect("web")?; // rules, proxy, port and lease are gone
//! ctl.flush()?; // and the veth pair, deleted in the background
//! # Ok(())
//! # }
//! ```
//!
//! ## Speed
//!
//! `benches/setup.rs` (`benches/setup.sh`) measures one container on the default bridge in
//! its own namespaces (the container namespace is created outside the timed part). On the
//! 2-core development VM under a load average of 6-9 from other engineers' builds, criterion
//! medians; "now" is the range over four runs, which mostly measures the machine's load:
//!
//! | per container                                       | before  | now          |
//! |-----------------------------------------------------|---------|--------------|
//! | setup (plain)                                       | 3.9 ms  | 2.8-4.4 ms   |
//! | teardown (plain)                                    | 28 ms   | 1.2-3.9 ms   |
//! | setup + teardown (plain)                            | 32 ms   | 2.8-8.9 ms   |
//! | teardown, namespace destroyed first                 | -       | 1.2-4.3 ms   |
//! | setup, one published port                           | 15 ms   | 6.5-12.7 ms  |
//! | teardown, one published port                        | 47 ms   | 6.6-9.7 ms   |
//! | setup + teardown, one published port                | 62 ms   | 13-18 ms     |
//! | setup + teardown + waiting for the veth's deletion  | 32 ms   | 30-33 ms     |
//! | the same, per container of a batch of 10            | -       | 11-13 ms     |
//!
//! What bounds them:
//! * Deleting a veth pair (`RTM_DELLINK`) takes about 20 ms in the kernel, which waits for
//!   RCU grace periods while it holds the RTNL lock. [`Controller::disconnect`] no longer
//!   waits for it: rules, proxies, ports, lease, record and peers' hosts entries are released
//!   before it returns, and the veth goes to a background thread ([`reaper`]) that batches
//!   the veths queued within 20 ms into one interface-group delete (one set of grace
//!   periods per batch). [`Controller::disconnect_dying`] leaves the pair to the kernel, which
//!   removes it with the container's namespace. [`Controller::flush`] (and dropping the
//!   controller) waits for the thread. The kernel's work remains: while the thread deletes,
//!   a concurrent setup waits for the RTNL lock, so under sustained churn setup + teardown is
//!   bound by the kernel's deletion throughput (the batched row: about 11 ms per container,
//!   against 32 ms when each deletion is waited for).
//! * Plain setup is bound by about ten netlink round trips (veth pair, eth0 address, route,
//!   links up) on a thread that `setns`es into each namespace, and a few small state files
//!   under `flock`; plain teardown by the state files.
//! * Published ports: the DNAT rules are added and deleted through `libnftables` loaded in
//!   process ([`libnft`], one thread in the host namespace, no `nft` process), and deleted by
//!   the handles `--echo --handle` returned at setup (one transaction, no ruleset listing).
//!   Measured alone in a test namespace, adding a rule takes 0.35-1 ms and deleting it
//!   0.13-0.5 ms this way (an `nft` process cost 8-15 ms each in the bench under this
//!   load). What remains: the userland proxy is one
//!   thread and tokio runtime per controller ([`proxy::ProxyRuntime`], a task per port,
//!   added and removed by message, about 0.1-0.4 ms per port each way); the port table and
//!   the endpoint record (written once per setup with all ports and rule handles) are small
//!   files under `flock` whose writes cost 0.3 ms median but 1.5 ms mean, 4 ms at p90, on
//!   this loaded ext4; and every thread hand-off waits for a core. Same-session A/B runs of
//!   `setup_teardown_publish_1_port` (old binary, then new, twice; load 3-5): 17.9 / 5.4 ms
//!   before, 10.1 / 6.1 ms after, with the plain case at 7.2 / 4.0 and 5.2 / 4.4 ms: the
//!   published-port case is at 5-6 ms when the machine is quiet and the difference to the
//!   plain case is about 1-2 ms; the spread is the machine's load. Without
//!   `libnftables.so.1` the `nft` command is run as before (one spawn per setup and one
//!   per teardown).
//!
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
