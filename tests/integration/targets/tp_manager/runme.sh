#!/usr/bin/env bash
# Runs every tp_manager scenario against one private sandbox (cluster API, CLI emulator), in order.
set -euo pipefail
# ansible-test passes only a few environment variables through; the sandbox's services need a Python with kmock,
# which the interpreter ansible-test runs with has (the repository's venv).
export TP_SANDBOX_PYTHON="${TP_SANDBOX_PYTHON:-${ANSIBLE_TEST_PYTHON_INTERPRETER:-}}"
[ -n "$TP_SANDBOX_PYTHON" ] || unset TP_SANDBOX_PYTHON
collection_root="${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/devloop/telepresence"
exec "$collection_root/tests/sandbox/run" -- bash ./tests.sh "$@"
