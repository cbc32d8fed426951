#!/usr/bin/env bash
# tp_intercept against its own sandbox (tests/sandbox/CONTRACT.md); the scenarios are in tests.sh.
set -euo pipefail
collection_root="${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/devloop/telepresence"
cd "$(dirname "$0")"
exec "$collection_root/tests/sandbox/run" -- bash ./tests.sh "$@"
