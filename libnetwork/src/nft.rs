//! nftables rules in the tables `ip longshore` and `bridge longshore`, driven through
//! `nft -f -` (text) and `nft -j list` (JSON), run inside the host namespace.
//!
//! ```text
//! table ip longshore {
//!   chain raw-prerouting { type filter hook prerouting priority raw; iifname != "lo" ip daddr 127.0.0.0/8 drop }
//!   chain prerouting  { type nat hook prerouting priority dstnat; fib daddr type local jump ports }
//!   chain output      { type nat hook output priority -100; ip daddr != 127.0.0.0/8 fib daddr type local jump ports }
//!   chain postrouting { type nat hook postrouting priority srcnat; }   # masquerade, hairpin per network
//!   chain ports       { }                                              # one DNAT rule per published port
//!   chain forward     { type filter hook forward priority filter; policy drop;
//!                       jump forward-user; ct state established,related accept;
//!                       jump forward-in; jump forward-out }
//!   chain forward-user { }   # the user's own accept/drop rules; created once, never flushed
//!   chain forward-in  { }    # into a bridge: links; per network icc accept or isolation drop,
//!                            # `ct status dnat accept` (published ports), drop
//!   chain forward-out { }    # out of a bridge to anything else: accept
//! }
//! table bridge longshore {   # only with an isolated (--icc=false) network
//!   set icc_<network id> { type ifname; }
//!   chain forward { type filter hook forward priority 0;
//!                   # links: per-port accepts; per network: iifname @set oifname @set ether type != arp drop }
//! }
//! ```
//!
//! Isolation holds at both layers: the bridge family drops every frame but ARP between two
//! isolated ports (IPv4, IPv6 and 802.1Q/802.1ad-tagged frames alike, so a priority-tagged
//! frame does not slip past), and the ip family drops what is routed (or, with
//! `br_netfilter`, bridged) from an isolated bridge back into it, so a container that
//! routes to its neighbour via the gateway gets nowhere. Link exceptions are stateful in the
//! ip family: only the parent opens connections to the child's linked ports; replies pass
//! as `established`. The bridge family has no connection tracking here
//! (`nf_conntrack_bridge` is optional), so there the link rules match addresses and ports
//! in both directions; `bridge-nf-call-iptables` is switched on in the host namespace for
//! isolated networks so that the stateful ip-family check sees bridged traffic too.
//!
//! Every change of a network's rules is one `nft -f` transaction: old rules deleted by
//! handle and new ones added together, so a restart never opens a window.
//!
//! The per-container DNAT rules ([`add_port_rules`], [`delete_port_rules`]) go through the
//! controller's in-process [`NftSession`] when `libnftables` loads, and are deleted by the
//! handles echoed at creation.
//!
//! Rules carry a comment (`net:<network>:masq`, `net:<network>:hairpin`, `net:<network>:icc`,
//! `net:<network>:fwd` or `ep:<container>`) so that teardown and crash cleanup find exactly
//! their own rules.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnetwork::Ipv4Network;

use crate::error::{Error, Result};
use crate::libnft::NftSession;
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

/// Runs `script` through the in-process `session` when there is one, else through
/// `nft --echo --handle -f -` in `ns`. Returns nft's output.
fn run_script(
    ns: &NetnsRef,
    session: Option<&NftSession>,
    what: &str,
    script: &str,
) -> Result<String> {
    match session {
        Some(s) => s.run(script).map_err(|detail| Error::Nft {
            what: what.to_string(),
            detail,
        }),
        None => run_nft(ns, what, &["--echo", "--handle", "-f", "-"], Some(script)),
    }
}

