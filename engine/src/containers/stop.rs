//! `stop`, `kill`, `restart`, `pause`, `unpause` and `wait`.

use std::fs;
use std::time::{Duration, Instant};

use super::Container;
use super::spec::parse_signal;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::monitor;

/// Options of `stop` and `restart`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StopOptions {
    /// `-t`: seconds to wait before SIGKILL (default: the container's `--stop-timeout`,
    /// else 10).
    pub timeout: Option<i64>,
    /// `-s`: the signal (default: the container's stop signal, else SIGTERM).
    pub signal: Option<String>,
}

impl StopOptions {
    /// Options with a timeout.
    pub fn timeout(secs: i64) -> StopOptions {
        StopOptions {
            timeout: Some(secs),
            signal: None,
        }
    }
}

/// Docker's `wait` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitCondition {
    /// Until it is not running (returns at once if it is not).
    #[default]
    NotRunning,
    /// Until it next exits.
    NextExit,
    /// Until it is removed.
    Removed,
}

impl Engine {
    fn runtime_container(&self, c: &Container) -> Result<longshore_container::Container> {
        longshore_container::Container::load(self.runtime_root(), &c.record.id)
            .map_err(Error::runtime(format!("load container {}", c.record.name)))
    }

    fn require_running(&self, c: &Container) -> Result<()> {
        if c.live_status() != "running" && c.live_status() != "paused" {
            return Err(Error::WrongState(format!(
                "Container {} is not running",
                c.record.id
            )));
        }
        Ok(())
    }

    /// Sends a signal (`docker kill -s`, default SIGKILL). A stopped container is an
    /// error in Docker's words.
    pub fn kill_container(&self, name_or_id: &str, signal: Option<&str>) -> Result<()> {
        let c = self.container(name_or_id)?;
        self.require_running(&c)?;
        let sig = parse_signal(signal.unwrap_or("KILL"))?;
        if sig == libc::SIGKILL || sig == libc::SIGTERM {
            self.mark_stopped_by_user(&c);
        }
        self.runtime_container(&c)?
            .signal(sig, false)
            .map_err(Error::runtime(format!("kill container {}", c.record.name)))?;
        self.event("container", "kill", &c.record.id, {
            let mut a = c.event_attributes();
            a.push(("signal".into(), sig.to_string()));
            a
        });
        Ok(())
    }

    fn mark_stopped_by_user(&self, c: &Container) {
        let _ = fs::write(c.dir.join("stopped-by-user"), b"");
    }

    /// Stops a container (`docker stop`): its stop signal, then SIGKILL after the timeout;
    /// returns once its monitor has recorded the exit. Stopping a stopped container is not
    /// an error.
    pub fn stop_container(&self, name_or_id: &str, opts: &StopOptions) -> Result<()> {
        let c = self.container(name_or_id)?;
        self.mark_stopped_by_user(&c);
        if c.live_status() == "running" || c.live_status() == "paused" {
            let sig = match opts
                .signal
                .as_deref()
                .or(c.record.config.stop_signal.as_deref())
            {
                Some(s) => parse_signal(s)?,
                None => libc::SIGTERM,
            };
            let timeout = opts.timeout.or(c.record.config.stop_timeout).unwrap_or(10);
            let rc = self.runtime_container(&c)?;
            if c.state.paused {
                let _ = rc.resume();
            }
            let _ = rc.signal(sig, false);
            let gone = timeout >= 0 && wait_dead(&c, Duration::from_secs(timeout as u64));
            if !gone {
                let _ = rc.signal(libc::SIGKILL, true);
                wait_dead(&c, Duration::from_secs(30));
            }
        }
        self.settle(&c)?;
        self.event("container", "stop", &c.record.id, c.event_attributes());
        Ok(())
    }

