"""The controllers a real cluster runs, reduced to what the collection observes (kmock 0.8 has none).

Deployments get a ReplicaSet per pod-template hash and its Pods; StatefulSets get ordinal Pods. A new Pod waits
`ready_delay` seconds in ContainerCreating, then runs and is ready; once the new Pods are settled, the Pods of an
older template go. A workload listed in knobs.json `failing` gets Pods stuck in ImagePullBackOff, with the
Failed/BackOff events a kubelet records. Bare Pods start after the same delay. Objects whose owners are gone are
garbage-collected, so deleting a Deployment removes its ReplicaSets and Pods. knobs.json is re-read every tick.
"""
import asyncio
import hashlib
import json
import math
import os
import secrets
import time
from typing import Any

import attrs

from . import errors
from .emulator import Kind, SandboxCluster, now_rfc3339, random_suffix
from .files import SandboxFiles, read_json

TICK_SECONDS = 0.05        # while a pod waits out its ready_delay
IDLE_SECONDS = 1.0         # otherwise: re-read knobs.json and look again at least this often
DEFAULT_READY_DELAY = 1.0
NODE_NAME = 'sandbox-node'
NODE_IP = '10.0.0.10'
NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'


@attrs.frozen
class Knobs:
    ready_delay: float = DEFAULT_READY_DELAY
    failing: frozenset[str] = frozenset()


def read_knobs(files: SandboxFiles | None) -> Knobs:
    """knobs.json wins over TP_SANDBOX_READY_DELAY, which wins over the 1 s default."""
    knobs = (read_json(files.knobs, {}) if files is not None else {}) or {}
    delay = knobs.get('ready_delay', os.environ.get('TP_SANDBOX_READY_DELAY', DEFAULT_READY_DELAY))
    try:
        ready_delay = max(float(delay), 0.0)
    except (TypeError, ValueError):
        ready_delay = DEFAULT_READY_DELAY
    return Knobs(ready_delay=ready_delay, failing=frozenset(str(item) for item in knobs.get('failing') or []))


