//! The userland proxy: forwards a published host port to the container, for traffic that
//! DNAT cannot reach (connections to the host's own loopback addresses).
//!
//! A [`ProxyRuntime`] is one thread that enters the host namespace and runs a
//! single-threaded tokio runtime serving every published port of its controller, one task
//! per port (and one per connection or UDP flow). It is started on the first port and
//! joined when dropped. Ports are added and removed by message: [`ProxyRuntime::start`]
//! waits until the runtime's thread has bound the listening socket (in the host namespace),
//! so a port held by another process is reported to the caller at once; dropping the
//! returned [`Proxy`] waits until the port is closed and its connections are cut.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::netns::NetnsRef;
use crate::ports::Proto;

/// How long a UDP flow without traffic is kept.
const UDP_IDLE: Duration = Duration::from_secs(60);

enum Cmd {
    Add {
        proto: Proto,
        listen: SocketAddr,
        target: SocketAddr,
        reply: std_mpsc::SyncSender<std::io::Result<(u64, SocketAddr)>>,
    },
    Remove {
        id: u64,
        done: std_mpsc::SyncSender<()>,
    },
    Shutdown,
}

struct Running {
    tx: mpsc::UnboundedSender<Cmd>,
    thread: JoinHandle<()>,
}

/// The proxy thread of one controller: serves all its published ports.
#[derive(Debug)]
pub struct ProxyRuntime {
    host: NetnsRef,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

/// One published port served by a [`ProxyRuntime`]; dropping it closes the port.
#[derive(Debug)]
pub struct Proxy {
    #[cfg_attr(not(test), allow(dead_code))]
    listen: SocketAddr,
    id: u64,
    tx: mpsc::UnboundedSender<Cmd>,
}

impl ProxyRuntime {
    /// A runtime for the namespace `host`; its thread starts with the first port.
    pub fn new(host: &NetnsRef) -> Self {
        Self {
            host: host.clone(),
            running: Mutex::new(None),
        }
    }

    fn sender(&self) -> Result<mpsc::UnboundedSender<Cmd>> {
        let mut g = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = g.as_ref()
            && !r.tx.is_closed()
        {
            return Ok(r.tx.clone());
        }
        if let Some(old) = g.take() {
            drop(old.tx);
            let _ = old.thread.join();
        }
        let (tx, rx) = mpsc::unbounded_channel::<Cmd>();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<std::io::Result<()>>(1);
        let ns = self.host.clone();
        let thread = std::thread::Builder::new()
            .name("ls-proxy".into())
            .spawn(move || {
                let setup = (|| -> std::io::Result<tokio::runtime::Runtime> {
                    ns.enter().map_err(std::io::Error::other)?;
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                })();
                match setup {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(()));
                        rt.block_on(serve(rx));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|source| Error::Proxy {
                addr: "proxy runtime".into(),
                source,
            })?;
        let res = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("proxy thread ended before starting")));
        if let Err(source) = res {
            let _ = thread.join();
            return Err(Error::Proxy {
                addr: "proxy runtime".into(),
                source,
            });
        }
        *g = Some(Running {
            tx: tx.clone(),
            thread,
        });
        Ok(tx)
    }

    /// Binds `listen` in the host namespace (this is where another process holding the port
    /// is detected, before this returns) and forwards `proto` traffic to `target`.
    pub fn start(&self, proto: Proto, listen: SocketAddr, target: SocketAddr) -> Result<Proxy> {
        let err = |source| Error::Proxy {
            addr: format!("{listen}/{proto}"),
            source,
        };
        let tx = self.sender()?;
        let (reply, rx) = std_mpsc::sync_channel(1);
        tx.send(Cmd::Add {
            proto,
            listen,
            target,
            reply,
        })
        .map_err(|_| err(std::io::Error::other("proxy runtime stopped")))?;
        let (id, listen) = rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("proxy runtime stopped")))
            .map_err(err)?;
        Ok(Proxy { listen, id, tx })
    }

    /// Whether the runtime's thread is running (it starts with the first port).
    #[cfg(test)]
    pub fn is_running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|r| !r.tx.is_closed())
    }
}

impl Drop for ProxyRuntime {
    fn drop(&mut self) {
        let running = self.running.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.take() {
            // the ports still open close here; their `Proxy` handles then find no runtime
            let _ = r.tx.send(Cmd::Shutdown);
            drop(r.tx);
            let _ = r.thread.join();
        }
    }
}

impl Proxy {
    /// The listening address (with the port the kernel chose when asked for port 0).
    #[cfg(test)]
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let (done, rx) = std_mpsc::sync_channel(1);
        if self.tx.send(Cmd::Remove { id: self.id, done }).is_ok() {
            // waits until the listening socket is closed (or the runtime is gone)
            let _ = rx.recv();
        }
    }
}

/// The runtime's main task: adds and removes ports until every sender is gone.
async fn serve(mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut ports: HashMap<u64, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut next = 0u64;
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Add {
                proto,
                listen,
                target,
                reply,
            } => {
                let task = match proto {
                    Proto::Tcp => TcpListener::bind(listen).and_then(|l| {
                        l.set_nonblocking(true)?;
                        let bound = l.local_addr()?;
                        let l = tokio::net::TcpListener::from_std(l)?;
                        Ok((
                            tokio::spawn(report(bound, target, serve_tcp(l, target))),
                            bound,
                        ))
                    }),
                    Proto::Udp => UdpSocket::bind(listen).and_then(|s| {
                        s.set_nonblocking(true)?;
                        let bound = s.local_addr()?;
                        let s = tokio::net::UdpSocket::from_std(s)?;
                        Ok((
                            tokio::spawn(report(bound, target, serve_udp(s, target))),
                            bound,
                        ))
                    }),
                };
                let r = task.map(|(t, bound)| {
                    next += 1;
                    ports.insert(next, t);
                    (next, bound)
                });
                let _ = reply.send(r);
            }
            Cmd::Remove { id, done } => {
                if let Some(t) = ports.remove(&id) {
                    t.abort();
                    // completes once the task (listener, connections) is dropped
                    let _ = t.await;
                }
                let _ = done.send(());
            }
            Cmd::Shutdown => break,
        }
    }
    for (_, t) in ports.drain() {
        t.abort();
        let _ = t.await;
    }
}

