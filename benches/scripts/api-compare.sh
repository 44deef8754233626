#!/usr/bin/env bash
# The Engine API server's figures of issue 12, for `longshore daemon` and beside it a
# private dockerd (Debian's docker.io, on its own data root, socket and network namespace:
# benches/scripts/private-dockerd.sh), each driven by the same docker CLI and raw HTTP on
# its unix socket:
#   - idle daemon RSS (right after start; dockerd: dockerd + its containerd)
#   - `docker run --rm --network none busybox true` through the daemon (whole CLI process)
#   - `GET /containers/json?all=1` with 1000 containers (curl; beside it curl's own floor,
#     the same curl asking for /_ping), and `docker ps -a -q`
#   - 200 concurrent API clients (ping, list, inspect, create/start/wait/rm) for 30 s:
#     errors, and the daemon's fds, RSS, containers and mounts before, 2 s after and 12 s
#     after
# Usage: bash benches/scripts/api-compare.sh [runs] [seconds of the concurrency test]
#        [--no-peers]
# (LONGSHORE_BIN=path: use that longshore binary instead of building one)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-30}
secs=${2:-30}
peers=1
[ "${3:-}" = --no-peers ] && peers=0
L=${LONGSHORE_BIN:-$(bash scripts/build-longshore.sh)}
DOCKER=/usr/local/bin/docker
command -v "$DOCKER" >/dev/null || DOCKER=docker
work=$(mktemp -d /tmp/longshore-apibench-XXXXXX)
sock=$work/d.sock
ns=lsab$$
export LONGSHORE_ROOT=$work/root
export DOCKER_CONFIG=$work/docker-config
dpid=
# shellcheck source=benches/scripts/private-dockerd.sh
source benches/scripts/private-dockerd.sh
cleanup() {
    set +e
    for id in $("$L" ps -aq --no-trunc 2>/dev/null); do "$L" rm -f "$id" >/dev/null 2>&1 || true; done
    [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
    dockerd_stop
    grep -F "$work" /proc/self/mounts | cut -d' ' -f2 | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null
    rm -rf "$work"
}
dockerd_mark_cgroups
trap cleanup EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"$L" import "$work/busybox.tar" busybox:latest >/dev/null
"$L" save -o "$work/busybox-image.tar" busybox:latest
cat >"$work/load.py" <<'EOF'
import http.client, json, socket, sys, threading, time
sock, secs, v = sys.argv[1], float(sys.argv[2]), sys.argv[3]
class C(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("d", timeout=60)
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock)
ok = [0] * 200
errors = []
stop = time.time() + secs
def call(c, method, path, body=None, want=(200,)):
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
    r = c.getresponse()
    data = r.read()
    if r.status not in want:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
    return data
def client(i):
    c = C()
    n = 0
    try:
        while time.time() < stop:
            k = n % 4
            if k == 0:
                call(c, "GET", "/_ping")
            elif k == 1:
                call(c, "GET", f"/v{v}/containers/json?all=1")
            elif k == 2:
                call(c, "GET", f"/v{v}/images/busybox/json")
            elif i % 10 == 0:
                cid = json.loads(call(c, "POST", f"/v{v}/containers/create",
                    {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}},
                    (201,)))["Id"]
                call(c, "GET", f"/v{v}/containers/{cid}/json")
                call(c, "POST", f"/v{v}/containers/{cid}/start", {}, (204,))
                call(c, "POST", f"/v{v}/containers/{cid}/wait")
                call(c, "DELETE", f"/v{v}/containers/{cid}", None, (204,))
            n += 1
            ok[i] += 1
    except Exception as e:
        errors.append(f"client {i}: {e}")
ts = [threading.Thread(target=client, args=(i,)) for i in range(200)]
for t in ts: t.start()
for t in ts: t.join()
print(f"requests ok: {sum(ok)} ({sum(ok)/secs:.0f}/s), errors: {len(errors)}")
for e in errors[:5]: print("  ", e)
EOF

