"""Cluster faults from `$DIR/faults.json` key `cluster`, re-read on every request.

Counters for rules with `times` live in `faults.state.json` under the key `cluster`; the emulator keeps its `cli`
(and the mirror its `mirror`) counters in the same file, so every update is a read-modify-write of our key only,
under an exclusive fcntl lock on `faults.lock`. Counters are tied to one writing of faults.json (its mtime and
content): rewriting the file, even with the same rules, starts the counts again.
"""
import hashlib
import json
from typing import Any

import attrs

from .files import SandboxFiles, locked, read_json, write_atomically

MODES = ('unreachable', '403', '500')
STATE_KEY = 'cluster'


@attrs.frozen
class Fault:
    mode: str
    message: str | None = None


def _matches(wanted: Any, actual: str | None) -> bool:
    """An absent or `*` field matches anything; `deployments.apps` matches the plural `deployments` too."""
    if wanted in (None, '*'):
        return True
    return actual is not None and (wanted == actual or str(wanted).split('.', maxsplit=1)[0] == actual)


@attrs.define
class ClusterFaults:
    files: SandboxFiles

    def check(self, verb: str, resource: str | None, namespace: str | None) -> Fault | None:
        """The fault to inject for this request, consuming one use of a counted rule; None when all is well."""
        rules, generation = self._load_rules()
        for index, rule in enumerate(rules):
            if not self._applies(rule, verb, resource, namespace):
                continue
            if 'times' not in rule or self._consume(generation, index, int(rule['times'])):
                return Fault(mode=str(rule.get('mode')), message=rule.get('message'))
        return None

    def _load_rules(self) -> tuple[list[dict[str, Any]], str]:
        try:
            stat = self.files.faults.stat()
        except FileNotFoundError:
            return [], ''
        rules = (read_json(self.files.faults, {}) or {}).get(STATE_KEY) or []
        if isinstance(rules, dict):  # tolerate a single rule written without the list
            rules = [rules]
        rules = [rule for rule in rules if isinstance(rule, dict) and str(rule.get('mode')) in MODES]
        digest = hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16]
        return rules, f'{stat.st_mtime_ns}-{digest}'

    @staticmethod
    def _applies(rule: dict[str, Any], verb: str, resource: str | None, namespace: str | None) -> bool:
        if resource is None:  # /version, discovery: only "the cluster is down" reaches them
            return rule.get('mode') == 'unreachable' and rule.get('resource', '*') == '*' \
                and rule.get('verb', '*') in ('*', verb) and rule.get('namespace', '*') == '*'
        return _matches(rule.get('verb'), verb) and _matches(rule.get('resource'), resource) \
            and _matches(rule.get('namespace'), namespace)

    def _consume(self, generation: str, index: int, times: int) -> bool:
        with locked(self.files.faults_lock):
            state = read_json(self.files.faults_state, {})
            state = state if isinstance(state, dict) else {}
            ours = state.get(STATE_KEY)
            if not isinstance(ours, dict) or ours.get('generation') != generation:
                ours = {'generation': generation, 'used': {}}
            used = int(ours['used'].get(str(index), 0))
            if used >= times:
                return False
            ours['used'][str(index)] = used + 1
            state[STATE_KEY] = ours
            write_atomically(self.files.faults_state, json.dumps(state, indent=1))
            return True
