//! Push and pull against a real `docker-registry` (distribution 2.8) on 127.0.0.1.

mod common;

use std::process::Command;

use common::*;
use longshore_registry::{
    Client, ClientOptions, CredentialStore, Credentials, DirStore, Error, ProgressEvent,
    PullOptions, PushOptions, Reference, SearchOptions,
};

fn client_for(reg: &str) -> Client {
    Client::new(ClientOptions::new().insecure_registries(vec![reg.to_string()]))
}

fn reference(reg: &str, rest: &str) -> Reference {
    format!("{reg}/{rest}").parse().unwrap()
}

/// Pulls `r` into a fresh layout and checks every blob equals the source's.
async fn pull_and_compare(
    client: &Client,
    r: &Reference,
    src: &DirStore,
    img: &BuiltImage,
) -> tempfile::TempDir {
    let out_dir = tempdir();
    let out = DirStore::open(out_dir.path()).unwrap();
    let pulled = client
        .pull_to_dir(r, &out, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest(), img.manifest.digest());
    assert_eq!(pulled.config.digest(), &img.config);
    let got: Vec<_> = pulled.layers.iter().map(|l| l.digest().clone()).collect();
    assert_eq!(got, img.layers);
    for d in img
        .layers
        .iter()
        .chain([&img.config, &dig(img.manifest.digest())])
    {
        assert_eq!(
            out.read_blob(d).unwrap(),
            src.read_blob(d).unwrap(),
            "blob {d}"
        );
    }
    let (_, ingest) = blob_files(out.root());
    assert!(ingest.is_empty(), "leftover ingest files {ingest:?}");
    out_dir
}

