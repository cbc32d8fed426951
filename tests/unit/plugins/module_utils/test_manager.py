# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the traffic manager from the cluster: release secrets, workload kinds, readiness, diagnostics, watches."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils import manager
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import KubeError
from ansible_collections.devloop.telepresence.plugins.module_utils.manager import (
    collect_diagnostics,
    decode_release_payload,
    find_agents,
    read_manager_state,
    release_revision,
    summarize_diagnostics,
    version_from_image,
    wait_until_no_agents,
    wait_until_ready,
    wait_until_removed,
    workload_ready,
)


# ---------------------------------------------------------------------------------------------- fixtures


def helm_release_data(release, compress=True):
    """``data.release`` as the API returns it: base64 (Secret) of base64 (Helm) of gzip'd JSON."""
    raw = json.dumps(release).encode()
    blob = base64.b64encode(gzip.compress(raw) if compress else raw)
    return base64.b64encode(blob).decode()


def release_json(revision, status, version="2.24.0", config=None):
    return {"name": "traffic-manager", "namespace": "ambassador", "version": revision,
            "info": {"status": status, "description": "x"},
            "chart": {"metadata": {"name": "telepresence-oss", "version": version, "appVersion": version}},
            "config": config}


def release_secret(revision, status, version="2.24.0", config=None, data=None):
    return {"metadata": {"name": "sh.helm.release.v1.traffic-manager.v%d" % revision, "namespace": "ambassador",
                         "labels": {"owner": "helm", "name": "traffic-manager", "status": status,
                                    "version": str(revision)}},
            "type": "helm.sh/release.v1",
            "data": {"release": data if data is not None else
                     helm_release_data(release_json(revision, status, version, config))}}


def deployment(version="2.24.0", ready=True, generation=1, observed=1, replicas=1, image=None, labels=True):
    metadata = {"name": "traffic-manager", "namespace": "ambassador", "generation": generation,
                "labels": {"app": "traffic-manager", "telepresence": "manager"}}
    if labels:
        metadata["labels"]["app.kubernetes.io/version"] = version
    status = {"observedGeneration": observed, "replicas": replicas,
              "conditions": [{"type": "Available", "status": "True" if ready else "False",
                              "reason": "MinimumReplicasAvailable" if ready else "MinimumReplicasUnavailable",
                              "message": "m"},
                             {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                              "message": "p"}]}
    if ready:
        status.update(readyReplicas=replicas, availableReplicas=replicas, updatedReplicas=replicas)
    return {"metadata": metadata,
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "traffic-manager",
                                                                        "telepresence": "manager"}},
                     "template": {"spec": {"containers": [
                         {"name": "traffic-manager", "image": image or "ghcr.io/telepresenceio/tel2:%s" % version}]}}},
            "status": status}


def statefulset(version="2.31.3", ready=True):
    obj = deployment(version=version, ready=ready)
    obj["status"].pop("conditions")  # StatefulSets have no Available condition
    return obj


class FakeKube:
    """The Kube helper's interface over dicts; records every call."""

    def __init__(self, workloads=None, secrets=None, pods=None, events=None, watch_events=None):
        self.workloads = dict(workloads or {})
        self.secrets = list(secrets or [])
        self.pods = list(pods or [])
        self.events = list(events or [])
        self.watch_events = list(watch_events or [])
        self.config_maps = []
        self.all_pods = []
        self.calls = []
        self.fail = None

    def get(self, api, resource, name, namespace=None):
        self.calls.append(("get", resource, name, namespace))
        if self.fail:
            raise self.fail
        return self.workloads.get(resource)

    def list(self, api, resource, namespace=None, **selectors):
        self.calls.append(("list", resource, namespace, selectors))
        if self.fail:
            raise self.fail
        if resource == "secret":
            return self.secrets
        if resource == "config_map" and namespace is None:
            return [cm for cm in self.config_maps
                    if selectors.get("field_selector") == "metadata.name=%s" % cm["metadata"]["name"]]
        if resource == "pod":
            return self.all_pods if namespace is None else self.pods
        if resource == "event":
            wanted = selectors.get("field_selector", "")
            return [e for e in self.events if not wanted or wanted == "involvedObject.name=%s" % e["involvedObject"]["name"]]
        raise AssertionError(resource)

    def watch(self, api, resource, namespace, timeout, **selectors):
        self.calls.append(("watch", resource, namespace, selectors))
        while self.watch_events:
            event = self.watch_events.pop(0)
            if callable(event):
                event = event(self)
            yield event


