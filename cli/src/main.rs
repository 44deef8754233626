//! `longshore`: docker-style commands over `longshore-engine`.
//!
//! The engine is not built yet (no issue covers it so far), so every command exits with
//! status 125 and says so. The runc-style runtime, `longshore-runtime`, lives in the
//! `examples` package and works today.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("version" | "--version" | "-v") => {
            println!("longshore version {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(cmd) => {
            eprintln!(
                "longshore: {cmd:?}: not implemented yet: {} has no jobs yet; \
                 use longshore-runtime (cargo run -p longshore-examples --bin longshore-runtime)",
                longshore_engine::CRATE_NAME
            );
            ExitCode::from(125)
        }
        None => {
            eprintln!("usage: longshore COMMAND (only `version` works so far)");
            ExitCode::from(125)
        }
    }
}
