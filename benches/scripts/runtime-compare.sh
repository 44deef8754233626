#!/usr/bin/env bash
# Times `run` (create + start + wait + delete) of a busybox bundle whose process is `true`
# with longshore-runtime, crun and runc side by side in one hyperfine run, and prints the
# ratios. Installs runc, crun, hyperfine and busybox-static from apt when missing.
# Usage: bash benches/scripts/runtime-compare.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-200}
need=()
for p in runc crun hyperfine; do command -v "$p" >/dev/null || need+=("$p"); done
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then apt-get install -y -qq "${need[@]}" >/dev/null; fi

cargo build --release -q -p longshore-examples --bin longshore-runtime
ls_rt=${CARGO_TARGET_DIR:-$PWD/target}/release/longshore-runtime

work=$(mktemp -d /tmp/longshore-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/proc" "$work/rootfs/dev" "$work/rootfs/sys"
cp /bin/busybox "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/true"
ln -s busybox "$work/rootfs/bin/sh"
(cd "$work" && "$ls_rt" spec)
python3 - "$work/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(p, "w"), indent=1)
PY
cd "$work"
# state roots on a tmpfs, as /run is on a normal host (on this machine /run is on disk,
# where each runtime's state writes would time the disk instead)
mkdir -p "$work/state"
mount -t tmpfs longshore-bench-state "$work/state"
trap 'umount "$work/state" 2>/dev/null; rm -rf "$work"' EXIT
cmds=("$ls_rt --root $work/state/ls run ls-bench-$$")
names=("longshore-runtime")
# crun fails on hosts whose cgroup v1 layout lacks some controllers: include it only if it runs
if crun --root "$work/state/crun" run "crun-probe-$$" >/dev/null 2>"$work/crun.err"; then
    cmds+=("crun --root $work/state/crun run crun-bench-$$"); names+=("crun")
else
    echo "crun cannot run here: $(tail -1 "$work/crun.err")"
    # a lower bound for reference: crun without any cgroup work at all
    if crun --cgroup-manager=disabled --root "$work/state/crun" run "crun-probe-$$" >/dev/null 2>&1; then
        cmds+=("crun --cgroup-manager=disabled --root $work/state/crun run crun-bench-$$")
        names+=("crun-no-cgroups")
    fi
fi
if runc --root "$work/state/runc" run "runc-probe-$$" >/dev/null 2>"$work/runc.err"; then
    cmds+=("runc --root $work/state/runc run runc-bench-$$"); names+=("runc")
else
    echo "runc cannot run here: $(tail -1 "$work/runc.err")"
fi
args=()
for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
hyperfine -N --warmup 10 --runs "$runs" --export-json "$work/result.json" "${args[@]}"
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
ls = r["longshore-runtime"]["mean"]
print(f"\nlongshore-runtime run: {ls*1000:.2f} ms mean, {r['longshore-runtime']['median']*1000:.2f} ms median")
for other in ("crun", "crun-no-cgroups", "runc"):
    if other in r:
        o = r[other]["mean"]
        print(f"{other} run: {o*1000:.2f} ms mean -> longshore is {o/ls:.2f}x the speed of {other}")
PY
