//! The exit code of a container that was removed (`--rm`) before a wait saw it exit:
//! its monitor recorded it in the `die` event, which this reads back from the event log.

use std::io::{BufRead, BufReader, Seek, SeekFrom};

use crate::engine::Engine;
use crate::events::Event;

fn log_path(engine: &Engine) -> std::path::PathBuf {
    engine.root().join("events.jsonl")
}

/// The event log's length now (where a wait starting now begins to read).
pub fn log_len(engine: &Engine) -> u64 {
    std::fs::metadata(log_path(engine))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The exit code of the last `die` event of container `id` after byte `since` of the log.
pub fn last_exit_code(engine: &Engine, id: &str, since: u64) -> Option<i32> {
    let mut f = std::fs::File::open(log_path(engine)).ok()?;
    f.seek(SeekFrom::Start(since)).ok()?;
    let mut code = None;
    for line in BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        let Ok(e) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        if e.kind == "container" && e.action == "die" && e.actor.id == id {
            code = e
                .actor
                .attributes
                .get("exitCode")
                .and_then(|c| c.parse().ok())
                .or(code);
        }
    }
    code
}