/// The base chains of `ip longshore`: created when missing, the rules of the hooked chains
/// rewritten (flush and add in the same transaction: no moment without them). Chains
/// holding per-network and per-container rules (`ports`, `forward-in`, `forward-out`) and
/// the user's `forward-user` keep their rules.
///
/// The script creates the table and base chains (idempotent; the hooked chains' rules
/// are rewritten atomically); [`set_network_rules`] with `base` runs it and a network's
/// rules in one transaction.
///
/// * `raw-prerouting` drops packets to 127.0.0.0/8 that did not arrive on `lo`, before any
///   DNAT: a neighbour that routes 127.0.0.1 via the host does not reach ports published on
///   loopback (the CVE-2020-8558 class; Docker 28 does the same);
/// * `forward` has a policy of drop: established and related traffic, published ports
///   (DNATed into a bridge), traffic leaving a bridge, between containers of a network
///   with inter-container communication, linked ports, and whatever the user accepts in
///   `forward-user` pass; nothing else is forwarded (Docker's `FORWARD` policy since
///   1.13, in our own table: other tables' rules are not touched, though their accepts do
///   not override our drop, as with any two nftables base chains).
fn base_script() -> String {
    format!(
        "add table ip {TABLE}
add chain ip {TABLE} ports
add chain ip {TABLE} forward-user
add chain ip {TABLE} forward-in
add chain ip {TABLE} forward-out
add chain ip {TABLE} raw-prerouting {{ type filter hook prerouting priority raw; policy accept; }}
add chain ip {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain ip {TABLE} output {{ type nat hook output priority -100; policy accept; }}
add chain ip {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain ip {TABLE} forward {{ type filter hook forward priority filter; policy drop; }}
flush chain ip {TABLE} raw-prerouting
flush chain ip {TABLE} prerouting
flush chain ip {TABLE} output
flush chain ip {TABLE} forward
add rule ip {TABLE} raw-prerouting iifname != \"lo\" ip daddr 127.0.0.0/8 drop
add rule ip {TABLE} prerouting fib daddr type local jump ports
add rule ip {TABLE} output ip daddr != 127.0.0.0/8 fib daddr type local jump ports
add rule ip {TABLE} forward jump forward-user
add rule ip {TABLE} forward ct state established,related accept
add rule ip {TABLE} forward jump forward-in
add rule ip {TABLE} forward jump forward-out
"
    )
}

/// Removes the whole table (only when no network uses it any more).
#[cfg(test)]
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

pub(crate) fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
        .collect()
}

/// What a network needs in our tables (see [`set_network_rules`]).
#[derive(Debug, Clone)]
pub struct NetworkRules<'a> {
    /// Network name (rule tags `net:<name>:...`).
    pub name: &'a str,
    /// Network ID (names its isolation set, see [`icc_set_name`]).
    pub id: &'a str,
    /// The network's subnet.
    pub subnet: Ipv4Network,
    /// Its bridge device.
    pub bridge: &'a str,
    /// Masquerade traffic leaving through anything but the bridge.
    pub masquerade: bool,
    /// Inter-container communication (`--icc`).
    pub icc: bool,
    /// `--internal`: nothing is forwarded between the bridge and anything else (no
    /// masquerade, no published ports, no forwarding out).
    pub internal: bool,
}

/// The tags of a network's rules.
fn network_tags(name: &str) -> [String; 4] {
    let n = quote(name);
    ["masq", "hairpin", "icc", "fwd"].map(|k| format!("net:{n}:{k}"))
}

/// `delete rule` lines for every rule of our tables whose comment is one of `tags`.
fn delete_lines(rules: &[serde_json::Value], tags: &[String]) -> String {
    rules
        .iter()
        .filter(|r| {
            r["comment"]
                .as_str()
                .is_some_and(|c| tags.iter().any(|t| t == c))
        })
        .map(|r| {
            format!(
                "delete rule {} {TABLE} {} handle {}\n",
                r["family"].as_str().unwrap_or("ip"),
                r["chain"].as_str().unwrap_or_default(),
                r["handle"]
            )
        })
        .collect()
}

