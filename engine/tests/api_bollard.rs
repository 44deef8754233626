//! The Engine API at the API level, through bollard (a Rust Docker API client, unchanged)
//! against `longshore daemon` (the same test daemon as `api.rs`: `common/daemon.rs`):
//! version negotiation, container create/start/wait/logs/inspect/list/remove, attach with
//! the 8-byte framing, the images/create progress stream (an import and a pull from a real
//! docker-registry after a push), exec, volumes, networks, events, and Docker's error codes.
//! Runs as root; containers use the `none` network.
//!
//! A custom harness (`harness = false`): the test binary is also the containers' monitor
//! and the daemon.

use std::collections::HashMap;
use std::process::ExitCode;

use bollard::Docker;
use bollard::errors::Error as BError;
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, NetworkCreateRequest, VolumeCreateOptions,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    EventsOptionsBuilder, InspectContainerOptions, InspectNetworkOptions,
    ListContainersOptionsBuilder, ListNetworksOptions, ListVolumesOptions, LogsOptionsBuilder,
    PushImageOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptions,
    RemoveVolumeOptions, StartContainerOptions, TagImageOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures_util::{StreamExt, TryStreamExt};
use longshore_test_support::unique_name;
use tokio::io::AsyncWriteExt;

mod common;
use common::daemon::{Daemon, harness};

