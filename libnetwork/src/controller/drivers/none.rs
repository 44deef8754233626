//! `--net=none`.

use crate::error::{Error, Result};
use crate::netlink::Netlink;

use super::*;
use crate::controller::*;

impl Driver for NoneDriver {
    fn name(&self) -> &'static str {
        "none"
    }

    fn join(&self, ctl: &Controller, cfg: &EndpointConfig, ep: &mut EndpointInfo) -> Result<()> {
        let netns = cfg.netns.as_ref().ok_or_else(|| Error::InvalidInput {
            what: "endpoint config",
            value: cfg.container_id.clone(),
            reason: "--net=none needs the container's network namespace".into(),
        })?;
        netns.run(|| Netlink::open()?.set_up_by_name("lo"))?;
        create_record(ctl, ep)
    }

    fn leave(&self, _ctl: &Controller, _ep: &EndpointInfo) -> Result<()> {
        Ok(())
    }
}