def template_hash(template: dict[str, Any]) -> str:
    """A stable 10-character hash of a pod template, in the alphabet of `pod-template-hash` labels."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return ''.join(NAME_ALPHABET[byte % len(NAME_ALPHABET)] for byte in digest[:10])


def owned_by(obj: dict[str, Any], owner_uid: str) -> bool:
    return any(ref.get('uid') == owner_uid for ref in obj['metadata'].get('ownerReferences') or [])


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {'apiVersion': owner['apiVersion'], 'kind': owner['kind'], 'name': owner['metadata']['name'],
            'uid': owner['metadata']['uid'], 'controller': True, 'blockOwnerDeletion': True}


def pod_is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get('status') or {}
    containers = status.get('containerStatuses') or []
    return status.get('phase') == 'Running' and bool(containers) and all(c.get('ready') for c in containers)


def pod_is_failing(pod: dict[str, Any]) -> bool:
    return any(((c.get('state') or {}).get('waiting') or {}).get('reason') in ('ImagePullBackOff', 'ErrImagePull')
               for c in (pod.get('status') or {}).get('containerStatuses') or [])


def max_unavailable(deployment: dict[str, Any], replicas: int) -> int:
    """RollingUpdate maxUnavailable (default 25%, rounded down), which decides the Available condition."""
    value = ((deployment['spec'].get('strategy') or {}).get('rollingUpdate') or {}).get('maxUnavailable', '25%')
    if isinstance(value, str) and value.endswith('%'):
        return math.floor(replicas * int(value[:-1]) / 100)
    return int(value)


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return (pod.get('spec') or {}).get('containers') or []


def _condition(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    condition: dict[str, Any] = {'type': kind, 'status': 'True' if ok else 'False', 'lastProbeTime': None,
                                 'lastTransitionTime': now_rfc3339()}
    if reason:
        condition.update(reason=reason, message=message)
    return condition


def creating_pod_status(pod: dict[str, Any]) -> dict[str, Any]:
    return {'phase': 'Pending', 'conditions': [_condition('PodScheduled', True)], 'qosClass': 'BestEffort',
            'hostIP': NODE_IP, 'hostIPs': [{'ip': NODE_IP}], 'startTime': now_rfc3339(),
            'containerStatuses': [{
                'name': c['name'], 'image': c.get('image', ''), 'imageID': '', 'ready': False, 'started': False,
                'restartCount': 0, 'state': {'waiting': {'reason': 'ContainerCreating'}},
            } for c in _containers(pod)]}


def running_pod_status(pod: dict[str, Any], pod_ip: str) -> dict[str, Any]:
    started = now_rfc3339()
    return {
        'phase': 'Running', 'hostIP': NODE_IP, 'hostIPs': [{'ip': NODE_IP}], 'podIP': pod_ip, 'podIPs': [{'ip': pod_ip}],
        'startTime': started, 'qosClass': 'BestEffort',
        'conditions': [_condition(kind, True) for kind in ('Initialized', 'Ready', 'ContainersReady', 'PodScheduled')],
        'containerStatuses': [{
            'name': c['name'], 'image': c.get('image', ''), 'ready': True, 'started': True, 'restartCount': 0,
            'imageID': f'{c.get("image", "")}@sha256:{hashlib.sha256(c.get("image", "").encode()).hexdigest()}',
            'containerID': f'containerd://{secrets.token_hex(32)}', 'state': {'running': {'startedAt': started}},
        } for c in _containers(pod)],
    }


def image_pull_backoff_status(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        'phase': 'Pending', 'hostIP': NODE_IP, 'hostIPs': [{'ip': NODE_IP}], 'startTime': now_rfc3339(),
        'qosClass': 'BestEffort',
        'conditions': [
            _condition('Initialized', True),
            _condition('Ready', False, 'ContainersNotReady', 'containers with unready status: '
                       f'[{" ".join(c["name"] for c in _containers(pod))}]'),
            _condition('ContainersReady', False, 'ContainersNotReady', 'containers with unready status'),
            _condition('PodScheduled', True)],
        'containerStatuses': [{
            'name': c['name'], 'image': c.get('image', ''), 'imageID': '', 'ready': False, 'started': False,
            'restartCount': 0, 'state': {'waiting': {
                'reason': 'ImagePullBackOff', 'message': f'Back-off pulling image "{c.get("image", "")}"'}},
        } for c in _containers(pod)],
    }


def pull_failure_events(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The kubelet's events for an image that cannot be pulled: a Warning `Failed` and a Normal `BackOff`."""
    events = []
    for container in _containers(pod):
        image = container.get('image', '')
        failed = (f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and unpack '
                  f'image "{image}": failed to resolve reference "{image}": {image}: not found')
        for event_type, reason, message in (('Warning', 'Failed', failed),
                                            ('Normal', 'BackOff', f'Back-off pulling image "{image}"')):
            now = now_rfc3339()
            events.append({
                'metadata': {'name': f'{pod["metadata"]["name"]}.{secrets.token_hex(8)}',
                             'namespace': pod['metadata']['namespace']},
                'involvedObject': {'kind': 'Pod', 'namespace': pod['metadata']['namespace'],
                                   'name': pod['metadata']['name'], 'uid': pod['metadata']['uid'],
                                   'apiVersion': 'v1', 'fieldPath': f'spec.containers{{{container["name"]}}}'},
                'reason': reason, 'message': message, 'type': event_type, 'count': 1,
                'firstTimestamp': now, 'lastTimestamp': now, 'source': {'component': 'kubelet', 'host': NODE_NAME},
                'reportingComponent': 'kubelet', 'reportingInstance': NODE_NAME,
            })
    return events