#[tokio::test]
async fn open_registry_push_pull_mount_chunked_tags_catalog_search() {
    let reg = Registry::start(RegistryAuth::Open);
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    let img = build_image(&src, "latest", &[busybox_tar(), random_tar(1, 3 << 20)]);
    let client = client_for(&reg.addr);

    // Monolithic push with progress.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let dest = reference(&reg.addr, "test/busybox:v1");
    let pushed = client
        .push_from_dir(
            &src,
            "latest",
            &dest,
            &PushOptions::new().progress(Some(tx)),
        )
        .await
        .unwrap();
    assert_eq!(&pushed.digest, img.manifest.digest());
    assert_eq!(
        (pushed.uploaded, pushed.existing, pushed.mounted),
        (3, 0, 0)
    );
    let mut pushed_events = 0;
    while let Ok(p) = rx.try_recv() {
        if p.event == ProgressEvent::Pushed {
            pushed_events += 1;
        }
    }
    assert_eq!(pushed_events, 3);

    // Pull back into a fresh directory with progress; identical digests and bytes.
    let out_dir = tempdir();
    let out = DirStore::open(out_dir.path()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = PullOptions::new().progress(Some(tx));
    let pulled = client.pull_to_dir(&dest, &out, &opts).await.unwrap();
    assert_eq!(pulled.manifest.digest(), img.manifest.digest());
    for d in img
        .layers
        .iter()
        .chain([&img.config, &dig(img.manifest.digest())])
    {
        assert_eq!(out.read_blob(d).unwrap(), src.read_blob(d).unwrap());
    }
    assert_eq!(out.resolve("v1").unwrap().digest(), img.manifest.digest());
    let mut done = 0;
    let mut saw_bytes = false;
    while let Ok(p) = rx.try_recv() {
        match p.event {
            ProgressEvent::Done => done += 1,
            ProgressEvent::Downloading { current, total } => {
                assert!(current <= total);
                saw_bytes = true;
            }
            _ => {}
        }
    }
    assert_eq!(done, 3);
    assert!(saw_bytes);

    // A second pull finds everything present.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = PullOptions::new().progress(Some(tx));
    client.pull_to_dir(&dest, &out, &opts).await.unwrap();
    let mut existing = 0;
    while let Ok(p) = rx.try_recv() {
        assert!(
            !matches!(p.event, ProgressEvent::Downloading { .. }),
            "{p:?}"
        );
        if p.event == ProgressEvent::AlreadyExists {
            existing += 1;
        }
    }
    assert_eq!(existing, 3);

    // Pull by digest.
    let by_digest = Reference::parse(&format!("{}/test/busybox", reg.addr))
        .unwrap()
        .with_digest(dig(img.manifest.digest()));
    pull_and_compare(&client, &by_digest, &src, &img).await;

    // Re-push: everything exists.
    let again = client
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!((again.uploaded, again.existing), (0, 3));

    // Cross-repository mount.
    let mounted_ref = reference(&reg.addr, "other/copy:m");
    let mounted = client
        .push_from_dir(
            &src,
            "latest",
            &mounted_ref,
            &PushOptions::new().mount_from(Some("test/busybox".into())),
        )
        .await
        .unwrap();
    assert_eq!((mounted.mounted, mounted.uploaded), (3, 0));
    pull_and_compare(&client, &mounted_ref, &src, &img).await;

    // Chunked upload (256 KiB chunks, several PATCHes per layer).
    let chunked_client = Client::new(
        ClientOptions::new()
            .insecure_registries(vec![reg.addr.clone()])
            .chunk_size(Some(256 << 10)),
    );
    let chunked_ref = reference(&reg.addr, "chunked/img:c1");
    let c = chunked_client
        .push_from_dir(&src, "latest", &chunked_ref, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(c.uploaded, 3);
    pull_and_compare(&client, &chunked_ref, &src, &img).await;

    // Tags, catalog, search.
    client
        .push_from_dir(
            &src,
            "latest",
            &reference(&reg.addr, "test/busybox:v2"),
            &PushOptions::default(),
        )
        .await
        .unwrap();
    let mut tags = client.tags(&reg.addr, "test/busybox").await.unwrap();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);
    let mut cat = client.catalog(&reg.addr).await.unwrap();
    cat.sort();
    assert_eq!(cat, ["chunked/img", "other/copy", "test/busybox"]);
    let found = client
        .search(&reg.addr, "busy", &SearchOptions::default())
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["test/busybox"]
    );
    let limited = client
        .search(&reg.addr, "/", &SearchOptions::new().limit(Some(2)))
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);

    // Missing things give clear errors.
    let e = client
        .pull_to_dir(
            &reference(&reg.addr, "test/busybox:nope"),
            &out,
            &PullOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("test/busybox:nope"), "{e}");
    let e = client
        .pull_to_dir(
            &dest,
            &out,
            &PullOptions::new().platform(Some("linux/arm64".parse().unwrap())),
        )
        .await;
    // A plain manifest has no platform list: the platform option only applies to indexes.
    assert!(e.is_ok());
}

