//! Image endpoints.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::body::{
    ApiError, ApiResult, Body, ChanWriter, Resp, json, json_line, registry_auth, status, stream,
};
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

/// Docker's lines of a progress stream for one libregistry event (`None`: not shown).
fn progress_line(p: &longshore_registry::Progress, push: bool) -> Vec<serde_json::Value> {
    use longshore_registry::ProgressEvent as P;
    let id = &p.id;
    let line = |status: &str| json!({"status": status, "progressDetail": {}, "id": id});
    let bar = |status: &str, current: u64, total: u64| json!({"status": status, "progressDetail": {"current": current, "total": total}, "id": id});
    match &p.event {
        P::Waiting => vec![line("Waiting")],
        P::Downloading { current, total } => vec![bar("Downloading", *current, *total)],
        P::Retrying { attempt, .. } => vec![line(&format!("Retrying (attempt {attempt})"))],
        P::Verifying => vec![line("Verifying Checksum")],
        P::Extracting { current, total } if current >= total && *total > 0 => {
            vec![bar("Extracting", *current, *total), line("Pull complete")]
        }
        P::Extracting { current, total } => vec![bar("Extracting", *current, *total)],
        P::Done => vec![line("Download complete")],
        P::AlreadyExists if push => vec![line("Layer already exists")],
        P::AlreadyExists => vec![line("Already exists")],
        P::Pushing { current, total } => vec![bar("Pushing", *current, *total)],
        P::Mounted { from } => vec![line(&format!("Mounted from {from}"))],
        P::Pushed => vec![line("Pushed")],
    }
}

/// Docker's error line of a progress stream.
fn error_line(message: &str) -> Bytes {
    json_line(&json!({"errorDetail": {"message": message}, "error": message}))
}

/// Runs an async registry job on its own thread and runtime (the server's runtime has one
/// thread), forwarding its progress events as Docker's JSON lines; `done` writes the last
/// lines from its result.
fn registry_stream<T: Send + 'static>(
    state: &Arc<State>,
    push: bool,
    first: Vec<serde_json::Value>,
    job: impl FnOnce(Arc<crate::Engine>, longshore_registry::ProgressSender) -> JobFuture<T>
    + Send
    + 'static,
    done: impl FnOnce(T) -> Vec<serde_json::Value> + Send + 'static,
) -> Resp {
    registry_steps(state, move |rt, engine, tx| {
        for l in first {
            let _ = tx.blocking_send(json_line(&l));
        }
        let v = forward(rt, tx, push, |ptx| job(engine, ptx))?;
        for l in done(v) {
            let _ = tx.blocking_send(json_line(&l));
        }
        Ok(())
    })
}

/// A stream whose lines `steps` writes on its own thread and runtime (several registry
/// jobs in a row, each through [`forward`]); its error is the stream's last line.
fn registry_steps(
    state: &Arc<State>,
    steps: impl FnOnce(
        &tokio::runtime::Runtime,
        Arc<crate::Engine>,
        &tokio::sync::mpsc::Sender<Bytes>,
    ) -> crate::Result<()>
    + Send
    + 'static,
) -> Resp {
    let (tx, body) = Body::channel();
    let engine = state.engine.clone();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.blocking_send(error_line(&format!("start a runtime: {e}")));
                return;
            }
        };
        if let Err(e) = steps(&rt, engine, &tx) {
            let _ = tx.blocking_send(error_line(&e.to_string()));
        }
    });
    stream("application/json", body)
}

/// Runs one registry job on `rt`, sending its progress events to `out` as Docker's JSON
/// lines, in order, until it ends.
fn forward<T>(
    rt: &tokio::runtime::Runtime,
    out: &tokio::sync::mpsc::Sender<Bytes>,
    push: bool,
    job: impl FnOnce(longshore_registry::ProgressSender) -> JobFuture<T>,
) -> crate::Result<T> {
    let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel();
    rt.block_on(async move {
        let fut = job(ptx);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                Some(p) = prx.recv() => {
                    for l in progress_line(&p, push) {
                        // a client that left does not stop the job (Docker finishes a pull too)
                        let _ = out.send(json_line(&l)).await;
                    }
                }
                r = &mut fut => {
                    while let Ok(p) = prx.try_recv() {
                        for l in progress_line(&p, push) {
                            let _ = out.send(json_line(&l)).await;
                        }
                    }
                    break r;
                }
            }
        }
    })
}

