//! A thin synchronous rtnetlink layer over `netlink-sys` and `netlink-packet-route`.
//!
//! A [`Netlink`] talks to the namespace it was opened in (see [`crate::netns`]). Each request
//! carries `NLM_F_ACK` and waits for the kernel's answer, so errors come back with the
//! request that caused them.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use ipnetwork::IpNetwork;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};
use crate::netns::NetnsRef;

/// A route as read from the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination (`0.0.0.0/0` for the default route).
    pub destination: IpNetwork,
    /// Output interface index, if any.
    pub oif: Option<u32>,
}

/// A link as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfoSummary {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: Option<u32>,
    /// Index of the bridge it is enslaved to.
    pub controller: Option<u32>,
}

/// What the container side of a veth pair should look like.
#[derive(Debug, Clone)]
pub struct VethPeer<'a> {
    /// Name inside the container (`eth0`).
    pub name: &'a str,
    /// MAC address.
    pub mac: [u8; 6],
    /// The container's namespace; the peer is created directly in it.
    pub netns: &'a NetnsRef,
}

/// A route netlink socket bound to the namespace it was opened in.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

fn nl_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let op = op.into();
    move |source| Error::Netlink { op, source }
}

fn is_errno(e: &Error, errno: i32) -> bool {
    matches!(e, Error::Netlink { source, .. } if source.raw_os_error() == Some(errno))
}

