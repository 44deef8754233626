//! `pull --root DIR [--driver overlay|vfs] [--insecure HOST:PORT]... [--quiet] [--unpack-after-download] [--max-concurrent-downloads N] REFERENCE`
//!
//! Pulls an image with unpacking into the libgraph store at DIR and prints the result and
//! the wall time. Used by `engine/scripts/bench-pull-unpack.sh`.

use std::time::Instant;

use longshore_engine::{Engine, EngineOptions, PullJobOptions};
use longshore_registry::ProgressEvent;

fn usage() -> ! {
    eprintln!(
        "usage: pull --root DIR [--driver overlay|vfs] [--insecure HOST:PORT]... [--quiet] [--unpack-after-download] [--max-concurrent-downloads N] REFERENCE"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut opts = EngineOptions::default();
    let (mut root, mut reference, mut quiet, mut after) = (None, None, false, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => root = Some(args.next().unwrap_or_else(|| usage())),
            "--driver" => opts.driver = Some(args.next().unwrap_or_else(|| usage())),
            "--insecure" => opts
                .client
                .insecure_registries
                .push(args.next().unwrap_or_else(|| usage())),
            "--quiet" => quiet = true,
            "--unpack-after-download" => after = true,
            "--max-concurrent-downloads" => {
                opts.client.max_concurrent_downloads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            s if !s.starts_with('-') && reference.is_none() => reference = Some(a),
            _ => usage(),
        }
    }
    let (Some(root), Some(reference)) = (root, reference) else {
        usage()
    };
    let start = Instant::now();
    let engine = match Engine::open(&root, opts) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pull: {e}");
            std::process::exit(1)
        }
    };
    if !quiet {
        // the engine opens its store lazily: a fresh root is made (lock, overlay probe, the
        // SQLite database and its fsyncs) inside the pull, before the first Waiting
        eprintln!("{:7.3}s engine opened", start.elapsed().as_secs_f64());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<longshore_registry::Progress>();
    let printer = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            if quiet {
                continue;
            }
            let t = start.elapsed().as_secs_f64();
            match p.event {
                ProgressEvent::Downloading { .. } => {}
                ProgressEvent::Extracting { current, total } if current < total => {
                    eprintln!("{t:7.3}s {}: extracting", p.id)
                }
                ProgressEvent::Extracting { .. } => eprintln!("{t:7.3}s {}: pull complete", p.id),
                ev => eprintln!("{t:7.3}s {}: {ev:?}", p.id),
            }
        }
    });
    let res = engine
        .pull(
            &reference,
            &PullJobOptions {
                progress: Some(tx),
                unpack_after_download: after,
                ..Default::default()
            },
        )
        .await;
    let _ = printer.await;
    match res {
        Ok(report) => println!("{report} in {:.3}s", start.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("pull: {e}");
            std::process::exit(1)
        }
    }
}
