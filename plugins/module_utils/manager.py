# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The traffic manager as the cluster shows it: workload, version, readiness, Helm release, and why it is not ready.

Everything here reads the Kubernetes API through :class:`module_utils.kube.Kube`, never the CLI, so looking at
the manager costs no ``telepresence`` call and starts no daemon. Objects are handled as plain API JSON
(camelCase keys), whether they come from the client library or from a test.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import time
import zlib

from ansible_collections.devloop.telepresence.plugins.module_utils.capabilities import parse_version
from ansible_collections.devloop.telepresence.plugins.module_utils.common import strip_v
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import KubeError

MANAGER_NAME = "traffic-manager"          # Deployment/StatefulSet, Service and Helm release name (facts section 8)
RELEASE_SECRET_PREFIX = "sh.helm.release.v1.%s.v" % MANAGER_NAME
RELEASE_SELECTOR = "owner=helm,name=%s" % MANAGER_NAME
VERSION_LABEL = "app.kubernetes.io/version"
MANAGER_POD_LABELS = {"app": MANAGER_NAME, "telepresence": "manager"}
AGENT_CONTAINER = "traffic-agent"
# Released charts render a Deployment; the newest chart source renders a StatefulSet (facts section 8, UNVERIFIED
# for releases). Probe the StatefulSet first, as the project's own test framework does.
KINDS = (("StatefulSet", "stateful_set"), ("Deployment", "deployment"))
GZIP_MAGIC = b"\x1f\x8b\x08"
EVENTS_PER_OBJECT = 5
PODS_IN_SUMMARY = 3
TEXT_LIMIT = 240
# Pause between two watches when the API server ends one early, so a misbehaving server cannot make us spin.
REWATCH_PAUSE = 0.5
# Pause between two searches for traffic agents while their workloads roll out without them.
AGENT_POLL_PAUSE = 1.0


def as_dict(kube, obj):
    """API JSON for a client-library model (or the dict itself)."""
    if obj is None or isinstance(obj, dict):
        return obj
    return kube.api_client().sanitize_for_serialization(obj)


# ---------------------------------------------------------------------------------------------- reading


def read_manager_state(kube, namespace):
    """The traffic manager in ``namespace``, read from the cluster.

    Returns ``installed``, ``kind`` (``StatefulSet``/``Deployment``/None), ``version`` (no ``v``), ``image``,
    ``ready``, ``replicas`` (desired), ``ready_replicas``, ``conditions``, ``release`` (see
    :func:`read_release`) and ``namespace``.
    """
    kind, workload = read_workload(kube, namespace)
    state = {"namespace": namespace, "installed": workload is not None, "kind": kind, "version": None,
             "image": None, "ready": False, "replicas": 0, "ready_replicas": 0, "conditions": [],
             "release": read_release(kube, namespace)}
    if workload is not None:
        state.update(describe_workload(workload, kind))
    return state


def read_workload(kube, namespace):
    """``(kind, object)`` of the manager workload, or ``(None, None)``."""
    for kind, resource in KINDS:
        found = as_dict(kube, kube.get("apps", resource, MANAGER_NAME, namespace))
        if found is not None:
            return kind, found
    return None, None


def describe_workload(workload, kind):
    status = workload.get("status") or {}
    image = manager_image(workload)
    labels = (workload.get("metadata") or {}).get("labels") or {}
    version = strip_v(labels.get(VERSION_LABEL)) or version_from_image(image)
    return {"version": version, "image": image, "ready": workload_ready(workload, kind),
            "replicas": desired_replicas(workload), "ready_replicas": int(status.get("readyReplicas") or 0),
            "conditions": [condition_summary(item) for item in status.get("conditions") or []]}


