//! A hostile registry (a tiny HTTP server on 127.0.0.1): wrong digests, truncated and
//! oversized bodies, redirect loops, stalls. Each gives a clear error and leaves the
//! content store without partial blobs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use longshore_registry::{
    Client, ClientOptions, Credentials, DirStore, Error, PullOptions, Reference, sha256_digest,
};

struct Fake {
    manifest: Vec<u8>,
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

fn fake_image() -> Arc<Fake> {
    let layer: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let config_digest = sha256_digest(&config).to_string();
    let layer_digest = sha256_digest(&layer).to_string();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": layer.len(), "digest": layer_digest}],
    }))
    .unwrap();
    Arc::new(Fake {
        manifest,
        config,
        config_digest,
        layer,
        layer_digest,
    })
}

/// Serves `/v2/`, the manifest and the config normally; `layer` answers the layer URL
/// and anything else.
async fn hostile(
    fake: Arc<Fake>,
    layer: impl Fn(&Req, &Fake) -> Reply + Send + Sync + 'static,
) -> TinyServer {
    hostile_blobs(fake, move |req, fake| {
        if req.path == format!("/v2/hostile/img/blobs/{}", fake.config_digest) {
            Reply::new(200, fake.config.clone())
        } else {
            layer(req, fake)
        }
    })
    .await
}

/// Like [`hostile`], with `blob` answering for the config blob too.
async fn hostile_blobs(
    fake: Arc<Fake>,
    blob: impl Fn(&Req, &Fake) -> Reply + Send + Sync + 'static,
) -> TinyServer {
    TinyServer::start(move |req| {
        if req.path == "/v2/" {
            Reply::new(200, "{}")
        } else if req.path.starts_with("/v2/hostile/img/manifests/") {
            Reply::new(200, fake.manifest.clone())
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        } else {
            blob(req, &fake)
        }
    })
    .await
}

fn client(addr: &str) -> Client {
    Client::new(
        ClientOptions::new()
            .insecure_registries(vec![addr.to_string()])
            .retries(2)
            .retry_backoff(Duration::from_millis(10))
            .read_timeout(Duration::from_secs(2)),
    )
}

async fn pull(addr: &str, store: &DirStore) -> Result<(), Error> {
    let r: Reference = format!("{addr}/hostile/img:1").parse().unwrap();
    client(addr)
        .pull(&r, store, &PullOptions::default())
        .await
        .map(|_| ())
}

/// The store holds no partial blob: nothing in ingest, no layer, no manifest.
fn assert_clean(store: &DirStore, fake: &Fake) {
    let (blobs, ingest) = blob_files(store.root());
    assert!(ingest.is_empty(), "partial blobs left: {ingest:?}");
    let layer_hex = fake.layer_digest.trim_start_matches("sha256:");
    let manifest_hex = sha256_digest(&fake.manifest).hex().to_string();
    assert!(
        !blobs.iter().any(|b| b == layer_hex || *b == manifest_hex),
        "{blobs:?}"
    );
}

fn is_layer(req: &Req, fake: &Fake) -> bool {
    req.path == format!("/v2/hostile/img/blobs/{}", fake.layer_digest)
}

#[tokio::test]
async fn wrong_digest_is_rejected() {
    let fake = fake_image();
    let srv = hostile(fake.clone(), |req, f| {
        let mut bad = f.layer.clone();
        bad[1000] ^= 0xff;
        if is_layer(req, f) {
            Reply::new(200, bad)
        } else {
            Reply::new(404, "")
        }
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let e = pull(&srv.addr, &store).await.unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&fake.layer_digest), "{e}");
    assert_clean(&store, &fake);
}

