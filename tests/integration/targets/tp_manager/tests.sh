#!/usr/bin/env bash
# The scenarios share one sandbox and build on each other: nothing installed -> installed 2.24.0 -> values ->
# 2.25.0 -> absent -> a manager that never becomes ready -> repaired.
set -euo pipefail
export ANSIBLE_ROLES_PATH=../
for scenario in bad_input check_mode install idempotent values values_semantics upgrade forbidden absent never_ready; do
    echo "=== tp_manager scenario: $scenario"
    ansible-playbook -i "$INVENTORY_PATH" "$scenario.yml" "$@"
done
