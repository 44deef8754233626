//! Placeholder until the setup bench lands.
fn main() {}
