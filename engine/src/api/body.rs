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
