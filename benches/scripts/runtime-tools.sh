#!/usr/bin/env bash
# Runs the OCI runtime-tools validation suite (validation/*/*.go, TAP output) against
# longshore-runtime, runc and crun, and prints the pass counts side by side.
#
# Usage: bash benches/scripts/runtime-tools.sh RUNTIME_TOOLS_CHECKOUT [test-name-regex]
#
# RUNTIME_TOOLS_CHECKOUT is a checkout of github.com/opencontainers/runtime-tools (its
# validation/ and cmd/runtimetest sources, its vendor/ directory and rootfs-amd64.tar.gz).
# Debian's golang-github-opencontainers-runtime-tools-dev ships only the library packages
# (generate, validate, specerror, cgroups), not validation/, so the checkout must come
# from the project itself. Go comes from Debian (golang-go). Needs root.
#
# A test file passes when it exits 0 and prints no failing test point ("not ok" without a
# "# TODO" directive). A file with no test point at all (several hook tests report a failure
# only as a YAML diagnostic with an empty plan) passes only if it printed no diagnostic.
# Each test file gets 120 s. With RTT_SAME_HOST=1 longshore-runtime and runc run with
# hugetlb mounted as a v1 hierarchy too, as crun does (see below). RTT_GOPATH adds GOPATH entries (for dependencies Debian lacks,
# e.g. github.com/mndrix/tap-go, github.com/google/uuid) when building without vendor/. crun refuses a host whose cgroup2 mount lists a controller
# (hugetlb, on a hybrid host whose v1 hierarchies lack it): for the run, hugetlb is
# mounted as a v1 hierarchy, as on a real hybrid host, and unmounted afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=${1:?usage: runtime-tools.sh RUNTIME_TOOLS_CHECKOUT [test-name-regex]}
filter=${2:-.}
src=$(cd "$src" && pwd)
[ -d "$src/validation" ] || { echo "$src has no validation/ directory" >&2; exit 1; }

need=()
command -v go >/dev/null || need+=(golang-go)
for p in runc crun; do command -v "$p" >/dev/null || need+=("$p"); done
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then apt-get install -y -qq "${need[@]}" >/dev/null; fi

cargo build --release -q -p longshore-examples --bin longshore-runtime
ls_rt=${CARGO_TARGET_DIR:-$PWD/target}/release/longshore-runtime

work=$(mktemp -d /tmp/longshore-rtt-XXXXXX)
# crun needs hugetlb bound to a v1 hierarchy (see above). That mount, and even its mount
# point, exist only inside a private mount namespace around each crun run, where
# /sys/fs/cgroup is rebuilt on a fresh tmpfs (each hierarchy mounted again, plus
# hugetlb): a mount on the host's /sys/fs/cgroup propagates into other users' binds of
# it and outlives this script there, and a bare hugetlb directory on it misleads other
# tools (podman made libpod_parent/ in one).
hybrid=
if grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null \
    && [ ! -e /sys/fs/cgroup/hugetlb ]; then
    hybrid=1
