//! HTTPS registries: CAs and client certificates from a `certs.d` directory, and
//! `--insecure-registry` skipping verification.

mod common;

use common::*;
use longshore_registry::{
    Client, ClientOptions, DirStore, Error, PullOptions, PushOptions, Reference,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["longshore-client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: (server.pem(), server_key.serialize_pem()),
        client: (client.pem(), client_key.serialize_pem()),
    }
}

#[tokio::test]
async fn certs_d_ca_and_client_certificate() {
    let pki = pki();
    let reg = Registry::start_with(
        RegistryAuth::Open,
        Some((
            pki.server.0.clone(),
            pki.server.1.clone(),
            Some(pki.ca_pem.clone()),
        )),
    );
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    let img = build_image(&src, "latest", &[random_tar(30, 100_000)]);
    let dest: Reference = format!("{}/tls/app:1", reg.addr).parse().unwrap();

    // Unknown CA: a clear TLS failure, nothing sent.
    let e = Client::default()
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Http { .. }), "{e}");
    assert!(e.to_string().contains(&reg.addr), "{e}");

    // certs.d/<host:port>/ca.crt trusted, but no client certificate: refused.
    let certs = tempdir();
    let host_dir = certs.path().join(&reg.addr);
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("ca.crt"), &pki.ca_pem).unwrap();
    let opts = ClientOptions::new().certs_dir(Some(certs.path().to_path_buf()));
    let e = Client::new(opts.clone())
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Http { .. }), "{e}");

    // With client.cert + client.key: push and pull work over verified TLS.
    std::fs::write(host_dir.join("client.cert"), &pki.client.0).unwrap();
    std::fs::write(host_dir.join("client.key"), &pki.client.1).unwrap();
    let client = Client::new(opts);
    client
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap();
    let out_dir = tempdir();
    let out = DirStore::open(out_dir.path()).unwrap();
    let pulled = client
        .pull_to_dir(&dest, &out, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest(), img.manifest.digest());

    // A client.cert without its key is a clear configuration error.
    std::fs::remove_file(host_dir.join("client.key")).unwrap();
    let e = Client::new(ClientOptions::new().certs_dir(Some(certs.path().to_path_buf())))
        .ping(&reg.addr)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e}");
    assert!(e.to_string().contains("client.key"), "{e}");
}

#[tokio::test]
async fn insecure_registry_skips_verification() {
    let pki = pki();
    let reg = Registry::start_with(RegistryAuth::Open, Some((pki.server.0, pki.server.1, None)));
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    let img = build_image(&src, "latest", &[random_tar(31, 100_000)]);
    let dest: Reference = format!("{}/tls/insecure:1", reg.addr).parse().unwrap();
    let client = Client::new(ClientOptions::new().insecure_registries(vec![reg.addr.clone()]));
    client
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap();
    let out_dir = tempdir();
    let out = DirStore::open(out_dir.path()).unwrap();
    let pulled = client
        .pull_to_dir(&dest, &out, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest(), img.manifest.digest());
}
