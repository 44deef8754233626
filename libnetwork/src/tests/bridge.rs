//! The bridge driver end to end, in namespaces the tests create.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use super::common::{TestContainer, TestHost};
use crate::files::Link;
use crate::netlink::Netlink;
use crate::ports::{DYNAMIC_FIRST, DYNAMIC_LAST};
use crate::{EndpointConfig, Error, NetMode, NetworkCreate, nft, parse_mac};
use longshore_test_support::require_root;

fn cfg(id: &str, c: &TestContainer) -> EndpointConfig {
    let mut cfg = EndpointConfig::new(id, Some(c.ns.netns().clone()));
    cfg.files_dir = Some(c.etc.clone());
    cfg
}

#[test]
fn two_containers_ping_each_other_and_the_bridge_then_teardown_leaves_nothing() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let net = ctl.network("bridge").unwrap();
    // the test namespace has no routes: the first pool entry, as Docker 1.4
    assert_eq!(net.gateway.to_string(), "172.17.42.1/16");
    assert_eq!(net.mtu, 1500);
    let (a, b) = (TestContainer::new(), TestContainer::new());
    let ea = ctl.connect(&cfg("ctr-a", &a)).unwrap();
    let mut cb = cfg("ctr-b", &b);
    cb.mac = Some(parse_mac("02:42:de:ad:be:ef").unwrap());
    let eb = ctl.connect(&cb).unwrap();
    let ipa = ea.info.ip.unwrap().ip().to_string();
    let ipb = eb.info.ip.unwrap().ip().to_string();
    assert_ne!(ipa, ipb);
    assert_eq!(ea.info.mac.as_deref().unwrap(), {
        let o = ea.info.ip.unwrap().ip().octets();
        format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
    });
    let (_, link) = b.busybox(&["ip", "link", "show", "eth0"]);
    assert!(link.contains("02:42:de:ad:be:ef"), "{link}");
    let (_, route) = a.busybox(&["ip", "route"]);
    assert!(
        route.contains("default via 172.17.42.1 dev eth0"),
        "{route}"
    );
    assert!(a.ping(&ipb), "a cannot ping b");
    assert!(b.ping(&ipa), "b cannot ping a");
    assert!(a.ping("172.17.42.1"), "a cannot ping the bridge");
    // files
    let hosts = std::fs::read_to_string(a.etc.join("hosts")).unwrap();
    assert!(
        hosts.starts_with(&format!("{ipa} ctr-a\n127.0.0.1 localhost\n")),
        "{hosts}"
    );
    assert_eq!(
        ea.files.resolv_conf,
        "nameserver 192.0.2.53\nsearch test.invalid\n"
    );
    assert_eq!(
        std::fs::read_to_string(a.etc.join("hostname")).unwrap(),
        "ctr-a\n"
    );
    assert_eq!(host.veths().len(), 2);
    assert!(matches!(
        ctl.connect(&cfg("ctr-a", &a)),
        Err(Error::AlreadyConnected(_))
    ));

    ctl.disconnect("ctr-a").unwrap();
    ctl.disconnect("ctr-b").unwrap();
    ctl.flush().unwrap(); // veths go in the background
    assert!(host.veths().is_empty(), "{:?}", host.veths());
    let eth = a.ns.netns().run(|| Netlink::open()?.link("eth0")).unwrap();
    assert!(eth.is_none());
    assert!(ctl.endpoints().unwrap().is_empty());
    assert!(matches!(
        ctl.disconnect("ctr-a"),
        Err(Error::EndpointNotFound(_))
    ));
    // leases are gone: the first address can be had again
    assert!(ctl.leases("bridge").unwrap().is_empty());
    let c = TestContainer::new();
    let mut cc = cfg("ctr-c", &c);
    cc.ip = Some(ea.info.ip.unwrap().ip());
    let ec = ctl.connect(&cc).unwrap();
    assert_eq!(ec.info.ip, ea.info.ip);
    ctl.disconnect("ctr-c").unwrap();
}

