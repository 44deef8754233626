//! `--net=host`.

use std::fs;

use crate::error::Result;

use super::*;
use crate::controller::*;

impl Driver for HostDriver {
    fn name(&self) -> &'static str {
        "host"
    }

    fn join(&self, ctl: &Controller, _cfg: &EndpointConfig, ep: &mut EndpointInfo) -> Result<()> {
        ep.netns = ctl.host.path().to_path_buf();
        if let Ok(h) = fs::read_to_string("/proc/sys/kernel/hostname") {
            ep.hostname = h.trim().to_string();
        }
        create_record(ctl, ep)
    }

    fn leave(&self, _ctl: &Controller, _ep: &EndpointInfo) -> Result<()> {
        Ok(())
    }
}
