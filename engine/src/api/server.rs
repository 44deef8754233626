//! The daemon: unix sockets (mode 0660, with the `-G` group), a pidfile, one hyper
//! HTTP/1 connection per client, and a graceful stop on SIGTERM or SIGINT (stop
//! accepting, finish the requests in flight; containers keep running under their
//! monitors).

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{mpsc, watch};

use super::Error;
use super::router::{State, handle};
use crate::engine::Engine;

/// The socket of a daemon started without `-H`.
pub const DEFAULT_HOST: &str = "unix:///run/longshore.sock";

/// How long a stopping daemon waits for the requests in flight.
const GRACE: Duration = Duration::from_secs(10);

/// The daemon's options (`longshore daemon` flags).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DaemonOptions {
    /// `-H`: `unix://PATH`, several allowed (empty: [`DEFAULT_HOST`]).
    pub hosts: Vec<String>,
    /// `-G`: the group of the sockets (default: `docker` when it exists, else root's).
    pub group: Option<String>,
    /// `-p`: a file holding the daemon's pid while it runs.
    pub pidfile: Option<PathBuf>,
    /// `-D`: log every request on stderr.
    pub debug: bool,
}

/// A daemon with its sockets bound.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<(PathBuf, std::os::unix::net::UnixListener)>,
    state: Arc<State>,
}

fn socket_path(host: &str) -> Result<PathBuf, Error> {
    let bad = |why: &str| Error::InvalidHost(host.to_string(), why.to_string());
    match host.split_once("://") {
        Some(("unix", p)) if p.starts_with('/') => Ok(PathBuf::from(p)),
        Some(("unix", _)) => Err(bad("the socket path must be absolute (unix:///run/x.sock)")),
        Some(("tcp" | "fd" | "ssh", _)) => Err(bad(
            "only unix:// sockets are served so far (tcp:// and fd:// are not built yet)",
        )),
        _ => Err(bad("expected unix:///path/to/socket")),
    }
}

/// The gid of group `name` from /etc/group.
fn group_id(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name).then_some(())?;
            f.nth(1)?.parse().ok()
        })
}

fn listen(path: &Path, gid: Option<u32>) -> Result<std::os::unix::net::UnixListener, Error> {
    let err = |source| Error::Listen {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another daemon is listening on this socket",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(err)?;
    }
    l.set_nonblocking(true).map_err(err)?;
    Ok(l)
}

impl Server {
    /// Binds the sockets of `opts.hosts` (a stale socket file is replaced; a live one
    /// is refused).
    pub fn bind(engine: Arc<Engine>, opts: &DaemonOptions) -> Result<Server, Error> {
        let gid = match &opts.group {
            Some(g) => Some(group_id(g).ok_or_else(|| Error::NoSuchGroup(g.clone()))?),
            None => group_id("docker"),
        };
        let hosts = if opts.hosts.is_empty() {
            vec![DEFAULT_HOST.to_string()]
        } else {
            opts.hosts.clone()
        };
        let mut listeners = vec![];
        for h in &hosts {
            let path = socket_path(h)?;
            let l = listen(&path, gid)?;
            listeners.push((path, l));
        }
        Ok(Server {
            listeners,
            state: Arc::new(State::new(engine, opts.debug)),
        })
    }

    /// The socket paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.listeners.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Serves until `shutdown` completes, then stops accepting, removes the sockets and
    /// waits (up to ten seconds) for the requests in flight. Runs in a tokio runtime.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let (stop_tx, stop_rx) = watch::channel(false);
        // every connection holds a sender: when all are dropped, none is in flight
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let mut accepting = vec![];
        for (path, l) in self.listeners {
            let l = tokio::net::UnixListener::from_std(l).map_err(|source| Error::Listen {
                path: path.display().to_string(),
                source,
            })?;
            accepting.push(tokio::spawn(accept_loop(
                path,
                l,
                self.state.clone(),
                stop_rx.clone(),
                alive_tx.clone(),
            )));
        }
        drop(alive_tx);
        shutdown.await;
        let _ = stop_tx.send(true);
        for a in accepting {
            let _ = a.await;
        }
        let _ = tokio::time::timeout(GRACE, alive_rx.recv()).await;
        Ok(())
    }
}

async fn accept_loop(
    path: PathBuf,
    l: tokio::net::UnixListener,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let mut stopped = stop.clone();
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((stream, _)) => {
                    let state = state.clone();
                    let stop = stop.clone();
                    let alive = alive.clone();
                    tokio::spawn(async move {
                        connection(stream, state, stop).await;
                        drop(alive);
                    });
                }
                Err(e) => {
                    // out of fds, say: keep serving the connections there are
                    eprintln!("longshore daemon: accept on {}: {e}", path.display());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = async { stopped.wait_for(|s| *s).await.is_ok() } => break,
        }
    }
    drop(l);
    let _ = std::fs::remove_file(&path);
}

async fn connection(
    stream: tokio::net::UnixStream,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(state, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(1 << 20)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let stopping = tokio::select! {
        _ = conn.as_mut() => false,
        r = stop.wait_for(|s| *s) => r.is_ok(),
    };
    if stopping {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// A write to a client that went away must fail with EPIPE, not kill the daemon (the
/// `longshore` CLI restores SIGPIPE's default for pipelines). Children started with
/// `std::process::Command` get the default back.
fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler and has no
    // preconditions; it is done before the runtime starts its threads.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

fn write_pidfile(path: &Path) -> Result<(), Error> {
    let err = |reason: String| Error::Pidfile {
        path: path.display().to_string(),
        reason,
    };
    if let Ok(old) = std::fs::read_to_string(path) {
        let pid = old.trim();
        if !pid.is_empty()
            && pid != std::process::id().to_string()
            && Path::new("/proc").join(pid).exists()
        {
            return Err(err(format!(
                "a daemon with pid {pid} is still running (remove the file if it is not a daemon)"
            )));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| err(e.to_string()))
}

/// Runs the daemon over `engine` until SIGTERM or SIGINT.
pub fn run(engine: Engine, opts: &DaemonOptions) -> Result<(), Error> {
    ignore_sigpipe();
    if let Some(p) = &opts.pidfile {
        write_pidfile(p)?;
    }
    let res = (|| {
        let server = Server::bind(Arc::new(engine), opts)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(128)
            .thread_keep_alive(Duration::from_secs(5))
            .build()
            .map_err(Error::Runtime)?;
        if opts.debug {
            for p in server.paths() {
                eprintln!("longshore daemon: API listening on {}", p.display());
            }
        }
        let res = rt.block_on(server.serve(terminated()));
        // the requests in flight are answered; a job whose client is gone (a `logs -f`
        // waiting for its next line) does not hold the exit
        rt.shutdown_timeout(Duration::from_secs(1));
        res
    })();
    if let Some(p) = &opts.pidfile {
        let _ = std::fs::remove_file(p);
    }
    res
}
