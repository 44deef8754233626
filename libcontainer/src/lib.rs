//! # longshore-container
//!
//! An embeddable OCI runtime: the seed's *libcontainer* and *exec driver*. Give it an
//! OCI bundle (a root filesystem and a `config.json`) and it creates the namespaces,
//! cgroups, mounts, capabilities and seccomp filter the spec asks for, then runs the
//! process with the same `create` / `start` / `kill` / `delete` lifecycle as runc.
#![deny(missing_docs)]

pub mod caps;
pub mod cgroups;
mod error;
pub mod seccomp;
pub mod spec;

pub use error::{Error, Result};