fn echo_servers(c: &TestContainer, port: u16) {
    let (tcp, udp) =
        c.ns.netns()
            .run(|| {
                let t = TcpListener::bind(("0.0.0.0", port)).unwrap();
                let u = UdpSocket::bind(("0.0.0.0", port)).unwrap();
                Ok((t, u))
            })
            .unwrap();
    std::thread::spawn(move || {
        for s in tcp.incoming() {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                let mut b = [0u8; 512];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 || s.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = udp.recv_from(&mut b) {
            let _ = udp.send_to(&b[..n], from);
        }
    });
}

fn tcp_echo(host: &TestHost, addr: SocketAddr) -> String {
    tcp_echo_in(host.ns.netns(), addr)
}

fn tcp_echo_in(ns: &crate::netns::NetnsRef, addr: SocketAddr) -> String {
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"hello tcp").unwrap();
        let mut b = [0u8; 9];
        s.read_exact(&mut b).unwrap();
        Ok(String::from_utf8_lossy(&b).into_owned())
    })
    .unwrap()
}

fn udp_echo(host: &TestHost, addr: SocketAddr) -> String {
    host.ns
        .netns()
        .run(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut b = [0u8; 64];
            for _ in 0..6 {
                s.send_to(b"hello udp", addr).unwrap();
                if let Ok((n, _)) = s.recv_from(&mut b) {
                    return Ok(String::from_utf8_lossy(&b[..n]).into_owned());
                }
            }
            Ok(String::new())
        })
        .unwrap()
}

#[test]
fn published_ports_echo_tcp_and_udp_through_dnat_and_proxy() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let c = TestContainer::new();
    echo_servers(&c, 5000);
    let mut cf = cfg("web", &c);
    cf.publish = vec![
        "8080:5000".parse().unwrap(),
        "8081:5000/udp".parse().unwrap(),
        "127.0.0.1::5000".parse().unwrap(),
    ];
    cf.expose = vec!["6000".parse().unwrap()];
    cf.publish_all = true;
    let ep = ctl.connect(&cf).unwrap();
    assert_eq!(ep.info.ports.len(), 4, "{:?}", ep.info.ports);
    let random = ep.info.ports[2];
    assert_eq!(random.host_ip, Ipv4Addr::LOCALHOST);
    assert!((DYNAMIC_FIRST..=DYNAMIC_LAST).contains(&random.host_port));
    let all = ep.info.ports[3];
    assert_eq!(all.container_port, 6000);
    assert!((DYNAMIC_FIRST..=DYNAMIC_LAST).contains(&all.host_port));
    assert_ne!(all.host_port, random.host_port);
    assert_eq!(ep.info.ports[0].to_string(), "0.0.0.0:8080->5000/tcp");

    let gw: Ipv4Addr = "172.17.42.1".parse().unwrap();
    // loopback: the userland proxy
    assert_eq!(
        tcp_echo(&host, (Ipv4Addr::LOCALHOST, 8080).into()),
        "hello tcp"
    );
    assert_eq!(
        udp_echo(&host, (Ipv4Addr::LOCALHOST, 8081).into()),
        "hello udp"
    );
    assert_eq!(
        tcp_echo(&host, (Ipv4Addr::LOCALHOST, random.host_port).into()),
        "hello tcp"
    );
    // a host address: DNAT in the output chain
    assert_eq!(tcp_echo(&host, (gw, 8080).into()), "hello tcp");
    assert_eq!(udp_echo(&host, (gw, 8081).into()), "hello udp");
    // another container through the host's address: left to the proxy (Docker 1.4's way)
    let client = TestContainer::new();
    ctl.connect(&cfg("client", &client)).unwrap();
    assert_eq!(
        tcp_echo_in(client.ns.netns(), (gw, 8080).into()),
        "hello tcp"
    );
    ctl.disconnect("client").unwrap();
    let tags = host.rule_tags();
    assert_eq!(
        tags.iter().filter(|t| *t == "ep:web").count(),
        4,
        "{tags:?}"
    );

    // conflict: 8080 is taken; the failed container leaves nothing behind
    let c2 = TestContainer::new();
    let mut cf2 = cfg("web2", &c2);
    cf2.publish = vec!["8080:80".parse().unwrap()];
    let err = ctl.connect(&cf2).unwrap_err();
    assert!(
        err.to_string()
            .contains("0.0.0.0:8080/tcp failed: port is already allocated by web"),
        "{err}"
    );
    ctl.flush().unwrap(); // veths go in the background
    assert_eq!(host.veths().len(), 1);
    assert!(ctl.endpoint("web2").is_err());
    // a port bound by another process in the host namespace is refused too
    let _squat = host
        .ns
        .netns()
        .run(|| Ok(TcpListener::bind("0.0.0.0:9090").unwrap()))
        .unwrap();
    cf2.publish = vec!["9090:80".parse().unwrap()];
    let err = ctl.connect(&cf2).unwrap_err();
    assert!(
        matches!(
            err,
            Error::PortAllocated {
                host_port: 9090,
                ..
            }
        ),
        "{err}"
    );

    ctl.disconnect("web").unwrap();
    assert!(
        host.rule_tags().iter().all(|t| !t.starts_with("ep:")),
        "{:?}",
        host.rule_tags()
    );
    ctl.flush().unwrap(); // veths go in the background
    assert!(host.veths().is_empty());
    // the proxy is gone: the port can be bound again
    host.ns
        .netns()
        .run(|| Ok(TcpListener::bind("127.0.0.1:8080").unwrap()))
        .unwrap();
}

