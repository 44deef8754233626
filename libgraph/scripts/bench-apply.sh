#!/bin/sh
# Compares applying a gzip layer with longshore-graph against `pigz -dc` (decompression only)
# and `tar -xzf`. Every extraction goes to a fresh directory (re-creating files right after
# deleting them is slow on this ext4), all removed at the end; `sync` before each run keeps
# dirty-page writeback of earlier runs from throttling later ones.
#
#   libgraph/scripts/bench-apply.sh [LAYER.tar.gz]
#
# Without an argument a ~128 MB / ~10k file layer is built from /usr (python3, perl, vim,
# headers): about the 106 MB tar / 35 MB gzip layer of issue 3.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
work=$(mktemp -d /tmp/longshore-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
layer=${1:-}
if [ -z "$layer" ]; then
    layer=$work/layer.tar.gz
    (cd / && tar -cf - usr/lib/python3 usr/share/perl usr/share/i18n usr/share/zoneinfo \
        usr/share/vim usr/include/linux usr/include/x86_64-linux-gnu 2>/dev/null) | pigz -6 > "$layer"
fi
(cd "$here" && cargo build --release -q -p longshore-graph --example apply)
apply=$target/release/examples/apply
ls -l "$layer"
mkdir -p "$work/out"
hyperfine --warmup 1 --runs "${RUNS:-7}" --prepare sync --export-markdown "$work/result.md" \
    -n "pigz -dc" "pigz -dc '$layer' > /dev/null" \
    -n "tar -xzf" "d=\$(mktemp -d -p '$work/out'); tar -xzf '$layer' -C \$d" \
    -n "longshore apply" "d=\$(mktemp -d -p '$work/out'); '$apply' '$layer' \$d 2>/dev/null"
cat "$work/result.md"
