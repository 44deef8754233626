//! # longshore-network
//!
//! Container networking: the seed's network driver. Bridge, host, none and
//! `container:<id>` networks, veth pairs, IPAM, port publishing and the files a
//! container needs (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`).
//!
//! This crate is being built under issue 5; nothing is exported yet.
//!
//! ```
//! assert_eq!(longshore_network::CRATE_NAME, "longshore-network");
//! ```

/// The package name, for diagnostics.
pub const CRATE_NAME: &str = "longshore-network";

/// Errors from network setup and teardown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested operation is not implemented yet.
    #[error("{0} is not implemented yet in longshore-network")]
    Unimplemented(&'static str),
}
