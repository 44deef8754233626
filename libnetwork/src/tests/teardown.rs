//! Fast teardown: veths deleted in the background (or by the kernel with their namespace),
//! DNAT rules deleted by handle; nothing is left behind once the controller is flushed.

use std::time::{Duration, Instant};

use super::common::{TestContainer, TestHost};
use crate::netlink::Netlink;
use crate::nft;
use crate::{EndpointConfig, EndpointInfo};
use longshore_test_support::require_root;

fn cfg(id: &str, c: &TestContainer) -> EndpointConfig {
    let mut cfg = EndpointConfig::new(id, Some(c.ns.netns().clone()));
    cfg.files_dir = Some(c.etc.clone());
    cfg
}

fn eth0_in(c: &TestContainer) -> bool {
    c.ns.netns()
        .run(|| Netlink::open()?.link("eth0"))
        .unwrap()
        .is_some()
}

#[test]
fn disconnect_releases_synchronously_and_flush_leaves_no_veth() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let ctrs: Vec<TestContainer> = (0..3).map(|_| TestContainer::new()).collect();
    let mut ips = Vec::new();
    for (i, c) in ctrs.iter().enumerate() {
        let mut cf = cfg(&format!("bg-{i}"), c);
        cf.publish = vec![format!("{}:80", 7400 + i).parse().unwrap()];
        ips.push(ctl.connect(&cf).unwrap().info.ip.unwrap().ip());
    }
    assert_eq!(host.veths().len(), 3);
    for i in 0..3 {
        ctl.disconnect(&format!("bg-{i}")).unwrap();
    }
    // released before disconnect returned: records, leases, rules, ports
    assert!(ctl.endpoints().unwrap().is_empty());
    assert!(ctl.leases("bridge").unwrap().is_empty());
    let tags = host.rule_tags();
    assert!(tags.iter().all(|t| !t.starts_with("ep:")), "{tags:?}");
    // the veths (and the records, moved aside) go in the background; after a flush none
    // is left, on either side
    ctl.flush().unwrap();
    assert!(host.veths().is_empty(), "{:?}", host.veths());
    let files: Vec<String> = std::fs::read_dir(host.state.path().join("state/endpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // no record is left; their files are kept, under temporary names, for the next ones
    assert!(files.iter().all(|f| f.contains(".tmp")), "{files:?}");
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(ctrs.iter().all(|c| !eth0_in(c)));
    let st = ctl.reaper_stats();
    assert_eq!(st.pending, 0);
    assert_eq!(st.deleted + st.gone_already, 3, "{st:?}");
    assert_eq!(ctl.cleanup().unwrap(), Default::default());
}

#[test]
fn reconnecting_at_once_waits_for_the_old_veth() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let c = TestContainer::new();
    let first = ctl.connect(&cfg("again", &c)).unwrap();
    for _ in 0..3 {
        ctl.disconnect("again").unwrap();
        // same id (same veth name), same address and MAC: must not meet the queued veth
        let mut cf = cfg("again", &c);
        cf.ip = Some(first.info.ip.unwrap().ip());
        let ep = ctl.connect(&cf).unwrap();
        assert_eq!(ep.info.ip, first.info.ip);
        assert_eq!(host.veths(), vec![ep.info.veth.clone().unwrap()]);
        assert!(eth0_in(&c));
    }
    ctl.disconnect("again").unwrap();
    ctl.flush().unwrap();
    assert!(host.veths().is_empty());
}

#[test]
fn a_destroyed_container_namespace_takes_its_veth_along() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let c = TestContainer::new();
    let mut cf = cfg("dying", &c);
    cf.publish = vec!["7500:80".parse().unwrap()];
    ctl.connect(&cf).unwrap();
    assert_eq!(host.veths().len(), 1);
    // the runtime destroys the namespace: no reference is left (the config held one)
    drop(cf);
    drop(c);
    ctl.disconnect_dying("dying").unwrap();
    assert!(ctl.endpoints().unwrap().is_empty());
    assert!(ctl.leases("bridge").unwrap().is_empty());
    assert!(host.rule_tags().iter().all(|t| !t.starts_with("ep:")));
    // the kernel removes the pair with the namespace (asynchronously); wait for it without
    // flushing, generously
    let t = Instant::now();
    while !host.veths().is_empty() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(host.veths().is_empty(), "{:?}", host.veths());
    ctl.flush().unwrap();
    let st = ctl.reaper_stats();
    eprintln!("reaper after a destroyed namespace: {st:?}");
    assert_eq!(st.deleted + st.gone_already, 1, "{st:?}");
    assert_eq!(ctl.cleanup().unwrap(), Default::default());
}

