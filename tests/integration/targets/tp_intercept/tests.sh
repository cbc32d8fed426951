#!/usr/bin/env bash
# Runs inside the sandbox started by runme.sh. Every scenario is one playbook run with -vvv; the whole output of
# all of them is kept, and at the end it must not contain the sandbox's secret while the env files do.
set -euo pipefail

py="${ANSIBLE_TEST_PYTHON_INTERPRETER:-python3}"
work="$(mktemp -d)"
log="$work/ansible-output.log"
servers=()

cleanup() {
    for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Two local "dev servers", each serving a marker file, stand for the developer's local app.
start_server() {
    local n="$1" port="$2"
    mkdir -p "$work/site$n"
    echo "local-dev-server-$n" > "$work/site$n/marker.txt"
    "$py" -m http.server "$port" --bind 127.0.0.1 --directory "$work/site$n" > "$work/server$n.log" 2>&1 &
    servers+=("$!")
    for _ in $(seq 50); do
        "$py" -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "local server $n did not start on port $port" >&2
    return 1
}
port1="$(free_port)"
port2="$(free_port)"
start_server 1 "$port1"
start_server 2 "$port2"

playbook() {
    local started=$SECONDS
    echo "=== $1" >> "$log"
    if ! ansible-playbook -i "$INVENTORY_PATH" -vvv \
            -e "work_dir=$work local_port=$port1 local_port2=$port2" "$1" >> "$log" 2>&1; then
        tail -n 200 "$log"
        echo "playbook $1 failed" >&2
        return 1
    fi
    echo "$1: $((SECONDS - started)) s"
}

playbook setup.yml
playbook lifecycle.yml
playbook preflight.yml
playbook bad_input.yml
playbook secrets.yml
playbook headers.yml
playbook scoping.yml
playbook port_identifier.yml
playbook statefulset.yml
playbook session.yml
playbook calls_log.yml
playbook modes.yml

# The secret is in the env files (0600) ...
for file in "$work/secret.env" "$work/secret.json"; do
    grep -qF "$TP_SANDBOX_SECRET" "$file" || { echo "$file does not hold the workload's secret" >&2; exit 1; }
    [ "$(stat -c %a "$file")" = 600 ] || { echo "$file is not mode 0600" >&2; exit 1; }
done
# ... and nowhere in Ansible's output (results, -vvv invocation logs, warnings, failures).
if grep -qF "$TP_SANDBOX_SECRET" "$log"; then
    grep -nF "$TP_SANDBOX_SECRET" "$log" | sed "s/$TP_SANDBOX_SECRET/<SECRET>/g" | head -n 5 >&2
    echo "the sandbox secret appears in Ansible's output" >&2
    exit 1
fi
grep -q "API_TOKEN" "$log" || { echo "the secret-app scenario did not run" >&2; exit 1; }
echo "tp_intercept: all scenarios passed ($(wc -l < "$log") lines of -vvv output checked for the secret)"
