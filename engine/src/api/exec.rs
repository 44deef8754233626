//! Exec: `POST /containers/{id}/exec`, `POST /exec/{id}/start` (detached, or attached
//! over an upgraded connection with Docker's framing), `GET /exec/{id}/json`. The exec'd
//! process is a child of the daemon ([`crate::Engine::exec`]); the daemon keeps what
//! Docker keeps in memory for it: its config, and its exit code once it ended.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::body::{ApiError, ApiResult, json, status};
use super::containers::frame;
use super::create::StrSlice;
use super::router::State;
use crate::ExecRequest;

/// An exec instance.
#[derive(Debug, Clone)]
pub(crate) struct ExecEntry {
    container: String,
    req: ExecRequest,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    running: bool,
    started: bool,
    pid: i32,
    exit_code: Option<i32>,
    /// The pty master of a `Tty` exec while it runs (for resize).
    terminal: Option<Arc<std::fs::File>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecBody {
    attach_stdin: Option<bool>,
    attach_stdout: Option<bool>,
    attach_stderr: Option<bool>,
    tty: Option<bool>,
    cmd: Option<StrSlice>,
    env: Option<Vec<String>>,
    user: Option<String>,
    working_dir: Option<String>,
    privileged: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: Option<bool>,
}

/// `POST /containers/{id}/exec`.
pub async fn create(state: &Arc<State>, id: &str, body: Bytes) -> ApiResult {
    let b: ExecBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("invalid JSON in the exec config: {e}")))?;
    let cmd = b.cmd.map(StrSlice::into_vec).unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad("exec: no command specified (Cmd is empty)"));
    }
    let name = id.to_string();
    let c = state.job(move |e| e.container(&name)).await?;
    match c.live_status() {
        "running" => {}
        // dockerd's words (409 both)
        "paused" => {
            return Err(crate::Error::WrongState(format!(
                "Container {} is paused, unpause the container before exec",
                c.id()
            ))
            .into());
        }
        _ => {
            return Err(
                crate::Error::WrongState(format!("Container {} is not running", c.id())).into(),
            );
        }
    }
    let req = ExecRequest {
        cmd,
        env: b
            .env
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.contains('='))
            .collect(),
        user: b.user.filter(|s| !s.is_empty()),
        workdir: b.working_dir.filter(|s| !s.is_empty()),
        tty: b.tty.unwrap_or(false),
        privileged: b.privileged.unwrap_or(false),
    };
    let exec_id = crate::containers::random_id().map_err(ApiError::from)?;
    let entry = ExecEntry {
        container: c.id().to_string(),
        req,
        stdin: b.attach_stdin.unwrap_or(false),
        stdout: b.attach_stdout.unwrap_or(false),
        stderr: b.attach_stderr.unwrap_or(false),
        running: false,
        started: false,
        pid: 0,
        exit_code: None,
        terminal: None,
    };
    state
        .execs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(exec_id.clone(), entry);
    Ok(json(StatusCode::CREATED, &json!({"Id": exec_id})))
}

/// `GET /exec/{id}/json`.
pub async fn inspect(state: &Arc<State>, id: &str) -> ApiResult {
    let execs = state.execs.lock().unwrap_or_else(|p| p.into_inner());
    let e = execs.get(id).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("No such exec instance: {id}"),
    })?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "ID": id,
            "Running": e.running,
            "ExitCode": e.exit_code,
            "ProcessConfig": {
                "tty": e.req.tty,
                "entrypoint": e.req.cmd.first(),
                "arguments": e.req.cmd.get(1..).unwrap_or_default(),
                "privileged": e.req.privileged,
                "user": e.req.user.clone().unwrap_or_default(),
            },
            "OpenStdin": e.stdin,
            "OpenStdout": e.stdout,
            "OpenStderr": e.stderr,
            "CanRemove": false,
            "ContainerID": e.container,
            "DetachKeys": "",
            "Pid": e.pid,
        }),
    ))
}

/// A pipe, both ends close-on-exec (a process forked at the same time must not keep
/// them: the exec's output would never end).
fn pipe() -> Result<(std::fs::File, std::fs::File), ApiError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ApiError::internal(format!("create a pipe for exec: {e}")))?;
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

fn set_exit(state: &State, id: &str, code: i32) {
    if let Some(e) = state
        .execs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(id)
    {
        e.running = false;
        e.exit_code = Some(code);
        e.terminal = None;
    }
}

