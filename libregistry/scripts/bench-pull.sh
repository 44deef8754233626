#!/usr/bin/env bash
# Blobs-only pull from a local docker-registry: `skopeo copy ... oci:` against longshore
# (libregistry's examples/registry-tool, release build), side by side with hyperfine.
#
#   CARGO_TARGET_DIR=/work/target-registry cargo build --release -p longshore-registry --example registry-tool
#   libregistry/scripts/bench-pull.sh            # LAYERS=4 MIB=54 RUNS=5 by default
#
# The image: LAYERS gzip layers of MIB MiB each (a third random, the rest text), about
# 78 MB compressed / 216 MiB unpacked with the defaults. Both tools verify digests and
# write an OCI layout; neither unpacks.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/../target}
TOOL=${TOOL:-$TARGET/release/examples/registry-tool}
LAYERS=${LAYERS:-4}
MIB=${MIB:-54}
RUNS=${RUNS:-5}
[ -x "$TOOL" ] || { echo "build $TOOL first (see the header of this script)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/longshore-bench-XXXXXX)
REG_PID=
cleanup() {
    if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
cat > "$WORK/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/data
http:
  addr: $REG
YAML
docker-registry serve "$WORK/config.yml" 2>"$WORK/registry.log" &
REG_PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.05; done

"$TOOL" gen "$WORK/src" img "$LAYERS" "$MIB"
"$TOOL" push "$WORK/src" img "$REG/bench/img:1" --insecure "$REG" >/dev/null
echo "image: $LAYERS layers, $(du -sb "$WORK/src/blobs" | cut -f1) bytes of blobs (compressed), $((LAYERS * MIB)) MiB unpacked"

hyperfine --warmup 1 --runs "$RUNS" --prepare "rm -rf $WORK/out" \
    -n skopeo "skopeo copy --quiet --src-tls-verify=false docker://$REG/bench/img:1 oci:$WORK/out:1" \
    -n longshore "$TOOL pull $REG/bench/img:1 $WORK/out --insecure $REG" \
    -n longshore-fsync "$TOOL pull $REG/bench/img:1 $WORK/out --insecure $REG --fsync"

echo "peak RSS (KiB):"
rm -rf "$WORK/out"
/usr/bin/time -o "$WORK/rss" -f "%M" skopeo copy --quiet --src-tls-verify=false "docker://$REG/bench/img:1" "oci:$WORK/out:1"
echo "  skopeo    $(cat "$WORK/rss")"
rm -rf "$WORK/out"
/usr/bin/time -o "$WORK/rss" -f "%M" "$TOOL" pull "$REG/bench/img:1" "$WORK/out" --insecure "$REG" >/dev/null 2>&1
echo "  longshore $(cat "$WORK/rss")"
