//! The daemon: unix sockets (mode 0660, with the `-G` group), tcp:// (with `--tls` or
//! `--tlsverify` on any address; without TLS loopback only unless forced: the API is
//! root on the host), fd:// (sockets
//! passed by systemd's socket activation, `LISTEN_FDS`), a pidfile, one hyper HTTP/1
//! connection per client, and a graceful stop on SIGTERM or SIGINT (stop accepting,
//! finish the requests in flight; containers keep running under their monitors).

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

/// How long a TLS client has to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(30);

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
    /// Serve tcp:// on addresses other than loopback without TLS (anyone who reaches
    /// the port is root on the host): refused unless this is set, then warned about.
    pub insecure_tcp: bool,
    /// `--label`: the daemon's labels (`/info`).
    pub labels: Vec<String>,
    /// `--config-file`: daemon.json with the same settings (`hosts`, `group`, `pidfile`,
    /// `debug`, `labels`, `tls`, `tlsverify`, `tlscacert`, `tlscert`, `tlskey`, and the
    /// [`EngineSettings`]); SIGHUP reloads what Docker reloads of them: `debug`, `labels`,
    /// `insecure-registries`, `registry-mirrors`, `max-concurrent-downloads` and
    /// `max-concurrent-uploads`.
    pub config_file: Option<PathBuf>,
    /// `--tls`: tcp:// sockets speak TLS with [`tls_cert`](Self::tls_cert) and
    /// [`tls_key`](Self::tls_key).
    pub tls: bool,
    /// `--tlsverify`: TLS, and every client must present a certificate signed by
    /// [`tls_ca_cert`](Self::tls_ca_cert) (implies `tls`).
    pub tls_verify: bool,
    /// `--tlscacert` (default `~/.docker/ca.pem`, or under `$DOCKER_CERT_PATH`).
    pub tls_ca_cert: Option<PathBuf>,
    /// `--tlscert` (default `~/.docker/cert.pem`).
    pub tls_cert: Option<PathBuf>,
    /// `--tlskey` (default `~/.docker/key.pem`).
    pub tls_key: Option<PathBuf>,
    /// The engine's settings ([`run_daemon`] opens the engine with them; [`run`] takes an
    /// engine already open and ignores them).
    pub engine: EngineSettings,
}

/// The daemon flags (and daemon.json keys) that set up the engine rather than the API
/// server: storage, the default bridge, DNS, registries, the data root, the log level.
/// Each is used by [`run_daemon`] or refused there with an error saying it is
/// unsupported.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EngineSettings {
    /// `-g/--data-root` (daemon.json `data-root`).
    pub data_root: Option<PathBuf>,
    /// `-s/--storage-driver`: overlay or vfs.
    pub storage_driver: Option<String>,
    /// `--storage-opt`: refused (the drivers here take no options).
    pub storage_opts: Vec<String>,
    /// `-b/--bridge`: the default network's bridge device (`none`: refused).
    pub bridge: Option<String>,
    /// `--bip`: the bridge's address and prefix.
    pub bip: Option<String>,
    /// `--fixed-cidr`: the default network's range for containers.
    pub fixed_cidr: Option<String>,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--icc`.
    pub icc: Option<bool>,
    /// `--ip`: the default host address of published ports.
    pub ip: Option<String>,
    /// `--ip-forward`.
    pub ip_forward: Option<bool>,
    /// `--ip-masq`.
    pub ip_masq: Option<bool>,
    /// `--iptables` (nftables rules here).
    pub iptables: Option<bool>,
    /// `--dns`: the nameservers of containers that name none.
    pub dns: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--insecure-registry`.
    pub insecure_registries: Vec<String>,
    /// `--registry-mirror`.
    pub registry_mirrors: Vec<String>,
    /// `-l/--log-level`: debug, info, warn, error or fatal (debug logs every request).
    pub log_level: Option<String>,
    /// `--max-concurrent-downloads`: blobs a pull downloads at once (default 3); 0: no
    /// limit, as dockerd's transfer manager; a negative number is refused, as dockerd
    /// refuses it ("invalid max concurrent downloads: -1").
    pub max_concurrent_downloads: Option<i64>,
    /// `--max-concurrent-uploads`: blobs a push uploads at once (default 5); 0: no limit;
    /// negative: refused.
    pub max_concurrent_uploads: Option<i64>,
}

/// What daemon.json sets.
#[derive(Debug, Default)]
struct FileConfig {
    hosts: Option<Vec<String>>,
    group: Option<String>,
    pidfile: Option<PathBuf>,
    debug: Option<bool>,
    labels: Option<Vec<String>>,
    tls: Option<bool>,
    tls_verify: Option<bool>,
    tls_ca_cert: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    engine: EngineSettings,
}

