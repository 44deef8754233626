//! Network endpoints (`/networks`): libnetwork's controller of the engine, in Docker's
//! shapes. The `host` and `none` networks are listed as Docker lists them.

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use longshore_network::{NetworkCreate, NetworkInfo};
use serde_json::json;

use super::body::{ApiError, ApiResult, json, status};
use super::router::{Req, State};

fn net_err(e: longshore_network::Error) -> ApiError {
    use longshore_network::Error as N;
    let status = match &e {
        N::NetworkNotFound(_) => StatusCode::NOT_FOUND,
        N::NetworkExists(_) => StatusCode::CONFLICT,
        N::NetworkInUse { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match &e {
        N::NetworkNotFound(n) => format!("network {n} not found"),
        _ => e.to_string(),
    };
    ApiError { status, message }
}

/// Runs `f` on the engine's network controller, on a blocking thread.
async fn with_net<T: Send + 'static>(
    state: &Arc<State>,
    f: impl FnOnce(&longshore_network::Controller) -> Result<T, longshore_network::Error>
    + Send
    + 'static,
) -> Result<T, ApiError> {
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let c = engine.network().map_err(ApiError::from)?;
        f(c).map_err(net_err)
    })
    .await
    .map_err(|e| ApiError::internal(format!("network job failed: {e}")))?
}

fn shape(n: &NetworkInfo, endpoints: &[longshore_network::EndpointInfo]) -> serde_json::Value {
    let subnet = n.subnet().to_string();
    let mut containers = serde_json::Map::new();
    for ep in endpoints
        .iter()
        .filter(|e| e.network.as_deref() == Some(n.name.as_str()))
    {
        containers.insert(
            crate::network::endpoint_container(&ep.container_id).to_string(),
            json!({
                "Name": ep.container_name,
                "EndpointID": ep.veth.clone().unwrap_or_default(),
                "MacAddress": ep.mac.clone().unwrap_or_default(),
                "IPv4Address": ep.ip.map(|i| i.to_string()).unwrap_or_default(),
                "IPv6Address": "",
            }),
        );
    }
    let mut config = json!({"Subnet": subnet, "Gateway": n.gateway.ip().to_string()});
    if let Some(r) = n.fixed_cidr {
        config["IPRange"] = r.to_string().into();
    }
    if !n.aux_addresses.is_empty() {
        config["AuxiliaryAddresses"] = json!(n.aux_addresses);
    }
    json!({
        "Name": n.name,
        "Id": if n.id.is_empty() { n.name.clone() } else { n.id.clone() },
        "Created": "0001-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [config]},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": {
            "com.docker.network.bridge.name": n.bridge,
            "com.docker.network.bridge.enable_icc": n.icc.to_string(),
            "com.docker.network.bridge.enable_ip_masquerade": n.masquerade.to_string(),
            "com.docker.network.driver.mtu": n.mtu.to_string(),
        },
        "Labels": n.labels,
    })
}

fn builtin(name: &str, driver: &str) -> serde_json::Value {
    json!({
        "Name": name, "Id": name, "Created": "0001-01-01T00:00:00Z", "Scope": "local",
        "Driver": driver, "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false, "Attachable": false, "Ingress": false,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
        "Containers": {}, "Options": {}, "Labels": {},
    })
}

/// `GET /networks?filters=` (`name`, `id`, `driver`, `type`).
pub async fn list(state: &Arc<State>, r: &Req) -> ApiResult {
    let filters = r.filters()?;
    for (k, _) in &filters {
        if !matches!(k.as_str(), "name" | "id" | "driver" | "type" | "scope") {
            return Err(ApiError::bad(format!("invalid filter '{k}'")));
        }
    }
    let (nets, eps) = with_net(state, |c| Ok((c.list_networks()?, c.endpoints()?))).await?;
    let mut all: Vec<serde_json::Value> = nets.iter().map(|n| shape(n, &eps)).collect();
    all.push(builtin("host", "host"));
    all.push(builtin("none", "null"));
    let keep = |v: &serde_json::Value| {
        filters.iter().all(|(k, val)| {
            let s = |f: &str| v[f].as_str().unwrap_or_default().to_string();
            match k.as_str() {
                "name" => s("Name").contains(val.as_str()),
                "id" => s("Id").starts_with(val.as_str()),
                "driver" => s("Driver") == *val,
                "scope" => val == "local",
                _ => {
                    let builtin = matches!(s("Name").as_str(), "bridge" | "host" | "none");
                    (val == "builtin") == builtin
                }
            }
        })
    };
    let out: Vec<serde_json::Value> = all.into_iter().filter(keep).collect();
    Ok(json(StatusCode::OK, &out))
}

