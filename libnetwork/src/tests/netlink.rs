//! The netlink layer, in namespaces created by the test.

use std::process::Command;

use crate::netlink::{Netlink, VethPeer};
use crate::netns::NamedNetns;
use longshore_test_support::{require_root, unique_name};

#[test]
fn bridge_and_veth_into_namespace_then_ping() {
    require_root!();
    let host = NamedNetns::create(&unique_name("lsh")).unwrap();
    let ctr = NamedNetns::create(&unique_name("lsc")).unwrap();
    let br = unique_name("lsb");
    let veth = unique_name("lsv");
    let ctr_ns = ctr.netns().clone();
    host.netns()
        .run(|| {
            let mut nl = Netlink::open()?;
            let bi = nl.ensure_bridge(&br, 1500)?;
            nl.add_address(bi, &br, "10.99.0.1/24".parse().unwrap())?;
            let peer = VethPeer {
                name: "eth0",
                mac: [2, 0x42, 10, 99, 0, 2],
                netns: &ctr_ns,
            };
            nl.create_veth(&veth, bi, 1500, &peer)?;
            Ok(())
        })
        .unwrap();
    ctr.netns()
        .run(|| {
            let mut nl = Netlink::open()?;
            let eth = nl.link("eth0")?.expect("eth0 in container");
            nl.set_up(eth.index, "eth0")?;
            nl.add_address(eth.index, "eth0", "10.99.0.2/24".parse().unwrap())?;
            nl.add_default_route(eth.index, "10.99.0.1".parse().unwrap())?;
            let routes = nl.routes_v4()?;
            assert!(routes.iter().any(|r| r.destination.prefix() == 0));
            Ok(())
        })
        .unwrap();
    // up to three tries: on a loaded machine the first packet may wait on neighbour
    // resolution longer than a second
    let ping = || {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ctr.name(),
                "busybox",
                "ping",
                "-c1",
                "-W1",
                "10.99.0.1",
            ])
            .output()
            .unwrap()
    };
    let mut out = ping();
    for _ in 0..2 {
        if out.status.success() {
            break;
        }
        out = ping();
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // deleting the host side removes the pair
    host.netns()
        .run(|| {
            let mut nl = Netlink::open()?;
            assert!(nl.delete_link(&veth)?);
            assert!(!nl.delete_link(&veth)?);
            Ok(())
        })
        .unwrap();
    let names: Vec<String> = ctr
        .netns()
        .run(|| Netlink::open()?.links())
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, vec!["lo".to_string()]);
}

/// `NetnsRef::run` works on the caller's thread when the caller is in the namespace
/// already, on a thread of its own otherwise, and never moves the caller; nested, a run in
/// another namespace from inside a run leaves the outer one where it was.
#[test]
fn run_stays_on_the_caller_thread_in_its_own_namespace_only() {
    require_root!();
    let ns = NamedNetns::create(&unique_name("lsr")).unwrap();
    let here = crate::netns::NetnsRef::current().unwrap();
    let me = std::thread::current().id();
    let same = here.run(|| Ok(std::thread::current().id())).unwrap();
    assert_eq!(
        same, me,
        "the caller's namespace runs on the caller's thread"
    );
    let inner = ns.netns().clone();
    let (outer_thread, inner_ns_seen, outer_after) = ns
        .netns()
        .run(|| {
            let t = std::thread::current().id();
            // nested: back into the caller's namespace from a thread in `ns`
            let seen = here.run(crate::netns::NetnsRef::current)?;
            let after = crate::netns::NetnsRef::current()?;
            Ok((t, seen, after))
        })
        .unwrap();
    assert_ne!(
        outer_thread, me,
        "another namespace runs on a thread of its own"
    );
    assert!(
        inner_ns_seen.same_as(&here),
        "the nested run was in the caller's namespace"
    );
    assert!(
        outer_after.same_as(&inner),
        "the nested run did not move the outer thread"
    );
    assert!(
        crate::netns::NetnsRef::current().unwrap().same_as(&here),
        "the caller never moved"
    );
}
