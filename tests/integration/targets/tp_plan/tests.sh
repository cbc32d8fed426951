#!/usr/bin/env bash
# Runs the scenarios against the sandbox that runme.sh started.
set -euo pipefail
ansible-playbook -i "$INVENTORY_PATH" plan.yml -v "$@"
