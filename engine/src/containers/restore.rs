//! What a daemon does when it starts (Docker's `restore` at boot): containers whose
//! processes are gone while their records say they run (the host rebooted, or every
//! longshore process and the containers were killed) get their exit recorded, and those
//! whose restart policy says so are started again: `always`, `unless-stopped` unless a
//! user stopped them, `on-failure` after a failure within its count.

use super::Container;
use crate::engine::Engine;
use crate::error::Result;
use crate::monitor::monitor_alive;

/// What [`Engine::restore_containers`] did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Containers found dead and recorded as exited.
    pub settled: Vec<String>,
    /// Containers started again by their policy.
    pub restarted: Vec<String>,
    /// Containers that could not be restarted, with why.
    pub failed: Vec<(String, String)>,
}

impl Engine {
    /// Settles containers whose processes are gone and restarts those whose policy asks
    /// for it. Containers still running (their monitor alive) are left alone.
    pub fn restore_containers(&self) -> Result<RestoreReport> {
        let mut rep = RestoreReport::default();
        for c in self.containers()? {
            if monitor_alive(&c.dir) {
                continue;
            }
            let was_up = matches!(c.state.status.as_str(), "running" | "paused" | "restarting");
            if was_up && c.state.is_alive() {
                // running with no monitor (it was killed): nothing to restore
                continue;
            }
            if was_up {
                self.settle(&c)?;
                rep.settled.push(c.record.id.clone());
            }
            let c: Container = self.container(&c.record.id)?;
            if c.live_status() != "exited" || !should_restart(&c) {
                continue;
            }
            match self.start_container(&c.record.id, &Default::default()) {
                Ok(_) => rep.restarted.push(c.record.id.clone()),
                Err(e) => rep.failed.push((c.record.id.clone(), e.to_string())),
            }
        }
        Ok(rep)
    }
}

/// Docker's `ShouldRestart` for a container found stopped at boot.
fn should_restart(c: &Container) -> bool {
    let p = &c.record.host_config.restart_policy;
    // never started: a created container stays created
    if c.state.started_at == super::ZERO_TIME {
        return false;
    }
    let by_user = c.state.stopped_by_user || c.dir.join("stopped-by-user").exists();
    match p.name.as_str() {
        "always" | "unless-stopped" => !by_user,
        "on-failure" => {
            !by_user
                && c.state.exit_code != 0
                && (p.maximum_retry_count == 0 || c.state.restart_count < p.maximum_retry_count)
        }
        _ => false,
    }
}