/// The future of a registry job.
type JobFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = crate::Result<T>> + Send>>;

/// `fromImage` + `tag` as one reference (`tag` may be a digest).
fn pull_reference(image: &str, tag: Option<&str>) -> String {
    match tag.filter(|t| !t.is_empty()) {
        None => image.to_string(),
        Some(t) if t.contains(':') => format!("{image}@{t}"),
        Some(t) => {
            let last = image.rsplit('/').next().unwrap_or(image);
            if last.contains(':') || image.contains('@') {
                image.to_string()
            } else {
                format!("{image}:{t}")
            }
        }
    }
}

/// `POST /images/create?fromImage=&tag=` (pull, a JSON progress stream) or
/// `?fromSrc=-&repo=&tag=&message=&changes=` (import of the request body).
pub async fn create(state: &Arc<State>, r: &Req, req: Request<Incoming>) -> ApiResult {
    if let Some(src) = r.q("fromSrc") {
        if src != "-" {
            return Err(ApiError::bad(format!(
                "importing from a URL ({src}) is not supported: send the archive as the request body (fromSrc=-)"
            )));
        }
        let repo = r.q("repo").filter(|s| !s.is_empty());
        let reference = repo.map(|rp| pull_reference(rp, r.q("tag")));
        let message = r.q("message").map(String::from);
        let changes: Vec<String> = r
            .query
            .iter()
            .filter(|(k, _)| k == "changes")
            .map(|(_, v)| v.clone())
            .collect();
        let body = super::body::reader(req.into_body());
        let id = state
            .job(move |e| e.import_image(body, reference.as_deref(), message.as_deref(), &changes))
            .await?;
        return Ok(json(StatusCode::OK, &json!({"status": id})));
    }
    let Some(image) = r.q("fromImage").filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad("fromImage or fromSrc is required"));
    };
    let reference = pull_reference(image, r.q("tag"));
    let creds = registry_auth(req.headers())?;
    let platform = match r.q("platform").filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(p.parse::<longshore_registry::Platform>().map_err(|_| {
            ApiError::bad(format!(
                "invalid platform {p:?}: expected os/arch[/variant]"
            ))
        })?),
    };
    let parsed = longshore_registry::Reference::parse(&reference)
        .map_err(|e| ApiError::bad(format!("invalid reference format: {reference}: {e}")))?;
    if parsed.tag().is_none() && parsed.digest().is_none() {
        // no tag: every tag of the repository, as Docker's daemon does (`pull -a`)
        return Ok(pull_all_tags(state, parsed, creds, platform));
    }
    let shown_tag = parsed
        .tag()
        .map(String::from)
        .or_else(|| parsed.digest().map(|d| d.to_string()))
        .unwrap_or_else(|| "latest".into());
    let first = vec![json!({"status": format!("Pulling from {}", parsed.path()), "id": shown_tag})];
    let name = reference.clone();
    Ok(registry_stream(
        state,
        false,
        first,
        move |engine, ptx| {
            Box::pin(async move {
                let opts = crate::PullJobOptions {
                    progress: Some(ptx),
                    credentials: creds,
                    platform,
                    ..Default::default()
                };
                engine.pull(&name, &opts).await
            })
        },
        |report| {
            vec![
                json!({"status": format!("Digest: {}", report.manifest_digest)}),
                json!({"status": format!(
                    "Status: {} for {}",
                    if report.already_exists { "Image is up to date" } else { "Downloaded newer image" },
                    report.reference
                )}),
            ]
        },
    ))
}

