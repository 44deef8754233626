//! The per-container DNAT rules of chain `ip longshore ports` as raw `nf_tables` netlink
//! batches, without `libnftables` and without a thread hand-off.
//!
//! `libnftables` (and the `nft` command) fill a cache before every command: dumps of every
//! table, chain, set, object and flowtable of the namespace, and of every rule when the
//! handles are echoed. For the one rule a published port needs that was most of the port's
//! cost (0.5 ms to add, 0.3 ms to delete, growing with the host's ruleset). An [`NfTables`]
//! socket is opened once inside the host namespace and then used from any thread (a
//! socket stays in the namespace it was created in): adding a container's rules is one
//! batch of `NFT_MSG_NEWRULE` messages with `NLM_F_ECHO`, whose echoes carry the handles;
//! deleting them is one batch of `NFT_MSG_DELRULE` by handle. Each batch is one
//! transaction: all rules or none.
//!
//! The rules are encoded as `nft` encodes
//! `[iifname != "<bridge>"] [ip daddr <ip>] <proto> dport <port> dnat to <ip>:<port>
//! comment "ep:<owner>"`, comment included, so `nft list` shows the same text and the
//! tag-based cleanup in [`crate::nft`] finds them.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::error::{Error, Result};
use crate::netns::NetnsRef;
use crate::nft::TABLE;
use crate::ports::{PortMapping, Proto};

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_ECHO: u16 = 0x8;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFPROTO_IPV4: u8 = 2;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_HANDLE: u16 = 4;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
/// `NFTNL_UDATA_RULE_COMMENT`, the type of a rule comment in the rule's user data.
const UDATA_RULE_COMMENT: u8 = 0;

const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

/// The chain the per-container rules go to.
const CHAIN: &str = "ports";

/// Appends one attribute (header, payload, padding to 4 bytes).
fn attr(b: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = u16::try_from(4 + data.len()).expect("attribute under 64 KiB");
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(data);
    b.resize(b.len().next_multiple_of(4), 0);
}

fn attr_u32(b: &mut Vec<u8>, ty: u16, v: u32) {
    attr(b, ty, &v.to_be_bytes());
}

fn attr_str(b: &mut Vec<u8>, ty: u16, s: &str) {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    attr(b, ty, &v);
}