/// The status code of a server error, or a panic naming the error.
fn status_of<T: std::fmt::Debug>(r: Result<T, BError>) -> u16 {
    match r {
        Err(BError::DockerResponseServerError { status_code, .. }) => status_code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// A client negotiated down to the daemon's version.
async fn client(d: &Daemon) -> Docker {
    Docker::connect_with_unix(d.sock.to_str().unwrap(), 120, bollard::API_DEFAULT_VERSION)
        .unwrap()
        .negotiate_version()
        .await
        .expect("negotiate the API version")
}

fn body(cmd: &[&str]) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some("busybox".into()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create(docker: &Docker, name: &str, b: ContainerCreateBody) -> String {
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            b,
        )
        .await
        .expect("create")
        .id
}

async fn remove(docker: &Docker, name: &str) {
    docker
        .remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await
        .expect("remove");
}

/// Negotiation settles on the daemon's 1.45 (bollard's own is newer); ping, version and
/// info answer. (bollard 0.19 sends unversioned paths: its URL join drops the `/vX.Y`
/// prefix; the versioned paths and the "too new" error are tested in api.rs.)
async fn ping_and_version_negotiation(d: &Daemon) {
    let docker = client(d).await;
    assert_eq!(docker.client_version().to_string(), "1.45");
    assert_eq!(docker.ping().await.unwrap(), "OK");
    let v = docker.version().await.unwrap();
    assert_eq!(v.api_version.as_deref(), Some("1.45"));
    assert_eq!(v.min_api_version.as_deref(), Some("1.24"));
    let info = docker.info().await.unwrap();
    assert!(info.images.unwrap_or(0) >= 1, "{info:?}");
}

/// create, start, wait (exit code 3), logs per stream, inspect, remove; 404 afterwards.
async fn create_start_wait_logs_inspect_remove(d: &Daemon) {
    let docker = client(d).await;
    let name = unique_name("lsbol");
    let id = create(
        &docker,
        &name,
        body(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
    )
    .await;
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await
        .unwrap();
    let waited: Vec<_> = docker
        .wait_container(
            &name,
            Some(
                WaitContainerOptionsBuilder::new()
                    .condition("not-running")
                    .build(),
            ),
        )
        .collect()
        .await;
    match &waited[..] {
        [Err(BError::DockerContainerWaitError { code, .. })] => assert_eq!(*code, 3),
        other => panic!("wait: {other:?}"),
    }
    let logs: Vec<_> = docker
        .logs(
            &name,
            Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
        )
        .try_collect()
        .await
        .unwrap();
    let shown: Vec<String> = logs
        .iter()
        .map(|l| match l {
            bollard::container::LogOutput::StdOut { message } => {
                format!("out:{}", String::from_utf8_lossy(message))
            }
            bollard::container::LogOutput::StdErr { message } => {
                format!("err:{}", String::from_utf8_lossy(message))
            }
            other => format!("other:{other}"),
        })
        .collect();
    assert_eq!(shown, vec!["out:out\n", "err:err\n"]);
    let c = docker
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await
        .unwrap();
    assert_eq!(c.id.as_deref(), Some(id.as_str()));
    let state = c.state.unwrap();
    assert_eq!(state.exit_code, Some(3));
    assert_eq!(state.running, Some(false));
    docker
        .remove_container(
            &name,
            None::<bollard::query_parameters::RemoveContainerOptions>,
        )
        .await
        .unwrap();
    let gone = docker
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await;
    assert_eq!(status_of(gone), 404);
}

/// Attach before the start, without a TTY: stdout and stderr arrive as separate frames,
/// stdin reaches the container.
async fn attach_framing_without_tty(d: &Daemon) {
    let docker = client(d).await;
    let name = unique_name("lsbol");
    let mut b = body(&["sh", "-c", "read x; echo \"in:$x\"; echo e >&2"]);
    b.open_stdin = Some(true);
    b.attach_stdin = Some(true);
    b.attach_stdout = Some(true);
    b.attach_stderr = Some(true);
    create(&docker, &name, b).await;
    let mut att = docker
        .attach_container(
            &name,
            Some(
                AttachContainerOptionsBuilder::new()
                    .stream(true)
                    .stdin(true)
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        )
        .await
        .unwrap();
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await
        .unwrap();
    att.input.write_all(b"hello\n").await.unwrap();
    att.input.flush().await.unwrap();
    let mut out = String::new();
    let mut err = String::new();
    while let Some(frame) = att.output.next().await {
        match frame.unwrap() {
            bollard::container::LogOutput::StdOut { message } => {
                out.push_str(&String::from_utf8_lossy(&message))
            }
            bollard::container::LogOutput::StdErr { message } => {
                err.push_str(&String::from_utf8_lossy(&message))
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(out, "in:hello\n");
    assert_eq!(err, "e\n");
    remove(&docker, &name).await;
}

/// List with filters: label, name, status, id; `all`.
async fn list_with_filters(d: &Daemon) {
    let docker = client(d).await;
    let (a, b) = (unique_name("lsbol"), unique_name("lsbol"));
    let mut ba = body(&["sleep", "100"]);
    ba.labels = Some(HashMap::from([("lsbol".to_string(), a.clone())]));
    let ida = create(&docker, &a, ba).await;
    create(&docker, &b, body(&["true"])).await;
    docker
        .start_container(&a, None::<StartContainerOptions>)
        .await
        .unwrap();
    let names = |list: Vec<bollard::models::ContainerSummary>| -> Vec<String> {
        list.into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .collect()
    };
    let by_label = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&HashMap::from([("label", vec![format!("lsbol={a}")])]))
                .build(),
        ))
        .await
        .unwrap();
    assert_eq!(names(by_label), vec![format!("/{a}")]);
    let created = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&HashMap::from([
                    ("status", vec!["created".to_string()]),
                    ("name", vec![b.clone()]),
                ]))
                .build(),
        ))
        .await
        .unwrap();
    assert_eq!(names(created), vec![format!("/{b}")]);
    let by_id = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .filters(&HashMap::from([("id", vec![ida[..12].to_string()])]))
                .build(),
        ))
        .await
        .unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(
        by_id[0].state.map(|s| s.to_string()).as_deref(),
        Some("running")
    );
    // without all: the created one is not listed
    let running = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .filters(&HashMap::from([("name", vec![b.clone()])]))
                .build(),
        ))
        .await
        .unwrap();
    assert!(running.is_empty(), "{running:?}");
    let bad = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .filters(&HashMap::from([("nosuchfilter", vec!["x"])]))
                .build(),
        ))
        .await;
    assert_eq!(status_of(bad), 400);
    remove(&docker, &a).await;
    remove(&docker, &b).await;
}

