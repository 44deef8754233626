//! Pulls an image and prints each progress event with the milliseconds since the pull
//! began: where a pull spends its time (downloads, verification, unpacking), per blob.
//!
//! ```text
//! cargo run --release -p longshore-engine --example pull-timeline -- \
//!     ROOT 127.0.0.1:5000/bench/img:1 [--insecure 127.0.0.1:5000]
//! ```

use std::time::Instant;

use longshore_engine::{Engine, EngineOptions, PullJobOptions};
use longshore_registry::{ClientOptions, ProgressEvent};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, reference, rest @ ..] = args.as_slice() else {
        return Err("usage: pull-timeline ROOT REFERENCE [--insecure HOST:PORT]".into());
    };
    let mut client = ClientOptions::new();
    if let [flag, host] = rest
        && flag == "--insecure"
    {
        client = client.insecure_registries(vec![host.clone()]);
    }
    let opts = EngineOptions {
        client,
        ..Default::default()
    };
    let engine = Engine::open(root, opts)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = tokio::runtime::Runtime::new()?;
    let start = Instant::now();
    let printer = std::thread::spawn(move || {
        let mut last_pct = std::collections::HashMap::<String, u64>::new();
        while let Some(p) = rx.blocking_recv() {
            let p: longshore_registry::Progress = p;
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            let what = match &p.event {
                // one line per 25 % of a transfer or unpack
                ProgressEvent::Downloading { current, total }
                | ProgressEvent::Extracting { current, total } => {
                    let pct = if *total == 0 {
                        100
                    } else {
                        current * 100 / total
                    } / 25
                        * 25;
                    let key = format!(
                        "{}{}",
                        p.id,
                        matches!(p.event, ProgressEvent::Extracting { .. })
                    );
                    if last_pct.insert(key, pct) == Some(pct) {
                        continue;
                    }
                    let verb = if matches!(p.event, ProgressEvent::Downloading { .. }) {
                        "Downloading"
                    } else {
                        "Extracting"
                    };
                    format!("{verb} {pct}%")
                }
                e => format!("{e:?}"),
            };
            println!("{ms:9.1} ms  {}  {what}", p.id);
        }
    });
    let job = PullJobOptions {
        progress: Some(tx),
        ..Default::default()
    };
    let report = rt.block_on(engine.pull(reference, &job))?;
    drop(job);
    let total = start.elapsed();
    let _ = printer.join();
    println!(
        "{:9.1} ms  done: {} ({})",
        total.as_secs_f64() * 1000.0,
        report.reference,
        report.manifest_digest
    );
    Ok(())
}
