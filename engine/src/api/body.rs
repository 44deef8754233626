//! The response body (whole, or streamed from a channel) and the JSON and error answers.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::{Response, StatusCode, header};
use tokio::sync::mpsc;

/// A response body: all at once, or chunks as a job produces them.
#[derive(Debug)]
pub enum Body {
    /// The whole body (taken when sent).
    Full(Option<Bytes>),
    /// Chunks until the sender is dropped.
    Chan(mpsc::Receiver<Bytes>),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Body {
        Body::Full(None)
    }

    /// A streamed body and the sender that feeds it.
    pub fn channel() -> (mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = mpsc::channel(64);
        (tx, Body::Chan(rx))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Chan(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Chan(_) => SizeHint::default(),
        }
    }
}

/// An HTTP response of the API.
pub type Resp = Response<Body>;

/// A JSON answer.
pub fn json(status: StatusCode, v: &impl serde::Serialize) -> Resp {
    let bytes = serde_json::to_vec(v)
        .unwrap_or_else(|e| format!("{{\"message\":\"encode the answer: {e}\"}}").into_bytes());
    json_bytes(status, bytes)
}

/// A JSON answer encoded already.
pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Resp {
    let mut r = Response::new(Body::Full(Some(Bytes::from(bytes))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// An answer without a body.
pub fn status(status: StatusCode) -> Resp {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// Docker's error answer: `{"message": ...}`.
pub fn error(code: StatusCode, message: impl Into<String>) -> Resp {
    json(code, &serde_json::json!({ "message": message.into() }))
}

/// A request that failed: its status and message.
#[derive(Debug)]
pub struct ApiError {
    /// 400, 404, 409, 500...
    pub status: StatusCode,
    /// The message for `{"message": ...}`.
    pub message: String,
}

impl ApiError {
    /// 400 with a message.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 500 with a message.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// The answer.
    pub fn into_response(self) -> Resp {
        error(self.status, self.message)
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        use crate::Error as E;
        let status = if e.is_not_found() {
            StatusCode::NOT_FOUND
        } else {
            match &e {
                E::Conflict(_) | E::WrongState(_) => StatusCode::CONFLICT,
                E::InvalidArgument(_) | E::InvalidReference { .. } | E::Exec { .. } => {
                    StatusCode::BAD_REQUEST
                }
                E::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            }
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

/// The result of a handler.
pub type ApiResult = Result<Resp, ApiError>;

/// A request body read on a blocking thread (`std::io::Read`), frame by frame as the
/// client sends it, without a size limit: image tars (`load`, `import`, archive `PUT`).
pub fn reader(body: hyper::body::Incoming) -> BodyReader {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Bytes>>(8);
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        let mut body = body;
        loop {
            match body.frame().await {
                None => break,
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data()
                        && !data.is_empty()
                        && tx.send(Ok(data)).is_err()
                    {
                        break;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(std::io::Error::other(format!(
                        "read the request body: {e}"
                    ))));
                    break;
                }
            }
        }
    });
    BodyReader {
        rx,
        cur: Bytes::new(),
    }
}

/// See [`reader`].
#[derive(Debug)]
pub struct BodyReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(Ok(b)) => self.cur = b,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// A streamed response body fed from a blocking thread (`std::io::Write`); a write after
/// the client left fails with `BrokenPipe`, which ends the job.
#[derive(Debug)]
pub struct ChanWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChanWriter {
    /// A writer into `tx`, sending 64 KiB chunks.
    pub fn new(tx: mpsc::Sender<Bytes>) -> ChanWriter {
        ChanWriter {
            tx,
            buf: Vec::with_capacity(64 << 10),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(64 << 10),
        ));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client left"))
    }
}

impl std::io::Write for ChanWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 << 10 {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Drop for ChanWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// One JSON line of a progress stream (`{"status":...}`, `{"error":...}`).
pub fn json_line(v: &serde_json::Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// A 200 answer streaming `body` as `content_type`.
pub fn stream(content_type: &'static str, body: Body) -> Resp {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// Docker's `X-Registry-Auth` header: base64url JSON of the credentials (`{}` or absent:
/// none; an identity token is used as the password).
pub fn registry_auth(
    headers: &hyper::HeaderMap,
) -> Result<Option<longshore_registry::Credentials>, ApiError> {
    use base64::Engine as _;
    let Some(v) = headers.get("x-registry-auth") else {
        return Ok(None);
    };
    let raw = v.as_bytes();
    if raw.is_empty() {
        return Ok(None);
    }
    let trimmed: Vec<u8> = raw.iter().copied().filter(|c| *c != b'=').collect();
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&trimmed))
        .map_err(|e| ApiError::bad(format!("invalid X-Registry-Auth header: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&decoded)
        .map_err(|e| ApiError::bad(format!("invalid X-Registry-Auth header: {e}")))?;
    let user = v["username"].as_str().unwrap_or_default();
    let token = v["identitytoken"].as_str().unwrap_or_default();
    let pass = v["password"].as_str().unwrap_or_default();
    if user.is_empty() && token.is_empty() {
        return Ok(None);
    }
    Ok(Some(longshore_registry::Credentials::new(
        user,
        if token.is_empty() { pass } else { token },
    )))
}
