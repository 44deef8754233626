//! Docker's progress display for pull, push and load: a stream of JSON messages (the API's
//! `{"status", "id", "progressDetail": {"current", "total"}}` lines, or the same made in
//! process from libregistry's events), drawn as docker draws them. On a terminal each
//! layer keeps one line, redrawn in place with a bar; elsewhere every status becomes a
//! plain line and the bars are left out.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};

use longshore_registry::{Progress, ProgressEvent};
use serde_json::{Value, json};

/// Draws a message stream on stdout.
pub struct Display {
    tty: bool,
    /// Lines of the layers shown, by ID (cleared by a message without a layer).
    ids: HashMap<String, usize>,
    width: usize,
}

impl Display {
    /// A display on stdout (a terminal or not).
    pub fn new() -> Display {
        let tty = io::stdout().is_terminal();
        Display {
            tty,
            ids: HashMap::new(),
            width: crate::term::width().unwrap_or(80) as usize,
        }
    }

    /// Shows one message; an `error` message is returned as the error.
    pub fn show(&mut self, m: &Value) -> Result<(), String> {
        if let Some(e) = m["error"].as_str() {
            return Err(e.to_string());
        }
        if let Some(e) = m["errorDetail"]["message"].as_str() {
            return Err(e.to_string());
        }
        let mut out = io::stdout().lock();
        let id = m["id"].as_str().unwrap_or_default();
        let has_progress = m.get("progressDetail").is_some_and(Value::is_object);
        let mut diff = 0;
        if !id.is_empty() && has_progress {
            let n = self.ids.len();
            let line = *self.ids.entry(id.to_string()).or_insert_with(|| {
                if self.tty {
                    let _ = writeln!(out);
                }
                n
            });
            diff = self.ids.len() - line;
            if self.tty {
                let _ = write!(out, "\x1b[{diff}A");
            }
        } else {
            self.ids.clear();
        }
        let bar = bar(&m["progressDetail"], self.width);
        let mut endl = "";
        if self.tty && m.get("stream").is_none() && has_progress {
            let _ = write!(out, "\x1b[2K\r");
            endl = "\r";
        } else if !bar.is_empty() {
            // no bars off a terminal
            return Ok(());
        }
        if !id.is_empty() {
            let _ = write!(out, "{id}: ");
        }
        let status = m["status"].as_str().unwrap_or_default();
        if has_progress && self.tty {
            let _ = write!(out, "{status} {bar}{endl}");
        } else if let Some(s) = m["stream"].as_str() {
            let _ = write!(out, "{s}{endl}");
        } else {
            let _ = writeln!(out, "{status}{endl}");
        }
        if !id.is_empty() && self.tty && diff > 0 {
            let _ = write!(out, "\x1b[{diff}B");
        }
        let _ = out.flush();
        Ok(())
    }
}

/// Docker's bar: `[=====>      ]  1.23MB/4.56MB` (the bar only on a wide terminal).
fn bar(detail: &Value, width: usize) -> String {
    let cur = detail["current"].as_u64().unwrap_or(0);
    let total = detail["total"].as_u64().unwrap_or(0);
    if cur == 0 && total == 0 {
        return String::new();
    }
    if total == 0 {
        return format!("{:>8}", size4(cur));
    }
    let pct = ((cur as f64 / total as f64 * 100.0) as usize / 2).min(50);
    let mut s = String::new();
    if width > 110 {
        s = format!("[{}>{}] ", "=".repeat(pct), " ".repeat(50 - pct));
    }
    if cur <= total {
        s.push_str(&format!("{:>8}/{}", size4(cur), size4(total)));
    }
    s
}

/// go-units' HumanSize: decimal units, four significant digits.
pub fn size4(n: u64) -> String {
    go_units(n, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

/// go-units' sizes with four significant digits (Go's `%.4g`) in `units` of `base`
/// (1000: HumanSize, 1024: BytesSize).
pub fn go_units(n: u64, base: f64, units: &[&str]) -> String {
    let mut v = n as f64;
    let mut i = 0;
    while v >= base && i < units.len() - 1 {
        v /= base;
        i += 1;
    }
    let digits = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// The messages docker's daemon sends for one libregistry event (what `longshore daemon`
/// sends too), so that in process and remote draw the same lines.
pub fn messages(p: &Progress, push: bool) -> Vec<Value> {
    let id = &p.id;
    let line = |status: &str| json!({"status": status, "progressDetail": {}, "id": id});
    let bar = |status: &str, current: u64, total: u64| json!({"status": status, "progressDetail": {"current": current, "total": total}, "id": id});
    match &p.event {
        ProgressEvent::Waiting => vec![line("Waiting")],
        ProgressEvent::Downloading { current, total } => {
            vec![bar("Downloading", *current, *total)]
        }
        ProgressEvent::Retrying { attempt, .. } => {
            vec![line(&format!("Retrying (attempt {attempt})"))]
        }
        ProgressEvent::Verifying => vec![line("Verifying Checksum")],
        ProgressEvent::Extracting { current, total } if current >= total && *total > 0 => {
            vec![bar("Extracting", *current, *total), line("Pull complete")]
        }
        ProgressEvent::Extracting { current, total } => vec![bar("Extracting", *current, *total)],
        ProgressEvent::Done => vec![line("Download complete")],
        ProgressEvent::AlreadyExists if push => vec![line("Layer already exists")],
        ProgressEvent::AlreadyExists => vec![line("Already exists")],
        ProgressEvent::Pushing { current, total } => vec![bar("Pushing", *current, *total)],
        ProgressEvent::Mounted { from } => vec![line(&format!("Mounted from {from}"))],
        ProgressEvent::Pushed => vec![line("Pushed")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_sizes_as_docker_draws_them() {
        assert_eq!(size4(1_234_567), "1.235MB");
        assert_eq!(size4(999), "999B");
        assert_eq!(
            bar(&json!({"current": 50, "total": 100}), 120),
            format!("[{}>{}]      50B/100B", "=".repeat(25), " ".repeat(25))
        );
        assert_eq!(
            bar(&json!({"current": 50, "total": 100}), 80),
            "     50B/100B"
        );
        assert_eq!(bar(&json!({}), 120), "");
    }
}