#[test]
fn icc_false_isolates_containers_but_not_the_bridge_and_links_open_their_ports() {
    require_root!();
    let host = TestHost::new(|o| o.icc = false);
    let ctl = host.controller();
    let (a, b, c) = (
        TestContainer::new(),
        TestContainer::new(),
        TestContainer::new(),
    );
    echo_servers(&a, 5000);
    let mut ca = cfg("iso-a", &a);
    ca.container_name = "db".into();
    ca.expose = vec!["5000".parse().unwrap()];
    let ea = ctl.connect(&ca).unwrap();
    let aip = ea.info.ip.unwrap().ip();
    let mut cb = cfg("iso-b", &b);
    cb.links = vec![Link::parse("db:db", aip.into(), ea.info.exposed.clone(), vec![]).unwrap()];
    ctl.connect(&cb).unwrap();
    ctl.connect(&cfg("iso-c", &c)).unwrap();
    assert!(a.ping("172.17.42.1"), "the bridge stays reachable");
    assert!(!c.ping(&aip.to_string()), "icc=false must block c -> a");
    assert!(!b.ping("db"), "a link opens its ports only, not ICMP");
    // the link's port is open from b, and only from b
    let a5000: SocketAddr = (aip, 5000).into();
    assert_eq!(tcp_echo_in(b.ns.netns(), a5000), "hello tcp");
    let c_blocked =
        c.ns.netns()
            .run(|| Ok(TcpStream::connect_timeout(&a5000, Duration::from_millis(500)).is_err()))
            .unwrap();
    assert!(c_blocked, "c has no link to a");
    assert!(host.rule_tags().contains(&"ep:iso-b".to_string()));
    for id in ["iso-b", "iso-c", "iso-a"] {
        ctl.disconnect(id).unwrap();
    }
    let tags = host.rule_tags();
    assert!(tags.iter().all(|t| !t.starts_with("ep:")), "{tags:?}");
    let set_name = nft::icc_set_name(&ctl.network("bridge").unwrap().id, "bridge");
    let set = host
        .ns
        .netns()
        .run(|| {
            let o = std::process::Command::new("nft")
                .args(["list", "set", "bridge", "longshore", &set_name])
                .output()
                .unwrap();
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .unwrap();
    assert!(
        !set.contains("lsv"),
        "veths left in the isolation set: {set}"
    );
}

#[test]
fn icc_false_without_firewall_rules_uses_bridge_port_isolation() {
    require_root!();
    let host = TestHost::new(|o| {
        o.icc = false;
        o.iptables = false;
    });
    let ctl = host.controller();
    let (a, b) = (TestContainer::new(), TestContainer::new());
    ctl.connect(&cfg("pi-a", &a)).unwrap();
    let eb = ctl.connect(&cfg("pi-b", &b)).unwrap();
    assert!(a.ping("172.17.42.1"));
    assert!(!a.ping(&eb.info.ip.unwrap().ip().to_string()));
    ctl.disconnect("pi-a").unwrap();
    ctl.disconnect("pi-b").unwrap();
}

#[test]
fn links_give_the_seed_env_and_hosts_entries() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let (src, tgt) = (TestContainer::new(), TestContainer::new());
    let mut s = cfg("282751e0777f", &src);
    s.container_name = "source".into();
    s.expose = vec!["5000/tcp".parse().unwrap()];
    ctl.connect(&s).unwrap();
    let child = ctl.endpoint("source").unwrap();
    let link = Link::parse(
        "source:mylink",
        std::net::IpAddr::V4(child.ip.unwrap().ip()),
        child.exposed.clone(),
        vec![],
    )
    .unwrap();
    let mut t = cfg("ee465e70bd38", &tgt);
    t.container_name = "target".into();
    t.links = vec![link];
    t.extra_hosts = vec![crate::files::HostsEntry::parse_add_host("db:10.9.9.9").unwrap()];
    t.dns = vec!["192.0.2.1".parse().unwrap()];
    let ep = ctl.connect(&t).unwrap();
    let sip = child.ip.unwrap().ip();
    let mut env = ep.link_env.clone();
    env.sort();
    assert_eq!(
        env,
        vec![
            "MYLINK_NAME=/target/mylink".to_string(),
            format!("MYLINK_PORT=tcp://{sip}:5000"),
            format!("MYLINK_PORT_5000_TCP=tcp://{sip}:5000"),
            format!("MYLINK_PORT_5000_TCP_ADDR={sip}"),
            "MYLINK_PORT_5000_TCP_PORT=5000".to_string(),
            "MYLINK_PORT_5000_TCP_PROTO=tcp".to_string(),
        ]
    );
    let tip = ep.info.ip.unwrap().ip();
    assert_eq!(
        std::fs::read_to_string(tgt.etc.join("hosts")).unwrap(),
        format!(
            "{tip} ee465e70bd38\n127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n10.9.9.9 db\n{sip} mylink\n"
        )
    );
    assert_eq!(
        ep.files.resolv_conf,
        "nameserver 192.0.2.1\nsearch test.invalid\n"
    );
    // `ip netns exec` mounts /etc/netns/<name>/hosts over /etc/hosts: the alias resolves
    assert!(tgt.ping("mylink"), "ping mylink from the target");
    ctl.disconnect("ee465e70bd38").unwrap();
    ctl.disconnect("282751e0777f").unwrap();
}

#[test]
fn fifty_concurrent_setups_get_unique_addresses_and_teardown_leaves_nothing() {
    require_root!();
    let host = TestHost::new(|o| o.fixed_cidr = Some("172.17.3.0/24".parse().unwrap()));
    let ctl = host.controller();
    let ctrs: Vec<TestContainer> = (0..50).map(|_| TestContainer::new()).collect();
    let eps: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let ctl = &ctl;
                s.spawn(move || {
                    let mut cf =
                        EndpointConfig::new(&format!("many-{i}"), Some(c.ns.netns().clone()));
                    cf.publish = vec![format!("{}:80", 10000 + i).parse().unwrap()];
                    ctl.connect(&cf).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<Ipv4Addr> = eps.iter().map(|e| e.info.ip.unwrap().ip()).collect();
    assert!(
        ips.iter().all(|ip| ip.octets()[2] == 3),
        "fixed-cidr respected: {ips:?}"
    );
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50);
    assert_eq!(host.veths().len(), 50);
    assert!(ctrs[7].ping(&eps[31].info.ip.unwrap().ip().to_string()));
    std::thread::scope(|s| {
        for i in 0..50 {
            let ctl = &ctl;
            s.spawn(move || ctl.disconnect(&format!("many-{i}")).unwrap());
        }
    });
    ctl.flush().unwrap(); // veths go in the background
    assert!(host.veths().is_empty());
    let tags = host.rule_tags();
    assert!(tags.iter().all(|t| !t.starts_with("ep:")), "{tags:?}");
    assert!(ctl.endpoints().unwrap().is_empty());
}

#[test]
fn crash_cleanup_removes_veths_rules_leases_and_ports() {
    require_root!();
    let host = TestHost::new(|_| {});
    let c = TestContainer::new();
    {
        let ctl = host.controller();
        let mut cf = cfg("crashed", &c);
        cf.publish = vec!["7000:80".parse().unwrap(), "7001:80/udp".parse().unwrap()];
        ctl.connect(&cf).unwrap();
        // the controller goes away without disconnecting, as in a crash
    }
    assert_eq!(host.veths().len(), 1);
    // an orphan veth on the bridge with no record at all (crash between create and record)
    let bridge = host.opts.bridge.clone();
    let other = TestContainer::new();
    let other_ns = other.ns.netns().clone();
    host.ns
        .netns()
        .run(|| {
            let mut nl = Netlink::open()?;
            let br = nl.link(&bridge)?.unwrap();
            let peer = crate::netlink::VethPeer {
                name: "eth0",
                mac: [2, 0x42, 1, 2, 3, 4],
                netns: &other_ns,
            };
            nl.create_veth("lsvorphan", br.index, 1500, &peer).map(drop)
        })
        .unwrap();
    // a lease and a port taken by a process that died before writing its record
    let state = host.state.path().join("state");
    let ipam = crate::ipam::Ipam::new(&state);
    let stray = ipam.allocate("bridge", "never-recorded", None).unwrap();
    crate::ports::PortAllocator::new(&state)
        .allocate(
            "never-recorded",
            Ipv4Addr::UNSPECIFIED,
            Some(7300),
            crate::ports::Proto::Tcp,
            |_| Ok(()),
        )
        .unwrap();
    let ctl = host.controller();
    let report = ctl.cleanup().unwrap();
    assert_eq!(report.endpoints, vec!["crashed".to_string()]);
    assert_eq!(report.orphan_veths, vec!["lsvorphan".to_string()]);
    assert_eq!(report.orphan_leases, vec![format!("bridge/{stray}")]);
    assert_eq!(report.orphan_ports, vec!["0.0.0.0:7300/tcp".to_string()]);
    assert!(host.veths().is_empty());
    assert!(
        host.rule_tags().iter().all(|t| !t.starts_with("ep:")),
        "{:?}",
        host.rule_tags()
    );
    // lease and ports are free again
    let mut cf = cfg("after", &c);
    cf.publish = vec!["7000:80".parse().unwrap()];
    let ep = ctl.connect(&cf).unwrap();
    assert_eq!(
        ep.info.ip.unwrap().ip().to_string(),
        "172.17.0.3",
        "sequential allocation resumes after the last lease"
    );
    ctl.disconnect("after").unwrap();
    assert!(ctl.leases("bridge").unwrap().is_empty());
}

#[test]
fn user_defined_networks_host_none_and_container_modes() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let net = ctl.create_network(&NetworkCreate::new("backend")).unwrap();
    // the default network took 172.17/16; the next pool entry is used
    assert_eq!(net.gateway.to_string(), "10.0.42.1/16");
    assert!(matches!(
        ctl.create_network(&NetworkCreate::new("backend")),
        Err(Error::NetworkExists(_))
    ));
    let names: Vec<String> = ctl
        .list_networks()
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, vec!["backend", "bridge"]);
    let (a, b) = (TestContainer::new(), TestContainer::new());
    let mut ca = cfg("ua", &a);
    ca.container_name = "alpha".into();
    ca.mode = "backend".parse().unwrap();
    let ea = ctl.connect(&ca).unwrap();
    let mut cb = cfg("ub", &b);
    cb.container_name = "beta".into();
    cb.mode = NetMode::Bridge("backend".into());
    let eb = ctl.connect(&cb).unwrap();
    assert!(
        eb.files
            .hosts
            .contains(&format!("{} alpha\n", ea.info.ip.unwrap().ip()))
    );
    assert!(
        b.ping("alpha"),
        "name resolution through /etc/hosts on a user network"
    );
    assert!(matches!(
        ctl.remove_network("backend"),
        Err(Error::NetworkInUse { count: 2, .. })
    ));

    // container:<name> joins a's namespace
    let mut cc = EndpointConfig::new("uc", None);
    cc.mode = "container:alpha".parse().unwrap();
    let ec = ctl.connect(&cc).unwrap();
    assert_eq!(ec.info.netns, a.ns.path());
    assert_eq!(ec.info.ip, ea.info.ip);
    // none: loopback only
    let n = TestContainer::new();
    let mut cn = cfg("un", &n);
    cn.mode = NetMode::None;
    let en = ctl.connect(&cn).unwrap();
    assert!(en.info.ip.is_none());
    assert!(n.ping("127.0.0.1"));
    let links = n.ns.netns().run(|| Netlink::open()?.links()).unwrap();
    assert_eq!(links.len(), 1);
    // host
    let mut ch = EndpointConfig::new("uh", None);
    ch.mode = NetMode::Host;
    let eh = ctl.connect(&ch).unwrap();
    assert_eq!(eh.info.netns, host.ns.path());

    for id in ["uc", "un", "uh", "ub"] {
        ctl.disconnect(id).unwrap();
    }
    let a_hosts = std::fs::read_to_string(a.etc.join("hosts")).unwrap();
    assert!(!a_hosts.contains("beta"), "{a_hosts}");
    ctl.disconnect("ua").unwrap();
    ctl.remove_network("backend").unwrap();
    assert!(!host.links().contains(&net.bridge));
    let tags = host.rule_tags();
    assert!(
        tags.iter().all(|t| !t.starts_with("net:backend")),
        "{tags:?}"
    );
    assert!(tags.contains(&"net:bridge:hairpin".to_string()), "{tags:?}");
    assert!(matches!(
        ctl.network("backend"),
        Err(Error::NetworkNotFound(_))
    ));
    assert!(matches!(
        ctl.remove_network("nope"),
        Err(Error::NetworkNotFound(_))
    ));
}