fn read_config(path: &Path) -> Result<FileConfig, Error> {
    let bad = |reason: String| Error::Config {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".into()))?;
    let strings = |k: &str, x: &serde_json::Value| -> Result<Vec<String>, Error> {
        x.as_array()
            .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
            .ok_or_else(|| bad(format!("{k}: expected a list of strings")))
    };
    let string = |k: &str, x: &serde_json::Value| -> Result<String, Error> {
        x.as_str()
            .map(String::from)
            .ok_or_else(|| bad(format!("{k}: expected a string")))
    };
    let boolean = |k: &str, x: &serde_json::Value| -> Result<bool, Error> {
        x.as_bool()
            .ok_or_else(|| bad(format!("{k}: expected true or false")))
    };
    let uint = |k: &str, x: &serde_json::Value| -> Result<u32, Error> {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(format!("{k}: expected a positive integer")))
    };
    let int = |k: &str, x: &serde_json::Value| -> Result<i64, Error> {
        x.as_i64()
            .ok_or_else(|| bad(format!("{k}: expected an integer")))
    };
    let mut c = FileConfig::default();
    for (k, x) in obj {
        let e = &mut c.engine;
        match k.as_str() {
            "data-root" | "graph" => e.data_root = Some(string(k, x)?.into()),
            "storage-driver" => e.storage_driver = Some(string(k, x)?),
            "storage-opts" => e.storage_opts = strings(k, x)?,
            "bridge" => e.bridge = Some(string(k, x)?),
            "bip" => e.bip = Some(string(k, x)?),
            "fixed-cidr" => e.fixed_cidr = Some(string(k, x)?),
            "mtu" => e.mtu = Some(uint(k, x)?),
            "icc" => e.icc = Some(boolean(k, x)?),
            "ip" => e.ip = Some(string(k, x)?),
            "ip-forward" => e.ip_forward = Some(boolean(k, x)?),
            "ip-masq" => e.ip_masq = Some(boolean(k, x)?),
            "iptables" => e.iptables = Some(boolean(k, x)?),
            "dns" => e.dns = strings(k, x)?,
            "dns-search" => e.dns_search = strings(k, x)?,
            "insecure-registries" => e.insecure_registries = strings(k, x)?,
            "registry-mirrors" => e.registry_mirrors = strings(k, x)?,
            "log-level" => e.log_level = Some(string(k, x)?),
            "max-concurrent-downloads" => e.max_concurrent_downloads = Some(int(k, x)?),
            "max-concurrent-uploads" => e.max_concurrent_uploads = Some(int(k, x)?),
            "tls" => c.tls = Some(boolean(k, x)?),
            "tlsverify" => c.tls_verify = Some(boolean(k, x)?),
            "tlscacert" => c.tls_ca_cert = Some(string(k, x)?.into()),
            "tlscert" => c.tls_cert = Some(string(k, x)?.into()),
            "tlskey" => c.tls_key = Some(string(k, x)?.into()),
            "hosts" => c.hosts = Some(strings(k, x)?),
            "labels" => c.labels = Some(strings(k, x)?),
            "group" => {
                c.group = Some(
                    x.as_str()
                        .ok_or_else(|| bad("group: expected a string".into()))?
                        .into(),
                )
            }
            "pidfile" => {
                c.pidfile = Some(
                    x.as_str()
                        .ok_or_else(|| bad("pidfile: expected a string".into()))?
                        .into(),
                )
            }
            "debug" => {
                c.debug = Some(
                    x.as_bool()
                        .ok_or_else(|| bad("debug: expected true or false".into()))?,
                )
            }
            other => {
                return Err(bad(format!(
                    "the following directives don't match any configuration option: {other}"
                )));
            }
        }
    }
    Ok(c)
}

