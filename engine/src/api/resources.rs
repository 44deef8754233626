//! Container endpoints beyond the life cycle: top, changes, export, stats, update, prune,
//! commit; exec resize; `/system/df`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;

use super::body::{ApiError, ApiResult, Body, ChanWriter, json, json_line, status, stream};
use super::router::{Req, State};

/// `GET /containers/{id}/top?ps_args=`.
pub async fn top(state: &Arc<State>, id: &str, r: &Req) -> ApiResult {
    let id = id.to_string();
    let args = r.q("ps_args").unwrap_or_default().to_string();
    let t = state.job(move |e| e.top_container(&id, &args)).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"Titles": t.titles, "Processes": t.processes}),
    ))
}

/// `GET /containers/{id}/changes`: `Kind` 0 modified, 1 added, 2 deleted.
pub async fn changes(state: &Arc<State>, id: &str) -> ApiResult {
    let id = id.to_string();
    let list = state.job(move |e| e.container_changes(&id)).await?;
    let out: Vec<serde_json::Value> = list
        .iter()
        .map(|c| {
            let kind = match c.kind {
                longshore_graph::ChangeKind::Modified => 0,
                longshore_graph::ChangeKind::Added => 1,
                longshore_graph::ChangeKind::Deleted => 2,
            };
            json!({"Path": c.path, "Kind": kind})
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}

/// `GET /containers/{id}/export`: the container's filesystem as a tar.
pub async fn export(state: &Arc<State>, id: &str) -> ApiResult {
    let name = id.to_string();
    let full = state
        .job(move |e| e.container(&name).map(|c| c.id().to_string()))
        .await?;
    let (tx, body) = Body::channel();
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChanWriter::new(tx);
        let res = engine.graph().and_then(|g| {
            g.export_container(&full, &mut w)
                .map_err(crate::error::graph("export"))
        });
        if let Err(e) = res {
            tracing::warn!("export {full}: {e}");
        }
    });
    Ok(stream("application/x-tar", body))
}

/// The host's CPU time in nanoseconds (`/proc/stat`'s first line, USER_HZ 100).
fn system_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse::<u64>().ok())
                    .sum::<u64>()
                    * 10_000_000
            })
        })
        .unwrap_or(0)
}

fn online_cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

