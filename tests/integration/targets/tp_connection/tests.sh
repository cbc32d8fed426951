#!/usr/bin/env bash
# One playbook per scenario group, all against the sandbox that runme.sh started.
set -euo pipefail
for playbook in connect.yml status_after_quit.yml sudo_missing.yml version_mismatch.yml bad_input.yml; do
    ansible-playbook -i "$INVENTORY_PATH" "$playbook" "$@"
done
