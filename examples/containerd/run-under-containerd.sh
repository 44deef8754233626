#!/usr/bin/env bash
# Runs busybox containers under Debian's containerd with longshore-runtime as the runc
# binary of the io.containerd.runc.v2 shim:
#   1. starts a private containerd (config, root, state and sockets in a fresh
#      /tmp/longshore-ctrd-XXXX directory; no CRI plugin),
#   2. builds a one-layer busybox OCI image from /bin/busybox and imports it,
#   3. `ctr run --rm --runtime io.containerd.runc.v2 --runc-binary longshore-runtime`
#      and checks the output,
#   4. runs a detached task and drives it with `ctr task list/exec/kill/delete`.
# Needs root and Debian's containerd (containerd, ctr, containerd-shim-runc-v2) and
# busybox-static. Cleans up after itself (also on failure); safe to run repeatedly and
# in parallel (every name is unique).
#
# Usage: [LONGSHORE_CTRD_LOG=file] [LONGSHORE_CTRD_BENCH=1] run-under-containerd.sh [path/to/longshore-runtime]
#   LONGSHORE_CTRD_BENCH=1 also times `ctr run --rm ... true` with longshore-runtime and
#   runc side by side (hyperfine); a release build gives the meaningful numbers.
#   default: builds it with cargo (debug) and uses $CARGO_TARGET_DIR or ./target.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [[ $# -ge 1 ]]; then
    rt=$(readlink -f "$1")
else
    (cd "$here/../.." && cargo build -q -p longshore-examples --bin longshore-runtime)
    rt=$(readlink -f "${CARGO_TARGET_DIR:-$here/../../target}/debug/longshore-runtime")
fi
[[ -x $rt ]] || { echo "FAIL: runtime binary $rt not found" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "FAIL: needs root" >&2; exit 1; }
for b in containerd ctr containerd-shim-runc-v2; do
    command -v "$b" >/dev/null || { echo "FAIL: $b missing (apt-get install -y containerd)" >&2; exit 1; }
done
busybox=$(command -v busybox || true)
[[ -n $busybox ]] || busybox=/bin/busybox
[[ -x $busybox ]] || { echo "FAIL: busybox missing (apt-get install -y busybox-static)" >&2; exit 1; }

