//! The [`Engine`]: one data root holding the image store (libgraph), the containers'
//! records, the runtime's state (libcontainer), the network state (libnetwork), volumes
//! and the event log. Every job is a method on it, in the module of its subject.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use longshore_graph::{Store, StoreOptions};
use longshore_network::{Controller, DaemonOptions};
use longshore_registry::{Client, ClientOptions};

use crate::error::{Error, Result, graph};

/// How to open an [`Engine`].
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Graph driver (`overlay`, `vfs`); `None`: `$LONGSHORE_DRIVER` or detection.
    pub driver: Option<String>,
    /// Registry client settings (insecure registries, mirrors, concurrency...).
    pub client: ClientOptions,
    /// Network settings of the daemon (`--bridge`, `--bip`, `--icc`...). `None`: Docker's
    /// defaults (bridge `longshore0`, no userland proxy: published ports are reached from
    /// the host through nftables, so they stay up when the process that ran the container
    /// exits).
    pub network: Option<DaemonOptions>,
    /// The program a container's monitor runs as (a program whose `main` calls
    /// [`crate::monitor::run_if_monitor`] first). `None`: this program
    /// (`/proc/self/exe`).
    pub monitor_program: Option<PathBuf>,
}

/// The engine: every job of the seed's Engine over one data root.
pub struct Engine {
    pub(crate) root: PathBuf,
    graph: OnceLock<Arc<Store>>,
    /// Held while the store is being opened (two threads must not both open it).
    opening: std::sync::Mutex<()>,
    /// The registry client; replaced by [`Engine::set_client_options`] (a reload).
    client: std::sync::RwLock<Client>,
    pub(crate) opts: EngineOptions,
    network: OnceLock<Controller>,
    /// Parsed container records by ID, reused while their files are unchanged (a
    /// long-lived engine, the daemon, lists without re-reading every record).
    pub(crate) records: crate::containers::RecordCache,
    /// What `ps` needs of each container, by ID, reused while its directory is unchanged
    /// (shared with other processes through `containers/.ps-index`).
    pub(crate) listed: crate::containers::list::ListCache,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// How long a job waits for another process to release the image store.
const STORE_WAIT: Duration = Duration::from_secs(60);

impl Engine {
    /// Opens (creating) the data root at `root`: the directories of containers, runtime
    /// state, networks and volumes. The image store is opened by the first job that needs
    /// it; another `longshore` process using the same root is waited for (up to a minute)
    /// while it holds the store.
    pub fn open(root: impl AsRef<Path>, opts: EngineOptions) -> Result<Engine> {
        let root = root.as_ref().to_path_buf();
        for d in ["containers", "runtime", "volumes", "network"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(Error::io(format!("create {}", p.display())))?;
        }
        let client = Client::new(opts.client.clone());
        Ok(Engine {
            root,
            graph: OnceLock::new(),
            opening: Default::default(),
            client: std::sync::RwLock::new(client),
            opts,
            network: OnceLock::new(),
            records: Default::default(),
            listed: Default::default(),
        })
    }

    /// The image store, opened on first use: jobs that only read container records
    /// (`ps`, `logs`, `wait`, `events`) never touch it, so they neither pay for opening
    /// it nor wait for another process that holds it.
    pub(crate) fn store(&self) -> Result<&Arc<Store>> {
        if let Some(s) = self.graph.get() {
            return Ok(s);
        }
        let _one = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = self.graph.get() {
            return Ok(s);
        }
        let deadline = Instant::now() + STORE_WAIT;
        let mut pause = Duration::from_millis(1);
        let store = loop {
            let mut opts = StoreOptions::new();
            opts.driver = self.opts.driver.clone();
            match Store::open(&self.root, opts) {
                Err(longshore_graph::Error::StoreLocked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                r => {
                    break r.map_err(graph(format!("open image store {}", self.root.display())))?;
                }
            }
        };
        Ok(self.graph.get_or_init(|| Arc::new(store)))
    }

    /// The store of a job that opened it with [`Engine::store`] first.
    pub(crate) fn opened(&self) -> &Arc<Store> {
        self.graph
            .get()
            .expect("every job using opened() calls store() first, which sets the store")
    }

    /// An engine over an already opened store and client (its root is the store's).
    pub fn from_parts(graph: Store, client: Client) -> Engine {
        Engine {
            root: graph.root().to_path_buf(),
            graph: OnceLock::from(Arc::new(graph)),
            opening: Default::default(),
            client: std::sync::RwLock::new(client),
            opts: EngineOptions::default(),
            network: OnceLock::new(),
            records: Default::default(),
            listed: Default::default(),
        }
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image store (opened now if no job opened it yet).
    pub fn graph(&self) -> Result<&Store> {
        self.store().map(|s| &**s)
    }

    /// Releases the image store, so that other processes using the root need not wait
    /// for this one (a client that stays attached to a container, say).
    pub fn release_store(&mut self) {
        self.graph = OnceLock::new();
    }

    /// The registry client (a handle: cheap to clone, shares its connections and tokens).
    pub fn client(&self) -> Client {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the registry client with one of `opts` (insecure registries, mirrors,
    /// concurrency: what the daemon reloads from daemon.json on SIGHUP). Pulls and pushes
    /// already running finish with the client they began with; credentials given to the
    /// old client are not carried over.
    pub fn set_client_options(&self, opts: ClientOptions) {
        let c = Client::new(opts);
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = c;
    }

    /// The options the engine was opened with.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Where libcontainer keeps the containers' runtime state.
    pub(crate) fn runtime_root(&self) -> PathBuf {
        self.root.join("runtime")
    }

    /// The network controller (opened on first use: it creates the default bridge).
    pub fn network(&self) -> Result<&Controller> {
        if let Some(c) = self.network.get() {
            return Ok(c);
        }
        let opts = self.opts.network.clone().unwrap_or_else(default_network);
        let host = longshore_network::netns::NetnsRef::current().map_err(Error::network(
            "open the host network namespace".to_string(),
        ))?;
        let ctl = Controller::new(self.root.join("network"), host, opts)
            .map_err(Error::network("open the network controller".to_string()))?;
        Ok(self.network.get_or_init(|| ctl))
    }
}

/// Docker's network defaults for a daemonless engine: no userland proxy (its listeners
/// would die with the process that started the container).
pub fn default_network() -> DaemonOptions {
    let mut opts = DaemonOptions::default();
    opts.userland_proxy = false;
    opts
}
