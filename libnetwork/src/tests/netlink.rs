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
