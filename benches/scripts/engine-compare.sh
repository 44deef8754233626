#!/usr/bin/env bash
# The engine and CLI figures of issues 10 and 11, beside podman and docker when they are
# installed (Debian's podman; docker.io with a private dockerd on its own root and socket):
#   - `run --rm --network none busybox true`, whole CLI process
#   - the same on the default bridge (inside a private network namespace, so the host's
#     network and nftables are left alone)
#   - 50 detached `sleep` containers one after another: time each, and the supervision
#     memory (PSS of every longshore process outside the containers' cgroups) per container
#   - `ps -a` with 100 and 1000 containers, `version`
# Usage: bash benches/scripts/engine-compare.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-50}
bash scripts/deps.sh
cargo build --release -q -p longshore-cli
L=${CARGO_TARGET_DIR:-$PWD/target}/release/longshore
work=$(mktemp -d /tmp/longshore-ebench-XXXXXX)
ns=lseb$$
export LONGSHORE_ROOT=$work/root LONGSHORE_BRIDGE=lsebr$$
cleanup() {
    for id in $("$L" ps -aq --no-trunc 2>/dev/null); do "$L" rm -f "$id" >/dev/null 2>&1 || true; done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"$L" import "$work/busybox.tar" busybox:latest >/dev/null
ip netns add "$ns"
ip -n "$ns" link set lo up
NS="nsenter --net=/run/netns/$ns"
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== run --rm --network none busybox true (CLI, whole process)"
cmds=("$L run --rm --network none busybox true")
command -v podman >/dev/null && cmds+=("podman run --rm --network none busybox true")
hyperfine -N -w 3 -r "$runs" "${cmds[@]}" 2>&1 | grep -E 'Time|Range|±|run --rm'

echo "== run --rm busybox true on the default bridge (in netns $ns)"
hyperfine -N -w 3 -r "$runs" "$NS $L run --rm busybox true" 2>&1 | grep -E 'Time|Range'

echo "== 50 detached sleep containers, one after another"
start=$(date +%s%N)
for i in $(seq 1 50); do "$L" run -d --network none busybox sleep 1000 >/dev/null; done
end=$(date +%s%N)
echo "per container: $(( (end - start) / 50000 )) us"
pss=0
for p in $(pgrep -f '^longshore-monitor'); do
    kb=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    pss=$((pss + kb))
done
echo "monitors: $(pgrep -fc '^longshore-monitor') processes, PSS $pss KiB in all, $((pss / 50)) KiB per container"

echo "== ps -a with 50, 100 and 1000 containers"
hyperfine -N -w 3 -r "$runs" "$L ps -a" 2>&1 | grep -E 'Time|Range'
for i in $(seq 51 100); do "$L" create --network none busybox true >/dev/null; done
hyperfine -N -w 3 -r "$runs" "$L ps -a" 2>&1 | grep -E 'Time|Range'
for i in $(seq 101 1000); do "$L" create --network none busybox true >/dev/null; done
hyperfine -N -w 3 -r "$runs" "$L ps -a" 2>&1 | grep -E 'Time|Range'

echo "== version"
hyperfine -N -w 5 -r "$runs" "$L version" 2>&1 | grep -E 'Time|Range'
