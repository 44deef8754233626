//! Test fixtures: a real `docker-registry` process, generated images, a tiny HTTP server.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use longshore_registry::{Digest, DirStore, REF_NAME_ANNOTATION, sha256_digest};
use oci_spec::image::{Descriptor, MediaType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("longshore-reg-")
        .tempdir()
        .expect("tempdir")
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the registry authenticates.
pub enum RegistryAuth {
    Open,
    Basic {
        user: String,
        pass: String,
    },
    Token {
        realm: String,
        service: String,
        issuer: String,
        cert_pem: String,
    },
}

/// A `docker-registry` process on 127.0.0.1; killed on drop.
pub struct Registry {
    server: longshore_test_support::registry::RegistryServer,
    pub addr: String,
}

impl Registry {
    pub fn start(auth: RegistryAuth) -> Registry {
        Self::start_with(auth, None)
    }

    /// `tls`: (certificate PEM, key PEM) to serve HTTPS; with `client_ca`, client
    /// certificates signed by it are required.
    pub fn start_with(
        auth: RegistryAuth,
        tls: Option<(String, String, Option<String>)>,
    ) -> Registry {
        let dir = tempdir();
        let tls_yaml = match tls {
            None => String::new(),
            Some((cert, key, client_ca)) => {
                std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
                std::fs::write(dir.path().join("tls.key"), key).unwrap();
                let mut y = format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.path().join("tls.crt").display(),
                    dir.path().join("tls.key").display()
                );
                if let Some(ca) = client_ca {
                    std::fs::write(dir.path().join("client-ca.crt"), ca).unwrap();
                    y.push_str(&format!(
                        "    clientcas:\n      - {}\n",
                        dir.path().join("client-ca.crt").display()
                    ));
                }
                y
            }
        };
        let auth_yaml = match &auth {
            RegistryAuth::Open => String::new(),
            RegistryAuth::Basic { user, pass } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .expect("htpasswd (apache2-utils) must be installed");
                assert!(out.status.success());
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                    path.display()
                )
            }
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                cert_pem,
            } => {
                let path = dir.path().join("root.pem");
                std::fs::write(&path, cert_pem).unwrap();
                format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                    path.display()
                )
            }
        };
        let server = longshore_test_support::registry::RegistryServer::start(
            dir,
            &format!("{tls_yaml}{auth_yaml}"),
        );
        let addr = server.addr.clone();
        Registry { server, addr }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
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

/// A tar with one file of pseudo-random (incompressible) bytes.
pub fn random_tar(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(len as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, format!("data-{seed}.bin"), &data[..])
        .unwrap();
    b.into_inner().unwrap()
}

/// An OCI descriptor's digest as this crate's [`Digest`].
pub fn dig(d: &oci_spec::image::Digest) -> Digest {
    Digest::try_from(d).expect("a sha256 descriptor digest")
}

pub struct BuiltImage {
    pub manifest: Descriptor,
    pub config: Digest,
    pub layers: Vec<Digest>,
}

/// Writes an OCI image (gzip layers from `tars`, a config, a manifest) into `dir` as `name`.
pub fn build_image(dir: &DirStore, name: &str, tars: &[Vec<u8>]) -> BuiltImage {
    let mut layers = Vec::new();
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for t in tars {
        diff_ids.push(sha256_digest(t).to_string());
        let gz = gzip(t);
        let d = dir.write_blob(&gz).unwrap();
        layer_descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "size": gz.len(),
            "digest": d.to_string(),
        }));
        layers.push(d);
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": [format!("NAME={name}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
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
    let desc = Descriptor::new(MediaType::ImageManifest, manifest_bytes.len() as u64, md);
    dir.set_ref(name, &desc).unwrap();
    BuiltImage {
        manifest: dir.resolve(name).unwrap(),
        config: config_digest,
        layers,
    }
}

/// Files under `blobs/sha256` and `ingest` of a layout.
pub fn blob_files(root: &Path) -> (Vec<String>, Vec<PathBuf>) {
    let blobs = std::fs::read_dir(root.join("blobs/sha256"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let ingest = std::fs::read_dir(root.join("ingest"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    (blobs, ingest)
}

pub fn unref(desc: &Descriptor) -> Descriptor {
    let mut d = desc.clone();
    if let Some(mut a) = d.annotations().clone() {
        a.remove(REF_NAME_ANNOTATION);
        d.set_annotations(if a.is_empty() { None } else { Some(a) });
    }
    d
}

// ---- a tiny HTTP/1.1 server for hostile registries and the token issuer ----

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

pub enum Body {
    Full(Vec<u8>),
    /// Declares the full length but sends only the first `n` bytes, then closes.
    Truncated(Vec<u8>, usize),
    /// Sends the first `n` bytes then waits forever.
    Stall(Vec<u8>, usize),
    /// No Content-Length: the body ends when the connection closes.
    Unsized(Vec<u8>),
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Full(body.into()),
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: Body) -> Reply {
        self.body = b;
        self
    }
}

type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

pub struct TinyServer {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TinyServer {
    pub async fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> TinyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let reqs = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    let head_end = loop {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                        // A TLS hello (the client probing https first): not for us.
                        if buf[0] == 0x16 {
                            return;
                        }
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                        if buf.len() > 65536 {
                            return;
                        }
                    };
                    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
                        return;
                    };
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let (Some(method), Some(path)) = (first.next(), first.next()) else {
                        return;
                    };
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    // Drain a request body we do not use.
                    let want: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut have = buf.len() - head_end - 4;
                    while have < want {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => have += n,
                        }
                    }
                    let req = Req {
                        method: method.into(),
                        path: path.into(),
                        headers,
                    };
                    reqs.lock().unwrap().push(req.clone());
                    let reply = handler(&req);
                    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
                    for (k, v) in &reply.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    let (data, send, stall) = match reply.body {
                        Body::Full(b) => {
                            out.push_str(&format!("Content-Length: {}\r\n", b.len()));
                            let n = b.len();
                            (b, n, false)
                        }
                        Body::Truncated(b, n) => {
                            out.push_str(&format!("Content-Length: {}\r\n", b.len()));
                            (b, n, false)
                        }
                        Body::Stall(b, n) => {
                            out.push_str(&format!("Content-Length: {}\r\n", b.len()));
                            (b, n, true)
                        }
                        Body::Unsized(b) => {
                            let n = b.len();
                            (b, n, false)
                        }
                    };
                    out.push_str("\r\n");
                    if sock.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                    if method != "HEAD" {
                        let _ = sock.write_all(&data[..send.min(data.len())]).await;
                    }
                    let _ = sock.flush().await;
                    if stall {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        TinyServer {
            addr,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}