#[tokio::test]
async fn truncated_body_without_range_support_fails_after_retries() {
    let fake = fake_image();
    let srv = hostile(fake.clone(), |req, f| {
        if is_layer(req, f) {
            Reply::new(200, "").body(Body::Truncated(f.layer.clone(), 100_000))
        } else {
            Reply::new(404, "")
        }
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let e = pull(&srv.addr, &store).await.unwrap_err();
    match &e {
        Error::Incomplete {
            attempts, expected, ..
        } => {
            assert_eq!(*attempts, 3);
            assert_eq!(*expected, fake.layer.len() as u64);
        }
        other => panic!("expected Incomplete, got {other}"),
    }
    assert_clean(&store, &fake);
}

#[tokio::test]
async fn dropped_connection_resumes_with_range() {
    let fake = fake_image();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let srv = hostile(fake.clone(), move |req, f| {
        if !is_layer(req, f) {
            return Reply::new(404, "");
        }
        if h.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::new(200, "").body(Body::Truncated(f.layer.clone(), 123_456));
        }
        let start: usize = req
            .headers
            .get("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Reply::new(206, f.layer[start..].to_vec()).header(
            "Content-Range",
            &format!("bytes {start}-{}/{}", f.layer.len() - 1, f.layer.len()),
        )
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    pull(&srv.addr, &store).await.unwrap();
    let ranges: Vec<_> = srv
        .requests()
        .into_iter()
        .filter(|r| is_layer(r, &fake))
        .map(|r| r.headers.get("range").cloned())
        .collect();
    // The resumed request asked for exactly the missing tail (the client may have
    // received fewer bytes than the server wrote before the close, never more).
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let from: usize = ranges[1]
        .as_deref()
        .unwrap()
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 0 && from <= 123_456, "{ranges:?}");
    let d = fake.layer_digest.parse().unwrap();
    assert_eq!(store.read_blob(&d).unwrap(), fake.layer);
}

#[tokio::test]
async fn oversized_manifests_are_refused() {
    for sized in [true, false] {
        let srv = TinyServer::start(move |req| {
            if req.path == "/v2/" {
                return Reply::new(200, "{}");
            }
            let huge = vec![b' '; 5 << 20];
            let r = Reply::new(200, "")
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json");
            if sized {
                r.body(Body::Full(huge))
            } else {
                r.body(Body::Unsized(huge))
            }
        })
        .await;
        let dir = tempdir();
        let store = DirStore::open(dir.path()).unwrap();
        let e = pull(&srv.addr, &store).await.unwrap_err();
        assert!(
            matches!(e, Error::TooLarge { limit, .. } if limit == 4 << 20),
            "{e}"
        );
        assert!(e.to_string().contains("manifest hostile/img:1"), "{e}");
    }
}

#[tokio::test]
async fn oversized_blob_is_refused() {
    let fake = fake_image();
    let srv = hostile(fake.clone(), |req, f| {
        if is_layer(req, f) {
            let mut more = f.layer.clone();
            more.extend_from_slice(&[0; 1000]);
            Reply::new(200, "").body(Body::Unsized(more))
        } else {
            Reply::new(404, "")
        }
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let e = pull(&srv.addr, &store).await.unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
    assert_clean(&store, &fake);
}

#[tokio::test]
async fn redirect_loop_is_detected() {
    let fake = fake_image();
    let srv = hostile(fake.clone(), |req, f| {
        if is_layer(req, f) || req.path == "/loop/b" {
            Reply::new(307, "").header("Location", "/loop/a")
        } else if req.path == "/loop/a" {
            Reply::new(307, "").header("Location", "/loop/b")
        } else {
            Reply::new(404, "")
        }
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let e = pull(&srv.addr, &store).await.unwrap_err();
    assert!(matches!(e, Error::Redirect { .. }), "{e}");
    assert_clean(&store, &fake);
}

#[tokio::test]
async fn manifest_digest_header_mismatch_is_rejected() {
    let fake = fake_image();
    let f2 = fake.clone();
    let srv = TinyServer::start(move |req| {
        if req.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        Reply::new(200, f2.manifest.clone())
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .header(
                "Docker-Content-Digest",
                &format!("sha256:{}", "0".repeat(64)),
            )
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let e = pull(&srv.addr, &store).await.unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert_clean(&store, &fake);
}

#[tokio::test]
async fn credentials_are_not_sent_to_another_host_on_redirect() {
    let fake = fake_image();
    let f2 = fake.clone();
    let storage = TinyServer::start(move |_| Reply::new(200, f2.layer.clone())).await;
    let storage_addr = storage.addr.clone();
    let f3 = fake.clone();
    let srv = TinyServer::start(move |req| {
        if req.headers.get("authorization").map(String::as_str)
            != Some(&Credentials::new("bob", "pw").basic_header())
        {
            return Reply::new(401, "").header("WWW-Authenticate", r#"Basic realm="hostile""#);
        }
        if req.path == "/v2/" {
            Reply::new(200, "{}")
        } else if req.path.contains("/manifests/") {
            Reply::new(200, f3.manifest.clone())
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        } else if req.path.ends_with(&f3.config_digest) {
            Reply::new(200, f3.config.clone())
        } else {
            Reply::new(307, "").header("Location", &format!("http://{storage_addr}/bucket/layer"))
        }
    })
    .await;
    let c = client(&srv.addr);
    c.set_credentials(&srv.addr, Credentials::new("bob", "pw"));
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let r: Reference = format!("{}/hostile/img:1", srv.addr).parse().unwrap();
    c.pull(&r, &store, &PullOptions::default()).await.unwrap();
    let redirected = storage.requests();
    assert!(!redirected.is_empty());
    for req in redirected {
        assert!(
            !req.headers.contains_key("authorization"),
            "credentials leaked to {}: {req:?}",
            storage.addr
        );
    }
}

#[tokio::test]
async fn stalled_body_times_out_cleanly() {
    let fake = fake_image();
    let srv = hostile(fake.clone(), |req, f| {
        if is_layer(req, f) {
            Reply::new(200, "").body(Body::Stall(f.layer.clone(), 50_000))
        } else {
            Reply::new(404, "")
        }
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let e = pull(&srv.addr, &store).await.unwrap_err();
    assert!(matches!(e, Error::Incomplete { .. }), "{e}");
    assert_clean(&store, &fake);
}

#[tokio::test]
async fn dropping_the_pull_leaves_no_partial_blob() {
    let fake = fake_image();
    let srv = hostile(fake.clone(), |req, f| {
        if is_layer(req, f) {
            Reply::new(200, "").body(Body::Stall(f.layer.clone(), 200_000))
        } else {
            Reply::new(404, "")
        }
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let c = Client::new(
        ClientOptions::new()
            .insecure_registries(vec![srv.addr.clone()])
            .read_timeout(Duration::from_secs(120)),
    );
    let r: Reference = format!("{}/hostile/img:1", srv.addr).parse().unwrap();
    let s2 = store.clone();
    let task = tokio::spawn(async move { c.pull(&r, &s2, &PullOptions::default()).await });
    // Wait until the layer is being written (its ingest file exists).
    let hex = fake.layer_digest.trim_start_matches("sha256:").to_string();
    for _ in 0..3000 {
        let (_, ingest) = blob_files(store.root());
        if ingest
            .iter()
            .any(|p| p.file_name().unwrap().to_string_lossy().starts_with(&hex))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, ingest) = blob_files(store.root());
    assert!(
        !ingest.is_empty(),
        "the pull never started writing the layer"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_clean(&store, &fake);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let fake = fake_image();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let srv = hostile(fake.clone(), move |req, f| {
        if !is_layer(req, f) {
            Reply::new(404, "")
        } else if h.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::new(503, "busy")
        } else {
            Reply::new(200, f.layer.clone())
        }
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    pull(&srv.addr, &store).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let d = fake.layer_digest.parse().unwrap();
    assert_eq!(store.read_blob(&d).unwrap(), fake.layer);
}

#[tokio::test]
async fn upload_location_on_another_host_gets_no_credentials() {
    let storage = TinyServer::start(|req| {
        if req.method == "PUT" && req.path.starts_with("/upload/") {
            Reply::new(201, "")
        } else {
            Reply::new(404, "")
        }
    })
    .await;
    let storage_addr = storage.addr.clone();
    let srv = TinyServer::start(move |req| {
        if req.headers.get("authorization").map(String::as_str)
            != Some(&Credentials::new("bob", "pw").basic_header())
        {
            return Reply::new(401, "").header("WWW-Authenticate", r#"Basic realm="hostile""#);
        }
        match req.method.as_str() {
            "GET" if req.path == "/v2/" => Reply::new(200, "{}"),
            "HEAD" => Reply::new(404, ""),
            "POST" => Reply::new(202, "").header(
                "Location",
                &format!("http://{storage_addr}/upload/1?_state=abc"),
            ),
            "PUT" if req.path.contains("/manifests/") => Reply::new(201, ""),
            _ => Reply::new(404, ""),
        }
    })
    .await;
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    build_image(&src, "latest", &[random_tar(50, 10_000)]);
    let c = client(&srv.addr);
    c.set_credentials(&srv.addr, Credentials::new("bob", "pw"));
    let dest: Reference = format!("{}/x/y:1", srv.addr).parse().unwrap();
    let pushed = c
        .push_from_dir(&src, "latest", &dest, &Default::default())
        .await
        .unwrap();
    assert_eq!(pushed.uploaded, 2);
    let puts = storage.requests();
    assert_eq!(puts.len(), 2, "{puts:?}");
    for req in puts {
        // The Location was followed exactly (its query kept, the digest appended)...
        assert!(
            req.path
                .starts_with("/upload/1?_state=abc&digest=sha256%3A"),
            "{req:?}"
        );
        // ...and the registry's credentials stayed with the registry.
        assert!(!req.headers.contains_key("authorization"), "{req:?}");
    }
}

#[tokio::test]
async fn hostile_auth_challenges_and_token_services() {
    // A token service answering with 2 MiB of JSON: capped, clear error.
    let realm =
        TinyServer::start(|_| Reply::new(200, "").body(Body::Unsized(vec![b' '; 2 << 20]))).await;
    let realm_url = format!("http://{}/token", realm.addr);
    let srv = TinyServer::start(move |_| {
        Reply::new(401, "").header(
            "WWW-Authenticate",
            &format!(r#"Bearer realm="{realm_url}",service="s""#),
        )
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let e = pull(&srv.addr, &store).await.unwrap_err();
    assert!(
        matches!(e, Error::TooLarge { limit, .. } if limit == 1 << 20),
        "{e}"
    );

    // A challenge that cannot be parsed, and one pointing at a non-HTTP realm.
    for header in [
        r#"Bearer realm="unterminated"#,
        r#"Bearer realm="file:///etc/shadow""#,
    ] {
        let srv =
            TinyServer::start(move |_| Reply::new(401, "").header("WWW-Authenticate", header))
                .await;
        let e = pull(&srv.addr, &store).await.unwrap_err();
        assert!(matches!(e, Error::BadChallenge { .. }), "{e}");
    }
    let (blobs, ingest) = blob_files(store.root());
    assert!(blobs.is_empty() && ingest.is_empty());
}

#[tokio::test]
async fn traffic_goes_through_the_configured_proxy() {
    // The registry host does not resolve: only the proxy can reach it.
    let fake = fake_image();
    let f = fake.clone();
    let proxy = TinyServer::start(move |req| {
        let Some(path) = req.path.strip_prefix("http://registry.invalid:5000") else {
            return Reply::new(405, "");
        };
        if path == "/v2/" {
            Reply::new(200, "{}")
        } else if path.contains("/manifests/") {
            Reply::new(200, f.manifest.clone())
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        } else if path.ends_with(&f.config_digest) {
            Reply::new(200, f.config.clone())
        } else if path.ends_with(&f.layer_digest) {
            Reply::new(200, f.layer.clone())
        } else {
            Reply::new(404, "")
        }
    })
    .await;
    let c = Client::new(
        ClientOptions::new()
            .insecure_registries(vec!["registry.invalid:5000".into()])
            .proxy(Some(format!("http://{}", proxy.addr))),
    );
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let r: Reference = "registry.invalid:5000/hostile/img:1".parse().unwrap();
    c.pull(&r, &store, &PullOptions::default()).await.unwrap();
    let d = fake.layer_digest.parse().unwrap();
    assert_eq!(store.read_blob(&d).unwrap(), fake.layer);
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.path.ends_with(&fake.layer_digest))
    );
}

#[tokio::test]
async fn the_config_does_not_hold_a_layer_download_slot() {
    // One download slot, and a config that never finishes: the layer is still fetched
    // (and committed) beside it, as Docker fetches the config outside its download limit.
    // Before, the config held the only slot until it failed, and the layer was never asked.
    let fake = fake_image();
    let config_path = format!("/v2/hostile/img/blobs/{}", fake.config_digest);
    let srv = hostile_blobs(fake.clone(), move |req, f| {
        if req.path == config_path {
            Reply::new(200, "").body(Body::Stall(f.config.clone(), 10))
        } else if is_layer(req, f) {
            Reply::new(200, f.layer.clone())
        } else {
            Reply::new(404, "")
        }
    })
    .await;
    let dir = tempdir();
    let store = DirStore::open(dir.path()).unwrap();
    let c = Client::new(
        ClientOptions::new()
            .insecure_registries(vec![srv.addr.clone()])
            .max_concurrent_downloads(1)
            .retries(0)
            .read_timeout(Duration::from_secs(3)),
    );
    let r: Reference = format!("{}/hostile/img:1", srv.addr).parse().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let e = c
        .pull(&r, &store, &PullOptions::new().progress(Some(tx)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Incomplete { .. }), "{e}");
    assert!(
        srv.requests().iter().any(|q| is_layer(q, &fake)),
        "the layer was never requested: {:?}",
        srv.requests()
    );
    let mut layer_done = false;
    while let Ok(p) = rx.try_recv() {
        layer_done |= p.digest.to_string() == fake.layer_digest
            && matches!(p.event, longshore_registry::ProgressEvent::Done);
    }
    assert!(layer_done, "the layer was not committed beside the config");
    // no manifest (the pull failed), no partial config
    let (blobs, ingest) = blob_files(store.root());
    assert!(ingest.is_empty(), "partial blobs left: {ingest:?}");
    let manifest_hex = sha256_digest(&fake.manifest).hex().to_string();
    assert!(!blobs.contains(&manifest_hex), "{blobs:?}");
}
