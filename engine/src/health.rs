//! Health checks (`HEALTHCHECK`, `--health-*`): while a container runs, its monitor runs
//! the check command in it (an exec, as Docker does) every interval, and records the
//! result in `health.json` beside the container's state: `docker inspect`'s State.Health
//! (`starting`, `healthy`, `unhealthy`, the failing streak and the last five results),
//! and the `(healthy)` of `ps`. A change of status is a `health_status: ...` event.
//!
//! Docker's rules: a check that exits 0 passes, anything else (or running longer than the
//! timeout) fails; `retries` failures in a row make the container unhealthy, a pass makes
//! it healthy; during the start period failures do not count until the first pass, and
//! checks run every start interval instead of every interval.

use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::containers::{now_rfc3339, write_atomic};

/// Docker's defaults (ns).
const DEFAULT_INTERVAL: i64 = 30_000_000_000;
const DEFAULT_TIMEOUT: i64 = 30_000_000_000;
const DEFAULT_START_INTERVAL: i64 = 5_000_000_000;
const DEFAULT_RETRIES: i64 = 3;
/// What Docker keeps of a check's output, and how many results.
const MAX_OUTPUT: usize = 4096;
const MAX_LOG: usize = 5;

/// A container's health check (`docker inspect`'s Config.Healthcheck; durations in ns,
/// 0 meaning Docker's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    /// `[]` (inherit), `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// `--health-interval`.
    #[serde(skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// `--health-timeout`.
    #[serde(skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// `--health-start-period`.
    #[serde(skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// `--health-start-interval`.
    #[serde(skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// `--health-retries`.
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl HealthConfig {
    /// A check is to run (a test that is neither empty nor `NONE`).
    pub fn enabled(&self) -> bool {
        matches!(
            self.test.first().map(String::as_str),
            Some("CMD" | "CMD-SHELL")
        ) && self.test.len() > 1
    }

    /// The command the check runs.
    pub fn command(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), self.test[1..].join(" ")],
            _ => self.test.iter().skip(1).cloned().collect(),
        }
    }

    /// `self` with what it leaves unset taken from `base` (the image's check), as Docker
    /// merges `--health-*` options over the image's HEALTHCHECK.
    pub fn over(mut self, base: &HealthConfig) -> HealthConfig {
        if self.test.is_empty() {
            self.test = base.test.clone();
        }
        for (mine, theirs) in [
            (&mut self.interval, base.interval),
            (&mut self.timeout, base.timeout),
            (&mut self.start_period, base.start_period),
            (&mut self.start_interval, base.start_interval),
            (&mut self.retries, base.retries),
        ] {
            if *mine == 0 {
                *mine = theirs;
            }
        }
        self
    }

    fn interval(&self) -> Duration {
        ns(self.interval, DEFAULT_INTERVAL)
    }
    fn timeout(&self) -> Duration {
        ns(self.timeout, DEFAULT_TIMEOUT)
    }
    fn start_interval(&self) -> Duration {
        ns(self.start_interval, DEFAULT_START_INTERVAL)
    }
    fn retries(&self) -> i64 {
        if self.retries > 0 {
            self.retries
        } else {
            DEFAULT_RETRIES
        }
    }
}

fn ns(v: i64, default: i64) -> Duration {
    Duration::from_nanos(if v > 0 { v } else { default } as u64)
}

/// `docker inspect`'s State.Health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failures in a row.
    pub failing_streak: i64,
    /// The last results, oldest first.
    pub log: Vec<HealthResult>,
}

/// One run of the check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthResult {
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    /// The check's exit code (-1 when it timed out or could not run).
    pub exit_code: i32,
    /// Its output (stdout and stderr), at most 4096 bytes.
    pub output: String,
}

fn path(dir: &Path) -> PathBuf {
    dir.join("health.json")
}

/// The recorded health of the container in `dir`.
pub(crate) fn read(dir: &Path) -> Option<Health> {
    serde_json::from_slice(&fs::read(path(dir)).ok()?).ok()
}

/// The health to show for the container in `dir`: what its prober wrote, or `starting`
/// while it runs and the prober (a thread the monitor starts) has not written yet, as
/// Docker shows State.Health from the start.
pub(crate) fn current(dir: &Path, status: &str) -> Option<Health> {
    read(dir).or_else(|| {
        matches!(status, "running" | "paused").then(|| Health {
            status: "starting".into(),
            ..Default::default()
        })
    })
}

fn write(dir: &Path, h: &Health) {
    let _ = write_atomic(
        &path(dir),
        &serde_json::to_vec(h).expect("health serializes"),
    );
}

/// What the monitor needs to run checks.
pub(crate) struct Prober {
    pub root: PathBuf,
    pub id: String,
    pub dir: PathBuf,
    pub config: HealthConfig,
    pub driver: Option<String>,
    pub attributes: Vec<(String, String)>,
}

impl Prober {
    /// Starts checking on a thread of its own until `stop` is set.
    pub(crate) fn spawn(self, stop: Arc<AtomicBool>) {
        let _ = std::thread::Builder::new()
            .name("health".into())
            .stack_size(256 * 1024)
            .spawn(move || self.run(&stop));
    }

