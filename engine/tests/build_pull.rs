//! The build job pulls the images a build uses: a missing base is pulled before the build
//! (as Docker's builder does), `pull` (`--pull`) asks the registry again when the base is
//! present, and a base the registry does not have fails the build naming it and leaves
//! nothing. A real `docker-registry` on loopback; no RUN steps (no containers).

mod common;

use common::{Registry, busybox_tar, files_tar, push_image, tempdir};
use longshore_engine::build::{BuildContext, BuildOptions};
use longshore_engine::{Engine, EngineOptions};
use longshore_test_support::require_root;

fn build(
    engine: &Engine,
    ctx: &BuildContext,
    df: &str,
    pull: bool,
) -> (Result<String, String>, String) {
    let opts = BuildOptions {
        dockerfile: df.into(),
        tags: vec!["child:1".into()],
        pull,
        ..BuildOptions::default()
    };
    let mut out = Vec::new();
    let r = engine
        .build(ctx, &opts, &mut out)
        .map(|b| b.id.to_string())
        .map_err(|e| e.to_string());
    (r, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn bases_are_pulled_when_missing_and_with_pull() {
    require_root!();
    let reg = Registry::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tars = vec![busybox_tar(), files_tar(&[("etc/from-registry", b"yes\n")])];
    rt.block_on(push_image(&reg, "lsbuild/base", "1", &tars, None));
    let root = tempdir();
    let engine = Engine::open(
        root.path().join("root"),
        EngineOptions {
            client: reg.client_options(),
            ..Default::default()
        },
    )
    .unwrap();
    let ctxdir = root.path().join("ctx");
    std::fs::create_dir(&ctxdir).unwrap();
    std::fs::write(ctxdir.join("f"), "context file\n").unwrap();
    let ctx = BuildContext::dir(&ctxdir).unwrap();
    let name = format!("{}/lsbuild/base:1", reg.addr);
    let df = format!("FROM {name}\nCOPY f /f\nLABEL built=yes\n");

    let (r, out) = build(&engine, &ctx, &df, false);
    r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(out.contains(&format!("Pulling {name}")), "{out}");
    assert!(
        engine.inspect_image(&name).is_ok(),
        "the base is not in the store"
    );
    let v = engine.inspect_image("child:1").unwrap();
    assert_eq!(v["Config"]["Labels"]["built"], "yes", "{v}");

    // present: not pulled again; with pull: asked again and up to date
    let (r, out) = build(&engine, &ctx, &df, false);
    r.unwrap();
    assert!(!out.contains("Pulling"), "{out}");
    let (r, out) = build(&engine, &ctx, &df, true);
    r.unwrap();
    assert!(
        out.contains(&format!("Pulling {name}")) && out.contains("up to date"),
        "{out}"
    );

    // a base the registry does not have: the error names it, nothing is made
    let before = engine.list_images_all(&[], true).unwrap().len();
    let missing = format!("{}/lsbuild/nothing:1", reg.addr);
    let opts = BuildOptions {
        dockerfile: format!("FROM {missing}\nCOPY f /f\n"),
        tags: vec!["nobase:1".into()],
        ..BuildOptions::default()
    };
    let err = engine
        .build(&ctx, &opts, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("lsbuild/nothing"), "{err}");
    assert_eq!(engine.list_images_all(&[], true).unwrap().len(), before);
    assert!(engine.inspect_image("nobase:1").is_err());
}
