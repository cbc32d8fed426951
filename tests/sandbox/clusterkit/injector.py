"""The traffic-manager's mutating webhook, reduced to what 2.22+ managers do with it (facts sheet section 9,
"How agents get into pods, by version": from 2.22 the manager keeps no `telepresence-agents` ConfigMap, evicts the
workload's pods, and its webhook injects the `traffic-agent` container into their replacements).

The real webhook asks the manager's memory which workloads get an agent. The CLI emulator plays the manager, so its
memory is `$DIR/traffic-manager.json` (`SandboxFiles.traffic_manager`), written by the emulator only:
`{"<manager namespace>": {"<namespace>/<Kind>/<name>": {"container": {...}, "annotation": "<config JSON>"}}}`.
A pod is mutated while it is created when its workload has an entry there and the manager's `agent-injector`
Service exists (the webhook goes with `helm uninstall`). Managers before 2.22 write no entry: their agents come in
through the patched pod template, as before.
"""
import copy
from typing import Any, Callable

from .files import SandboxFiles, read_json

AGENT_CONTAINER = 'traffic-agent'
AGENT_CONFIG_ANNOTATION = 'telepresence.io/agent-config'  # the sheet says "a pod annotation"; the name is ours
INJECTOR_SERVICE = 'agent-injector'

Lookup = Callable[[str, str, str], dict[str, Any] | None]   # (plural, namespace, name) -> live object or None


def owning_workload(pod: dict[str, Any], lookup: Lookup) -> tuple[str, str] | None:
    """`(Kind, name)` of the Deployment or StatefulSet a pod belongs to (a Deployment through its ReplicaSet)."""
    meta = pod.get('metadata') or {}
    for ref in meta.get('ownerReferences') or []:
        if ref.get('kind') == 'StatefulSet':
            return 'StatefulSet', ref.get('name')
        if ref.get('kind') == 'ReplicaSet':
            replicaset = lookup('replicasets', meta.get('namespace'), ref.get('name'))
            for owner in ((replicaset or {}).get('metadata') or {}).get('ownerReferences') or []:
                if owner.get('kind') == 'Deployment':
                    return 'Deployment', owner.get('name')
            return 'ReplicaSet', ref.get('name')
    return None


def inject_agent(files: SandboxFiles | None, pod: dict[str, Any], lookup: Lookup) -> None:
    """Mutate a pod being created the way the 2.22+ webhook does; a pod that already has the agent is left as is."""
    if files is None:
        return
    memory = read_json(files.traffic_manager, {}) or {}
    if not memory:
        return
    spec = pod.setdefault('spec', {})
    containers = spec.setdefault('containers', [])
    if any(container.get('name') == AGENT_CONTAINER for container in containers):
        return
    workload = owning_workload(pod, lookup)
    if workload is None:
        return
    namespace = (pod.get('metadata') or {}).get('namespace')
    key = '%s/%s/%s' % (namespace, workload[0], workload[1])
    for manager_namespace, agents in sorted(memory.items()):
        entry = (agents or {}).get(key)
        if entry and lookup('services', manager_namespace, INJECTOR_SERVICE) is not None:
            containers.append(copy.deepcopy(entry['container']))
            annotations = pod.setdefault('metadata', {}).setdefault('annotations', {})
            annotations[AGENT_CONFIG_ANNOTATION] = entry['annotation']
            return
