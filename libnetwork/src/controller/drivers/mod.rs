//! The network drivers, one file each.

mod bridge;
mod container;
mod host;
mod none;

use crate::error::{Error, Result};

use crate::controller::*;

/// A network driver: configures a container's namespace for one kind of network.
pub(crate) trait Driver: Send + Sync {
    /// `bridge`, `host`, `none` or `container`.
    fn name(&self) -> &'static str;
    /// Sets the container up and fills `ep`; undoes its own partial work on error.
    fn join(&self, ctl: &Controller, cfg: &EndpointConfig, ep: &mut EndpointInfo) -> Result<()>;
    /// Undoes `join`, except for the host-side veth recorded in `ep.veth`: the controller
    /// deletes that in the background. Must tolerate objects that are already gone.
    fn leave(&self, ctl: &Controller, ep: &EndpointInfo) -> Result<()>;
}

/// Bridge networks: veth pair, IPAM, routes, published ports.
pub(crate) struct BridgeDriver;
/// The host's namespace: nothing to set up.
pub(crate) struct HostDriver;
/// Loopback only.
pub(crate) struct NoneDriver;
/// Join another container's namespace.
pub(crate) struct ContainerDriver;

/// Writes the record of an endpoint set up in one step.
pub(crate) fn create_record(ctl: &Controller, ep: &EndpointInfo) -> Result<()> {
    if ctl.create_record(ep)? {
        Ok(())
    } else {
        Err(Error::AlreadyConnected(ep.container_id.clone()))
    }
}