/// Replaces a network's rules (and, with `base`, the base chains' rules, see
/// [`base_script`]) in one transaction: the old rules are deleted by handle and the new
/// ones added by the same `nft -f` run, so traffic never meets a moment without them.
///
/// * masquerade of traffic from the subnet leaving through anything but the bridge;
/// * hairpin masquerade of DNATed traffic from the subnet back into it, so replies return
///   through the host instead of going straight between containers;
/// * forwarding into the bridge: from the bridge itself accepted (`--icc=true`) or dropped
///   (`--icc=false`, only links pass, see [`add_link_rules`]), DNATed traffic (published
///   ports) accepted, the rest dropped; forwarding out of the bridge accepted;
/// * with `--icc=false`, in `bridge longshore`: every frame but ARP between two ports of
///   the set [`icc_set_name`] dropped, and `bridge-nf-call-iptables` switched on (when the
///   kernel has it) so that bridged IPv4 also meets the ip family's stateful rules.
pub fn set_network_rules(ns: &NetnsRef, net: &NetworkRules<'_>, base: bool) -> Result<()> {
    let (before, after) = network_script(net, base);
    // the old rules (none on a first start)
    let rules = list_rules(ns)?;
    let script = format!(
        "{before}{}{after}",
        delete_lines(&rules, &network_tags(net.name))
    );
    if !net.icc {
        // bridged IPv4 through the ip family's forward hook too (Docker sets the same);
        // absent without br_netfilter, where the bridge family's rules stand alone
        ns.run(|| {
            let p = std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables");
            match std::fs::write(p, "1\n") {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r.map_err(crate::error::file_err(p, "enable bridge-nf-call-iptables")),
            }
        })?;
    }
    run_nft(
        ns,
        &format!("rules of network {}", net.name),
        &["-f", "-"],
        Some(&script),
    )
    .map(drop)
}

/// A short digest of what [`set_network_rules`] installs for `net` (with `base`): equal
/// fingerprints mean equal rules, since the scripts' text is part of it. The controller
/// keeps the fingerprint of what it installed, with the table's handle, to skip
/// reinstalling rules that are in place.
pub fn rules_fingerprint(net: &NetworkRules<'_>, base: bool) -> String {
    let (before, after) = network_script(net, base);
    let h = format!("{before}{after}")
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
    format!("{h:016x}")
}

/// The script of [`set_network_rules`] around the deletion of the network's old rules.
fn network_script(net: &NetworkRules<'_>, base: bool) -> (String, String) {
    let subnet = Ipv4Network::new(net.subnet.network(), net.subnet.prefix()).expect("same prefix");
    let [masq, hairpin, icc, fwd] = network_tags(net.name);
    let br = quote(net.bridge);
    let mut script = if base { base_script() } else { String::new() };
    if !net.icc {
        let set = icc_set_name(net.id, net.name);
        script.push_str(&format!(
            "add table bridge {TABLE}
add chain bridge {TABLE} forward {{ type filter hook forward priority 0; policy accept; }}
add set bridge {TABLE} {set} {{ type ifname; }}
"
        ));
    }
    let before = std::mem::take(&mut script);
    if net.masquerade && !net.internal {
        script.push_str(&format!(
            "add rule ip {TABLE} postrouting ip saddr {subnet} oifname != \"{br}\" masquerade comment \"{masq}\"\n"
        ));
    }
    if net.internal {
        // an internal network: only traffic between its own members (the forward
        // chain's policy drops what leaves the bridge)
        script.push_str(&format!(
            "add rule ip {TABLE} forward-in iifname \"{br}\" oifname \"{br}\" {} comment \"{icc}\"
add rule ip {TABLE} forward-in oifname \"{br}\" drop comment \"{fwd}\"
add rule ip {TABLE} forward-out iifname \"{br}\" drop comment \"{fwd}\"
",
            if net.icc { "accept" } else { "drop" }
        ));
    } else {
        script.push_str(&format!(
            "add rule ip {TABLE} postrouting ip saddr {subnet} ip daddr {subnet} ct status dnat masquerade comment \"{hairpin}\"
add rule ip {TABLE} forward-in iifname \"{br}\" oifname \"{br}\" {} comment \"{icc}\"
add rule ip {TABLE} forward-in oifname \"{br}\" ct status dnat accept comment \"{fwd}\"
add rule ip {TABLE} forward-in oifname \"{br}\" drop comment \"{fwd}\"
add rule ip {TABLE} forward-out iifname \"{br}\" accept comment \"{fwd}\"
",
            if net.icc { "accept" } else { "drop" }
        ));
    }
    if !net.icc {
        let set = icc_set_name(net.id, net.name);
        script.push_str(&format!(
            "add rule bridge {TABLE} forward iifname @{set} oifname @{set} ether type != arp drop comment \"{icc}\"\n"
        ));
    }
    (before, script)
}

