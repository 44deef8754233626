//! # longshore-engine
//!
//! The seed's *Engine*: jobs that compose the `lib*` crates. [`Engine::pull`]:
//! libregistry downloads an image's blobs straight into libgraph's
//! content store (through [`GraphContent`], no second copy, hashed once). With the overlay
//! driver every compressed layer is unpacked from its bytes while it downloads, all layers
//! at the same time, and attached to its parent afterwards; with vfs each layer is
//! unpacked on its parent as soon as both are in. The image is then recorded (its ID is
//! the config digest) and tagged with the reference. A 78 MB / 216 MB four-layer image
//! pulls and unpacks from a local registry in about half a second on two cores.
//!
//! Containers: [`Engine::create_container`], [`Engine::start_container`] (a per-container
//! monitor process becomes the container's parent, see [`monitor`]), stop, kill, restart,
//! pause, wait, rm, ps, logs, inspect, exec, attach, cp, update, stats and
//! [`Engine::top_container`]; images: list, import, tag, rmi, inspect, history,
//! [`Engine::push`] (an image of the store to a registry), [`Engine::login`],
//! [`Engine::search`], and [`Engine::build`] (libbuild with RUN steps in containers);
//! volumes; events on disk. A program that runs containers with the engine calls
//! [`monitor::run_if_monitor`] first in `main`. The Engine API server (`longshore daemon`,
//! the docker CLI's daemon) is [`api`].
//!
//! ```no_run
//! use longshore_engine::{Engine, EngineOptions, PullJobOptions};
//!
//! # async fn demo() -> Result<(), longshore_engine::Error> {
//! let engine = Engine::open(
//!     "/var/lib/longshore",
//!     EngineOptions {
//!         client: longshore_registry::ClientOptions::new()
//!             .insecure_registries(vec!["127.0.0.1:5000".into()]),
//!         ..Default::default()
//!     },
//! )?;
//! let report = engine
//!     .pull("127.0.0.1:5000/library/busybox:latest", &PullJobOptions::default())
//!     .await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! Errors name the image and the problem; this runs as a doctest:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let dir = tempfile::Builder::new().prefix("longshore-doc-").tempdir().unwrap();
//! let opts = longshore_engine::EngineOptions {
//!     driver: Some("vfs".into()),
//!     ..Default::default()
//! };
//! let engine = longshore_engine::Engine::open(dir.path(), opts).unwrap();
//! let err = engine
//!     .pull("Not A Reference", &Default::default())
//!     .await
//!     .unwrap_err();
//! assert!(err.to_string().contains("invalid image reference"));
//! # }
//! ```

pub mod api;
mod attach;
pub mod build;
pub mod containers;
mod content;
mod engine;
mod error;
pub mod events;
pub mod health;
mod images;
pub mod monitor;
pub mod network;
mod pull;
mod registry;
mod stage;
pub mod system;
mod top;
mod volumes;

pub use attach::{Attached, ExecProcess, ExecRequest, Frame, attach_to};
pub use containers::{
    AttachStreams, CommitRequest, Container, ContainerConfig, ContainerRecord, ContainerState,
    CreateRequest, HostConfig, ListOptions, LogLine, LogsOptions, MountSpec, RemoveOptions,
    StartOptions, StatsSample, StopOptions, Summary, UpdateRequest, WaitCondition,
};
pub use content::{GraphBlobWriter, GraphContent};
pub use engine::{Engine, EngineOptions, default_network};
pub use error::{Error, Result};
pub use events::{Event, EventsOptions};
pub use images::{ImageSummary, RemoveImageOptions, apply_change, load_message};
pub use network::ConnectOptions;
pub use pull::{LayerOutcome, PullJobOptions, PullReport};
pub use registry::{PushJobOptions, PushReport};
pub use top::Top;
pub use volumes::Volume;

/// The package name, for diagnostics.
pub const CRATE_NAME: &str = "longshore-engine";
