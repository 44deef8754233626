//! `POST /build`: Docker's legacy build endpoint (what `DOCKER_BUILDKIT=0 docker build`
//! calls). The body is the context as a tar (plain or gzip); the query has the options
//! (`t` several, `dockerfile`, `buildargs`, `target`, `nocache`, `q`, `rm`, `forcerm`,
//! `labels`, `cachefrom`, `platform`, `pull`); the answer is Docker's JSON message stream: the
//! build's lines as `{"stream": ...}`, the image as `{"aux":{"ID": ...}}`, a failure as
//! `{"errorDetail":{"code":..,"message":..},"error":..}` (the code is a failed RUN's own,
//! which `docker build` exits with).
//!
//! The context is unpacked as it arrives (the body is read by a task and handed to the
//! blocking build through a channel), so a large context is never held in memory whole.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, header};
use serde_json::json;
use tokio::sync::mpsc;

use super::body::{ApiError, ApiResult, Body};
use super::router::{Req, State};
use crate::build::{BuildContext, BuildOptions};

/// `X-Registry-Config`: base64 (URL-safe or standard, padding optional) JSON of registry →
/// auth config (`username`/`password`, or `auth` = base64 `user:pass`, or an
/// `identitytoken`), as the docker CLI sends `config.json`'s `auths` with a build.
fn registry_config(headers: &hyper::HeaderMap) -> Result<crate::build::BuildAuths, ApiError> {
    use base64::Engine as _;
    let mut out = crate::build::BuildAuths::default();
    let Some(v) = headers.get("x-registry-config") else {
        return Ok(out);
    };
    let trimmed: Vec<u8> = v
        .as_bytes()
        .iter()
        .copied()
        .filter(|c| *c != b'=')
        .collect();
    if trimmed.is_empty() {
        return Ok(out);
    }
    let bad = |e: String| ApiError::bad(format!("invalid X-Registry-Config header: {e}"));
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&trimmed))
        .map_err(|e| bad(e.to_string()))?;
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&decoded).map_err(|e| bad(e.to_string()))?;
    for (registry, a) in map {
        let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
        let (mut user, mut pass) = (s("username"), s("password"));
        if user.is_empty() && !s("auth").is_empty() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(s("auth").trim())
                .map_err(|e| bad(format!("auth of {registry}: {e}")))?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            if let Some((u, p)) = raw.split_once(':') {
                user = u.to_string();
                pass = p.to_string();
            }
        }
        if !s("identitytoken").is_empty() {
            pass = s("identitytoken");
        }
        if !user.is_empty() || !pass.is_empty() {
            out.auths
                .insert(registry, longshore_registry::Credentials::new(user, pass));
        }
    }
    Ok(out)
}

/// The options of a build request, decoded before the body is read.
struct Query {
    opts: BuildOptions,
    dockerfile: String,
}

fn json_query<T: serde::de::DeserializeOwned + Default>(r: &Req, k: &str) -> Result<T, ApiError> {
    match r.q(k) {
        None | Some("") => Ok(T::default()),
        Some(v) => serde_json::from_str(v)
            .map_err(|e| ApiError::bad(format!("invalid value for {k}: {v:?}: {e}"))),
    }
}

