//! nftables rules in the table `ip longshore`, driven through `nft -f -` (text) and
//! `nft -j list` (JSON), run inside the host namespace.
//!
//! ```text
//! table ip longshore {
//!   chain prerouting  { type nat hook prerouting priority dstnat; fib daddr type local jump ports }
//!   chain output      { type nat hook output priority -100; ip daddr != 127.0.0.0/8 fib daddr type local jump ports }
//!   chain postrouting { type nat hook postrouting priority srcnat; }   # masquerade per network
//!   chain ports       { }                                              # one rule per published port
//! }
//! ```
//! Rules carry a comment (`net:<network>:masq`, `net:<network>:hairpin` or `ep:<container>`)
//! so that teardown and crash cleanup find exactly their own rules.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnetwork::Ipv4Network;

use crate::error::{Error, Result};
use crate::netns::NetnsRef;
use crate::ports::PortMapping;

/// The table name.
pub const TABLE: &str = "longshore";

fn run_nft(ns: &NetnsRef, what: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let err = |detail: String| Error::Nft {
        what: what.to_string(),
        detail,
    };
    ns.run(|| {
        let mut child = Command::new("nft")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                err(format!(
                    "cannot run nft (install the nftables package): {e}"
                ))
            })?;
        if let Some(s) = stdin {
            let mut i = child.stdin.take().expect("stdin was piped");
            i.write_all(s.as_bytes())
                .map_err(|e| err(format!("write to nft: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("wait for nft: {e}")))?;
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

/// Creates the table and base chains (idempotent; the jump rules are rewritten atomically).
pub fn ensure_base(ns: &NetnsRef) -> Result<()> {
    let script = format!(
        "add table ip {TABLE}
add chain ip {TABLE} ports
add chain ip {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain ip {TABLE} output {{ type nat hook output priority -100; policy accept; }}
add chain ip {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
flush chain ip {TABLE} prerouting
flush chain ip {TABLE} output
add rule ip {TABLE} prerouting fib daddr type local jump ports
add rule ip {TABLE} output ip daddr != 127.0.0.0/8 fib daddr type local jump ports
"
    );
    run_nft(ns, "create table ip longshore", &["-f", "-"], Some(&script)).map(drop)
}

/// Removes the whole table (only when no network uses it any more).
pub fn delete_table(ns: &NetnsRef) -> Result<()> {
    match run_nft(
        ns,
        "delete table ip longshore",
        &["-f", "-"],
        Some(&format!("delete table ip {TABLE}\n")),
    ) {
        Err(Error::Nft { detail, .. }) if detail.contains("No such file") => Ok(()),
        r => r.map(drop),
    }
}

fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
        .collect()
}

/// Masquerades traffic from `subnet` leaving through anything but `bridge`.
pub fn add_masquerade(
    ns: &NetnsRef,
    network: &str,
    subnet: Ipv4Network,
    bridge: &str,
) -> Result<()> {
    let net = Ipv4Network::new(subnet.network(), subnet.prefix()).expect("same prefix");
    let script = format!(
        "add rule ip {TABLE} postrouting ip saddr {net} oifname != \"{}\" masquerade comment \"net:{}:masq\"\n",
        quote(bridge),
        quote(network)
    );
    run_nft(
        ns,
        &format!("masquerade for network {network}"),
        &["-f", "-"],
        Some(&script),
    )
    .map(drop)
}

/// Masquerades DNATed traffic from a container of `subnet` back into `subnet` (hairpin), so
/// replies return through the host instead of going straight between containers.
pub fn add_hairpin(ns: &NetnsRef, network: &str, subnet: Ipv4Network) -> Result<()> {
    let net = Ipv4Network::new(subnet.network(), subnet.prefix()).expect("same prefix");
    let script = format!(
        "add rule ip {TABLE} postrouting ip saddr {net} ip daddr {net} ct status dnat masquerade comment \"net:{}:hairpin\"\n",
        quote(network)
    );
    run_nft(
        ns,
        &format!("hairpin masquerade for network {network}"),
        &["-f", "-"],
        Some(&script),
    )
    .map(drop)
}

/// DNAT rules for an endpoint's published ports. With `skip_iif` (the bridge, when the
/// userland proxy runs), traffic arriving from that bridge is left to the proxy, as Docker
/// 1.4 did.
pub fn add_port_rules(
    ns: &NetnsRef,
    owner: &str,
    ports: &[PortMapping],
    skip_iif: Option<&str>,
) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let mut script = String::new();
    for p in ports {
        let mut daddr = if p.host_ip.is_unspecified() {
            String::new()
        } else {
            format!("ip daddr {} ", p.host_ip)
        };
        if let Some(br) = skip_iif {
            daddr = format!("iifname != \"{}\" {daddr}", quote(br));
        }
        script.push_str(&format!(
            "add rule ip {TABLE} ports {daddr}{} dport {} dnat to {}:{} comment \"ep:{}\"\n",
            p.proto,
            p.host_port,
            p.container_ip,
            p.container_port,
            quote(owner)
        ));
    }
    run_nft(
        ns,
        &format!("publish ports of {owner}"),
        &["-f", "-"],
        Some(&script),
    )
    .map(drop)
}

/// Deletes every rule whose comment is `tag` (`ep:<id>`, `net:<name>:masq`,
/// `net:<name>:hairpin`). Returns how many.
pub fn delete_tagged(ns: &NetnsRef, tag: &str) -> Result<usize> {
    let json = match run_nft(
        ns,
        "list table ip longshore",
        &["-j", "list", "table", "ip", TABLE],
        None,
    ) {
        Ok(j) => j,
        // no table: nothing to delete
        Err(Error::Nft { detail, .. }) if detail.contains("No such file") => return Ok(0),
        Err(e) => return Err(e),
    };
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| Error::Nft {
        what: "parse nft -j output".into(),
        detail: e.to_string(),
    })?;
    let want = quote(tag);
    let mut script = String::new();
    let mut n = 0;
    for item in v["nftables"].as_array().into_iter().flatten() {
        let r = &item["rule"];
        if r.is_object() && r["comment"].as_str() == Some(want.as_str()) {
            script.push_str(&format!(
                "delete rule ip {TABLE} {} handle {}\n",
                r["chain"].as_str().unwrap_or_default(),
                r["handle"]
            ));
            n += 1;
        }
    }
    if n > 0 {
        run_nft(
            ns,
            &format!("delete rules {tag}"),
            &["-f", "-"],
            Some(&script),
        )?;
    }
    Ok(n)
}

/// Every comment tag of the table's rules (for leak checks and cleanup).
pub fn tags(ns: &NetnsRef) -> Result<Vec<String>> {
    let json = match run_nft(
        ns,
        "list table ip longshore",
        &["-j", "list", "table", "ip", TABLE],
        None,
    ) {
        Ok(j) => j,
        Err(Error::Nft { detail, .. }) if detail.contains("No such file") => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| Error::Nft {
        what: "parse nft -j output".into(),
        detail: e.to_string(),
    })?;
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["rule"]["comment"].as_str().map(str::to_string))
        .collect())
}
