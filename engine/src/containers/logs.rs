//! `logs`: reads the json-file log (rotated files first), with `--since`, `--until`,
//! `--tail`, `-t` and `-f`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// Options of `docker logs`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LogsOptions {
    /// `-f`: keep following until the container stops.
    pub follow: bool,
    /// `--since` (RFC 3339 or seconds since the epoch).
    pub since: Option<String>,
    /// `--until`.
    pub until: Option<String>,
    /// `--tail N` (`None`: all).
    pub tail: Option<usize>,
    /// Include stdout.
    pub stdout: bool,
    /// Include stderr.
    pub stderr: bool,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// 1 stdout, 2 stderr.
    pub stream: u8,
    /// The bytes (with their newline).
    pub data: String,
    /// RFC 3339 time.
    pub time: String,
}

fn parse_time(s: &str) -> Result<String> {
    if let Ok(secs) = s.parse::<f64>() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs_f64(secs);
        return Ok(humantime::format_rfc3339_nanos(t).to_string());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let t = std::time::SystemTime::now() - d;
        return Ok(humantime::format_rfc3339_nanos(t).to_string());
    }
    humantime::parse_rfc3339_weak(s)
        .map(|t| humantime::format_rfc3339_nanos(t).to_string())
        .map_err(|_| Error::InvalidArgument(format!("invalid time {s:?}")))
}

fn parse_line(l: &str) -> Option<LogLine> {
    let v: serde_json::Value = serde_json::from_str(l).ok()?;
    Some(LogLine {
        stream: if v["stream"] == "stderr" { 2 } else { 1 },
        data: v["log"].as_str()?.to_string(),
        time: v["time"].as_str().unwrap_or_default().to_string(),
    })
}

impl Engine {
    /// `docker logs --details`: the extra attributes the container's `--log-opt labels=`
    /// (label keys) and `env=` (variable names) ask for, as Docker's daemon writes them
    /// before each line: `key=value` pairs sorted by key, query-escaped, joined by `,`
    /// (empty when none).
    pub fn log_attributes(&self, name_or_id: &str) -> Result<String> {
        let c = self.container(name_or_id)?;
        let opts = &c.record.host_config.log_opts;
        let names = |k: &str| -> Vec<String> {
            opts.get(k)
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut attrs: BTreeMap<String, String> = BTreeMap::new();
        for l in names("labels") {
            if let Some(v) = c.record.config.labels.get(&l) {
                attrs.insert(l, v.clone());
            }
        }
        for n in names("env") {
            if let Some(v) = c
                .record
                .config
                .env
                .iter()
                .find_map(|e| e.strip_prefix(&format!("{n}=")))
            {
                attrs.insert(n, v.to_string());
            }
        }
        Ok(attrs
            .iter()
            .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
            .collect::<Vec<_>>()
            .join(","))
    }

    /// Sends the container's log to `sink` (which returns false to stop).
    pub fn container_logs(
        &self,
        name_or_id: &str,
        opts: &LogsOptions,
        sink: &mut dyn FnMut(LogLine) -> bool,
    ) -> Result<()> {
        let c = self.container(name_or_id)?;
        if c.record.host_config.log_driver == "none" {
            return Err(Error::InvalidArgument(
                "configured logging driver does not support reading".into(),
            ));
        }
        let since = opts.since.as_deref().map(parse_time).transpose()?;
        let until = opts.until.as_deref().map(parse_time).transpose()?;
        let (want_out, want_err) = if !opts.stdout && !opts.stderr {
            (true, true)
        } else {
            (opts.stdout, opts.stderr)
        };
        let keep = |l: &LogLine| {
            (if l.stream == 2 { want_err } else { want_out })
                && since.as_ref().is_none_or(|s| l.time >= *s)
                && until.as_ref().is_none_or(|u| l.time <= *u)
        };
        let main = c.dir.join(format!("{}-json.log", c.record.id));
        let mut files: Vec<PathBuf> = (1..100)
            .map(|n| PathBuf::from(format!("{}.{n}", main.display())))
            .take_while(|p| p.exists())
            .collect();
        files.reverse();
        files.push(main.clone());
        let mut lines: Vec<LogLine> = Vec::new();
        let mut offset = 0u64;
        for f in &files {
            let Ok(file) = fs::File::open(f) else {
                continue;
            };
            let mut r = BufReader::new(file);
            let mut s = String::new();
            while r.read_line(&mut s).map(|n| n > 0).unwrap_or(false) {
                if s.ends_with('\n') {
                    if let Some(l) = parse_line(s.trim_end())
                        && keep(&l)
                    {
                        lines.push(l);
                    }
                    if *f == main {
                        offset += s.len() as u64;
                    }
                } else {
                    break;
                }
                s.clear();
            }
        }
        if let Some(n) = opts.tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        for l in lines {
            if !sink(l) {
                return Ok(());
            }
        }
        if !opts.follow {
            return Ok(());
        }
        // follow: read what the monitor appends until the container stops
        let mut pause = Duration::from_millis(5);
        loop {
            let alive = crate::monitor::monitor_alive(&c.dir);
            if let Ok(mut file) = fs::File::open(&main) {
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    offset = 0; // rotated
                }
                if len > offset {
                    file.seek(SeekFrom::Start(offset))
                        .map_err(Error::io("seek the log"))?;
                    let mut r = BufReader::new(file);
                    let mut s = String::new();
                    while r.read_line(&mut s).map(|n| n > 0).unwrap_or(false) {
                        if !s.ends_with('\n') {
                            break;
                        }
                        offset += s.len() as u64;
                        if let Some(l) = parse_line(s.trim_end())
                            && keep(&l)
                            && !sink(l)
                        {
                            return Ok(());
                        }
                        s.clear();
                    }
                    pause = Duration::from_millis(5);
                }
            }
            if !alive {
                return Ok(());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
