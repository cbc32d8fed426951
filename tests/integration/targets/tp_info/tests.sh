#!/usr/bin/env bash
# Runs the scenarios against the sandbox that runme.sh started, then checks that the sandbox's secret (an
# environment value of secret-app's pod, seen by an intercept) never appears in Ansible's output.
set -euo pipefail
output="$(mktemp)"
trap 'rm -f "$output"' EXIT
for playbook in info.yml bad_input.yml; do
    ansible-playbook -i "$INVENTORY_PATH" "$playbook" -v "$@" | tee -a "$output"
done
if grep -qF -- "$TP_SANDBOX_SECRET" "$output"; then
    echo "FAILED: the sandbox secret appears in Ansible's output" >&2
    exit 1
fi
grep -q "API_TOKEN" "$output" || { echo "FAILED: the environment names are missing from the output" >&2; exit 1; }
echo "secret check passed: environment names shown, values never"
