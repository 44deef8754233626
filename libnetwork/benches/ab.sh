#!/bin/bash
# Same-session A/B of the network setup bench: runs two or more bench binaries alternately,
# ROUNDS times, on `setup_teardown` (plain) and `setup_teardown_publish_1_port`, and prints
# criterion's medians with the 1-minute load average before and after each run (the machine
# is shared, so a comparison only means something within one session).
#
# Usage (from the workspace root; needs root):
#   cargo bench -p longshore-network --bench setup --no-run   # prints the binary's path
#   cp target/release/deps/setup-<hash> /tmp/setup-new         # and likewise for the old one
#   libnetwork/benches/ab.sh 3 /tmp/setup-old /tmp/setup-new
set -e
rounds=${1:?usage: ab.sh ROUNDS BINARY...}
shift
out=$(mktemp -d /tmp/longshore-net-ab.XXXXXX)
trap 'rm -rf "$out"' EXIT
median() { python3 -c "import json,sys;print('%.2f'%(json.load(open(sys.argv[1]))['median']['point_estimate']/1e6))" "$1"; }
for r in $(seq "$rounds"); do
  for b in "$@"; do
    home=$out/$(basename "$b")-$r
    l1=$(cut -d' ' -f1 /proc/loadavg)
    (cd "$out" && CRITERION_HOME=$home "$b" --bench --noplot \
      'bridge/setup_teardown($|_publish_1_port$)' --warm-up-time 1 --measurement-time 6 >/dev/null 2>&1)
    l2=$(cut -d' ' -f1 /proc/loadavg)
    echo "round $r $(basename "$b"): plain $(median "$home/bridge/setup_teardown/new/estimates.json") ms," \
      "one port $(median "$home/bridge/setup_teardown_publish_1_port/new/estimates.json") ms, load $l1 -> $l2"
  done
done
