//! `top`: the processes of a running container (its init and every descendant), as `ps`
//! shows them.

use crate::engine::Engine;
use crate::error::{Error, Result};

/// The processes of a container: `ps`'s column titles and one row per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    /// Column titles (`UID`, `PID`, `PPID`, ...).
    pub titles: Vec<String>,
    /// The rows, split into the columns (the last column keeps its spaces).
    pub processes: Vec<Vec<String>>,
}

/// The pid and every descendant of it (from `/proc/*/stat`).
fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // the fields after the command's closing parenthesis: state, ppid, ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

impl Engine {
    /// `docker top CONTAINER [ps OPTIONS]` (default `-ef`): 409 when it is not running.
    pub fn top_container(&self, name_or_id: &str, ps_args: &str) -> Result<Top> {
        let c = self.container(name_or_id)?;
        if !matches!(c.live_status(), "running" | "paused") || c.state.pid <= 0 {
            return Err(Error::WrongState(format!(
                "Container {} is not running",
                c.record.id
            )));
        }
        let pids = descendants(c.state.pid);
        let args: Vec<&str> = if ps_args.trim().is_empty() {
            vec!["-ef"]
        } else {
            ps_args.split_whitespace().collect()
        };
        let out = std::process::Command::new("ps")
            .args(&args)
            .output()
            .map_err(Error::io("run ps"))?;
        if !out.status.success() {
            return Err(Error::InvalidArgument(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let titles: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        let Some(pid_col) = titles.iter().position(|t| t == "PID") else {
            return Err(Error::InvalidArgument(format!(
                "ps {}: its output has no PID column",
                args.join(" ")
            )));
        };
        let n = titles.len();
        let mut processes = Vec::new();
        for l in lines {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let Some(pid) = cols.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            if !pids.contains(&pid) {
                continue;
            }
            let mut row: Vec<String> = cols.iter().take(n - 1).map(|s| s.to_string()).collect();
            row.push(cols.get(n - 1..).map(|r| r.join(" ")).unwrap_or_default());
            processes.push(row);
        }
        Ok(Top { titles, processes })
    }
}
