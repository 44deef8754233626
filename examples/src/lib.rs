//! Example programs built on longshore's crates. See `src/bin/`.