#[test]
fn bad_input_is_refused_without_side_effects() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let c = TestContainer::new();
    // bridge without a namespace
    assert!(ctl.connect(&EndpointConfig::new("nons", None)).is_err());
    // hostile ids and names
    assert!(ctl.connect(&cfg("../../etc/passwd", &c)).is_err());
    assert!(ctl.create_network(&NetworkCreate::new("../x")).is_err());
    // names that would inject lines into /etc/hosts or resolv.conf
    let mut cf = cfg("inject", &c);
    cf.hostname = Some("evil\n1.2.3.4 bank".into());
    assert!(matches!(
        ctl.connect(&cf),
        Err(Error::InvalidInput {
            what: "hostname",
            ..
        })
    ));
    let mut cf = cfg("inject", &c);
    cf.dns_search = vec!["a.test\nnameserver 6.6.6.6".into()];
    assert!(ctl.connect(&cf).is_err());
    let mut cf = cfg("inject", &c);
    cf.extra_hosts = vec![crate::files::HostsEntry {
        ip: "10.0.0.1".parse().unwrap(),
        names: vec!["a b".into()],
    }];
    assert!(ctl.connect(&cf).is_err());
    let mut cf = cfg("inject", &c);
    cf.links =
        vec![Link::parse("x:my$alias", "10.0.0.1".parse().unwrap(), vec![], vec![]).unwrap()];
    assert!(ctl.connect(&cf).is_err());
    assert!(!c.etc.exists(), "nothing written for refused configs");
    // the host namespace as a container namespace
    let mut cf = EndpointConfig::new("hostns", Some(host.ns.netns().clone()));
    cf.mode = NetMode::Bridge("bridge".into());
    assert!(ctl.connect(&cf).is_err());
    // an address outside the subnet
    let mut cf = cfg("badip", &c);
    cf.ip = Some("10.200.0.5".parse().unwrap());
    assert!(ctl.connect(&cf).is_err());
    // a subnet overlapping the default network
    assert!(
        ctl.create_network(&NetworkCreate::new("clash").gateway("172.17.99.1/24".parse().unwrap()))
            .is_err()
    );
    ctl.flush().unwrap(); // veths go in the background
    assert!(host.veths().is_empty());
    assert!(ctl.endpoints().unwrap().is_empty());
    assert!(ctl.list_networks().unwrap().len() == 1);
}