/// Deletes a network's rules and, when it has one, its isolation set, in one transaction.
pub fn delete_network_rules(ns: &NetnsRef, name: &str, id: &str) -> Result<()> {
    let rules = list_rules(ns)?;
    let mut script = delete_lines(&rules, &network_tags(name));
    let set = icc_set_name(id, name);
    if sets(ns)?.contains(&set) {
        script.push_str(&format!("delete set bridge {TABLE} {set}\n"));
    }
    if script.is_empty() {
        return Ok(());
    }
    run_nft(
        ns,
        &format!("delete the rules of network {name}"),
        &["-f", "-"],
        Some(&script),
    )
    .map(drop)
}

/// DNAT rules for an endpoint's published ports. With `skip_iif` (the bridge, when the
/// userland proxy runs), traffic arriving from that bridge is left to the proxy, as Docker
/// 1.4 did.
///
/// Returns the kernel's handles of the new rules in chain `ip longshore ports` (from
/// `nft --echo --handle`), so that [`delete_port_rules`] removes them with one `nft` run
/// instead of listing the ruleset first. With a `session` no process is spawned.
pub fn add_port_rules(
    ns: &NetnsRef,
    session: Option<&NftSession>,
    owner: &str,
    ports: &[PortMapping],
    skip_iif: Option<&str>,
) -> Result<Vec<u64>> {
    if ports.is_empty() {
        return Ok(vec![]);
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
    let what = format!("publish ports of {owner}");
    let out = run_script(ns, session, &what, &script)?;
    let handles = echoed_rule_handles(&out);
    if handles.len() != ports.len() {
        // cannot happen with a working nft; never guess handles: teardown goes by tag
        return Err(Error::Nft {
            what,
            detail: format!(
                "expected {} rule handles from nft --echo --handle, got {}: {out}",
                ports.len(),
                handles.len()
            ),
        });
    }
    Ok(handles)
}

/// The handles of the rules in `nft --echo --handle` output (`add rule ... # handle 7`), in
/// order.
pub fn echoed_rule_handles(out: &str) -> Vec<u64> {
    out.lines()
        .filter(|l| l.starts_with("add rule ") || l.starts_with("insert rule "))
        .filter_map(|l| l.rsplit_once("# handle ")?.1.trim().parse().ok())
        .collect()
}

/// Deletes an endpoint's DNAT rules by the handles [`add_port_rules`] returned, in one `nft`
/// run (one transaction: all or nothing). Returns false, deleting nothing, when a handle no
/// longer exists; the caller then falls back to [`delete_tagged`].
///
/// Handles are only unique within one incarnation of the table: use them only when the
/// table cannot have been deleted and recreated since the rules were added.
pub fn delete_port_rules(
    ns: &NetnsRef,
    session: Option<&NftSession>,
    owner: &str,
    handles: &[u64],
) -> Result<bool> {
    if handles.is_empty() {
        return Ok(true);
    }
    let script: String = handles
        .iter()
        .map(|h| format!("delete rule ip {TABLE} ports handle {h}\n"))
        .collect();
    match run_script(
        ns,
        session,
        &format!("delete the port rules of {owner}"),
        &script,
    ) {
        Ok(_) => Ok(true),
        Err(Error::Nft { detail, .. }) if detail.contains("No such file") => Ok(false),
        Err(e) => Err(e),
    }
}

fn list_ruleset(ns: &NetnsRef) -> Result<serde_json::Value> {
    let json = run_nft(ns, "list ruleset", &["-j", "list", "ruleset"], None)?;
    serde_json::from_str(&json).map_err(|e| Error::Nft {
        what: "parse nft -j output".into(),
        detail: e.to_string(),
    })
}

/// The names of the sets of `bridge longshore`.
fn sets(ns: &NetnsRef) -> Result<Vec<String>> {
    let v = list_ruleset(ns)?;
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let s = &i["set"];
            (s["table"].as_str() == Some(TABLE) && s["family"].as_str() == Some("bridge"))
                .then(|| s["name"].as_str().map(str::to_string))
                .flatten()
        })
        .collect())
}

