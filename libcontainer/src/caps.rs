//! Capabilities: the five sets, and Docker's default set.
//!
//! (Interface placeholder: being implemented.)

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

/// Errors from capability changes.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// Not implemented yet.
    #[error("capabilities: {0} is not implemented yet")]
    Unimplemented(&'static str),
}

/// The 14 capabilities Docker grants a container by default.
pub fn docker_default_capabilities() -> Capabilities {
    Capabilities::default()
}

/// Drops every capability outside `keep` from the bounding set.
pub fn drop_bounding(keep: &Capabilities) -> Result<(), CapsError> {
    let _ = keep;
    Err(CapsError::Unimplemented("drop_bounding"))
}

/// Sets effective, permitted, inheritable and ambient sets (after the uid switch).
pub fn apply(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let _ = caps;
    Err(CapsError::Unimplemented("apply"))
}