#[test]
fn daemon_options_route_avoidance_mtu_masquerade_iptables_and_ip_forward() {
    require_root!();
    let root_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    // a host whose routes already cover 172.17/16: the pool's next entry is chosen
    let host = TestHost::new(|o| {
        o.mtu = Some(1400);
        o.ip_masq = false;
    });
    host.ns
        .netns()
        .run(|| {
            let mut nl = Netlink::open()?;
            let i = nl.ensure_bridge("lsother", 1500)?;
            nl.add_address(i, "lsother", "172.17.5.1/16".parse().unwrap())
        })
        .unwrap();
    let ctl = host.controller();
    let net = ctl.network("bridge").unwrap();
    assert_eq!(net.gateway.to_string(), "10.0.42.1/16");
    assert_eq!(net.mtu, 1400);
    let fwd = host
        .ns
        .netns()
        .run(|| Ok(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()))
        .unwrap();
    assert_eq!(fwd.trim(), "1", "ip_forward inside the test host namespace");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        root_forward,
        "the machine's own namespace is untouched"
    );
    // --ip-masq=false: no masquerade rule
    assert!(!host.rule_tags().contains(&"net:bridge:masq".to_string()));
    let c = TestContainer::new();
    ctl.connect(&cfg("mtu", &c)).unwrap();
    let mtu =
        c.ns.netns()
            .run(|| Netlink::open()?.link("eth0"))
            .unwrap()
            .unwrap()
            .mtu;
    assert_eq!(mtu, Some(1400));
    ctl.disconnect("mtu").unwrap();
    drop(ctl);

    // --ip-masq (default) adds the rule; --iptables=false adds no rules at all but the
    // proxy still publishes the port
    let masq = TestHost::new(|_| {});
    let _ctl = masq.controller();
    assert!(masq.rule_tags().contains(&"net:bridge:masq".to_string()));
    let plain = TestHost::new(|o| {
        o.iptables = false;
        o.ip = Ipv4Addr::LOCALHOST; // --ip: the default address of published ports
    });
    let ctl = plain.controller();
    let c = TestContainer::new();
    echo_servers(&c, 5000);
    let mut cf = cfg("noipt", &c);
    cf.publish = vec!["8080:5000".parse().unwrap()];
    let ep = ctl.connect(&cf).unwrap();
    assert_eq!(ep.info.ports[0].to_string(), "127.0.0.1:8080->5000/tcp");
    assert!(plain.rule_tags().is_empty());
    assert_eq!(
        tcp_echo(&plain, (Ipv4Addr::LOCALHOST, 8080).into()),
        "hello tcp"
    );
    ctl.disconnect("noipt").unwrap();
}

