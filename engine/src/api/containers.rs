//! Container endpoints: each decodes, calls one engine job, encodes.

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;

use super::attach::PendingAttach;
use super::body::{ApiError, ApiResult, Body, json, json_bytes, status};
use super::router::{Req, State};
use crate::{ListOptions, LogsOptions, RemoveOptions, StopOptions, WaitCondition};

/// `GET /containers/json?all=&limit=&filters=&size=`.
pub async fn list(state: &Arc<State>, r: &Req) -> ApiResult {
    let opts = ListOptions {
        all: r.flag("all"),
        limit: r.int("limit")?.filter(|n| *n > 0).map(|n| n as usize),
        filters: r.filters()?,
        size: r.flag("size"),
    };
    // encoded by the engine from its listing cache: no summary values in between
    let body = state.job(move |e| e.list_containers_json(&opts)).await?;
    Ok(json_bytes(StatusCode::OK, body))
}

/// `POST /containers/create?name=`.
pub async fn create(state: &Arc<State>, r: &Req, body: Bytes) -> ApiResult {
    let mut req = super::create::parse(&body)?.into_request(r.q("name").map(String::from))?;
    req.platform = r.q("platform").filter(|p| !p.is_empty()).map(String::from);
    let c = state.job(move |e| e.create_container(&req)).await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"Id": c.id(), "Warnings": []}),
    ))
}

/// `GET /containers/{id}/json`.
pub async fn inspect(state: &Arc<State>, id: &str, r: &Req) -> ApiResult {
    let id = id.to_string();
    // `size=1`: SizeRw and SizeRootFs, as docker inspect -s asks
    let size = r.flag("size");
    let v = state
        .job(move |e| {
            if size {
                e.inspect_container_with_size(&id)
            } else {
                e.inspect_container(&id)
            }
        })
        .await?;
    Ok(json(StatusCode::OK, &v))
}

/// `POST /containers/{id}/start`: 304 when it runs already. Attaches that arrived before
/// the start get the container's stdio from its first byte.
pub async fn start(state: &Arc<State>, id: &str) -> ApiResult {
    let name = id.to_string();
    let c = state.job(move |e| e.container(&name)).await?;
    if matches!(c.live_status(), "running" | "paused") {
        return Ok(status(StatusCode::NOT_MODIFIED));
    }
    let full = c.id().to_string();
    let waiting = state
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&full)
        .unwrap_or_default();
    // the monitor waits for every attach (one connection per stream for some clients)
    // before the process starts, so that none misses its first output; their connections
    // are made while the container is set up
    let clients: Vec<_> = waiting.iter().map(PendingAttach::streams).collect();
    let f = full.clone();
    let res = state.job(move |e| e.start_attached(&f, &clients)).await;
    match res {
        Ok((_, attached)) => {
            let mut attached = attached.into_iter();
            for p in waiting {
                match attached.next() {
                    Some(a) => p.deliver(a.map_err(|e| e.to_string())),
                    None => p.fail("the container was started by another request"),
                }
            }
            Ok(status(StatusCode::NO_CONTENT))
        }
        Err(e) => {
            for p in waiting {
                p.fail(&e.message);
            }
            Err(e)
        }
    }
}

/// `POST /containers/{id}/stop?t=` and `/restart?t=`: 304 when a stop finds it stopped.
pub async fn stop(state: &Arc<State>, id: &str, r: &Req, restart: bool) -> ApiResult {
    let opts = StopOptions {
        timeout: r.int("t")?,
        signal: r.q("signal").filter(|s| !s.is_empty()).map(String::from),
    };
    let id = id.to_string();
    let stopped_already = state
        .job(move |e| {
            let c = e.container(&id)?;
            if restart {
                e.restart_container(&id, &opts)?;
                return Ok(false);
            }
            if !matches!(c.live_status(), "running" | "paused" | "restarting") {
                return Ok(true);
            }
            e.stop_container(&id, &opts).map(|()| false)
        })
        .await?;
    Ok(status(if stopped_already {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::NO_CONTENT
    }))
}