def _keep_transition_times(new: list[dict[str, Any]], old: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A condition that did not change keeps its timestamps, so the controller's writes settle (no-op updates)."""
    previous = {c.get('type'): c for c in old}
    for condition in new:
        before = previous.get(condition['type'])
        if before and (before.get('status'), before.get('reason')) == (condition['status'], condition.get('reason')):
            for stamp in ('lastTransitionTime', 'lastUpdateTime', 'lastProbeTime'):
                if stamp in before or stamp in condition:
                    condition[stamp] = before.get(stamp)
    return new


def _was_complete(old_status: dict[str, Any], generation: int) -> bool:
    progressing = [c for c in old_status.get('conditions') or [] if c.get('type') == 'Progressing']
    return old_status.get('observedGeneration') == generation and bool(progressing) \
        and progressing[0].get('reason') == 'NewReplicaSetAvailable'


@attrs.define
class WorkloadController:
    cluster: SandboxCluster
    files: SandboxFiles | None = None
    _born: dict[str, float] = attrs.field(factory=dict, init=False)        # pod uid -> monotonic creation time
    _reported: set[str] = attrs.field(factory=set, init=False)             # pod uids whose pull failure is recorded
    _next_ip: int = attrs.field(default=10, init=False)
    _unsettled: set[str] = attrs.field(factory=set, init=False)             # pod uids still creating

    async def run(self) -> None:
        """Reconcile after every write; tick fast only while some pod waits for its delay (idle costs nothing)."""
        while True:
            self.cluster.changed.clear()
            try:
                await self.reconcile(read_knobs(self.files))
            except errors.ApiError:
                pass  # an object vanished under us (a client deleted it); the next pass sees the new state
            try:
                await asyncio.wait_for(self.cluster.changed.wait(), TICK_SECONDS if self._waiting else IDLE_SECONDS)
            except TimeoutError:
                pass

    @property
    def _waiting(self) -> bool:
        """Some pod is still creating: its readiness depends on the clock, not on a write."""
        return bool(self._unsettled)

    async def reconcile(self, knobs: Knobs) -> None:
        self._unsettled.clear()
        for deployment in self.cluster.list_objects(self._kind('deployments', 'apps')):
            await self._reconcile_deployment(deployment, knobs)
        for statefulset in self.cluster.list_objects(self._kind('statefulsets', 'apps')):
            await self._reconcile_statefulset(statefulset, knobs)
        await self._start_bare_pods(knobs)
        await self._collect_garbage()

    def _kind(self, plural: str, group: str = '') -> Kind:
        return self.cluster.kind_of(plural, group)

    # ------------------------------------------------------------------ pods

    def _allocate_ip(self) -> str:
        self._next_ip += 1
        return f'10.42.{self._next_ip // 250}.{self._next_ip % 250 + 1}'

    async def create_pod(self, owner: dict[str, Any], name: str, template: dict[str, Any],
                         extra_labels: dict[str, str], running: bool) -> dict[str, Any]:
        meta = template.get('metadata') or {}
        pod = {'metadata': {'name': name, 'namespace': owner['metadata']['namespace'],
                            'labels': {**(meta.get('labels') or {}), **extra_labels},
                            'annotations': dict(meta.get('annotations') or {}),
                            'ownerReferences': [owner_reference(owner)]},
               'spec': {**(template.get('spec') or {}), 'nodeName': NODE_NAME}}
        pod['spec'].setdefault('serviceAccountName', 'default')
        self.cluster.admit_pod(pod)  # before its status is written: the injected container has a status too
        pod['status'] = running_pod_status(pod, self._allocate_ip()) if running else creating_pod_status(pod)
        created = await self.cluster.create_object(self._kind('pods'), pod['metadata']['namespace'], pod,
                                                   keep_status=True)
        self._born[created['metadata']['uid']] = time.monotonic()
        return created

    async def _settle_pod(self, pod: dict[str, Any], knobs: Knobs, failing: bool) -> dict[str, Any]:
        """After `ready_delay`, a creating pod runs (or, for a failing workload, backs off pulling its image)."""
        uid = pod['metadata']['uid']
        age = time.monotonic() - self._born.setdefault(uid, time.monotonic())
        if pod_is_ready(pod) or (failing and pod_is_failing(pod)):
            return pod
        if age < knobs.ready_delay:
            self._unsettled.add(uid)
            return pod
        if failing:
            if uid not in self._reported:
                self._reported.add(uid)
                for event in pull_failure_events(pod):
                    await self.cluster.create_object(self._kind('events'), pod['metadata']['namespace'], event)
            status = image_pull_backoff_status(pod)
        else:
            status = running_pod_status(pod, self._allocate_ip())
        return await self.cluster.update_object(self._kind('pods'), pod, {**pod, 'status': status}, 'status')

    async def _delete(self, kind: Kind, obj: dict[str, Any]) -> None:
        try:
            await self.cluster.delete_object(kind, obj['metadata'].get('namespace'), obj['metadata']['name'])
        except errors.ApiError:
            pass  # already gone

    def _pods_owned_by(self, owner_uids: set[str], namespace: str) -> list[dict[str, Any]]:
        return [pod for pod in self.cluster.list_objects(self._kind('pods'), namespace)
                if any(owned_by(pod, uid) for uid in owner_uids)]

    # ------------------------------------------------------------------ deployments

    async def _reconcile_deployment(self, deployment: dict[str, Any], knobs: Knobs) -> None:
        meta, spec = deployment['metadata'], deployment['spec']
        namespace, replicas = meta['namespace'], int(spec.get('replicas', 1))
        failing = f'{namespace}/{meta["name"]}' in knobs.failing
        pod_hash = template_hash(spec.get('template') or {})
        replicasets = [rs for rs in self.cluster.list_objects(self._kind('replicasets', 'apps'), namespace)
                       if owned_by(rs, meta['uid'])]
        current = next((rs for rs in replicasets if rs['metadata']['labels'].get('pod-template-hash') == pod_hash), None)
        if current is None:
            current = await self._create_replicaset(deployment, pod_hash, replicas)
        elif current['spec'].get('replicas') != replicas:
            current = await self.cluster.update_object(
                self._kind('replicasets', 'apps'), current, {**current, 'spec': {**current['spec'], 'replicas': replicas}})
        new_pods = await self._scale_pods(current, replicas, {'pod-template-hash': pod_hash}, knobs, failing)
        old_sets = [rs for rs in replicasets if rs['metadata']['uid'] != current['metadata']['uid']]
        new_settled = len(new_pods) == replicas and all(pod_is_ready(p) or pod_is_failing(p) for p in new_pods)
        if old_sets and new_settled:
            for old in old_sets:
                for pod in self._pods_owned_by({old['metadata']['uid']}, namespace):
                    await self._delete(self._kind('pods'), pod)
                await self._delete(self._kind('replicasets', 'apps'), old)
            old_sets = []
        all_pods = new_pods + self._pods_owned_by({rs['metadata']['uid'] for rs in old_sets}, namespace)
        await self._write_replicaset_status(current, new_pods)
        await self._write_deployment_status(deployment, current, new_pods, all_pods)

    async def _create_replicaset(self, deployment: dict[str, Any], pod_hash: str, replicas: int) -> dict[str, Any]:
        meta, spec = deployment['metadata'], deployment['spec']
        template = json.loads(json.dumps(spec.get('template') or {}))
        template.setdefault('metadata', {}).setdefault('labels', {})['pod-template-hash'] = pod_hash
        selector = json.loads(json.dumps(spec.get('selector') or {}))
        selector.setdefault('matchLabels', {})['pod-template-hash'] = pod_hash
        replicaset = {
            'metadata': {'name': f'{meta["name"]}-{pod_hash}', 'namespace': meta['namespace'],
                         'labels': dict(template['metadata']['labels']),
                         'annotations': {'deployment.kubernetes.io/desired-replicas': str(replicas)},
                         'ownerReferences': [owner_reference(deployment)]},
            'spec': {'replicas': replicas, 'selector': selector, 'template': template},
        }
        return await self.cluster.create_object(self._kind('replicasets', 'apps'), meta['namespace'], replicaset)

    async def _scale_pods(self, replicaset: dict[str, Any], replicas: int, labels: dict[str, str], knobs: Knobs,
                          failing: bool) -> list[dict[str, Any]]:
        namespace = replicaset['metadata']['namespace']
        pods = self._pods_owned_by({replicaset['metadata']['uid']}, namespace)
        for extra in pods[replicas:]:
            await self._delete(self._kind('pods'), extra)
        pods = pods[:replicas]
        while len(pods) < replicas:
            name = f'{replicaset["metadata"]["name"]}-{random_suffix()}'
            pods.append(await self.create_pod(replicaset, name, replicaset['spec']['template'], labels, running=False))
        return [await self._settle_pod(pod, knobs, failing) for pod in pods]

    async def _write_replicaset_status(self, replicaset: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        ready = sum(1 for pod in pods if pod_is_ready(pod))
        status = {'replicas': len(pods), 'fullyLabeledReplicas': len(pods), 'readyReplicas': ready,
                  'availableReplicas': ready, 'observedGeneration': replicaset['metadata'].get('generation', 1)}
        status = {key: value for key, value in status.items() if value}  # zero counts are omitted, as in Kubernetes
        await self.cluster.update_object(self._kind('replicasets', 'apps'), replicaset, {'status': status}, 'status')

    async def _write_deployment_status(self, deployment: dict[str, Any], replicaset: dict[str, Any],
                                       new_pods: list[dict[str, Any]], all_pods: list[dict[str, Any]]) -> None:
        replicas = int(deployment['spec'].get('replicas', 1))
        available = sum(1 for pod in all_pods if pod_is_ready(pod))
        updated = len(new_pods)
        rs_name = replicaset['metadata']['name']
        complete = updated == replicas and available == replicas and len(all_pods) == replicas \
            and all(pod_is_ready(pod) for pod in new_pods)
        has_minimum = available >= replicas - max_unavailable(deployment, replicas)
        now = now_rfc3339()
        conditions = [
            {'type': 'Available', 'status': 'True' if has_minimum else 'False',
             'reason': 'MinimumReplicasAvailable' if has_minimum else 'MinimumReplicasUnavailable',
             'message': 'Deployment has minimum availability.' if has_minimum
             else 'Deployment does not have minimum availability.', 'lastUpdateTime': now, 'lastTransitionTime': now},
            {'type': 'Progressing', 'status': 'True',
             'reason': 'NewReplicaSetAvailable' if complete else 'ReplicaSetUpdated',
             'message': f'ReplicaSet "{rs_name}" has successfully progressed.' if complete
             else f'ReplicaSet "{rs_name}" is progressing.', 'lastUpdateTime': now, 'lastTransitionTime': now},
        ]
        old_status = deployment.get('status') or {}
        status = {'observedGeneration': deployment['metadata'].get('generation', 1), 'replicas': len(all_pods),
                  'updatedReplicas': updated, 'readyReplicas': available, 'availableReplicas': available,
                  'unavailableReplicas': max(len(all_pods), replicas) - available}
        status = {key: value for key, value in status.items() if value}  # zero counts are omitted, as in Kubernetes
        status['conditions'] = _keep_transition_times(conditions, old_status.get('conditions') or [])
        await self.cluster.update_object(self._kind('deployments', 'apps'), deployment, {'status': status}, 'status')
        if complete and not _was_complete(old_status, status['observedGeneration']):
            self._record_event('rollout-complete', deployment)

    def _record_event(self, event: str, obj: dict[str, Any]) -> None:
        """Append to events.log when a rollout completes: benchmarks time modules from that moment."""
        if self.files is None:
            return
        line = {'ts': time.time(), 'event': event,
                'object': f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}",
                'generation': obj['metadata'].get('generation', 1)}
        with open(self.files.events, 'a', encoding='utf-8') as handle:
            handle.write(json.dumps(line) + '\n')

    # ------------------------------------------------------------------ statefulsets

    async def _reconcile_statefulset(self, statefulset: dict[str, Any], knobs: Knobs) -> None:
        meta, spec = statefulset['metadata'], statefulset['spec']
        namespace, replicas = meta['namespace'], int(spec.get('replicas', 1))
        failing = f'{namespace}/{meta["name"]}' in knobs.failing
        revision = f'{meta["name"]}-{template_hash(spec.get("template") or {})}'
        owned = {pod['metadata']['name']: pod for pod in self._pods_owned_by({meta['uid']}, namespace)}
        pods = []
        for ordinal in range(replicas):
            name = f'{meta["name"]}-{ordinal}'
            pod = owned.pop(name, None)
            if pod is not None and pod['metadata']['labels'].get('controller-revision-hash') != revision:
                await self._delete(self._kind('pods'), pod)
                pod = None
            if pod is None:
                labels = {'controller-revision-hash': revision, 'statefulset.kubernetes.io/pod-name': name,
                          'apps.kubernetes.io/pod-index': str(ordinal)}
                pod = await self.create_pod(statefulset, name, spec.get('template') or {}, labels, running=False)
            pods.append(await self._settle_pod(pod, knobs, failing))
        for surplus in owned.values():
            await self._delete(self._kind('pods'), surplus)
        ready = sum(1 for pod in pods if pod_is_ready(pod))
        status = {'observedGeneration': meta.get('generation', 1), 'replicas': len(pods), 'readyReplicas': ready,
                  'currentReplicas': len(pods), 'updatedReplicas': len(pods), 'availableReplicas': ready,
                  'currentRevision': revision, 'updateRevision': revision, 'collisionCount': 0}
        status = {key: value for key, value in status.items() if value or key == 'collisionCount'}
        await self.cluster.update_object(self._kind('statefulsets', 'apps'), statefulset, {'status': status}, 'status')

    # ------------------------------------------------------------------ bare pods and garbage

    async def _start_bare_pods(self, knobs: Knobs) -> None:
        for pod in self.cluster.list_objects(self._kind('pods')):
            if not pod['metadata'].get('ownerReferences') and not pod_is_ready(pod) and not pod_is_failing(pod):
                await self._settle_pod(pod, knobs, failing=False)

    async def _collect_garbage(self) -> None:
        """Delete dependents whose owners are all gone (background cascading deletion)."""
        live = [(res, obj.raw) for (res, _ns, _name), obj in self.cluster.objects.items() if not obj.deleted]
        live_uids = {obj['metadata'].get('uid') for _res, obj in live}
        for res, obj in live:
            owners = obj['metadata'].get('ownerReferences') or []
            if owners and not any(ref.get('uid') in live_uids for ref in owners):
                await self._delete(self.cluster.kind_for(res), obj)
        for uid in set(self._born) - live_uids:
            self._born.pop(uid, None)
