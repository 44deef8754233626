#!/bin/sh
# Measures bridge setup + teardown per container (needs root; works in its own namespaces).
# Usage: libnetwork/benches/setup.sh   (from the workspace root)
set -e
exec cargo bench -p longshore-network --bench setup -- --noplot "$@"
