//! A small command-line front end for benchmarks and manual checks.
//!
//! ```text
//! registry-tool pull <ref> <oci-dir> [--insecure host:port]... [--fsync]
//! registry-tool push <oci-dir> <name> <ref> [--insecure host:port]...
//! registry-tool gen <oci-dir> <name> <layers> <mib-per-layer>
//! ```

use std::io::Write;
use std::process::ExitCode;

use longshore_registry::{
    Client, ClientOptions, DirStore, ProgressEvent, PullOptions, PushOptions, Reference,
};
use oci_spec::image::{Descriptor, MediaType};

fn usage() -> ExitCode {
    eprintln!(
        "usage: registry-tool pull <ref> <dir> | push <dir> <name> <ref> | gen <dir> <name> <layers> <MiB> [--insecure host:port]"
    );
    ExitCode::from(2)
}

/// Layer content: half pseudo-random, half repetitive text (compresses roughly 2.7:1 overall).
fn layer_tar(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005) | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len / 3 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let mut i = 0u64;
    while data.len() < len {
        data.extend_from_slice(format!("line {i} of layer {seed}: lorem ipsum dolor\n").as_bytes());
        i += 1;
    }
    data.truncate(len);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(len as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, format!("layer-{seed}.bin"), &data[..])
        .expect("in-memory tar");
    b.into_inner().expect("in-memory tar")
}

fn generate(
    dir: &DirStore,
    name: &str,
    layers: usize,
    mib: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for n in 0..layers {
        let tar = layer_tar(n as u64 + 1, mib << 20);
        diff_ids.push(longshore_registry::sha256_digest(&tar).to_string());
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&tar)?;
        let gz = enc.finish()?;
        let d = dir.write_blob(&gz)?;
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": gz.len(), "digest": d.to_string()}));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let cd = dir.write_blob(&config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": cd.to_string()},
        "layers": descs,
    }))?;
    let md = dir.write_blob(&manifest)?;
    dir.set_ref(
        name,
        &Descriptor::new(MediaType::ImageManifest, manifest.len() as u64, md),
    )?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut insecure = Vec::new();
    while let Some(i) = args.iter().position(|a| a == "--insecure") {
        if i + 1 >= args.len() {
            return usage();
        }
        insecure.push(args.remove(i + 1));
        args.remove(i);
    }
    let fsync = args.iter().any(|a| a == "--fsync");
    args.retain(|a| a != "--fsync");
    let client = Client::new(ClientOptions::new().insecure_registries(insecure));
    let result: Result<(), Box<dyn std::error::Error>> = async {
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["pull", r, dir] => {
                let r: Reference = r.parse()?;
                let store = DirStore::open(dir)?.with_fsync(fsync);
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<longshore_registry::Progress>();
                let printer = tokio::spawn(async move {
                    while let Some(p) = rx.recv().await {
                        if matches!(p.event, ProgressEvent::Done | ProgressEvent::AlreadyExists) {
                            eprintln!("{}: {:?}", p.id, p.event);
                        }
                    }
                });
                let opts = PullOptions::new().progress(Some(tx));
                let pulled = client.pull_to_dir(&r, &store, &opts).await?;
                drop(opts);
                let _ = printer.await;
                println!("{}", pulled.manifest.digest());
                Ok(())
            }
            ["push", dir, name, r] => {
                let r: Reference = r.parse()?;
                let store = DirStore::open(dir)?;
                let pushed = client
                    .push_from_dir(&store, name, &r, &PushOptions::default())
                    .await?;
                println!("{}", pushed.digest);
                Ok(())
            }
            ["gen", dir, name, layers, mib] => {
                generate(&DirStore::open(dir)?, name, layers.parse()?, mib.parse()?)
            }
            _ => Err("bad arguments".into()),
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-tool: {e}");
            usage()
        }
    }
}
