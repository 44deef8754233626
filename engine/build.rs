//! Builds `longshore-init` (engine/init/longshore-init.rs), the `--init` process, as a
//! static executable with the same compiler, so that it runs in any image. The engine
//! embeds it and writes it under its root on first use.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "init/longshore-init.rs";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let bin = out.join("longshore-init");
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--crate-name",
            "longshore_init",
        ])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "target-feature=+crt-static", "-C", "debuginfo=0"])
        .args(["--target", &target])
        .arg("-o")
        .arg(&bin)
        .arg(src)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run rustc for longshore-init");
    assert!(status.success(), "building longshore-init failed");
}
