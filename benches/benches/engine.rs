//! The engine's figures of issue 10 through the library, with no CLI process:
//! - `Engine::open` of a data root that exists (the goal: ≤ 5 ms);
//! - `run --rm --network none busybox true`: create (auto-remove), start, wait until the
//!   monitor has removed it (≤ 20 ms);
//! - `ps -a` (`list_containers`, all) over 100 and 1000 containers (≤ 20 ms for 1000).
//!
//! Needs root. The monitor of each container is this bench binary (its `main` calls
//! `run_if_monitor` first, as the `longshore` binary does).

use std::time::Duration;

use criterion::Criterion;
use longshore_engine::containers::wait_removed;
use longshore_engine::{CreateRequest, Engine, EngineOptions, ListOptions, StartOptions};
use longshore_test_support::is_root;

fn bench(c: &mut Criterion) {
    if !is_root() {
        eprintln!("*** engine benches need root: skipped ***");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("longshore-ebench-")
        .tempdir()
        .unwrap();
    let root = dir.path().join("root");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    longshore_test_support::busybox_rootfs(&rootfs).unwrap();
    let tar = dir.path().join("busybox.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let engine = Engine::open(&root, EngineOptions::default()).unwrap();
    engine
        .import_image(
            std::fs::File::open(&tar).unwrap(),
            Some("busybox:latest"),
            None,
            &[],
        )
        .unwrap();

    let mut g = c.benchmark_group("engine");
    g.sample_size(30);
    g.bench_function("open", |b| {
        b.iter(|| Engine::open(&root, EngineOptions::default()).unwrap())
    });
    let mut req = CreateRequest::default();
    req.image = "busybox".into();
    req.cmd = vec!["true".into()];
    req.network = Some("none".into());
    req.auto_remove = true;
    g.bench_function("run_rm_network_none", |b| {
        b.iter(|| {
            let c = engine.create_container(&req).unwrap();
            let id = c.record.id.clone();
            engine
                .start_container(&id, &StartOptions::default())
                .unwrap();
            assert!(wait_removed(&root, &id, Duration::from_secs(30)));
        })
    });
    let mut made = Vec::new();
    let mut req = CreateRequest::default();
    req.image = "busybox".into();
    req.cmd = vec!["true".into()];
    req.network = Some("none".into());
    for (n, label) in [(100, "ps_a_100"), (1000, "ps_a_1000")] {
        while made.len() < n {
            made.push(engine.create_container(&req).unwrap().record.id);
        }
        let mut opts = ListOptions::default();
        opts.all = true;
        g.bench_function(label, |b| {
            b.iter(|| assert_eq!(engine.list_containers(&opts).unwrap().len(), n))
        });
    }
    g.finish();
    for id in made {
        let mut o = longshore_engine::RemoveOptions::default();
        o.force = true;
        let _ = engine.remove_container(&id, &o);
    }
}

fn main() {
    longshore_engine::monitor::run_if_monitor();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