async fn report(
    listen: SocketAddr,
    target: SocketAddr,
    f: impl std::future::Future<Output = std::io::Result<()>>,
) {
    if let Err(e) = f.await {
        eprintln!("longshore-network: proxy {listen} -> {target} stopped: {e}");
    }
}

async fn serve_tcp(l: tokio::net::TcpListener, target: SocketAddr) -> std::io::Result<()> {
    // the connections die with the port's task
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = conns.join_next() => {}
            r = l.accept() => {
                let (mut inbound, _) = r?;
                conns.spawn(async move {
                    match tokio::net::TcpStream::connect(target).await {
                        Ok(mut out) => {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                        Err(e) => eprintln!("longshore-network: proxy connect to {target}: {e}"),
                    }
                });
            }
        }
    }
}

async fn serve_udp(s: tokio::net::UdpSocket, target: SocketAddr) -> std::io::Result<()> {
    let s = Arc::new(s);
    let mut flows: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            Some(r) = tasks.join_next() => {
                if let Ok(client) = r {
                    flows.remove(&client);
                }
            }
            r = s.recv_from(&mut buf) => {
                let (n, client) = r?;
                let up = match flows.get(&client) {
                    Some(u) => u.clone(),
                    None => {
                        let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                            .parse()
                            .expect("valid literal");
                        let u = Arc::new(tokio::net::UdpSocket::bind(bind).await?);
                        u.connect(target).await?;
                        flows.insert(client, u.clone());
                        let (u2, s2) = (u.clone(), s.clone());
                        tasks.spawn(async move {
                            let mut b = vec![0u8; 65536];
                            while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, u2.recv(&mut b)).await {
                                if s2.send_to(&b[..n], client).await.is_err() {
                                    break;
                                }
                            }
                            client
                        });
                        u
                    }
                };
                let _ = up.send(&buf[..n]).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn tcp_echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("echo bind");
        let addr = l.local_addr().expect("echo addr");
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn roundtrip(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
        let mut c = std::net::TcpStream::connect(addr).expect("connect through proxy");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        c.write_all(msg).expect("write");
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got).expect("read echo");
        got
    }

    #[test]
    fn many_ports_on_one_runtime() {
        longshore_test_support::require_root!();
        let rt = ProxyRuntime::new(&NetnsRef::current().expect("current netns"));
        assert!(!rt.is_running(), "the thread starts with the first port");
        let echo = tcp_echo();
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let proxies: Vec<Proxy> = (0..24)
            .map(|_| rt.start(Proto::Tcp, any, echo).expect("start proxy"))
            .collect();
        assert!(rt.is_running());
        for (i, p) in proxies.iter().enumerate() {
            assert_ne!(p.listen_addr().port(), 0, "the bound port is reported");
            let msg = format!("hello through port {i}");
            assert_eq!(roundtrip(p.listen_addr(), msg.as_bytes()), msg.as_bytes());
        }
        // an open connection is cut when its port is removed, and the port is free again
        let first = proxies[0].listen_addr();
        let mut open = std::net::TcpStream::connect(first).expect("connect");
        open.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        open.write_all(b"x").expect("write");
        let mut one = [0u8; 1];
        open.read_exact(&mut one).expect("echo");
        let addrs: Vec<SocketAddr> = proxies.iter().map(Proxy::listen_addr).collect();
        drop(proxies);
        let mut rest = Vec::new();
        match open.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the connection through a dropped proxy stayed open: {e}"
            ),
        }
        for a in addrs {
            assert!(
                std::net::TcpStream::connect(a).is_err(),
                "{a} still accepts after its proxy was dropped"
            );
        }
        // the same runtime still takes new ports
        let p = rt.start(Proto::Tcp, any, echo).expect("start again");
        assert_eq!(roundtrip(p.listen_addr(), b"again"), b"again");
        drop(p);
        drop(rt);
    }

    #[test]
    fn bind_error_surfaces_synchronously() {
        longshore_test_support::require_root!();
        let rt = ProxyRuntime::new(&NetnsRef::current().expect("current netns"));
        let echo = tcp_echo();
        let held = TcpListener::bind("127.0.0.1:0").expect("hold a port");
        let addr = held.local_addr().expect("addr");
        match rt.start(Proto::Tcp, addr, echo) {
            Err(Error::Proxy { source, addr: a }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
                assert!(a.contains(&addr.port().to_string()), "{a}");
            }
            other => panic!("expected an address-in-use error, got {other:?}"),
        }
        let held_udp = UdpSocket::bind("127.0.0.1:0").expect("hold a udp port");
        let uaddr = held_udp.local_addr().expect("addr");
        let e = rt
            .start(Proto::Udp, uaddr, echo)
            .expect_err("udp port is held");
        assert!(
            matches!(e, Error::Proxy { ref source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
        );
        // the failure left the runtime serving
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let p = rt
            .start(Proto::Tcp, any, echo)
            .expect("start after failure");
        assert_eq!(roundtrip(p.listen_addr(), b"ok"), b"ok");
    }
}
