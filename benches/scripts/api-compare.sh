#!/usr/bin/env bash
# The Engine API server's figures of issue 12 (`longshore daemon` driven by the docker CLI
# and raw HTTP on its unix socket):
#   - idle daemon RSS (right after start, and after the runs below)
#   - `docker run --rm --network none busybox true` through the daemon (whole CLI process)
#   - `GET /containers/json?all=1` with 1000 containers
#   - 200 concurrent API clients (ping, list, inspect, create/start/wait/rm) for 30 s:
#     errors, and the daemon's fds, RSS, containers and mounts before and after
# dockerd is not started here (the helpers' brief forbids it); the issue's dockerd figures
# (75 MB + containerd 38 MB idle, 217 ms for run --rm) are printed beside ours.
# Usage: bash benches/scripts/api-compare.sh [runs] [seconds of the concurrency test]
# (LONGSHORE_BIN=path: use that longshore binary instead of building one)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-30}
secs=${2:-30}
if [ -z "${LONGSHORE_BIN:-}" ]; then
    cargo build --release -q -p longshore-cli
fi
L=${LONGSHORE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/longshore}
DOCKER=/usr/local/bin/docker
work=$(mktemp -d /tmp/longshore-apibench-XXXXXX)
sock=$work/d.sock
export LONGSHORE_ROOT=$work/root
export DOCKER_CONFIG=$work/docker-config
dpid=
cleanup() {
    for id in $("$L" ps -aq --no-trunc 2>/dev/null); do "$L" rm -f "$id" >/dev/null 2>&1 || true; done
    [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"$L" import "$work/busybox.tar" busybox:latest >/dev/null
"$L" daemon -H "unix://$sock" -g "$work/root" &
dpid=$!
for _ in $(seq 500); do [ -S "$sock" ] && break; sleep 0.01; done
sleep 1
rss() { awk '/^VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$dpid/status"; }
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== idle daemon RSS: $(rss) (goal <= 10 MB; dockerd 75 MB + containerd 38 MB measured for the issue)"

D="$DOCKER -H unix://$sock"
echo "== docker run --rm --network none busybox true through the daemon (goal <= 30 ms; docker+dockerd 217 ms)"
hyperfine -N -w 3 -r "$runs" "$D run --rm --network none busybox true" 2>&1 | grep -E 'Time|Range'
echo "== daemon RSS after the runs: $(rss)"

echo "== GET /containers/json?all=1 with 1000 containers (goal <= 10 ms)"
for i in $(seq 1000); do
    curl -s --unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
        -d '{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}' \
        "http://d/v1.45/containers/create" >/dev/null
done
echo "containers: $(curl -s --unix-socket "$sock" 'http://d/containers/json?all=1' | grep -o '"Id"' | wc -l)"
hyperfine -N -w 3 -r "$runs" "curl -s -o /dev/null --unix-socket $sock http://d/v1.45/containers/json?all=1" 2>&1 | grep -E 'Time|Range'
echo "   (docker ps -a, whole CLI:)"
hyperfine -N -w 2 -r 10 "$D ps -a -q" 2>&1 | grep -E 'Time|Range'
"$L" container prune -f >/dev/null

echo "== $secs s of 200 concurrent clients (ping, list, inspect, create/start/wait/rm)"
state() {
    echo "fds=$(ls /proc/$dpid/fd | wc -l) rss=$(rss) containers=$("$L" ps -aq | wc -l) mounts=$(grep -c "$work" /proc/mounts || true)"
}
echo "before: $(state)"
cat >"$work/load.py" <<'EOF'
import http.client, json, socket, sys, threading, time
sock, secs = sys.argv[1], float(sys.argv[2])
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
                call(c, "GET", "/v1.45/containers/json?all=1")
            elif k == 2:
                call(c, "GET", "/v1.45/images/busybox/json")
            elif i % 10 == 0:
                cid = json.loads(call(c, "POST", "/v1.45/containers/create",
                    {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}},
                    (201,)))["Id"]
                call(c, "GET", f"/v1.45/containers/{cid}/json")
                call(c, "POST", f"/v1.45/containers/{cid}/start", {}, (204,))
                call(c, "POST", f"/v1.45/containers/{cid}/wait")
                call(c, "DELETE", f"/v1.45/containers/{cid}", None, (204,))
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
# two rounds: memory that grows in the first and not in the second is the allocator's
# arenas, not a leak
for round in 1 2; do
    python3 "$work/load.py" "$sock" "$secs"
    sleep 2
    echo "after round $round: $(state)"
done