# ---------------------------------------------------------------------------------------------- release secrets


def test_latest_revision_wins_over_superseded_ones_whatever_the_list_order():
    kube = FakeKube(workloads={"deployment": deployment("2.25.0")},
                    secrets=[release_secret(10, "deployed", "2.25.0", {"agent": {"logLevel": "debug"}}),
                             release_secret(2, "superseded", "2.24.0"),
                             release_secret(9, "superseded", "2.24.1")])
    state = read_manager_state(kube, "ambassador")
    assert state["release"] == {"revision": 10, "status": "deployed", "chart_version": "2.25.0",
                                "app_version": "2.25.0", "values": {"agent": {"logLevel": "debug"}}}
    assert ("list", "secret", "ambassador", {"label_selector": "owner=helm,name=traffic-manager"}) in kube.calls


def test_release_without_user_values_reports_an_empty_mapping():
    kube = FakeKube(secrets=[release_secret(1, "deployed", config=None)])
    assert read_manager_state(kube, "ambassador")["release"]["values"] == {}


def test_plain_json_payload_is_accepted_like_helm_does():
    data = helm_release_data(release_json(3, "deployed", "2.24.1", {"a": 1}), compress=False)
    kube = FakeKube(secrets=[release_secret(3, "deployed", data=data)])
    release = read_manager_state(kube, "ambassador")["release"]
    assert (release["revision"], release["chart_version"], release["values"]) == (3, "2.24.1", {"a": 1})


@pytest.mark.parametrize("data", ["not base64 at all!", base64.b64encode(b"%%%").decode(),
                                  base64.b64encode(base64.b64encode(b"\x1f\x8b\x08garbage")).decode(),
                                  base64.b64encode(base64.b64encode(b"[1, 2]")).decode()])
def test_undecodable_payload_reports_what_the_labels_say(data):
    kube = FakeKube(secrets=[release_secret(4, "pending-upgrade", data=data), release_secret(3, "deployed")])
    assert read_manager_state(kube, "ambassador")["release"] == {
        "revision": 4, "status": "pending-upgrade", "chart_version": None, "app_version": None, "values": None}


def test_foreign_secrets_are_ignored():
    other = release_secret(7, "deployed")
    other["metadata"]["name"] = "sh.helm.release.v1.traffic-manager-other.v7"
    odd = release_secret(8, "deployed")
    odd["metadata"]["name"] = "sh.helm.release.v1.traffic-manager.vlatest"
    kube = FakeKube(secrets=[other, odd, release_secret(1, "deployed")])
    assert read_manager_state(kube, "ambassador")["release"]["revision"] == 1
    assert release_revision(None) is None
    assert release_revision("sh.helm.release.v1.traffic-manager.v12") == 12


def test_no_secret_means_no_release():
    assert read_manager_state(FakeKube(), "ambassador")["release"] is None
    assert decode_release_payload("") is None


# ---------------------------------------------------------------------------------------------- workload kinds


def test_statefulset_is_probed_first_then_deployment():
    kube = FakeKube(workloads={"deployment": deployment("2.24.0")})
    state = read_manager_state(kube, "ambassador")
    assert [call[1] for call in kube.calls if call[0] == "get"] == ["stateful_set", "deployment"]
    assert (state["installed"], state["kind"], state["version"]) == (True, "Deployment", "2.24.0")
    assert state["image"] == "ghcr.io/telepresenceio/tel2:2.24.0"
    assert state["conditions"][0] == {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                      "message": "m"}


