//! Volume endpoints (`/volumes`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;

use super::body::{ApiError, ApiResult, json, status};
use super::router::{Req, State};

/// A volume in Docker's shape: the engine's record and `Options` (the driver options, which
/// a local volume here has none of; clients such as bollard require the field).
fn shape(v: &crate::Volume) -> serde_json::Value {
    let mut j = serde_json::to_value(v).unwrap_or_default();
    if let Some(o) = j.as_object_mut() {
        o.entry("Options").or_insert_with(|| json!({}));
    }
    j
}

/// `GET /volumes?filters=` (`name`, `label`, `dangling`, `driver`).
pub async fn list(state: &Arc<State>, r: &Req) -> ApiResult {
    let filters = r.filters()?;
    let vols = state.job(move |e| e.list_volumes(&filters)).await?;
    let out: Vec<serde_json::Value> = vols.iter().map(shape).collect();
    Ok(json(
        StatusCode::OK,
        &json!({"Volumes": out, "Warnings": []}),
    ))
}

/// `POST /volumes/create` (`Name`, `Driver`, `Labels`, `DriverOpts`): 201.
pub async fn create(state: &Arc<State>, body: Bytes) -> ApiResult {
    let v: serde_json::Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad(format!("invalid JSON in the volume config: {e}")))?
    };
    let name = match &v["Name"] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s.clone()),
        _ => return Err(ApiError::bad("Name: expected a string")),
    };
    match v["Driver"].as_str() {
        None | Some("") | Some("local") => {}
        Some(d) => {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("plugin \"{d}\" not found"),
            });
        }
    }
    let mut opts = BTreeMap::new();
    if let Some(o) = v["DriverOpts"].as_object() {
        for (k, x) in o {
            let x = x
                .as_str()
                .ok_or_else(|| ApiError::bad(format!("DriverOpts.{k}: expected a string")))?;
            opts.insert(k.clone(), x.to_string());
        }
    }
    let mut labels = BTreeMap::new();
    if let Some(l) = v["Labels"].as_object() {
        for (k, x) in l {
            let x = x
                .as_str()
                .ok_or_else(|| ApiError::bad(format!("Labels.{k}: expected a string")))?;
            labels.insert(k.clone(), x.to_string());
        }
    }
    let vol = state
        .job(move |e| e.create_volume_with_options(name.as_deref(), labels, opts))
        .await?;
    Ok(json(StatusCode::CREATED, &shape(&vol)))
}

/// `GET /volumes/{name}`.
pub async fn inspect(state: &Arc<State>, name: &str) -> ApiResult {
    let name = name.to_string();
    let v = state.job(move |e| e.volume(&name)).await?;
    Ok(json(StatusCode::OK, &shape(&v)))
}

/// `DELETE /volumes/{name}?force=`: 204; 409 while a container uses it.
pub async fn remove(state: &Arc<State>, name: &str, r: &Req) -> ApiResult {
    let name = name.to_string();
    let force = r.flag("force");
    state.job(move |e| e.remove_volume(&name, force)).await?;
    Ok(status(StatusCode::NO_CONTENT))
}

/// `POST /volumes/prune?filters=`: anonymous volumes no container uses; named ones too
/// with the `all=true` filter (Docker since API 1.42; before it, every unused volume).
pub async fn prune(state: &Arc<State>, r: &Req) -> ApiResult {
    let filters = r.filters()?;
    let all = r.version.is_some_and(|v| v < (1, 42))
        || filters
            .iter()
            .any(|(k, v)| k == "all" && matches!(v.as_str(), "true" | "1"));
    let rest: Vec<(String, String)> = filters.into_iter().filter(|(k, _)| k != "all").collect();
    let f =
        crate::system::PruneFilters::parse(&rest, &["label", "label!"]).map_err(ApiError::from)?;
    let rep = state.job(move |e| e.prune_volumes_report(all, &f)).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"VolumesDeleted": rep.deleted, "SpaceReclaimed": rep.space_reclaimed}),
    ))
}