/// One stats object in Docker's shape; `pre` is the previous sample (CPU and system time).
fn stats_json(s: &crate::StatsSample, system: u64, pre: Option<(u64, u64)>) -> serde_json::Value {
    let now = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    let (pre_cpu, pre_sys) = pre.unwrap_or((0, 0));
    json!({
        "id": s.id, "name": format!("/{}", s.name), "read": now,
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {"current": s.pids},
        "cpu_stats": {
            "cpu_usage": {"total_usage": s.cpu_usage_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": system, "online_cpus": online_cpus(),
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": pre_cpu}, "system_cpu_usage": pre_sys,
            "online_cpus": online_cpus(),
        },
        "memory_stats": {"usage": s.memory_usage, "limit": if s.memory_limit == 0 { host_memory() } else { s.memory_limit }, "stats": {}},
        "blkio_stats": {}, "networks": {},
    })
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|k| k * 1024)
        .unwrap_or(0)
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: one object, or one a second.
pub async fn stats(state: &Arc<State>, id: &str, r: &Req) -> ApiResult {
    let streaming = r
        .q("stream")
        .is_none_or(|v| r.flag("stream") || v.is_empty());
    let one_shot = r.flag("one-shot");
    let name = id.to_string();
    let first = state.job(move |e| e.container_stats(&name)).await?;
    let sys = system_cpu_ns();
    if !streaming {
        if one_shot {
            return Ok(json(StatusCode::OK, &stats_json(&first, sys, None)));
        }
        // Docker's non-streaming answer has a previous sample a second before
        tokio::time::sleep(Duration::from_secs(1)).await;
        let name = id.to_string();
        let next = state.job(move |e| e.container_stats(&name)).await?;
        let v = stats_json(&next, system_cpu_ns(), Some((first.cpu_usage_ns, sys)));
        return Ok(json(StatusCode::OK, &v));
    }
    let (tx, body) = Body::channel();
    let st = state.clone();
    let name = id.to_string();
    tokio::spawn(async move {
        let mut pre = None;
        let mut cur = Some((first, sys));
        while let Some((s, sys)) = cur.take() {
            if tx.send(json_line(&stats_json(&s, sys, pre))).await.is_err() {
                break;
            }
            pre = Some((s.cpu_usage_ns, sys));
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tx.is_closed() {
                break;
            }
            let n = name.clone();
            match st.job(move |e| e.container_stats(&n)).await {
                Ok(s) => cur = Some((s, system_cpu_ns())),
                Err(_) => break,
            }
        }
    });
    Ok(stream("application/json", body))
}

/// `POST /containers/{id}/update` (`Memory`, `MemorySwap`, `CpuShares`, `NanoCpus`,
/// `CpusetCpus`, `PidsLimit`, `RestartPolicy`).
pub async fn update(state: &Arc<State>, id: &str, body: Bytes) -> ApiResult {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("invalid JSON in the update config: {e}")))?;
    let int = |k: &str| -> Result<Option<i64>, ApiError> {
        match &v[k] {
            serde_json::Value::Null => Ok(None),
            x => x
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::bad(format!("{k}: expected an integer"))),
        }
    };
    let mut req = crate::UpdateRequest {
        memory: int("Memory")?.filter(|m| *m != 0).map(|m| m.to_string()),
        memory_swap: int("MemorySwap")?
            .filter(|m| *m != 0)
            .map(|m| m.to_string()),
        cpu_shares: int("CpuShares")?.filter(|m| *m != 0),
        cpus: int("NanoCpus")?.filter(|m| *m != 0).map(|n| n as f64 / 1e9),
        cpuset_cpus: v["CpusetCpus"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from),
        pids_limit: int("PidsLimit")?.filter(|m| *m != 0),
        restart: None,
        cpu_period: int("CpuPeriod")?.filter(|m| *m != 0),
        cpu_quota: int("CpuQuota")?.filter(|m| *m != 0),
        memory_reservation: int("MemoryReservation")?
            .filter(|m| *m != 0)
            .map(|m| m.to_string()),
        blkio_weight: match int("BlkioWeight")?.filter(|m| *m != 0) {
            None => None,
            Some(w) => Some(
                u16::try_from(w)
                    .map_err(|_| ApiError::bad("Range of blkio weight is from 10 to 1000"))?,
            ),
        },
    };
    if let Some(name) = v["RestartPolicy"]["Name"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        let max = v["RestartPolicy"]["MaximumRetryCount"]
            .as_i64()
            .unwrap_or(0);
        req.restart = Some(if name == "on-failure" && max > 0 {
            format!("{name}:{max}")
        } else {
            name.to_string()
        });
    }
    let id = id.to_string();
    let warnings = state.job(move |e| e.update_container(&id, &req)).await?;
    Ok(json(StatusCode::OK, &json!({"Warnings": warnings})))
}

