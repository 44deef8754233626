//! Image endpoints.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;

use super::body::{ApiResult, json};
use super::router::{Req, State};
use crate::RemoveImageOptions;

/// `GET /images/json?filters=`.
pub async fn list(state: &Arc<State>, r: &Req) -> ApiResult {
    let filters = r.filters()?;
    let list = state.job(move |e| e.list_images(&filters)).await?;
    // the API's fields the engine's summary does not carry
    let list: Vec<serde_json::Value> = list
        .into_iter()
        .map(|i| {
            let mut v = serde_json::to_value(&i).unwrap_or_default();
            v["RepoDigests"] = json!([]);
            v["SharedSize"] = json!(-1);
            v["VirtualSize"] = json!(i.size);
            v["Labels"] = json!({});
            v["ParentId"] = json!(i.parent_id);
            v
        })
        .collect();
    Ok(json(StatusCode::OK, &list))
}

/// `GET /images/{name}/json`.
pub async fn inspect(state: &Arc<State>, name: &str) -> ApiResult {
    let name = name.to_string();
    let v = state.job(move |e| e.inspect_image(&name)).await?;
    Ok(json(StatusCode::OK, &v))
}

/// `DELETE /images/{name}?force=&noprune=`.
pub async fn remove(state: &Arc<State>, name: &str, r: &Req) -> ApiResult {
    let opts = RemoveImageOptions {
        force: r.flag("force"),
        no_prune: r.flag("noprune"),
    };
    let name = name.to_string();
    let removed = state.job(move |e| e.remove_image(&name, &opts)).await?;
    let out: Vec<serde_json::Value> = removed
        .into_iter()
        .map(|x| match x {
            longshore_graph::Removed::Untagged(t) => json!({"Untagged": t}),
            longshore_graph::Removed::Deleted(d) => json!({"Deleted": d.to_string()}),
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}
