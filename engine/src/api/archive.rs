//! `HEAD|GET|PUT /containers/{id}/archive`: the tar streams of `docker cp`, with the
//! `X-Docker-Container-Path-Stat` header the CLI reads (name, size, mode as Go's
//! `os.FileMode`, mtime, link target), taken from the first header of the engine's tar.

use std::io::Write;
use std::sync::Arc;

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::{Request, StatusCode, header};
use serde_json::json;
use tokio::sync::oneshot;

use super::body::{ApiError, ApiResult, Body, ChanWriter, reader, status};
use super::router::{Req, State};

/// Go's `os.ModeDir` and `os.ModeSymlink`.
const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;

/// Reads the first tar header of the stream, hands its stat over, then passes the bytes
/// on (`GET`) or stops the job (`HEAD`).
struct StatWriter {
    head: Vec<u8>,
    stat: Option<oneshot::Sender<String>>,
    out: Option<ChanWriter>,
}

fn stat_of(h: &tar::Header) -> String {
    let kind = h.entry_type();
    let mut mode = h.mode().unwrap_or(0) & 0o7777;
    if kind.is_dir() {
        mode |= GO_DIR;
    }
    if kind.is_symlink() {
        mode |= GO_SYMLINK;
    }
    let name = h
        .path()
        .ok()
        .and_then(|p| {
            p.components()
                .next_back()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| ".".into());
    let mtime = h.mtime().unwrap_or(0);
    let v = json!({
        "name": name,
        "size": h.size().unwrap_or(0),
        "mode": mode,
        "mtime": humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime)).to_string(),
        "linkTarget": h.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default(),
    });
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

impl Write for StatWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.stat.is_some() {
            self.head.extend_from_slice(data);
            if self.head.len() >= 512 {
                let h = tar::Header::from_byte_slice(&self.head[..512]);
                if let Some(tx) = self.stat.take() {
                    let _ = tx.send(stat_of(h));
                }
                let head = std::mem::take(&mut self.head);
                return match &mut self.out {
                    Some(o) => o.write_all(&head).map(|()| data.len()),
                    None => Err(std::io::Error::other("stat only")),
                };
            }
            return Ok(data.len());
        }
        match &mut self.out {
            Some(o) => o.write(data),
            None => Err(std::io::Error::other("stat only")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

/// `HEAD` (stat only) and `GET` (the tar) of `?path=`.
pub async fn get(state: &Arc<State>, id: &str, r: &Req, head: bool) -> ApiResult {
    let Some(path) = r.q("path").filter(|p| !p.is_empty()) else {
        return Err(ApiError::bad("path is required"));
    };
    let path = path.to_string();
    let (stat_tx, stat_rx) = oneshot::channel();
    let (tx, body) = Body::channel();
    let engine = state.engine.clone();
    let id = id.to_string();
    let job = tokio::task::spawn_blocking(move || {
        let mut w = StatWriter {
            head: Vec::with_capacity(512),
            stat: Some(stat_tx),
            out: (!head).then(|| ChanWriter::new(tx)),
        };
        let res = engine.copy_from_container(&id, &path, &mut w);
        let _ = w.flush();
        res
    });
    match stat_rx.await {
        Ok(stat) => {
            let mut resp = hyper::Response::new(if head { Body::empty() } else { body });
            let h = resp.headers_mut();
            if let Ok(v) = header::HeaderValue::from_str(&stat) {
                h.insert("X-Docker-Container-Path-Stat", v);
            }
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-tar"),
            );
            Ok(resp)
        }
        Err(_) => {
            job.await
                .map_err(|e| ApiError::internal(format!("archive: {e}")))??;
            Err(ApiError::internal("the archive was empty"))
        }
    }
}

/// `PUT ?path=DIR`: extracts the request body (a tar) into directory `path`.
pub async fn put(state: &Arc<State>, id: &str, r: &Req, req: Request<Incoming>) -> ApiResult {
    let Some(path) = r.q("path").filter(|p| !p.is_empty()) else {
        return Err(ApiError::bad("path is required"));
    };
    let path = path.to_string();
    let id = id.to_string();
    let body = reader(req.into_body());
    state
        .job(move |e| e.copy_to_container(&id, &path, body))
        .await?;
    Ok(status(StatusCode::OK))
}
