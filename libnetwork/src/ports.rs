//! Port specifications (`-p`, `-P`, `--expose`) and host port allocation.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Locked;

/// First port of the dynamic range `-P` and `-p ip::port` draw from (as in the seed).
pub const DYNAMIC_FIRST: u16 = 49153;
/// Last port of the dynamic range.
pub const DYNAMIC_LAST: u16 = 65535;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(Error::InvalidInput {
                what: "protocol",
                value: s.to_string(),
                reason: "expected tcp or udp".into(),
            }),
        }
    }
}

fn parse_port(what: &'static str, s: &str) -> Result<u16> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Error::InvalidInput {
            what,
            value: s.to_string(),
            reason: "expected a port number 1-65535".into(),
        }),
    }
}

/// A container port (`--expose 5000`, `5000/udp`, an image's `ExposedPorts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExposedPort {
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub proto: Proto,
}

impl FromStr for ExposedPort {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (p, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        Ok(Self {
            port: parse_port("exposed port", p)?,
            proto: proto.parse()?,
        })
    }
}

/// One `-p` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// Host address to bind (`None`: all addresses, or the daemon's `--ip`).
    pub host_ip: Option<Ipv4Addr>,
    /// Host port (`None`: a free one from the dynamic range).
    pub host_port: Option<u16>,
    /// Container port and protocol.
    pub container: ExposedPort,
}

impl FromStr for PortSpec {
    type Err = Error;
    /// `cport`, `hport:cport`, `ip:hport:cport`, `ip::cport`, each with optional `/udp`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidInput {
            what: "port mapping",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (main, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let proto: Proto = proto
            .parse()
            .map_err(|_| bad("protocol must be tcp or udp"))?;
        let parts: Vec<&str> = main.split(':').collect();
        let (ip, hport, cport) = match parts.as_slice() {
            [c] => (None, None, *c),
            [h, c] => (None, Some(*h), *c),
            [ip, h, c] => (Some(*ip), Some(*h).filter(|h| !h.is_empty()), *c),
            _ => return Err(bad("expected [[ip:]hostport:]containerport[/proto]")),
        };
        let host_ip = ip
            .map(|ip| {
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| bad("invalid host IPv4 address"))
            })
            .transpose()?;
        let host_port = hport
            .map(|h| parse_port("host port", h).map_err(|_| bad("invalid host port")))
            .transpose()?;
        Ok(Self {
            host_ip,
            host_port,
            container: ExposedPort {
                port: parse_port("container port", cport)
                    .map_err(|_| bad("invalid container port"))?,
                proto,
            },
        })
    }
}

/// A published port as set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address (`0.0.0.0` for all).
    pub host_ip: Ipv4Addr,
    /// Host port.
    pub host_port: u16,
    /// Container address.
    pub container_ip: Ipv4Addr,
    /// Container port.
    pub container_port: u16,
    /// Protocol.
    pub proto: Proto,
}

impl fmt::Display for PortMapping {
    /// Docker's `docker ps` form: `0.0.0.0:49153->5000/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.proto
        )
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PortTable {
    /// `ip:port/proto` to owner.
    used: BTreeMap<String, String>,
    /// Last dynamic port handed out, per protocol.
    last: BTreeMap<Proto, u16>,
}

fn key(ip: IpAddr, port: u16, proto: Proto) -> String {
    format!("{ip}:{port}/{proto}")
}

/// Host ports in use by endpoints of this state directory (`<state>/ports.json`).
#[derive(Debug, Clone)]
pub(crate) struct PortAllocator {
    path: PathBuf,
}