/// Appends a nested attribute whose content `f` writes.
fn nest(b: &mut Vec<u8>, ty: u16, f: impl FnOnce(&mut Vec<u8>)) {
    let start = b.len();
    b.extend_from_slice(&[0; 4]);
    f(b);
    let len = u16::try_from(b.len() - start).expect("attribute under 64 KiB");
    b[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    b[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
}

/// One expression of a rule: `name` and its attributes.
fn expr(b: &mut Vec<u8>, name: &str, data: impl FnOnce(&mut Vec<u8>)) {
    nest(b, NFTA_LIST_ELEM, |b| {
        attr_str(b, NFTA_EXPR_NAME, name);
        nest(b, NFTA_EXPR_DATA, data);
    });
}

fn meta(b: &mut Vec<u8>, key: u32) {
    expr(b, "meta", |b| {
        attr_u32(b, 1, NFT_REG_1); // NFTA_META_DREG
        attr_u32(b, 2, key); // NFTA_META_KEY
    });
}

fn payload(b: &mut Vec<u8>, base: u32, offset: u32, len: u32) {
    expr(b, "payload", |b| {
        attr_u32(b, 1, NFT_REG_1); // NFTA_PAYLOAD_DREG
        attr_u32(b, 2, base); // NFTA_PAYLOAD_BASE
        attr_u32(b, 3, offset); // NFTA_PAYLOAD_OFFSET
        attr_u32(b, 4, len); // NFTA_PAYLOAD_LEN
    });
}

fn cmp(b: &mut Vec<u8>, op: u32, value: &[u8]) {
    expr(b, "cmp", |b| {
        attr_u32(b, 1, NFT_REG_1); // NFTA_CMP_SREG
        attr_u32(b, 2, op); // NFTA_CMP_OP
        nest(b, 3, |b| attr(b, NFTA_DATA_VALUE, value)); // NFTA_CMP_DATA
    });
}

fn immediate(b: &mut Vec<u8>, reg: u32, value: &[u8]) {
    expr(b, "immediate", |b| {
        attr_u32(b, 1, reg); // NFTA_IMMEDIATE_DREG
        nest(b, 2, |b| attr(b, NFTA_DATA_VALUE, value)); // NFTA_IMMEDIATE_DATA
    });
}

/// The expressions of `[iifname != skip_iif] [ip daddr host_ip] proto dport host_port
/// dnat to container_ip:container_port`.
fn dnat_expressions(b: &mut Vec<u8>, p: &PortMapping, skip_iif: Option<&str>) -> Result<()> {
    if let Some(name) = skip_iif {
        if name.is_empty() || name.len() >= 16 {
            return Err(Error::InvalidInput {
                what: "bridge name",
                value: name.to_string(),
                reason: "an interface name has 1-15 bytes".into(),
            });
        }
        let mut ifname = [0u8; 16];
        ifname[..name.len()].copy_from_slice(name.as_bytes());
        meta(b, NFT_META_IIFNAME);
        cmp(b, NFT_CMP_NEQ, &ifname);
    }
    if !p.host_ip.is_unspecified() {
        payload(b, NFT_PAYLOAD_NETWORK_HEADER, 16, 4);
        cmp(b, NFT_CMP_EQ, &p.host_ip.octets());
    }
    meta(b, NFT_META_L4PROTO);
    let l4: u8 = match p.proto {
        Proto::Tcp => libc::IPPROTO_TCP as u8,
        Proto::Udp => libc::IPPROTO_UDP as u8,
    };
    cmp(b, NFT_CMP_EQ, &[l4]);
    payload(b, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    cmp(b, NFT_CMP_EQ, &p.host_port.to_be_bytes());
    immediate(b, NFT_REG_1, &p.container_ip.octets());
    immediate(b, NFT_REG_2, &p.container_port.to_be_bytes());
    expr(b, "nat", |b| {
        attr_u32(b, 1, NFT_NAT_DNAT); // NFTA_NAT_TYPE
        attr_u32(b, 2, u32::from(NFPROTO_IPV4)); // NFTA_NAT_FAMILY
        attr_u32(b, 3, NFT_REG_1); // NFTA_NAT_REG_ADDR_MIN
        attr_u32(b, 5, NFT_REG_2); // NFTA_NAT_REG_PROTO_MIN
        attr_u32(b, 7, NF_NAT_RANGE_PROTO_SPECIFIED); // NFTA_NAT_FLAGS
    });
    Ok(())
}

/// The rule comment as `nft` stores it: a user data record of type comment, with the
/// terminating NUL.
fn comment_udata(comment: &str) -> Result<Vec<u8>> {
    let len = u8::try_from(comment.len() + 1)
        .ok()
        .filter(|l| *l <= 128)
        .ok_or_else(|| Error::InvalidInput {
            what: "rule comment",
            value: comment.to_string(),
            reason: "at most 127 bytes".into(),
        })?;
    let mut u = vec![UDATA_RULE_COMMENT, len];
    u.extend_from_slice(comment.as_bytes());
    u.push(0);
    Ok(u)
}

/// An `nf_tables` netlink socket of one network namespace.
pub struct NfTables {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for NfTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NfTables").finish_non_exhaustive()
    }
}

fn nfnl_err(what: &str) -> impl FnOnce(io::Error) -> Error {
    let what = what.to_string();
    move |e| Error::Nft {
        what,
        detail: e.to_string(),
    }
}

impl NfTables {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let what = "open an nf_tables netlink socket";
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(nfnl_err(what))?;
        sock.bind_auto().map_err(nfnl_err(what))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(nfnl_err(what))?;
        Ok(Self {
            sock,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Opens a socket inside `ns` (from a short-lived thread); it stays there.
    pub fn open_in(ns: &NetnsRef) -> Result<Self> {
        ns.run(Self::open)
    }

    fn header(b: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        b.push(family);
        b.push(0); // NFNETLINK_V0
        b.extend_from_slice(&res_id.to_be_bytes());
    }

    fn finish(b: &mut [u8], start: usize) {
        let len = u32::try_from(b.len() - start).expect("message under 4 GiB");
        b[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Sends a batch of `count` messages (which `body` appends, each with the sequence
    /// number it is given, starting at the returned base) and collects the replies: the
    /// `NLM_F_ECHO` copies of new rules (sequence number, rule handle) in order, once every
    /// message is acknowledged. `Err(errno)` for the first message the kernel refused (the
    /// whole batch is then undone).
    fn batch(
        &mut self,
        what: &str,
        count: u32,
        body: impl FnOnce(&mut Vec<u8>, u32) -> Result<()>,
    ) -> Result<std::result::Result<Vec<(u32, u64)>, i32>> {
        let begin = self.seq.wrapping_add(1);
        let first = begin.wrapping_add(1);
        let end = first.wrapping_add(count);
        self.seq = end;
        let mut b = Vec::with_capacity(512);
        let res_id = NFNL_SUBSYS_NFTABLES;
        Self::header(
            &mut b,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            0,
            res_id,
        );
        Self::finish(&mut b, 0);
        body(&mut b, first)?;
        let start = b.len();
        Self::header(&mut b, NFNL_MSG_BATCH_END, NLM_F_REQUEST, end, 0, res_id);
        Self::finish(&mut b, start);
        self.sock.send(&b, 0).map_err(nfnl_err(what))?;
        let ours = |seq: u32| seq.wrapping_sub(first) < count;
        // errors may also name the batch's begin or end message
        let in_batch = |seq: u32| seq.wrapping_sub(begin) <= count + 1;
        let mut acked = 0u32;
        let mut echoed = Vec::new();
        while acked < count {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(nfnl_err(what))?;
            let mut off = 0;
            while off + 16 <= n {
                let m = &self.buf[off..n];
                let len = u32::from_ne_bytes(m[0..4].try_into().expect("4 bytes")) as usize;
                if len < 16 || len > m.len() {
                    return Err(Error::Nft {
                        what: what.to_string(),
                        detail: format!("malformed netlink reply (length {len})"),
                    });
                }
                let ty = u16::from_ne_bytes(m[4..6].try_into().expect("2 bytes"));
                let seq = u32::from_ne_bytes(m[8..12].try_into().expect("4 bytes"));
                if ty == NLMSG_ERROR && len >= 20 && in_batch(seq) {
                    let code = i32::from_ne_bytes(m[16..20].try_into().expect("4 bytes"));
                    if code != 0 {
                        return Ok(Err(-code));
                    }
                    if ours(seq) {
                        acked += 1;
                    }
                } else if ours(seq)
                    && len >= 20
                    && ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE
                    && let Some(h) = rule_handle(&m[20..len])
                {
                    echoed.push((seq, h));
                }
                off += len.next_multiple_of(4);
            }
        }
        echoed.sort_by_key(|(seq, _)| seq.wrapping_sub(first));
        Ok(Ok(echoed))
    }

    /// Appends `owner`'s DNAT rules for `ports` to chain `ip longshore ports` in one
    /// transaction and returns their handles, in order. `skip_iif`: traffic arriving from
    /// this interface (the bridge, when the userland proxy serves it) is not translated.
    pub fn add_port_rules(
        &mut self,
        owner: &str,
        ports: &[PortMapping],
        skip_iif: Option<&str>,
    ) -> Result<Vec<u64>> {
        if ports.is_empty() {
            return Ok(vec![]);
        }
        let what = format!("publish ports of {owner}");
        let udata = comment_udata(&format!("ep:{}", crate::nft::quote(owner)))?;
        let count = u32::try_from(ports.len()).expect("fewer than 2^32 ports");
        let flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND | NLM_F_ECHO | NLM_F_ACK;
        let res = self.batch(&what, count, |b, first| {
            for (i, p) in ports.iter().enumerate() {
                let start = b.len();
                let seq = first.wrapping_add(i as u32);
                let ty = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE;
                Self::header(b, ty, flags, seq, NFPROTO_IPV4, 0);
                attr_str(b, NFTA_RULE_TABLE, TABLE);
                attr_str(b, NFTA_RULE_CHAIN, CHAIN);
                let mut exprs = Ok(());
                nest(b, NFTA_RULE_EXPRESSIONS, |b| {
                    exprs = dnat_expressions(b, p, skip_iif)
                });
                exprs?;
                attr(b, NFTA_RULE_USERDATA, &udata);
                Self::finish(b, start);
            }
            Ok(())
        })?;
        let echoed = res.map_err(|errno| Error::Nft {
            what: what.clone(),
            detail: io::Error::from_raw_os_error(errno).to_string(),
        })?;
        if echoed.len() != ports.len() {
            // the rules are in place, but without their handles teardown goes by tag
            return Err(Error::Nft {
                what,
                detail: format!(
                    "expected {} echoed rules with handles, got {}",
                    ports.len(),
                    echoed.len()
                ),
            });
        }
        Ok(echoed.into_iter().map(|(_, h)| h).collect())
    }

    /// The kernel's handle of the table `ip longshore` (none when it does not exist). Handles
    /// come from a counter of the namespace, so a table deleted and created again has a new
    /// one: equal handles mean the same table, whose rule handles are still valid.
    pub fn table_handle(&mut self) -> Result<Option<u64>> {
        let what = "look up table ip longshore";
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut b = Vec::with_capacity(64);
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
        Self::header(&mut b, ty, NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_IPV4, 0);
        attr_str(&mut b, NFTA_TABLE_NAME, TABLE);
        Self::finish(&mut b, 0);
        self.sock.send(&b, 0).map_err(nfnl_err(what))?;
        let mut handle = None;
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(nfnl_err(what))?;
            let mut off = 0;
            while off + 16 <= n {
                let m = &self.buf[off..n];
                let len = u32::from_ne_bytes(m[0..4].try_into().expect("4 bytes")) as usize;
                if len < 16 || len > m.len() {
                    return Err(Error::Nft {
                        what: what.to_string(),
                        detail: format!("malformed netlink reply (length {len})"),
                    });
                }
                let ty = u16::from_ne_bytes(m[4..6].try_into().expect("2 bytes"));
                let mseq = u32::from_ne_bytes(m[8..12].try_into().expect("4 bytes"));
                if mseq == seq {
                    if ty == NLMSG_ERROR && len >= 20 {
                        return match -i32::from_ne_bytes(m[16..20].try_into().expect("4 bytes")) {
                            0 => Ok(handle),
                            libc::ENOENT => Ok(None),
                            errno => Err(Error::Nft {
                                what: what.to_string(),
                                detail: io::Error::from_raw_os_error(errno).to_string(),
                            }),
                        };
                    }
                    if ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE && len >= 20 {
                        handle = attr_u64(&m[20..len], NFTA_TABLE_HANDLE);
                    }
                }
                off += len.next_multiple_of(4);
            }
        }
    }

    /// Deletes rules of chain `ip longshore ports` by handle in one transaction. Returns
    /// false, deleting nothing, when a handle does not exist (any more).
    pub fn delete_port_rules(&mut self, owner: &str, handles: &[u64]) -> Result<bool> {
        if handles.is_empty() {
            return Ok(true);
        }
        let what = format!("delete the port rules of {owner}");
        let count = u32::try_from(handles.len()).expect("fewer than 2^32 rules");
        let res = self.batch(&what, count, |b, first| {
            for (i, h) in handles.iter().enumerate() {
                let start = b.len();
                let seq = first.wrapping_add(i as u32);
                let ty = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELRULE;
                Self::header(b, ty, NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_IPV4, 0);
                attr_str(b, NFTA_RULE_TABLE, TABLE);
                attr_str(b, NFTA_RULE_CHAIN, CHAIN);
                attr(b, NFTA_RULE_HANDLE, &h.to_be_bytes());
                Self::finish(b, start);
            }
            Ok(())
        })?;
        match res {
            Ok(_) => Ok(true),
            Err(libc::ENOENT) => Ok(false),
            Err(errno) => Err(Error::Nft {
                what,
                detail: io::Error::from_raw_os_error(errno).to_string(),
            }),
        }
    }
}

/// `NFTA_RULE_HANDLE` among a rule message's attributes.
fn rule_handle(attrs: &[u8]) -> Option<u64> {
    attr_u64(attrs, NFTA_RULE_HANDLE)
}

/// The big-endian u64 attribute `want` among a message's attributes.
fn attr_u64(mut attrs: &[u8], want: u16) -> Option<u64> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & !NLA_F_NESTED;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == want && len == 12 {
            return Some(u64::from_be_bytes(attrs[4..12].try_into().ok()?));
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn comments_and_attributes_are_encoded_as_nft_does() {
        assert_eq!(comment_udata("ep:web").unwrap(), b"\x00\x07ep:web\x00");
        assert!(comment_udata(&"x".repeat(128)).is_err());
        let mut b = Vec::new();
        attr_str(&mut b, NFTA_RULE_CHAIN, "ports");
        assert_eq!(b, b"\x0a\x00\x02\x00ports\x00\x00\x00");
        let mut h = Vec::new();
        attr_str(&mut h, NFTA_RULE_TABLE, "t");
        attr(&mut h, NFTA_RULE_HANDLE, &7u64.to_be_bytes());
        assert_eq!(rule_handle(&h), Some(7));
        assert_eq!(rule_handle(&h[..10]), None);
        let p = PortMapping {
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 8080,
            container_ip: Ipv4Addr::new(172, 17, 0, 2),
            container_port: 80,
            proto: Proto::Tcp,
        };
        let err = dnat_expressions(&mut Vec::new(), &p, Some("a-name-over-15-bytes")).unwrap_err();
        assert!(err.to_string().contains("a-name-over-15-bytes"), "{err}");
    }
}