    /// After the init is gone: wait for the monitor to record the exit, or record it
    /// ourselves when the monitor was killed (the status is then unknown).
    pub(crate) fn settle(&self, c: &Container) -> Result<()> {
        if !monitor::wait_monitor_gone(&c.dir, Duration::from_secs(30)) {
            return Err(Error::WrongState(format!(
                "container {}: its monitor did not finish in 30 s",
                c.record.id
            )));
        }
        let mut fresh = match self.load_container_dir(c.dir.clone()) {
            Ok(f) => f,
            // gone: the monitor of an auto-remove container removes it once it has
            // recorded the exit (after it let go of its lock); nothing is left to settle
            Err(_) if !c.dir.join("state.json").exists() => return Ok(()),
            Err(e) => return Err(e),
        };
        if matches!(
            fresh.state.status.as_str(),
            "running" | "paused" | "restarting"
        ) && !fresh.state.is_alive()
        {
            // the monitor was killed: nobody knows how the container ended
            fresh.state.status = "exited".into();
            fresh.state.running = false;
            fresh.state.paused = false;
            fresh.state.restarting = false;
            fresh.state.pid = 0;
            fresh.state.exit_code = 255;
            fresh.state.error = "the container's monitor was killed: exit status unknown".into();
            fresh.state.finished_at = super::now_rfc3339();
            let _ = longshore_container::Container::load(self.runtime_root(), &fresh.record.id)
                .and_then(|mut r| r.delete(true));
            self.teardown_network(&mut fresh);
            super::unmount_rootfs(&fresh.dir);
            self.save_state(&fresh)?;
        }
        Ok(())
    }

    /// `docker restart`: stop (with the timeout), then start.
    pub fn restart_container(&self, name_or_id: &str, opts: &StopOptions) -> Result<()> {
        self.stop_container(name_or_id, opts)?;
        self.start_container(name_or_id, &Default::default())?;
        Ok(())
    }

    /// `docker pause`: freezes every process of the container.
    pub fn pause_container(&self, name_or_id: &str) -> Result<()> {
        let mut c = self.container(name_or_id)?;
        self.require_running(&c)?;
        if c.state.paused {
            return Err(Error::WrongState(format!(
                "Container {} is already paused",
                c.record.id
            )));
        }
        self.runtime_container(&c)?
            .pause()
            .map_err(Error::runtime(format!("pause container {}", c.record.name)))?;
        c.state.paused = true;
        c.state.status = "paused".into();
        self.save_state(&c)?;
        self.event("container", "pause", &c.record.id, c.event_attributes());
        Ok(())
    }

    /// `docker unpause`.
    pub fn unpause_container(&self, name_or_id: &str) -> Result<()> {
        let mut c = self.container(name_or_id)?;
        if !c.state.paused {
            return Err(Error::WrongState(format!(
                "Container {} is not paused",
                c.record.id
            )));
        }
        self.runtime_container(&c)?
            .resume()
            .map_err(Error::runtime(format!(
                "unpause container {}",
                c.record.name
            )))?;
        c.state.paused = false;
        c.state.status = "running".into();
        self.save_state(&c)?;
        self.event("container", "unpause", &c.record.id, c.event_attributes());
        Ok(())
    }

    /// `docker wait`: blocks until the condition holds, returns the exit code.
    pub fn wait_container(&self, name_or_id: &str, cond: WaitCondition) -> Result<i32> {
        let c = self.container(name_or_id)?;
        let id = c.record.id.clone();
        let first_finish = c.state.finished_at.clone();
        let mut last_code = c.state.exit_code;
        // as recorded: a process already killed whose monitor has not yet recorded the
        // exit still counts as up (its recorded exit code is the running state's 0)
        let up =
            |c: &Container| matches!(c.state.status.as_str(), "running" | "paused" | "restarting");
        let mut last_up = up(&c);
        let mut pause = Duration::from_millis(1);
        loop {
            let cur = match self.container(&id) {
                Ok(c) => c,
                // removed since the last look: if it was running then (an auto-remove
                // container its monitor removed right after it exited), how it ended is
                // in the `die` event its monitor recorded before the removal
                Err(Error::NoSuchContainer(_)) if last_up => {
                    return Ok(crate::events::last_exit_code(&self.root, &id).unwrap_or(last_code));
                }
                Err(Error::NoSuchContainer(_)) => return Ok(last_code),
                Err(e) => return Err(e),
            };
            last_code = cur.state.exit_code;
            last_up = up(&cur);
            let stopped = !matches!(cur.live_status(), "running" | "paused" | "restarting")
                && !monitor::monitor_alive(&cur.dir);
            match cond {
                WaitCondition::NotRunning if stopped => {
                    self.settle(&cur)?;
                    return Ok(self
                        .container(&id)
                        .map(|c| c.state.exit_code)
                        .unwrap_or(last_code));
                }
                WaitCondition::NextExit if cur.state.finished_at != first_finish => {
                    return Ok(last_code);
                }
                _ => {}
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// Waits for the container's init to die, up to `timeout`.
fn wait_dead(c: &Container, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    while c.state.is_alive() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    true
}
