//! The files a container gets: `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, and the
//! environment variables of `--link`, all in Docker 1.4's exact format.

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::Path;

use crate::error::{Error, Result, file_err};
use crate::ports::ExposedPort;

/// One `/etc/hosts` line: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    /// The address.
    pub ip: IpAddr,
    /// Host names, first the canonical one.
    pub names: Vec<String>,
}

impl HostsEntry {
    /// Parses `--add-host name:ip`.
    pub fn parse_add_host(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidInput {
            what: "--add-host entry",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (name, ip) = s.split_once(':').ok_or_else(|| bad("expected name:ip"))?;
        check_name("--add-host name", name)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad("invalid IP address"))?;
        Ok(Self {
            ip,
            names: vec![name.to_string()],
        })
    }
}

/// Checks a name that goes into `/etc/hosts`, `/etc/hostname` or `resolv.conf`: 1-255
/// characters, none of them whitespace, control characters or `#`, so no input can add lines
/// or comments to those files.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        return Err(Error::InvalidInput {
            what,
            value: name.to_string(),
            reason: "must be 1-255 characters without whitespace, control characters or '#'".into(),
        });
    }
    Ok(())
}

/// The localhost lines Docker 1.4 writes after the container's own line.
pub(crate) const DEFAULT_HOSTS: &str = "127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
fe00::0 ip6-localnet
ff00::0 ip6-mcastprefix
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
";

/// Builds `/etc/hosts`: the container's own address and hostname (`hostname.domain hostname`
/// when a domain is set), Docker's localhost lines, then `extra` (`--add-host`, links).
pub(crate) fn hosts_file(
    ip: Option<IpAddr>,
    hostname: &str,
    domainname: Option<&str>,
    extra: &[HostsEntry],
) -> String {
    let mut s = String::new();
    if let Some(ip) = ip {
        match domainname.filter(|d| !d.is_empty()) {
            Some(d) => writeln!(s, "{ip} {hostname}.{d} {hostname}"),
            None => writeln!(s, "{ip} {hostname}"),
        }
        .expect("writing to a String cannot fail");
    }
    s.push_str(DEFAULT_HOSTS);
    for e in extra {
        writeln!(s, "{} {}", e.ip, e.names.join(" ")).expect("writing to a String cannot fail");
    }
    s
}

/// Builds `/etc/resolv.conf` from the host's content.
///
/// With neither `dns` nor `dns_search`, the host's file minus loopback nameservers (which
/// cannot work from another namespace); if that leaves no nameserver, Docker's fallback
/// `8.8.8.8` and `8.8.4.4` are appended. With either option, a new file: `dns` (else the
/// host's usable nameservers) and `search` from `dns_search` (else the host's; `.` means none).
pub(crate) fn resolv_conf(host: &str, dns: &[IpAddr], dns_search: &[String]) -> String {
    let is_loopback_ns = |line: &str| {
        let mut w = line.split_whitespace();
        w.next() == Some("nameserver")
            && w.next()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|a| a.is_loopback())
    };
    let host_ns: Vec<String> = host
        .lines()
        .filter(|l| !is_loopback_ns(l))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next().map(str::to_string))?
        })
        .collect();
    if dns.is_empty() && dns_search.is_empty() {
        let mut out: String = host
            .lines()
            .filter(|l| !is_loopback_ns(l))
            .map(|l| format!("{l}\n"))
            .collect();
        if host_ns.is_empty() {
            out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        }
        return out;
    }
    let mut out = String::new();
    let servers: Vec<String> = if dns.is_empty() {
        host_ns
    } else {
        dns.iter().map(|d| d.to_string()).collect()
    };
    for s in servers {
        writeln!(out, "nameserver {s}").expect("writing to a String cannot fail");
    }
    let search: Vec<String> = if dns_search.is_empty() {
        host.lines()
            .filter_map(|l| l.strip_prefix("search"))
            .flat_map(|r| r.split_whitespace().map(str::to_string))
            .collect()
    } else {
        dns_search.to_vec()
    };
    if !search.is_empty() && search != ["."] {
        writeln!(out, "search {}", search.join(" ")).expect("writing to a String cannot fail");
    }
    out
}

/// A `--link name:alias`: the linked (child) container as the parent sees it.
#[derive(Debug, Clone)]
pub struct Link {
    /// The linked container's name.
    pub name: String,
    /// The alias inside the parent (`mylink`).
    pub alias: String,
    /// The linked container's address.
    pub ip: IpAddr,
    /// Its exposed ports.
    pub ports: Vec<ExposedPort>,
    /// Its environment (`KEY=value`), exported as `ALIAS_ENV_KEY` (HOME and PATH excepted).
    pub env: Vec<String>,
}

impl Link {
    /// Parses `name:alias` (alias defaults to name) for a child at `ip`.
    pub fn parse(
        spec: &str,
        ip: IpAddr,
        ports: Vec<ExposedPort>,
        env: Vec<String>,
    ) -> Result<Self> {
        let (name, alias) = spec.split_once(':').unwrap_or((spec, spec));
        let name = name.trim_start_matches('/');
        if name.is_empty() || alias.is_empty() {
            return Err(Error::InvalidInput {
                what: "--link",
                value: spec.to_string(),
                reason: "expected name:alias".into(),
            });
        }
        Ok(Self {
            name: name.to_string(),
            alias: alias.to_string(),
            ip,
            ports,
            env,
        })
    }

    /// The `/etc/hosts` entry (`ip alias`).
    pub fn hosts_entry(&self) -> HostsEntry {
        HostsEntry {
            ip: self.ip,
            names: vec![self.alias.clone()],
        }
    }

