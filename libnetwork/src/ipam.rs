//! IP address management: leases inside a subnet (or a `--fixed-cidr` range of it),
//! persisted per network under the state directory so a restarted process keeps them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{self, Locked};

/// Docker 1.4's candidate bridge networks, tried in order (gateway address / prefix).
pub const DEFAULT_POOL: &[&str] = &[
    "172.17.42.1/16",
    "10.0.42.1/16",
    "10.1.42.1/16",
    "10.42.42.1/16",
    "172.16.42.1/24",
    "172.16.43.1/24",
    "172.16.44.1/24",
    "10.0.42.1/24",
    "10.0.43.1/24",
    "192.168.42.1/24",
    "192.168.43.1/24",
    "192.168.44.1/24",
];

/// The first pool entry (gateway/prefix) that overlaps none of `routes` and `taken`.
pub fn pick_subnet(routes: &[IpNetwork], taken: &[Ipv4Network]) -> Option<Ipv4Network> {
    DEFAULT_POOL
        .iter()
        .filter_map(|s| s.parse::<Ipv4Network>().ok())
        .find(|cand| {
            let routes_ok = routes.iter().all(|r| match r {
                // the default route overlaps everything and is not a conflict
                IpNetwork::V4(r) => r.prefix() == 0 || !overlaps(cand, r),
                IpNetwork::V6(_) => true,
            });
            routes_ok && taken.iter().all(|t| !overlaps(cand, t))
        })
}

/// True when two IPv4 networks share an address.
pub fn overlaps(a: &Ipv4Network, b: &Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pool {
    subnet: Option<Ipv4Network>,
    range: Option<Ipv4Network>,
    gateway: Option<Ipv4Addr>,
    last: Option<Ipv4Addr>,
    leases: BTreeMap<Ipv4Addr, String>,
}

/// Leases of every network, in `<state>/ipam/<network>.json`.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
}

