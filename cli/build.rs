//! Links `longshore` as a position-dependent executable: its monitors (one per running
//! container, this program re-executed) then share the relocated read-only data with each
//! other instead of each writing a private copy at start (about 0.5 MB per process).

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
