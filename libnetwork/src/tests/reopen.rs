//! Opening a controller where the default network and its rules are in place installs
//! nothing again (no `nft` run, issue 10's bridge speed), and still repairs what is missing;
//! a disconnect from another process's controller deletes port rules by handle only in the
//! table that has them.

use std::process::Command;

use super::common::{TestContainer, TestHost};
use crate::EndpointConfig;
use longshore_test_support::require_root;

/// `(comment, handle)` of every rule of `ip longshore` in the test host's namespace.
fn rules(host: &TestHost) -> Vec<(String, u64)> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            host.ns.name(),
            "nft",
            "-a",
            "list",
            "table",
            "ip",
        ])
        .arg(crate::nft::TABLE)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (_, c) = l.split_once("comment \"")?;
            let (comment, rest) = c.split_once('"')?;
            let handle = rest.split_once("# handle ")?.1.trim().parse().ok()?;
            Some((comment.to_string(), handle))
        })
        .collect()
}

fn nft_in(host: &TestHost, script: &str) {
    let st = Command::new("ip")
        .args(["netns", "exec", host.ns.name(), "nft", script])
        .status()
        .unwrap();
    assert!(st.success(), "nft {script}");
}

#[test]
fn reopening_keeps_rules_in_place_and_repairs_a_deleted_table() {
    require_root!();
    let host = TestHost::new(|_| {});
    let first = host.controller();
    let installed = rules(&host);
    assert!(
        installed.iter().any(|(c, _)| c == "net:bridge:masq"),
        "{installed:?}"
    );
    drop(first);
    // a second process opening the same state directory: the same rules, not reinstalled
    // (reinstalling replaces them, with new handles)
    let second = host.controller();
    assert_eq!(rules(&host), installed);
    drop(second);

    // someone deletes the table: the next open installs the rules again
    nft_in(&host, &format!("delete table ip {}", crate::nft::TABLE));
    let third = host.controller();
    let again = rules(&host);
    let comments = |r: &[(String, u64)]| r.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>();
    assert_eq!(comments(&again), comments(&installed));
    drop(third);

    // other options, other rules: no masquerade
    let mut opts = host.opts.clone();
    opts.ip_masq = false;
    let fourth = crate::Controller::new(
        host.state.path().join("state"),
        host.ns.netns().clone(),
        opts,
    )
    .unwrap();
    let now = rules(&host);
    assert!(!now.iter().any(|(c, _)| c == "net:bridge:masq"), "{now:?}");
    drop(fourth);
}

#[test]
fn another_controller_deletes_port_rules_by_handle_only_in_their_table() {
    require_root!();
    // as the engine runs it: a proxy would hold the port in the process that started it
    let host = TestHost::new(|o| o.userland_proxy = false);
    let (a, b) = (TestContainer::new(), TestContainer::new());
    let owner = host.controller();
    let cfg = |id: &str, c: &TestContainer, port: u16| {
        EndpointConfig::new(id, Some(c.ns.netns().clone()))
            .publish(format!("{port}:80").parse().unwrap())
            .files_dir(c.etc.clone())
    };
    owner.connect(&cfg("first", &a, 7601)).unwrap();
    // the monitor of another process disconnects it: by handle, the rule is gone
    let other = host.controller();
    other.disconnect("first").unwrap();
    other.flush().unwrap(); // its veth, deleted by this controller's thread
    assert!(host.rule_tags().iter().all(|t| t != "ep:first"));

    owner.connect(&cfg("first", &a, 7601)).unwrap();
    let old: Vec<u64> = rules(&host)
        .into_iter()
        .filter(|(c, _)| c == "ep:first")
        .map(|(_, h)| h)
        .collect();
    // the table is deleted and created again: rule handles start over, so the new
    // container's rule may get the old one's handle
    nft_in(&host, &format!("delete table ip {}", crate::nft::TABLE));
    let next = host.controller();
    next.connect(&cfg("second", &b, 7602)).unwrap();
    let second: Vec<u64> = rules(&host)
        .into_iter()
        .filter(|(c, _)| c == "ep:second")
        .map(|(_, h)| h)
        .collect();
    assert_eq!(second.len(), 1);
    // a third controller disconnects the first container: its handles are of the old table
    // and must not delete the second container's rule (whatever their numbers)
    let third = host.controller();
    third.disconnect("first").unwrap();
    let tags = host.rule_tags();
    assert!(
        tags.contains(&"ep:second".to_string()),
        "{tags:?} (old {old:?})"
    );
    next.disconnect("second").unwrap();
    assert!(host.rule_tags().iter().all(|t| !t.starts_with("ep:")));
    drop((owner, other, next, third));
}
