//! Links `longshore` as a position-dependent executable: its monitors (one per running
//! container, this program re-executed) then share the relocated read-only data with each
//! other instead of each writing a private copy at start (about 0.5 MB per process).
//!
//! It is linked by GNU ld rather than rustc's default lld: lld lays out the GOT and `.bss`
//! so that the dynamic relocations dirty two more pages, 8 KiB of private memory in every
//! monitor (measured with `benches/scripts/engine-compare.sh`'s 50 monitors). The last
//! `-fuse-ld` given to the compiler driver wins, and toolchains that link with GNU ld
//! already are unaffected.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rustc-link-arg-bins=-fuse-ld=bfd");
    // Statically linked (`scripts/build-longshore.sh`), glibc's link-time notes that
    // getaddrinfo and dlopen (libnftables, libisal) need the same glibc at run time, true
    // of a binary built where it runs, would be printed by every build.
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if features.split(',').any(|f| f == "crt-static") {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warnings");
    }
}
