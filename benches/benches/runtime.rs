//! The library path of a container's whole life, with no CLI process: create + start +
//! wait + delete of a busybox bundle whose process is `true` (what
//! `benches/scripts/runtime-compare.sh` times through the CLI), and create + delete alone.
//!
//! Needs root. State lives on /dev/shm (tmpfs), as /run does on a normal host.

use criterion::{Criterion, criterion_group, criterion_main};
use longshore_container::{Container, Stdio};
use longshore_test_support::{busybox_bundle_dir, is_root, unique_name};

fn bench(c: &mut Criterion) {
    if !is_root() {
        eprintln!("*** runtime benches need root: skipped ***");
        return;
    }
    let bundle = busybox_bundle_dir().expect("busybox rootfs");
    let state = tempfile::Builder::new()
        .prefix("longshore-bench-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let mut spec = longshore_container::spec::default_spec();
    let p = spec.process_mut().as_mut().unwrap();
    p.set_terminal(Some(false));
    p.set_args(Some(vec!["/bin/true".into()]));

    let mut g = c.benchmark_group("container");
    g.sample_size(50);
    g.bench_function("run_true", |b| {
        b.iter(|| {
            let code = Container::builder(unique_name("lsb"))
                .bundle(bundle.path())
                .root(state.path())
                .spec(spec.clone())
                .stdio(Stdio::Null)
                .run()
                .expect("run");
            assert_eq!(code, 0);
        })
    });
    g.bench_function("create_delete", |b| {
        b.iter(|| {
            let mut c = Container::builder(unique_name("lsb"))
                .bundle(bundle.path())
                .root(state.path())
                .spec(spec.clone())
                .stdio(Stdio::Null)
                .create()
                .expect("create");
            c.delete(true).expect("delete");
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
