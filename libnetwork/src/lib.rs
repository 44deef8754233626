//! # longshore-network
#![allow(missing_docs)]
pub mod error;
pub mod netlink;
pub mod netns;
pub use error::{Error, Result};
