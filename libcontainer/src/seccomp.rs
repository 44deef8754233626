//! Seccomp: compile the spec's filter to BPF in the runtime, load it in the container.
//!
//! (Interface placeholder: being implemented.)

use oci_spec::runtime::{Capability, LinuxSeccomp};

/// Errors from building or loading a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Not implemented yet.
    #[error("seccomp: {0} is not implemented yet")]
    Unimplemented(&'static str),
}

/// A filter compiled to a classic BPF program, ready to load.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    /// The `struct sock_filter` array, 8 bytes an instruction.
    pub program: Vec<u8>,
}

impl CompiledFilter {
    /// Loads the filter into the calling thread (no allocation; safe after fork).
    pub fn load(&self) -> Result<(), SeccompError> {
        Err(SeccompError::Unimplemented("load"))
    }
}

/// Compiles the spec's seccomp section for the host's architecture.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let _ = seccomp;
    Err(SeccompError::Unimplemented("compile"))
}

/// Docker's default seccomp profile as a runtime-spec section, for a container that
/// holds `caps`.
pub fn docker_default_profile(caps: &[Capability]) -> LinuxSeccomp {
    let _ = caps;
    LinuxSeccomp::default()
}
