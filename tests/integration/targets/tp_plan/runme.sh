#!/usr/bin/env bash
# Runs the scenarios in their own sandbox (simulated cluster + faithful Telepresence CLI emulator).
set -euo pipefail
collection_root="${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/devloop/telepresence"
exec "$collection_root/tests/sandbox/run" -- bash ./tests.sh "$@"
