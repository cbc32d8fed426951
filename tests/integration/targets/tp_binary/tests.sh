#!/usr/bin/env bash
# Every scenario against the sandbox that runme.sh started; each playbook works in its own folder under $TP_BINARY_WORK.
set -euo pipefail
TP_BINARY_WORK="$(mktemp -d "${TMPDIR:-/tmp}/tp_binary.XXXXXX")"
export TP_BINARY_WORK
cleanup() {
    # the read-only-folder case marks a folder immutable when it runs as root; never leave that behind
    chattr -R -i "$TP_BINARY_WORK" 2>/dev/null || true
    chmod -R u+w "$TP_BINARY_WORK" 2>/dev/null || true
    rm -rf "$TP_BINARY_WORK"
}
trap cleanup EXIT

play() {
    ansible-playbook -i "$INVENTORY_PATH" "$@"
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(install checksum download_faults upgrade system check_mode absent bad_input concurrent)

for scenario in "${scenarios[@]}"; do
    echo "=== tp_binary: $scenario"
    case "$scenario" in
    concurrent)
        # Two runs at once on the same fresh dest, as two separate ansible-playbook processes.
        play concurrent_run.yml -e run_name=first > "$TP_BINARY_WORK/first.log" 2>&1 &
        first=$!
        play concurrent_run.yml -e run_name=second > "$TP_BINARY_WORK/second.log" 2>&1 &
        second=$!
        status=0
        wait "$first" || status=$?
        wait "$second" || status=$?
        if [ "$status" -ne 0 ]; then
            cat "$TP_BINARY_WORK/first.log" "$TP_BINARY_WORK/second.log"
            exit "$status"
        fi
        play concurrent_verify.yml
        ;;
    *)
        play "$scenario.yml"
        ;;
    esac
done
