//! `longshore-runtime`: runc's command line over `longshore-container`.

fn main() {
    eprintln!("longshore-runtime: not built yet");
    std::process::exit(1);
}