dir=$(mktemp -d /tmp/longshore-ctrd-XXXX)
tag=$(basename "$dir" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9-')
ns="$tag"                       # namespace: also the cgroup parent (/<ns>/<id>)
sock="$dir/containerd.sock"
image="docker.io/library/longshore-busybox:$tag"
runc_root="$dir/runc"
ctrd_pid=
# the shim puts its sockets under /run/containerd/s whatever the config says (ctr's
# fifos go to $dir/fifo): remove the directories afterwards if we made them
run_ctrd_existed=$([[ -e /run/containerd ]] && echo 1 || true)

log() { echo "== $*" >&2; }
ctr_() { ctr -a "$sock" -n "$ns" "$@"; }
# grep -q at the end of a pipe would make the writer die of SIGPIPE (pipefail)
has() { grep "$@" >/dev/null; }

cleanup() {
    local rc=$?
    set +e
    if [[ -S $sock ]]; then
        for t in $(ctr_ task ls -q 2>/dev/null); do
            ctr_ task kill -s SIGKILL "$t" >/dev/null 2>&1
            for _ in $(seq 50); do
                ctr_ task ls 2>/dev/null | has "^$t .*STOPPED" && break
                sleep 0.1
            done
            ctr_ task delete -f "$t" >/dev/null 2>&1
        done
        for c in $(ctr_ container ls -q 2>/dev/null); do ctr_ container delete "$c" >/dev/null 2>&1; done
        for i in $(ctr_ image ls -q 2>/dev/null); do ctr_ image rm "$i" >/dev/null 2>&1; done
        ctr -a "$sock" namespace rm "$ns" >/dev/null 2>&1
    fi
    # shims that survived (the task dirs hold their pid files)
    for pf in "$dir"/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
        [[ -f $pf ]] && kill -9 "$(cat "$pf")" 2>/dev/null
    done
    if [[ -n $ctrd_pid ]]; then
        kill "$ctrd_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$ctrd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$ctrd_pid" 2>/dev/null
        wait "$ctrd_pid" 2>/dev/null
    fi
    # containers' rootfs and snapshot mounts, deepest first
    grep -F " $dir" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    # a container cgroup left behind (it must not be)
    for cg in /sys/fs/cgroup/*/"$ns"; do
        [[ -d $cg ]] || continue
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    # LONGSHORE_CTRD_LOG=file keeps containerd's log (with the shims' messages)
    [[ -n ${LONGSHORE_CTRD_LOG:-} ]] && cp "$dir/containerd.log" "$LONGSHORE_CTRD_LOG"
    if [[ $rc -ne 0 ]]; then
        echo "---- containerd log (tail) ----" >&2
        tail -n 60 "$dir/containerd.log" >&2 2>/dev/null
    fi
    rm -rf "$dir"
    if [[ -z $run_ctrd_existed ]]; then
        rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null
    fi
    exit $rc
}
trap cleanup EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------- containerd
mkdir -p "$dir/root" "$dir/state" "$runc_root"
snapshotter=overlayfs
cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.runtime.v2.task"]
  platforms = ["linux/amd64"]
EOF
log "starting containerd in $dir"
containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
ctrd_pid=$!
for _ in $(seq 300); do
    ctr -a "$sock" version >/dev/null 2>&1 && break
    kill -0 "$ctrd_pid" 2>/dev/null || { echo "FAIL: containerd exited" >&2; exit 1; }
    sleep 0.1
done
ctr -a "$sock" version >/dev/null

# ---------------------------------------------------------------- the image
log "building a busybox OCI image"
img="$dir/image"
mkdir -p "$img/layer/bin" "$img/layer/etc" "$img/layer/tmp" "$img/blobs/sha256"
cp "$busybox" "$img/layer/bin/busybox"
for a in $("$busybox" --list); do
    [[ $a == busybox ]] || ln -s busybox "$img/layer/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$img/layer/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$img/layer/etc/group"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$img/layer" -cf "$img/layer.tar" .
blob() { # file -> prints "digest size" after storing it as a blob
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    cp "$1" "$img/blobs/sha256/$d"
    echo "$d $s"
}
read -r layer_d layer_s < <(blob "$img/layer.tar")
arch=amd64
case $(uname -m) in aarch64) arch=arm64 ;; x86_64) arch=amd64 ;; *) arch=$(uname -m) ;; esac
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$layer_d" >"$img/config.json"
read -r cfg_d cfg_s < <(blob "$img/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cfg_d" "$cfg_s" "$layer_d" "$layer_s" >"$img/manifest.json"
read -r man_d man_s < <(blob "$img/manifest.json")
mkdir -p "$img/out"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$man_d" "$man_s" "$arch" "$image" "$tag" >"$img/out/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$img/out/oci-layout"
mv "$img/blobs" "$img/out/blobs"
tar -C "$img/out" -cf "$dir/image.tar" oci-layout index.json blobs
ctr_ image import --digests --all-platforms --snapshotter "$snapshotter" "$dir/image.tar" >&2
ctr_ image ls -q | has -x "$image" || { echo "FAIL: image $image not imported" >&2; ctr_ image ls >&2; exit 1; }

run_opts=(--runtime io.containerd.runc.v2 --runc-binary "$rt" --runc-root "$runc_root" --snapshotter "$snapshotter" --fifo-dir "$dir/fifo")

# ---------------------------------------------------------------- ctr run --rm
id1="lsc1-$tag"
log "ctr run --rm $id1"
out=$(ctr_ run --rm "${run_opts[@]}" "$image" "$id1" \
    sh -c 'echo hello from longshore under containerd; hostname; cat /proc/1/cmdline | tr "\0" " "; echo')
echo "$out"
grep -qx 'hello from longshore under containerd' <<<"$out" || { echo "FAIL: no greeting" >&2; exit 1; }
[[ $(sed -n 2p <<<"$out") == "$(hostname)" ]] || { echo "FAIL: hostname differs from the host's (ctr sets none)" >&2; exit 1; }
grep -q '^sh -c ' <<<"$out" || { echo "FAIL: pid 1 is not the container's sh" >&2; exit 1; }
ctr_ container ls -q | has -x "$id1" && { echo "FAIL: --rm left container $id1" >&2; exit 1; }

# exit code passes through
log "exit code"
set +e
trap - ERR
ctr_ run --rm "${run_opts[@]}" "$image" "lsc2-$tag" sh -c 'exit 7'
code=$?
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
set -e
[[ $code -eq 7 ]] || { echo "FAIL: exit code $code, want 7" >&2; exit 1; }

# ---------------------------------------------------------------- a terminal
# `ctr run -t` makes the shim pass --console-socket: the runtime sends the pty master
# over it. `script` (bsdutils) gives ctr the terminal it wants on its own stdin.
if command -v script >/dev/null; then
    log "ctr run -t (console socket)"
    cmd="ctr -a $sock -n $ns run -t --rm ${run_opts[*]} $image lsc4-$tag sh -c 'tty; echo term ok'"
    out=$(script -qec "$cmd" /dev/null </dev/null | tr -d '\r')
    echo "$out"
    has '/dev/pts/[0-9]' <<<"$out" || { echo "FAIL: no pty in the container" >&2; exit 1; }
    has -x 'term ok' <<<"$out" || { echo "FAIL: no output through the pty" >&2; exit 1; }
else
    log "SKIPPED the terminal check: script(1) missing (apt-get install -y bsdutils)"
fi

# ---------------------------------------------------------------- detached task
id3="lsc3-$tag"
log "detached task $id3"
ctr_ run -d "${run_opts[@]}" "$image" "$id3" sleep 1000 >/dev/null
ctr_ task ls | grep -E "^$id3 +[0-9]+ +RUNNING" >&2 || { echo "FAIL: $id3 not RUNNING" >&2; ctr_ task ls >&2; exit 1; }
pid=$(ctr_ task ls | awk -v id="$id3" '$1 == id {print $2}')
# our runtime's state agrees with containerd
state=$("$rt" --root "$runc_root/$ns" state "$id3")
grep -q '"status": "running"' <<<"$state" || { echo "FAIL: runtime state: $state" >&2; exit 1; }
grep -q "\"pid\": $pid" <<<"$state" || { echo "FAIL: runtime pid differs from ctr's $pid: $state" >&2; exit 1; }
# exec (the shim calls `exec --process ... --detach --pid-file ...`). What it prints
# is checked through a file in the rootfs, not ctr's stdout: ctr 1.6 may drop an exec's
# last output when it exits at once (containerd#5741, fixed upstream by #13931).
rootfs="$dir/state/io.containerd.runtime.v2.task/$ns/$id3/rootfs"
ctr_ task exec --fifo-dir "$dir/fifo" --exec-id e1 "$id3" sh -c 'echo exec says $((6*7)) as $(id -u) > /tmp/exec-out'
got=$(cat "$rootfs/tmp/exec-out")
[[ $got == "exec says 42 as 0" ]] || { echo "FAIL: exec wrote '$got'" >&2; exit 1; }
set +e
trap - ERR
ctr_ task exec --fifo-dir "$dir/fifo" --exec-id e2 "$id3" sh -c 'exit 42'
code=$?
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
set -e
[[ $code -eq 42 ]] || { echo "FAIL: exec exit code $code, want 42" >&2; exit 1; }
# exec with a terminal: the shim passes --console-socket to `exec`
if command -v script >/dev/null; then
    cmd="ctr -a $sock -n $ns task exec --fifo-dir $dir/fifo -t --exec-id e4 $id3 sh -c 'tty > /tmp/exec-tty; exit 3'"
    set +e
    trap - ERR
    script -qec "$cmd" /dev/null </dev/null >/dev/null
    code=$?
    trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
    set -e
    [[ $code -eq 3 ]] || { echo "FAIL: exec -t exit code $code, want 3" >&2; exit 1; }
    has '^/dev/pts/[0-9]' "$rootfs/tmp/exec-tty" || { echo "FAIL: exec -t got no pty" >&2; exit 1; }
fi
# the shim reads the container's cgroups itself for metrics
ctr_ task metrics "$id3" | has memory || { echo "FAIL: no memory metrics" >&2; exit 1; }
ps_out=$(ctr_ task ps "$id3")
grep -q "$pid" <<<"$ps_out" || { echo "FAIL: task ps lacks $pid: $ps_out" >&2; exit 1; }
# pause / resume
ctr_ task pause "$id3"
ctr_ task ls | has -E "^$id3 +[0-9]+ +PAUSED" || { echo "FAIL: not PAUSED" >&2; ctr_ task ls >&2; exit 1; }
ctr_ task resume "$id3"
ctr_ task ls | has -E "^$id3 +[0-9]+ +RUNNING" || { echo "FAIL: not RUNNING after resume" >&2; exit 1; }
# a second process, so that --all has more than the init to signal
ctr_ task exec --fifo-dir "$dir/fifo" -d --exec-id e3 "$id3" sleep 1000
ctr_ task kill --all -s SIGKILL "$id3"
for _ in $(seq 300); do
    ctr_ task ls | has -E "^$id3 +[0-9]+ +STOPPED" && break
    sleep 0.1
done
ctr_ task ls | has -E "^$id3 +[0-9]+ +STOPPED" || { echo "FAIL: not STOPPED after kill" >&2; ctr_ task ls >&2; exit 1; }
ctr_ task delete "$id3" >/dev/null
ctr_ container delete "$id3"
[[ ! -e $runc_root/$ns/$id3 ]] || { echo "FAIL: runtime state of $id3 left behind" >&2; exit 1; }
for cg in /sys/fs/cgroup/*/"$ns"/"$id3"; do
    [[ ! -d $cg ]] || { echo "FAIL: cgroup $cg left behind" >&2; exit 1; }
done

# ---------------------------------------------------------------- optional timing
# LONGSHORE_CTRD_BENCH=1: `ctr run --rm ... true` through the shim with each runtime
if [[ -n ${LONGSHORE_CTRD_BENCH:-} ]] && command -v hyperfine >/dev/null; then
    common="ctr -a $sock -n $ns run --rm --runtime io.containerd.runc.v2 --runc-root $runc_root --snapshotter $snapshotter --fifo-dir $dir/fifo"
    hyperfine -N -w 3 -r "${LONGSHORE_CTRD_BENCH_RUNS:-20}" \
        -n longshore-runtime "$common --runc-binary $rt $image lsb1-$tag true" \
        -n runc "$common --runc-binary $(command -v runc || echo /usr/sbin/runc) $image lsb2-$tag true" >&2
fi

echo "OK: $(basename "$rt") works as containerd's runc (run --rm, exit code, terminal, detached task, exec, exec -t, ps, metrics, pause/resume, kill --all, delete)"