/// `GET /networks/{id}`.
pub async fn inspect(state: &Arc<State>, id: &str) -> ApiResult {
    match id {
        "host" => return Ok(json(StatusCode::OK, &builtin("host", "host"))),
        "none" => return Ok(json(StatusCode::OK, &builtin("none", "null"))),
        _ => {}
    }
    let id = id.to_string();
    let (n, eps) = with_net(state, move |c| Ok((find(c, &id)?, c.endpoints()?))).await?;
    Ok(json(StatusCode::OK, &shape(&n, &eps)))
}

/// A network by name, full ID or ID prefix.
fn find(
    c: &longshore_network::Controller,
    id: &str,
) -> Result<NetworkInfo, longshore_network::Error> {
    if let Ok(n) = c.network(id) {
        return Ok(n);
    }
    let mut hits: Vec<NetworkInfo> = c
        .list_networks()?
        .into_iter()
        .filter(|n| !n.id.is_empty() && n.id.starts_with(id))
        .collect();
    match hits.len() {
        1 => Ok(hits.remove(0)),
        _ => Err(longshore_network::Error::NetworkNotFound(id.to_string())),
    }
}

/// `POST /networks/create`: 201 `{"Id","Warning"}`.
pub async fn create(state: &Arc<State>, body: Bytes) -> ApiResult {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("invalid JSON in the network config: {e}")))?;
    let name = v["Name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad("Name is required"))?
        .to_string();
    if matches!(name.as_str(), "bridge" | "host" | "none") {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: format!("{name} is a pre-defined network and cannot be created"),
        });
    }
    match v["Driver"].as_str() {
        None | Some("") | Some("bridge") => {}
        Some(d) => {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("plugin \"{d}\" not found"),
            });
        }
    }
    if v["EnableIPv6"].as_bool() == Some(true) {
        return Err(ApiError::bad("IPv6 networks are not supported"));
    }
    let mut req = NetworkCreate::new(name);
    let configs = v["IPAM"]["Config"].as_array().cloned().unwrap_or_default();
    if configs.len() > 1 {
        return Err(ApiError::bad(
            "one IPAM config (subnet) per network is supported",
        ));
    }
    if let Some(c) = configs.first() {
        let parse = |k: &str| -> Result<Option<ipnetwork::Ipv4Network>, ApiError> {
            match c[k].as_str().filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => s
                    .parse()
                    .map(Some)
                    .map_err(|e| ApiError::bad(format!("invalid {k} {s:?}: {e}"))),
            }
        };
        if let Some(sub) = parse("Subnet")? {
            let gw = match c["Gateway"].as_str().filter(|s| !s.is_empty()) {
                Some(g) => g
                    .parse::<std::net::Ipv4Addr>()
                    .map_err(|e| ApiError::bad(format!("invalid Gateway {g:?}: {e}")))?,
                None => std::net::Ipv4Addr::from(u32::from(sub.network()) + 1),
            };
            if !sub.contains(gw) {
                return Err(ApiError::bad(format!(
                    "no matching subnet for gateway {gw}"
                )));
            }
            req.gateway = Some(
                ipnetwork::Ipv4Network::new(gw, sub.prefix())
                    .map_err(|e| ApiError::bad(format!("invalid Subnet: {e}")))?,
            );
        }
        req.fixed_cidr = parse("IPRange")?;
    }
    if let Some(opts) = v["Options"].as_object() {
        for (k, x) in opts {
            let x = x.as_str().unwrap_or_default();
            match k.as_str() {
                "com.docker.network.bridge.name" => req.bridge = Some(x.to_string()),
                "com.docker.network.bridge.enable_icc" => {
                    req.icc = if x == "false" {
                        longshore_network::Icc::Isolated
                    } else {
                        longshore_network::Icc::Allowed
                    }
                }
                "com.docker.network.driver.mtu" => {
                    req.mtu = Some(
                        x.parse()
                            .map_err(|_| ApiError::bad(format!("invalid MTU {x:?}")))?,
                    )
                }
                _ => return Err(ApiError::bad(format!("unsupported network option {k:?}"))),
            }
        }
    }
    if let Some(l) = v["Labels"].as_object() {
        for (k, x) in l {
            let x = x
                .as_str()
                .ok_or_else(|| ApiError::bad(format!("Labels.{k}: expected a string")))?;
            req.labels.insert(k.clone(), x.to_string());
        }
    }
    req.internal = v["Internal"].as_bool() == Some(true);
    if let Some(aux) = configs
        .first()
        .and_then(|c| c["AuxiliaryAddresses"].as_object())
    {
        for (k, x) in aux {
            let ip = x
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ApiError::bad(format!("invalid AuxiliaryAddresses.{k}: {x}")))?;
            req.aux_addresses.insert(k.clone(), ip);
        }
    }
    let info = with_net(state, move |c| c.create_network(&req)).await?;
    let id = if info.id.is_empty() {
        info.name
    } else {
        info.id
    };
    Ok(json(StatusCode::CREATED, &json!({"Id": id, "Warning": ""})))
}

