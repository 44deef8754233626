//! TLS for registry connections: rustls with the `ring` provider, the platform's roots
//! plus per-host CAs from a Docker-style `certs.d/<host[:port]>/` directory
//! (`*.crt` CAs, `*.cert` + `*.key` client certificate), or no verification at all for
//! registries configured as insecure.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, Result};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls configuration for `host` (`host[:port]`).
pub(crate) fn client_config(
    host: &str,
    certs_dir: Option<&Path>,
    insecure: bool,
) -> Result<ClientConfig> {
    let tls_err = |reason: String| Error::Tls {
        registry: host.to_string(),
        reason,
    };
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    let mut extra_roots = Vec::new();
    let mut client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> = None;
    if let Some(dir) = certs_dir.map(|d| d.join(host))
        && dir.is_dir()
    {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| tls_err(format!("{}: {e}", dir.display())))?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in &entries {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "crt" {
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| tls_err(format!("{}: {e}", path.display())))?
                {
                    extra_roots
                        .push(cert.map_err(|e| tls_err(format!("{}: {e}", path.display())))?);
                }
            } else if ext == "cert" {
                let key_path = path.with_extension("key");
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
                let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
                    tls_err(format!(
                        "client certificate {} needs its key {}: {e}",
                        path.display(),
                        key_path.display()
                    ))
                })?;
                client_cert = Some((certs, key));
            }
        }
    }
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider)
                .map_err(|e| tls_err(e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    let mut config = match client_cert {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls_err(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any server certificate (for `--insecure-registry` hosts only).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