#[test]
fn without_the_userland_proxy_dnat_and_hairpin_still_publish() {
    require_root!();
    let host = TestHost::new(|o| o.userland_proxy = false);
    let ctl = host.controller();
    let (srv, client) = (TestContainer::new(), TestContainer::new());
    echo_servers(&srv, 5000);
    let mut cf = cfg("srv", &srv);
    cf.publish = vec!["8080:5000".parse().unwrap()];
    ctl.connect(&cf).unwrap();
    ctl.connect(&cfg("cli", &client)).unwrap();
    let gw: Ipv4Addr = "172.17.42.1".parse().unwrap();
    assert_eq!(tcp_echo(&host, (gw, 8080).into()), "hello tcp");
    // container -> host address -> DNAT back into the bridge: the hairpin masquerade
    assert_eq!(
        tcp_echo_in(client.ns.netns(), (gw, 8080).into()),
        "hello tcp"
    );
    // loopback is not DNATed and no proxy listens: refused
    let refused = host
        .ns
        .netns()
        .run(|| Ok(TcpStream::connect((Ipv4Addr::LOCALHOST, 8080)).is_err()))
        .unwrap();
    assert!(refused);
    ctl.disconnect("cli").unwrap();
    ctl.disconnect("srv").unwrap();
    assert!(host.rule_tags().iter().all(|t| !t.starts_with("ep:")));
}