impl Ipam {
    /// IPAM state under `state_dir/ipam`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("ipam"),
        }
    }

    fn path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}.json"))
    }

    /// Declares the pool of `network`: `subnet` (with prefix), addresses taken from `range`
    /// (defaults to the subnet), `gateway` never handed out. Existing leases are kept when the
    /// subnet is unchanged.
    pub fn create_pool(
        &self,
        network: &str,
        subnet: Ipv4Network,
        range: Option<Ipv4Network>,
        gateway: Ipv4Addr,
    ) -> Result<()> {
        let subnet = Ipv4Network::new(subnet.network(), subnet.prefix()).expect("same prefix");
        if let Some(r) = range
            && (!subnet.contains(r.network()) || r.prefix() < subnet.prefix())
        {
            return Err(Error::InvalidInput {
                what: "fixed CIDR",
                value: r.to_string(),
                reason: format!("not inside the network's subnet {subnet}"),
            });
        }
        let mut p: Locked<Pool> = Locked::open(&self.path(network))?;
        if p.data.subnet != Some(subnet) {
            p.data.leases.clear();
            p.data.last = None;
        }
        p.data.subnet = Some(subnet);
        p.data.range = range;
        p.data.gateway = Some(gateway);
        p.save()
    }

    /// Forgets the pool and its leases.
    pub fn remove_pool(&self, network: &str) -> Result<()> {
        let path = self.path(network);
        store::remove(&path)?;
        store::remove(&path.with_extension("lock"))
    }

    /// Leases an address to `owner`: `requested` if given and free, else the next free one
    /// after the last handed out (Docker 1.4's order).
    pub fn allocate(
        &self,
        network: &str,
        owner: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        let mut p: Locked<Pool> = Locked::open(&self.path(network))?;
        let subnet = p
            .data
            .subnet
            .ok_or_else(|| Error::NetworkNotFound(network.to_string()))?;
        let range = p.data.range.unwrap_or(subnet);
        let usable = |ip: Ipv4Addr| {
            subnet.contains(ip)
                && ip != subnet.network()
                && (subnet.prefix() >= 31 || ip != subnet.broadcast())
                && Some(ip) != p.data.gateway
        };
        let ip = if let Some(ip) = requested {
            if !usable(ip) || !range.contains(ip) {
                return Err(Error::InvalidInput {
                    what: "IP address",
                    value: ip.to_string(),
                    reason: format!("not a usable address of {range} in network {network}"),
                });
            }
            if let Some(owner) = p.data.leases.get(&ip) {
                return Err(Error::AddressInUse {
                    network: network.to_string(),
                    ip: ip.to_string(),
                    owner: owner.clone(),
                });
            }
            ip
        } else {
            let first = u32::from(range.network());
            let size = range.size() as u64;
            let start = match p.data.last {
                Some(l) if range.contains(l) => u64::from(u32::from(l) - first) + 1,
                _ => 0,
            };
            (0..size)
                .map(|i| Ipv4Addr::from(first + ((start + i) % size) as u32))
                .find(|ip| usable(*ip) && !p.data.leases.contains_key(ip))
                .ok_or_else(|| Error::PoolExhausted {
                    network: network.to_string(),
                    range: range.to_string(),
                })?
        };
        p.data.leases.insert(ip, owner.to_string());
        p.data.last = Some(ip);
        p.save()?;
        Ok(ip)
    }

    /// Releases `ip`. Returns false when it was not leased.
    pub fn release(&self, network: &str, ip: Ipv4Addr) -> Result<bool> {
        let mut p: Locked<Pool> = Locked::open(&self.path(network))?;
        let had = p.data.leases.remove(&ip).is_some();
        if had {
            p.save()?;
        }
        Ok(had)
    }

    /// The current leases of `network` (address to owner).
    pub fn leases(&self, network: &str) -> Result<BTreeMap<Ipv4Addr, String>> {
        let p: Locked<Pool> = Locked::open(&self.path(network))?;
        Ok(p.data.leases.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_skips_routes_and_taken() {
        let routes: Vec<IpNetwork> = vec![
            "0.0.0.0/0".parse().unwrap(),
            "172.17.0.0/16".parse().unwrap(),
        ];
        let taken: Vec<Ipv4Network> = vec!["10.0.0.0/16".parse().unwrap()];
        assert_eq!(
            pick_subnet(&routes, &taken).unwrap().to_string(),
            "10.1.42.1/16"
        );
        let all: Vec<IpNetwork> =
            vec!["0.0.0.0/1".parse().unwrap(), "128.0.0.0/1".parse().unwrap()];
        assert!(pick_subnet(&all, &[]).is_none());
    }

    #[test]
    fn allocate_release_persist_and_exhaust() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-")
            .tempdir()
            .unwrap();
        let ipam = Ipam::new(dir.path());
        let subnet: Ipv4Network = "10.5.0.1/29".parse().unwrap();
        ipam.create_pool("n", subnet, None, subnet.ip()).unwrap();
        let a = ipam.allocate("n", "a", None).unwrap();
        assert_eq!(a.to_string(), "10.5.0.2");
        // a new Ipam on the same directory (a restarted process) sees the lease
        let again = Ipam::new(dir.path());
        assert_eq!(again.leases("n").unwrap().get(&a).unwrap(), "a");
        let err = again.allocate("n", "b", Some(a)).unwrap_err();
        assert!(matches!(err, Error::AddressInUse { .. }), "{err}");
        let mut got = vec![a];
        while let Ok(ip) = again.allocate("n", "x", None) {
            got.push(ip);
        }
        // .0 network, .1 gateway and .7 broadcast are never handed out
        assert_eq!(got.len(), 5);
        assert!(matches!(
            again.allocate("n", "x", None).unwrap_err(),
            Error::PoolExhausted { .. }
        ));
        assert!(again.release("n", a).unwrap());
        assert!(!again.release("n", a).unwrap());
        assert_eq!(again.allocate("n", "c", None).unwrap(), a);
    }

    #[test]
    fn fixed_cidr_limits_the_range() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-")
            .tempdir()
            .unwrap();
        let ipam = Ipam::new(dir.path());
        let subnet: Ipv4Network = "172.20.42.1/16".parse().unwrap();
        let range: Ipv4Network = "172.20.7.0/24".parse().unwrap();
        ipam.create_pool("n", subnet, Some(range), subnet.ip())
            .unwrap();
        let ip = ipam.allocate("n", "a", None).unwrap();
        assert_eq!(ip.to_string(), "172.20.7.0");
        let outside: Ipv4Network = "10.0.0.0/24".parse().unwrap();
        assert!(
            ipam.create_pool("m", subnet, Some(outside), subnet.ip())
                .is_err()
        );
    }

    #[test]
    fn corrupt_state_is_a_clear_error() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-")
            .tempdir()
            .unwrap();
        let ipam = Ipam::new(dir.path());
        std::fs::create_dir_all(dir.path().join("ipam")).unwrap();
        std::fs::write(dir.path().join("ipam/n.json"), b"{not json").unwrap();
        let err = ipam.allocate("n", "a", None).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