#[tokio::test]
async fn basic_auth_login_push_pull_logout() {
    let reg = Registry::start(RegistryAuth::Basic {
        user: "alice".into(),
        pass: "s3cret".into(),
    });
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    let img = build_image(&src, "latest", &[busybox_tar()]);
    let cfg_dir = tempdir();
    let cfg_path = cfg_dir.path().join("config.json");
    let opts = ClientOptions::new()
        .insecure_registries(vec![reg.addr.clone()])
        .credential_store(Some(CredentialStore::new(&cfg_path)));
    let dest = reference(&reg.addr, "private/busybox:1");

    // Anonymous: refused with a clear error.
    let anon = Client::new(opts.clone());
    let e = anon
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { status: 401, .. }), "{e}");
    assert!(e.to_string().contains("log in"), "{e}");

    // Wrong password: login fails and nothing is saved.
    let e = anon
        .login(&reg.addr, Credentials::new("alice", "wrong"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(!cfg_path.exists());

    // Right password: saved with mode 0600, usable by a fresh client.
    anon.login(&reg.addr, Credentials::new("alice", "s3cret"))
        .await
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let client = Client::new(opts.clone());
    client
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap();
    pull_and_compare(&client, &dest, &src, &img).await;

    // skopeo with the same credentials pushes; we pull its upload back identically.
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
        &format!("oci:{}:latest", src_dir.path().display()),
        &format!("docker://{}/private/by-skopeo:1", reg.addr),
    ]);
    pull_and_compare(
        &client,
        &reference(&reg.addr, "private/by-skopeo:1"),
        &src,
        &img,
    )
    .await;

    // Logout: the file forgets, a fresh client is refused again.
    assert!(client.logout(&reg.addr).unwrap());
    let fresh = Client::new(opts);
    let out_dir = tempdir();
    let out = DirStore::open(out_dir.path()).unwrap();
    let e = fresh
        .pull_to_dir(&dest, &out, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo must be installed");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn skopeo_cross_check_both_directions() {
    let reg = Registry::start(RegistryAuth::Open);
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    let img = build_image(&src, "latest", &[busybox_tar(), random_tar(2, 1 << 20)]);
    let client = client_for(&reg.addr);

    // skopeo pushes what we wrote; we pull it back with identical digests.
    let sk_ref = format!("docker://{}/skopeo/pushed:1", reg.addr);
    let oci_src = format!("oci:{}:latest", src_dir.path().display());
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &oci_src,
        &sk_ref,
    ]);
    pull_and_compare(
        &client,
        &reference(&reg.addr, "skopeo/pushed:1"),
        &src,
        &img,
    )
    .await;

    // We push; skopeo pulls into its own OCI layout; same manifest and blobs.
    let dest = reference(&reg.addr, "longshore/pushed:2");
    client
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap();
    let sk_dir = tempdir();
    let sk_out = format!("oci:{}:two", sk_dir.path().display());
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/longshore/pushed:2", reg.addr),
        &sk_out,
    ]);
    let theirs = DirStore::open(sk_dir.path()).unwrap();
    assert_eq!(
        theirs.resolve("two").unwrap().digest(),
        img.manifest.digest()
    );
    for d in img.layers.iter().chain([&img.config]) {
        assert_eq!(theirs.read_blob(d).unwrap(), src.read_blob(d).unwrap());
    }
}

/// Writes an index naming `images` with their platforms into `dir` as `name`.
fn build_index(
    dir: &DirStore,
    name: &str,
    images: &[(&BuiltImage, &str, &str, Option<&str>)],
) -> oci_spec::image::Descriptor {
    let manifests: Vec<_> = images
        .iter()
        .map(|(img, os, arch, variant)| {
            let mut p = serde_json::json!({"os": os, "architecture": arch});
            if let Some(v) = variant {
                p["variant"] = serde_json::json!(v);
            }
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": img.manifest.size(),
                "digest": img.manifest.digest().to_string(),
                "platform": p,
            })
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let d = dir.write_blob(&index).unwrap();
    let desc = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::ImageIndex,
        index.len() as u64,
        d,
    );
    dir.set_ref(name, &desc).unwrap();
    desc
}

