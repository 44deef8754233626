//! Bridge setup + teardown per container: veth pair into the container's namespace, eth0
//! up with address and default route, loopback up, IPAM lease, endpoint record, hosts /
//! resolv.conf / hostname files; then the teardown of all of it.
//!
//! Runs as root, in namespaces of its own ("host" and one per container); the container
//! namespaces are created outside the timed part (that is the runtime's job).
//! `publish_1_port` adds one `-p` mapping: an nftables DNAT rule and a userland proxy.
//! Teardown hands the veth to the controller's background thread; the `flush` benches
//! include waiting for the kernel to delete it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use longshore_network::netns::NamedNetns;
use longshore_network::{Controller, DaemonOptions, EndpointConfig};

fn bench(c: &mut Criterion) {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("*** SKIPPED: the network setup bench needs root ***");
        return;
    }
    let pid = std::process::id();
    let host = NamedNetns::create(&format!("lsbh{pid:x}")).expect("host namespace");
    let state = tempfile::Builder::new()
        .prefix("longshore-bench-")
        .tempdir()
        .expect("state dir");
    let resolv = state.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 192.0.2.53\n").expect("resolv.conf");
    let mut opts = DaemonOptions::default();
    opts.bridge = format!("lsbb{pid:x}");
    opts.host_resolv_conf = resolv;
    let ctl = Controller::new(state.path().join("state"), host.netns().clone(), opts)
        .expect("controller");
    let files = state.path().join("files");
    let n = AtomicU32::new(0);
    let make = |ports: usize| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        let ns = NamedNetns::create(&format!("lsbc{pid:x}-{i:x}")).expect("netns");
        let mut cfg = EndpointConfig::new(&format!("bench{i}"), Some(ns.netns().clone()));
        cfg.files_dir = Some(files.join(i.to_string()));
        if ports == 1 {
            cfg.publish = vec!["8080:80".parse().expect("port spec")];
        }
        (ns, cfg)
    };
    let mut g = c.benchmark_group("bridge");
    g.sample_size(30);
    for ports in [0usize, 1] {
        let suffix = if ports == 0 { "" } else { "_publish_1_port" };
        g.bench_function(format!("setup_teardown{suffix}"), |b| {
            b.iter_batched(
                || make(ports),
                |(ns, cfg)| {
                    ctl.connect(&cfg).expect("connect");
                    ctl.disconnect(&cfg.container_id).expect("disconnect");
                    ns
                },
                BatchSize::PerIteration,
            )
        });
        // the two halves timed separately
        g.bench_function(format!("setup_only{suffix}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (ns, cfg) = make(ports);
                    let t = Instant::now();
                    ctl.connect(&cfg).expect("connect");
                    total += t.elapsed();
                    ctl.disconnect(&cfg.container_id).expect("disconnect");
                    drop(ns);
                }
                total
            })
        });
        g.bench_function(format!("teardown_only{suffix}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (ns, cfg) = make(ports);
                    ctl.connect(&cfg).expect("connect");
                    let t = Instant::now();
                    ctl.disconnect(&cfg.container_id).expect("disconnect");
                    total += t.elapsed();
                    drop(ns);
                }
                total
            })
        });
        // the namespace is destroyed first (as a runtime does when the container exits) and
        // the veth is left to the kernel
        g.bench_function(format!("teardown_only_netns_destroyed{suffix}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (ns, cfg) = make(ports);
                    ctl.connect(&cfg).expect("connect");
                    drop(ns);
                    let t = Instant::now();
                    ctl.disconnect_dying(&cfg.container_id).expect("disconnect");
                    total += t.elapsed();
                }
                total
            })
        });
    }
    // what the kernel's veth deletion costs when waited for: setup + teardown + flush of
    // one container, and the same per container for a batch of 10 (one flush for all)
    g.bench_function("setup_teardown_flush", |b| {
        b.iter_batched(
            || make(0),
            |(ns, cfg)| {
                ctl.connect(&cfg).expect("connect");
                ctl.disconnect(&cfg.container_id).expect("disconnect");
                ctl.flush().expect("flush");
                ns
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("setup_teardown_flush_per_container_of_10", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<_> = (0..10).map(|_| make(0)).collect();
                let t = Instant::now();
                for (_, cfg) in &batch {
                    ctl.connect(cfg).expect("connect");
                    ctl.disconnect(&cfg.container_id).expect("disconnect");
                }
                ctl.flush().expect("flush");
                total += t.elapsed() / 10;
            }
            total
        })
    });
    g.finish();
    // what every `longshore` process pays before its first connect: opening a controller on
    // a state directory whose default network and rules are in place (and dropping it), and
    // the same with one container connected and disconnected (the network part of `run --rm`)
    let mut g = c.benchmark_group("controller");
    g.sample_size(30);
    let reopen = || {
        Controller::new(
            state.path().join("state"),
            host.netns().clone(),
            ctl.options().clone(),
        )
        .expect("controller")
    };
    g.bench_function("open", |b| b.iter(|| drop(reopen())));
    g.bench_function("open_connect_disconnect", |b| {
        b.iter_batched(
            || make(0),
            |(ns, cfg)| {
                let c = reopen();
                c.connect(&cfg).expect("connect");
                c.disconnect(&cfg.container_id).expect("disconnect");
                drop(c);
                ns
            },
            BatchSize::PerIteration,
        )
    });
    // as the monitor of a `--rm` container can do it: the namespace released first, then
    // disconnect_dying, and the drop leaves the veth to the kernel
    g.bench_function("open_connect_release_disconnect_dying", |b| {
        b.iter_batched(
            || make(0),
            |(ns, cfg)| {
                let c = reopen();
                c.connect(&cfg).expect("connect");
                drop(ns);
                c.disconnect_dying(&cfg.container_id).expect("disconnect");
                drop(c);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    ctl.flush().expect("flush");
}

criterion_group!(benches, bench);
criterion_main!(benches);
