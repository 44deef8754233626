//! `POST /containers/{id}/attach`: the HTTP connection is upgraded to a raw stream that
//! carries the container's stdio, with Docker's 8-byte multiplexed framing unless the
//! container has a terminal; `GET /containers/{id}/attach/ws` carries the same streams
//! (unframed) as WebSocket binary messages. `logs=1` replays the container's log first.
//! The bytes come from the container's monitor ([`crate::attach_to`]); the server only
//! copies them.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::body::{ApiError, ApiResult, Body, status};
use super::containers::frame;
use super::router::{Req, State};
use crate::{AttachStreams, Attached, Frame, LogsOptions, attach_to};

/// An attach that waits for its container's start (the docker CLI attaches first).
#[derive(Debug)]
pub(crate) struct PendingAttach {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tx: oneshot::Sender<Result<Attached, String>>,
}

impl PendingAttach {
    /// The streams it asked for.
    pub(crate) fn streams(&self) -> AttachStreams {
        AttachStreams {
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }

    /// Hands over the connection the container's start made for it.
    pub(crate) fn deliver(self, r: Result<Attached, String>) {
        let _ = self.tx.send(r);
    }

    /// The start failed: the attached client gets the reason.
    pub(crate) fn fail(self, msg: &str) {
        let _ = self.tx.send(Err(msg.to_string()));
    }
}

/// How the attached streams travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// An upgraded connection: Docker's 8-byte framing without a TTY, raw with one.
    Raw,
    /// WebSocket (RFC 6455): binary messages, the streams unframed.
    Ws,
}

/// What an attach asked for, and its connection to the container's monitor (`None`:
/// `stream=0`, the log only).
struct Plan {
    id: String,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    logs: bool,
    /// The container ran at the attach: its connection, made (and registered by the
    /// monitor) before the answer and before the log is read, so that a line is in the
    /// log or comes live (it may come twice, never not at all).
    connected: Option<Result<Attached, String>>,
    /// Not running: the connection made at its start.
    live: Option<oneshot::Receiver<Result<Attached, String>>>,
}