/// `DELETE /networks/{id}`: 204; 403 while containers use it.
pub async fn remove(state: &Arc<State>, id: &str) -> ApiResult {
    if matches!(id, "bridge" | "host" | "none") {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: format!("{id} is a pre-defined network and cannot be removed"),
        });
    }
    let id = id.to_string();
    with_net(state, move |c| {
        let n = find(c, &id)?;
        c.remove_network(&n.name)
    })
    .await?;
    Ok(status(StatusCode::NO_CONTENT))
}

/// `POST /networks/prune?filters=`: user-defined networks without endpoints (`label`,
/// `label!`, `until` filters).
pub async fn prune(state: &Arc<State>, r: &Req) -> ApiResult {
    let f = crate::system::PruneFilters::parse(&r.filters()?, &["until", "label", "label!"])
        .map_err(ApiError::from)?;
    let gone = state.job(move |e| e.prune_networks(&f)).await?;
    Ok(json(StatusCode::OK, &json!({"NetworksDeleted": gone})))
}

/// The body's `Container` (required).
fn container_of(v: &serde_json::Value) -> Result<String, ApiError> {
    match &v["Container"] {
        serde_json::Value::String(c) if !c.is_empty() => Ok(c.clone()),
        serde_json::Value::Null => Err(ApiError::bad("Container is required")),
        other => Err(ApiError::bad(format!(
            "Container: expected a container name or ID, got {other}"
        ))),
    }
}

/// `POST /networks/{id}/connect` `{"Container", "EndpointConfig": {"Aliases",
/// "IPAMConfig": {"IPv4Address"}}}`: 200.
pub async fn connect(state: &Arc<State>, id: &str, body: Bytes) -> ApiResult {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("invalid JSON in the connect request: {e}")))?;
    let container = container_of(&v)?;
    let mut opts = crate::ConnectOptions::new();
    let ec = &v["EndpointConfig"];
    match &ec["Aliases"] {
        serde_json::Value::Null => {}
        serde_json::Value::Array(a) => {
            for x in a {
                opts.aliases.push(
                    x.as_str()
                        .ok_or_else(|| ApiError::bad("EndpointConfig.Aliases: expected strings"))?
                        .to_string(),
                );
            }
        }
        _ => return Err(ApiError::bad("EndpointConfig.Aliases: expected a list")),
    }
    match &ec["IPAMConfig"]["IPv4Address"] {
        serde_json::Value::Null => {}
        serde_json::Value::String(s) if s.is_empty() => {}
        serde_json::Value::String(s) => {
            opts.ip = Some(s.parse().map_err(|_| {
                ApiError::bad(format!(
                    "invalid IPv4 address {s:?} (IPAMConfig.IPv4Address)"
                ))
            })?)
        }
        _ => return Err(ApiError::bad("IPAMConfig.IPv4Address: expected a string")),
    }
    if !matches!(&ec["IPAMConfig"]["IPv6Address"], serde_json::Value::Null)
        && ec["IPAMConfig"]["IPv6Address"].as_str() != Some("")
    {
        return Err(ApiError::bad("IPv6 addresses are not supported"));
    }
    let id = id.to_string();
    state
        .job(move |e| e.connect_network(&id, &container, &opts))
        .await?;
    Ok(status(StatusCode::OK))
}

/// `POST /networks/{id}/disconnect` `{"Container", "Force"}`: 200.
pub async fn disconnect(state: &Arc<State>, id: &str, body: Bytes) -> ApiResult {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("invalid JSON in the disconnect request: {e}")))?;
    let container = container_of(&v)?;
    let force = match &v["Force"] {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        _ => return Err(ApiError::bad("Force: expected true or false")),
    };
    let id = id.to_string();
    state
        .job(move |e| e.disconnect_network(&id, &container, force))
        .await?;
    Ok(status(StatusCode::OK))
}
