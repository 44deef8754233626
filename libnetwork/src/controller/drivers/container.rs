//! `--net=container:<id>`.

use crate::error::Result;

use super::*;
use crate::controller::*;

impl Driver for ContainerDriver {
    fn name(&self) -> &'static str {
        "container"
    }

    fn join(&self, ctl: &Controller, cfg: &EndpointConfig, ep: &mut EndpointInfo) -> Result<()> {
        let NetMode::Container(other) = &cfg.mode else {
            unreachable!("container driver used for {:?}", cfg.mode)
        };
        let o = ctl.endpoint(other)?;
        ep.netns = o.netns.clone();
        ep.ip = o.ip;
        ep.gateway = o.gateway;
        ep.mac = o.mac.clone();
        ep.network = None;
        ep.hostname = o.hostname.clone();
        create_record(ctl, ep)
    }

    fn leave(&self, _ctl: &Controller, _ep: &EndpointInfo) -> Result<()> {
        Ok(())
    }
}
