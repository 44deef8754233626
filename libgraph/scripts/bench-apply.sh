#!/bin/sh
# Issue 3's goal, measured: applying a gzip layer with longshore-graph (decompress + both
# sha256 digests + extract) against `pigz -dc` (decompression only) and `tar -xzf`, side by
# side with hyperfine on the same layer. Every extraction goes to a fresh directory
# (re-creating files right after deleting them is slow on this ext4); all trees are removed
# only at the end, after the timing. `sync` before each run keeps dirty-page writeback of
# earlier runs from throttling later ones.
#
#   libgraph/scripts/bench-apply.sh [LAYER.tar.gz]
#   ROUNDS=3 RUNS=7 (defaults): ROUNDS hyperfine rounds of RUNS runs each.
#   SETTLE=70: sync and wait that many seconds first. Without a journal, ext4 skips inodes
#   freed in the last 60 s (360 s while their inode table block is dirty) when it allocates
#   new ones, and that scan (recently_deleted, find_get_block) makes every file creation
#   slower after a large `rm -rf` on the same filesystem, by anyone.
#
# Prints each round's table and, per round and as the median over rounds, the ratio of the
# median times longshore/pigz (the goal is <= 1.00) and tar/pigz.
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
"$apply" "$layer" "$work/check" || { echo "longshore apply failed" >&2; exit 1; }
echo "layer: $(find "$work/check" | wc -l) paths, $(du -sm "$work/check" | cut -f1) MB; nproc $(nproc); load $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$work/out"
sync
sleep "${SETTLE:-0}"
rounds=${ROUNDS:-3}
: > "$work/ratios"
i=1
while [ "$i" -le "$rounds" ]; do
    hyperfine --warmup 1 --runs "${RUNS:-7}" --prepare sync --style basic \
        --export-markdown "$work/result.md" --export-csv "$work/result.csv" \
        -n "pigz -dc" "pigz -dc '$layer' > /dev/null" \
        -n "tar -xzf" "d=\$(mktemp -d -p '$work/out'); tar -xzf '$layer' -C \$d" \
        -n "longshore apply" "d=\$(mktemp -d -p '$work/out'); '$apply' '$layer' \$d 2>/dev/null" \
        > "$work/hyperfine.log"
    cat "$work/result.md"
    # csv: command,mean,stddev,median,user,system,min,max (seconds)
    awk -F, -v round="$i" '
        NR > 1 { med[$1] = $4; mean[$1] = $2; min[$1] = $7 }
        END {
            p = med["pigz -dc"]; l = med["longshore apply"]; t = med["tar -xzf"]
            printf "round %d medians: pigz -dc %.0f ms, longshore apply %.0f ms (min %.0f), tar -xzf %.0f ms; longshore/pigz %.2f, tar/pigz %.2f\n", round, p * 1000, l * 1000, min["longshore apply"] * 1000, t * 1000, l / p, t / p
            printf "%.4f %.4f %.4f %.4f %.4f\n", l / p, t / p, p, l, t > "/dev/stderr"
        }' "$work/result.csv" 2>> "$work/ratios"
    i=$((i + 1))
done
sort -n "$work/ratios" | awk '
    { r[NR] = $1; t[NR] = $2; p[NR] = $3; l[NR] = $4; x[NR] = $5 }
    END {
        m = int((NR + 1) / 2)
        printf "median over %d rounds: longshore/pigz %.2f (pigz %.0f ms, longshore %.0f ms, tar %.0f ms in that round); goal longshore/pigz <= 1.00: %s\n", NR, r[m], p[m] * 1000, l[m] * 1000, x[m] * 1000, (r[m] <= 1.0 ? "MET" : "NOT MET")
    }'
