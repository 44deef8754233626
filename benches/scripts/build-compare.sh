#!/usr/bin/env bash
# The build figures of issue 13: the issue's 10-step Dockerfile (FROM busybox, ENV,
# WORKDIR, COPY of 200 small files, COPY of a 20 MB file, three RUN steps, EXPOSE, CMD)
# with `longshore build` (whole CLI process, RUN steps in real containers):
#   - cold: a fresh data root each round (busybox imported first, not timed)
#   - fully cached: the same build again
#   - a no-op RUN step: `FROM busybox` + `RUN true` minus `FROM busybox`, both --no-cache
# beside buildah (`buildah bud --layers --isolation chroot`, its own root) and docker
# (a private dockerd on its own --data-root and socket, started and stopped here; the
# legacy builder, and BuildKit when buildx is installed) when they are installed.
# The issue's reference figures: BuildKit 0.75 s cold / 0.115 s cached, Docker's legacy
# builder 1.88 s / 0.18 s, buildah 1.64 s / 0.70 s. Goals: cold below 0.75 s, fully
# cached <= 50 ms, no-op RUN <= 15 ms.
# Usage: bash benches/scripts/build-compare.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
L=$(bash scripts/build-longshore.sh)
work=$(mktemp -d /tmp/longshore-bbench-XXXXXX)
dockerd_pid=
cleanup() {
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
    fi
    for r in "$work"/root-*; do
        [ -d "$r" ] || continue
        for id in $(LONGSHORE_ROOT=$r "$L" ps -aq --no-trunc 2>/dev/null); do
            LONGSHORE_ROOT=$r "$L" rm -f "$id" >/dev/null 2>&1 || true
        done
    done
    if [ -d "$work/buildah" ]; then
        buildah --root "$work/buildah/root" --runroot "$work/buildah/run" rm --all >/dev/null 2>&1 || true
        umount -R "$work/buildah/root" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# busybox as a tar, and the context
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/rootfs/etc/passwd"
printf 'root:x:0:\n' >"$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
ctx=$work/ctx
mkdir -p "$ctx/files"
for i in $(seq -w 0 199); do echo "file $i" >"$ctx/files/f$i.txt"; done
head -c $((20 << 20)) /dev/urandom >"$ctx/big.bin"
cat >"$ctx/Dockerfile" <<'EOF'
FROM busybox
ENV APP=/app
WORKDIR /app
COPY files/ ./files/
COPY big.bin ./
RUN echo built > /app/stamp
RUN ls /app/files > /dev/null
RUN true
EXPOSE 8080
CMD ["sh"]
EOF
noop=$work/noop
mkdir -p "$noop"
printf 'FROM busybox\n' >"$noop/from.Dockerfile"
printf 'FROM busybox\nRUN true\n' >"$noop/run.Dockerfile"

now() { date +%s%N; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f ms", ns / 1e6 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# hyperfine's mean of one command, in ns
mean_ns() {
    hyperfine -N -w 3 -r "$1" --export-json "$work/h.json" "$2" >/dev/null 2>&1
    jq '.results[0].mean * 1e9 | floor' "$work/h.json"
}

echo "== load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "== longshore build (release, RUN in containers, driver: overlay unless LONGSHORE_DRIVER says)"
cold=()
for i in $(seq 1 "$rounds"); do
    r=$work/root-$i
    LONGSHORE_ROOT=$r "$L" import "$work/busybox.tar" busybox:latest >/dev/null
    t0=$(now)
    LONGSHORE_ROOT=$r "$L" build -q -t app "$ctx" >/dev/null
    t1=$(now)
    cold+=($((t1 - t0)))
done
echo "cold:          median $(ms "$(printf '%s\n' "${cold[@]}" | median)") of $rounds ($(for c in "${cold[@]}"; do ms "$c"; printf '; '; done))"
export LONGSHORE_ROOT=$work/root-1
cached=$(mean_ns 20 "$L build -q -t app $ctx")
echo "fully cached:  mean $(ms "$cached") of 20 (hyperfine, whole process)"
from=$(mean_ns 20 "$L build -q --no-cache -f $noop/from.Dockerfile $noop")
run=$(mean_ns 20 "$L build -q --no-cache -f $noop/run.Dockerfile $noop")
echo "no-op RUN:     $(ms $((run - from))) (FROM+RUN true $(ms "$run") - FROM $(ms "$from"), means of 20)"
unset LONGSHORE_ROOT

if command -v buildah >/dev/null; then
    echo "== buildah $(buildah --version | awk '{print $3}') (bud --layers --isolation chroot, overlay, own root)"
    B=(buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver overlay)
    bcold=()
    for i in $(seq 1 "$rounds"); do
        "${B[@]}" rmi --all --force >/dev/null 2>&1 || true
        c=$("${B[@]}" from scratch)
        "${B[@]}" add "$c" "$work/busybox.tar" / >/dev/null
        "${B[@]}" config --cmd sh "$c"
        "${B[@]}" commit -q "$c" localhost/busybox:latest >/dev/null
        "${B[@]}" rm "$c" >/dev/null
        t0=$(now)
        "${B[@]}" bud -q --layers --isolation chroot -t app "$ctx" >/dev/null 2>&1
        t1=$(now)
        bcold+=($((t1 - t0)))
    done
    echo "cold:          median $(ms "$(printf '%s\n' "${bcold[@]}" | median)") of $rounds"
    bcached=$(mean_ns 10 "${B[*]} bud -q --layers --isolation chroot -t app $ctx")
    echo "fully cached:  mean $(ms "$bcached") of 10"
else
    echo "== buildah: not installed (apt-get install buildah), skipped"
fi

if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    echo "== docker (private dockerd on $work/docker)"
    sock=$work/docker.sock
    dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" -H "unix://$sock" \
        --pidfile "$work/docker.pid" --bridge=none --iptables=false --ip6tables=false \
        >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 100); do docker -H "unix://$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
    D=(docker -H "unix://$sock")
    "${D[@]}" import -c 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
    for builder in legacy buildkit; do
        if [ $builder = buildkit ] && ! docker buildx version >/dev/null 2>&1; then
            echo "BuildKit: docker buildx not installed, skipped"
            continue
        fi
        bk=0
        [ $builder = buildkit ] && bk=1
        dcold=()
        for i in $(seq 1 "$rounds"); do
            "${D[@]}" rmi -f app >/dev/null 2>&1 || true
            "${D[@]}" builder prune -af >/dev/null 2>&1 || true
            t0=$(now)
            DOCKER_BUILDKIT=$bk "${D[@]}" build -q --network none -t app "$ctx" >/dev/null 2>&1
            t1=$(now)
            dcold+=($((t1 - t0)))
        done
        echo "$builder cold:          median $(ms "$(printf '%s\n' "${dcold[@]}" | median)") of $rounds"
        dcached=$(DOCKER_BUILDKIT=$bk mean_ns 10 "${D[*]} build -q --network none -t app $ctx")
        echo "$builder fully cached:  mean $(ms "$dcached") of 10"
    done
else
    echo "== docker: no dockerd installed (Debian's docker.io), skipped"
fi
