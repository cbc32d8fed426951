#!/usr/bin/env bash
# Runs the scenarios in their own sandbox (release mirror, simulated cluster, faithful Telepresence CLI emulator).
set -euo pipefail
collection_root="${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/devloop/telepresence"
# ansible-test passes only a few variables through, and the collection copy has no .venv: the sandbox's services
# run on the Python that runs ansible-test.
export TP_SANDBOX_PYTHON="${TP_SANDBOX_PYTHON:-$(command -v python)}"
exec "$collection_root/tests/sandbox/run" -- bash ./tests.sh "$@"