/// `POST /containers/{id}/kill?signal=`.
pub async fn kill(state: &Arc<State>, id: &str, r: &Req) -> ApiResult {
    let sig = r.q("signal").filter(|s| !s.is_empty()).map(String::from);
    let id = id.to_string();
    state
        .job(move |e| e.kill_container(&id, sig.as_deref()))
        .await?;
    Ok(status(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/pause` and `/unpause`.
pub async fn pause(state: &Arc<State>, id: &str, on: bool) -> ApiResult {
    let id = id.to_string();
    state
        .job(move |e| {
            if on {
                e.pause_container(&id)
            } else {
                e.unpause_container(&id)
            }
        })
        .await?;
    Ok(status(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/rename?name=`.
pub async fn rename(state: &Arc<State>, id: &str, r: &Req) -> ApiResult {
    let new = r
        .q("name")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad("rename: the new name is required (name=)"))?
        .to_string();
    let id = id.to_string();
    state.job(move |e| e.rename_container(&id, &new)).await?;
    Ok(status(StatusCode::NO_CONTENT))
}

/// `DELETE /containers/{id}?force=&v=`.
pub async fn remove(state: &Arc<State>, id: &str, r: &Req) -> ApiResult {
    let opts = RemoveOptions {
        force: r.flag("force"),
        volumes: r.flag("v"),
        link: r.flag("link"),
    };
    let id = id.to_string();
    state.job(move |e| e.remove_container(&id, &opts)).await?;
    Ok(status(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/wait?condition=`: the headers at once (the docker CLI waits
/// for them before it starts the container), `{"StatusCode": n}` when the condition holds.
pub async fn wait(state: &Arc<State>, id: &str, r: &Req) -> ApiResult {
    let cond = match r.q("condition").unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        c => {
            return Err(ApiError::bad(format!(
                "invalid condition {c:?}: use not-running, next-exit or removed"
            )));
        }
    };
    let name = id.to_string();
    let c = state.job(move |e| e.container(&name)).await?;
    let full = c.id().to_string();
    let since = super::exit::log_len(&state.engine);
    let (tx, body) = Body::channel();
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let res = super::wait::wait_or_leave(&engine, &c, cond, &|| tx.is_closed());
        let v = match res {
            // the client left: nobody to answer
            Ok(None) => return,
            Ok(Some(code)) => {
                // a container removed before the poll saw its exit: its die event has it
                let code = if cond == WaitCondition::Removed {
                    super::exit::last_exit_code(&engine, &full, since).unwrap_or(code)
                } else {
                    code
                };
                json!({"StatusCode": code, "Error": null})
            }
            Err(e) => json!({"StatusCode": -1, "Error": {"Message": e.to_string()}}),
        };
        let mut b = serde_json::to_vec(&v).expect("a JSON value serializes");
        b.push(b'\n');
        let _ = tx.blocking_send(Bytes::from(b));
    });
    let mut resp = hyper::Response::new(body);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// `GET /containers/{id}/logs?stdout=&stderr=&follow=&tail=&timestamps=&since=&until=`:
/// Docker's 8-byte multiplexed framing unless the container has a terminal.
pub async fn logs(state: &Arc<State>, id: &str, r: &Req) -> ApiResult {
    let tail = match r.q("tail") {
        None | Some("" | "all") => None,
        Some(t) => match t.parse::<i64>() {
            Ok(n) if n < 0 => None,
            Ok(n) => Some(n as usize),
            Err(_) => return Err(ApiError::bad(format!("invalid tail {t:?}"))),
        },
    };
    let opts = LogsOptions {
        follow: r.flag("follow"),
        since: r
            .q("since")
            .filter(|s| !s.is_empty() && *s != "0")
            .map(String::from),
        until: r
            .q("until")
            .filter(|s| !s.is_empty() && *s != "0")
            .map(String::from),
        tail,
        stdout: r.flag("stdout"),
        stderr: r.flag("stderr"),
    };
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let timestamps = r.flag("timestamps");
    let name = id.to_string();
    let c = state.job(move |e| e.container(&name)).await?;
    // `details=1`: the log attributes before each line, as Docker's daemon writes them
    let details = if r.flag("details") {
        let full = c.id().to_string();
        Some(state.job(move |e| e.log_attributes(&full)).await?)
    } else {
        None
    };
    let tty = c.record.config.tty;
    let full = c.id().to_string();
    let (tx, body) = Body::channel();
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let res = engine.container_logs(&full, &opts, &mut |line| {
            let mut data = Vec::with_capacity(line.data.len() + 40);
            if timestamps {
                data.extend_from_slice(line.time.as_bytes());
                data.push(b' ');
            }
            if let Some(d) = &details {
                data.extend_from_slice(d.as_bytes());
                data.push(b' ');
            }
            data.extend_from_slice(line.data.as_bytes());
            let chunk = if tty { data } else { frame(line.stream, &data) };
            tx.blocking_send(Bytes::from(chunk)).is_ok()
        });
        if let Err(e) = res {
            let msg = format!("Error grabbing logs: {e}\n");
            let _ = tx.blocking_send(Bytes::from(frame(2, msg.as_bytes())));
        }
    });
    let mut resp = hyper::Response::new(body);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    Ok(resp)
}

/// Docker's multiplexed frame: stream (1 stdout, 2 stderr), three zeros, big-endian length.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&[stream, 0, 0, 0]);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}