/// Checks the query and connects to the container's monitor now (running) or at its start.
async fn prepare(state: &Arc<State>, id: &str, r: &Req) -> Result<Plan, ApiError> {
    let name = id.to_string();
    let c = state.job(move |e| e.container(&name)).await?;
    let (stream, logs) = (r.flag("stream"), r.flag("logs"));
    if !stream && !logs {
        return Err(ApiError::bad(
            "attach: ask for stream=1 (the live streams), logs=1 (the log) or both",
        ));
    }
    let (stdin, stdout, stderr) = (r.flag("stdin"), r.flag("stdout"), r.flag("stderr"));
    let full = c.id().to_string();
    let running = matches!(c.live_status(), "running" | "paused");
    let mut live = None;
    let mut connected = None;
    if stream && running {
        // registered by the monitor before the answer goes out: output the container
        // writes once the client has its 101 reaches it
        let full = full.clone();
        connected = Some(
            tokio::task::spawn_blocking(move || {
                attach_to(&full, stdin, stdout, stderr).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| ApiError::internal(format!("attach: {e}")))?,
        );
    } else if stream {
        let (tx, rx) = oneshot::channel();
        let pending = PendingAttach {
            stdin,
            stdout,
            stderr,
            tx,
        };
        state
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(full.clone())
            .or_default()
            .push(pending);
        live = Some(rx);
    }
    Ok(Plan {
        id: full,
        tty: c.record.config.tty,
        stdin,
        stdout,
        stderr,
        logs,
        connected,
        live,
    })
}

/// `POST /containers/{id}/attach?stream=&logs=&stdin=&stdout=&stderr=` with
/// `Upgrade: tcp`.
pub async fn attach(state: &Arc<State>, id: &str, r: &Req, req: Request<Incoming>) -> ApiResult {
    if !req.headers().contains_key(header::UPGRADE) {
        let name = id.to_string();
        state.job(move |e| e.container(&name)).await?;
        return Err(ApiError::bad(
            "attach: the request must ask for a connection upgrade (Connection: Upgrade, Upgrade: tcp)",
        ));
    }
    let plan = prepare(state, id, r).await?;
    let tty = plan.tty;
    let upgrade = hyper::upgrade::on(req);
    let st = state.clone();
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            serve(TokioIo::new(upgraded), plan, st, Proto::Raw).await;
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

/// `GET /containers/{id}/attach/ws?stream=&logs=&stdin=&stdout=&stderr=`: the WebSocket
/// handshake (version 13), then the container's output as binary messages and the
/// client's messages as its input.
pub async fn attach_ws(state: &Arc<State>, id: &str, r: &Req, req: Request<Incoming>) -> ApiResult {
    let h = req.headers();
    let is_ws = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let version = h
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    let (true, Some(key), Some("13")) = (is_ws, key, version) else {
        let name = id.to_string();
        state.job(move |e| e.container(&name)).await?;
        return Err(ApiError::bad(
            "attach/ws: a WebSocket handshake is required (Upgrade: websocket, Sec-WebSocket-Key, Sec-WebSocket-Version: 13)",
        ));
    };
    let accept = ws_accept(key);
    let plan = prepare(state, id, r).await?;
    let upgrade = hyper::upgrade::on(req);
    let st = state.clone();
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            serve(TokioIo::new(upgraded), plan, st, Proto::Ws).await;
        }
    });
    let mut resp = status(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        header::HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    Ok(resp)
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + the RFC 6455 GUID)).
fn ws_accept(key: &str) -> String {
    use base64::Engine as _;
    let mut data = key.as_bytes().to_vec();
    data.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &data);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// A server's WebSocket frame (unmasked, final).
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= u16::MAX as usize => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// The largest WebSocket frame a client may send (a larger one closes the connection).
const WS_MAX_FRAME: u64 = 1 << 20;

/// What a client's WebSocket frames carry.
#[derive(Debug, PartialEq, Eq)]
enum WsEvent {
    /// Input (text, binary or continuation payload).
    Data(Vec<u8>),
    /// A ping to answer.
    Ping(Vec<u8>),
    /// The client closes (or broke the protocol).
    Close,
}

/// Parses the client's frames out of the bytes read so far.
#[derive(Debug, Default)]
struct WsDecoder {
    buf: Vec<u8>,
}

impl WsDecoder {
    fn feed(&mut self, data: &[u8], out: &mut Vec<WsEvent>) {
        self.buf.extend_from_slice(data);
        loop {
            let b = &self.buf;
            if b.len() < 2 {
                return;
            }
            let opcode = b[0] & 0x0f;
            let masked = b[1] & 0x80 != 0;
            let (len, mut at) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
                    10,
                ),
                126 | 127 => return,
                n => (n as u64, 2),
            };
            if len > WS_MAX_FRAME {
                out.push(WsEvent::Close);
                self.buf.clear();
                return;
            }
            let mask = if masked {
                if b.len() < at + 4 {
                    return;
                }
                at += 4;
                Some([b[at - 4], b[at - 3], b[at - 2], b[at - 1]])
            } else {
                None
            };
            let end = at + len as usize;
            if b.len() < end {
                return;
            }
            let mut payload = b[at..end].to_vec();
            if let Some(m) = mask {
                for (i, x) in payload.iter_mut().enumerate() {
                    *x ^= m[i % 4];
                }
            }
            self.buf.drain(..end);
            match opcode {
                0x0..=0x2 => out.push(WsEvent::Data(payload)),
                0x8 => {
                    out.push(WsEvent::Close);
                    return;
                }
                0x9 => out.push(WsEvent::Ping(payload)),
                0xA => {}
                _ => {
                    out.push(WsEvent::Close);
                    return;
                }
            }
        }
    }
}