fn query(r: &Req) -> Result<Query, ApiError> {
    if let Some(remote) = r.q("remote").filter(|s| !s.is_empty()) {
        return Err(ApiError::bad(format!(
            "remote build contexts ({remote}) are not supported by longshore: send the context as the request body"
        )));
    }
    if r.q("version").is_some_and(|v| v == "2") {
        return Err(ApiError::bad(
            "the BuildKit builder (version=2) is not supported by longshore: use the legacy builder (DOCKER_BUILDKIT=0)",
        ));
    }
    if let Some(p) = r.q("platform") {
        longshore_build::plan::check_platform(p).map_err(ApiError::bad)?;
    }
    let buildargs: BTreeMap<String, Option<String>> = json_query(r, "buildargs")?;
    let labels: BTreeMap<String, String> = json_query(r, "labels")?;
    let cache_from: Vec<String> = json_query(r, "cachefrom")?;
    let dockerfile = r
        .q("dockerfile")
        .filter(|s| !s.is_empty())
        .unwrap_or("Dockerfile")
        .to_string();
    let opts = BuildOptions {
        dockerfile_name: dockerfile
            .rsplit('/')
            .next()
            .unwrap_or(&dockerfile)
            .to_string(),
        // a build arg sent without a value (`--build-arg X` with X unset on the client)
        // counts as not given, as in Docker: the ARG's default applies
        build_args: buildargs
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
        target: r.q("target").filter(|s| !s.is_empty()).map(String::from),
        tags: r
            .query
            .iter()
            .filter(|(k, v)| k == "t" && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect(),
        labels,
        no_cache: r.flag("nocache"),
        cache_from,
        quiet: r.flag("q"),
        terminal: false,
        // rm defaults to true in the API
        rm: r.q("rm").is_none_or(|_| r.flag("rm")),
        force_rm: r.flag("forcerm"),
        pull: r.flag("pull"),
        ..BuildOptions::default()
    };
    for t in &opts.tags {
        longshore_graph::Reference::parse_with_default_tag(t)
            .map_err(|e| ApiError::bad(format!("invalid tag {t:?} (t): {e}")))?;
    }
    Ok(Query { opts, dockerfile })
}

/// The request body as a blocking reader: chunks come from the task that reads the body.
struct ChanReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// The build's output as `{"stream": ...}` messages, one per write, never splitting a
/// UTF-8 character between two messages.
struct StreamWriter {
    tx: mpsc::Sender<Bytes>,
    pending: Vec<u8>,
}

impl StreamWriter {
    fn message(&self, v: &serde_json::Value) -> bool {
        let mut b = serde_json::to_vec(v).expect("a JSON value serializes");
        b.push(b'\n');
        self.tx.blocking_send(Bytes::from(b)).is_ok()
    }
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        // all but an incomplete character at the end
        let cut = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        if cut == 0 {
            return Ok(buf.len());
        }
        let text = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
        self.pending.drain(..cut);
        if !self.message(&json!({ "stream": text })) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client went away",
            ));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // an incomplete character at the very end goes out as U+FFFD
        if !self.pending.is_empty() {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            self.message(&json!({ "stream": text }));
        }
        Ok(())
    }
}

/// `POST /build?t=&dockerfile=&buildargs=&target=&nocache=&q=&rm=&forcerm=&labels=&cachefrom=`
/// with the context tar as the body.
pub async fn build(state: &Arc<State>, r: &Req, req: Request<Incoming>) -> ApiResult {
    // the client's credentials per registry, for this build's pulls only
    let (parsed, auths) = match registry_config(req.headers()).and_then(|a| {
        a.with_network(r.q("networkmode"))
            .map_err(|e| ApiError::bad(e.to_string()))
    }) {
        Ok(a) => (query(r), a),
        Err(e) => (Err(e), Default::default()),
    };
    let Query {
        mut opts,
        dockerfile,
    } = match parsed {
        Ok(q) => q,
        Err(e) => {
            // the client is still sending the context: read it to its end, or the answer
            // is lost to a broken pipe on the client's side
            let mut incoming = req.into_body();
            while let Some(Ok(_)) = incoming.frame().await {}
            return Err(e);
        }
    };
    // the body, read as it comes
    let (btx, brx) = mpsc::channel::<Result<Bytes, String>>(16);
    let mut incoming = req.into_body();
    tokio::spawn(async move {
        while let Some(frame) = incoming.frame().await {
            let chunk = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => Ok(d),
                    Err(_) => continue,
                },
                Err(e) => Err(format!("read the build context: {e}")),
            };
            let stop = chunk.is_err();
            if btx.send(chunk).await.is_err() || stop {
                return;
            }
        }
    });
    let (tx, body) = Body::channel();
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = StreamWriter {
            tx,
            pending: Vec::new(),
        };
        let mut reader = ChanReader {
            rx: brx,
            cur: Bytes::new(),
        };
        let ctx = BuildContext::tar(&mut reader);
        // a context refused halfway (a `../` entry): read the rest, so that the client
        // gets the answer rather than a broken pipe
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        let res = ctx
            .and_then(|ctx| {
                opts.dockerfile = ctx.read_file(&dockerfile).map_err(|e| {
                    longshore_build::Error::Context(format!(
                        "cannot locate the Dockerfile {dockerfile:?} in the build context: {e}"
                    ))
                })?;
                ctx.with_dockerfile_ignore(&dockerfile)
            })
            .map_err(|e| crate::build::BuildFailure {
                error: Box::new(crate::Error::Build(e.to_string())),
                code: 1,
            })
            .and_then(|ctx| engine.build_with_auths(&ctx, &opts, &auths, &mut out));
        let _ = out.flush();
        match res {
            Ok(built) => {
                out.message(&json!({"aux": {"ID": built.id.to_string()}}));
            }
            Err(f) => {
                let msg = f.error.to_string();
                out.message(&json!({
                    "errorDetail": {"code": f.code, "message": msg},
                    "error": msg,
                }));
            }
        }
    });
    let mut resp = hyper::Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