impl Netlink {
    /// Opens a socket in the calling thread's current network namespace.
    pub fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(nl_err("open socket"))?;
        sock.bind_auto().map_err(nl_err("bind socket"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(nl_err("connect socket"))?;
        Ok(Self {
            sock,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        hdr.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.sock.send(&out, 0).map_err(nl_err(op))?;
        let mut replies = Vec::new();
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(nl_err(op))?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| Error::Netlink {
                        op: op.to_string(),
                        source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                    })?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number == self.seq {
                    match msg.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(replies),
                                Some(_) => Err(Error::Netlink {
                                    op: op.to_string(),
                                    source: e.to_io(),
                                }),
                            };
                        }
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::InnerMessage(m) => replies.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len.next_multiple_of(4);
            }
        }
    }

    /// Looks a link up by name; `None` if it does not exist.
    pub fn link(&mut self, name: &str) -> Result<Option<LinkInfoSummary>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("get link {name}"),
            RouteNetlinkMessage::GetLink(msg),
            0,
        ) {
            Ok(r) => Ok(r.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(summarize(&l)),
                _ => None,
            })),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<LinkInfoSummary>> {
        let r = self.request(
            "dump links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(r.iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(summarize(l)),
                _ => None,
            })
            .collect())
    }

    /// Creates a bridge (up); returns its index. An existing link of that name is reused.
    pub fn ensure_bridge(&mut self, name: &str, mtu: u32) -> Result<u32> {
        if let Some(l) = self.link(name)? {
            self.set_up(l.index, name)?;
            return Ok(l.index);
        }
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        match self.request(
            &format!("create bridge {name}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| Error::Netlink {
                op: format!("find bridge {name} after creating it"),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })
    }

    /// Creates a veth pair: `host_name` (up, enslaved to `bridge`) here, and `peer` (up)
    /// directly in the peer's namespace. Returns the host side's index.
    pub fn create_veth(
        &mut self,
        host_name: &str,
        bridge: u32,
        mtu: u32,
        peer: &VethPeer<'_>,
    ) -> Result<u32> {
        let mut p = LinkMessage::default();
        p.attributes
            .push(LinkAttribute::IfName(peer.name.to_string()));
        p.attributes.push(LinkAttribute::Mtu(mtu));
        p.attributes.push(LinkAttribute::Address(peer.mac.to_vec()));
        p.attributes
            .push(LinkAttribute::NetNsFd(peer.netns.file().as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes
            .push(LinkAttribute::IfName(host_name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes.push(LinkAttribute::Controller(bridge));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(
            &format!(
                "create veth pair {host_name} / {} in {}",
                peer.name,
                peer.netns.path().display()
            ),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.link(host_name)?
            .map(|l| l.index)
            .ok_or_else(|| Error::Netlink {
                op: format!("find veth {host_name} after creating it"),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })
    }

    /// Sets the bridge port flag `isolated`: isolated ports cannot talk to each other.
    pub fn set_port_isolated(&mut self, index: u32, name: &str, isolated: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
                isolated,
            )])),
        ]));
        self.request(
            &format!("set bridge port {name} isolated={isolated}"),
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
        .map(drop)
    }

    /// Brings link `index` up.
    pub fn set_up(&mut self, index: u32, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("set link {name} up"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
        .map(drop)
    }

    /// Brings the link called `name` up.
    pub fn set_up_by_name(&mut self, name: &str) -> Result<()> {
        let l = self.link(name)?.ok_or_else(|| Error::Netlink {
            op: format!("set link {name} up"),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        })?;
        self.set_up(l.index, name)
    }

    /// Takes the link called `name` down (a bridge port that is down forwards nothing).
    /// Returns false if the link does not exist.
    pub fn set_down_by_name(&mut self, name: &str) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("set link {name} down"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        ) {
            Ok(_) => Ok(true),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a link by name. Returns false if it did not exist.
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        ) {
            Ok(_) => Ok(true),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Moves the link called `name` into interface group `group` (a cheap change, unlike a
    /// delete). Returns false if the link does not exist.
    pub fn set_group(&mut self, name: &str, group: u32) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Group(group));
        match self.request(
            &format!("move link {name} to group {group}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        ) {
            Ok(_) => Ok(true),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes every link of interface group `group` in one request: the kernel unregisters
    /// them as one batch, so the RCU grace periods a delete waits for are paid once for all.
    /// Returns false if the group had no link.
    pub fn delete_group(&mut self, group: u32) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Group(group));
        match self.request(
            &format!("delete the links of group {group}"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        ) {
            Ok(_) => Ok(true),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds `addr` (with its prefix) to link `index`. An already present address is fine.
    pub fn add_address(&mut self, index: u32, name: &str, addr: IpNetwork) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = match addr {
            IpNetwork::V4(_) => AddressFamily::Inet,
            IpNetwork::V6(_) => AddressFamily::Inet6,
        };
        msg.header.prefix_len = addr.prefix();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr.ip()));
        msg.attributes.push(AddressAttribute::Address(addr.ip()));
        if let IpNetwork::V4(v4) = addr
            && v4.prefix() < 31
        {
            msg.attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
        match self.request(
            &format!("add address {addr} to {name}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds the default IPv4 route via `gateway` on link `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            &format!("add default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// The IPv4 routes of the main table.
    pub fn routes_v4(&mut self) -> Result<Vec<RouteInfo>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let r = self.request(
            "dump routes",
            RouteNetlinkMessage::GetRoute(msg),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for m in r {
            let RouteNetlinkMessage::NewRoute(rt) = m else {
                continue;
            };
            if rt.header.table != RouteHeader::RT_TABLE_MAIN {
                continue;
            }
            let mut dst = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            let mut oif = None;
            for a in &rt.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = IpAddr::V4(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            if let Ok(destination) = IpNetwork::new(dst, rt.header.destination_prefix_length) {
                out.push(RouteInfo { destination, oif });
            }
        }
        Ok(out)
    }

    /// The IPv4 addresses (with prefix) configured on link `index`.
    pub fn addresses_v4(&mut self, index: u32) -> Result<Vec<IpNetwork>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let r = self.request(
            "dump addresses",
            RouteNetlinkMessage::GetAddress(msg),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for m in r {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if a.header.index != index {
                continue;
            }
            for attr in &a.attributes {
                if let AddressAttribute::Local(ip) = attr
                    && let Ok(n) = IpNetwork::new(*ip, a.header.prefix_len)
                {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }
}

fn summarize(l: &LinkMessage) -> LinkInfoSummary {
    let mut s = LinkInfoSummary {
        index: l.header.index,
        name: String::new(),
        mtu: None,
        controller: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => s.name = n.clone(),
            LinkAttribute::Mtu(m) => s.mtu = Some(*m),
            LinkAttribute::Controller(c) => s.controller = Some(*c),
            _ => {}
        }
    }
    s
}
