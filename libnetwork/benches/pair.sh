#!/bin/bash
# Concurrent A/B of the network setup bench: starts two bench binaries at the same moment,
# ROUNDS times, on `setup_teardown` (plain) and `setup_teardown_publish_1_port`, and prints
# criterion's medians and their ratio. Both runs see the same machine load at the same time
# (each works in namespaces of its own), which `ab.sh`'s alternation cannot give when the
# load drifts during a round (the second binary of each round then pays for it).
#
# Usage (from the workspace root; needs root):
#   libnetwork/benches/pair.sh 5 /tmp/setup-old /tmp/setup-new
set -e
rounds=${1:?usage: pair.sh ROUNDS OLD NEW}
a=${2:?usage: pair.sh ROUNDS OLD NEW}
b=${3:?usage: pair.sh ROUNDS OLD NEW}
out=$(mktemp -d /tmp/longshore-net-pair.XXXXXX)
trap 'rm -rf "$out"' EXIT
median() { python3 -c "import json,sys;print('%.2f'%(json.load(open(sys.argv[1]))['median']['point_estimate']/1e6))" "$1"; }
for r in $(seq "$rounds"); do
  l1=$(cut -d' ' -f1 /proc/loadavg)
  for bin in "$a" "$b"; do
    home=$out/$r-$(basename "$bin")
    mkdir -p "$home"
    (cd "$home" && CRITERION_HOME=$home "$bin" --bench --noplot \
      'bridge/setup_teardown($|_publish_1_port$)' --warm-up-time 1 --measurement-time 8 >/dev/null 2>&1) &
  done
  wait
  l2=$(cut -d' ' -f1 /proc/loadavg)
  line="round $r:"
  for bin in "$a" "$b"; do
    home=$out/$r-$(basename "$bin")
    line="$line $(basename "$bin") plain $(median "$home/bridge/setup_teardown/new/estimates.json") ms,"
    line="$line one port $(median "$home/bridge/setup_teardown_publish_1_port/new/estimates.json") ms;"
  done
  echo "$line load $l1 -> $l2"
done
