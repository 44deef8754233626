//! A wait the client can leave: the docker CLI opens `POST /wait?condition=next-exit`
//! for every `run`, `-d` included, and drops it; a wait that outlived its client would
//! hold a blocking thread until the container exits. [`crate::Engine::wait_container`]
//! has no way out, so this polls the same records with one (it belongs beside
//! `wait_container` in `containers/stop.rs` once that file is free to change). It polls
//! every 10 ms at most (the engine's wait: 50 ms): `docker run --rm` of a short command
//! waits on it.

use std::time::Duration;

use crate::containers::WaitCondition;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::monitor::monitor_alive;

/// How long a next-exit wait waits for the monitor to finish after the exit.
const MONITOR_FINISH: Duration = Duration::from_secs(30);

/// Waits for `cond` on container `id` (a full ID); `None` once `left()` says the client
/// went away. The exit code otherwise (the last one seen for a removed container).
///
/// `first` is the container as read before the answer's headers went out: a next-exit is
/// an exit after that read (the docker CLI starts the container as soon as it has the
/// headers, and a short command can end before this thread runs).
pub fn wait_or_leave(
    engine: &Engine,
    first: &crate::containers::Container,
    cond: WaitCondition,
    left: &dyn Fn() -> bool,
) -> Result<Option<i32>> {
    let id = first.id();
    let first_finish = first.state.finished_at.clone();
    let mut last_code = first.state.exit_code;
    let mut pause = Duration::from_millis(1);
    let mut exit_seen: Option<std::time::Instant> = None;
    // one watch for the whole wait (a watch per pause cost a close, 10-15 ms, each time)
    let mut watch = (cond == WaitCondition::Removed)
        .then(|| crate::containers::RemovalWatch::new(engine.root(), id));
    loop {
        if left() {
            return Ok(None);
        }
        match engine.container(id) {
            Ok(cur) => {
                last_code = cur.state.exit_code;
                match cond {
                    WaitCondition::NotRunning
                        if !matches!(cur.live_status(), "running" | "paused" | "restarting")
                            && !monitor_alive(&cur.dir) =>
                    {
                        // holds now: the engine's wait returns at once, after settling
                        return engine.wait_container(id, cond).map(Some);
                    }
                    // without a restart policy the monitor finishes (unmounts, leaves)
                    // right after the exit: a `docker rm` that follows `docker run`
                    // must not find it busy
                    WaitCondition::NextExit
                        if cur.state.finished_at != first_finish
                            && (!cur.record.host_config.restart_policy.is_none()
                                || !monitor_alive(&cur.dir)
                                || exit_seen
                                    .get_or_insert_with(std::time::Instant::now)
                                    .elapsed()
                                    > MONITOR_FINISH) =>
                    {
                        return Ok(Some(last_code));
                    }
                    _ => {}
                }
            }
            Err(Error::NoSuchContainer(_)) => return Ok(Some(last_code)),
            // a removal in progress: its records are going away
            Err(Error::Io { .. }) if cond == WaitCondition::Removed => {}
            Err(e) => return Err(e),
        }
        if let Some(w) = watch.as_mut() {
            // sleeps on an inotify watch of the container's directory: back as soon as
            // the removal is done (`docker run --rm` waits on this), or after the pause
            w.wait(pause);
        } else {
            std::thread::sleep(pause);
        }
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}
