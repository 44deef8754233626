//! Isolation under attack (issue 16): what a container or a neighbour on the host's network
//! tries, in namespaces the tests create, and the rules that stop it.
//!
//! A "neighbour" is a namespace joined to the test host by a veth pair of its own (not on
//! any bridge), as another machine on the host's network would be; it sets its own routes
//! and sysctls as an attacker on that machine could.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::common::{TestContainer, TestHost};
use crate::files::Link;
use crate::netlink::Netlink;
use crate::netns::NetnsRef;
use crate::{EndpointConfig, NetMode, NetworkCreate};
use longshore_test_support::{require_root, unique_name};

fn cfg(id: &str, c: &TestContainer) -> EndpointConfig {
    let mut cfg = EndpointConfig::new(id, Some(c.ns.netns().clone()));
    cfg.files_dir = Some(c.etc.clone());
    cfg
}

/// Runs `ip` with `args`; panics with its output on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a shell command inside namespace `ns` (by name); panics on failure.
fn sh_in(ns: &str, cmd: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Joins `n` to the host by a veth pair: `host_addr/24` on the host side, `n_addr/24` on
/// the neighbour's `eth0`. The pair goes away with the namespaces.
fn attach_neighbour(host: &TestHost, n: &TestContainer, host_addr: &str, n_addr: &str) {
    let hv = unique_name("lsn");
    let h = host.ns.name();
    ip(&[
        "-n",
        h,
        "link",
        "add",
        &hv,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        n.ns.name(),
    ]);
    ip(&[
        "-n",
        h,
        "addr",
        "add",
        &format!("{host_addr}/24"),
        "dev",
        &hv,
    ]);
    ip(&["-n", h, "link", "set", &hv, "up"]);
    ip(&[
        "-n",
        n.ns.name(),
        "addr",
        "add",
        &format!("{n_addr}/24"),
        "dev",
        "eth0",
    ]);
    ip(&["-n", n.ns.name(), "link", "set", "eth0", "up"]);
}

/// TCP and UDP echo servers on `port` inside `c`.
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

/// True when a TCP echo through `addr` works from inside `ns`.
fn tcp_reaches(ns: &NetnsRef, addr: SocketAddr) -> bool {
    ns.run(|| {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(1500)) else {
            return Ok(false);
        };
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut b = [0u8; 9];
        Ok(s.write_all(b"hello tcp").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"hello tcp")
    })
    .unwrap()
}

/// True when a UDP echo through `addr` answers from inside `ns` (three tries), sent from
/// `from` (port 0: any).
fn udp_reaches_from(ns: &NetnsRef, from: u16, addr: SocketAddr) -> bool {
    ns.run(|| {
        let s = UdpSocket::bind(("0.0.0.0", from)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let mut b = [0u8; 64];
        for _ in 0..3 {
            let _ = s.send_to(b"hello udp", addr);
            if let Ok((n, _)) = s.recv_from(&mut b) {
                return Ok(&b[..n] == b"hello udp");
            }
        }
        Ok(false)
    })
    .unwrap()
}

fn udp_reaches(ns: &NetnsRef, addr: SocketAddr) -> bool {
    udp_reaches_from(ns, 0, addr)
}

fn mac_bytes(s: &str) -> [u8; 6] {
    crate::parse_mac(s).unwrap()
}

/// The MAC address of `dev` in namespace `ns` (by name).
fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", dev])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let m = s
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {dev} in {ns}: {s}"));
    mac_bytes(m)
}

/// Sends raw Ethernet `frames` out of `eth0` of `ns`, as a process with `CAP_NET_RAW` in
/// the container can.
fn send_frames(ns: &NetnsRef, frames: &[Vec<u8>]) {
    ns.run(|| {
        let ifindex = Netlink::open()?.link("eth0")?.expect("eth0").index;
        for f in frames {
            raw_send(ifindex, f).unwrap();
        }
        Ok(())
    })
    .unwrap();
}