# the pid's RSS and, for dockerd, its containerd's too
rss_kb() {
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
    echo "$t"
}
mb() { awk -v k="$1" 'BEGIN {printf "%.1f MB", k/1024}'; }
# the same split into anonymous memory and file pages (the binary's code and data, shared
# with the page cache: how much of it a process maps depends on how the file's pages
# came into the page cache, see ARCHITECTURE.md)
rss_parts() {
    local a=0 f=0 p
    for p in "$@"; do
        a=$((a + $(awk '/^RssAnon/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
        f=$((f + $(awk '/^RssFile/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "anon $(mb "$a"), file $(mb "$f")"
}

# figures NAME SOCKET API_VERSION "DOCKER CLI" "PIDS COMMAND" "CONTAINERS COMMAND"
figures() {
    local name=$1 s=$2 v=$3 cli=$4 pids_cmd=$5 count_cmd=$6
    state() {
        local pids
        pids=$($pids_cmd)
        # shellcheck disable=SC2086
        echo "fds=$(ls /proc/${pids%% *}/fd | wc -l) rss=$(mb "$(rss_kb $pids)") containers=$($count_cmd | wc -l) mounts=$(grep -c "$work" /proc/mounts || true)"
    }
    # shellcheck disable=SC2046
    echo "== [$name] idle daemon RSS: $(mb "$(rss_kb $($pids_cmd))") ($(rss_parts $($pids_cmd)))"
    echo "== [$name] docker run --rm --network none busybox true through the daemon"
    hyperfine -N -w 3 -r "$runs" "$cli run --rm --network none busybox true" 2>&1 | grep -E 'Time|Range'
    # shellcheck disable=SC2046
    echo "   daemon RSS after the runs: $(mb "$(rss_kb $($pids_cmd))")"
    echo "== [$name] GET /containers/json?all=1 with 1000 containers"
    for _ in $(seq 1000); do
        curl -s --unix-socket "$s" -X POST -H 'Content-Type: application/json' \
            -d '{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}' \
            "http://d/v$v/containers/create" >/dev/null
    done
    echo "   containers: $(curl -s --unix-socket "$s" "http://d/v$v/containers/json?all=1" | grep -o '"Id"' | wc -l)"
    # the same curl asking for /_ping in the same hyperfine run: curl's own cost (process
    # start, connect, one small answer), the floor under the list's figure
    hyperfine -N -w 3 -r "$runs" \
        -n "containers/json?all=1" "curl -s -o /dev/null --unix-socket $s http://d/v$v/containers/json?all=1" \
        -n "_ping (curl's floor)" "curl -s -o /dev/null --unix-socket $s http://d/_ping" 2>&1 |
        grep -E 'Benchmark|Time|Range' | sed 's/^Benchmark [0-9]*: /   /'
    echo "   (docker ps -a -q, whole CLI:)"
    hyperfine -N -w 2 -r 10 "$cli ps -a -q" 2>&1 | grep -E 'Time|Range'
    $cli container prune -f >/dev/null
    echo "== [$name] $secs s of 200 concurrent clients (ping, list, inspect, create/start/wait/rm)"
    echo "   before: $(state)"
    python3 "$work/load.py" "$s" "$secs" "$v" | sed 's/^/   /'
    sleep 2
    echo "   after:  $(state)"
    # the longshore daemon gives its allocator's free memory back after 5 s without requests
    sleep 10
    echo "   12 s after: $(state)"
}

echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$L" daemon -H "unix://$sock" -g "$work/root" &
dpid=$!
for _ in $(seq 500); do [ -S "$sock" ] && break; sleep 0.01; done
sleep 1
figures longshore "$sock" 1.45 "$DOCKER -H unix://$sock" "echo $dpid" "$L ps -aq"
kill "$dpid"
wait "$dpid" 2>/dev/null || true
dpid=

if [ "$peers" = 1 ]; then
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    dockerd_start "$work" "$ns" "$work/busybox-image.tar"
fi
if [ -n "$D" ]; then
    dv=$($D version -f '{{.Server.APIVersion}}')
    sleep 1
    dockerd_pids() { echo "$dockerd_pid $(pgrep -P "$dockerd_pid" -x containerd | tr '\n' ' ')"; }
    echo "== load: $(cut -d' ' -f1-3 /proc/loadavg); dockerd $($D version -f '{{.Server.Version}}') (API $dv)"
    figures dockerd "$dockerd_sock" "$dv" "$DOCKER -H unix://$dockerd_sock" dockerd_pids "$D ps -aq"
fi
