//! Name resolution on user-defined networks (issue 10: "containers reach each other by
//! name, as with Docker's embedded DNS"), without a DNS server: each member's `hosts` file
//! lists the others by name and alias and is rewritten in place as members come and go.
//! The lookups go through glibc (`getent`) and busybox's `ping` inside the namespaces,
//! with the files bind-mounted over `/etc` by `ip netns exec`, as a container sees them.

use std::process::Command;

use super::common::{TestContainer, TestHost};
use crate::{EndpointConfig, Error, NetMode, NetworkCreate};
use longshore_test_support::require_root;

fn member(id: &str, name: &str, net: &str, c: &TestContainer) -> EndpointConfig {
    EndpointConfig::new(id, Some(c.ns.netns().clone()))
        .name(name)
        .mode(NetMode::Bridge(net.into()))
        .files_dir(c.etc.clone())
}

/// The address `name` resolves to inside `c` (through its /etc/hosts), if any.
fn resolve(c: &TestContainer, name: &str) -> Option<String> {
    let out = Command::new("ip")
        // files only: a name that is not there must not wait for DNS timeouts
        .args([
            "netns",
            "exec",
            c.ns.name(),
            "getent",
            "-s",
            "files",
            "hosts",
            name,
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
}

#[test]
fn members_of_a_user_network_resolve_each_other_and_outsiders_do_not() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    ctl.create_network(&NetworkCreate::new("front")).unwrap();
    ctl.create_network(&NetworkCreate::new("other")).unwrap();
    let (a, b, c) = (
        TestContainer::new(),
        TestContainer::new(),
        TestContainer::new(),
    );
    let ea = ctl
        .connect(&member("na", "alpha", "front", &a).alias("api"))
        .unwrap();
    let eb = ctl.connect(&member("nb", "beta", "front", &b)).unwrap();
    let ec = ctl.connect(&member("nc", "gamma", "other", &c)).unwrap();
    let (aip, bip) = (
        ea.info.ip.unwrap().ip().to_string(),
        eb.info.ip.unwrap().ip().to_string(),
    );

    // b joined after a: it finds a by name and by alias
    assert_eq!(resolve(&b, "alpha").as_deref(), Some(aip.as_str()));
    assert_eq!(resolve(&b, "api").as_deref(), Some(aip.as_str()));
    // a's file was rewritten when b joined
    assert_eq!(resolve(&a, "beta").as_deref(), Some(bip.as_str()));
    assert!(a.ping("beta"), "alpha pings beta by name");
    assert!(b.ping("api"), "beta pings alpha by its alias");
    // a container of another network does not know them, nor they it
    assert_eq!(resolve(&c, "alpha"), None);
    assert_eq!(resolve(&c, "beta"), None);
    assert_eq!(resolve(&a, "gamma"), None);
    let _ = ec;

    // b leaves: its name is gone from a's file
    ctl.disconnect("nb").unwrap();
    assert_eq!(resolve(&a, "beta"), None);
    for id in ["na", "nc"] {
        ctl.disconnect(id).unwrap();
    }
    ctl.remove_network("front").unwrap();
    ctl.remove_network("other").unwrap();
    ctl.flush().unwrap();
    assert!(host.veths().is_empty());
}

#[test]
fn members_joining_at_once_each_end_up_in_every_other_hosts_file() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    ctl.create_network(&NetworkCreate::new("crowd")).unwrap();
    let ctrs: Vec<TestContainer> = (0..6).map(|_| TestContainer::new()).collect();
    // each from its own controller, as separate `longshore` processes would
    std::thread::scope(|s| {
        for (i, c) in ctrs.iter().enumerate() {
            let host = &host;
            s.spawn(move || {
                let ctl = host.controller();
                ctl.connect(&member(&format!("m{i}"), &format!("member{i}"), "crowd", c))
                    .unwrap();
            });
        }
    });
    let eps = ctl.endpoints().unwrap();
    for (i, c) in ctrs.iter().enumerate() {
        let hosts = std::fs::read_to_string(c.etc.join("hosts")).unwrap();
        for ep in eps.iter().filter(|e| e.container_id != format!("m{i}")) {
            let line = format!("{} {}\n", ep.ip.unwrap().ip(), ep.container_name);
            assert_eq!(
                hosts.matches(&line).count(),
                1,
                "member{i}'s hosts lacks or repeats {line:?}:\n{hosts}"
            );
        }
    }
    for i in 0..ctrs.len() {
        ctl.disconnect(&format!("m{i}")).unwrap();
    }
    ctl.remove_network("crowd").unwrap();
}

#[test]
fn an_unknown_network_driver_is_an_error_not_the_bridge() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let before = host.links();
    let err = ctl
        .create_network(&NetworkCreate::new("mv").driver("macvlan"))
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownDriver { driver } if driver == "macvlan"),
        "{err}"
    );
    assert!(err.to_string().contains("macvlan"), "{err}");
    assert!(matches!(
        ctl.create_network(&NetworkCreate::new("h2").driver("host")),
        Err(Error::InvalidInput { .. })
    ));
    // nothing was created
    assert!(matches!(ctl.network("mv"), Err(Error::NetworkNotFound(_))));
    assert_eq!(host.links(), before);
    assert_eq!(ctl.list_networks().unwrap().len(), 1);
}