def desired_replicas(workload):
    replicas = (workload.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def manager_image(workload):
    """The image of the ``traffic-manager`` container (or of the first container)."""
    containers = pod_template_spec(workload).get("containers") or []
    for container in containers:
        if container.get("name") == MANAGER_NAME:
            return container.get("image")
    return containers[0].get("image") if containers else None


def pod_template_spec(workload):
    return (((workload.get("spec") or {}).get("template") or {}).get("spec")) or {}


def version_from_image(image):
    """``2.24.0`` from ``ghcr.io/telepresenceio/tel2:2.24.0``; None for an untagged image or a non-version tag."""
    if not image:
        return None
    name = image.split("@", 1)[0]
    _repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag or parse_version(tag) is None:
        return None
    return strip_v(tag)


def workload_ready(workload, kind):
    """Rolled out, as ``kubectl rollout status`` sees it: the controller saw the latest spec, every desired replica
    is updated and available, no pod of an older revision is left (two managers at once confuse clients), and (for
    a Deployment) the Available condition is True. A StatefulSet has no Available condition."""
    metadata = workload.get("metadata") or {}
    status = workload.get("status") or {}
    desired = desired_replicas(workload)
    updated = int(status.get("updatedReplicas") or 0)
    if int(status.get("observedGeneration") or 0) < int(metadata.get("generation") or 0):
        return False
    if updated < desired or int(status.get("availableReplicas") or 0) < desired:
        return False
    if int(status.get("replicas") or 0) > updated:
        return False
    if kind == "Deployment":
        return any(item.get("type") == "Available" and item.get("status") == "True"
                   for item in status.get("conditions") or [])
    return True


def condition_summary(condition):
    return {key: condition.get(key) for key in ("type", "status", "reason", "message")}


# ---------------------------------------------------------------------------------------------- Helm release


def read_release(kube, namespace):
    """The latest revision of the ``traffic-manager`` Helm release, or None when there is no release secret.

    Returns ``revision`` (int), ``status`` (``deployed``, ``failed``, ``pending-install``...), ``chart_version``,
    ``app_version`` and ``values`` (the user values the release was installed with). When the payload cannot be
    decoded, only what the secret's labels say is known: ``status`` and ``revision``; ``values`` is then None.
    """
    candidates = []
    for secret in kube.list("core", "secret", namespace, label_selector=RELEASE_SELECTOR):
        secret = as_dict(kube, secret)
        revision = release_revision((secret.get("metadata") or {}).get("name"))
        if revision is not None:
            candidates.append((revision, secret))
    if not candidates:
        return None
    revision, secret = max(candidates, key=lambda item: item[0])
    return describe_release(secret, revision)


def release_revision(secret_name):
    """``3`` for ``sh.helm.release.v1.traffic-manager.v3``; None for any other name."""
    if not secret_name or not secret_name.startswith(RELEASE_SECRET_PREFIX):
        return None
    suffix = secret_name[len(RELEASE_SECRET_PREFIX):]
    return int(suffix) if suffix.isdigit() else None


def describe_release(secret, revision):
    labels = (secret.get("metadata") or {}).get("labels") or {}
    payload = decode_release_payload((secret.get("data") or {}).get("release"))
    if payload is None:
        label_revision = labels.get("version")
        return {"revision": int(label_revision) if str(label_revision or "").isdigit() else revision,
                "status": labels.get("status"), "chart_version": None, "app_version": None, "values": None}
    metadata = (payload.get("chart") or {}).get("metadata") or {}
    info = payload.get("info") or {}
    values = payload.get("config")
    return {"revision": _int(payload.get("version"), revision), "status": info.get("status") or labels.get("status"),
            "chart_version": strip_v(metadata.get("version")), "app_version": strip_v(metadata.get("appVersion")),
            "values": values if isinstance(values, dict) else {}}


def decode_release_payload(data):
    """The release JSON from a secret's ``data.release``: base64 (Secret API) of base64 (Helm) of gzip'd JSON.

    Helm writes plain JSON when it does not compress, so gzip is only undone when its magic bytes are there.
    Returns None for anything that does not decode to a JSON object.
    """
    if not data:
        return None
    try:
        raw = base64.b64decode(base64.b64decode(data))
        if raw[:3] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
        payload = json.loads(raw.decode("utf-8"))
    except (ValueError, TypeError, OSError, EOFError, zlib.error, binascii.Error):
        return None
    return payload if isinstance(payload, dict) else None


def _int(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------------------------------------- waiting


def wait_until_ready(kube, namespace, timeout, kind=None):
    """Watch the manager workload until it is ready or ``timeout`` seconds passed; return the state read last.

    The first event of a watch is the object as it is now, so a manager that is already ready returns at once.
    """
    deadline = time.monotonic() + timeout
    state = read_manager_state(kube, namespace)
    if state["ready"]:
        return state
    kind = state["kind"] or kind or "Deployment"
    _watch_until(kube, namespace, kind, deadline,
                 lambda event, obj: event != "DELETED" and workload_ready(as_dict(kube, obj), kind))
    return read_manager_state(kube, namespace)


def wait_until_removed(kube, namespace, kind, timeout):
    """Watch until the manager workload is deleted or ``timeout`` seconds passed; True when it is gone."""
    deadline = time.monotonic() + timeout
    kind_now, workload = read_workload(kube, namespace)
    if workload is None:
        return True
    if _watch_until(kube, namespace, kind_now or kind, deadline, lambda event, _obj: event == "DELETED"):
        return True
    return read_workload(kube, namespace)[1] is None


def _watch_until(kube, namespace, kind, deadline, done):
    """Watch the manager object of ``kind`` until ``done(event_type, object)``; False when the deadline passed."""
    resource = dict(KINDS)[kind]
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        for event, obj in kube.watch("apps", resource, namespace, remaining,
                                     field_selector="metadata.name=%s" % MANAGER_NAME):
            if event == "ERROR":
                break  # e.g. 410 Gone: the next watch starts from the current state
            if done(event, obj):
                return True
            if time.monotonic() >= deadline:
                return False
        time.sleep(min(REWATCH_PAUSE, max(0.0, deadline - time.monotonic())))


# ---------------------------------------------------------------------------------------------- diagnostics


def collect_diagnostics(kube, namespace):
    """What a person needs to see why the manager is not ready: the workload's conditions, each pod's phase and
    container waiting/terminated reasons, and the recent events of those pods. When no pod is left (Helm's
    atomic rollback deletes them), the recent events of any ``traffic-manager*`` object in the namespace.

    Never raises: a cluster error while collecting is reported in ``error``.
    """
    diagnostics = {"namespace": namespace, "workload": None, "pods": [], "events": [], "error": None}
    try:
        kind, workload = read_workload(kube, namespace)
        if workload is not None:
            described = describe_workload(workload, kind)
            diagnostics["workload"] = {"kind": kind, "name": MANAGER_NAME, "image": described["image"],
                                       "replicas": described["replicas"],
                                       "ready_replicas": described["ready_replicas"],
                                       "conditions": described["conditions"]}
        selector = pod_selector(workload)
        for pod in kube.list("core", "pod", namespace, label_selector=selector):
            pod = as_dict(kube, pod)
            name = (pod.get("metadata") or {}).get("name")
            entry = describe_pod(pod)
            entry["events"] = recent_events(kube, namespace, field_selector="involvedObject.name=%s" % name)
            diagnostics["pods"].append(entry)
        if not diagnostics["pods"]:
            diagnostics["events"] = recent_events(kube, namespace, name_prefix=MANAGER_NAME)
    except KubeError as exc:
        diagnostics["error"] = str(exc)
    return diagnostics


def pod_selector(workload):
    labels = (((workload or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or MANAGER_POD_LABELS
    return ",".join("%s=%s" % item for item in sorted(labels.items()))


def describe_pod(pod):
    status = pod.get("status") or {}
    containers = []
    for item in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = item.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        containers.append({"name": item.get("name"), "ready": bool(item.get("ready")),
                           "restart_count": int(item.get("restartCount") or 0),
                           "state": "waiting" if waiting else "terminated" if terminated else
                           "running" if state.get("running") is not None else "unknown",
                           "reason": waiting.get("reason") or terminated.get("reason"),
                           "message": waiting.get("message") or terminated.get("message")})
    return {"name": (pod.get("metadata") or {}).get("name"), "phase": status.get("phase"),
            "reason": status.get("reason"), "message": status.get("message"),
            "conditions": [condition_summary(item) for item in status.get("conditions") or []
                           if item.get("status") != "True"],
            "containers": containers}


def recent_events(kube, namespace, field_selector=None, name_prefix=None):
    """The newest events (oldest first) for one object, or for objects whose name starts with ``name_prefix``."""
    selectors = {"field_selector": field_selector} if field_selector else {}
    events = [as_dict(kube, item) for item in kube.list("core", "event", namespace, **selectors)]
    if name_prefix:
        events = [item for item in events
                  if str((item.get("involvedObject") or {}).get("name") or "").startswith(name_prefix)]
    events.sort(key=_event_time)
    return [describe_event(item) for item in events[-EVENTS_PER_OBJECT:]]


def describe_event(event):
    involved = event.get("involvedObject") or {}
    return {"type": event.get("type"), "reason": event.get("reason"), "message": event.get("message"),
            "count": event.get("count"), "object": "%s/%s" % (involved.get("kind"), involved.get("name")),
            "last_timestamp": _event_time(event) or None}


def _event_time(event):
    return str(event.get("lastTimestamp") or event.get("eventTime")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


def summarize_diagnostics(diagnostics):
    """One line a person can act on: failing conditions, pod states and waiting reasons, and the last events."""
    parts = []
    workload = diagnostics.get("workload")
    if workload:
        failing = ["%s=%s (%s)" % (item["type"], item["status"], short_text(item.get("reason") or item.get("message")))
                   for item in workload["conditions"] if item.get("status") != "True"]
        parts.append("%s %s: %d/%d ready%s" % (workload["kind"], MANAGER_NAME, workload["ready_replicas"],
                                               workload["replicas"], ", " + ", ".join(failing) if failing else ""))
    elif not diagnostics.get("error"):
        parts.append("no %s Deployment or StatefulSet in namespace %s" % (MANAGER_NAME, diagnostics["namespace"]))
    for pod in diagnostics["pods"][:PODS_IN_SUMMARY]:
        waiting = ["container %s %s: %s%s" % (item["name"], item["state"], item["reason"],
                                              " (%s)" % short_text(item["message"]) if item["message"] else "")
                   for item in pod["containers"] if item["reason"]]
        text = "pod %s %s" % (pod["name"], pod["phase"] or "(no phase)")
        if waiting:
            text += ", " + ", ".join(waiting)
        if pod["events"]:
            text += "; events: " + " | ".join(_event_text(item) for item in pod["events"])
        parts.append(text)
    if len(diagnostics["pods"]) > PODS_IN_SUMMARY:
        parts.append("%d more pods" % (len(diagnostics["pods"]) - PODS_IN_SUMMARY))
    if not diagnostics["pods"] and diagnostics["events"]:
        parts.append("events: " + " | ".join(_event_text(item, with_object=True) for item in diagnostics["events"]))
    if diagnostics.get("error"):
        parts.append("diagnostics incomplete: %s" % diagnostics["error"])
    return "; ".join(parts)


def _event_text(event, with_object=False):
    where = "%s " % event["object"] if with_object else ""
    return "%s%s %s: %s" % (where, event["type"], event["reason"], short_text(event["message"]))


def short_text(text):
    """``text`` stripped and cut to TEXT_LIMIT characters, for messages."""
    text = str(text or "").strip()
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "..."


# ---------------------------------------------------------------------------------------------- traffic agents


def find_agents(kube):
    """Workloads that carry a traffic agent anywhere in the cluster, as sorted ``namespace/name`` strings.

    Read from the pods (a container named ``traffic-agent``), the one source that holds in every version (facts
    sheet section 9, "How agents get into pods, by version"): up to 2.21 the manager also keeps a
    ``telepresence-agents`` ConfigMap, from 2.22 it keeps none and injects agents into replacement pods. A ConfigMap
    entry is never counted: one left over from a 2.21-or-older manager names no agent that runs.
    """
    found = set()
    for pod in kube.list("core", "pod"):
        pod = as_dict(kube, pod)
        if any(item.get("name") == AGENT_CONTAINER for item in (pod.get("spec") or {}).get("containers") or []):
            found.add("%s/%s" % ((pod.get("metadata") or {}).get("namespace"), pod_workload_name(pod)))
    return sorted(found)


def pod_workload_name(pod):
    """The workload a pod belongs to: its owner, without the ReplicaSet's pod-template-hash suffix."""
    metadata = pod.get("metadata") or {}
    owners = metadata.get("ownerReferences") or []
    if not owners:
        return metadata.get("name")
    owner = owners[0].get("name") or metadata.get("name")
    template_hash = (metadata.get("labels") or {}).get("pod-template-hash")
    if owners[0].get("kind") == "ReplicaSet" and template_hash and owner.endswith("-" + template_hash):
        return owner[:-len(template_hash) - 1]
    return owner


def wait_until_no_agents(kube, timeout):
    """Search for traffic agents (:func:`find_agents`) until none is left or ``timeout`` seconds passed; return the
    ones left, empty when all are gone.

    Removing an agent rolls its workload out again, so a pod with a ``traffic-agent`` container outlives the command
    that removed it by one rollout: only a search that comes back empty within the time limit tells "being replaced"
    from "left behind".
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = find_agents(kube)
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(min(AGENT_POLL_PAUSE, max(0.0, deadline - time.monotonic())))
