//! The router: API version negotiation, then method + path → handler. It holds no logic
//! of its own: each handler decodes, calls one engine job and encodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode, header};

use super::attach::PendingAttach;
use super::body::{ApiError, ApiResult, Resp, error};
use super::{
    API_VERSION, MIN_API_VERSION, archive, containers, events, images, networks, resources, system,
    volumes,
};
use crate::engine::Engine;

/// The largest request body read (a create body is a few kB).
pub const MAX_BODY: usize = 4 << 20;

/// What the handlers share: the engine, and attaches waiting for their container's start.
#[derive(Debug)]
pub struct State {
    /// The engine every job runs on.
    pub engine: Arc<Engine>,
    /// Attach connections to containers not started yet, by full ID.
    pub(crate) pending: Mutex<HashMap<String, Vec<PendingAttach>>>,
    /// Exec instances by ID (config, then exit code), as Docker keeps them in memory.
    pub(crate) execs: Mutex<HashMap<String, super::exec::ExecEntry>>,
    /// `-D`: log each request on stderr (reloaded from daemon.json on SIGHUP).
    pub debug: std::sync::atomic::AtomicBool,
    /// `--label`s of the daemon (`/info`; reloaded on SIGHUP).
    pub labels: Mutex<Vec<String>>,
}

impl State {
    /// The state of a server over `engine`.
    pub fn new(engine: Arc<Engine>, debug: bool) -> State {
        State {
            engine,
            pending: Mutex::default(),
            execs: Mutex::default(),
            debug: debug.into(),
            labels: Mutex::default(),
        }
    }

    /// Runs `job` on a blocking thread (engine jobs do file and process work).
    pub(crate) async fn job<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Engine) -> crate::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || job(&engine))
            .await
            .map_err(|e| ApiError::internal(format!("engine job failed: {e}")))?
            .map_err(ApiError::from)
    }
}

/// A parsed request: method, path segments after the version, query.
#[derive(Debug)]
pub struct Req {
    /// The method.
    pub method: Method,
    /// Decoded path segments (`["containers", "abc", "json"]`).
    pub segs: Vec<String>,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The API version asked for (`None`: unversioned path).
    pub version: Option<(u32, u32)>,
}

impl Req {
    /// The last value of query parameter `k`.
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean query parameter as Docker reads them (`1`, `true`, `True`; absent,
    /// empty, `0`, `false`: false).
    pub fn flag(&self, k: &str) -> bool {
        self.q(k)
            .is_some_and(|v| !matches!(v, "" | "0" | "false" | "False" | "FALSE"))
    }

    /// An integer query parameter; a malformed one is a 400 naming it.
    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.q(k) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad(format!("invalid value for {k}: {v:?} is not an integer"))
            }),
        }
    }

    /// The `filters` parameter (`{"key":["v"]}` or the old `{"key":{"v":true}}`) as pairs.
    pub fn filters(&self) -> Result<Vec<(String, String)>, ApiError> {
        let Some(raw) = self.q("filters").filter(|s| !s.is_empty()) else {
            return Ok(vec![]);
        };
        let v: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad(format!("invalid filters {raw:?}: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad(format!("invalid filters {raw:?}: not an object")))?;
        let mut out = vec![];
        for (k, vals) in obj {
            match vals {
                serde_json::Value::Array(a) => {
                    for x in a {
                        let s = x.as_str().ok_or_else(|| {
                            ApiError::bad(format!("invalid filter {k}: values must be strings"))
                        })?;
                        out.push((k.clone(), s.to_string()));
                    }
                }
                serde_json::Value::Object(m) => {
                    for (x, on) in m {
                        if on.as_bool() == Some(true) {
                            out.push((k.clone(), x.clone()));
                        }
                    }
                }
                _ => return Err(ApiError::bad(format!("invalid filter {k}"))),
            }
        }
        Ok(out)
    }
}

/// Decodes `%XX` (and `+` as a space when `plus`).
pub fn percent_decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `/v1.45/containers/json` into the version and the rest.
fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let (v, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return (Some(v), tail);
        }
    }
    (None, path)
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn version_pair(v: &str) -> (u32, u32) {
    parse_version(v).expect("the server's own versions are well formed")
}