/// images/create: an import (fromSrc=-) and a pull from a docker-registry after a push,
/// each with its JSON progress stream; tag, inspect, remove.
async fn images_create_progress(d: &Daemon) {
    let docker = client(d).await;
    let repo = unique_name("lsbolimg");
    let tar = {
        let dir = tempfile::Builder::new()
            .prefix("longshore-api-")
            .tempdir_in("/tmp")
            .unwrap();
        longshore_test_support::busybox_rootfs(dir.path()).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        b.append_dir_all(".", dir.path()).unwrap();
        b.into_inner().unwrap()
    };
    let imported: Vec<_> = docker
        .create_image(
            Some(
                CreateImageOptionsBuilder::new()
                    .from_src("-")
                    .repo(&repo)
                    .tag("imp")
                    .build(),
            ),
            Some(bollard::body_full(tar.into())),
            None,
        )
        .try_collect()
        .await
        .expect("import");
    assert!(
        imported.iter().any(|i| i
            .status
            .as_deref()
            .is_some_and(|s| s.starts_with("sha256:"))),
        "{imported:?}"
    );
    let img = docker.inspect_image(&format!("{repo}:imp")).await.unwrap();
    assert!(img.id.unwrap().starts_with("sha256:"));
    // push busybox to the registry, then pull it back under that name
    let remote = format!("{}/{repo}", d.registry.addr);
    docker
        .tag_image(
            "busybox",
            Some(
                TagImageOptionsBuilder::new()
                    .repo(&remote)
                    .tag("v1")
                    .build(),
            ),
        )
        .await
        .unwrap();
    let pushed: Vec<_> = docker
        .push_image(
            &remote,
            Some(PushImageOptionsBuilder::new().tag("v1").build()),
            None,
        )
        .try_collect()
        .await
        .expect("push");
    assert!(
        pushed.iter().any(|p| p
            .status
            .as_deref()
            .is_some_and(|s| s.contains("digest: sha256:"))),
        "{pushed:?}"
    );
    docker
        .remove_image(&format!("{remote}:v1"), None::<RemoveImageOptions>, None)
        .await
        .unwrap();
    let pulled: Vec<_> = docker
        .create_image(
            Some(
                CreateImageOptionsBuilder::new()
                    .from_image(&remote)
                    .tag("v1")
                    .build(),
            ),
            None,
            None,
        )
        .try_collect()
        .await
        .expect("pull");
    let statuses: Vec<String> = pulled.iter().filter_map(|p| p.status.clone()).collect();
    assert!(
        statuses.iter().any(|s| s.starts_with("Pulling from")),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s.starts_with("Digest: sha256:")),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s.starts_with("Status: ")),
        "{statuses:?}"
    );
    // a missing tag: the error arrives in the stream
    let missing: Result<Vec<_>, _> = docker
        .create_image(
            Some(
                CreateImageOptionsBuilder::new()
                    .from_image(&remote)
                    .tag("nosuchtag")
                    .build(),
            ),
            None,
            None,
        )
        .try_collect()
        .await;
    assert!(missing.is_err(), "{missing:?}");
    for r in [format!("{remote}:v1"), format!("{repo}:imp")] {
        docker
            .remove_image(&r, None::<RemoveImageOptions>, None)
            .await
            .unwrap();
    }
    let gone = docker.inspect_image(&format!("{repo}:imp")).await;
    assert_eq!(status_of(gone), 404);
}

