//! The userland proxy: forwards a published host port to the container, for traffic that
//! DNAT cannot reach (connections to the host's own loopback addresses).
//!
//! Each proxy runs a single-threaded tokio runtime on its own thread, which first enters the
//! host namespace: the listening socket and every socket it opens towards the container
//! belong to that namespace. Dropping the [`Proxy`] stops it and closes the port.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::netns::NetnsRef;
use crate::ports::Proto;

/// How long a UDP flow without traffic is kept.
const UDP_IDLE: Duration = Duration::from_secs(60);

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    listen: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Proxy {
    /// Binds `listen` in `ns` (this is where another process holding the port is detected)
    /// and forwards `proto` traffic to `target`.
    pub fn start(
        ns: &NetnsRef,
        proto: Proto,
        listen: SocketAddr,
        target: SocketAddr,
    ) -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let ns = ns.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ls-proxy-{}", listen.port()))
            .spawn(move || {
                let setup = (|| -> std::io::Result<(Bound, tokio::runtime::Runtime)> {
                    ns.enter().map_err(std::io::Error::other)?;
                    let b = match proto {
                        Proto::Tcp => Bound::Tcp(TcpListener::bind(listen)?),
                        Proto::Udp => Bound::Udp(UdpSocket::bind(listen)?),
                    };
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok((b, rt))
                })();
                let (bound, rt) = match setup {
                    Ok(x) => {
                        let _ = ready_tx.send(Ok(()));
                        x
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let serve = async {
                        match bound {
                            Bound::Tcp(l) => serve_tcp(l, target).await,
                            Bound::Udp(s) => serve_udp(s, target).await,
                        }
                    };
                    tokio::select! {
                        _ = stop_rx => {}
                        r = serve => {
                            if let Err(e) = r {
                                eprintln!("longshore-network: proxy {listen} -> {target} stopped: {e}");
                            }
                        }
                    }
                });
            })
            .map_err(|source| Error::Proxy {
                addr: listen.to_string(),
                source,
            })?;
        let res = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("proxy thread ended before binding")));
        match res {
            Ok(()) => Ok(Self {
                listen,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(source) => {
                let _ = thread.join();
                Err(Error::Proxy {
                    addr: format!("{listen}/{proto}"),
                    source,
                })
            }
        }
    }

    /// The listening address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_tcp(l: TcpListener, target: SocketAddr) -> std::io::Result<()> {
    l.set_nonblocking(true)?;
    let l = tokio::net::TcpListener::from_std(l)?;
    loop {
        let (mut inbound, _) = l.accept().await?;
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(target).await {
                Ok(mut out) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
                Err(e) => eprintln!("longshore-network: proxy connect to {target}: {e}"),
            }
        });
    }
}

async fn serve_udp(s: UdpSocket, target: SocketAddr) -> std::io::Result<()> {
    s.set_nonblocking(true)?;
    let s = Arc::new(tokio::net::UdpSocket::from_std(s)?);
    let mut flows: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
    let (gone_tx, mut gone_rx) = tokio::sync::mpsc::unbounded_channel::<SocketAddr>();
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            Some(client) = gone_rx.recv() => { flows.remove(&client); }
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
                        let (u2, s2, gone) = (u.clone(), s.clone(), gone_tx.clone());
                        tokio::spawn(async move {
                            let mut b = vec![0u8; 65536];
                            while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, u2.recv(&mut b)).await {
                                if s2.send_to(&b[..n], client).await.is_err() {
                                    break;
                                }
                            }
                            let _ = gone.send(client);
                        });
                        u
                    }
                };
                let _ = up.send(&buf[..n]).await;
            }
        }
    }
}
