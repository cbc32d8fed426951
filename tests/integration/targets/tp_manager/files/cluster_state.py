"""Print, as JSON, what the sandbox cluster holds about the traffic manager and how many CLI calls were logged.

Read independently of the module under test (plain kubernetes client), so the playbooks can check that a task
changed nothing, or exactly what it changed. With the argument ``plant-stale-agent-entry``, first write a
``telepresence-agents`` ConfigMap entry for web-only in namespace app, as a manager before 2.22 leaves one. With
the argument ``delete-manager-pods``, delete the manager's pods first (their Deployment replaces them), as a node
failure would.
"""
import base64
import gzip
import json
import os
import sys

import kubernetes
from kubernetes.client.exceptions import ApiException

NAMESPACE = os.environ.get("TP_SNAPSHOT_NAMESPACE") or "ambassador"


def release_config(secret):
    raw = base64.b64decode(base64.b64decode(secret.data["release"]))
    return json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).get("config")


def rollout_complete_at():
    """When the sandbox last marked traffic-manager's rollout complete (events.log), or None."""
    path = os.path.join(os.environ["TP_SANDBOX_DIR"], "events.log")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        stamps = [record["ts"] for record in map(json.loads, filter(str.strip, handle))
                  if record.get("event") == "rollout-complete" and record.get("object") == NAMESPACE + "/traffic-manager"]
    return stamps[-1] if stamps else None


def main():
    kubernetes.config.load_kube_config()
    core, apps = kubernetes.client.CoreV1Api(), kubernetes.client.AppsV1Api()
    if sys.argv[1:] == ["plant-stale-agent-entry"]:
        core.create_namespaced_config_map("app", {"metadata": {"name": "telepresence-agents"},
                                                  "data": {"web-only": json.dumps({"workloadName": "web-only"})}})
    if sys.argv[1:] == ["delete-manager-pods"]:
        for pod in core.list_namespaced_pod(NAMESPACE, label_selector="app=traffic-manager").items:
            core.delete_namespaced_pod(pod.metadata.name, NAMESPACE)
    state = {"namespace": True, "deployment": None, "releases": [], "latest_values": None, "agents": []}
    try:
        core.read_namespace(NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise
        state["namespace"] = False
    if state["namespace"]:
        try:
            found = apps.read_namespaced_deployment("traffic-manager", NAMESPACE)
            state["deployment"] = {"version": (found.metadata.labels or {}).get("app.kubernetes.io/version"),
                                   "generation": found.metadata.generation,
                                   "image": found.spec.template.spec.containers[0].image}
        except ApiException as exc:
            if exc.status != 404:
                raise
        secrets = core.list_namespaced_secret(NAMESPACE, label_selector="owner=helm,name=traffic-manager").items
        secrets.sort(key=lambda s: int(s.metadata.name.rsplit(".v", 1)[1]))
        state["releases"] = ["%s:%s" % (s.metadata.name.rsplit(".", 1)[1], s.metadata.labels.get("status"))
                             for s in secrets]
        state["latest_values"] = release_config(secrets[-1]) if secrets else None
    # Agents are where they run: pods with a traffic-agent container, on both injection paths (facts sheet section 9,
    # "How agents get into pods, by version"); telepresence-agents ConfigMap entries are reported apart.
    agents = set()
    for pod in core.list_pod_for_all_namespaces().items:
        if any(container.name == "traffic-agent" for container in pod.spec.containers):
            agents.add("%s/%s" % (pod.metadata.namespace, (pod.metadata.labels or {}).get("app", pod.metadata.name)))
    state["agents"] = sorted(agents)
    state["agent_config_map_entries"] = sorted(
        "%s/%s" % (config_map.metadata.namespace, name)
        for config_map in core.list_config_map_for_all_namespaces(field_selector="metadata.name=telepresence-agents").items
        for name in (config_map.data or {}))
    log = os.path.join(os.environ["TP_SANDBOX_DIR"], "calls.log")
    records = []
    if os.path.exists(log):
        with open(log, encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
    state["calls"] = len(records)
    state["call_argvs"] = [record["argv"] for record in records]
    state["last_call_end"] = records[-1]["ts"] + records[-1]["duration"] if records else None
    state["rollout_complete_at"] = rollout_complete_at()
    json.dump(state, sys.stdout)


if __name__ == "__main__":
    main()