/// exec: attached output, exit code in inspect; 409 in a stopped container.
async fn exec_attached(d: &Daemon) {
    let docker = client(d).await;
    let name = unique_name("lsbol");
    create(&docker, &name, body(&["sleep", "100"])).await;
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await
        .unwrap();
    let exec = docker
        .create_exec(
            &name,
            ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(vec!["sh".into(), "-c".into(), "echo hi; exit 5".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    match docker.start_exec(&exec.id, None).await.unwrap() {
        bollard::exec::StartExecResults::Attached { output, .. } => {
            let out: Vec<_> = output.try_collect().await.unwrap();
            let text: String = out.iter().map(|o| o.to_string()).collect();
            assert_eq!(text, "hi\n");
        }
        bollard::exec::StartExecResults::Detached => panic!("detached"),
    }
    let ins = docker.inspect_exec(&exec.id).await.unwrap();
    assert_eq!(ins.exit_code, Some(5));
    assert_eq!(ins.running, Some(false));
    docker
        .stop_container(
            &name,
            None::<bollard::query_parameters::StopContainerOptions>,
        )
        .await
        .unwrap();
    let r = docker
        .create_exec(
            &name,
            ExecConfig {
                cmd: Some(vec!["true".into()]),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(status_of(r), 409);
    remove(&docker, &name).await;
}

/// volumes: create with a label, list, inspect, remove; 404 for a missing one.
async fn volumes(d: &Daemon) {
    let docker = client(d).await;
    let name = unique_name("lsbolvol");
    let v = docker
        .create_volume(VolumeCreateOptions {
            name: Some(name.clone()),
            labels: Some(HashMap::from([("k".to_string(), "v".to_string())])),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(v.name, name);
    assert_eq!(v.driver, "local");
    let list = docker
        .list_volumes(None::<ListVolumesOptions>)
        .await
        .unwrap();
    assert!(
        list.volumes
            .unwrap_or_default()
            .iter()
            .any(|x| x.name == name)
    );
    let ins = docker.inspect_volume(&name).await.unwrap();
    assert_eq!(ins.labels.get("k").map(String::as_str), Some("v"));
    docker
        .remove_volume(&name, None::<RemoveVolumeOptions>)
        .await
        .unwrap();
    assert_eq!(status_of(docker.inspect_volume(&name).await), 404);
    assert_eq!(
        status_of(
            docker
                .remove_volume(&name, None::<RemoveVolumeOptions>)
                .await
        ),
        404
    );
}

/// networks: create (an `ls…` bridge), duplicate 409, list, inspect, remove, 404.
async fn networks(d: &Daemon) {
    let docker = client(d).await;
    let name = unique_name("lsbolnet");
    let bridge = unique_name("ls");
    let req = || NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        options: Some(HashMap::from([(
            "com.docker.network.bridge.name".to_string(),
            bridge.clone(),
        )])),
        ..Default::default()
    };
    let created = docker.create_network(req()).await.unwrap();
    assert!(!created.id.is_empty());
    assert_eq!(status_of(docker.create_network(req()).await), 409);
    let all = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .unwrap();
    let names: Vec<String> = all.iter().filter_map(|n| n.name.clone()).collect();
    assert!(
        names.contains(&name) && names.contains(&"none".to_string()),
        "{names:?}"
    );
    let ins = docker
        .inspect_network(&name, None::<InspectNetworkOptions>)
        .await
        .unwrap();
    assert_eq!(ins.driver.as_deref(), Some("bridge"));
    docker.remove_network(&name).await.unwrap();
    assert_eq!(
        status_of(
            docker
                .inspect_network(&name, None::<InspectNetworkOptions>)
                .await
        ),
        404
    );
    assert_eq!(status_of(docker.remove_network(&name).await), 404);
}

/// events: a bounded window (since, until) filtered to one container gives its
/// create, start, die and destroy, in order.
async fn events_window(d: &Daemon) {
    let docker = client(d).await;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let name = unique_name("lsbol");
    let id = create(&docker, &name, body(&["true"])).await;
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await
        .unwrap();
    let _: Vec<_> = docker
        .wait_container(
            &name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        )
        .collect()
        .await;
    remove(&docker, &name).await;
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let events: Vec<_> = docker
        .events(Some(
            EventsOptionsBuilder::new()
                .since(&since.to_string())
                .until(&until.to_string())
                .filters(&HashMap::from([
                    ("type", vec!["container".to_string()]),
                    ("container", vec![id.clone()]),
                ]))
                .build(),
        ))
        .try_collect()
        .await
        .unwrap();
    let actions: Vec<String> = events.iter().filter_map(|e| e.action.clone()).collect();
    let wanted = ["create", "start", "die", "destroy"];
    let mut it = actions.iter();
    for w in wanted {
        assert!(
            it.any(|a| a == w),
            "{w} missing or out of order in {actions:?}"
        );
    }
    assert!(
        events
            .iter()
            .all(|e| e.actor.as_ref().and_then(|a| a.id.as_deref()) == Some(id.as_str())),
        "{events:?}"
    );
}

/// Docker's status codes: 404 no such container/image, 409 name in use and removing a
/// running container, 400 bad parameters; the daemon serves on afterwards.
async fn error_codes(d: &Daemon) {
    let docker = client(d).await;
    assert_eq!(
        status_of(
            docker
                .inspect_container("lsnosuchcontainer", None::<InspectContainerOptions>)
                .await
        ),
        404
    );
    assert_eq!(
        status_of(
            docker
                .start_container("lsnosuchcontainer", None::<StartContainerOptions>)
                .await
        ),
        404
    );
    assert_eq!(
        status_of(docker.inspect_image("lsnosuchimage:latest").await),
        404
    );
    let mut nosuch = body(&["true"]);
    nosuch.image = Some("lsnosuchimage:latest".into());
    let r = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            nosuch,
        )
        .await;
    assert_eq!(status_of(r), 404);
    let name = unique_name("lsbol");
    create(&docker, &name, body(&["sleep", "100"])).await;
    let again = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body(&["true"]),
        )
        .await;
    assert_eq!(status_of(again), 409);
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await
        .unwrap();
    let busy = docker
        .remove_container(
            &name,
            None::<bollard::query_parameters::RemoveContainerOptions>,
        )
        .await;
    assert_eq!(status_of(busy), 409);
    let bad_name = docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::new()
                    .name("bad name!")
                    .build(),
            ),
            body(&["true"]),
        )
        .await;
    assert_eq!(status_of(bad_name), 400);
    let mut bad_mode = body(&["true"]);
    bad_mode.host_config = Some(HostConfig {
        restart_policy: Some(bollard::models::RestartPolicy {
            name: Some(bollard::models::RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: Some(-1),
        }),
        ..Default::default()
    });
    let r = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bad_mode,
        )
        .await;
    assert_eq!(status_of(r), 400);
    remove(&docker, &name).await;
    assert_eq!(docker.ping().await.unwrap(), "OK");
}

type Test = (
    &'static str,
    fn(&Daemon) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>,
);

fn main() -> ExitCode {
    let tests: Vec<Test> = vec![
        ("ping_and_version_negotiation", |d| {
            Box::pin(ping_and_version_negotiation(d))
        }),
        ("create_start_wait_logs_inspect_remove", |d| {
            Box::pin(create_start_wait_logs_inspect_remove(d))
        }),
        ("attach_framing_without_tty", |d| {
            Box::pin(attach_framing_without_tty(d))
        }),
        ("list_with_filters", |d| Box::pin(list_with_filters(d))),
        ("images_create_progress", |d| {
            Box::pin(images_create_progress(d))
        }),
        ("exec_attached", |d| Box::pin(exec_attached(d))),
        ("volumes", |d| Box::pin(volumes(d))),
        ("networks", |d| Box::pin(networks(d))),
        ("events_window", |d| Box::pin(events_window(d))),
        ("error_codes", |d| Box::pin(error_codes(d))),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    harness("api_bollard", false, Daemon::start, &tests, |t, d| {
        rt.block_on(t(d))
    })
}