/// `POST /images/create?fromImage=REPO` without a tag: each tag the registry lists, one
/// pull after the other, with Docker's lines (`TAG: Pulling from`, each pull's `Digest`,
/// one `Status` for the repository at the end).
fn pull_all_tags(
    state: &Arc<State>,
    repo: longshore_registry::Reference,
    creds: Option<longshore_registry::Credentials>,
    platform: Option<longshore_registry::Platform>,
) -> Resp {
    registry_steps(state, move |rt, engine, tx| {
        let send = |v: serde_json::Value| {
            let _ = tx.blocking_send(json_line(&v));
        };
        let name = repo.to_string();
        let tags = rt.block_on(engine.remote_tags(&name, creds.as_ref()))?;
        let mut newer = false;
        for t in tags {
            let tag = t.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
            send(json!({"status": format!("Pulling from {}", repo.path()), "id": tag}));
            let report = forward(rt, tx, false, |ptx| {
                let opts = crate::PullJobOptions {
                    progress: Some(ptx),
                    credentials: creds.clone(),
                    platform: platform.clone(),
                    ..Default::default()
                };
                let engine = engine.clone();
                Box::pin(async move { engine.pull(&t, &opts).await })
            })?;
            newer |= !report.already_exists;
            send(json!({"status": format!("Digest: {}", report.manifest_digest)}));
        }
        send(json!({"status": format!(
            "Status: {} for {name}",
            if newer { "Downloaded newer image" } else { "Image is up to date" }
        )}));
        Ok(())
    })
}

/// `POST /images/{name}/push` without a tag: each local tag of the repository, one push
/// after the other (`push -a`).
fn push_all_tags(
    state: &Arc<State>,
    repo: String,
    creds: Option<longshore_registry::Credentials>,
) -> Resp {
    registry_steps(state, move |rt, engine, tx| {
        let tags = engine.repository_tags(&repo)?;
        let send = |v: serde_json::Value| {
            let _ = tx.blocking_send(json_line(&v));
        };
        if let Ok(r) = longshore_registry::Reference::parse(&repo) {
            send(
                json!({"status": format!("The push refers to repository [{}/{}]", r.domain(), r.path())}),
            );
        }
        for t in tags {
            let rep = forward(rt, tx, true, |ptx| {
                let opts = crate::PushJobOptions {
                    progress: Some(ptx),
                    credentials: creds.clone(),
                };
                let engine = engine.clone();
                Box::pin(async move { engine.push(&t, &opts).await })
            })?;
            send(
                json!({"status": format!("{}: digest: {} size: {}", rep.tag, rep.digest, rep.size)}),
            );
            send(
                json!({"progressDetail": {}, "aux": {"Tag": rep.tag, "Digest": rep.digest, "Size": rep.size}}),
            );
        }
        Ok(())
    })
}

/// `POST /images/{name}/push?tag=` (a JSON progress stream).
pub async fn push(
    state: &Arc<State>,
    name: &str,
    r: &Req,
    headers: &hyper::HeaderMap,
) -> ApiResult {
    let reference = pull_reference(name, r.q("tag"));
    let creds = registry_auth(headers)?;
    if r.q("tag").is_none_or(str::is_empty) && !name.contains('@') {
        let last = name.rsplit('/').next().unwrap_or(name);
        if !last.contains(':') {
            // no tag: every local tag of the repository, as Docker's daemon does
            // (`push -a`)
            return Ok(push_all_tags(state, name.to_string(), creds));
        }
    }
    let parsed = longshore_registry::Reference::parse(&reference)
        .map_err(|e| ApiError::bad(format!("invalid reference format: {reference}: {e}")))?;
    let repo = format!("{}/{}", parsed.domain(), parsed.path());
    // a missing image is a 404 before the stream starts, as Docker answers
    let n = name.to_string();
    let r2 = reference.clone();
    state
        .job(move |e| {
            let g = e.graph()?;
            if g.resolve(&r2).is_err() && g.resolve(&n).is_err() {
                return Err(crate::Error::NoSuchImage(r2));
            }
            Ok(())
        })
        .await?;
    let first = vec![json!({"status": format!("The push refers to repository [{repo}]")})];
    Ok(registry_stream(
        state,
        true,
        first,
        move |engine, ptx| {
            Box::pin(async move {
                let opts = crate::PushJobOptions {
                    progress: Some(ptx),
                    credentials: creds,
                };
                engine.push(&reference, &opts).await
            })
        },
        |rep| {
            vec![
                json!({"status": format!("{}: digest: {} size: {}", rep.tag, rep.digest, rep.size)}),
                json!({"progressDetail": {}, "aux": {"Tag": rep.tag, "Digest": rep.digest, "Size": rep.size}}),
            ]
        },
    ))
}