#[tokio::test]
async fn index_push_and_platform_selection_and_all_tags() {
    let reg = Registry::start(RegistryAuth::Open);
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    let amd = build_image(&src, "amd", &[random_tar(10, 200_000)]);
    let arm = build_image(&src, "arm", &[random_tar(11, 200_000)]);
    let armv7 = build_image(&src, "armv7", &[random_tar(12, 200_000)]);
    let index = build_index(
        &src,
        "multi",
        &[
            (&amd, "linux", "amd64", None),
            (&arm, "linux", "arm64", Some("v8")),
            (&armv7, "linux", "arm", Some("v7")),
        ],
    );
    let client = client_for(&reg.addr);
    let dest = reference(&reg.addr, "multi/app:latest");
    let pushed = client
        .push_from_dir(&src, "multi", &dest, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(&pushed.digest, index.digest());
    assert_eq!(pushed.uploaded, 6);

    for (platform, want) in [
        (None, &amd),
        (Some("linux/arm64"), &arm),
        (Some("linux/arm/v7"), &armv7),
    ] {
        let out_dir = tempdir();
        let out = DirStore::open(out_dir.path()).unwrap();
        let opts = PullOptions::new().platform(platform.map(|p| p.parse().unwrap()));
        let pulled = client.pull_to_dir(&dest, &out, &opts).await.unwrap();
        assert_eq!(
            pulled.manifest.digest(),
            want.manifest.digest(),
            "{platform:?}"
        );
        assert_eq!(pulled.index.as_ref().unwrap().digest(), index.digest());
        assert_eq!(
            out.read_blob(&want.layers[0]).unwrap(),
            src.read_blob(&want.layers[0]).unwrap()
        );
        // The index is stored too, and only the chosen image's blobs.
        assert!(out.read_blob(&dig(index.digest())).is_ok());
        let (blobs, _) = blob_files(out.root());
        assert_eq!(blobs.len(), 4, "{blobs:?}");
    }
    let out_dir = tempdir();
    let out = DirStore::open(out_dir.path()).unwrap();
    let opts = PullOptions::new().platform(Some("linux/s390x".parse().unwrap()));
    let e = client.pull_to_dir(&dest, &out, &opts).await.unwrap_err();
    assert!(matches!(e, Error::NoMatchingPlatform { .. }), "{e}");
    assert!(e.to_string().contains("linux/arm64/v8"), "{e}");
    let (blobs, ingest) = blob_files(out.root());
    assert!(blobs.is_empty() && ingest.is_empty());

    // --all-tags
    for t in ["a", "b"] {
        client
            .push_from_dir(
                &src,
                "amd",
                &reference(&reg.addr, &format!("multi/app:{t}")),
                &PushOptions::default(),
            )
            .await
            .unwrap();
    }
    let all = client
        .pull_all_tags(&dest, &out, &PullOptions::default())
        .await
        .unwrap();
    let tags: Vec<_> = all
        .iter()
        .map(|p| p.reference.tag().unwrap().to_string())
        .collect();
    assert_eq!(tags, ["a", "b", "latest"]);
}

#[tokio::test]
async fn docker_hub_mirror_is_used_for_docker_io_references() {
    let mirror = Registry::start(RegistryAuth::Open);
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    let img = build_image(&src, "latest", &[random_tar(20, 100_000)]);
    let seed = client_for(&mirror.addr);
    seed.push_from_dir(
        &src,
        "latest",
        &reference(&mirror.addr, "library/busybox:latest"),
        &PushOptions::default(),
    )
    .await
    .unwrap();
    // `busybox` means docker.io/library/busybox; the mirrors are tried in order (the first
    // one is down: nothing listens on its port), the second answers, and Docker Hub is
    // never asked.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let client =
        Client::new(ClientOptions::new().mirrors(vec![dead, format!("http://{}", mirror.addr)]));
    let out_dir = tempdir();
    let out = DirStore::open(out_dir.path()).unwrap();
    let pulled = client
        .pull_to_dir(&"busybox".parse().unwrap(), &out, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest(), img.manifest.digest());
    assert_eq!(
        pulled.reference.to_string(),
        "docker.io/library/busybox:latest"
    );
}

#[tokio::test]
async fn docker_hub_search_shape_with_filters() {
    let srv = TinyServer::start(|req| {
        if req.path == "/v2/" {
            Reply::new(200, "{}")
        } else if req.path.starts_with("/v1/search?") {
            assert!(req.path.contains("q=busy"));
            Reply::new(200, r#"{"num_results":3,"query":"busy","results":[
                {"name":"busybox","description":"Busybox base image.","star_count":3400,"is_official":true,"is_automated":false},
                {"name":"someone/busy","description":"","star_count":3,"is_official":false,"is_automated":true},
                {"name":"other/busyapp","description":"x","star_count":50,"is_official":false,"is_automated":false}]}"#)
        } else {
            Reply::new(404, "")
        }
    })
    .await;
    let client = client_for(&srv.addr);
    let all = client
        .search(&srv.addr, "busy", &SearchOptions::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].name, "busybox");
    assert!(all[0].official && !all[0].automated);
    assert_eq!(all[0].stars, 3400);
    let starred = client
        .search(&srv.addr, "busy", &SearchOptions::new().min_stars(10))
        .await
        .unwrap();
    assert_eq!(
        starred.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["busybox", "other/busyapp"]
    );
    let one = client
        .search(&srv.addr, "busy", &SearchOptions::new().limit(Some(1)))
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
}