    /// The environment Docker 1.4 gives the parent container `parent` for this link:
    /// `ALIAS_PORT`, `ALIAS_PORT_<port>_<PROTO>` with `_ADDR`, `_PORT`, `_PROTO`,
    /// `ALIAS_NAME=/parent/alias` and `ALIAS_ENV_*`.
    pub fn env_vars(&self, parent: &str) -> Vec<String> {
        let alias: String = self
            .alias
            .chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        let mut ports = self.ports.clone();
        ports.sort();
        let mut env = Vec::new();
        if let Some(p) = ports.first() {
            env.push(format!("{alias}_PORT={}://{}:{}", p.proto, self.ip, p.port));
        }
        for p in &ports {
            let pre = format!(
                "{alias}_PORT_{}_{}",
                p.port,
                p.proto.as_str().to_uppercase()
            );
            env.push(format!("{pre}={}://{}:{}", p.proto, self.ip, p.port));
            env.push(format!("{pre}_ADDR={}", self.ip));
            env.push(format!("{pre}_PORT={}", p.port));
            env.push(format!("{pre}_PROTO={}", p.proto));
        }
        env.push(format!(
            "{alias}_NAME=/{}/{}",
            parent.trim_start_matches('/'),
            self.alias
        ));
        for kv in &self.env {
            if let Some((k, v)) = kv.split_once('=')
                && k != "HOME"
                && k != "PATH"
            {
                env.push(format!("{alias}_ENV_{k}={v}"));
            }
        }
        env
    }
}

/// The three files of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFiles {
    /// `/etc/hosts`.
    pub hosts: String,
    /// `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// `/etc/hostname`.
    pub hostname: String,
}

impl ContainerFiles {
    /// Writes `hosts`, `resolv.conf` and `hostname` into `dir` (the runtime bind-mounts them
    /// over the container's `/etc` files).
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(file_err(dir, "create directory"))?;
        for (name, content) in [
            ("hosts", &self.hosts),
            ("resolv.conf", &self.resolv_conf),
            ("hostname", &self.hostname),
        ] {
            let p = dir.join(name);
            fs::write(&p, content).map_err(file_err(&p, "write"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Proto;

    #[test]
    fn hosts_matches_the_seed() {
        let link = Link::parse(
            "source:mylink",
            "172.17.0.8".parse().unwrap(),
            vec![ExposedPort {
                port: 5000,
                proto: Proto::Tcp,
            }],
            vec![],
        )
        .unwrap();
        let h = hosts_file(
            Some("172.17.0.10".parse().unwrap()),
            "ee465e70bd38",
            None,
            &[link.hosts_entry()],
        );
        assert_eq!(
            h,
            "172.17.0.10 ee465e70bd38
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
fe00::0 ip6-localnet
ff00::0 ip6-mcastprefix
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
172.17.0.8 mylink
"
        );
    }

    #[test]
    fn link_env_matches_the_seed() {
        let link = Link::parse(
            "source:mylink",
            "172.17.0.8".parse().unwrap(),
            vec![ExposedPort {
                port: 5000,
                proto: Proto::Tcp,
            }],
            vec!["HOME=/root".into(), "PATH=/bin".into(), "FOO=bar".into()],
        )
        .unwrap();
        let mut env = link.env_vars("target");
        env.sort();
        assert_eq!(
            env,
            vec![
                "MYLINK_ENV_FOO=bar",
                "MYLINK_NAME=/target/mylink",
                "MYLINK_PORT=tcp://172.17.0.8:5000",
                "MYLINK_PORT_5000_TCP=tcp://172.17.0.8:5000",
                "MYLINK_PORT_5000_TCP_ADDR=172.17.0.8",
                "MYLINK_PORT_5000_TCP_PORT=5000",
                "MYLINK_PORT_5000_TCP_PROTO=tcp",
            ]
        );
    }

    #[test]
    fn resolv_conf_drops_loopback_and_honours_options() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch example.org\noptions ndots:2\n";
        assert_eq!(
            resolv_conf(host, &[], &[]),
            "# generated\nnameserver 10.1.1.1\nsearch example.org\noptions ndots:2\n"
        );
        let only_lo = "nameserver 127.0.0.1\nnameserver ::1\n";
        assert_eq!(
            resolv_conf(only_lo, &[], &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf(host, &["192.0.2.1".parse().unwrap()], &[]),
            "nameserver 192.0.2.1\nsearch example.org\n"
        );
        assert_eq!(
            resolv_conf(host, &[], &["a.test".into(), "b.test".into()]),
            "nameserver 10.1.1.1\nsearch a.test b.test\n"
        );
        assert_eq!(
            resolv_conf(host, &[], &[".".into()]),
            "nameserver 10.1.1.1\n"
        );
    }

    #[test]
    fn add_host_parsing() {
        let e = HostsEntry::parse_add_host("db:10.0.0.5").unwrap();
        assert_eq!(e.names, vec!["db"]);
        assert!(HostsEntry::parse_add_host("db").is_err());
        assert!(HostsEntry::parse_add_host("db:notanip").is_err());
        assert!(HostsEntry::parse_add_host("d b:10.0.0.5").is_err());
        let h = hosts_file(None, "x", None, &[e]);
        assert!(h.ends_with("10.0.0.5 db\n"));
        let d = hosts_file(Some("10.0.0.2".parse().unwrap()), "web", Some("corp"), &[]);
        assert!(d.starts_with("10.0.0.2 web.corp web\n"));
    }
}
