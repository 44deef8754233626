//! `/_ping`, `/version`, `/info`.

use std::sync::Arc;

use hyper::{Method, StatusCode, header};
use serde_json::json;

use super::body::{ApiResult, Body, Resp, json};
use super::router::{Req, State};
use super::{API_VERSION, MIN_API_VERSION};

/// `GET|HEAD /_ping`: `OK` with the headers clients negotiate with.
pub fn ping(r: &Req) -> Resp {
    let body = if r.method == Method::HEAD {
        Body::empty()
    } else {
        Body::Full(Some("OK".into()))
    };
    let mut resp = hyper::Response::new(body);
    let h = resp.headers_mut();
    h.insert("API-Version", header::HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", header::HeaderValue::from_static("linux"));
    h.insert(
        "Docker-Experimental",
        header::HeaderValue::from_static("false"),
    );
    h.insert("Builder-Version", header::HeaderValue::from_static("1"));
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// `GET /version`.
pub async fn version(_state: &Arc<State>) -> ApiResult {
    let v = env!("CARGO_PKG_VERSION");
    let k = kernel();
    Ok(json(
        StatusCode::OK,
        &json!({
            "Platform": {"Name": "longshore"},
            "Components": [{
                "Name": "Engine",
                "Version": v,
                "Details": {
                    "ApiVersion": API_VERSION,
                    "MinAPIVersion": MIN_API_VERSION,
                    "Os": "linux",
                    "Arch": arch(),
                    "KernelVersion": k,
                    "Experimental": "false",
                }
            }],
            "Version": v,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": option_env!("LONGSHORE_GIT").unwrap_or("dev"),
            "GoVersion": "",
            "Os": "linux",
            "Arch": arch(),
            "KernelVersion": k,
            "BuildTime": "",
        }),
    ))
}

/// `GET /info`.
pub async fn info(state: &Arc<State>) -> ApiResult {
    let (containers, images, driver) = state
        .job(|e| {
            let cs = e.list_containers(&crate::ListOptions {
                all: true,
                ..Default::default()
            })?;
            let imgs = e.list_images(&[])?.len();
            let driver = e.graph()?.driver().name().to_string();
            Ok((cs, imgs, driver))
        })
        .await?;
    let count = |s: &str| containers.iter().filter(|c| c.state == s).count();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let running = count("running");
    let paused = count("paused");
    let mut v = json!({
            "ID": "",
            "Containers": containers.len(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": containers.len() - running - paused,
            "Images": images,
            "Driver": driver,
            "DriverStatus": [],
            "MemoryLimit": true,
            "SwapLimit": false,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "CPUShares": true,
            "CPUSet": true,
            "PidsLimit": true,
            "IPv4Forwarding": true,
            "Debug": state.debug.load(std::sync::atomic::Ordering::Relaxed),
            "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
            "NGoroutines": 0,
            "SystemTime": humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "1",
    });
    let more = json!({
            "NEventsListener": 0,
            "KernelVersion": kernel(),
            "OperatingSystem": "longshore",
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": mem,
            "DockerRootDir": state.engine.root(),
            "Name": name,
            "Labels": state.labels.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            "RegistryConfig": registry_config(&state.engine.client()),
            "ExperimentalBuild": false,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "Runtimes": {"longshore": {"path": "longshore"}},
            "DefaultRuntime": "longshore",
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "",
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Warnings": [],
    });
    if let (Some(a), serde_json::Value::Object(b)) = (v.as_object_mut(), more) {
        a.extend(b);
    }
    Ok(json(StatusCode::OK, &v))
}

/// `/info`'s `RegistryConfig` in Docker's shape, from the registry client in use (what
/// daemon.json set, reloaded on SIGHUP).
fn registry_config(client: &longshore_registry::Client) -> serde_json::Value {
    let o = client.options();
    // Docker shows mirrors with a trailing slash
    let mirrors: Vec<String> = o
        .mirrors
        .iter()
        .map(|m| format!("{}/", m.trim_end_matches('/')))
        .collect();
    let mut index = serde_json::Map::new();
    index.insert(
        "docker.io".into(),
        json!({"Name": "docker.io", "Mirrors": mirrors, "Secure": true, "Official": true}),
    );
    for r in &o.insecure_registries {
        index.insert(
            r.clone(),
            json!({"Name": r, "Mirrors": [], "Secure": false, "Official": false}),
        );
    }
    json!({
        "AllowNondistributableArtifactsCIDRs": [],
        "AllowNondistributableArtifactsHostnames": [],
        "InsecureRegistryCIDRs": [],
        "IndexConfigs": index,
        "Mirrors": mirrors,
    })
}

/// `POST /auth`: checks the credentials against the registry (`serveraddress`, empty:
/// Docker Hub). Nothing is kept: the client sends them with each pull and push.
pub async fn auth(state: &Arc<State>, body: bytes::Bytes) -> ApiResult {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| super::body::ApiError::bad(format!("invalid JSON in the auth config: {e}")))?;
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let (user, pass, server) = (s("username"), s("password"), s("serveraddress"));
    let engine = state.engine.clone();
    let res = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(crate::Error::io("start a runtime"))?;
        rt.block_on(engine.login(&server, longshore_registry::Credentials::new(user, pass)))
    })
    .await
    .map_err(|e| super::body::ApiError::internal(format!("login: {e}")))?;
    match res {
        Ok(()) => Ok(json(
            StatusCode::OK,
            &json!({"Status": "Login Succeeded", "IdentityToken": ""}),
        )),
        Err(e) => {
            let m = e.to_string();
            let code = if m.contains("401") || m.to_ascii_lowercase().contains("unauthorized") {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            Ok(super::body::error(code, m))
        }
    }
}