/// Runs only as the child of `a_crashed_process_is_cleaned_up_by_the_next_one`: sets up a
/// container with published ports, then exits without any teardown, like a crash.
#[test]
#[ignore = "helper, run in a child process by a_crashed_process_is_cleaned_up_by_the_next_one"]
fn crash_child_helper() {
    let spec = std::env::var("LS_CRASH_CHILD").expect("run by the parent test only");
    let p: Vec<&str> = spec.split('|').collect();
    let opts = crate::DaemonOptions {
        bridge: p[2].into(),
        host_resolv_conf: p[4].into(),
        ..Default::default()
    };
    let host = crate::netns::NetnsRef::from_path(p[0]).unwrap();
    let ctl = crate::Controller::new(p[1], host, opts).unwrap();
    let ctr = crate::netns::NetnsRef::from_path(p[3]).unwrap();
    let mut cf = EndpointConfig::new("victim", Some(ctr));
    cf.publish = vec!["7100:80".parse().unwrap(), "7101:80/udp".parse().unwrap()];
    ctl.connect(&cf).unwrap();
    // no destructor runs: proxies, records, rules and the veth are left as a crash leaves them
    std::process::exit(42);
}

#[test]
fn a_crashed_process_is_cleaned_up_by_the_next_one() {
    require_root!();
    let host = TestHost::new(|_| {});
    let c = TestContainer::new();
    let state = host.state.path().join("state");
    let spec = format!(
        "{}|{}|{}|{}|{}",
        host.ns.path().display(),
        state.display(),
        host.opts.bridge,
        c.ns.path().display(),
        host.opts.host_resolv_conf.display()
    );
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::bridge::crash_child_helper",
            "--ignored",
            "--nocapture",
        ])
        .env("LS_CRASH_CHILD", spec)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(42), "the child sets up and 'crashes'");
    assert_eq!(host.veths().len(), 1);
    assert!(host.rule_tags().contains(&"ep:victim".to_string()));

    let ctl = host.controller();
    let report = ctl.cleanup().unwrap();
    assert_eq!(report.endpoints, vec!["victim".to_string()]);
    assert!(host.veths().is_empty());
    assert!(host.rule_tags().iter().all(|t| !t.starts_with("ep:")));
    assert!(ctl.leases("bridge").unwrap().is_empty());
    assert!(ctl.endpoints().unwrap().is_empty());
    // the crashed process's ports are free for the next container
    let mut cf = cfg("heir", &c);
    cf.publish = vec!["7100:80".parse().unwrap(), "7101:80/udp".parse().unwrap()];
    ctl.connect(&cf).unwrap();
    ctl.disconnect("heir").unwrap();
    // a second cleanup finds nothing
    assert_eq!(ctl.cleanup().unwrap(), Default::default());
}

