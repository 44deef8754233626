//! Lifecycle hooks: each hook runs with the container's state JSON on stdin, its own
//! args and env, and an optional timeout after which it is killed.

use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// The trampoline's channel argument when there is no channel: a descriptor number no
/// process has open (its fcntl and errno report fail harmlessly).
const NO_CHANNEL: &str = "999999999";

/// Runs `hooks` in order; the first failure stops the list.
pub fn run(kind: &'static str, hooks: &[Hook], state_json: &[u8]) -> Result<()> {
    for hook in hooks {
        run_one(kind, hook, state_json, None)?;
    }
    Ok(())
}

/// Runs every hook in `hooks`, whatever happens to the others, for the points of the
/// lifecycle where the spec makes a failure a warning (poststart, poststop): returns what
/// failed, one line per hook.
pub fn run_warn(kind: &'static str, hooks: &[Hook], state_json: &[u8]) -> Vec<String> {
    hooks
        .iter()
        .filter_map(|hook| run_one(kind, hook, state_json, None).err())
        .map(|e| e.to_string())
        .collect()
}

/// Runs hooks whose program lies in the container (createContainer, startContainer) from
/// the init: through the sealed exec trampoline open at `trampoline`, as the user's
/// program is, so that an image's `#!/proc/self/exe` hook never reaches the runtime's
/// binary (CVE-2019-5736).
pub(crate) fn run_in_container(
    kind: &'static str,
    hooks: &[Hook],
    state_json: &[u8],
    trampoline: RawFd,
) -> Result<()> {
    for hook in hooks {
        run_one(kind, hook, state_json, Some(trampoline))?;
    }
    Ok(())
}

fn run_one(
    kind: &'static str,
    hook: &Hook,
    state_json: &[u8],
    trampoline: Option<RawFd>,
) -> Result<()> {
    let fail = |reason: String| Error::Hook {
        hook: kind,
        path: hook.path().clone(),
        reason,
    };
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = match trampoline {
        None => {
            let mut cmd = Command::new(hook.path());
            if let Some((argv0, rest)) = args.split_first() {
                cmd.arg0(argv0).args(rest);
            }
            cmd
        }
        Some(fd) => {
            // the trampoline's argv: no channel (an fd number that is not open), the
            // program, its argv
            let mut cmd = Command::new(format!("/proc/self/fd/{fd}"));
            cmd.arg0(NO_CHANNEL).arg(hook.path());
            match args.split_first() {
                Some((argv0, rest)) => cmd.arg(argv0).args(rest),
                None => cmd.arg(hook.path()),
            };
            cmd
        }
    };
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // a hook may exit without reading its stdin: EPIPE is not a failure, and its
        // SIGPIPE must not kill the runtime
        let _ = crate::sys::without_sigpipe(|| stdin.write_all(state_json));
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = match deadline {
        None => child.wait().map_err(|e| fail(e.to_string()))?,
        Some(deadline) => loop {
            if let Some(st) = child.try_wait().map_err(|e| fail(e.to_string()))? {
                break st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "timed out after {}s",
                    hook.timeout().unwrap_or(0)
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        },
    };
    if status.success() {
        Ok(())
    } else {
        Err(fail(status.to_string()))
    }
}