/// `POST /exec/{id}/start`.
pub async fn start(state: &Arc<State>, id: &str, mut req: Request<Incoming>) -> ApiResult {
    let upgrade_asked = req.headers().contains_key(header::UPGRADE);
    let upgrade = hyper::upgrade::on(&mut req);
    let body = req.into_body();
    let raw = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 64 << 10))
        .await
        .map_err(|e| ApiError::bad(format!("read the request body: {e}")))?
        .to_bytes();
    let sb: StartBody = if raw.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad(format!("invalid JSON in the exec start: {e}")))?
    };
    let entry = {
        let mut execs = state.execs.lock().unwrap_or_else(|p| p.into_inner());
        let e = execs.get_mut(id).ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("No such exec instance: {id}"),
        })?;
        if e.started {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                message: format!("exec {id} has already been started"),
            });
        }
        e.started = true;
        e.running = true;
        e.clone()
    };
    let detach = sb.detach.unwrap_or(false);
    if !detach && !upgrade_asked {
        return Err(ApiError::bad(
            "exec start: an attached start must ask for a connection upgrade (Upgrade: tcp)",
        ));
    }
    // the pipes of the process (a terminal with tty)
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let container = entry.container.clone();
    let ereq = entry.req.clone();
    let tty = ereq.tty;
    let proc = state
        .job(move |e| {
            let stdio = longshore_container::Stdio::Fds {
                stdin: in_r.into(),
                stdout: out_w.into(),
                stderr: err_w.into(),
            };
            e.exec(&container, &ereq, stdio)
        })
        .await;
    let proc = match proc {
        Ok(p) => p,
        Err(e) => {
            set_exit(state, id, 126);
            return Err(e);
        }
    };
    if let Some(e) = state
        .execs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(id)
    {
        e.pid = proc.pid;
        e.terminal = proc
            .terminal
            .as_ref()
            .and_then(|t| t.try_clone().ok())
            .map(Arc::new);
    }
    let (otx, mut orx) = mpsc::channel::<Vec<u8>>(64);
    let st = state.clone();
    let exec_id = id.to_string();
    // readers, then the wait: the exit code is recorded before the stream ends
    let mut term_in = None;
    std::thread::spawn({
        let terminal = proc.terminal;
        let mut readers: Vec<(u8, Box<dyn Read + Send>)> = vec![];
        match terminal {
            Some(t) => {
                term_in = t.try_clone().ok();
                readers.push((0, Box::new(t)));
            }
            None => {
                readers.push((1, Box::new(out_r)));
                readers.push((2, Box::new(err_r)));
            }
        }
        let mut process = proc.process;
        move || {
            let handles: Vec<_> = readers
                .into_iter()
                .map(|(kind, mut r)| {
                    let otx = otx.clone();
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 32 * 1024];
                        while let Ok(n) = r.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            let chunk = if kind == 0 {
                                buf[..n].to_vec()
                            } else {
                                frame(kind, &buf[..n])
                            };
                            if otx.blocking_send(chunk).is_err() {
                                break;
                            }
                        }
                    })
                })
                .collect();
            let code = process.wait().unwrap_or(-1);
            set_exit(&st, &exec_id, code);
            for h in handles {
                let _ = h.join();
            }
            drop(otx);
        }
    });
    if detach {
        return Ok(status(StatusCode::OK));
    }
    let mut stdin_w: Option<Box<dyn Write + Send>> = match term_in {
        Some(t) => Some(Box::new(t)),
        None => Some(Box::new(in_w)),
    };
    if !entry.stdin {
        stdin_w = None;
    }
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
        let stdin_task = stdin_w.map(|w| {
            tokio::spawn(async move {
                let mut w = Some(w);
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        // the process is gone: what the client still sends is read and
                        // dropped, so closing the connection does not reset it (a reset
                        // can discard the last output before the client reads it)
                        Ok(_) if w.is_none() => {}
                        Ok(n) => {
                            let data = buf[..n].to_vec();
                            let mut writer = w.take().expect("checked above");
                            let res = tokio::task::spawn_blocking(move || {
                                let r = writer.write_all(&data);
                                (writer, r)
                            })
                            .await;
                            if let Ok((back, Ok(()))) = res {
                                w = Some(back);
                            }
                        }
                    }
                }
            })
        });
        while let Some(chunk) = orx.recv().await {
            if wr.write_all(&chunk).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
        if let Some(t) = stdin_task {
            // the client closes its side once it has read the end; until then its input
            // is drained (bounded, for a client that never closes)
            let abort = t.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    });
    let mut resp = status(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(header::UPGRADE, header::HeaderValue::from_static("tcp"));
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    Ok(resp)
}

/// `POST /exec/{id}/resize`: the exec's terminal size (404 unknown exec, 409 not running
/// or without a terminal).
pub(crate) fn resize(state: &Arc<State>, id: &str, rows: u16, cols: u16) -> Result<(), ApiError> {
    let term = {
        let execs = state.execs.lock().unwrap_or_else(|p| p.into_inner());
        let e = execs.get(id).ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("No such exec instance: {id}"),
        })?;
        match (&e.terminal, e.running) {
            (Some(t), true) => t.clone(),
            _ => {
                return Err(ApiError {
                    status: StatusCode::CONFLICT,
                    message: format!("exec {id} is not running with a terminal"),
                });
            }
        }
    };
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&*term, size)
        .map_err(|e| ApiError::internal(format!("resize the terminal of exec {id}: {e}")))
}
