#!/usr/bin/env bash
# Pull-with-unpack benchmark (issue 4): builds a 4-layer image (~78 MB gzip, ~216 MB
# unpacked, 10,000 files: incompressible and repetitive text files), pushes it with skopeo
# to a local docker-registry (free port, temporary storage, killed at exit), then times with
# hyperfine:
#   * skopeo copy docker://... oci:DIR     (download only: blobs, no unpacking)
#   * engine/examples/pull                 (longshore: download + unpack into a fresh
#                                           libgraph store with the overlay driver)
#   * docker pull / podman pull            (only when a daemon/podman is usable)
# and reports the peak RSS of one run of each (/usr/bin/time -v).
#
# Usage: engine/scripts/bench-pull-unpack.sh [RUNS]   (needs root for the overlay driver)
# SETUP_ONLY=1: build and push the image, then keep the registry running (for manual runs).
# COMPARE_BIN=PATH: also times that build of engine/examples/pull (an older commit's) the same
# way, right after this one's, so that two builds are compared in the same window.
#
# Measured 2026-12-04, session 10 (h-pull), 10 runs, SETTLE=300, load 1.71 before timing,
# COMPARE_BIN = session 9's build: longshore pull + unpack 629.5 +- 72.1 ms (494-748 ms,
# median 628; user 0.34 s, sys 0.38 s), session 9's build 607.1 +- 43.9 ms (527-668 ms,
# median 602; user 0.29 s, sys 0.41 s), skopeo copy (download only) 314.4 ms, podman
# 3.16 s; peak RSS 22.5 MB (session 9: 52.7 MB; skopeo 21.5 MB). The 0.6 s goal was not
# met. Runs spread over three regimes of system time for one pull: ~0.4-0.7 s when the
# page-cache pages it writes into were just freed by someone, ~1.1 s when they are memory
# the VM gave back to its host (a first touch then costs a host fault:
# copy_folio_from_iter_atomic 32-36 % of the samples, against 5 %), and 1.6-3 s within
# minutes of a mass deletion on this ext4 without a journal (inode allocation skips and
# looks up recently deleted inodes: 53 % of the samples). With a 70-120 s settle, the
# same two builds averaged 1.03-1.30 s when the bench started within minutes of a mass
# deletion (the previous bench's cleanup, A/B stores; sys 1.6-2.1 s). Dirty throttling
# never fires (313 MB dirtied per pull, threshold 4.3 GB). Interleaved pairs under load
# 5-8: 0.908 -> 0.708 s, 0.948 -> 0.854 s, 0.771 -> 0.678 s (fewer, smaller unpack
# buffers: 15.6k -> 5.0k page faults per pull); in the quiet window above the two builds
# are within noise. Session 2 measured 524.7 +- 27.4
# ms on a quiet machine, session 9 648.5 +- 205.4 ms (its closing run).
# Since session 8: downloads never wait for their unpacks (each unpack follows its blob's
# ingest file), the config takes no layer download slot, and the blob pages an unpack has
# read leave the page cache. podman's timing used to include 'podman rmi -f' (and deleted
# an image between timed runs); it now pulls into a fresh --root per run.
# Every compressed layer unpacks from its bytes as it downloads (all four at once, overlay
# staged layers), each blob is hashed once, gzip is ISA-L's. docker (no daemon) is skipped.
set -euo pipefail

RUNS=${1:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-engine}
for tool in hyperfine skopeo docker-registry pigz python3 sha256sum; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

WORK=$(mktemp -d /var/tmp/longshore-bench-pull.XXXXXX)
REG_PID=
cleanup() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
  # Stores hold no mounts (pull mounts nothing), so this is a plain delete.
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building the example (release)"
cargo build --release -q -p longshore-engine --example pull --manifest-path "$REPO/Cargo.toml"
PULL_BIN=$CARGO_TARGET_DIR/release/examples/pull

