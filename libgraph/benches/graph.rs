//! Benchmarks of issue 3: layer apply, `diff` of a container that changed 10k files, overlay
//! mount of a 50-layer image, `commit` of a large change, and a save/load round trip.
//!
//! Run as root (overlayfs): `cargo bench -p longshore-graph --bench graph`.
//! Sizes can be scaled down with `LONGSHORE_BENCH_MB` (default 100 for commit, 200 for save).

use std::fs;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use longshore_graph::{
    ApplyOptions, ArchiveFormat, CommitOptions, Store, StoreOptions, apply_layer,
};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("longshore-bench-")
        .tempdir()
        .unwrap()
}

fn mb(default: usize) -> usize {
    std::env::var("LONGSHORE_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A gzip layer of `files` files totalling about `bytes`.
fn layer(files: usize, bytes: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let per = (bytes / files.max(1)).max(1);
    let mut content = vec![0u8; per];
    for i in 0..files {
        // compressible but not trivially: a counter pattern
        for (j, c) in content.iter_mut().enumerate() {
            *c = ((i * 31 + j / 7) % 251) as u8;
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(per as u64);
        h.set_mode(0o644);
        h.set_mtime(1_500_000_000);
        b.append_data(&mut h, format!("d{}/f{i}", i % 100), &content[..])
            .unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&tar).unwrap();
    e.finish().unwrap()
}

fn store(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::new().driver("overlay")).unwrap()
}

fn bench_apply(c: &mut Criterion) {
    let gz = layer(10_000, 100 << 20);
    let dir = tempdir();
    let mut n = 0;
    let mut g = c.benchmark_group("apply");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.bench_function("apply gzip layer (10k files, 100 MB)", |b| {
        b.iter(|| {
            // a fresh directory every time: re-creating deleted files is slow on this ext4
            n += 1;
            let d = dir.path().join(format!("{n}"));
            fs::create_dir(&d).unwrap();
            black_box(apply_layer(&gz[..], &d, &ApplyOptions::default()).unwrap())
        })
    });
    g.finish();
}

fn bench_overlay_mount(c: &mut Criterion) {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED overlay benches: not root");
        return;
    }
    let dir = tempdir();
    let s = store(dir.path());
    let mut parent: Option<String> = None;
    for i in 0..50 {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, format!("f{i}"), &b"x"[..]).unwrap();
        let l = s
            .register_layer(parent.as_deref(), &b.into_inner().unwrap()[..])
            .unwrap();
        parent = Some(l.cache_id);
    }
    let top = parent.unwrap();
    c.bench_function("overlay mount + unmount of a 50-layer image", |b| {
        b.iter(|| {
            let p = s.driver().get(&top).unwrap();
            black_box(&p);
            s.driver().put(&top).unwrap();
        })
    });
    let _ = s.gc();
}

fn bench_diff_and_commit(c: &mut Criterion) {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let dir = tempdir();
    let s = store(dir.path());
    s.import(&layer(10_000, 10 << 20)[..], Some("base:1"), None)
        .unwrap();
    s.create_container("changed", "base:1").unwrap();
    let root = s.mount_container("changed").unwrap();
    for i in 0..10_000 {
        fs::write(root.join(format!("d{}/f{i}", i % 100)), b"changed").unwrap();
    }
    s.unmount_container("changed").unwrap();
    c.bench_function("diff of a container that changed 10k files", |b| {
        b.iter(|| black_box(s.container_changes("changed").unwrap().len()))
    });

    let size = mb(100);
    s.create_container("big", "base:1").unwrap();
    let root = s.mount_container("big").unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut f = fs::File::create(root.join("big.bin")).unwrap();
    for _ in 0..size {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    s.unmount_container("big").unwrap();
    let mut g = c.benchmark_group("commit");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.bench_function(format!("commit of a {size} MB change"), |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let start = std::time::Instant::now();
                let id = s.commit("big", &CommitOptions::default()).unwrap();
                total += start.elapsed();
                // keep the disk from filling up: drop the image again (not timed)
                s.remove_image(
                    &id.to_string(),
                    &longshore_graph::RemoveOptions::new().force(true),
                )
                .unwrap();
            }
            total
        })
    });
    g.finish();
}

fn bench_save_load(c: &mut Criterion) {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let size = mb(200);
    let a = tempdir();
    let s = store(a.path());
    let mut layers = Vec::new();
    for i in 0..4 {
        layers.push(layer(500, (size << 20) / 4 + i));
    }
    let mut parent: Option<String> = None;
    for l in &layers {
        parent = Some(
            s.register_layer(parent.as_deref(), &l[..])
                .unwrap()
                .cache_id,
        );
    }
    let mut g = c.benchmark_group("save-load");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    let out = tempdir();
    let mut n = 0;
    g.bench_function(
        format!("save + load round trip of a {size} MB image"),
        |b| {
            // one image over the 4 layers: build it from a fresh config on each run
            let diff_ids: Vec<String> = {
                let mut v = Vec::new();
                let mut cur = parent.clone();
                while let Some(c) = cur {
                    let l = s.layer(&c).unwrap().unwrap();
                    v.push(l.diff_id.unwrap().to_string());
                    cur = l.parent_cache;
                }
                v.reverse();
                v
            };
            let config = serde_json::to_vec(&serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": diff_ids}
            }))
            .unwrap();
            let id = s.create_image(&config, parent.as_deref(), None).unwrap();
            b.iter(|| {
                n += 1;
                let path = out.path().join(format!("{n}.tar"));
                s.save(
                    &[&id.to_string()],
                    ArchiveFormat::Docker,
                    fs::File::create(&path).unwrap(),
                )
                .unwrap();
                let t = tempdir();
                let loaded = store(t.path())
                    .load(fs::File::open(&path).unwrap())
                    .unwrap();
                fs::remove_file(&path).unwrap();
                black_box(loaded)
            })
        },
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_apply, bench_overlay_mount, bench_diff_and_commit, bench_save_load
}
criterion_main!(benches);
