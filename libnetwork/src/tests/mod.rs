//! The crate's root tests: real namespaces, bridges, veths and nftables rules (they need
//! root and skip otherwise, or fail with `LONGSHORE_REQUIRE_ROOT=1`). They live inside the
//! crate because they check internals (netlink listings, rule tags, the nf_tables socket)
//! that are not part of the public API.

#![allow(clippy::unwrap_used)]

mod bridge;
#[allow(dead_code)]
mod common;
mod isolation;
mod names;
mod netlink;
mod reopen;
mod teardown;