    fn run(self, stop: &AtomicBool) {
        let started = Instant::now();
        let mut h = read(&self.dir).unwrap_or_default();
        h.status = "starting".into();
        h.failing_streak = 0;
        write(&self.dir, &h);
        let engine = match crate::Engine::open(
            &self.root,
            crate::EngineOptions {
                driver: self.driver.clone(),
                ..Default::default()
            },
        ) {
            Ok(e) => e,
            Err(_) => return,
        };
        let start_period = Duration::from_nanos(self.config.start_period.max(0) as u64);
        loop {
            let in_start = started.elapsed() < start_period && h.status == "starting";
            let pause = if in_start {
                self.config.start_interval()
            } else {
                self.config.interval()
            };
            if !sleep_unless(stop, pause) {
                return;
            }
            let result = self.probe(&engine);
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let before = h.status.clone();
            let in_start = started.elapsed() < start_period && h.status == "starting";
            if result.exit_code == 0 {
                h.failing_streak = 0;
                h.status = "healthy".into();
            } else if !in_start {
                h.failing_streak += 1;
                if h.failing_streak >= self.config.retries() {
                    h.status = "unhealthy".into();
                }
            }
            h.log.push(result);
            if h.log.len() > MAX_LOG {
                h.log.remove(0);
            }
            write(&self.dir, &h);
            if h.status != before {
                crate::events::record(
                    &self.root,
                    "container",
                    &format!("health_status: {}", h.status),
                    &self.id,
                    self.attributes.clone(),
                );
            }
        }
    }

    /// Runs the check once.
    fn probe(&self, engine: &crate::Engine) -> HealthResult {
        let start = now_rfc3339();
        let (code, output) = match self.exec(engine) {
            Ok(r) => r,
            Err(e) => (-1, e),
        };
        HealthResult {
            start,
            end: now_rfc3339(),
            exit_code: code,
            output,
        }
    }

    fn exec(&self, engine: &crate::Engine) -> std::result::Result<(i32, String), String> {
        let (rd, wr) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let null = fs::File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
        let wr2 = wr.try_clone().map_err(|e| format!("dup: {e}"))?;
        let req = crate::ExecRequest {
            cmd: self.config.command(),
            ..Default::default()
        };
        let mut p = engine
            .exec(
                &self.id,
                &req,
                longshore_container::Stdio::Fds {
                    stdin: null.into(),
                    stdout: wr.into(),
                    stderr: wr2.into(),
                },
            )
            .map_err(|e| e.to_string())?;
        let timeout = self.config.timeout();
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut rd = rd;
        let mut timed_out = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                timed_out = true;
                break;
            }
            let mut fds = [nix::poll::PollFd::new(
                rd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let ms = left.as_millis().min(u16::MAX as u128) as u16;
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("poll: {e}")),
                Ok(_) => {}
            }
            let mut buf = [0u8; 4096];
            match rd.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(out.len());
                    out.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read the check's output: {e}")),
            }
        }
        if timed_out {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = p.wait();
            return Ok((
                -1,
                format!("Health check exceeded timeout ({})", go_duration(timeout)),
            ));
        }
        let code = p.wait().map_err(|e| e.to_string())?;
        Ok((code, String::from_utf8_lossy(&out).into_owned()))
    }
}

/// A duration as Go prints it (`30s`, `1m30s`, `500ms`, `1.5s`).
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (v, unit) = if ns < 1_000 {
            return format!("{ns}ns");
        } else if ns < 1_000_000 {
            (ns as f64 / 1e3, "µs")
        } else {
            (ns as f64 / 1e6, "ms")
        };
        return format!("{}{unit}", trim_float(v));
    }
    let secs = ns as f64 / 1e9;
    let h = (secs / 3600.0).floor() as u64;
    let m = ((secs - h as f64 * 3600.0) / 60.0).floor() as u64;
    let s = secs - h as f64 * 3600.0 - m as f64 * 60.0;
    let s = format!("{}s", trim_float(s));
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

fn trim_float(v: f64) -> String {
    let t = format!("{v:.9}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    t.to_string()
}

/// Parses a Go duration (`1m30s`, `500ms`, `2h`, `1.5s`; a bare `0`) into ns.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * mult;
    }
    (total <= i64::MAX as f64).then_some(total as i64)
}

/// Sleeps `d` in short steps; false as soon as `stop` is set.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_merging_follow_docker() {
        let shell = HealthConfig {
            test: vec!["CMD-SHELL".into(), "wget -q localhost || exit 1".into()],
            ..Default::default()
        };
        assert_eq!(
            shell.command(),
            vec!["/bin/sh", "-c", "wget -q localhost || exit 1"]
        );
        assert!(shell.enabled());
        let none = HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert!(!none.enabled());
        let image = HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            interval: 5,
            retries: 7,
            ..Default::default()
        };
        let merged = HealthConfig {
            interval: 9,
            ..Default::default()
        }
        .over(&image);
        assert_eq!(merged.test, vec!["CMD", "true"]);
        assert_eq!((merged.interval, merged.retries), (9, 7));
        assert_eq!(merged.timeout(), Duration::from_secs(30));
    }

    #[test]
    fn go_durations_print_and_parse_like_go() {
        for (d, s) in [
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(3661), "1h1m1s"),
        ] {
            assert_eq!(go_duration(d), s);
            assert_eq!(parse_go_duration(s), Some(d.as_nanos() as i64), "{s}");
        }
        assert_eq!(parse_go_duration("2h"), Some(7_200_000_000_000));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
