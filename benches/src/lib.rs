//! Benchmarks for longshore: criterion benches in `benches/`, comparison scripts in
//! `scripts/` that time longshore side by side with runc, crun, docker and friends.