fi
# the suite's cgroup tests use /testdir/cgrouptest (absolute) and testdir/cgrouptest
# (relative; under longshore/ for longshore-runtime): runtimes remove the leaf only
remove_test_cgroups() { # ROOT...
    for c in "$@"; do
        for d in "$c/testdir" "$c/longshore/testdir" "$c/cgrouptest"; do
            [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
        done
    done
    return 0
}
# shellcheck source=benches/scripts/hybrid-cgroups.sh
source benches/scripts/hybrid-cgroups.sh
# the test bundles (Go's os.MkdirTemp) go under $work; a runtime may leave mounts in them
# (runc leaves a container's /proc, /dev and /sys mounted when it had no mount namespace
# of its own: linux_ns_itype)
mkdir -p "$work/tmp"
unmount_leftovers() {
    awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r \
        | while read -r m; do umount -l "$m"; done
}
cleanup() {
    unmount_leftovers
    remove_test_cgroups /sys/fs/cgroup/*/
    if [ -n "$hybrid" ]; then release_hugetlb; fi
    rm -rf "$work"
}
trap cleanup EXIT

# build: the checkout's own vendor/ directory when it has one, else GOPATH mode with
# Debian's Go sources (/usr/share/gocode) beside it
export GOFLAGS= GOCACHE="$work/gocache" GOPATH="$work/gopath"
build() { # build OUT PKG
    if [ -d "$src/vendor" ]; then
        (cd "$src" && GO111MODULE=on go build -mod=vendor -o "$1" "$2")
    else
        mkdir -p "$work/gopath/src/github.com/opencontainers"
        ln -sfn "$src" "$work/gopath/src/github.com/opencontainers/runtime-tools"
        (cd "$work/gopath/src/github.com/opencontainers/runtime-tools" \
            && GO111MODULE=off GOPATH="$work/gopath${RTT_GOPATH:+:$RTT_GOPATH}:/usr/share/gocode" go build -o "$1" "$2")
    fi
}
mkdir -p "$work/run" "$work/bin"
build "$work/run/runtimetest" ./cmd/runtimetest
if [ -f "$src/rootfs-amd64.tar.gz" ]; then
    cp "$src/rootfs-amd64.tar.gz" "$work/run/"
else
    # the suite's rootfs is a busybox tree: make one
    r="$work/rootfs"; mkdir -p "$r/bin" "$r/proc" "$r/sys" "$r/dev" "$r/tmp" "$r/etc"
    cp /bin/busybox "$r/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"
    done
    echo "root:x:0:0:root:/root:/bin/sh" > "$r/etc/passwd"
    echo "root:x:0:" > "$r/etc/group"
    tar -C "$r" -czf "$work/run/rootfs-amd64.tar.gz" .
fi
tests=()
unbuilt=()
for d in "$src"/validation/*/; do
    name=$(basename "$d")
    [ "$name" = util ] && continue
    [[ $name =~ $filter ]] || continue
    ls "$d"/*.go >/dev/null 2>&1 || continue
    if build "$work/bin/$name" "./validation/$name" 2>"$work/build-$name.err"; then
        tests+=("$name")
    else
        unbuilt+=("$name")
    fi
done
echo "built ${#tests[@]} test files; not built (need a newer Go?): ${unbuilt[*]:-none}"


runtimes=("$ls_rt" runc crun)
names=(longshore-runtime runc crun)
declare -A pass
for i in "${!runtimes[@]}"; do pass[$i]=0; done
printf '%-40s %-18s %-6s %-6s\n' test "${names[@]}"
for t in "${tests[@]}"; do
    row=()
    for i in "${!runtimes[@]}"; do
        out="$work/out-$t-$i"
        # each runtime gets its own state root through a wrapper (the suite calls the
        # binary named in $RUNTIME with runc's command line)
        wrap="$work/rt-$i"
        printf '#!/bin/sh\nexec %s --root %s "$@"\n' "${runtimes[$i]}" "$work/state-$i" > "$wrap"
        chmod +x "$wrap"
        run=(timeout 120 "$work/bin/$t")
        # crun cannot run without it; RTT_SAME_HOST=1 gives all three the same host
        if [ "${names[$i]}" = crun ] || [ -n "${RTT_SAME_HOST:-}" ]; then
            run=(in_hugetlb_ns "${run[@]}")
        fi
        if (cd "$work/run" && TMPDIR="$work/tmp" RUNTIME="$wrap" "${run[@]}" >"$out" 2>&1) \
            && ! grep '^not ok' "$out" | grep -qv '# TODO' \
            && { grep -q '^ok' "$out" || ! grep -q '^  ---' "$out"; }; then
            row+=(pass); pass[$i]=$((pass[$i] + 1))
        else
            row+=(FAIL)
        fi
        remove_test_cgroups /sys/fs/cgroup/*/
    done
    printf '%-40s %-18s %-6s %-6s\n' "$t" "${row[@]}"
done
printf '%-40s %-18s %-6s %-6s\n' "passed (of ${#tests[@]})" "${pass[0]}" "${pass[1]}" "${pass[2]}"
echo "TAP output of each run: kept in $work until this script exits (set KEEP=1 to keep)"
if [ -n "${KEEP:-}" ]; then
    trap - EXIT
    unmount_leftovers
    remove_test_cgroups /sys/fs/cgroup/*/
    if [ -n "$hybrid" ]; then release_hugetlb; fi
    echo "kept $work"
fi
