//! # longshore-build
//!
//! Building images from a Dockerfile into a `longshore-graph` store: the seed's chapter 7
//! (FROM, MAINTAINER, RUN, CMD, EXPOSE, ENV, COPY, ADD, ENTRYPOINT, VOLUME, USER, WORKDIR,
//! ONBUILD, the cache rules and `.dockerignore`) plus today's ARG, LABEL, HEALTHCHECK, SHELL,
//! STOPSIGNAL, parser directives, heredocs, multi-stage builds and `--build-arg`.
//!
//! - [`parser`]: BuildKit's Dockerfile parser semantics; its AST dumps exactly as BuildKit's
//!   (checked against BuildKit's own test corpus).
//! - [`shell`]: the shell lexer for variable expansion and word splitting.
//! - [`instructions`]: typed instructions, flags and arguments checked.
//! - [`plan`]: stages, the graph between them, global ARGs, `--target`.
//! - [`ignore`] and [`context`]: `.dockerignore` and the build context (directory or tar).
//! - [`build()`]: the executor: cache, steps (RUN through a [`StepRunner`] the caller
//!   implements with a real container, with `--mount` bind/cache/tmpfs/secret), COPY/ADD
//!   (`--from`, `--chown`, `--chmod`, `--link`, `--exclude`, `--parents`, archives, URLs),
//!   layers and images committed into the store with Docker's history entries, independent
//!   stages in parallel, reproducible by default (`SOURCE_DATE_EPOCH` or 0).
//! - [`fetch`]: the small HTTP client `ADD <url>` uses by default.
//!
//! Parse and plan (no store needed):
//!
//! ```
//! use longshore_build::Plan;
//!
//! let df = "ARG TAG=1.36\nFROM busybox:${TAG} AS build\nRUN make\nFROM scratch\nCOPY --from=build /out /\n";
//! let plan = Plan::from_dockerfile("Dockerfile", df, &Default::default(), None).unwrap();
//! assert_eq!(plan.stages[0].base, "busybox:1.36");
//! assert_eq!(plan.order, [0, 1]);
//!
//! let ast = longshore_build::parser::parse("Dockerfile", df).unwrap();
//! assert_eq!(ast.root.children[4].dump(), "copy [\"--from=build\"] \"/out\" \"/\"");
//! ```
//!
//! Build (RUN steps need a runner; the engine's runs a container, this one would chroot):
//!
//! ```no_run
//! use longshore_build::{BuildOptions, Context, RunStep, StepRunner, build};
//! use longshore_graph::{Store, StoreOptions};
//!
//! struct Chroot;
//! impl StepRunner for Chroot {
//!     fn run(&self, step: RunStep<'_>) -> Result<i32, String> {
//!         let status = std::process::Command::new("chroot")
//!             .arg(step.rootfs)
//!             .args(&step.args)
//!             .env_clear()
//!             .envs(step.env.iter().filter_map(|e| e.split_once('=')))
//!             .status()
//!             .map_err(|e| e.to_string())?;
//!         Ok(status.code().unwrap_or(128))
//!     }
//! }
//!
//! let store = Store::open("/var/lib/longshore/graph", StoreOptions::default())?;
//! let context = Context::dir("./app")?;
//! let opts = BuildOptions {
//!     dockerfile: context.read_file("Dockerfile")?,
//!     tags: vec!["app:latest".into()],
//!     ..BuildOptions::default()
//! };
//! let built = build(&store, &context, &opts, &Chroot, &mut std::io::stdout())?;
//! println!("{}", built.id);
//! # Ok::<(), longshore_build::Error>(())
//! ```

pub mod build;
pub mod context;
mod error;
pub mod fetch;
mod fsutil;
mod glob;
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
