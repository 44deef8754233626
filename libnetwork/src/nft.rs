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
//! The per-container DNAT rules ([`add_port_rules`], [`delete_port_rules`]) go through the
//! controller's in-process [`NftSession`] when `libnftables` loads, and are deleted by the
//! handles echoed at creation.
//!
//! Rules carry a comment (`net:<network>:masq`, `net:<network>:hairpin` or `ep:<container>`)
//! so that teardown and crash cleanup find exactly their own rules.

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

pub(crate) fn quote(s: &str) -> String {
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

fn list_rules(ns: &NetnsRef) -> Result<Vec<serde_json::Value>> {
    let json = run_nft(ns, "list ruleset", &["-j", "list", "ruleset"], None)?;
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| Error::Nft {
        what: "parse nft -j output".into(),
        detail: e.to_string(),
    })?;
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

fn icc_set(network: &str) -> String {
    let n: String = network
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("icc_{n}")
}

/// `--icc=false` for a network: in `table bridge longshore`, IPv4/IPv6 frames forwarded
/// between two ports of the set `icc_<network>` are dropped. Link exceptions are inserted
/// before the drop by [`add_link_rules`].
pub fn add_icc_isolation(ns: &NetnsRef, network: &str) -> Result<()> {
    let set = icc_set(network);
    let script = format!(
        "add table bridge {TABLE}
add chain bridge {TABLE} forward {{ type filter hook forward priority 0; policy accept; }}
add set bridge {TABLE} {set} {{ type ifname; }}
add rule bridge {TABLE} forward iifname @{set} oifname @{set} ether type {{ ip, ip6 }} drop comment \"net:{}:icc\"
",
        quote(network)
    );
    run_nft(
        ns,
        &format!("isolate containers of network {network}"),
        &["-f", "-"],
        Some(&script),
    )
    .map(drop)
}

/// Removes the isolation set of a network (its rule goes by tag).
pub fn delete_icc_set(ns: &NetnsRef, network: &str) -> Result<()> {
    let script = format!("delete set bridge {TABLE} {}\n", icc_set(network));
    match run_nft(
        ns,
        &format!("delete isolation set of {network}"),
        &["-f", "-"],
        Some(&script),
    ) {
        Err(Error::Nft { detail, .. }) if detail.contains("No such file") => Ok(()),
        r => r.map(drop),
    }
}

/// Adds (or removes) a veth to its network's isolation set.
pub fn icc_member(ns: &NetnsRef, network: &str, veth: &str, add: bool) -> Result<()> {
    let script = format!(
        "{} element bridge {TABLE} {} {{ \"{}\" }}\n",
        if add { "add" } else { "delete" },
        icc_set(network),
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

/// Allows a link's ports between `parent` and `child` through the isolation (both directions,
/// as Docker 1.4's link rules), tagged `ep:<owner>`.
pub fn add_link_rules(
    ns: &NetnsRef,
    owner: &str,
    parent: std::net::Ipv4Addr,
    child: std::net::Ipv4Addr,
    ports: &[crate::ports::ExposedPort],
) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let mut script = format!(
        "add table bridge {TABLE}
add chain bridge {TABLE} forward {{ type filter hook forward priority 0; policy accept; }}
"
    );
    for p in ports {
        for (src, dst, dir) in [(parent, child, "dport"), (child, parent, "sport")] {
            script.push_str(&format!(
                "insert rule bridge {TABLE} forward ip saddr {src} ip daddr {dst} {} {dir} {} accept comment \"ep:{}\"\n",
                p.proto,
                p.port,
                quote(owner)
            ));
        }
    }
    run_nft(
        ns,
        &format!("link rules of {owner}"),
        &["-f", "-"],
        Some(&script),
    )
    .map(drop)
}
