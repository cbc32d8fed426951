#!/usr/bin/env bash
# tp_intercept against its own sandbox (tests/sandbox/CONTRACT.md); the scenarios are in tests.sh.
set -euo pipefail
collection_root="${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/devloop/telepresence"
cd "$(dirname "$0")"
# ansible-test does not pass TP_SANDBOX_PYTHON through, and the copy it tests has no .venv: the sandbox's services
# run with the interpreter ansible-test runs the tests with (it has the test requirements).
export TP_SANDBOX_PYTHON="${TP_SANDBOX_PYTHON:-${ANSIBLE_TEST_PYTHON_INTERPRETER:-python3}}"
exec "$collection_root/tests/sandbox/run" -- bash ./tests.sh "$@"