def test_statefulset_found_and_ready_without_an_available_condition():
    kube = FakeKube(workloads={"stateful_set": statefulset("2.31.3"), "deployment": deployment("2.20.0")})
    state = read_manager_state(kube, "ambassador")
    assert (state["kind"], state["version"], state["ready"]) == ("StatefulSet", "2.31.3", True)
    assert [call[1] for call in kube.calls if call[0] == "get"] == ["stateful_set"]


def test_nothing_installed():
    state = read_manager_state(FakeKube(), "ambassador")
    assert state == {"namespace": "ambassador", "installed": False, "kind": None, "version": None, "image": None,
                     "ready": False, "replicas": 0, "ready_replicas": 0, "conditions": [], "release": None}


def test_version_falls_back_to_the_image_tag():
    kube = FakeKube(workloads={"deployment": deployment(labels=False, image="my.registry:5000/tel2:v2.24.1")})
    assert read_manager_state(kube, "ambassador")["version"] == "2.24.1"


@pytest.mark.parametrize("image, expected", [
    ("ghcr.io/telepresenceio/tel2:2.24.0", "2.24.0"),
    ("registry:5000/tel2", None),
    ("tel2:latest", None),
    ("ghcr.io/telepresenceio/tel2:2.25.0@sha256:abc", "2.25.0"),
    (None, None),
])
def test_version_from_image(image, expected):
    assert version_from_image(image) == expected


# ---------------------------------------------------------------------------------------------- readiness


@pytest.mark.parametrize("change, ready", [
    ({}, True),
    ({"observed": 1, "generation": 2}, False),            # the controller has not seen the new spec yet
    ({"ready": False}, False),
])
def test_deployment_readiness(change, ready):
    args = {"generation": change.get("generation", 1), "observed": change.get("observed", 1),
            "ready": change.get("ready", True)}
    assert workload_ready(deployment(**args), "Deployment") is ready


def test_deployment_needs_updated_and_available_replicas_and_the_available_condition():
    obj = deployment(replicas=2)
    obj["status"]["updatedReplicas"] = 1      # a rollout half done
    assert not workload_ready(obj, "Deployment")
    obj = deployment(replicas=2)
    obj["status"]["availableReplicas"] = 1
    assert not workload_ready(obj, "Deployment")
    obj = deployment()
    obj["status"]["replicas"] = 2             # the old revision's pod is still terminating
    assert not workload_ready(obj, "Deployment")
    assert not workload_ready(obj, "StatefulSet")
    obj = deployment()
    obj["status"]["conditions"] = [c for c in obj["status"]["conditions"] if c["type"] != "Available"]
    assert not workload_ready(obj, "Deployment")
    assert workload_ready(obj, "StatefulSet")


def test_zero_counts_omitted_by_the_api_read_as_zero():
    obj = deployment(ready=False)
    assert "updatedReplicas" not in obj["status"]
    state = read_manager_state(FakeKube(workloads={"deployment": obj}), "ambassador")
    assert (state["ready"], state["ready_replicas"], state["replicas"]) == (False, 0, 1)


# ---------------------------------------------------------------------------------------------- watching


def test_wait_returns_at_once_when_ready_without_watching():
    kube = FakeKube(workloads={"deployment": deployment()})
    assert wait_until_ready(kube, "ambassador", 5)["ready"]
    assert not [call for call in kube.calls if call[0] == "watch"]


def test_wait_watches_until_the_workload_turns_ready():
    def becomes_ready(kube):
        kube.workloads["deployment"] = deployment()
        return ("MODIFIED", deployment())
    kube = FakeKube(workloads={"deployment": deployment(ready=False)},
                    watch_events=[("ADDED", deployment(ready=False)), becomes_ready, ("MODIFIED", "never read")])
    state = wait_until_ready(kube, "ambassador", 5)
    assert state["ready"]
    watches = [call for call in kube.calls if call[0] == "watch"]
    assert watches == [("watch", "deployment", "ambassador", {"field_selector": "metadata.name=traffic-manager"})]


def test_wait_gives_up_at_the_deadline(monkeypatch):
    monkeypatch.setattr(manager, "REWATCH_PAUSE", 0.01)
    kube = FakeKube(workloads={"deployment": deployment(ready=False)})
    state = wait_until_ready(kube, "ambassador", 0.2)
    assert not state["ready"]
    assert len([call for call in kube.calls if call[0] == "watch"]) >= 1


