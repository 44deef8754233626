//! The pull job against a real `docker-registry`, into a real libgraph store (overlay, whose
//! layers unpack at the same time, and vfs, whose layers unpack one on another).

mod common;

use std::sync::Arc;

use common::{Registry, busybox_tar, files_tar, push_image, random_bytes, tempdir};
use longshore_engine::{Engine, EngineOptions, Error, PullJobOptions};
use longshore_graph::Store;
use longshore_registry::{Progress, ProgressEvent};
use longshore_test_support::{require_root, unique_name};
use tokio::sync::mpsc::unbounded_channel;

fn engine(root: &std::path::Path, reg: &Registry) -> Engine {
    engine_with(root, reg, "overlay")
}

fn engine_with(root: &std::path::Path, reg: &Registry, driver: &str) -> Engine {
    Engine::open(
        root,
        EngineOptions {
            driver: Some(driver.into()),
            client: reg.client_options(),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Removes a container layer even when an assertion fails.
struct ContainerGuard<'a>(&'a Store, String);
impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unmount_container(&self.1);
        let _ = self.0.remove_container(&self.1);
    }
}

fn events(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Progress>) -> Vec<Progress> {
    let mut out = Vec::new();
    while let Ok(p) = rx.try_recv() {
        out.push(p);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_unpacks_a_busybox_image_and_a_second_pull_is_up_to_date() {
    pull_and_pull_again("overlay").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_unpacks_a_busybox_image_and_a_second_pull_is_up_to_date_vfs() {
    pull_and_pull_again("vfs").await;
}

async fn pull_and_pull_again(driver: &str) {
    require_root!();
    let reg = Registry::start();
    let hello = b"hello from the second layer\n";
    let tars = vec![
        busybox_tar(),
        files_tar(&[
            ("etc/hello", hello),
            ("data.bin", &random_bytes(7, 3 << 20)),
        ]),
    ];
    let built = push_image(&reg, "test/busybox", "v1", &tars, None).await;

    let root = tempdir();
    let engine = engine_with(root.path(), &reg, driver);
    let reference = format!("{}/test/busybox:v1", reg.addr);
    let (tx, mut rx) = unbounded_channel();
    let opts = PullJobOptions {
        progress: Some(tx),
        ..Default::default()
    };
    let report = engine.pull(&reference, &opts).await.unwrap();
    assert!(!report.already_exists, "{report}");
    assert_eq!(report.image_id.to_string(), built.config.to_string());
    assert_eq!(report.manifest_digest, built.manifest.to_string());
    assert_eq!(report.layers.len(), 2);
    for (i, l) in report.layers.iter().enumerate() {
        assert_eq!(l.blob.to_string(), built.layers[i].to_string());
        assert_eq!(l.diff_id.to_string(), built.diff_ids[i].to_string());
        assert!(!l.already_existed);
        // overlay unpacks gzip layers from the download's bytes; vfs after, on the parent
        assert_eq!(l.unpacked_while_downloading, driver == "overlay", "{l:?}");
    }
    // Progress: downloads, then an extraction start and end per layer.
    let evs = events(&mut rx);
    for blob in &built.layers {
        let of = |want: fn(&ProgressEvent) -> bool| {
            evs.iter()
                .filter(|p| &p.digest == blob && want(&p.event))
                .count()
        };
        assert_eq!(of(|e| matches!(e, ProgressEvent::Done)), 1, "{evs:?}");
        assert_eq!(of(|e| matches!(e, ProgressEvent::Extracting { .. })), 2);
    }

    // The store has the image, tagged, with the layers' diff IDs.
    let g = engine.graph().unwrap();
    let img = g.image(&reference).unwrap();
    assert_eq!(img.id, report.image_id);
    let want: Vec<String> = built.diff_ids.iter().map(|d| d.to_string()).collect();
    let have: Vec<String> = img.diff_ids.iter().map(|d| d.to_string()).collect();
    assert_eq!(have, want);
    assert_eq!(
        g.content().read(&report.image_id).unwrap(),
        g.config(&reference).unwrap()
    );
    // Blobs are in libgraph's content store, and nothing is left in its ingest area.
    for blob in &report.layers {
        assert!(g.content().exists(&blob.blob));
    }
    assert!(g.content().ingests().unwrap().is_empty());

    // A container layer mounted from the image sees files of both layers.
    let cid = unique_name("eng");
    g.create_container(&cid, &reference).unwrap();
    let guard = ContainerGuard(g, cid.clone());
    let mnt = g.mount_container(&cid).unwrap();
    assert_eq!(std::fs::read(mnt.join("etc/hello")).unwrap(), hello);
    let passwd = std::fs::read_to_string(mnt.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:"), "{passwd}");
    let bb = std::fs::metadata(mnt.join("bin/busybox")).unwrap();
    assert!(bb.len() > 100_000);
    drop(guard);

    // Pulling again: already exists, nothing unpacked or downloaded.
    let report2 = engine.pull(&reference, &opts).await.unwrap();
    assert!(report2.already_exists);
    assert!(report2.to_string().contains("already exists"), "{report2}");
    assert_eq!(report2.image_id, report.image_id);
    assert!(report2.layers.iter().all(|l| l.already_existed));
    let evs = events(&mut rx);
    assert!(
        !evs.iter().any(|p| matches!(
            p.event,
            ProgressEvent::Extracting { .. } | ProgressEvent::Downloading { .. }
        )),
        "{evs:?}"
    );
    assert_eq!(g.images().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulling_a_missing_tag_is_a_clear_error_and_changes_nothing() {
    require_root!();
    let reg = Registry::start();
    push_image(
        &reg,
        "test/present",
        "v1",
        &[files_tar(&[("a", b"a")])],
        None,
    )
    .await;
    let root = tempdir();
    let engine = engine(root.path(), &reg);
    for reference in [
        format!("{}/test/present:nope", reg.addr),
        format!("{}/test/absent:v1", reg.addr),
    ] {
        let err = engine
            .pull(&reference, &PullJobOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&reference) && msg.contains("not found"),
            "{msg}"
        );
    }
    assert!(engine.graph().unwrap().images().unwrap().is_empty());
    assert!(engine.graph().unwrap().content().list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_whose_diff_id_does_not_match_the_config_creates_no_image() {
    require_root!();
    let reg = Registry::start();
    let tars = vec![
        files_tar(&[("a", b"first")]),
        files_tar(&[("b", b"second")]),
    ];
    // The config claims the second layer's diff ID is that of something else.
    let lie = vec![
        longshore_registry::sha256_digest(&tars[0]),
        longshore_registry::sha256_digest(b"not the layer"),
    ];
    push_image(&reg, "test/liar", "v1", &tars, Some(lie)).await;
    let root = tempdir();
    let engine = engine(root.path(), &reg);
    let reference = format!("{}/test/liar:v1", reg.addr);
    let err = engine
        .pull(&reference, &PullJobOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DiffIdMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("diff ID"), "{err}");
    assert!(engine.graph().unwrap().images().unwrap().is_empty());
    assert!(engine.graph().unwrap().resolve(&reference).is_err());
    // The stray layers hold no reference: gc removes them.
    let gc = engine.graph().unwrap().gc().unwrap();
    assert!(!gc.layers_removed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_pull_leaves_the_store_consistent_and_can_be_redone() {
    require_root!();
    let reg = Registry::start();
    let tars = vec![
        busybox_tar(),
        files_tar(&[("big1", &random_bytes(1, 24 << 20))]),
        files_tar(&[("big2", &random_bytes(2, 24 << 20))]),
    ];
    let built = push_image(&reg, "test/cancel", "v1", &tars, None).await;
    let root = tempdir();
    let reference = format!("{}/test/cancel:v1", reg.addr);
    {
        let engine = Arc::new(engine(root.path(), &reg));
        let (tx, mut rx) = unbounded_channel();
        let opts = PullJobOptions {
            progress: Some(tx),
            ..Default::default()
        };
        let e2 = Arc::clone(&engine);
        let r2 = reference.clone();
        let job = tokio::spawn(async move { e2.pull(&r2, &opts).await });
        // Cancel as soon as a big blob is partly downloaded.
        while let Some(p) = rx.recv().await {
            if matches!(p.event, ProgressEvent::Downloading { current, total } if current < total && total > 1 << 20)
            {
                break;
            }
        }
        job.abort();
        let _ = job.await;
        // Wait for a layer that was unpacking on a worker thread to finish (it holds the
        // engine, and with it the store's owner lock, until then; slow on a loaded machine).
        for _ in 0..1200 {
            if Arc::strong_count(&engine) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            Arc::strong_count(&engine),
            1,
            "a worker still holds the engine after 60 s"
        );
        let g = engine.graph().unwrap();
        // A blob whose commit (fsync + rename) was running on a blocking thread when the
        // job was cancelled finishes it; give it time, then nothing may remain.
        for _ in 0..200 {
            if g.content().ingests().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(g.images().unwrap().is_empty());
        // No partial blob visible, no ingest left by the cancelled downloads.
        for blob in g.content().list().unwrap() {
            g.content().verify(&blob).unwrap();
        }
        assert!(
            g.content().ingests().unwrap().is_empty(),
            "{:?}",
            g.content().ingests()
        );
    }
    // Reopened: consistent, and the pull completes. An unpack that was running on a
    // blocking thread when the job was cancelled still holds the store (and its owner
    // lock) until it ends and discards its layer: wait for that.
    let engine = {
        let mut tries = 0;
        loop {
            let opts = EngineOptions {
                driver: Some("overlay".into()),
                client: reg.client_options(),
                ..Default::default()
            };
            match Engine::open(root.path(), opts) {
                Ok(e) => break e,
                Err(e) if tries < 1200 && e.to_string().contains("in use by another") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("reopening the store: {e}"),
            }
        }
    };
    let check = engine.graph().unwrap().check(false).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    let report = engine
        .pull(&reference, &PullJobOptions::default())
        .await
        .unwrap();
    assert_eq!(report.image_id.to_string(), built.config.to_string());
    assert_eq!(report.layers.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_on_a_pulled_base_unpacks_only_its_own_layers() {
    require_root!();
    let reg = Registry::start();
    let base = busybox_tar();
    let a = push_image(&reg, "test/base", "v1", std::slice::from_ref(&base), None).await;
    let top1 = files_tar(&[("one", &random_bytes(11, 2 << 20))]);
    let top2 = files_tar(&[("two", &random_bytes(12, 3 << 20))]);
    let b = push_image(&reg, "test/app", "v1", &[base, top1, top2], None).await;
    let root = tempdir();
    let engine = engine(root.path(), &reg);
    let base_ref = format!("{}/test/base:v1", reg.addr);
    let app_ref = format!("{}/test/app:v1", reg.addr);
    let first = engine
        .pull(&base_ref, &PullJobOptions::default())
        .await
        .unwrap();
    assert_eq!(first.image_id.to_string(), a.config.to_string());
    let (tx, mut rx) = unbounded_channel();
    let opts = PullJobOptions {
        progress: Some(tx),
        ..Default::default()
    };
    let report = engine.pull(&app_ref, &opts).await.unwrap();
    assert_eq!(report.image_id.to_string(), b.config.to_string());
    let existed: Vec<bool> = report.layers.iter().map(|l| l.already_existed).collect();
    assert_eq!(existed, vec![true, false, false]);
    assert_eq!(report.layers[0].cache_id, first.layers[0].cache_id);
    let evs = events(&mut rx);
    let base_blob = &b.layers[0];
    assert!(
        !evs.iter()
            .any(|p| &p.digest == base_blob && matches!(p.event, ProgressEvent::Extracting { .. })),
        "the shared base was unpacked again: {evs:?}"
    );
    // the layers chain up: each on the one before, and a container sees all of them
    let g = engine.graph().unwrap();
    let rows: Vec<_> = report
        .layers
        .iter()
        .map(|l| g.layer(&l.cache_id).unwrap().unwrap())
        .collect();
    assert_eq!(
        rows[1].parent_cache.as_deref(),
        Some(rows[0].cache_id.as_str())
    );
    assert_eq!(
        rows[2].parent_cache.as_deref(),
        Some(rows[1].cache_id.as_str())
    );
    assert!(rows.iter().all(|r| !r.incomplete));
    let cid = unique_name("eng");
    g.create_container(&cid, &app_ref).unwrap();
    let guard = ContainerGuard(g, cid.clone());
    let mnt = g.mount_container(&cid).unwrap();
    assert_eq!(std::fs::metadata(mnt.join("one")).unwrap().len(), 2 << 20);
    assert_eq!(std::fs::metadata(mnt.join("two")).unwrap().len(), 3 << 20);
    assert!(mnt.join("bin/busybox").exists());
    drop(guard);
    let check = g.check(false).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

/// A tar with a `../` entry, raw (the tar crate refuses to build one).
fn escaping_tar(name: &str) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(5);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    let mut data = b"owned".to_vec();
    data.resize(512, 0);
    out.extend(data);
    out.extend([0u8; 1024]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_layer_is_refused_while_downloading_and_leaves_nothing() {
    require_root!();
    let reg = Registry::start();
    let outside = tempdir();
    let target = outside.path().join("escaped");
    // deep enough `..` to leave the store for `outside`, whatever the depth
    let name = format!(
        "{}{}",
        "../".repeat(12),
        target.to_str().unwrap().trim_start_matches('/')
    );
    assert!(name.len() < 100, "{name}");
    let tars = vec![busybox_tar(), escaping_tar(&name)];
    push_image(&reg, "test/hostile", "v1", &tars, None).await;
    let root = tempdir();
    let engine = engine(root.path(), &reg);
    let reference = format!("{}/test/hostile:v1", reg.addr);
    let err = engine
        .pull(&reference, &PullJobOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unsafe"), "{msg}");
    assert!(!target.exists(), "the layer wrote outside its root");
    let g = engine.graph().unwrap();
    assert!(g.images().unwrap().is_empty());
    let check = g.check(false).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    // the good base layer may stay (unreferenced, for gc); no staged layer stays behind
    let gc = g.gc().unwrap();
    assert!(gc.layers_removed.len() <= 1, "{gc:?}");
    let overlay = root.path().join("overlay");
    let dirs: Vec<String> = std::fs::read_dir(&overlay)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "l" && !n.starts_with('.'))
        .collect();
    assert!(dirs.is_empty(), "layer directories left: {dirs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_running_during_a_pull_keeps_what_the_pull_needs() {
    require_root!();
    let reg = Registry::start();
    let tars = vec![
        busybox_tar(),
        files_tar(&[("one", &random_bytes(21, 6 << 20))]),
        files_tar(&[("two", &random_bytes(22, 6 << 20))]),
    ];
    let built = push_image(&reg, "test/gc", "v1", &tars, None).await;
    let root = tempdir();
    let engine = Arc::new(engine(root.path(), &reg));
    // a gc loop on another thread for the whole pull: without the pull's lease it would
    // remove committed blobs and attached layers that no image references yet
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (engine, stop) = (Arc::clone(&engine), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let gc = engine.graph().unwrap().gc().unwrap();
                assert!(gc.layers_removed.is_empty(), "{gc:?}");
                rounds += 1;
            }
            rounds
        })
    };
    let reference = format!("{}/test/gc:v1", reg.addr);
    let report = engine.pull(&reference, &PullJobOptions::default()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = collector.join().unwrap();
    let report = report.unwrap();
    assert!(rounds > 0);
    assert_eq!(report.image_id.to_string(), built.config.to_string());
    let g = engine.graph().unwrap();
    let check = g.check(false).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    // after the pull, a gc finds nothing of the image to remove (the manifest blob the
    // pull stored is not kept: the image is recorded by its config and layers)
    let gc = g.gc().unwrap();
    assert!(gc.layers_removed.is_empty(), "{gc:?}");
    assert!(!gc.blobs_removed.contains(&report.image_id), "{gc:?}");
    for l in &report.layers {
        assert!(g.content().exists(&l.blob));
        assert!(!gc.blobs_removed.contains(&l.blob), "{gc:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_with_more_layers_than_unpacks_following_downloads_pulls_whole() {
    // Twelve layers, all downloading at once: downloads never wait for their unpacks, at
    // most a few unpacks follow downloads and the rest unpack from their stored blobs.
    // Every layer lands, in order, each file where it belongs.
    require_root!();
    let reg = Registry::start();
    let contents: Vec<Vec<u8>> = (0..12u64).map(|n| random_bytes(100 + n, 1 << 20)).collect();
    let names: Vec<String> = (0..12).map(|n| format!("layer{n:02}.bin")).collect();
    let tars: Vec<Vec<u8>> = names
        .iter()
        .zip(&contents)
        .map(|(n, c)| files_tar(&[(n.as_str(), c.as_slice()), ("top", n.as_bytes())]))
        .collect();
    let built = push_image(&reg, "test/many", "v1", &tars, None).await;
    let root = tempdir();
    let engine = Engine::open(
        root.path(),
        EngineOptions {
            driver: Some("overlay".into()),
            client: reg.client_options().max_concurrent_downloads(12),
            ..Default::default()
        },
    )
    .unwrap();
    let reference = format!("{}/test/many:v1", reg.addr);
    let report = engine
        .pull(&reference, &PullJobOptions::default())
        .await
        .unwrap();
    assert_eq!(report.image_id.to_string(), built.config.to_string());
    assert_eq!(report.layers.len(), 12);
    for (i, l) in report.layers.iter().enumerate() {
        assert_eq!(l.diff_id.to_string(), built.diff_ids[i].to_string());
    }
    let g = engine.graph().unwrap();
    assert!(g.content().ingests().unwrap().is_empty());
    let check = g.check(false).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    let cid = unique_name("eng");
    g.create_container(&cid, &reference).unwrap();
    let guard = ContainerGuard(g, cid.clone());
    let mnt = g.mount_container(&cid).unwrap();
    for (n, c) in names.iter().zip(&contents) {
        assert_eq!(&std::fs::read(mnt.join(n)).unwrap(), c, "{n}");
    }
    // the top layer's file hides the others'
    assert_eq!(
        std::fs::read(mnt.join("top")).unwrap(),
        names[11].as_bytes()
    );
    drop(guard);
}
