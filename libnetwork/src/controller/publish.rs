//! Published ports: host port reservations, proxies and DNAT rules.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use crate::error::{Error, Result};
use crate::nft;
use crate::ports::{PortMapping, PortSpec, Proto};

use crate::controller::*;

impl Controller {
    pub(crate) fn publish(
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