/// A registry whose search endpoint refuses us (401, 403) or fails (500): the error is
/// reported, not hidden behind the catalog (which would list what the catalog shows as if
/// it were the search's answer); only an absent endpoint (404, 405, 501) falls back.
#[tokio::test]
async fn search_reports_denied_and_failed_searches_and_falls_back_only_when_absent() {
    for (status, falls_back) in [
        (401, false),
        (403, false),
        (500, false),
        (404, true),
        (405, true),
        (501, true),
    ] {
        let srv = TinyServer::start(move |req| {
            if req.path == "/v2/" {
                Reply::new(200, "{}")
            } else if req.path.starts_with("/v1/search?") {
                Reply::new(status, "no")
            } else if req.path.starts_with("/v2/_catalog") {
                Reply::new(200, r#"{"repositories":["team/busybox","team/other"]}"#)
            } else {
                Reply::new(404, "")
            }
        })
        .await;
        let client = client_for(&srv.addr);
        let got = client
            .search(&srv.addr, "busy", &SearchOptions::default())
            .await;
        let asked_catalog = srv
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/v2/_catalog"));
        if falls_back {
            let names: Vec<String> = got.unwrap().into_iter().map(|r| r.name).collect();
            assert_eq!(names, ["team/busybox"], "HTTP {status}");
            assert!(asked_catalog);
        } else {
            let err = got.expect_err(&format!("HTTP {status} must be an error"));
            match status {
                401 | 403 => assert!(
                    matches!(&err, Error::Unauthorized { status: s, .. } if *s == status),
                    "{err:?}"
                ),
                _ => assert!(matches!(&err, Error::Status { status: 500, .. }), "{err:?}"),
            }
            assert!(err.to_string().contains("search"), "{err}");
            assert!(!asked_catalog, "HTTP {status}: fell back to the catalog");
        }
    }
}

/// Rewrites a built OCI image as a Docker schema 2 image (and a Docker manifest list).
fn docker_flavoured(
    dir: &DirStore,
    img: &BuiltImage,
) -> (oci_spec::image::Descriptor, oci_spec::image::Descriptor) {
    let mut m: serde_json::Value =
        serde_json::from_slice(&dir.read_blob(&dig(img.manifest.digest())).unwrap()).unwrap();
    m["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json".into();
    m["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    for l in m["layers"].as_array_mut().unwrap() {
        l["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
    }
    let bytes = serde_json::to_vec(&m).unwrap();
    let d = dir.write_blob(&bytes).unwrap();
    let manifest = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::Other(longshore_registry::DOCKER_MANIFEST.into()),
        bytes.len() as u64,
        d,
    );
    dir.set_ref("docker", &manifest).unwrap();
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": longshore_registry::DOCKER_MANIFEST_LIST,
        "manifests": [{
            "mediaType": longshore_registry::DOCKER_MANIFEST,
            "size": bytes.len(),
            "digest": manifest.digest().to_string(),
            "platform": {"os": "linux", "architecture": "amd64"},
        }],
    }))
    .unwrap();
    let ld = dir.write_blob(&list).unwrap();
    let list_desc = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::Other(longshore_registry::DOCKER_MANIFEST_LIST.into()),
        list.len() as u64,
        ld,
    );
    dir.set_ref("docker-list", &list_desc).unwrap();
    (manifest, list_desc)
}