impl PortAllocator {
    /// Port table under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("ports.json"),
        }
    }

    fn conflict(t: &PortTable, ip: Ipv4Addr, port: u16, proto: Proto) -> Option<String> {
        t.used.iter().find_map(|(k, owner)| {
            let (addr, rest) = k.rsplit_once(':')?;
            let (p, pr) = rest.split_once('/')?;
            let addr: Ipv4Addr = addr.parse().ok()?;
            let same_ip = addr == ip || addr.is_unspecified() || ip.is_unspecified();
            (same_ip && p.parse::<u16>().ok()? == port && pr == proto.as_str())
                .then(|| owner.clone())
        })
    }

    /// Reserves `port` (or, when `None`, the next free dynamic port) on `ip` for `owner`.
    /// `usable` is asked about each candidate (the caller tries to bind it) and may refuse it.
    pub fn allocate(
        &self,
        owner: &str,
        ip: Ipv4Addr,
        port: Option<u16>,
        proto: Proto,
        mut usable: impl FnMut(u16) -> Result<()>,
    ) -> Result<u16> {
        let mut t: Locked<PortTable> = Locked::open(&self.path)?;
        let chosen = if let Some(p) = port {
            if let Some(by) = Self::conflict(&t.data, ip, p, proto) {
                return Err(Error::PortAllocated {
                    host_ip: ip.to_string(),
                    host_port: p,
                    proto: proto.as_str(),
                    by: format!(" by {by}"),
                });
            }
            usable(p)?;
            p
        } else {
            let span = u32::from(DYNAMIC_LAST - DYNAMIC_FIRST) + 1;
            let start = t
                .data
                .last
                .get(&proto)
                .map(|l| u32::from(l.saturating_sub(DYNAMIC_FIRST)) + 1)
                .unwrap_or(0);
            let mut found = None;
            for i in 0..span {
                let p = DYNAMIC_FIRST + ((start + i) % span) as u16;
                if Self::conflict(&t.data, ip, p, proto).is_some() {
                    continue;
                }
                if usable(p).is_ok() {
                    found = Some(p);
                    break;
                }
            }
            let p = found.ok_or(Error::PortsExhausted {
                first: DYNAMIC_FIRST,
                last: DYNAMIC_LAST,
                proto: proto.as_str(),
            })?;
            t.data.last.insert(proto, p);
            p
        };
        t.data
            .used
            .insert(key(IpAddr::V4(ip), chosen, proto), owner.to_string());
        t.save()?;
        Ok(chosen)
    }

    /// Releases every port held by `owner`; returns how many.
    pub fn release_owner(&self, owner: &str) -> Result<usize> {
        let mut t: Locked<PortTable> = Locked::open(&self.path)?;
        let before = t.data.used.len();
        t.data.used.retain(|_, o| o != owner);
        let n = before - t.data.used.len();
        if n > 0 {
            t.save()?;
        }
        Ok(n)
    }

    /// Every reservation (`ip:port/proto` to owner).
    pub fn used(&self) -> Result<BTreeMap<String, String>> {
        let t: Locked<PortTable> = Locked::open(&self.path)?;
        Ok(t.data.used.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_specs() {
        let p: PortSpec = "80:8080".parse().unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container.port),
            (None, Some(80), 8080)
        );
        let p: PortSpec = "5000:5000/udp".parse().unwrap();
        assert_eq!(p.container.proto, Proto::Udp);
        let p: PortSpec = "127.0.0.1::5000".parse().unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.host_port, None);
        let p: PortSpec = "127.0.0.1:81:80".parse().unwrap();
        assert_eq!(p.host_port, Some(81));
        let p: PortSpec = "5000".parse().unwrap();
        assert_eq!(p.host_port, None);
        for bad in [
            "", "0", "x:80", "80:70000", "1:2:3:4", "80/sctp", "bad::80", "80:",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad} should fail");
        }
        let e: ExposedPort = "53/udp".parse().unwrap();
        assert_eq!(e.proto, Proto::Udp);
    }

    #[test]
    fn conflicts_and_dynamic_range() {
        let dir = tempfile::Builder::new()
            .prefix("longshore-")
            .tempdir()
            .unwrap();
        let a = PortAllocator::new(dir.path());
        let any = Ipv4Addr::UNSPECIFIED;
        assert_eq!(
            a.allocate("c1", any, Some(8080), Proto::Tcp, |_| Ok(()))
                .unwrap(),
            8080
        );
        // same port on a specific address conflicts with 0.0.0.0
        let err = a
            .allocate(
                "c2",
                Ipv4Addr::LOCALHOST,
                Some(8080),
                Proto::Tcp,
                |_| Ok(()),
            )
            .unwrap_err();
        assert!(err.to_string().contains("already allocated by c1"), "{err}");
        // udp is separate
        a.allocate("c2", any, Some(8080), Proto::Udp, |_| Ok(()))
            .unwrap();
        // dynamic ports are sequential from 49153 and skip refused ones
        let p1 = a.allocate("c3", any, None, Proto::Tcp, |_| Ok(())).unwrap();
        assert_eq!(p1, DYNAMIC_FIRST);
        let p2 = a
            .allocate("c3", any, None, Proto::Tcp, |p| {
                if p == DYNAMIC_FIRST + 1 {
                    Err(Error::PortsExhausted {
                        first: 0,
                        last: 0,
                        proto: "tcp",
                    })
                } else {
                    Ok(())
                }
            })
            .unwrap();
        assert_eq!(p2, DYNAMIC_FIRST + 2);
        assert_eq!(a.release_owner("c3").unwrap(), 2);
        assert_eq!(a.used().unwrap().len(), 2);
    }
}
