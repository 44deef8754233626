//! Network CRUD: the default network at start, user-defined networks.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, file_err};
use crate::ipam::pick_subnet;
use crate::netlink::Netlink;
use crate::nft;
use crate::store::{self, read_json, write_json};

use crate::controller::*;

/// What `<state>/rules.json` records: the default network's rules (with the base chains)
/// whose fingerprint is `fingerprint` were installed in the table whose handle is `table`.
#[derive(Debug, Serialize, Deserialize)]
struct RulesStamp {
    table: u64,
    fingerprint: String,
}

impl Controller {
    pub(crate) fn default_mtu(&self, nl: &mut Netlink) -> Result<u32> {
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

    /// Creates or checks the default network; returns the nftables table's handle when known.
    pub(crate) fn ensure_default_network(&self) -> Result<Option<u64>> {
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
            labels: Default::default(),
            aux_addresses: Default::default(),
            internal: false,
        };
        self.setup_network(&info, true)
    }

    /// A network ID no network of the state directory has.
    pub(crate) fn new_network_id(&self) -> Result<String> {
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

    pub(crate) fn network_rules<'a>(info: &'a NetworkInfo) -> nft::NetworkRules<'a> {
        nft::NetworkRules {
            name: &info.name,
            id: &info.id,
            subnet: info.subnet(),
            bridge: &info.bridge,
            masquerade: info.masquerade,
            icc: info.icc,
            internal: info.internal,
        }
    }

    /// Creates the bridge, the address pool and the rules of a network; with `base`, the
    /// table's base chains too, in the same transaction as the network's rules.
    ///
    /// For the default network (`base`), opened by every process, the rules are installed
    /// only when they are not known to be in place: `rules.json` in the state directory
    /// records the table's kernel handle and the fingerprint of the rules last installed
    /// ([`nft::rules_fingerprint`]); when both match (the table was not deleted and created
    /// again since, and the options give the same rules) no `nft` process is spawned. The
    /// handle is read over the controller's `nf_tables` socket. Returns the table's handle
    /// when it is known.
    pub(crate) fn setup_network(&self, info: &NetworkInfo, base: bool) -> Result<Option<u64>> {
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
        let mut table = None;
        if self.opts.iptables {
            let rules = Self::network_rules(info);
            let stamp_path = self.state.join("rules.json");
            let want = base.then(|| nft::rules_fingerprint(&rules, true));
            table = self.table_handle();
            let in_place = match (&want, table) {
                (Some(fp), Some(t)) => read_json::<RulesStamp>(&stamp_path)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.table == t && s.fingerprint == *fp),
                _ => false,
            };
            if !in_place {
                nft::set_network_rules(&self.host, &rules, base)?;
                table = self.table_handle();
                if let (Some(fingerprint), Some(table)) = (want, table) {
                    write_json(&stamp_path, &RulesStamp { table, fingerprint })?;
                }
            }
        }
        // rewritten only when it changed (a rename over the old file is slow on some disks)
        let path = self.network_path(&info.name);
        if read_json::<NetworkInfo>(&path).ok().flatten().as_ref() != Some(info) {
            write_json(&path, info)?;
        }
        Ok(table)
    }

    /// The kernel's handle of the table `ip longshore`, when the controller has an
    /// `nf_tables` socket and the table exists.
    pub(crate) fn table_handle(&self) -> Option<u64> {
        let nfnl = self.nfnl.as_ref()?;
        let mut n = nfnl.lock().unwrap_or_else(|p| p.into_inner());
        n.table_handle().ok().flatten()
    }

    /// Creates a user-defined bridge network.
    pub fn create_network(&self, req: &NetworkCreate) -> Result<NetworkInfo> {
        safe_name("network name", &req.name)?;
        match req.driver.as_str() {
            "bridge" => {}
            "host" | "none" | "null" => {
                return Err(Error::InvalidInput {
                    what: "network driver",
                    value: req.driver.clone(),
                    reason: format!(
                        "only one instance of the {:?} network is allowed",
                        req.driver
                    ),
                });
            }
            other => {
                return Err(Error::UnknownDriver {
                    driver: other.into(),
                });
            }
        }
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
            icc: req.icc == Icc::Allowed,
            masquerade: self.opts.ip_masq,
            labels: req.labels.clone(),
            aux_addresses: req.aux_addresses.clone(),
            internal: req.internal,
        };
        let subnet = info.subnet();
        if let Some((n, ip)) = info
            .aux_addresses
            .iter()
            .find(|(_, ip)| !subnet.contains(**ip))
        {
            return Err(Error::InvalidInput {
                what: "aux-address",
                value: format!("{n}={ip}"),
                reason: format!("no matching subnet: not in {subnet}"),
            });
        }
        if let Err(e) = self.setup_network(&info, false) {
            let _ = self.remove_network_objects(&info);
            return Err(e);
        }
        // the auxiliary addresses of the allocation range: leased for good, so never
        // handed out (one outside the range is never handed out anyway)
        let range = info.fixed_cidr.unwrap_or(subnet);
        for (n, ip) in &info.aux_addresses {
            if range.contains(*ip)
                && let Err(e) =
                    self.ipam
                        .allocate(&info.name, &format!("aux-address {n}"), Some(*ip))
            {
                let _ = self.remove_network_objects(&info);
                return Err(e);
            }
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

    pub(crate) fn remove_network_objects(&self, info: &NetworkInfo) -> Result<()> {
        self.host
            .run(|| Netlink::open()?.delete_link(&info.bridge).map(drop))?;
        if self.opts.iptables {
            nft::delete_network_rules(&self.host, &info.name, &info.id)?;
        }
        self.ipam.remove_pool(&info.name)?;
        let _ = fs::remove_file(
            self.state
                .join("networks")
                .join(format!("{}.hosts.lock", info.name)),
        );
        store::remove(&self.network_path(&info.name))
    }

    /// The address leases of a network (address to container id).
    pub fn leases(&self, network: &str) -> Result<std::collections::BTreeMap<Ipv4Addr, String>> {
        self.network(network)?;
        self.ipam.leases(network)
    }
}