fn list_rules(ns: &NetnsRef) -> Result<Vec<serde_json::Value>> {
    let v = list_ruleset(ns)?;
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let r = &i["rule"];
            let ours = r["table"].as_str() == Some(TABLE)
                && matches!(r["family"].as_str(), Some("ip" | "bridge"));
            ours.then(|| r.clone())
        })
        .collect())
}

/// Deletes every rule of our tables (`ip longshore`, `bridge longshore`) whose comment is
/// `tag` (`ep:<id>`, `net:<name>:masq`, `net:<name>:hairpin`, `net:<name>:icc`). Returns how
/// many.
pub fn delete_tagged(ns: &NetnsRef, tag: &str) -> Result<usize> {
    let want = quote(tag);
    let mut script = String::new();
    let mut n = 0;
    for r in list_rules(ns)? {
        if r["comment"].as_str() == Some(want.as_str()) {
            script.push_str(&format!(
                "delete rule {} {TABLE} {} handle {}\n",
                r["family"].as_str().unwrap_or("ip"),
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

/// Every comment tag of our tables' rules (for leak checks and cleanup).
pub fn tags(ns: &NetnsRef) -> Result<Vec<String>> {
    Ok(list_rules(ns)?
        .iter()
        .filter_map(|r| r["comment"].as_str().map(str::to_string))
        .collect())
}

/// The isolation set of a network: `icc_<id>` from its network ID (unique within the
/// state directory, so two networks never share a set, whatever their names). Records of
/// networks created before IDs existed have none; their set keeps the old name, the
/// network name with everything but letters and digits as `_`.
pub fn icc_set_name(id: &str, network: &str) -> String {
    if !id.is_empty() {
        return format!("icc_{id}");
    }
    let n: String = network
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("icc_{n}")
}

/// Adds (or removes) a veth to its network's isolation set. The set holds names, so a veth
/// joins it before it exists: it is isolated from its first frame.
pub fn icc_member(ns: &NetnsRef, network: &str, id: &str, veth: &str, add: bool) -> Result<()> {
    let script = format!(
        "{} element bridge {TABLE} {} {{ \"{}\" }}\n",
        if add { "add" } else { "delete" },
        icc_set_name(id, network),
        quote(veth)
    );
    match run_nft(
        ns,
        &format!("isolation set of {network}: {veth}"),
        &["-f", "-"],
        Some(&script),
    ) {
        Err(Error::Nft { detail, .. }) if !add && detail.contains("No such file") => Ok(()),
        r => r.map(drop),
    }
}

/// Allows a link's ports from `parent` to `child` through the isolation of the network on
/// `bridge`, tagged `ep:<owner>`.
///
/// In the ip family the exception is stateful: the parent may open connections to the
/// child's linked ports, and replies pass as established (the `forward` chain's first
/// rule); a child sending from a linked port opens nothing. The bridge family has no
/// connection tracking here, so there the frames of the linked ports pass in both
/// directions by address and port (as Docker 1.4's link rules), and the ip family (through
/// `br_netfilter`) does the stateful check.
pub fn add_link_rules(
    ns: &NetnsRef,
    owner: &str,
    bridge: &str,
    parent: std::net::Ipv4Addr,
    child: std::net::Ipv4Addr,
    ports: &[crate::ports::ExposedPort],
) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let br = quote(bridge);
    let tag = quote(owner);
    let mut script = format!(
        "add table bridge {TABLE}
add chain bridge {TABLE} forward {{ type filter hook forward priority 0; policy accept; }}
"
    );
    for p in ports {
        let (proto, port) = (p.proto, p.port);
        script.push_str(&format!(
            "insert rule ip {TABLE} forward-in iifname \"{br}\" oifname \"{br}\" ip saddr {parent} ip daddr {child} {proto} dport {port} accept comment \"ep:{tag}\"
insert rule bridge {TABLE} forward ip saddr {parent} ip daddr {child} {proto} dport {port} accept comment \"ep:{tag}\"
insert rule bridge {TABLE} forward ip saddr {child} ip daddr {parent} {proto} sport {port} accept comment \"ep:{tag}\"
"
        ));
    }
    run_nft(
        ns,
        &format!("link rules of {owner}"),
        &["-f", "-"],
        Some(&script),
    )
    .map(drop)
}
