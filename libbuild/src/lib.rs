//! # longshore-build
//!
//! Building images from a Dockerfile.
//!
//! - [`parser`]: BuildKit's Dockerfile parser semantics (directives, continuations,
//!   heredocs, flags, JSON and shell forms); its AST dumps exactly as BuildKit's.
//! - [`shell`]: the shell lexer for variable expansion and word splitting.
//!
//! ```
//! let ast = longshore_build::parser::parse("Dockerfile", "FROM busybox AS base\nCMD [\"sh\"]\n").unwrap();
//! assert_eq!(ast.root.dump(), "(from \"busybox\" \"AS\" \"base\")\n(cmd \"sh\")");
//! ```

pub mod build;
pub mod context;
mod error;
mod fsutil;
pub mod ignore;
pub mod instructions;
pub mod parser;
pub mod plan;
pub mod shell;

pub use build::{BuildOptions, Built, RunStep, StepRunner, build};
pub use context::Context;
pub use error::{Error, Result};
pub use plan::Plan;

/// The package name, for diagnostics.
pub const CRATE_NAME: &str = "longshore-build";
