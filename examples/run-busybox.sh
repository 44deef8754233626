#!/usr/bin/env bash
# The main job: build longshore-runtime, lay out a busybox OCI bundle and run a container.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p longshore-examples --bin longshore-runtime
rt=target/release/longshore-runtime
bundle=$(mktemp -d /tmp/longshore-demo-XXXXXX)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for a in sh echo hostname id cat ls ps; do ln -s busybox "$bundle/rootfs/bin/$a"; done
cd "$bundle"
"$OLDPWD/$rt" spec --rootless=false
# run a non-interactive process
sed -i 's/"terminal": true/"terminal": false/' config.json
python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["args"] = ["sh", "-c", "echo hello from $(hostname) as $(id -u), pid $$; ls /"]
json.dump(c, open("config.json", "w"), indent=2)
PY
"$OLDPWD/$rt" run "demo-$$"