/// `opts` with daemon.json's settings; a setting given both ways is refused, as Docker
/// refuses it.
fn merged(opts: &DaemonOptions) -> Result<DaemonOptions, Error> {
    let mut o = opts.clone();
    let Some(path) = &opts.config_file else {
        return Ok(o);
    };
    let c = read_config(path)?;
    let mut both = vec![];
    if let Some(h) = c.hosts {
        if !opts.hosts.is_empty() {
            both.push("hosts");
        }
        o.hosts = h;
    }
    if let Some(g) = c.group {
        if opts.group.is_some() {
            both.push("group");
        }
        o.group = Some(g);
    }
    if let Some(p) = c.pidfile {
        if opts.pidfile.is_some() {
            both.push("pidfile");
        }
        o.pidfile = Some(p);
    }
    if let Some(l) = c.labels {
        if !opts.labels.is_empty() {
            both.push("labels");
        }
        o.labels = l;
    }
    if let Some(d) = c.debug {
        o.debug = o.debug || d;
    }
    if let Some(t) = c.tls {
        o.tls = o.tls || t;
    }
    if let Some(t) = c.tls_verify {
        o.tls_verify = o.tls_verify || t;
    }
    for (key, file, flag) in [
        ("tlscacert", c.tls_ca_cert, &mut o.tls_ca_cert),
        ("tlscert", c.tls_cert, &mut o.tls_cert),
        ("tlskey", c.tls_key, &mut o.tls_key),
    ] {
        if let Some(p) = file {
            if flag.is_some() {
                both.push(key);
            }
            *flag = Some(p);
        }
    }
    merge_engine(&mut o.engine, c.engine, &opts.engine, &mut both);
    if !both.is_empty() {
        return Err(Error::Config {
            path: path.display().to_string(),
            reason: format!(
                "the following directives are specified both as a flag and in the configuration file: {}",
                both.join(", ")
            ),
        });
    }
    Ok(o)
}

/// daemon.json's engine settings over the flags' (a setting given both ways is listed in
/// `both`).
fn merge_engine(
    o: &mut EngineSettings,
    f: EngineSettings,
    flags: &EngineSettings,
    both: &mut Vec<&'static str>,
) {
    macro_rules! one {
        ($field:ident, $key:literal) => {
            if let Some(v) = f.$field {
                if flags.$field.is_some() {
                    both.push($key);
                }
                o.$field = Some(v);
            }
        };
    }
    macro_rules! list {
        ($field:ident, $key:literal) => {
            if !f.$field.is_empty() {
                if !flags.$field.is_empty() {
                    both.push($key);
                }
                o.$field = f.$field;
            }
        };
    }
    one!(data_root, "data-root");
    one!(storage_driver, "storage-driver");
    list!(storage_opts, "storage-opts");
    one!(bridge, "bridge");
    one!(bip, "bip");
    one!(fixed_cidr, "fixed-cidr");
    one!(mtu, "mtu");
    one!(icc, "icc");
    one!(ip, "ip");
    one!(ip_forward, "ip-forward");
    one!(ip_masq, "ip-masq");
    one!(iptables, "iptables");
    list!(dns, "dns");
    list!(dns_search, "dns-search");
    list!(insecure_registries, "insecure-registries");
    list!(registry_mirrors, "registry-mirrors");
    one!(log_level, "log-level");
    one!(max_concurrent_downloads, "max-concurrent-downloads");
    one!(max_concurrent_uploads, "max-concurrent-uploads");
}

/// A bound socket.
#[derive(Debug)]
enum Listener {
    /// A unix socket (its path is removed at the stop; `None`: passed by systemd).
    Unix(Option<PathBuf>, std::os::unix::net::UnixListener),
    /// A TCP socket, with the TLS configuration when `--tls`/`--tlsverify`.
    Tcp(
        String,
        std::net::TcpListener,
        Option<Arc<rustls::ServerConfig>>,
    ),
}

impl Listener {
    fn name(&self) -> String {
        match self {
            Listener::Unix(Some(p), _) => p.display().to_string(),
            Listener::Unix(None, l) => format!("fd {:?}", l.local_addr().ok()),
            Listener::Tcp(a, _, None) => format!("tcp://{a}"),
            Listener::Tcp(a, _, Some(_)) => format!("tcp://{a} (TLS)"),
        }
    }
}

/// A daemon with its sockets bound.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<Listener>,
    state: Arc<State>,
    /// What SIGHUP needs: the flags (daemon.json is merged over them again) and the
    /// registry options the flags' settings apply to.
    reload: Reload,
}

/// The daemon's options before daemon.json, and the registry client's base options.
#[derive(Debug, Clone)]
struct Reload {
    flags: DaemonOptions,
    client_base: longshore_registry::ClientOptions,
}

