#!/usr/bin/env bash
# Runs every tp_manager scenario, in order, in its own sandbox (simulated cluster, faithful Telepresence CLI emulator).
set -euo pipefail
collection_root="${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/devloop/telepresence"
exec "$collection_root/tests/sandbox/run" -- bash ./tests.sh "$@"
