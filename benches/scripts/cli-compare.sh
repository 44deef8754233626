#!/usr/bin/env bash
# The CLI figures of issue 11, in process and in client mode (-H against `longshore daemon`
# on a private socket, in a private network namespace), beside podman (its own root) and
# the docker CLI against the same longshore daemon when they are installed
# (benches/scripts/engine-compare.sh has docker against its own dockerd):
#   - `run --rm --network none busybox true`, whole CLI process (goal: 20 ms in process)
#   - `ps` with 100 running containers (goal: 10 ms)
#   - `version` (goal: 2 ms)
# Usage: bash benches/scripts/cli-compare.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-30}
bash scripts/deps.sh
L=$(bash scripts/build-longshore.sh)
work=$(mktemp -d /tmp/longshore-clibench-XXXXXX)
ns=lscb$$
export LONGSHORE_ROOT=$work/root LONGSHORE_BRIDGE=lscbr$$
unset DOCKER_HOST LONGSHORE_HOST
daemon=
cleanup() {
    for id in $("$L" ps -aq --no-trunc 2>/dev/null); do "$L" rm -f "$id" >/dev/null 2>&1 || true; done
    [ -n "${P:-}" ] && $P rm -af >/dev/null 2>&1
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    # podman's storage mounts, if it got that far
    for m in $(awk -v w="$work" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"$L" import "$work/busybox.tar" busybox:latest >/dev/null
P=
if command -v podman >/dev/null; then
    "$L" save -o "$work/busybox-image.tar" busybox:latest
    P="podman --root $work/podman --runroot $work/podrun --cgroup-manager cgroupfs --events-backend file"
    $P load -q -i "$work/busybox-image.tar" >/dev/null
    $P tag localhost/busybox:latest docker.io/library/busybox:latest 2>/dev/null || true
    if ! err=$($P run --rm --network none busybox true 2>&1); then
        echo "== podman cannot run here, no podman column ($err); engine-compare.sh has podman's figures (it runs podman with hugetlb as a v1 hierarchy and lower rlimits)"
        $P rm -af >/dev/null 2>&1 || true
        P=
    fi
fi
ip netns add "$ns"
ip -n "$ns" link set lo up
sock=$work/d.sock
nsenter --net="/run/netns/$ns" "$L" daemon -H "unix://$sock" >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
H="-H unix://$sock"
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"

bench() {
    hyperfine -N -w 3 -r "$runs" "$@" 2>&1 | grep -E 'Benchmark|Time|Range'
}

echo "== run --rm --network none busybox true (whole process)"
cmds=("$L run --rm --network none busybox true" "$L $H run --rm --network none busybox true")
[ -n "$P" ] && cmds+=("$P run --rm --network none busybox true")
command -v docker >/dev/null && cmds+=("docker -H unix://$sock run --rm --network none busybox true")
bench "${cmds[@]}"

echo "== version"
cmds=("$L version" "$L $H version")
command -v docker >/dev/null && cmds+=("docker -H unix://$sock version")
bench "${cmds[@]}"

echo "== ps with 100 running containers"
for _ in $(seq 1 100); do "$L" run -d --network none busybox sleep 1000 >/dev/null; done
echo "   ($("$L" ps -q | wc -l) running)"
cmds=("$L ps" "$L $H ps")
command -v docker >/dev/null && cmds+=("docker -H unix://$sock ps")
bench "${cmds[@]}"