/// One `AF_PACKET` socket per frame (few frames; keeps the unsafe part small).
fn raw_send(ifindex: u32, frame: &[u8]) -> std::io::Result<()> {
    // SAFETY: plain socket(2) call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value that we then fill.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `fd` is our open socket, `frame` a live buffer of the given length and `sll`
    // a sockaddr_ll of the size passed; the descriptor is closed exactly once.
    let r = unsafe {
        let r = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        libc::close(fd);
        r
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An ARP request from `spa` claiming `sha` (the poison), asking for `tpa`, sent by the
/// container whose MAC is `src`.
fn arp_request(src: [u8; 6], sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A priority-tagged (802.1Q, VLAN 0) IPv4/UDP frame (UDP checksum 0: none).
fn vlan0_udp(
    dst: [u8; 6],
    src: [u8; 6],
    sip: Ipv4Addr,
    dip: Ipv4Addr,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x00, 0x08, 0x00]);
    let total = u16::try_from(20 + 8 + payload.len()).unwrap();
    let mut iph = vec![0x45, 0];
    iph.extend_from_slice(&total.to_be_bytes());
    iph.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    iph.extend_from_slice(&sip.octets());
    iph.extend_from_slice(&dip.octets());
    let c = ip_checksum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Counts the UDP datagrams arriving on `port` inside `ns` until dropped.
struct Counter {
    got: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Counter {
    fn new(ns: &NetnsRef, port: u16) -> Self {
        let sock = ns
            .run(|| Ok(UdpSocket::bind(("0.0.0.0", port)).unwrap()))
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let got = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut b = [0u8; 64];
            while !s.load(Ordering::Relaxed) {
                if sock.recv_from(&mut b).is_ok() {
                    g.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> u64 {
        self.got.load(Ordering::Relaxed)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends UDP datagrams to `to` from inside `ns` as fast as a short pause allows, until
/// dropped; counts the sends the kernel accepted (there was an address and a route).
struct Flood {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    fn new(ns: &NetnsRef, to: SocketAddr) -> Self {
        let sock = ns
            .run(|| Ok(UdpSocket::bind("0.0.0.0:0").unwrap()))
            .unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s) = (sent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if sock.send_to(b"flood", to).is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        Self {
            sent,
            stop,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends a raw frame out of `eth0` inside `ns` in a loop until dropped, as soon as `eth0`
/// exists and is up; counts the frames the kernel accepted.
struct RawFlood {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawFlood {
    fn new(ns: &NetnsRef, frame: Vec<u8>) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s, ns) = (sent.clone(), stop.clone(), ns.clone());
        let thread = std::thread::spawn(move || {
            ns.run(|| {
                while !s.load(Ordering::Relaxed) {
                    if let Some(i) = ifindex("eth0")
                        && raw_send(i, &frame).is_ok()
                    {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                Ok(())
            })
            .unwrap();
        });
        Self {
            sent,
            stop,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for RawFlood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The index of interface `name` in the calling thread's namespace.
fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

const GW: Ipv4Addr = Ipv4Addr::new(172, 17, 42, 1);

/// Item 1 (CVE-2020-8558 class): a neighbour that routes 127.0.0.1 via the host must not
/// reach a port published on 127.0.0.1, over TCP or UDP.
#[test]
fn issue16_a_port_published_on_loopback_is_not_reachable_from_a_neighbour() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let c = TestContainer::new();
    echo_servers(&c, 5000);
    let mut cf = cfg("lo-web", &c);
    cf.publish = vec![
        "127.0.0.1:8480:5000".parse().unwrap(),
        "127.0.0.1:8480:5000/udp".parse().unwrap(),
        "8481:5000".parse().unwrap(),
    ];
    ctl.connect(&cf).unwrap();
    let n = TestContainer::new();
    attach_neighbour(&host, &n, "198.51.100.1", "198.51.100.2");
    // the attacker's machine: no loopback address (no local route for 127/8), 127.0.0.1 routed
    // to the host, and replies from 127.0.0.1 accepted on eth0
    sh_in(
        n.ns.name(),
        "ip addr flush dev lo && ip route add 127.0.0.1/32 via 198.51.100.1 dev eth0 && \
         sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1 \
         net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0",
    );
    // the host itself reaches it (userland proxy), the neighbour reaches the port that is
    // published on every address: the path works
    let lo: SocketAddr = (Ipv4Addr::LOCALHOST, 8480).into();
    assert!(
        tcp_reaches(host.ns.netns(), lo),
        "the host reaches its loopback port"
    );
    assert!(
        tcp_reaches(n.ns.netns(), "198.51.100.1:8481".parse().unwrap()),
        "the neighbour reaches the port published on 0.0.0.0"
    );
    let tcp = tcp_reaches(n.ns.netns(), lo);
    let udp = udp_reaches(n.ns.netns(), lo);
    assert!(
        !tcp && !udp,
        "a neighbour reached 127.0.0.1:8480 of the host: tcp {tcp}, udp {udp}"
    );
    ctl.disconnect("lo-web").unwrap();
}

/// Item 2: with `--icc=false`, a container that routes to its neighbour via the gateway
/// and poisons the neighbour's ARP entry with the bridge's MAC reaches nothing, over TCP or
/// UDP; a priority-tagged (VLAN 0) frame does not pass either.
#[test]
fn issue16_icc_false_holds_against_routing_via_the_gateway_and_vlan0_frames() {
    require_root!();
    let host = TestHost::new(|o| o.icc = false);
    let ctl = host.controller();
    let (a, c) = (TestContainer::new(), TestContainer::new());
    echo_servers(&a, 5000);
    let ea = ctl.connect(&cfg("route-a", &a)).unwrap();
    let ec = ctl.connect(&cfg("route-c", &c)).unwrap();
    let (aip, cip) = (ea.info.ip.unwrap().ip(), ec.info.ip.unwrap().ip());
    let amac = mac_bytes(ea.info.mac.as_deref().unwrap());
    let cmac = mac_bytes(ec.info.mac.as_deref().unwrap());
    let brmac = mac_of(host.ns.name(), &host.opts.bridge);
    assert!(!c.ping(&aip.to_string()), "plain L2 isolation");

    // the attack: c routes a via the gateway, and tells a that c is at the bridge's MAC
    sh_in(
        c.ns.name(),
        &format!("ip route add {aip}/32 via {GW} dev eth0"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let poison = {
        let (ns, stop) = (c.ns.netns().clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                send_frames(&ns, &[arp_request(cmac, brmac, cip, aip)]);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let a5000: SocketAddr = (aip, 5000).into();
    let tcp = tcp_reaches(c.ns.netns(), a5000);
    let udp = udp_reaches(c.ns.netns(), a5000);
    stop.store(true, Ordering::Relaxed);
    poison.join().unwrap();

    // a priority-tagged frame straight to a's MAC
    let seen = Counter::new(a.ns.netns(), 5001);
    let frame = vlan0_udp(amac, cmac, cip, aip, 5001, b"vlan0");
    send_frames(c.ns.netns(), &vec![frame; 20]);
    std::thread::sleep(Duration::from_millis(300));
    let vlan0 = seen.count();
    drop(seen);
    assert!(
        !tcp && !udp && vlan0 == 0,
        "c reached a: through the gateway over tcp {tcp}, udp {udp}; VLAN 0 frames {vlan0} of 20"
    );
    for id in ["route-a", "route-c"] {
        ctl.disconnect(id).unwrap();
    }
}

/// Link exceptions are stateful: the linked child cannot open a connection to its parent
/// by sending from the linked port (a stateless `sport` rule let that through).
#[test]
fn issue16_link_exceptions_are_stateful() {
    require_root!();
    let host = TestHost::new(|o| o.icc = false);
    let ctl = host.controller();
    let (child, parent) = (TestContainer::new(), TestContainer::new());
    echo_servers(&child, 5000);
    echo_servers(&parent, 6000);
    let mut cc = cfg("link-child", &child);
    cc.container_name = "db".into();
    cc.expose = vec!["5000".parse().unwrap(), "5001/udp".parse().unwrap()];
    let ec = ctl.connect(&cc).unwrap();
    let cip = ec.info.ip.unwrap().ip();
    let mut cp = cfg("link-parent", &parent);
    cp.links = vec![Link::parse("db:db", cip.into(), ec.info.exposed.clone(), vec![]).unwrap()];
    let ep = ctl.connect(&cp).unwrap();
    let pip = ep.info.ip.unwrap().ip();
    // the link works from the parent
    assert!(tcp_reaches(parent.ns.netns(), (cip, 5000).into()));
    // the child, sending from its linked UDP port, to an unlinked port of the parent
    assert!(
        !udp_reaches_from(child.ns.netns(), 5001, (pip, 6000).into()),
        "the child reached the parent's port 6000 from its linked port 5001/udp"
    );
    for id in ["link-parent", "link-child"] {
        ctl.disconnect(id).unwrap();
    }
}

/// Item 3: no isolation window while containers connect or a controller starts: floods in
/// both directions between isolated containers see zero packets.
#[test]
fn issue16_icc_false_has_no_window_during_connect_or_controller_start() {
    require_root!();
    let host = TestHost::new(|o| o.icc = false);
    let ctl = host.controller();
    let (x, v) = (TestContainer::new(), TestContainer::new());
    let ex = ctl.connect(&cfg("win-x", &x)).unwrap();
    let xip = ex.info.ip.unwrap().ip();
    let vip = Ipv4Addr::new(172, 17, 0, 200);
    let at_x = Counter::new(x.ns.netns(), 7000);
    let at_v = Counter::new(v.ns.netns(), 7000);
    // v floods x from before it has an address; x floods v's address
    let from_v = Flood::new(v.ns.netns(), (xip, 7000).into());
    let from_x = Flood::new(x.ns.netns(), (vip, 7000).into());
    // and priority-tagged frames, which br_netfilter does not pass to the ip family: only
    // the bridge family's set stops them
    let (xmac, vmac) = (
        mac_bytes(ex.info.mac.as_deref().unwrap()),
        [0x02, 0x42, 172, 17, 0, 200],
    );
    let raw_v = RawFlood::new(v.ns.netns(), vlan0_udp(xmac, vmac, vip, xip, 7000, b"raw"));
    let raw_x = RawFlood::new(x.ns.netns(), vlan0_udp(vmac, xmac, xip, vip, 7000, b"raw"));
    let mut cv = cfg("win-v", &v);
    cv.ip = Some(vip);
    for _ in 0..8 {
        ctl.connect(&cv).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        ctl.disconnect("win-v").unwrap();
    }
    ctl.connect(&cv).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let at_connect = (at_x.count(), at_v.count());
    for _ in 0..6 {
        drop(host.controller());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (sent_v, sent_x) = (from_v.sent(), from_x.sent());
    let (raw_sent_v, raw_sent_x) = (raw_v.sent(), raw_x.sent());
    drop((from_v, from_x, raw_v, raw_x));
    std::thread::sleep(Duration::from_millis(100));
    let (got_x, got_v) = (at_x.count(), at_v.count());
    assert!(
        sent_v > 0 && sent_x > 0 && raw_sent_v > 0 && raw_sent_x > 0,
        "the floods ran: udp {sent_v} / {sent_x}, raw {raw_sent_v} / {raw_sent_x}"
    );
    assert_eq!(
        (got_x, got_v),
        (0, 0),
        "packets through the isolation (at x, at v), {at_connect:?} of them while v connected, \
         the rest while controllers started"
    );
    drop((at_x, at_v));
    ctl.disconnect("win-v").unwrap();
    ctl.disconnect("win-x").unwrap();
}

/// Item 4: forwarded traffic is filtered. A neighbour routing the containers' subnet via the
/// host reaches only published ports, the host no longer routes between its other
/// interfaces, containers still reach out, and what the user allows in `forward-user`
/// passes and survives a controller start.
#[test]
fn issue16_forwarding_is_filtered() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let c = TestContainer::new();
    echo_servers(&c, 5000);
    echo_servers(&c, 5001);
    let mut cf = cfg("fwd-web", &c);
    cf.publish = vec![
        "8482:5001".parse().unwrap(),
        "8482:5001/udp".parse().unwrap(),
    ];
    let ec = ctl.connect(&cf).unwrap();
    let cip = ec.info.ip.unwrap().ip();
    let (n1, n2) = (TestContainer::new(), TestContainer::new());
    attach_neighbour(&host, &n1, "198.51.100.1", "198.51.100.2");
    attach_neighbour(&host, &n2, "203.0.113.1", "203.0.113.2");
    sh_in(n1.ns.name(), "ip route add default via 198.51.100.1");
    sh_in(n2.ns.name(), "ip route add default via 203.0.113.1");
    echo_servers(&n2, 5002);
    let n2_5002: SocketAddr = "203.0.113.2:5002".parse().unwrap();

    // published: reachable
    assert!(tcp_reaches(
        n1.ns.netns(),
        "198.51.100.1:8482".parse().unwrap()
    ));
    assert!(udp_reaches(
        n1.ns.netns(),
        "198.51.100.1:8482".parse().unwrap()
    ));
    // containers reach out (masqueraded)
    assert!(
        tcp_reaches(c.ns.netns(), n2_5002),
        "a container reaches out"
    );
    // an unpublished port of a container: not reachable by routing to it; and the host
    // does not route between its other interfaces
    let tcp = tcp_reaches(n1.ns.netns(), (cip, 5000).into());
    let udp = udp_reaches(n1.ns.netns(), (cip, 5000).into());
    let routed = tcp_reaches(n1.ns.netns(), n2_5002);
    assert!(
        !tcp && !udp && !routed,
        "a neighbour reached an unpublished port of a container over tcp {tcp}, udp {udp}; \
         the host routed between two neighbours: {routed}"
    );
    // ... unless the user allows it, in our table's user chain, which a restart keeps
    sh_in(
        host.ns.name(),
        "nft add rule ip longshore forward-user ip saddr 198.51.100.2 ip daddr 203.0.113.2 accept",
    );
    drop(host.controller());
    assert!(tcp_reaches(n1.ns.netns(), n2_5002), "what the user enabled");
    ctl.disconnect("fwd-web").unwrap();
}

/// Item 5: isolated networks whose names differ only in '-' and '.' have their own sets:
/// removing one leaves the other working and removable.
#[test]
fn issue16_isolation_set_names_do_not_collide() {
    require_root!();
    let host = TestHost::new(|_| {});
    let ctl = host.controller();
    let base = unique_name("lsi");
    let (dash, dot) = (format!("{base}-x"), format!("{base}.x"));
    for name in [&dash, &dot] {
        ctl.create_network(&NetworkCreate::new(name.clone()).icc(crate::Icc::Isolated))
            .unwrap();
    }
    ctl.remove_network(&dash)
        .expect("removing one of two isolated networks");
    let (a, b) = (TestContainer::new(), TestContainer::new());
    let mut ca = cfg("set-a", &a);
    ca.mode = NetMode::Bridge(dot.clone());
    let mut cb = cfg("set-b", &b);
    cb.mode = NetMode::Bridge(dot.clone());
    ctl.connect(&ca).unwrap();
    let eb = ctl.connect(&cb).unwrap();
    assert!(
        !a.ping(&eb.info.ip.unwrap().ip().to_string()),
        "the remaining network is still isolated"
    );
    ctl.disconnect("set-a").unwrap();
    ctl.disconnect("set-b").unwrap();
    ctl.flush().unwrap();
    ctl.remove_network(&dot).unwrap();
}
