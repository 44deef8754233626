//! Token (Bearer) auth against a real `docker-registry` that trusts a token issuer
//! running in the test (ES256 JWTs with an x5c certificate the registry trusts).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use longshore_registry::{
    Client, ClientOptions, CredentialStore, Credentials, DirStore, Error, PullOptions, PushOptions,
    Reference,
};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

const SERVICE: &str = "longshore-registry";
const ISSUER: &str = "longshore-issuer";

struct Issuer {
    server: TinyServer,
    cert_pem: String,
    issued: Arc<AtomicUsize>,
}

fn query_params(path: &str) -> Vec<(String, String)> {
    let q = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Issues tokens to `alice:pw` for whatever scopes are asked; `expires_in` as given.
/// The first token is deliberately for the wrong audience when `first_bad` is set.
async fn issuer(expires_in: u64, first_bad: bool) -> Issuer {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["longshore-token".to_string()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let rng = ring::rand::SystemRandom::new();
    let signer =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &kp.serialize_der(), &rng)
            .unwrap();
    let x5c = STANDARD.encode(cert.der());
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let want_auth = Credentials::new("alice", "pw").basic_header();
    let server = TinyServer::start(move |req| {
        if req.headers.get("authorization") != Some(&want_auth) {
            return Reply::new(401, r#"{"details":"bad credentials"}"#);
        }
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let params = query_params(&req.path);
        let access: Vec<serde_json::Value> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .filter_map(|(_, s)| {
                let (typ, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({"type": typ, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let aud = if first_bad && n == 0 { "someone-else" } else { SERVICE };
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": "alice", "aud": aud,
            "exp": now + expires_in, "nbf": now - 10, "iat": now - 10,
            "jti": format!("t{n}"), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = signer.sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes()).unwrap();
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Reply::new(200, serde_json::json!({"token": token, "expires_in": expires_in}).to_string())
            .header("Content-Type", "application/json")
    })
    .await;
    Issuer {
        server,
        cert_pem: cert.pem(),
        issued,
    }
}

fn start_registry(iss: &Issuer) -> Registry {
    Registry::start(RegistryAuth::Token {
        realm: format!("http://{}/token", iss.server.addr),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        cert_pem: iss.cert_pem.clone(),
    })
}

#[tokio::test]
async fn token_auth_login_push_pull_with_cached_tokens() {
    let iss = issuer(300, false).await;
    let reg = start_registry(&iss);
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    let img = build_image(&src, "latest", &[busybox_tar(), random_tar(3, 1 << 20)]);
    let cfg_dir = tempdir();
    let opts = ClientOptions::new()
        .insecure_registries(vec![reg.addr.clone()])
        .credential_store(Some(CredentialStore::new(
            cfg_dir.path().join("config.json"),
        )));
    let dest: Reference = format!("{}/tok/busybox:1", reg.addr).parse().unwrap();

    // Anonymous: the token service refuses, with a clear error.
    let anon = Client::new(opts.clone());
    let e = anon
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let e = anon
        .login(&reg.addr, Credentials::new("alice", "nope"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert_eq!(iss.issued.load(Ordering::SeqCst), 0);

    anon.login(&reg.addr, Credentials::new("alice", "pw"))
        .await
        .unwrap();
    let client = Client::new(opts);
    let before = iss.issued.load(Ordering::SeqCst);
    client
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap();
    // One token for repository:tok/busybox:pull,push, shared by all concurrent uploads.
    assert_eq!(iss.issued.load(Ordering::SeqCst) - before, 1);

    let out_dir = tempdir();
    let out = DirStore::open(out_dir.path()).unwrap();
    let pulled = client
        .pull_to_dir(&dest, &out, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pulled.manifest.digest(), img.manifest.digest());
    for d in img.layers.iter().chain([&img.config]) {
        assert_eq!(out.read_blob(d).unwrap(), src.read_blob(d).unwrap());
    }
    // A second token, for the pull scope; then the cache serves everything.
    assert_eq!(iss.issued.load(Ordering::SeqCst) - before, 2);
    client.tags(&reg.addr, "tok/busybox").await.unwrap();
    assert_eq!(iss.issued.load(Ordering::SeqCst) - before, 2);

    // skopeo, through the same token service, reads exactly what we pushed.
    let sk_dir = tempdir();
    // tokio's Command: the token service runs on this test's runtime thread.
    let out = tokio::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--src-creds",
            "alice:pw",
            &format!("docker://{}/tok/busybox:1", reg.addr),
            &format!("oci:{}:got", sk_dir.path().display()),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = DirStore::open(sk_dir.path()).unwrap();
    assert_eq!(
        theirs.resolve("got").unwrap().digest(),
        img.manifest.digest()
    );
}

#[tokio::test]
async fn rejected_token_is_replaced_once_and_expiry_is_honoured() {
    let iss = issuer(6, true).await;
    let reg = start_registry(&iss);
    let src_dir = tempdir();
    let src = DirStore::open(src_dir.path()).unwrap();
    build_image(&src, "latest", &[random_tar(4, 100_000)]);
    let client = Client::new(ClientOptions::new().insecure_registries(vec![reg.addr.clone()]));
    client.set_credentials(&reg.addr, Credentials::new("alice", "pw"));
    let dest: Reference = format!("{}/tok/retry:1", reg.addr).parse().unwrap();
    // The first token has the wrong audience: the registry answers 401, the client
    // fetches a fresh token once and succeeds.
    client
        .push_from_dir(&src, "latest", &dest, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(iss.issued.load(Ordering::SeqCst), 2);
    client.tags(&reg.addr, "tok/retry").await.unwrap();
    let n = iss.issued.load(Ordering::SeqCst);
    client.tags(&reg.addr, "tok/retry").await.unwrap();
    assert_eq!(
        iss.issued.load(Ordering::SeqCst),
        n,
        "a live token is reused"
    );
    // expires_in is 6 s (cached for 3 s): after it passes the client asks for a new token.
    tokio::time::sleep(Duration::from_millis(6100)).await;
    client.tags(&reg.addr, "tok/retry").await.unwrap();
    assert_eq!(iss.issued.load(Ordering::SeqCst), n + 1);
}
