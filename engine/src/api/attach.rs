//! `POST /containers/{id}/attach`: the HTTP connection is upgraded to a raw stream that
//! carries the container's stdio, with Docker's 8-byte multiplexed framing unless the
//! container has a terminal. The bytes come from the container's monitor
//! ([`crate::attach_to`]); the server only copies them.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::body::{ApiError, ApiResult, Body, status};
use super::containers::frame;
use super::router::{Req, State};
use crate::{Attached, Frame, attach_to};

/// An attach that waits for its container's start (the docker CLI attaches first).
#[derive(Debug)]
pub(crate) struct PendingAttach {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tx: oneshot::Sender<Result<Attached, String>>,
}

impl PendingAttach {
    /// Connects to the started container's monitor and hands the connection over.
    pub(crate) fn connect(self, id: &str) {
        let r = attach_to(id, self.stdin, self.stdout, self.stderr).map_err(|e| e.to_string());
        let _ = self.tx.send(r);
    }

    /// The start failed: the attached client gets the reason.
    pub(crate) fn fail(self, msg: &str) {
        let _ = self.tx.send(Err(msg.to_string()));
    }
}

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=` with `Upgrade: tcp`.
pub async fn attach(state: &Arc<State>, id: &str, r: &Req, req: Request<Incoming>) -> ApiResult {
    let name = id.to_string();
    let c = state.job(move |e| e.container(&name)).await?;
    if !req.headers().contains_key(header::UPGRADE) {
        return Err(ApiError::bad(
            "attach: the request must ask for a connection upgrade (Connection: Upgrade, Upgrade: tcp)",
        ));
    }
    if !r.flag("stream") {
        return Err(ApiError::bad(
            "attach: only stream=1 is supported (logs=1 alone: use GET /containers/{id}/logs)",
        ));
    }
    let (stdin, stdout, stderr) = (r.flag("stdin"), r.flag("stdout"), r.flag("stderr"));
    let tty = c.record.config.tty;
    let full = c.id().to_string();
    let (tx, rx) = oneshot::channel();
    let pending = PendingAttach {
        stdin,
        stdout,
        stderr,
        tx,
    };
    if matches!(c.live_status(), "running" | "paused") {
        tokio::task::spawn_blocking(move || pending.connect(&full));
    } else {
        state
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(full)
            .or_default()
            .push(pending);
    }
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        match rx.await {
            Ok(Ok(att)) => bridge(TokioIo::new(upgraded), att, tty, stdin).await,
            Ok(Err(msg)) => {
                let mut io = TokioIo::new(upgraded);
                let _ = io.write_all(&frame(2, format!("{msg}\n").as_bytes())).await;
                let _ = io.shutdown().await;
            }
            Err(_) => {}
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

/// `POST /containers/{id}/resize?h=&w=`.
pub async fn resize(state: &Arc<State>, id: &str, r: &Req) -> ApiResult {
    let h = r.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = r.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let name = id.to_string();
    state
        .job(move |e| {
            let c = e.container(&name)?;
            let mut a = attach_to(c.id(), false, false, false)?;
            let res = a.resize(h, w);
            a.detach();
            res
        })
        .await?;
    Ok(hyper::Response::new(Body::empty()))
}

/// Copies the container's output to the client and the client's input to the container
/// until the container exits or the client goes away.
async fn bridge(io: TokioIo<Upgraded>, att: Attached, tty: bool, stdin: bool) {
    let (Ok(mut input), Ok(ctl)) = (att.try_clone(), att.try_clone()) else {
        return;
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let (otx, mut orx) = mpsc::channel::<Vec<u8>>(64);
    let mut reader = att;
    std::thread::spawn(move || {
        while let Ok(Some(f)) = reader.next_frame() {
            let chunk = match f {
                Frame::Stdout(d) if tty => d,
                Frame::Stdout(d) => frame(1, &d),
                Frame::Stderr(d) if tty => d,
                Frame::Stderr(d) => frame(2, &d),
                Frame::Exit(_) => break,
            };
            if otx.blocking_send(chunk).is_err() {
                break;
            }
        }
    });
    let stdin_task = stdin.then(|| {
        let (itx, irx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
        std::thread::spawn(move || {
            for msg in irx {
                let r = match msg {
                    Some(d) => input.write_stdin(&d),
                    None => input.close_stdin(),
                };
                if r.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = itx.send(None);
                        break;
                    }
                    Ok(n) => {
                        if itx.send(Some(buf[..n].to_vec())).is_err() {
                            break;
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
        t.abort();
    }
    // unblocks the reader thread if the client left first
    ctl.detach();
}
