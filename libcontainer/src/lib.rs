//! # longshore-container
//!
//! An embeddable OCI runtime: the seed's *libcontainer* and *exec driver*. Give it an
//! OCI bundle (a root filesystem and a `config.json`) and it creates the namespaces,
//! cgroups, mounts, capabilities and seccomp filter the spec asks for, then runs the
//! process with the same `create` / `start` / `kill` / `delete` lifecycle as runc.
//!
//! ```no_run
//! use longshore_container::{Container, Stdio};
//!
//! # fn main() -> longshore_container::Result<()> {
//! // a bundle made with `longshore-runtime spec` in a directory holding rootfs/
//! let code = Container::builder("hello")
//!     .bundle("/tmp/bundle")
//!     .root("/run/longshore/runtime")
//!     .stdio(Stdio::Inherit)
//!     .run()?;
//! println!("exited with {code}");
//! # Ok(()) }
//! ```
//!
//! `create` + `start` separately, as runc does:
//!
//! ```no_run
//! # use longshore_container::Container;
//! # fn main() -> longshore_container::Result<()> {
//! let mut c = Container::builder("web").bundle("/tmp/bundle").create()?;
//! println!("{}", c.oci_state());
//! c.start()?;
//! c.kill(longshore_container::Signal::SIGTERM, false)?;
//! c.wait()?;
//! c.delete(false)?;
//! # Ok(()) }
//! ```
//!
//! The image and the container are not trusted: the user's program is exec'd through a
//! sealed trampoline (the caller's binary is never reachable as `/proc/self/exe`), every
//! path in the root is made and opened through descriptors beneath it, and every write
//! under `/proc` goes through a procfs of the runtime's own. ARCHITECTURE.md's "threat
//! model" says what is trusted and how each known escape is closed. A `process` without
//! `capabilities` keeps the caller's full set at create (as with runc): give the set.
#![deny(missing_docs)]

mod attrs;
pub mod caps;
pub mod cgroups;
mod channel;
mod container;
mod error;
mod hooks;
mod init;
pub mod process;
mod procfs;
mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod state;
mod sys;
mod trampoline;

pub use container::{Container, ContainerBuilder, receive_console, write_pid_file};
pub use error::{Error, Result};
pub use init::Stdio;
pub use process::{ExecProcess, Signal};
pub use state::{State, Status};
