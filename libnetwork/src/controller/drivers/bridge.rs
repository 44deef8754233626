//! Bridge networks: veth pair, IPAM, routes, published ports.

use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network};

use crate::error::{Error, Result};
use crate::netlink::{Netlink, VethPeer};
use crate::nft;
use crate::store::{self};

use super::*;
use crate::controller::*;

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
        let ifname = cfg.interface.as_deref().unwrap_or("eth0");
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
                        name: ifname,
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
                    netns.run(|| {
                        let mut c = Netlink::open()?;
                        let eth = c.link(ifname)?.ok_or_else(|| Error::Netlink {
                            op: format!("find {ifname} in {}", netns.path().display()),
                            source: std::io::Error::from_raw_os_error(libc::ENODEV),
                        })?;
                        c.set_up(eth.index, ifname)?;
                        c.add_address(eth.index, ifname, IpNetwork::V4(cidr))?;
                        // an additional endpoint leaves the default route on eth0
                        if cfg.interface.is_none() {
                            c.add_default_route(eth.index, net.gateway.ip())?;
                        }
                        c.set_up_by_name("lo")
                    })
                })
            })
            .and_then(|()| ctl.publish(cfg, ep, ip, &net.bridge))
            .map(|()| ep.rules_table = ctl.table)
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
        // the DNAT rules by handle when this controller instance added them, or another one
        // whose complete record names the table as it is now (so the handles are of this
        // incarnation of the table); link rules and everything else by tag (listing the
        // ruleset first: two nft runs). An incomplete record of another instance may lack
        // the ports whose rules a crash left; a complete one without ports has no rules.
        let ours = ep.owner_token == ctl.token;
        let mut by_tag = isolated.is_some() || !(ours || ep.rules_table.is_some());
        if ctl.opts.iptables && !ep.ports.is_empty() {
            let same_table = || ep.rules_table.is_some() && ep.rules_table == ctl.table_handle();
            if (ours || same_table()) && ep.rule_handles.len() == ep.ports.len() {
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