echo "== generating 4 layers in $WORK"
cat > "$WORK/gen.py" <<'PY'
import os, random, sys
root, layer = sys.argv[1], int(sys.argv[2])
RND_FILES, RND_SIZE, TXT_FILES, TXT_SIZE = 500, 38500, 2000, 17600
rng = random.Random(layer)
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega".split()
block = "".join(" ".join(rng.choice(words) for _ in range(8)) + "\n" for _ in range(40))
for i in range(RND_FILES + TXT_FILES):
    d = os.path.join(root, f"d{i % 50:02d}")
    os.makedirs(d, exist_ok=True)
    if i < RND_FILES:
        name, data = f"r{layer}-{i:05d}.bin", os.urandom(RND_SIZE)
    else:
        name = f"t{layer}-{i:05d}.txt"
        data = (f"layer {layer} file {i}\n" + block * (TXT_SIZE // len(block) + 1))[:TXT_SIZE].encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
PY
LAYOUT=$WORK/layout
mkdir -p "$LAYOUT/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' > "$LAYOUT/oci-layout"
DIFF_IDS=() LAYERS=() UNPACKED=0 COMPRESSED=0
for n in 0 1 2 3; do
  src=$WORK/src/layer$n
  mkdir -p "$src"
  python3 "$WORK/gen.py" "$src" "$n"
  tar -C "$src" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$WORK/layer$n.tar" .
  DIFF_IDS+=("sha256:$(sha256sum "$WORK/layer$n.tar" | cut -d' ' -f1)")
  UNPACKED=$((UNPACKED + $(du -sb "$src" | cut -f1)))
  pigz -6 -c "$WORK/layer$n.tar" > "$WORK/layer$n.tar.gz"
  hex=$(sha256sum "$WORK/layer$n.tar.gz" | cut -d' ' -f1)
  size=$(stat -c %s "$WORK/layer$n.tar.gz")
  COMPRESSED=$((COMPRESSED + size))
  mv "$WORK/layer$n.tar.gz" "$LAYOUT/blobs/sha256/$hex"
  # the source trees stay until the end: deleting 10k files right before the timing
  # makes every file creation of the next ~60 s slower on this ext4 (recently_deleted)
  LAYERS+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$hex\",\"size\":$size}")
done
ids=$(printf '"%s",' "${DIFF_IDS[@]}"); ids=${ids%,}
printf '{"architecture":"amd64","os":"linux","created":"2026-11-27T00:00:00Z","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$ids" > "$WORK/config.json"
chex=$(sha256sum "$WORK/config.json" | cut -d' ' -f1); csize=$(stat -c %s "$WORK/config.json")
mv "$WORK/config.json" "$LAYOUT/blobs/sha256/$chex"
layers=$(printf '%s,' "${LAYERS[@]}"); layers=${layers%,}
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' "$chex" "$csize" "$layers" > "$WORK/manifest.json"
mhex=$(sha256sum "$WORK/manifest.json" | cut -d' ' -f1); msize=$(stat -c %s "$WORK/manifest.json")
mv "$WORK/manifest.json" "$LAYOUT/blobs/sha256/$mhex"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' "$mhex" "$msize" > "$LAYOUT/index.json"
echo "image: 4 layers, 10000 files, $((COMPRESSED / 1000000)) MB compressed, $((UNPACKED / 1000000)) MB unpacked (file content)"

echo "== starting docker-registry"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADDR=127.0.0.1:$PORT
cat > "$WORK/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: $ADDR
  secret: longshore-bench
YML
docker-registry serve "$WORK/registry.yml" 2>"$WORK/registry.log" &
REG_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
REF=$ADDR/bench/big:v1
skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:v1" "docker://$REF"
echo "pushed $REF"
if [ -n "${SETUP_ONLY:-}" ]; then
  echo "SETUP_ONLY: registry $ADDR (pid $REG_PID) serves $REF until this script is stopped"
  wait "$REG_PID"
  exit 0
fi

echo "$ADDR" > "$WORK/addr"
echo 0 > "$WORK/ctr"
mkdir -p "$WORK/stores" "$WORK/skopeo"
# Each run pulls into a fresh directory (never re-created right after a delete: see
# common.md on this ext4); old trees are deleted after timing.
LS_CMD="n=\$((\$(cat $WORK/ctr)+1)); echo \$n > $WORK/ctr; exec $PULL_BIN --quiet --driver overlay --insecure $ADDR --root $WORK/stores/\$n $REF"
SK_CMD="n=\$((\$(cat $WORK/ctr)+1)); echo \$n > $WORK/ctr; exec skopeo copy -q --src-tls-verify=false docker://$REF oci:$WORK/skopeo/\$n:v1"
CMDS=(-n "skopeo copy (download only)" "bash -c '$SK_CMD'"
      -n "longshore pull + unpack (overlay)" "bash -c '$LS_CMD'")
if [ -n "${COMPARE_BIN:-}" ]; then
  CMP_CMD=${LS_CMD//"$PULL_BIN"/"$COMPARE_BIN"}
  CMDS+=(-n "longshore pull + unpack (overlay), $COMPARE_BIN" "bash -c '$CMP_CMD'")
fi
if docker info >/dev/null 2>&1; then
  CMDS+=(-n "docker pull" "docker pull -q $REF >/dev/null; docker rmi -f $REF >/dev/null")
  echo "note: docker pull needs $ADDR in the daemon's insecure-registries (127.0.0.0/8 is by default)"
else
  echo "note: docker is not usable here (no daemon): skipped"
fi
if command -v podman >/dev/null; then
  # into a fresh storage root per run too (as longshore's): no rmi timed with the pull, no
  # deletion between timed runs
  mkdir -p "$WORK/podman"
  PM_CMD="n=\$((\$(cat $WORK/ctr)+1)); echo \$n > $WORK/ctr; exec podman --root $WORK/podman/\$n/root --runroot $WORK/podman/\$n/run --storage-driver overlay pull -q --tls-verify=false $REF >/dev/null"
  CMDS+=(-n "podman pull (overlay)" "bash -c '$PM_CMD'")
else
  echo "note: podman is not installed: skipped"
fi

echo "== timing ($RUNS runs each, 1 warmup)"
# SETTLE (default 300 s): let writeback of the generated image and any recent deletions on
# this filesystem (by anyone: the last bench's own cleanup too) age out first. ext4 without
# a journal passes over inodes deleted in the last 60 s, 300 s while their inode table
# block is dirty, and a pull creating 10,000 files then pays 1.6-3 s of system time
# instead of ~0.4: a cost of the deletion, not of the pull. 70 s was too short for that.
sync
sleep "${SETTLE:-300}"
echo "load before timing: $(cut -d' ' -f1-3 /proc/loadavg)"
hyperfine --prepare sync --warmup 1 --runs "$RUNS" --export-markdown "$WORK/results.md" \
  --export-json "$WORK/results.json" "${CMDS[@]}"
cat "$WORK/results.md"
# every run in order, and the median: on this VM a few runs land in a slow regime (see above)
python3 - "$WORK/results.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    times = " ".join(f"{t * 1000:.0f}" for t in r["times"])
    print(f"{r['command']}: median {r['median'] * 1000:.1f} ms; runs in order (ms): {times}")
PY

echo "== peak memory (one more run each)"
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ {printf "%.1f MB\n", $2/1024}'; }
echo "skopeo copy:      $(rss bash -c "$SK_CMD")"
echo "longshore pull:   $(rss bash -c "$LS_CMD")"

echo "== one verbose longshore pull (timeline)"
"$PULL_BIN" --driver overlay --insecure "$ADDR" --root "$WORK/stores/verbose" "$REF"

# The exit trap stops the registry first, then deletes every tree (slow on this ext4).