/// `POST /containers/prune?filters=` (`until`, `label`, `label!`).
pub async fn prune(state: &Arc<State>, r: &Req) -> ApiResult {
    let f = crate::system::PruneFilters::parse(&r.filters()?, &["until", "label", "label!"])
        .map_err(ApiError::from)?;
    let rep = state.job(move |e| e.prune_containers(&f)).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"ContainersDeleted": rep.deleted, "SpaceReclaimed": rep.space_reclaimed}),
    ))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`: 201 `{"Id"}`.
/// A body (a container config, as Docker's) sets the fields it names over the container's
/// config, before the `changes`; an empty body or `null` sets none.
pub async fn commit(state: &Arc<State>, r: &Req, body: Bytes) -> ApiResult {
    let Some(container) = r.q("container").filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad("container is required"));
    };
    let config = commit_body(&body)?;
    let req = crate::CommitRequest {
        reference: r.q("repo").filter(|s| !s.is_empty()).map(|repo| {
            match r.q("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => format!("{repo}:latest"),
            }
        }),
        author: r.q("author").filter(|s| !s.is_empty()).map(String::from),
        message: r.q("comment").filter(|s| !s.is_empty()).map(String::from),
        // one instruction per line or per parameter, as the docker CLI sends them
        changes: r
            .query
            .iter()
            .filter(|(k, _)| k == "changes")
            .flat_map(|(_, v)| v.lines())
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect(),
        pause: r.q("pause").is_none_or(|_| r.flag("pause")),
        config,
    };
    let container = container.to_string();
    let id = state
        .job(move |e| e.commit_container(&container, &req))
        .await?;
    Ok(json(StatusCode::CREATED, &json!({"Id": id})))
}

/// The config of a commit's body: the fields it sets, each checked against the type of a
/// container's config (a wrong type is a 400, not an image whose config no run can read).
fn commit_body(body: &[u8]) -> Result<Option<serde_json::Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("invalid JSON in the commit config: {e}")))?;
    let serde_json::Value::Object(fields) = v else {
        return if v.is_null() {
            Ok(None)
        } else {
            Err(ApiError::bad("the commit config must be a JSON object"))
        };
    };
    let set: serde_json::Map<String, serde_json::Value> =
        fields.into_iter().filter(|(_, v)| !v.is_null()).collect();
    serde_json::from_value::<crate::containers::ContainerConfig>(serde_json::Value::Object(
        set.clone(),
    ))
    .map_err(|e| ApiError::bad(format!("invalid commit config: {e}")))?;
    Ok((!set.is_empty()).then_some(serde_json::Value::Object(set)))
}

/// `GET /system/df`: the engine's disk usage in Docker's shape.
pub async fn df(state: &Arc<State>) -> ApiResult {
    let du = state.job(|e| e.disk_usage()).await?;
    let images: Vec<serde_json::Value> = du
        .images
        .iter()
        .map(|i| {
            json!({"Id": i.id, "ParentId": "", "RepoTags": i.repo_tags, "RepoDigests": [],
                   "Created": i.created, "Size": i.size, "SharedSize": i.shared_size,
                   "VirtualSize": i.size, "Labels": {}, "Containers": i.containers})
        })
        .collect();
    let containers: Vec<serde_json::Value> = du
        .containers
        .iter()
        .map(|c| {
            json!({"Id": c.id, "Names": c.names, "Image": c.image, "Command": c.command,
                   "State": c.state, "Status": c.status, "SizeRw": c.size_rw,
                   "SizeRootFs": c.size_rw, "Created": c.created, "Labels": {},
                   "Mounts": [], "LocalVolumes": c.local_volumes})
        })
        .collect();
    let volumes: Vec<serde_json::Value> = du
        .volumes
        .iter()
        .map(|v| {
            json!({"Name": v.name, "Driver": "local", "Scope": "local", "Labels": {},
                   "Mountpoint": "", "Options": {},
                   "UsageData": {"Size": v.size, "RefCount": v.ref_count}})
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({"LayersSize": du.layers_size, "Images": images, "Containers": containers,
                "Volumes": volumes, "BuildCache": []}),
    ))
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn exec_resize(state: &Arc<State>, id: &str, r: &Req) -> ApiResult {
    let h = r.int("h")?.unwrap_or(0);
    let w = r.int("w")?.unwrap_or(0);
    if !(0..=u16::MAX as i64).contains(&h) || !(0..=u16::MAX as i64).contains(&w) {
        return Err(ApiError::bad(format!("invalid terminal size {h}x{w}")));
    }
    super::exec::resize(state, id, h as u16, w as u16)?;
    Ok(status(StatusCode::OK))
}
