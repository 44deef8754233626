#!/usr/bin/env bash
# Builds the `longshore` binary the scripts run (the README's main job and the benchmark
# scripts) and prints its path on stdout.
#
# Release, and on glibc hosts statically linked (`-C target-feature=+crt-static`; that
# needs an explicit `--target`, so that the build's proc macros stay dynamic libraries,
# hence the path under target/<host>/release). Every `longshore` process then starts
# without the dynamic loader, and each container's monitor, this program re-executed,
# keeps no private copies of the relocated data of libc, libm and libgcc_s: measured here
# with 20 idle monitors, 181 -> 115 KiB of PSS per monitor, and `longshore version`
# 1.25 -> 0.97 ms of CPU. libisal (pull's gzip decoder) and libnftables (published ports) are
# still opened with dlopen, which a static glibc program does with a private copy of libc
# for them (glibc's link-time note about it is silenced in cli/build.rs).
# `cargo build --release -p longshore-cli` gives the same program, dynamically linked.
# LONGSHORE_DYNAMIC=1 builds that one instead.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
dir=${CARGO_TARGET_DIR:-$PWD/target}
host=$(rustc -vV | sed -n 's/^host: //p')
case "$host:${LONGSHORE_DYNAMIC:-0}" in
*-linux-gnu:0)
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --release -q -p longshore-cli --target "$host" >&2
    echo "$dir/$host/release/longshore"
    ;;
*)
    cargo build --release -q -p longshore-cli >&2
    echo "$dir/release/longshore"
    ;;
esac
