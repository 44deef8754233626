//! Applies a layer (plain, gzip or zstd tar) to a new directory and prints its digests.
//!
//! `cargo run --release -p longshore-graph --example apply -- LAYER DEST [overlay|vfs]`

use std::time::Instant;

use longshore_graph::{ApplyOptions, WhiteoutMode, apply_layer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: apply LAYER DEST [overlay|vfs]");
        std::process::exit(2);
    }
    let whiteouts = match args.get(3).map(String::as_str) {
        Some("overlay") => WhiteoutMode::Overlay,
        _ => WhiteoutMode::Delete,
    };
    let f = std::fs::File::open(&args[1]).expect("open layer");
    std::fs::create_dir_all(&args[2]).expect("create destination");
    let start = Instant::now();
    let opts = ApplyOptions::new().whiteouts(whiteouts);
    match apply_layer(f, std::path::Path::new(&args[2]), &opts) {
        Ok(r) => eprintln!(
            "{:?} digest {} diff_id {} {} entries, {} bytes of tar in {:.3}s",
            r.compression,
            r.digest,
            r.diff_id,
            r.entries,
            r.tar_size,
            start.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("apply failed: {e}");
            std::process::exit(1);
        }
    }
}
