//! Test fixtures: a real `docker-registry` on 127.0.0.1 (same approach as libregistry's
//! tests) and images built from a busybox rootfs, pushed with libregistry.
#![allow(dead_code)]

pub mod daemon;

use std::io::Write;

use longshore_registry::{Client, ClientOptions, Digest, DirStore, PushOptions, sha256_digest};
use oci_spec::image::{Descriptor, MediaType};

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("longshore-engine-")
        .tempdir()
        .expect("tempdir")
}

/// An open `docker-registry` process on 127.0.0.1; killed on drop.
pub struct Registry {
    server: longshore_test_support::registry::RegistryServer,
    pub addr: String,
}

impl Registry {
    pub fn start() -> Registry {
        let server = longshore_test_support::registry::RegistryServer::start(tempdir(), "");
        let addr = server.addr.clone();
        Registry { server, addr }
    }

    pub fn client_options(&self) -> ClientOptions {
        ClientOptions::new().insecure_registries(vec![self.addr.clone()])
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A busybox rootfs as an uncompressed tar.
pub fn busybox_tar() -> Vec<u8> {
    let root = tempdir();
    longshore_test_support::busybox_rootfs(root.path()).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", root.path()).unwrap();
    b.into_inner().unwrap()
}

/// A tar with the given regular files.
pub fn files_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Pseudo-random (incompressible) bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    data
}

pub struct BuiltImage {
    pub manifest: Digest,
    pub config: Digest,
    pub layers: Vec<Digest>,
    pub diff_ids: Vec<Digest>,
}

/// Writes an OCI image (gzip layers from `tars`, a config listing `diff_ids` or the real
/// ones, a manifest) into `dir` as `name`.
pub fn build_image(
    dir: &DirStore,
    name: &str,
    tars: &[Vec<u8>],
    diff_ids: Option<Vec<Digest>>,
) -> BuiltImage {
    let mut layers = Vec::new();
    let mut layer_descs = Vec::new();
    let real: Vec<Digest> = tars.iter().map(|t| sha256_digest(t)).collect();
    for t in tars {
        let gz = gzip(t);
        let d = dir.write_blob(&gz).unwrap();
        layer_descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "size": gz.len(),
            "digest": d.to_string(),
        }));
        layers.push(d);
    }
    let diff_ids = diff_ids.unwrap_or(real);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-11-27T20:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": [format!("NAME={name}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = dir.write_blob(&config_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config_bytes.len(),
            "digest": config_digest.to_string(),
        },
        "layers": layer_descs,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let md = dir.write_blob(&manifest_bytes).unwrap();
    let desc = Descriptor::new(
        MediaType::ImageManifest,
        manifest_bytes.len() as u64,
        md.clone(),
    );
    dir.set_ref(name, &desc).unwrap();
    BuiltImage {
        manifest: md,
        config: config_digest,
        layers,
        diff_ids,
    }
}

/// Builds the image from `tars` and pushes it to `reg` as `repo:tag` with libregistry.
pub async fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    tars: &[Vec<u8>],
    diff_ids: Option<Vec<Digest>>,
) -> BuiltImage {
    let layout = tempdir();
    let dir = DirStore::open(layout.path()).unwrap();
    let built = build_image(&dir, tag, tars, diff_ids);
    let client = Client::new(reg.client_options());
    let dest = format!("{}/{repo}:{tag}", reg.addr).parse().unwrap();
    client
        .push_from_dir(&dir, tag, &dest, &PushOptions::default())
        .await
        .unwrap();
    built
}
