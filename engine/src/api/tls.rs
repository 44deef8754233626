//! TLS for tcp:// (`--tls`, `--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`), as
//! dockerd has it: `--tls` encrypts with the server's certificate and key; `--tlsverify`
//! also requires every client to present a certificate signed by `--tlscacert` (the only
//! way to let other hosts in safely: the API is root on this host). With `--tls` alone a
//! CA file given explicitly checks the certificates clients choose to present.
//! Certificates and keys are PEM (PKCS#1, PKCS#8 or SEC1 keys; RSA, ECDSA or Ed25519).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::Error;
use super::server::DaemonOptions;

/// Where dockerd looks for a file not named: `$DOCKER_CERT_PATH/<name>`, else
/// `~/.docker/<name>`.
fn default_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".docker")
        });
    dir.join(name)
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Tls {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            path,
            "holds no certificate (expected BEGIN CERTIFICATE)",
        ));
    }
    Ok(certs)
}

/// The server's TLS configuration for `opts`, or `None` when neither `--tls` nor
/// `--tlsverify` is set.
pub(crate) fn server_config(
    opts: &DaemonOptions,
) -> Result<Option<Arc<rustls::ServerConfig>>, Error> {
    if !opts.tls && !opts.tls_verify {
        return Ok(None);
    }
    let cert_path = opts
        .tls_cert
        .clone()
        .unwrap_or_else(|| default_path("cert.pem"));
    let key_path = opts
        .tls_key
        .clone()
        .unwrap_or_else(|| default_path("key.pem"));
    let chain = certs(&cert_path)?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        bad(
            &key_path,
            format!("not a PEM private key (PKCS#1, PKCS#8 or SEC1): {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&cert_path, e.to_string()))?;
    // the CA: always with --tlsverify; with --tls only when named (optional client certs)
    let ca = match (&opts.tls_ca_cert, opts.tls_verify) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => Some(default_path("ca.pem")),
        (None, false) => None,
    };
    let builder = match ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(&ca_path)? {
                roots
                    .add(c)
                    .map_err(|e| bad(&ca_path, format!("not a usable CA certificate: {e}")))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if opts.tls_verify {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| bad(&ca_path, format!("client verifier: {e}")))?,
            )
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        bad(
            &key_path,
            format!("does not match {}: {e}", cert_path.display()),
        )
    })?;
    Ok(Some(Arc::new(config)))
}