#[test]
fn bridge_mtu_follows_the_default_route_interface() {
    require_root!();
    let host = TestHost::new(|_| {});
    // an "uplink" with MTU 1450 carrying the test host's default route
    host.ns
        .netns()
        .run(|| {
            let mut nl = Netlink::open()?;
            let i = nl.ensure_bridge("lsuplink", 1450)?;
            nl.add_address(i, "lsuplink", "192.0.2.1/24".parse().unwrap())?;
            nl.add_default_route(i, "192.0.2.254".parse().unwrap())
        })
        .unwrap();
    let ctl = host.controller();
    assert_eq!(ctl.network("bridge").unwrap().mtu, 1450);
}

/// Two controllers on one state directory (as two daemons would be) allocate host ports
/// from the one port table: without the userland proxy nothing but the table holds a port
/// (the bind is only a probe), so a duplicate could only be kept out by it.
#[test]
fn two_controllers_on_one_state_directory_never_share_a_host_port() {
    require_root!();
    let host = TestHost::new(|o| {
        o.userland_proxy = false;
        o.fixed_cidr = Some("172.17.5.0/24".parse().unwrap());
    });
    let (a, b) = (host.controller(), host.controller());
    let ctrs: Vec<TestContainer> = (0..12).map(|_| TestContainer::new()).collect();
    let eps: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let ctl = if i % 2 == 0 { &a } else { &b };
                s.spawn(move || {
                    let mut cf = cfg(&format!("two-{i}"), c);
                    cf.publish = vec!["80".parse().unwrap(), "53/udp".parse().unwrap()];
                    ctl.connect(&cf).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for proto in ["tcp", "udp"] {
        let mut ports: Vec<u16> = eps
            .iter()
            .flat_map(|e| e.info.ports.iter())
            .filter(|p| p.proto.as_str() == proto)
            .map(|p| p.host_port)
            .collect();
        assert_eq!(ports.len(), 12);
        assert!(
            ports
                .iter()
                .all(|p| (DYNAMIC_FIRST..=DYNAMIC_LAST).contains(p))
        );
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 12, "{proto} ports handed out twice");
    }
    // a fixed port held through one controller is refused by the other, naming the holder
    let taken = eps[0].info.ports[0].host_port;
    let late = TestContainer::new();
    let mut cf = cfg("two-late", &late);
    cf.publish = vec![format!("{taken}:80").parse().unwrap()];
    let err = b.connect(&cf).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "{taken}/tcp failed: port is already allocated by two-0"
        )),
        "{err}"
    );
    for i in 0..12 {
        let ctl = if i % 2 == 0 { &a } else { &b };
        ctl.disconnect(&format!("two-{i}")).unwrap();
    }
    // every reservation is gone: the held port is free for the other controller now
    let ep = b.connect(&cf).unwrap();
    assert_eq!(ep.info.ports[0].host_port, taken);
    b.disconnect("two-late").unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    assert!(host.veths().is_empty());
    assert!(host.rule_tags().iter().all(|t| !t.starts_with("ep:")));
    assert!(a.endpoints().unwrap().is_empty());
}

/// Controllers started at the same moment on one state directory (a container's monitor
/// tearing down while the next `longshore run` starts): each replaces the network's rules
/// by handle, so without the state directory's lock one deleted handles the other had
/// just deleted and failed ("No such file or directory").
#[test]
fn controllers_started_at_once_on_one_state_directory_all_succeed() {
    require_root!();
    let host = TestHost::new(|o| o.userland_proxy = false);
    drop(host.controller());
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..5 {
                        drop(host.controller());
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}