/// Replays the log (`logs=1`), then bridges the live streams (`stream=1`).
async fn serve<IO>(io: IO, plan: Plan, state: Arc<State>, proto: Proto)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, mut wr) = tokio::io::split(io);
    // Docker's 8-byte framing on a raw stream without a TTY; WebSocket carries data bare
    let mux = proto == Proto::Raw && !plan.tty;
    let encode = move |chunk: Vec<u8>| match proto {
        Proto::Raw => chunk,
        Proto::Ws => ws_frame(0x2, &chunk),
    };
    // a running container's connection was made first; one that is not started yet gets
    // it at its start (after the log of its earlier runs is replayed)
    let live = plan.live;
    let connected = plan.connected.map(Ok);
    if plan.logs {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let engine = state.engine.clone();
        let id = plan.id.clone();
        let opts = LogsOptions {
            stdout: plan.stdout,
            stderr: plan.stderr,
            ..Default::default()
        };
        tokio::task::spawn_blocking(move || {
            let _ = engine.container_logs(&id, &opts, &mut |line| {
                let d = line.data.into_bytes();
                tx.blocking_send(if mux { frame(line.stream, &d) } else { d })
                    .is_ok()
            });
        });
        while let Some(c) = rx.recv().await {
            if wr.write_all(&encode(c)).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
    }
    let got = match (connected, live) {
        (Some(c), _) => c,
        (None, Some(l)) => l.await,
        (None, None) => {
            if proto == Proto::Ws {
                let _ = wr.write_all(&ws_frame(0x8, &1000u16.to_be_bytes())).await;
            }
            let _ = wr.shutdown().await;
            return;
        }
    };
    match got {
        Ok(Ok(att)) => bridge(rd, wr, att, mux, plan.stdin, proto).await,
        Ok(Err(msg)) => {
            let msg = format!("{msg}\n");
            let bytes = if mux {
                frame(2, msg.as_bytes())
            } else {
                msg.into_bytes()
            };
            let _ = wr.write_all(&encode(bytes)).await;
            let _ = wr.shutdown().await;
        }
        Err(_) => {}
    }
}

/// What the input side asks the output side to send.
enum Ctl {
    /// A control frame (a pong).
    Send(Vec<u8>),
    /// The client closed the WebSocket: answer and end.
    Close,
}