#[tokio::test]
async fn docker_schema2_manifest_and_manifest_list() {
    let reg = Registry::start(RegistryAuth::Open);
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    let img = build_image(&src, "latest", &[random_tar(40, 150_000)]);
    let (manifest, list) = docker_flavoured(&src, &img);
    let client = client_for(&reg.addr);
    let single = reference(&reg.addr, "docker/app:single");
    let multi = reference(&reg.addr, "docker/app:list");
    client
        .push_from_dir(&src, "docker", &single, &PushOptions::default())
        .await
        .unwrap();
    let pushed = client
        .push_from_dir(&src, "docker-list", &multi, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(&pushed.digest, list.digest());
    for r in [&single, &multi] {
        let out_dir = tempdir();
        let out = DirStore::open(out_dir.path()).unwrap();
        let opts = PullOptions::new().platform(Some("linux/amd64".parse().unwrap()));
        let pulled = client.pull_to_dir(r, &out, &opts).await.unwrap();
        assert_eq!(pulled.manifest.digest(), manifest.digest(), "{r}");
        assert_eq!(
            pulled.manifest.media_type().as_ref(),
            longshore_registry::DOCKER_MANIFEST
        );
        if r == &multi {
            let idx = pulled.index.as_ref().unwrap();
            assert_eq!(
                idx.media_type().as_ref(),
                longshore_registry::DOCKER_MANIFEST_LIST
            );
        }
        assert_eq!(
            out.read_blob(&img.layers[0]).unwrap(),
            src.read_blob(&img.layers[0]).unwrap()
        );
    }
    // skopeo agrees on the digest of what we pushed.
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/docker/app:list", reg.addr),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        longshore_registry::sha256_digest(&out.stdout),
        *list.digest()
    );
}

#[tokio::test]
async fn hundred_megabyte_multi_layer_image_roundtrip() {
    let reg = Registry::start(RegistryAuth::Open);
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    // Four layers of random data, 25 MiB each (stored uncompressed: random data does not shrink).
    let mut layers = Vec::new();
    for n in 0..4u64 {
        let t = random_tar(100 + n, 25 << 20);
        let d = src.write_blob(&t).unwrap();
        layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": t.len(), "digest": d.to_string()}));
    }
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = src.write_blob(config).unwrap();
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": cd.to_string()},
        "layers": layers,
    }))
    .unwrap();
    let md = src.write_blob(&m).unwrap();
    src.set_ref(
        "big",
        &oci_spec::image::Descriptor::new(
            oci_spec::image::MediaType::ImageManifest,
            m.len() as u64,
            md.clone(),
        ),
    )
    .unwrap();
    let client = Client::new(
        ClientOptions::new()
            .insecure_registries(vec![reg.addr.clone()])
            .chunk_size(Some(8 << 20)),
    );
    let dest = reference(&reg.addr, "big/random:1");
    let pushed = client
        .push_from_dir(&src, "big", &dest, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(pushed.digest, md);
    let out_dir = tempdir();
    let out = DirStore::open(out_dir.path()).unwrap();
    let pulled = client
        .pull_to_dir(&dest, &out, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest(), &md);
    for l in &pulled.layers {
        let (a, b) = (
            out.blob_path(&dig(l.digest())).unwrap(),
            src.blob_path(&dig(l.digest())).unwrap(),
        );
        assert_eq!(
            std::fs::metadata(&a).unwrap().len(),
            std::fs::metadata(&b).unwrap().len()
        );
        // Content equality is implied by the verified digest; check one layer byte for byte.
    }
    let first = &pulled.layer_digests[0];
    assert_eq!(out.read_blob(first).unwrap(), src.read_blob(first).unwrap());
}