fn socket_path(host: &str) -> Result<PathBuf, Error> {
    let bad = |why: &str| Error::InvalidHost(host.to_string(), why.to_string());
    match host.split_once("://") {
        Some(("unix", p)) if p.starts_with('/') => Ok(PathBuf::from(p)),
        Some(("unix", _)) => Err(bad("the socket path must be absolute (unix:///run/x.sock)")),
        Some(("ssh", _)) => Err(bad(
            "ssh:// is a client-side transport, not a daemon socket",
        )),
        _ => Err(bad(
            "expected unix:///path/to/socket, tcp://HOST:PORT or fd://",
        )),
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
        let base = engine.client().options().clone();
        Server::bind_with(engine, opts, base)
    }

    /// [`Server::bind`]; `client_base`: the registry options that daemon.json's settings
    /// go over at a reload.
    fn bind_with(
        engine: Arc<Engine>,
        opts: &DaemonOptions,
        client_base: longshore_registry::ClientOptions,
    ) -> Result<Server, Error> {
        let reload = Reload {
            flags: opts.clone(),
            client_base,
        };
        let opts = &merged(opts)?;
        let gid = match &opts.group {
            Some(g) => Some(group_id(g).ok_or_else(|| Error::NoSuchGroup(g.clone()))?),
            None => group_id("docker"),
        };
        let hosts = if opts.hosts.is_empty() {
            vec![DEFAULT_HOST.to_string()]
        } else {
            opts.hosts.clone()
        };
        let tls = super::tls::server_config(opts)?;
        let mut listeners = vec![];
        for h in &hosts {
            if let Some(addr) = h.strip_prefix("tcp://") {
                listeners.push(listen_tcp(h, addr, opts, tls.clone())?);
            } else if let Some(which) = h.strip_prefix("fd://") {
                listeners.extend(activated(h, which, tls.clone())?);
            } else {
                let path = socket_path(h)?;
                let l = listen(&path, gid)?;
                listeners.push(Listener::Unix(Some(path), l));
            }
        }
        let debug = opts.debug || opts.engine.log_level.as_deref() == Some("debug");
        let state = State::new(engine, debug);
        *state.labels.lock().unwrap_or_else(|p| p.into_inner()) = opts.labels.clone();
        Ok(Server {
            listeners,
            state: Arc::new(state),
            reload,
        })
    }

    /// The unix socket paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.listeners
            .iter()
            .filter_map(|l| match l {
                Listener::Unix(Some(p), _) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// What the daemon listens on (socket paths, `tcp://ADDR`, passed fds).
    pub fn addresses(&self) -> Vec<String> {
        self.listeners.iter().map(Listener::name).collect()
    }

    /// Serves until `shutdown` completes, then stops accepting, removes the sockets and
    /// waits (up to ten seconds) for the requests in flight. Runs in a tokio runtime.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let (stop_tx, stop_rx) = watch::channel(false);
        // every connection holds a sender: when all are dropped, none is in flight
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let mut accepting = vec![];
        for l in self.listeners {
            let name = l.name();
            let err = |source| Error::Listen {
                path: name.clone(),
                source,
            };
            let l = match l {
                Listener::Unix(p, l) => {
                    Accept::Unix(p, tokio::net::UnixListener::from_std(l).map_err(err)?)
                }
                Listener::Tcp(_, l, tls) => Accept::Tcp(
                    tokio::net::TcpListener::from_std(l).map_err(err)?,
                    tls.map(tokio_rustls::TlsAcceptor::from),
                ),
            };
            accepting.push(tokio::spawn(accept_loop(
                name,
                l,
                self.state.clone(),
                stop_rx.clone(),
                alive_tx.clone(),
            )));
        }
        drop(alive_tx);
        let reload = tokio::spawn(reload_on_sighup(self.reload, self.state.clone()));
        let trim = tokio::spawn(trim_when_idle());
        shutdown.await;
        reload.abort();
        trim.abort();
        let _ = stop_tx.send(true);
        for a in accepting {
            let _ = a.await;
        }
        let _ = tokio::time::timeout(GRACE, alive_rx.recv()).await;
        Ok(())
    }
}

/// A listening socket on the runtime.
enum Accept {
    Unix(Option<PathBuf>, tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener, Option<tokio_rustls::TlsAcceptor>),
}

async fn accept_loop(
    name: String,
    l: Accept,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let mut stopped = stop.clone();
    loop {
        let accepted = async {
            match &l {
                Accept::Unix(_, l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
                Accept::Tcp(l, tls) => l.accept().await.map(|(s, peer)| {
                    let _ = s.set_nodelay(true);
                    match tls {
                        Some(t) => Conn::Tls(s, peer, t.clone()),
                        None => Conn::Tcp(s),
                    }
                }),
            }
        };
        tokio::select! {
            r = accepted => match r {
                Ok(stream) => {
                    let state = state.clone();
                    let stop = stop.clone();
                    let alive = alive.clone();
                    tokio::spawn(async move {
                        match stream {
                            Conn::Unix(s) => connection(s, state, stop).await,
                            Conn::Tcp(s) => connection(s, state, stop).await,
                            Conn::Tls(s, peer, tls) => {
                                // a client that does not finish its handshake (or has
                                // no valid certificate under --tlsverify) is dropped
                                let shake = tokio::time::timeout(HANDSHAKE, tls.accept(s));
                                match shake.await {
                                    Ok(Ok(s)) => connection(s, state, stop).await,
                                    Ok(Err(e)) => {
                                        if state.debug.load(std::sync::atomic::Ordering::Relaxed) {
                                            eprintln!("longshore daemon: TLS handshake with {peer}: {e}");
                                        }
                                    }
                                    Err(_) => {
                                        if state.debug.load(std::sync::atomic::Ordering::Relaxed) {
                                            eprintln!("longshore daemon: TLS handshake with {peer}: timed out");
                                        }
                                    }
                                }
                            }
                        }
                        drop(alive);
                    });
                }
                Err(e) => {
                    // out of fds, say: keep serving the connections there are
                    eprintln!("longshore daemon: accept on {name}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = async { stopped.wait_for(|s| *s).await.is_ok() } => break,
        }
    }
    if let Accept::Unix(Some(path), l) = l {
        drop(l);
        let _ = std::fs::remove_file(&path);
    }
}

/// An accepted connection.
enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
    Tls(
        tokio::net::TcpStream,
        std::net::SocketAddr,
        tokio_rustls::TlsAcceptor,
    ),
}

/// Requests received by this process's servers (see [`trim_when_idle`]).
static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long without a request before the allocator gives its free memory back.
const IDLE: Duration = Duration::from_secs(5);

/// Once the daemon has had no request for [`IDLE`] after a busy spell, gives the
/// allocator's free pages back to the system (glibc's `malloc_trim`). Under many clients
/// the engine's jobs run on up to 128 blocking threads, and glibc gives threads arenas of
/// their own (up to 8 per core); what the jobs freed stays in those arenas, resident: 200
/// clients for 20 s left 21-24 MB of anonymous memory behind after the threads had gone
/// (the daemon idles at under 1 MB of it), 5 MB after a trim.
async fn trim_when_idle() {
    use std::sync::atomic::Ordering;
    let mut seen = REQUESTS.load(Ordering::Relaxed);
    let mut trimmed = seen;
    loop {
        tokio::time::sleep(IDLE).await;
        let now = REQUESTS.load(Ordering::Relaxed);
        if now == seen && now != trimmed {
            trimmed = now;
            // a walk over every arena: off the runtime's thread
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        }
        seen = now;
    }
}

/// Returns the allocator's free memory to the system, and drops the binary's pages that
/// the busy spell mapped (as once set up: see [`run_with`]): under 200 clients the
/// daemon maps 10-15 MB of its text, which would otherwise stay in its RSS while it idles.
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only takes each arena's lock and releases pages no allocation
    // uses; it reads or writes no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
    // other threads may be running: they fault what they touch back in. The mappings
    // dropped are the binary's and its libraries' (nothing here maps files: no mmap;
    // a library glibc loads for NSS stays until the exit), so none is replaced by a
    // writable one between the look at /proc/self/maps and the drop
    crate::monitor::release_file_pages();
}

async fn connection<S>(stream: S, state: Arc<State>, mut stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(state, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // a client may shut its write side down once the request is sent: it still gets
        // the answer (without this the connection was closed at the EOF, answer unsent)
        .half_close(true)
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

/// `tcp://HOST:PORT`: with TLS on any address; without, refused on a non-loopback
/// address unless `--insecure-tcp`, with a warning when forced.
fn listen_tcp(
    host: &str,
    addr: &str,
    opts: &DaemonOptions,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<Listener, Error> {
    use std::net::ToSocketAddrs;
    let bad = |why: String| Error::InvalidHost(host.to_string(), why);
    let addr = addr.trim_end_matches('/');
    let addr = if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:2375")
    };
    let addrs: Vec<std::net::SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve {addr}: {e}")))?
        .collect();
    let Some(sa) = addrs.first().copied() else {
        return Err(bad(format!("{addr} resolves to no address")));
    };
    if !sa.ip().is_loopback() && tls.is_some() && !opts.tls_verify {
        eprintln!(
            "longshore daemon: WARNING: tcp://{sa} has TLS without --tlsverify: clients are not authenticated, anyone reaching it is root on this host"
        );
    }
    if !sa.ip().is_loopback() && tls.is_none() {
        if !opts.insecure_tcp {
            return Err(bad(format!(
                "{sa} is reachable from other hosts without TLS: anyone reaching it would be root on this host. Use --tlsverify (with --tlscacert, --tlscert, --tlskey), listen on 127.0.0.1, or force it with --insecure-tcp"
            )));
        }
        eprintln!(
            "longshore daemon: WARNING: the API on tcp://{sa} has no TLS and no authentication: anyone reaching it is root on this host"
        );
    }
    let l = std::net::TcpListener::bind(sa).map_err(|source| Error::Listen {
        path: format!("tcp://{sa}"),
        source,
    })?;
    l.set_nonblocking(true).map_err(|source| Error::Listen {
        path: format!("tcp://{sa}"),
        source,
    })?;
    let name = l.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    Ok(Listener::Tcp(name, l, tls))
}

/// The address family of socket `fd` (`SO_DOMAIN`).
fn socket_family(fd: i32) -> std::io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`, an int that lives for the
    // call; a bad fd is an error return, not undefined behaviour.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(v)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `fd://` (every socket systemd passed) or `fd://N` (that one): socket activation,
/// `LISTEN_PID` must be this process and `LISTEN_FDS` the count from fd 3 on.
fn activated(
    host: &str,
    which: &str,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<Vec<Listener>, Error> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let bad = |why: String| Error::InvalidHost(host.to_string(), why);
    let pid = std::env::var("LISTEN_PID").unwrap_or_default();
    if pid != std::process::id().to_string() {
        return Err(bad(
            "no sockets were passed to this process (LISTEN_PID is not its pid): fd:// is for systemd socket activation".into(),
        ));
    }
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| bad("LISTEN_FDS names no socket".into()))?;
    let fds: Vec<i32> = match which.trim_matches('/') {
        "" => (3..3 + n).collect(),
        s => {
            let fd: i32 = s
                .parse()
                .map_err(|_| bad(format!("{s:?} is not a file descriptor number")))?;
            if !(3..3 + n).contains(&fd) {
                return Err(bad(format!("fd {fd} was not passed (LISTEN_FDS={n})")));
            }
            vec![fd]
        }
    };
    let mut out = vec![];
    for fd in fds {
        let family = socket_family(fd).map_err(|e| bad(format!("fd {fd}: {e}")))?;
        // SAFETY: systemd passed fds 3..3+LISTEN_FDS to this process (LISTEN_PID checked)
        // for it to own; each is taken once, here, and nothing else in the process uses it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let err = |source| Error::Listen {
            path: format!("fd {fd}"),
            source,
        };
        match family {
            libc::AF_UNIX => {
                let l = std::os::unix::net::UnixListener::from(owned);
                l.set_nonblocking(true).map_err(err)?;
                out.push(Listener::Unix(None, l));
            }
            libc::AF_INET | libc::AF_INET6 => {
                let l = std::net::TcpListener::from(owned);
                l.set_nonblocking(true).map_err(err)?;
                let name = l
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| format!("fd {fd}"));
                out.push(Listener::Tcp(name, l, tls.clone()));
            }
            f => {
                return Err(bad(format!(
                    "fd {fd} is not a unix or TCP socket (family {f})"
                )));
            }
        }
    }
    Ok(out)
}

/// SIGHUP: re-reads daemon.json and applies what Docker reloads that this daemon has:
/// `debug`, `labels`, and the registry client's insecure registries, mirrors and
/// concurrency (a new client: pulls in progress finish with theirs). A bad file (or a
/// setting also given as a flag) is reported and changes nothing.
async fn reload_on_sighup(reload: Reload, state: Arc<State>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let Some(path) = &reload.flags.config_file else {
            eprintln!("longshore daemon: SIGHUP: no --config-file to reload");
            continue;
        };
        let checked = read_config(path).and_then(|c| {
            let all = merged(&reload.flags)?;
            let client = client_options(reload.client_base.clone(), &all.engine)?;
            Ok((c, client))
        });
        match checked {
            Ok((c, client)) => {
                if let Some(d) = c.debug {
                    state.debug.store(d, std::sync::atomic::Ordering::Relaxed);
                }
                if let Some(l) = c.labels {
                    *state.labels.lock().unwrap_or_else(|p| p.into_inner()) = l;
                }
                state.engine.set_client_options(client);
                eprintln!("longshore daemon: reloaded {}", path.display());
            }
            Err(e) => eprintln!("longshore daemon: SIGHUP: {e} (nothing changed)"),
        }
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

/// The registry client's options: the settings' insecure registries, mirrors and
/// concurrency over `base` (at the start, and again at each reload).
fn client_options(
    mut o: longshore_registry::ClientOptions,
    s: &EngineSettings,
) -> Result<longshore_registry::ClientOptions, Error> {
    let bad = |flag: &str, reason: String| Error::Setting {
        flag: flag.to_string(),
        reason,
    };
    for r in &s.insecure_registries {
        if !o.insecure_registries.contains(r) {
            o.insecure_registries.push(r.clone());
        }
    }
    for m in &s.registry_mirrors {
        if !(m.starts_with("http://") || m.starts_with("https://")) {
            return Err(bad(
                "--registry-mirror",
                format!("{m:?}: a mirror is a URL (https://host[:port])"),
            ));
        }
        if !o.mirrors.contains(m) {
            o.mirrors.push(m.clone());
        }
    }
    for (flag, what, n, field) in [
        (
            "--max-concurrent-downloads",
            "downloads",
            s.max_concurrent_downloads,
            &mut o.max_concurrent_downloads,
        ),
        (
            "--max-concurrent-uploads",
            "uploads",
            s.max_concurrent_uploads,
            &mut o.max_concurrent_uploads,
        ),
    ] {
        match n {
            // dockerd's words
            Some(n) if n < 0 => {
                return Err(bad(flag, format!("invalid max concurrent {what}: {n}")));
            }
            // dockerd's transfer manager: a limit of 0 is no limit
            Some(0) => *field = usize::MAX,
            Some(n) => *field = usize::try_from(n).unwrap_or(usize::MAX),
            None => {}
        }
    }
    Ok(o)
}

/// `EngineOptions` from the daemon's engine settings over `base`; the data root. A
/// setting this engine does not have is refused, saying so.
pub fn engine_options(
    root: &Path,
    base: crate::EngineOptions,
    s: &EngineSettings,
) -> Result<(PathBuf, crate::EngineOptions), Error> {
    let bad = |flag: &str, reason: String| Error::Setting {
        flag: flag.to_string(),
        reason,
    };
    let mut o = base;
    let root = s.data_root.clone().unwrap_or_else(|| root.to_path_buf());
    if !s.storage_opts.is_empty() {
        return Err(bad(
            "--storage-opt",
            format!(
                "unsupported: the overlay and vfs drivers here take no options ({})",
                s.storage_opts.join(", ")
            ),
        ));
    }
    if let Some(d) = &s.storage_driver {
        if !matches!(d.as_str(), "overlay" | "overlay2" | "vfs") {
            return Err(bad(
                "--storage-driver",
                format!("unsupported driver {d:?} (overlay, overlay2 or vfs)"),
            ));
        }
        o.driver = Some(if d == "overlay2" {
            "overlay".into()
        } else {
            d.clone()
        });
    }
    if let Some(l) = &s.log_level
        && !matches!(l.as_str(), "debug" | "info" | "warn" | "error" | "fatal")
    {
        return Err(bad(
            "--log-level",
            format!("{l:?} is not a log level (debug, info, warn, error, fatal)"),
        ));
    }
    o.client = client_options(o.client, s)?;
    let net_set = s.bridge.is_some()
        || s.bip.is_some()
        || s.fixed_cidr.is_some()
        || s.mtu.is_some()
        || s.icc.is_some()
        || s.ip.is_some()
        || s.ip_forward.is_some()
        || s.ip_masq.is_some()
        || s.iptables.is_some()
        || !s.dns.is_empty()
        || !s.dns_search.is_empty();
    if net_set {
        let mut n = o
            .network
            .take()
            .unwrap_or_else(crate::engine::default_network);
        let net = |flag: &str, v: &str| -> Result<ipnetwork::Ipv4Network, Error> {
            v.parse()
                .map_err(|e| bad(flag, format!("{v:?} is not an IPv4 address/prefix: {e}")))
        };
        if let Some(b) = &s.bridge {
            if b == "none" {
                return Err(bad(
                    "--bridge",
                    "unsupported: none (a daemon without its default bridge); containers can use --network none".into(),
                ));
            }
            n.bridge = b.clone();
        }
        if let Some(b) = &s.bip {
            n.bip = Some(net("--bip", b)?);
        }
        if let Some(f) = &s.fixed_cidr {
            n.fixed_cidr = Some(net("--fixed-cidr", f)?);
        }
        if let Some(m) = s.mtu {
            if !(68..=65535).contains(&m) {
                return Err(bad("--mtu", format!("{m} is out of range (68-65535)")));
            }
            n.mtu = Some(m);
        }
        if let Some(v) = s.icc {
            n.icc = v;
        }
        if let Some(ip) = &s.ip {
            n.ip = ip
                .parse()
                .map_err(|_| bad("--ip", format!("{ip:?} is not an IPv4 address")))?;
        }
        if let Some(v) = s.ip_forward {
            n.ip_forward = v;
        }
        if let Some(v) = s.ip_masq {
            n.ip_masq = v;
        }
        if let Some(v) = s.iptables {
            n.iptables = v;
        }
        if !s.dns.is_empty() || !s.dns_search.is_empty() {
            n.host_resolv_conf = daemon_resolv_conf(&root, &n.host_resolv_conf, s)?;
        }
        o.network = Some(n);
    }
    Ok((root, o))
}

/// `--dns`/`--dns-search`: `<root>/daemon-resolv.conf`, the file containers' resolv.conf
/// derive from (the host's, with the daemon's nameservers or search domains instead).
fn daemon_resolv_conf(root: &Path, host: &Path, s: &EngineSettings) -> Result<PathBuf, Error> {
    let bad = |flag: &str, reason: String| Error::Setting {
        flag: flag.to_string(),
        reason,
    };
    let hostconf = std::fs::read_to_string(host).unwrap_or_default();
    let mut out = String::new();
    for line in hostconf.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        let replaced = (key == "nameserver" && !s.dns.is_empty())
            || ((key == "search" || key == "domain") && !s.dns_search.is_empty());
        if !replaced {
            out.push_str(line);
            out.push('\n');
        }
    }
    for d in &s.dns {
        let ip: std::net::IpAddr = d
            .parse()
            .map_err(|_| bad("--dns", format!("{d:?} is not an IP address")))?;
        out.push_str(&format!("nameserver {ip}\n"));
    }
    if !s.dns_search.is_empty() {
        for d in &s.dns_search {
            if d.is_empty() || d.contains(char::is_whitespace) {
                return Err(bad("--dns-search", format!("{d:?} is not a domain")));
            }
        }
        out.push_str(&format!("search {}\n", s.dns_search.join(" ")));
    }
    let path = root.join("daemon-resolv.conf");
    std::fs::create_dir_all(root)
        .and_then(|()| std::fs::write(&path, out))
        .map_err(|e| bad("--dns", format!("write {}: {e}", path.display())))?;
    Ok(path)
}

/// `longshore daemon`: merges daemon.json, opens the engine at `root` (or `data-root`)
/// with `base` and the engine settings, restarts the containers whose restart policy
/// says so (as dockerd at boot), and serves until SIGTERM or SIGINT.
pub fn run_daemon(
    root: &Path,
    base: crate::EngineOptions,
    opts: &DaemonOptions,
) -> Result<(), Error> {
    let all = merged(opts)?;
    let client_base = base.client.clone();
    let (root, eopts) = engine_options(root, base, &all.engine)?;
    let engine = Engine::open(&root, eopts).map_err(|e| Error::Engine(Box::new(e)))?;
    match engine.restore_containers() {
        Ok(r) => {
            for (id, why) in &r.failed {
                eprintln!("longshore daemon: failed to restart container {id}: {why}");
            }
        }
        Err(e) => eprintln!("longshore daemon: restoring containers: {e}"),
    }
    run_with(engine, opts, client_base)
}

/// Runs the daemon over `engine` until SIGTERM or SIGINT.
pub fn run(engine: Engine, opts: &DaemonOptions) -> Result<(), Error> {
    let base = engine.client().options().clone();
    run_with(engine, opts, base)
}

fn run_with(
    engine: Engine,
    opts: &DaemonOptions,
    client_base: longshore_registry::ClientOptions,
) -> Result<(), Error> {
    ignore_sigpipe();
    // the pidfile may come from daemon.json (bind merges the file again for the rest)
    let pidfile = merged(opts)?.pidfile;
    if let Some(p) = &pidfile {
        write_pidfile(p)?;
    }
    let res = (|| {
        // listings (ps, the API's list) stat no container that did not change since
        engine.watch_containers();
        let server = Server::bind_with(Arc::new(engine), opts, client_base)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(128)
            .thread_keep_alive(Duration::from_secs(5))
            .build()
            .map_err(Error::Runtime)?;
        if opts.debug || opts.engine.log_level.as_deref() == Some("debug") {
            for a in server.addresses() {
                eprintln!("longshore daemon: API listening on {a}");
            }
        }
        let res = rt.block_on(async {
            let serving = tokio::spawn(server.serve(terminated()));
            // the binary's text that opening the engine, binding and starting to serve
            // touched is dropped from this process once the server's tasks have taken
            // their first step (listeners and signals registered, timers set): what
            // idling and serving need faults back in from the page cache. Fault-around
            // maps whole blocks of it (10 of the 13 MB of a fresh daemon's RSS), and whole
            // page-cache folios (up to 1 MB seen) when the binary was read in by a
            // sequential read (cp, cat, a sealed monitor's copy) rather than by execs:
            // each piece of code touched after this point costs a block or a folio, so
            // it comes after the runtime's and the server's setup, not before (idle RSS
            // 4.1 -> 2.0 MB, or 8.2 -> 4.3 MB with such folios)
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            crate::monitor::release_file_pages();
            serving
                .await
                .map_err(|e| Error::Runtime(std::io::Error::other(e)))?
        });
        // the requests in flight are answered; a job whose client is gone (a `logs -f`
        // waiting for its next line) does not hold the exit
        rt.shutdown_timeout(Duration::from_secs(1));
        res
    })();
    if let Some(p) = &pidfile {
        let _ = std::fs::remove_file(p);
    }
    res
}