/// Copies the container's output to the client and the client's input to the container
/// until the container exits or the client goes away.
async fn bridge<R, W>(mut rd: R, mut wr: W, att: Attached, mux: bool, stdin: bool, proto: Proto)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (Ok(mut input), Ok(ctl)) = (att.try_clone(), att.try_clone()) else {
        return;
    };
    let (otx, mut orx) = mpsc::channel::<Vec<u8>>(64);
    let mut reader = att;
    std::thread::spawn(move || {
        while let Ok(Some(f)) = reader.next_frame() {
            let chunk = match f {
                Frame::Stdout(d) if mux => frame(1, &d),
                Frame::Stderr(d) if mux => frame(2, &d),
                Frame::Stdout(d) | Frame::Stderr(d) => d,
                Frame::Exit(_) => break,
            };
            if otx.blocking_send(chunk).is_err() {
                break;
            }
        }
    });
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Ctl>(4);
    // the input side: always for WebSocket (pings and the close), with stdin for raw
    let input_task = (stdin || proto == Proto::Ws).then(|| {
        // bounded: a client sending faster than the container reads is held back by its
        // socket, instead of the daemon buffering without limit
        let (itx, mut irx) = mpsc::channel::<Option<Vec<u8>>>(8);
        std::thread::spawn(move || {
            while let Some(msg) = irx.blocking_recv() {
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
            // the container's stdin is open (false once it is gone: what the client still
            // sends is read and dropped, so that closing the connection does not reset it)
            let mut open = stdin;
            let mut ws = WsDecoder::default();
            let mut events = Vec::new();
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                if n == 0 {
                    if open {
                        let _ = itx.send(None).await;
                    }
                    break;
                }
                match proto {
                    Proto::Raw => events.push(WsEvent::Data(buf[..n].to_vec())),
                    Proto::Ws => ws.feed(&buf[..n], &mut events),
                }
                for ev in events.drain(..) {
                    match ev {
                        WsEvent::Data(d) if open => open = itx.send(Some(d)).await.is_ok(),
                        WsEvent::Data(_) => {}
                        WsEvent::Ping(p) => {
                            let _ = ctl_tx.send(Ctl::Send(ws_frame(0xA, &p))).await;
                        }
                        WsEvent::Close => {
                            if open {
                                let _ = itx.send(None).await;
                                open = false;
                            }
                            let _ = ctl_tx.send(Ctl::Close).await;
                        }
                    }
                }
            }
        })
    });
    let mut ctl_open = true;
    let mut client_closed = false;
    loop {
        tokio::select! {
            c = orx.recv() => {
                let Some(c) = c else { break };
                let c = if proto == Proto::Ws { ws_frame(0x2, &c) } else { c };
                if wr.write_all(&c).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
            k = ctl_rx.recv(), if ctl_open => match k {
                Some(Ctl::Send(f)) => {
                    if wr.write_all(&f).await.is_err() {
                        break;
                    }
                }
                Some(Ctl::Close) => {
                    client_closed = true;
                    break;
                }
                None => ctl_open = false,
            },
        }
    }
    if proto == Proto::Ws {
        let code = 1000u16.to_be_bytes();
        let _ = wr.write_all(&ws_frame(0x8, &code)).await;
        let _ = wr.flush().await;
    }
    let _ = wr.shutdown().await;
    if let Some(t) = input_task {
        // the client closes its side once it has read the end; until then its input is
        // drained (bounded, for a client that never closes), as exec does (4f6f5c5)
        let abort = t.abort_handle();
        let wait = if client_closed { 0 } else { 2 };
        if tokio::time::timeout(std::time::Duration::from_secs(wait), t)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    // unblocks the reader thread if the client left first
    ctl.detach();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let m = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | opcode];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&m);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        f
    }

    #[test]
    fn websocket_accept_matches_rfc_6455() {
        // the example of RFC 6455 section 1.3
        assert_eq!(
            ws_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn websocket_frames_split_anywhere_decode_the_same() {
        let big = vec![b'y'; 300];
        let mut wire = masked(0x1, b"hello\n");
        wire.extend(masked(0x9, b"p"));
        wire.extend(masked(0x2, &big));
        wire.extend(masked(0x8, &1000u16.to_be_bytes()));
        for step in [1, 3, 7, wire.len()] {
            let mut d = WsDecoder::default();
            let mut out = vec![];
            for chunk in wire.chunks(step) {
                d.feed(chunk, &mut out);
            }
            assert_eq!(
                out,
                vec![
                    WsEvent::Data(b"hello\n".to_vec()),
                    WsEvent::Ping(b"p".to_vec()),
                    WsEvent::Data(big.clone()),
                    WsEvent::Close
                ],
                "chunks of {step}"
            );
        }
    }

    #[test]
    fn an_oversized_websocket_frame_closes() {
        let mut f = vec![0x82, 0x80 | 127];
        f.extend_from_slice(&(WS_MAX_FRAME + 1).to_be_bytes());
        let mut out = vec![];
        WsDecoder::default().feed(&f, &mut out);
        assert_eq!(out, vec![WsEvent::Close]);
    }

    #[test]
    fn server_frames_use_the_right_length_form() {
        assert_eq!(ws_frame(0x2, b"ab"), vec![0x82, 2, b'a', b'b']);
        assert_eq!(&ws_frame(0x2, &[0; 200])[..4], &[0x82, 126, 0, 200]);
        assert_eq!(&ws_frame(0x2, &[0; 70000])[..2], &[0x82, 127]);
    }
}
