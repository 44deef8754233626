#!/usr/bin/env bash
# The engine and CLI figures of issues 10 and 11, beside podman and docker when they are
# installed (Debian's podman, on its own root under the work directory; docker.io with a
# private dockerd on its own data root and socket, inside a private network namespace so
# that its bridge and iptables rules never touch the host's):
#   - `run --rm --network none busybox true`, whole CLI process
#   - the same on the default bridge (inside a private network namespace, so the host's
#     network and nftables are left alone)
#   - 50 detached `sleep` containers one after another: time each, and the supervision
#     memory per container: PSS of every longshore process outside the containers (the
#     monitors), of podman's conmons, of docker's containerd shims
#   - `ps -a` with 50, 100 and 1000 containers, `version`
# The library figures (Engine::open, run through the library, list over 1000) are the
# criterion bench: `cargo bench -p longshore-benches --bench engine`.
# Usage: bash benches/scripts/engine-compare.sh [runs] [--no-peers]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-50}
peers=1
[ "${2:-}" = --no-peers ] && peers=0
bash scripts/deps.sh
L=$(bash scripts/build-longshore.sh)
work=$(mktemp -d /tmp/longshore-ebench-XXXXXX)
ns=lseb$$
export LONGSHORE_ROOT=$work/root LONGSHORE_BRIDGE=lsebr$$
NS="nsenter --net=/run/netns/$ns"
P=
# shellcheck source=benches/scripts/private-dockerd.sh
source benches/scripts/private-dockerd.sh
cleanup() {
    set +e
    for id in $("$L" ps -aq --no-trunc 2>/dev/null); do "$L" rm -f "$id" >/dev/null 2>&1 || true; done
    if [ -n "$P" ]; then
        $P rm -af >/dev/null 2>&1 || true
        $P system reset -f >/dev/null 2>&1 || true
    fi
    dockerd_stop
    grep -F "$work" /proc/self/mounts | cut -d' ' -f2 | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
    # the cgroup parent podman made (libpod_parent/), when it was not there before this
    # run (dockerd_stop removes docker/)
    for g in libpod_parent; do
        case " $had_cgroups " in *" $g "*) continue ;; esac
        for h in /sys/fs/cgroup/*/; do
            [ -d "$h$g" ] && find "$h$g" -depth -type d -exec rmdir {} + 2>/dev/null
        done
    done
    # podman's cgroupfs manager makes plain directories for controllers this host does
    # not mount (hugetlb here): remove what was not there before
    for d in /sys/fs/cgroup/*/; do
        case " $had_dirs " in *" $d "*) continue ;; esac
        mountpoint -q "$d" || rm -rf "$d"
    done
    rm -rf "$work"
}
had_dirs=$(echo /sys/fs/cgroup/*/)
had_cgroups=
for g in libpod_parent; do
    ls -d /sys/fs/cgroup/*/"$g" >/dev/null 2>&1 && had_cgroups="$had_cgroups $g"
done
dockerd_mark_cgroups
trap cleanup EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"$L" import "$work/busybox.tar" busybox:latest >/dev/null
"$L" save -o "$work/busybox-image.tar" busybox:latest
ip netns add "$ns"
ip -n "$ns" link set lo up

# podman runs in a part of its own (crun needs hugetlb as a v1 hierarchy here: see
# hybrid-cgroups.sh), after longshore's and docker's figures
podman_part=
if [ "$peers" = 1 ] && command -v podman >/dev/null; then
    podman_part=1
    # root here lacks CAP_SYS_RESOURCE: podman's default rlimits (raised to the maximum)
    # make crun fail with EPERM, so its containers get fixed, lower ones
    printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n' >"$work/containers.conf"
    export CONTAINERS_CONF=$work/containers.conf
fi
if [ "$peers" = 1 ]; then
    dockerd_start "$work" "$ns" "$work/busybox-image.tar"
fi
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== peers: podman $([ -n "$podman_part" ] && podman --version || echo no), docker $([ -n "$D" ] && $D version -f '{{.Server.Version}}' || echo no)"

show() { hyperfine -N -w 3 -r "$runs" "$@" 2>&1 | grep -E 'Benchmark|Time|Range'; }

echo "== run --rm --network none busybox true (CLI, whole process)"
cmds=("$L run --rm --network none busybox true")
[ -n "$D" ] && cmds+=("$D run --rm --network none busybox true")
show "${cmds[@]}"

echo "== run --rm busybox true on the default bridge (in netns $ns)"
cmds=("$NS $L run --rm busybox true")
[ -n "$D" ] && cmds+=("$D run --rm busybox true")
show "${cmds[@]}"

# 50 detached containers: the time of each, and the supervision memory per container
pss_of() { # PIDs... -> KiB
    local t=0 kb
    for p in "$@"; do
        kb=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
        t=$((t + ${kb:-0}))
    done
    echo "$t"
}
# the monitors of this run's root (not those of other longshore roots on the machine)
longshore_monitors() {
    cat "$LONGSHORE_ROOT"/containers/*/state.json 2>/dev/null \
        | grep -o '"LongshoreMonitorPid":[1-9][0-9]*' | cut -d: -f2
}
detached() { # label, command prefix, supervisor pgrep pattern (or a function listing them)
    local label=$1 cmd=$2 pat=$3 start end pids
    start=$(date +%s%N)
    for _ in $(seq 1 50); do $cmd run -d --network none busybox sleep 1000 >/dev/null; done
    end=$(date +%s%N)
    if [ "$(type -t "$pat")" = function ]; then
        pids=$($pat | tr '\n' ' ')
    else
        # shellcheck disable=SC2046
        pids=$(pgrep -f "$pat" | tr '\n' ' ')
    fi
    local pss
    # shellcheck disable=SC2086
    pss=$(pss_of $pids)
    printf '%-10s %6d us per container; supervision: %d processes, PSS %d KiB, %d KiB per container\n' \
        "$label" $(((end - start) / 50000)) "$(echo "$pids" | wc -w)" "$pss" $((pss / 50))
}
echo "== 50 detached sleep containers, one after another"
detached longshore "$L" longshore_monitors
if [ -n "$D" ]; then
    detached docker "$D" "containerd-shim-runc-v2 -namespace lsbench"
    # shellcheck disable=SC2046
    $D rm -f $($D ps -aq) >/dev/null 2>&1 || true
fi

echo "== ps -a with 50, 100 and 1000 containers"
cmds=("$L ps -a")
show "${cmds[@]}"
for _ in $(seq 51 100); do "$L" create --network none busybox true >/dev/null; done
if [ -n "$D" ]; then for _ in $(seq 1 100); do $D create --network none busybox true >/dev/null; done; cmds+=("$D ps -a"); fi
show "${cmds[@]}"
for _ in $(seq 101 1000); do "$L" create --network none busybox true >/dev/null; done
show "$L ps -a"

echo "== version"
cmds=("$L version")
[ -n "$D" ] && cmds+=("$D version")
show "${cmds[@]}"

if [ -n "$podman_part" ]; then
    echo "== podman (hugetlb as a v1 hierarchy, in a private mount namespace)"
    hybrid=
    if grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null \
        && [ ! -e /sys/fs/cgroup/hugetlb ]; then
        hybrid=1
    fi
    # shellcheck source=benches/scripts/hybrid-cgroups.sh
    source benches/scripts/hybrid-cgroups.sh
    export runs work
    in_hugetlb_ns bash -c '
        set -u
        P="podman --root $work/podman --runroot $work/podrun --cgroup-manager cgroupfs --events-backend file"
        show() { hyperfine -N -w 3 -r "$runs" "$@" 2>&1 | grep -E "Benchmark|Time|Range"; }
        $P load -q -i "$work/busybox-image.tar" >/dev/null || exit 1
        echo "-- run --rm --network none busybox true"
        show "$P run --rm --network none busybox true"
        start=$(date +%s%N)
        for _ in $(seq 1 50); do $P run -d --network none busybox sleep 1000 >/dev/null; done
        end=$(date +%s%N)
        pids=$(pgrep -f "^/usr/bin/conmon .*$work/podrun" | tr "\n" " ")
        pss=0
        for p in $pids; do
            kb=$(awk "/^Pss:/ {print \$2}" "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
            pss=$((pss + ${kb:-0}))
        done
        printf "podman     %6d us per container; supervision: %d processes, PSS %d KiB, %d KiB per container\n" \
            $(((end - start) / 50000)) "$(echo "$pids" | wc -w)" "$pss" $((pss / 50))
        $P rm -af -t 0 >/dev/null 2>&1
        for _ in $(seq 1 100); do $P create --network none busybox true >/dev/null; done
        echo "-- ps -a with 100 containers, version"
        show "$P ps -a" "$P version"
        $P rm -af >/dev/null 2>&1
        $P system reset -f >/dev/null 2>&1
        true'
    release_hugetlb
fi
