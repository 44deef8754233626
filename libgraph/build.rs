//! Builds the ISA-L inflate shim when the library is there (Debian: `libisal-dev`).
//!
//! With it, gzip layers are decompressed by ISA-L's igzip (about 3x zlib here); without it
//! (or with `LONGSHORE_NO_ISAL=1`, or when `libisal.so.2` does not open at run time), by
//! zlib-rs through flate2. `cfg(longshore_isal)` tells
//! the code which one it has; `longshore_graph::gzip_backend()` tells a program.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(longshore_isal)");
    println!("cargo::rerun-if-changed=csrc/isal_shim.c");
    println!("cargo::rerun-if-env-changed=LONGSHORE_NO_ISAL");
    if std::env::var_os("LONGSHORE_NO_ISAL").is_some_and(|v| v != "0") {
        return;
    }
    let have_lib = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ]
    .iter()
    .any(|d| std::path::Path::new(d).join("libisal.so").exists());
    if !have_lib {
        println!(
            "cargo::warning=libisal not found (Debian: apt-get install libisal-dev); gzip layers use zlib-rs"
        );
        return;
    }
    match cc::Build::new()
        .file("csrc/isal_shim.c")
        .warnings(true)
        .opt_level(2)
        .try_compile("longshore_isal_shim")
    {
        Ok(()) => {
            // opened with dlopen on first use (see the shim), not linked
            println!("cargo::rustc-link-lib=dylib=dl");
            println!("cargo::rustc-cfg=longshore_isal");
        }
        Err(e) => {
            println!("cargo::warning=ISA-L shim did not build ({e}); gzip layers use zlib-rs")
        }
    }
}