def test_wait_for_removal_sees_the_deleted_event():
    def deleted(kube):
        kube.workloads.clear()
        return ("DELETED", deployment())
    kube = FakeKube(workloads={"deployment": deployment()}, watch_events=[("ADDED", deployment()), deleted])
    assert wait_until_removed(kube, "ambassador", "Deployment", 5)


def test_wait_for_removal_of_nothing_does_not_watch():
    kube = FakeKube()
    assert wait_until_removed(kube, "ambassador", None, 5)
    assert not [call for call in kube.calls if call[0] == "watch"]


# ---------------------------------------------------------------------------------------------- diagnostics


def failing_pod(name="traffic-manager-abc-x1"):
    return {"metadata": {"name": name, "namespace": "ambassador"},
            "status": {"phase": "Pending",
                       "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                                       "message": "containers with unready status"},
                                      {"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [{"name": "traffic-manager", "ready": False, "restartCount": 0,
                                              "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                    "message": 'Back-off pulling image "x:1"'}}}]}}


def event(obj, reason, message, when, kind="Pod", event_type="Warning"):
    return {"involvedObject": {"kind": kind, "name": obj}, "reason": reason, "message": message,
            "type": event_type, "count": 1, "lastTimestamp": when}


def test_diagnostics_name_conditions_waiting_reasons_and_pod_events():
    kube = FakeKube(workloads={"deployment": deployment(ready=False)}, pods=[failing_pod()],
                    events=[event("traffic-manager-abc-x1", "BackOff", "Back-off pulling image", "2025-01-01T00:00:02Z",
                                  event_type="Normal"),
                            event("traffic-manager-abc-x1", "Failed", 'Failed to pull image "x:1": not found',
                                  "2025-01-01T00:00:01Z"),
                            event("other-pod", "Failed", "unrelated", "2025-01-01T00:00:03Z")])
    diagnostics = collect_diagnostics(kube, "ambassador")
    pod = diagnostics["pods"][0]
    assert pod["phase"] == "Pending"
    assert pod["containers"][0]["reason"] == "ImagePullBackOff"
    assert [item["reason"] for item in pod["events"]] == ["Failed", "BackOff"]    # oldest first
    assert pod["conditions"] == [{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                                  "message": "containers with unready status"}]
    assert ("list", "pod", "ambassador", {"label_selector": "app=traffic-manager,telepresence=manager"}) in kube.calls
    summary = summarize_diagnostics(diagnostics)
    assert "Deployment traffic-manager: 0/1 ready, Available=False (MinimumReplicasUnavailable)" in summary
    assert "pod traffic-manager-abc-x1 Pending, container traffic-manager waiting: ImagePullBackOff" in summary
    assert 'Warning Failed: Failed to pull image "x:1": not found' in summary
    assert "unrelated" not in summary


def test_diagnostics_after_an_atomic_rollback_use_namespace_events():
    kube = FakeKube(events=[event("traffic-manager-abc-x1", "Failed", "Failed to pull image", "2025-01-01T00:00:01Z"),
                            event("traffic-manager-abc", "SuccessfulDelete", "Deleted pod", "2025-01-01T00:00:05Z",
                                  kind="ReplicaSet", event_type="Normal"),
                            event("something-else", "Killing", "no", "2025-01-01T00:00:06Z")])
    diagnostics = collect_diagnostics(kube, "ambassador")
    assert diagnostics["workload"] is None and diagnostics["pods"] == []
    assert [item["object"] for item in diagnostics["events"]] == ["Pod/traffic-manager-abc-x1",
                                                                  "ReplicaSet/traffic-manager-abc"]
    summary = summarize_diagnostics(diagnostics)
    assert summary.startswith("no traffic-manager Deployment or StatefulSet in namespace ambassador")
    assert "Pod/traffic-manager-abc-x1 Warning Failed: Failed to pull image" in summary


def test_diagnostics_never_raise():
    kube = FakeKube()
    kube.fail = KubeError("forbidden (403): cannot list pods")
    diagnostics = collect_diagnostics(kube, "ambassador")
    assert diagnostics["error"] == "forbidden (403): cannot list pods"
    assert summarize_diagnostics(diagnostics) == "diagnostics incomplete: forbidden (403): cannot list pods"


# ---------------------------------------------------------------------------------------------- agents


def test_agents_found_in_pods_and_never_in_config_maps():
    """A telepresence-agents entry without a pod running the agent (left by a 2.21-or-older manager) is no agent."""
    kube = FakeKube()
    kube.config_maps = [{"metadata": {"name": "telepresence-agents", "namespace": "app"},
                         "data": {"fresh-app": "{}"}},
                        {"metadata": {"name": "telepresence-agents", "namespace": "empty"}, "data": None}]
    kube.all_pods = [
        {"metadata": {"name": "web-5d9c7-abcde", "namespace": "shop", "labels": {"pod-template-hash": "5d9c7"},
                      "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d9c7"}]},
         "spec": {"containers": [{"name": "web"}, {"name": "traffic-agent"}]}},
        {"metadata": {"name": "db-0", "namespace": "shop", "ownerReferences": [{"kind": "StatefulSet", "name": "db"}]},
         "spec": {"containers": [{"name": "db"}]}},
    ]
    assert find_agents(kube) == ["shop/web"]


def test_no_agents():
    assert find_agents(FakeKube()) == []


def test_agents_injected_by_pod_replacement_are_found_without_a_config_map():
    """From 2.22 agents come with replaced pods, no telepresence-agents ConfigMap (facts sheet section 9, "How
    agents get into pods, by version"): the pods alone find them, for every workload kind."""
    kube = FakeKube()
    kube.all_pods = [
        {"metadata": {"name": "fresh-app-7f6d5-x1y2z", "namespace": "app", "labels": {"pod-template-hash": "7f6d5"},
                      "annotations": {"telepresence.io/agent-config": "{}"},
                      "ownerReferences": [{"kind": "ReplicaSet", "name": "fresh-app-7f6d5"}]},
         "spec": {"containers": [{"name": "fresh-app"}, {"name": "traffic-agent"}]}},
        {"metadata": {"name": "db-0", "namespace": "shop", "ownerReferences": [{"kind": "StatefulSet", "name": "db"}]},
         "spec": {"containers": [{"name": "db"}, {"name": "traffic-agent"}]}},
        {"metadata": {"name": "batch-abcde", "namespace": "shop",
                      "ownerReferences": [{"kind": "ReplicaSet", "name": "batch"}]},
         "spec": {"containers": [{"name": "batch"}, {"name": "traffic-agent"}]}},
    ]
    assert find_agents(kube) == ["app/fresh-app", "shop/batch", "shop/db"]


def test_wait_for_no_agents_searches_until_the_rollout_removed_them(monkeypatch):
    searches = iter([["app/web"], ["app/web"], []])
    monkeypatch.setattr(manager, "find_agents", lambda kube: next(searches))
    monkeypatch.setattr(manager, "AGENT_POLL_PAUSE", 0.01)
    assert wait_until_no_agents(FakeKube(), 5) == []
    assert next(searches, "exhausted") == "exhausted"


def test_wait_for_no_agents_returns_the_ones_left_at_the_deadline(monkeypatch):
    monkeypatch.setattr(manager, "AGENT_POLL_PAUSE", 0.01)
    kube = FakeKube()
    kube.all_pods = [{"metadata": {"name": "web-0", "namespace": "app",
                                   "ownerReferences": [{"kind": "StatefulSet", "name": "web"}]},
                      "spec": {"containers": [{"name": "web"}, {"name": "traffic-agent"}]}}]
    assert wait_until_no_agents(kube, 0.1) == ["app/web"]
    assert len([call for call in kube.calls if call[:2] == ("list", "pod")]) > 1


def test_wait_for_no_agents_without_agents_searches_once():
    kube = FakeKube()
    assert wait_until_no_agents(kube, 5) == []
    assert [call[:2] for call in kube.calls] == [("list", "pod")]