/// Handles one request (never fails: errors are answers).
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let t0 = std::time::Instant::now();
    let resp = match route(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if state.debug.load(std::sync::atomic::Ordering::Relaxed) {
        // the time until the answer's head (a stream's body may follow for longer)
        eprintln!(
            "longshore daemon: {method} {uri} -> {} ({:.1} ms)",
            resp.status().as_u16(),
            t0.elapsed().as_secs_f64() * 1000.0
        );
    }
    resp
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> ApiResult {
    let mut slot = Some(req);
    let res = dispatch(state, &mut slot).await;
    if let Some(req) = slot {
        drain_later(req.into_body());
    }
    res
}

/// Routes a request; a handler that needs the request itself (its body, an upgrade)
/// takes it out of `req`.
async fn dispatch(state: &Arc<State>, req: &mut Option<Request<Incoming>>) -> ApiResult {
    let head = req
        .as_ref()
        .expect("the request is taken only by its handler");
    let (version, path) = split_version(head.uri().path());
    let version = match version {
        None => None,
        Some(v) => {
            let Some(p) = parse_version(v) else {
                return Err(ApiError::bad(format!("invalid API version {v:?}")));
            };
            if p > version_pair(API_VERSION) {
                return Err(ApiError::bad(format!(
                    "client version {v} is too new. Maximum supported API version is {API_VERSION}"
                )));
            }
            if p < version_pair(MIN_API_VERSION) {
                return Err(ApiError::bad(format!(
                    "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                )));
            }
            Some(p)
        }
    };
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let query = head
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect();
    let r = Req {
        method: head.method().clone(),
        segs,
        query,
        version,
    };
    let s: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    use Method as M;
    match (&r.method, s.as_slice()) {
        (&M::GET | &M::HEAD, ["_ping"]) => Ok(system::ping(&r)),
        (&M::GET, ["version"]) => system::version(state).await,
        (&M::GET, ["info"]) => system::info(state).await,
        (&M::GET, ["containers", "json"]) => containers::list(state, &r).await,
        (&M::POST, ["containers", "prune"]) => resources::prune(state, &r).await,
        (&M::POST, ["containers", "create"]) => {
            let body = read_body(take(req)).await?;
            containers::create(state, &r, body).await
        }
        (&M::GET, ["containers", id, "json"]) => containers::inspect(state, id, &r).await,
        (&M::GET, ["containers", id, "logs"]) => containers::logs(state, id, &r).await,
        (&M::POST, ["containers", id, "start"]) => containers::start(state, id).await,
        (&M::POST, ["containers", id, "stop"]) => containers::stop(state, id, &r, false).await,
        (&M::POST, ["containers", id, "restart"]) => containers::stop(state, id, &r, true).await,
        (&M::POST, ["containers", id, "kill"]) => containers::kill(state, id, &r).await,
        (&M::POST, ["containers", id, "wait"]) => containers::wait(state, id, &r).await,
        (&M::POST, ["containers", id, "pause"]) => containers::pause(state, id, true).await,
        (&M::POST, ["containers", id, "unpause"]) => containers::pause(state, id, false).await,
        (&M::POST, ["containers", id, "rename"]) => containers::rename(state, id, &r).await,
        (&M::DELETE, ["containers", id]) => containers::remove(state, id, &r).await,
        (&M::POST, ["containers", id, "attach"]) => {
            let id = id.to_string();
            super::attach::attach(state, &id, &r, take(req)).await
        }
        (&M::GET, ["containers", id, "attach", "ws"]) => {
            let id = id.to_string();
            super::attach::attach_ws(state, &id, &r, take(req)).await
        }
        (&M::POST, ["containers", id, "resize"]) => super::attach::resize(state, id, &r).await,
        (&M::POST, ["containers", id, "exec"]) => {
            let id = id.to_string();
            let body = read_body(take(req)).await?;
            super::exec::create(state, &id, body).await
        }
        (&M::POST, ["exec", id, "start"]) => {
            let id = id.to_string();
            super::exec::start(state, &id, take(req)).await
        }
        (&M::GET, ["exec", id, "json"]) => super::exec::inspect(state, id).await,
        (&M::POST, ["exec", id, "resize"]) => resources::exec_resize(state, id, &r).await,
        (&M::GET, ["containers", id, "top"]) => resources::top(state, id, &r).await,
        (&M::GET, ["containers", id, "changes"]) => resources::changes(state, id).await,
        (&M::GET, ["containers", id, "export"]) => resources::export(state, id).await,
        (&M::GET, ["containers", id, "stats"]) => resources::stats(state, id, &r).await,
        (&M::POST, ["containers", id, "update"]) => {
            let id = id.to_string();
            let body = read_body(take(req)).await?;
            resources::update(state, &id, body).await
        }
        (&M::POST, ["commit"]) => {
            let body = read_body(take(req)).await?;
            resources::commit(state, &r, body).await
        }
        (&M::GET, ["system", "df"]) => resources::df(state).await,
        (&M::GET, ["images", "json"]) => images::list(state, &r).await,
        (&M::GET, ["images", "search"]) => images::search(state, &r).await,
        (&M::GET, ["images", "get"]) => {
            let names = r
                .query
                .iter()
                .filter(|(k, _)| k == "names")
                .map(|(_, v)| v.clone())
                .collect();
            images::save(state, names).await
        }
        (&M::POST, ["images", "create"]) => images::create(state, &r, take(req)).await,
        (&M::POST, ["images", "load"]) => images::load(state, &r, take(req)).await,
        (&M::POST, ["images", "prune"]) => images::prune(state, &r).await,
        (&M::GET, ["images", name @ .., "json"]) if !name.is_empty() => {
            images::inspect(state, &name.join("/")).await
        }
        (&M::GET, ["images", name @ .., "history"]) if !name.is_empty() => {
            images::history(state, &name.join("/")).await
        }
        (&M::GET, ["images", name @ .., "get"]) if !name.is_empty() => {
            images::save(state, vec![name.join("/")]).await
        }
        (&M::POST, ["images", name @ .., "push"]) if !name.is_empty() => {
            images::push(state, &name.join("/"), &r, head.headers()).await
        }
        (&M::POST, ["images", name @ .., "tag"]) if !name.is_empty() => {
            images::tag(state, &name.join("/"), &r).await
        }
        (&M::DELETE, ["images", name @ ..]) if !name.is_empty() => {
            images::remove(state, &name.join("/"), &r).await
        }
        (&M::HEAD, ["containers", id, "archive"]) => archive::get(state, id, &r, true).await,
        (&M::GET, ["containers", id, "archive"]) => archive::get(state, id, &r, false).await,
        (&M::PUT, ["containers", id, "archive"]) => {
            let id = id.to_string();
            archive::put(state, &id, &r, take(req)).await
        }
        (&M::GET, ["events"]) => events::events(state, &r).await,
        (&M::GET, ["volumes"]) => volumes::list(state, &r).await,
        (&M::POST, ["volumes", "create"]) => {
            let body = read_body(take(req)).await?;
            volumes::create(state, body).await
        }
        (&M::POST, ["volumes", "prune"]) => volumes::prune(state, &r).await,
        (&M::GET, ["volumes", name]) => volumes::inspect(state, name).await,
        (&M::DELETE, ["volumes", name]) => volumes::remove(state, name, &r).await,
        (&M::GET, ["networks"]) => networks::list(state, &r).await,
        (&M::POST, ["networks", "create"]) => {
            let body = read_body(take(req)).await?;
            networks::create(state, body).await
        }
        (&M::POST, ["networks", "prune"]) => networks::prune(state, &r).await,
        (&M::POST, ["networks", id, "connect"]) => {
            let body = read_body(take(req)).await?;
            networks::connect(state, id, body).await
        }
        (&M::POST, ["networks", id, "disconnect"]) => {
            let body = read_body(take(req)).await?;
            networks::disconnect(state, id, body).await
        }
        (&M::GET, ["networks", id]) => networks::inspect(state, id).await,
        (&M::DELETE, ["networks", id]) => networks::remove(state, id).await,
        (&M::POST, ["auth"]) => {
            let body = read_body(take(req)).await?;
            system::auth(state, body).await
        }
        (&M::POST, ["build"]) => super::build::build(state, &r, take(req)).await,
        _ => Ok(error(StatusCode::NOT_FOUND, "page not found")),
    }
}

/// The request out of its slot, for the one handler that uses it.
fn take(req: &mut Option<Request<Incoming>>) -> Request<Incoming> {
    req.take().expect("the request is taken only once")
}

/// How much of a body its handler did not read is read and dropped so that the connection
/// stays usable (Go's net/http, and so dockerd, reads up to 256 KiB).
const DRAIN_MAX: usize = 256 << 10;

/// How long a client may take to send a body its handler did not need.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads the rest of a body that its handler did not need (`POST /containers/{id}/start`
/// with `{}`, say), after the answer, off the handler's path. Dropping it unread made
/// hyper close the connection when the body had not arrived yet by the time the handler
/// answered (a client that sends the head and the body in two writes, as Python's
/// http.client does): the client's next request on that keep-alive connection failed
/// with a broken pipe. Past [`DRAIN_MAX`] or [`DRAIN_TIME`] the body is dropped and the
/// connection closed, as before.
fn drain_later(body: Incoming) {
    use hyper::body::Body as _;
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DRAIN_TIME, Limited::new(body, DRAIN_MAX).collect()).await;
    });
}

/// Reads a request body, up to [`MAX_BODY`].
async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ApiError::bad(format!(
            "request body too large: more than {MAX_BODY} bytes"
        )));
    }
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad(format!("read the request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_decoding() {
        assert_eq!(
            split_version("/v1.45/containers/json"),
            (Some("1.45"), "/containers/json")
        );
        assert_eq!(split_version("/version"), (None, "/version"));
        assert_eq!(split_version("/v1.24"), (Some("1.24"), ""));
        assert_eq!(percent_decode("a%2Fb+c", true), "a/b c");
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
    }
}