#[test]
fn a_namespace_that_lives_on_still_loses_its_veth() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let c = TestContainer::new();
    ctl.connect(&cfg("survivor", &c)).unwrap();
    // the caller claims the namespace dies, but it does not
    ctl.disconnect_dying("survivor").unwrap();
    ctl.flush().unwrap();
    assert!(host.veths().is_empty(), "{:?}", host.veths());
    assert!(!eth0_in(&c));
    assert_eq!(ctl.reaper_stats().deleted, 1);
    // and a dropped controller flushes too
    let c2 = TestContainer::new();
    {
        let ctl2 = host.controller();
        ctl2.connect(&cfg("survivor2", &c2)).unwrap();
        ctl2.disconnect_dying("survivor2").unwrap();
    }
    assert!(host.veths().is_empty(), "{:?}", host.veths());
    assert!(!eth0_in(&c2));
}

#[test]
fn a_released_namespace_takes_its_veth_without_the_controller_waiting() {
    require_root!();
    let host = TestHost::new(|_| {});
    let c = TestContainer::new();
    {
        let ctl = host.controller();
        ctl.connect(&cfg("released", &c)).unwrap();
        assert_eq!(host.veths().len(), 1);
        // as a runtime does once the container is dead: release (unpin) the namespace,
        // then disconnect; the dropped controller leaves the veth to the kernel
        drop(c);
        ctl.disconnect_dying("released").unwrap();
        assert_eq!(ctl.reaper_stats().pending, 1);
    }
    // the kernel removes it with the namespace (asynchronously)
    let deadline = Instant::now() + Duration::from_secs(20);
    while !host.veths().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(host.veths().is_empty(), "{:?}", host.veths());
}

#[test]
fn port_rules_go_by_handle_and_a_stale_handle_falls_back_to_the_tag() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let c = TestContainer::new();
    let mut cf = cfg("handles", &c);
    cf.publish = vec!["7600:80".parse().unwrap(), "7601:81/udp".parse().unwrap()];
    let ep = ctl.connect(&cf).unwrap();
    assert_eq!(ep.info.rule_handles.len(), 2);
    let rec = ctl.endpoint("handles").unwrap();
    assert_eq!(rec.rule_handles, ep.info.rule_handles);
    let ours = |tags: Vec<String>| tags.iter().filter(|t| *t == "ep:handles").count();
    assert_eq!(ours(host.rule_tags()), 2);
    // someone deletes one of the rules behind our back: the handle batch fails as a whole
    // and teardown falls back to the comment tag
    assert!(
        nft::delete_port_rules(host.ns.netns(), None, "handles", &ep.info.rule_handles[..1])
            .unwrap()
    );
    assert_eq!(ours(host.rule_tags()), 1);
    assert!(
        !nft::delete_port_rules(host.ns.netns(), None, "handles", &ep.info.rule_handles).unwrap()
    );
    assert_eq!(ours(host.rule_tags()), 1, "a failed batch deletes nothing");
    ctl.disconnect("handles").unwrap();
    assert_eq!(ours(host.rule_tags()), 0);
    // the plain path: by handle
    let mut cf = cfg("handles2", &c);
    cf.publish = vec!["7602:80".parse().unwrap()];
    ctl.connect(&cf).unwrap();
    assert_eq!(
        host.rule_tags()
            .iter()
            .filter(|t| *t == "ep:handles2")
            .count(),
        1
    );
    ctl.disconnect("handles2").unwrap();
    assert!(host.rule_tags().iter().all(|t| !t.starts_with("ep:")));
    ctl.flush().unwrap();
    assert!(host.veths().is_empty());
}

#[test]
fn echoed_handles_are_parsed_in_order() {
    let out = "add rule ip longshore ports tcp dport 8080 dnat to 172.17.0.2:80 comment \"ep:x\" # handle 12\n\
               add rule ip longshore ports udp dport 53 dnat to 172.17.0.2:53 comment \"ep:x\" # handle 13\n\
               # new generation 7 by process 99 (nft)\n";
    assert_eq!(nft::echoed_rule_handles(out), vec![12, 13]);
    assert!(nft::echoed_rule_handles("add table ip t # handle 1\n").is_empty());
}