/// `POST /images/{name}/tag?repo=&tag=`: 201.
pub async fn tag(state: &Arc<State>, name: &str, r: &Req) -> ApiResult {
    let Some(repo) = r.q("repo").filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad("repo is required"));
    };
    let target = pull_reference(repo, r.q("tag"));
    let target = if target.rsplit('/').next().is_some_and(|l| l.contains(':')) {
        target
    } else {
        format!("{target}:latest")
    };
    let name = name.to_string();
    state.job(move |e| e.tag_image(&name, &target)).await?;
    Ok(status(StatusCode::CREATED))
}

/// `GET /images/{name}/history`.
pub async fn history(state: &Arc<State>, name: &str) -> ApiResult {
    let name = name.to_string();
    let tags_of = name.clone();
    let (h, tags) = state
        .job(move |e| {
            let h = e.image_history(&name)?;
            let tags = e
                .graph()?
                .image(&tags_of)
                .map(|i| i.tags)
                .unwrap_or_default();
            Ok((h, tags))
        })
        .await?;
    let out: Vec<serde_json::Value> = h
        .iter()
        .enumerate()
        .map(|(i, x)| {
            json!({
                "Id": x.id.as_ref().map(|d| d.to_string()).unwrap_or_else(|| "<missing>".into()),
                "Created": x.created.as_deref().map(crate::containers::unix_time).unwrap_or(0),
                "CreatedBy": x.created_by,
                "Tags": if i == 0 { json!(tags) } else { json!(null) },
                "Size": x.size,
                "Comment": x.comment,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}

/// `GET /images/get?names=...` and `GET /images/{name}/get`: a `docker save` tar.
pub async fn save(state: &Arc<State>, names: Vec<String>) -> ApiResult {
    if names.is_empty() {
        return Err(ApiError::bad("no image names given (names=)"));
    }
    // every name resolves before the stream starts: a missing one is a 404
    let check = names.clone();
    state
        .job(move |e| {
            let g = e.graph()?;
            for n in &check {
                g.resolve(n)
                    .map_err(|_| crate::Error::NoSuchImage(n.clone()))?;
            }
            Ok(())
        })
        .await?;
    let (tx, body) = Body::channel();
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut w = ChanWriter::new(tx);
        let res = engine
            .graph()
            .and_then(|g| {
                g.save(&names, longshore_graph::ArchiveFormat::Docker, &mut w)
                    .map_err(crate::error::graph("save"))
            })
            .and_then(|()| std::io::Write::flush(&mut w).map_err(crate::Error::io("send")));
        if let Err(e) = res {
            // the status is sent: a cut stream is how the client learns it failed
            tracing::warn!("save {names:?}: {e}");
        }
    });
    Ok(stream("application/x-tar", body))
}

/// `POST /images/load?quiet=`: the body is a `docker save` tar; the answer a JSON stream
/// of each new layer's progress (`Loading layer`, unless `quiet`), then what was loaded.
/// An archive refused before a layer is read is an error answer, as Docker's is; a
/// failure once the stream has begun is its last message.
pub async fn load(state: &Arc<State>, r: &Req, req: Request<Incoming>) -> ApiResult {
    let quiet = r.flag("quiet");
    let body = super::body::reader(req.into_body());
    let (ptx, mut prx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let engine = state.engine.clone();
    let mut job = tokio::task::spawn_blocking(move || {
        let report = |p: longshore_graph::LoadProgress<'_>| {
            if !quiet {
                // a client that left ends the stream, not the load
                let _ = ptx.blocking_send(json_line(&crate::load_message(&p)));
            }
        };
        engine.load_images(body, &report)
    });
    let loaded_lines = |loaded: Vec<(String, Vec<String>)>| {
        let mut out = Vec::new();
        for (id, tags) in loaded {
            if tags.is_empty() {
                out.push(json_line(
                    &json!({"stream": format!("Loaded image ID: {id}\n")}),
                ));
            }
            for t in tags {
                out.push(json_line(
                    &json!({"stream": format!("Loaded image: {t}\n")}),
                ));
            }
        }
        out
    };
    let joined = |r: Result<crate::Result<_>, tokio::task::JoinError>| {
        r.map_err(|e| ApiError::internal(format!("load failed: {e}")))?
            .map_err(ApiError::from)
    };
    // the first progress message, or the end of a load that sent none
    let first = tokio::select! {
        m = prx.recv() => m,
        done = &mut job => {
            let loaded = joined(done)?;
            return Ok(stream(
                "application/json",
                Body::Full(Some(Bytes::from(loaded_lines(loaded).concat()))),
            ));
        }
    };
    let Some(first) = first else {
        // no progress (quiet, or no new layer): the job's end is the answer
        let loaded = joined(job.await)?;
        return Ok(stream(
            "application/json",
            Body::Full(Some(Bytes::from(loaded_lines(loaded).concat()))),
        ));
    };
    let (tx, out) = Body::channel();
    tokio::spawn(async move {
        let mut client_here = true;
        let mut next = Some(first);
        while let Some(m) = next {
            client_here = client_here && tx.send(m).await.is_ok();
            next = prx.recv().await;
        }
        let lines = match joined(job.await) {
            Ok(loaded) => loaded_lines(loaded),
            Err(e) => vec![json_line(
                &json!({"errorDetail": {"message": e.message}, "error": e.message}),
            )],
        };
        for l in lines {
            if !client_here || tx.send(l).await.is_err() {
                break;
            }
        }
    });
    Ok(stream("application/json", out))
}

/// `POST /images/prune?filters=`: dangling images; every unused one with the
/// `dangling=false` filter (`docker image prune -a`).
/// Filters: `until`, `label`, `label!`, `dangling`.
pub async fn prune(state: &Arc<State>, r: &Req) -> ApiResult {
    let f = crate::system::PruneFilters::parse(
        &r.filters()?,
        &["until", "label", "label!", "dangling"],
    )
    .map_err(ApiError::from)?;
    let rep = state.job(move |e| e.prune_images(false, &f)).await?;
    let deleted: Vec<serde_json::Value> = rep
        .deleted
        .iter()
        .map(|d| match d.split_once(": ") {
            Some(("untagged", x)) => json!({"Untagged": x}),
            Some((_, x)) => json!({"Deleted": x}),
            None => json!({"Deleted": d}),
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({"ImagesDeleted": deleted, "SpaceReclaimed": rep.space_reclaimed}),
    ))
}

/// `GET /images/search?term=&limit=`.
pub async fn search(state: &Arc<State>, r: &Req) -> ApiResult {
    let Some(term) = r.q("term").filter(|t| !t.is_empty()) else {
        return Err(ApiError::bad("term is required"));
    };
    let term = term.to_string();
    let limit = r.int("limit")?.map(|n| n.max(1) as usize);
    let engine = state.engine.clone();
    let res = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(crate::Error::io("start a runtime"))?;
        rt.block_on(engine.search(&term, limit))
    })
    .await
    .map_err(|e| ApiError::internal(format!("search: {e}")))??;
    let out: Vec<serde_json::Value> = res
        .iter()
        .map(|s| {
            json!({"name": s.name, "description": s.description, "star_count": s.stars,
                   "is_official": s.official, "is_automated": s.automated})
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}
