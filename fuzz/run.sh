#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the stable
# toolchain (no cargo-fuzz or nightly needed) and runs each for SECONDS (default 60).
# Usage: bash fuzz/run.sh [seconds] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(runtime_spec image_reference layer_apply)
triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/fuzz}
# --target keeps the instrumentation off build scripts and proc macros
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --target "$triple" -p longshore-fuzz "${targets[@]/#/--bin=}"
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" fuzz/artifacts
    echo "== $t for ${secs}s"
    "$CARGO_TARGET_DIR/$triple/release/$t" -max_total_time="$secs" -rss_limit_mb=2048 \
        -max_len=65536 -artifact_prefix="fuzz/artifacts/$t-" "fuzz/corpus/$t"
done