#[test]
fn the_in_process_nft_session_echoes_handles_and_reports_errors() {
    require_root!();
    let host = TestHost::new(|_| {});
    let _ctl = host.controller(); // creates table ip longshore in the test host
    let s = crate::libnft::NftSession::start(host.ns.netns())
        .expect("libnftables.so.1 (package nftables) loads");
    let out = s
        .run("add rule ip longshore ports tcp dport 7700 dnat to 10.9.9.9:80 comment \"ep:sess\"\n")
        .unwrap();
    let h = nft::echoed_rule_handles(&out);
    assert_eq!(h.len(), 1, "{out}");
    // the rule is in the test host's namespace, not the machine's
    assert!(host.rule_tags().contains(&"ep:sess".to_string()));
    assert!(nft::delete_port_rules(host.ns.netns(), Some(&s), "sess", &h).unwrap());
    assert!(!host.rule_tags().contains(&"ep:sess".to_string()));
    // a stale handle: false, nothing deleted
    assert!(!nft::delete_port_rules(host.ns.netns(), Some(&s), "sess", &h).unwrap());
    let err = s
        .run("add rule ip longshore nosuchchain accept\n")
        .unwrap_err();
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn cleanup_removes_temporary_files_of_dead_processes_only() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let state = host.state.path().join("state");
    // a process that is certainly gone
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = [
        state.join("endpoints").join(format!("ghost.tmp{dead}-3")),
        state.join("ipam").join(format!("bridge.tmp{dead}-0")),
        state.join(format!("ports.tmp{dead}")),
    ];
    let ours = state
        .join("endpoints")
        .join(format!("busy.tmp{}-9", std::process::id()));
    let record_like = state
        .join("endpoints")
        .join(format!("x.tmp{dead}.json.bak"));
    for p in stale.iter().chain([&ours, &record_like]) {
        std::fs::write(p, b"{").unwrap();
    }
    let report = ctl.cleanup().unwrap();
    assert_eq!(
        report.temp_files,
        vec![
            format!("endpoints/ghost.tmp{dead}-3"),
            format!("ipam/bridge.tmp{dead}-0"),
            format!("ports.tmp{dead}"),
        ]
    );
    assert!(stale.iter().all(|p| !p.exists()));
    assert!(ours.exists(), "a live process's temporary file is kept");
    assert!(record_like.exists(), "only temporary files are touched");
    // a plain container's record and its setup leave no temporary file behind either
    let c = TestContainer::new();
    let mut cf = cfg("tidy", &c);
    cf.publish = vec!["7500:80".parse().unwrap()];
    ctl.connect(&cf).unwrap();
    std::fs::remove_file(&ours).unwrap();
    std::fs::remove_file(&record_like).unwrap();
    let leftovers: Vec<String> = ["", "endpoints", "ipam"]
        .iter()
        .flat_map(|d| std::fs::read_dir(state.join(d)).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    ctl.disconnect("tidy").unwrap();
    assert_eq!(ctl.cleanup().unwrap(), Default::default());
}

/// `nft -a list chain ip longshore ports` in the test host, rule lines without handles.
fn listed_rules(host: &TestHost) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", host.ns.name()])
        .args(["nft", "list", "chain", "ip", "longshore", "ports"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("dnat to"))
        .map(String::from)
        .collect()
}

#[test]
fn raw_netlink_rules_read_back_as_nft_writes_them_and_go_by_handle() {
    require_root!();
    let host = TestHost::new(|_| {});
    let _ctl = host.controller(); // creates table ip longshore in the test host
    let mut nf = crate::nfnl::NfTables::open_in(host.ns.netns()).unwrap();
    let ports: Vec<crate::ports::PortMapping> =
        [("0.0.0.0", 7800, 80, "tcp"), ("127.0.0.1", 7801, 53, "udp")]
            .iter()
            .map(|(ip, hp, cp, proto)| crate::ports::PortMapping {
                host_ip: ip.parse().unwrap(),
                host_port: *hp,
                container_ip: "172.17.0.9".parse().unwrap(),
                container_port: *cp,
                proto: proto.parse().unwrap(),
            })
            .collect();
    let h1 = nf.add_port_rules("raw", &ports, Some("lsbr0")).unwrap();
    let h2 = nf.add_port_rules("raw2", &ports[..1], None).unwrap();
    assert_eq!(h1.len(), 2);
    assert!(h1[0] < h1[1] && h1[1] < h2[0], "{h1:?} {h2:?}");
    // the same rules from text, through the nft command: identical listings
    let text = nft::add_port_rules(host.ns.netns(), None, "raw", &ports, Some("lsbr0")).unwrap();
    assert_eq!(text.len(), 2);
    let listed = listed_rules(&host);
    assert_eq!(
        listed,
        vec![
            "iifname != \"lsbr0\" tcp dport 7800 dnat to 172.17.0.9:80 comment \"ep:raw\"",
            "iifname != \"lsbr0\" ip daddr 127.0.0.1 udp dport 7801 dnat to 172.17.0.9:53 comment \"ep:raw\"",
            "tcp dport 7800 dnat to 172.17.0.9:80 comment \"ep:raw2\"",
            "iifname != \"lsbr0\" tcp dport 7800 dnat to 172.17.0.9:80 comment \"ep:raw\"",
            "iifname != \"lsbr0\" ip daddr 127.0.0.1 udp dport 7801 dnat to 172.17.0.9:53 comment \"ep:raw\"",
        ]
    );
    // the comments are tags cleanup finds
    assert_eq!(
        host.rule_tags().iter().filter(|t| *t == "ep:raw").count(),
        4
    );
    // deleted by handle, one transaction; a stale handle deletes nothing
    assert!(nf.delete_port_rules("raw", &h1).unwrap());
    assert!(!nf.delete_port_rules("raw", &[h1[0], h2[0]]).unwrap());
    assert_eq!(
        listed_rules(&host).len(),
        3,
        "a failed batch deletes nothing"
    );
    assert!(nf.delete_port_rules("raw2", &h2).unwrap());
    assert!(nf.delete_port_rules("raw", &text).unwrap());
    assert!(listed_rules(&host).is_empty());
    // refused by the kernel: a clear error, nothing added
    nft::delete_table(host.ns.netns()).unwrap();
    let err = nf.add_port_rules("raw", &ports, None).unwrap_err();
    assert!(
        err.to_string().contains("publish ports of raw")
            && err.to_string().contains("No such file"),
        "{err}"
    );
}

#[test]
fn record_files_are_reused_and_a_stale_reader_never_takes_another_containers_record() {
    use std::os::unix::fs::MetadataExt;
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let dir = host.state.path().join("state/endpoints");
    let c = TestContainer::new();
    ctl.connect(&cfg("first", &c)).unwrap();
    let ino = std::fs::metadata(dir.join("first.json")).unwrap().ino();
    // a reader that opened the record just before the teardown
    let stale = std::fs::File::open(dir.join("first.json")).unwrap();
    ctl.disconnect("first").unwrap();
    ctl.flush().unwrap();
    let c2 = TestContainer::new();
    let ep = ctl.connect(&cfg("second", &c2)).unwrap();
    assert_eq!(
        std::fs::metadata(dir.join("second.json")).unwrap().ino(),
        ino,
        "the retired file holds the new record"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // what the stale reader sees is the new record, which lookups of the old name refuse
    let seen: EndpointInfo = serde_json::from_reader(&stale).unwrap();
    assert_eq!(seen.container_id, "second");
    assert!(matches!(
        ctl.endpoint("first"),
        Err(crate::Error::EndpointNotFound(_))
    ));
    assert!(matches!(
        ctl.disconnect("first"),
        Err(crate::Error::EndpointNotFound(_))
    ));
    assert_eq!(ctl.endpoint("second").unwrap(), ep.info);
    let ids: Vec<String> = ctl
        .endpoints()
        .unwrap()
        .into_iter()
        .map(|e| e.container_id)
        .collect();
    assert_eq!(ids, vec!["second".to_string()]);
    // a second connect of a connected container keeps its record and the spare pool
    assert!(matches!(
        ctl.connect(&cfg("second", &c2)),
        Err(crate::Error::AlreadyConnected(_))
    ));
    ctl.disconnect("second").unwrap();
    assert!(ctl.endpoints().unwrap().is_empty());
    drop(ctl);
    // the controller's retired files go with it
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn cleanup_running_during_connects_takes_nothing_from_them() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let c = TestContainer::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // cleanup in a loop for the whole test: it must never find a connect's lease, port,
        // rules or veth orphaned (before the connect lock it could, for a record written
        // after it listed the endpoints)
        let cleaner = s.spawn(|| {
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = ctl.cleanup().unwrap();
                assert!(
                    r.orphan_leases.is_empty()
                        && r.orphan_ports.is_empty()
                        && r.orphan_rules.is_empty()
                        && r.orphan_veths.is_empty()
                        && r.endpoints.is_empty(),
                    "cleanup took from a live connect: {r:?}"
                );
                rounds += 1;
            }
            rounds
        });
        for i in 0..20 {
            let id = format!("cc-{i}");
            let mut cf = cfg(&id, &c);
            cf.publish = vec![format!("{}:80", 7600 + i).parse().unwrap()];
            let ep = ctl.connect(&cf).unwrap();
            let ip = ep.info.ip.unwrap().ip();
            assert_eq!(
                ctl.leases("bridge").unwrap().get(&ip).map(String::as_str),
                Some(id.as_str())
            );
            assert!(host.rule_tags().contains(&format!("ep:{id}")));
            ctl.disconnect(&id).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(cleaner.join().unwrap() > 0);
    });
    ctl.flush().unwrap();
    assert!(host.veths().is_empty(), "{:?}", host.veths());
}
