//! `GET /events?since=&until=&filters=`: the engine's event log as a JSON stream, the past
//! events from `since`, then new ones as they happen until `until` (or until the client
//! leaves).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::body::{ApiError, ApiResult, Body, json_line, stream};
use super::router::{Req, State};
use crate::EventsOptions;

/// Docker's time parameter: seconds since the epoch, with an optional fraction.
fn time_param(r: &Req, k: &str) -> Result<Option<i64>, ApiError> {
    match r.q(k).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .split('.')
            .next()
            .unwrap_or(v)
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad(format!("invalid value for {k}: {v:?} is not a timestamp"))),
    }
}

/// The stream.
pub async fn events(state: &Arc<State>, r: &Req) -> ApiResult {
    let cancel = Arc::new(AtomicBool::new(false));
    // without since, only what happens from now on, as Docker streams
    let since = match time_param(r, "since")? {
        Some(s) => Some(s),
        None => Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        ),
    };
    let opts = EventsOptions {
        since,
        until: time_param(r, "until")?,
        filters: r.filters()?,
        cancel: Some(cancel.clone()),
    };
    // a bad filter is a 400 before the stream starts
    let probe = opts.filters.clone();
    state
        .job(move |e| {
            let o = EventsOptions {
                filters: probe,
                until: Some(0),
                ..Default::default()
            };
            e.events(&o, &mut |_| false)
        })
        .await?;
    let (tx, body) = Body::channel();
    // a weak sender: holding a strong one would keep the stream open after the job ends
    let watch = tx.downgrade();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            match watch.upgrade() {
                None => break,
                Some(s) if s.is_closed() => {
                    cancel.store(true, Ordering::Relaxed);
                    break;
                }
                Some(_) => {}
            }
        }
    });
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let res = engine.events(&opts, &mut |ev| {
            let v = serde_json::to_value(&ev).unwrap_or_default();
            let mut v = v;
            // the fields of API versions before 1.22, which clients still read
            if ev.kind == "container" || ev.kind == "image" {
                v["status"] = ev.action.clone().into();
                v["id"] = ev.actor.id.clone().into();
                if let Some(img) = ev.actor.attributes.get("image") {
                    v["from"] = img.clone().into();
                }
            }
            tx.blocking_send(json_line(&v)).is_ok()
        });
        if let Err(e) = res {
            tracing::warn!("events: {e}");
        }
    });
    Ok(stream("application/json", body))
}
