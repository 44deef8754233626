//! The Engine API server (the seed's *Docker Server*): `longshore daemon` speaks the Docker
//! Engine API over unix sockets, loopback TCP and sockets passed by systemd (fd://), so
//! that the docker CLI and the SDKs drive longshore unchanged.
//!
//! A request flows: socket → [`server`] (one hyper HTTP/1 connection per client) →
//! [`router`] (API version, then method + path → handler) → a handler that decodes the
//! query and body, calls one engine job on a blocking thread, and encodes its answer.
//! The daemon keeps no container state of its own: containers are supervised by their
//! monitors (see [`crate::monitor`]), so a daemon that stops leaves them running, and
//! another process (the `longshore` CLI in process) sees the same containers.
//!
//! The only state the server holds is transient: attach connections that arrived before
//! the container was started (the docker CLI attaches, then starts), handed to the
//! container's monitor by the start.
//!
//! `longshore daemon` is [`run`]; a program can also serve on its own runtime. This runs
//! as a doctest (no root needed to ping):
//!
//! ```
//! use std::io::{Read, Write};
//! use longshore_engine::{Engine, EngineOptions, api};
//!
//! let dir = tempfile::Builder::new().prefix("longshore-doc-").tempdir().unwrap();
//! let engine = Engine::open(dir.path().join("root"), EngineOptions::default()).unwrap();
//! let sock = dir.path().join("d.sock");
//! let mut opts = api::DaemonOptions::default();
//! opts.hosts = vec![format!("unix://{}", sock.display())];
//! let server = api::Server::bind(std::sync::Arc::new(engine), &opts).unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = std::thread::spawn(move || {
//!     let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//!     rt.block_on(server.serve(async { let _ = stopped.await; }))
//! });
//!
//! let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
//! c.write_all(b"GET /v1.45/_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n").unwrap();
//! let mut answer = String::new();
//! c.read_to_string(&mut answer).unwrap();
//! assert!(answer.starts_with("HTTP/1.1 200"));
//! assert!(answer.to_ascii_lowercase().contains("api-version: 1.45"));
//! assert!(answer.ends_with("OK"));
//!
//! stop.send(()).unwrap();
//! serving.join().unwrap().unwrap();
//! assert!(!sock.exists());
//! ```

mod archive;
mod attach;
mod body;
mod build;
mod containers;
mod create;
mod events;
mod exec;
mod exit;
mod images;
mod networks;
mod resources;
pub mod router;
pub mod server;
mod system;
mod tls;
mod volumes;
mod wait;

pub use server::{DaemonOptions, EngineSettings, Server, engine_options, run, run_daemon};

/// The API version this server speaks.
pub const API_VERSION: &str = "1.45";
/// The oldest API version it serves.
pub const MIN_API_VERSION: &str = "1.24";

/// Errors of the daemon itself (its sockets, pidfile and runtime); the errors of requests
/// are answered to the client as `{"message": ...}` and never end the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `-H` address the daemon cannot listen on.
    #[error("invalid -H {0:?}: {1}")]
    InvalidHost(String, String),
    /// The socket could not be created or given its mode and group.
    #[error("listen on {path}: {source}")]
    Listen {
        /// The socket path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `-G` names a group that does not exist.
    #[error("group {0:?} not found (-G/--group)")]
    NoSuchGroup(String),
    /// The pidfile names a daemon that is still running, or cannot be written.
    #[error("pidfile {path}: {reason}")]
    Pidfile {
        /// The pidfile.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// daemon.json is unreadable, malformed, or repeats a flag.
    #[error("config file {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// `--tls`/`--tlsverify`: a certificate, key or CA file that cannot be used.
    #[error("TLS: {path}: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A daemon setting that is malformed or not supported here.
    #[error("{flag}: {reason}")]
    Setting {
        /// The flag (or daemon.json key).
        flag: String,
        /// What is wrong, or that it is unsupported.
        reason: String,
    },
    /// The engine could not be opened.
    #[error("open the engine: {0}")]
    Engine(Box<crate::Error>),
    /// The async runtime could not be started.
    #[error("start the daemon's runtime: {0}")]
    Runtime(std::io::Error),
}
