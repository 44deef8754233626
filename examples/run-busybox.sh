#!/usr/bin/env bash
# The main job: build longshore-runtime, lay out a busybox OCI bundle, run a container in
# the foreground, then drive a second one through runc's lifecycle
# (create, start, state, exec, kill, delete). Needs root and Debian's busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release -q -p longshore-examples --bin longshore-runtime
rt=$PWD/target/release/longshore-runtime
bundle=$(mktemp -d /tmp/longshore-demo-XXXXXX)
root=$bundle/state
id="demo-$$"
cleanup() { "$rt" --root "$root" delete --force "$id" 2>/dev/null || true; rm -rf "$bundle"; }
trap cleanup EXIT
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$bundle/rootfs/bin/$a"; done
cd "$bundle"
"$rt" spec
python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo hello from $(hostname) as uid $(id -u), pid $$; ls /"]
json.dump(c, open("config.json", "w"), indent=2)
PY
echo "== run (foreground)"
"$rt" --root "$root" run "$id-fg"
echo "exit code: $?"

python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["args"] = ["sleep", "30"]
json.dump(c, open("config.json", "w"), indent=2)
PY
echo "== create, start, state, exec, kill, delete"
"$rt" --root "$root" create --bundle "$bundle" "$id"
"$rt" --root "$root" state "$id" | grep '"status"'
"$rt" --root "$root" start "$id"
"$rt" --root "$root" list
"$rt" --root "$root" exec "$id" sh -c 'echo exec sees: $(ps -o pid,comm | tail -n +2 | tr "\n" " ")'
"$rt" --root "$root" kill "$id" KILL
sleep 0.1
"$rt" --root "$root" state "$id" | grep '"status"'
"$rt" --root "$root" delete "$id"
echo "deleted"
