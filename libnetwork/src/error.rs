//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Errors from network setup, teardown and the files written for containers.
///
/// Each message names the object (network, link, namespace, port, file) and the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A netlink request failed.
    #[error("netlink: {op} failed: {source}")]
    Netlink {
        /// What was being done, e.g. `create veth lsv12 in /run/netns/x`.
        op: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// A network namespace could not be opened, created or entered.
    #[error("network namespace {path}: {what}: {source}")]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// What failed (open, setns, unshare, bind mount).
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A state or container file could not be read or written.
    #[error("{path}: {what}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A state file is corrupt.
    #[error("state file {path} is corrupt: {reason}")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
    /// No address is left in a network's range.
    #[error("network {network}: no free IP address left in {range}")]
    PoolExhausted {
        /// The network name.
        network: String,
        /// The allocation range.
        range: String,
    },
    /// The requested address is already leased.
    #[error("network {network}: IP address {ip} is already in use by {owner}")]
    AddressInUse {
        /// The network name.
        network: String,
        /// The address.
        ip: String,
        /// The endpoint that holds it.
        owner: String,
    },
    /// No subnet of the default pool is free of the host's routes and networks.
    #[error(
        "could not find a free subnet for network {network}: every pool subnet overlaps a route or network; pass one explicitly (--bip / --subnet)"
    )]
    NoFreeSubnet {
        /// The network name.
        network: String,
    },
    /// Invalid user input (port spec, network mode, MAC, CIDR, host entry...).
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        /// What was parsed, e.g. `port mapping`.
        what: &'static str,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A host port is already published by another endpoint or bound by another process.
    #[error("bind for {host_ip}:{host_port}/{proto} failed: port is already allocated{by}")]
    PortAllocated {
        /// Host address.
        host_ip: String,
        /// Host port.
        host_port: u16,
        /// `tcp` or `udp`.
        proto: &'static str,
        /// ` by <owner>` or ` by another process: <error>`.
        by: String,
    },
    /// No host port is left in the dynamic range.
    #[error("no free host port in {first}-{last} for {proto}")]
    PortsExhausted {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
        /// `tcp` or `udp`.
        proto: &'static str,
    },
    /// A network driver name that is not one of `bridge`, `host`, `none` and `container`.
    #[error("unknown network driver {driver:?}: longshore has bridge, host, none and container")]
    UnknownDriver {
        /// The name asked for.
        driver: String,
    },
    /// The named network does not exist.
    #[error("network {0} not found")]
    NetworkNotFound(String),
    /// A network with that name already exists.
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    /// A network still has endpoints.
    #[error("network {network} has active endpoints ({count}); disconnect them first")]
    NetworkInUse {
        /// The network name.
        network: String,
        /// How many endpoints.
        count: usize,
    },
    /// The container already has an endpoint.
    #[error("container {0} is already connected")]
    AlreadyConnected(String),
    /// No endpoint for that container.
    #[error("container {0} has no network endpoint")]
    EndpointNotFound(String),
    /// `nft` failed.
    #[error("nftables: {what} failed: {detail}")]
    Nft {
        /// What was being done.
        what: String,
        /// `nft`'s stderr or the spawn error.
        detail: String,
    },
    /// The userland proxy failed to start.
    #[error("userland proxy for {addr}: {source}")]
    Proxy {
        /// The listening address.
        addr: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn file_err(
    path: impl Into<PathBuf>,
    what: &'static str,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::File { path, what, source }
}
