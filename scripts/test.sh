#!/usr/bin/env bash
# The README's test command: installs what is missing (scripts/deps.sh), then runs every
# crate's tests as root (real namespaces, cgroups, overlayfs, nftables, a docker-registry on
# loopback). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
exec cargo test --workspace "$@"
