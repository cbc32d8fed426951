"""Conformance of the simulated Kubernetes API (cluster.py) through the official client and kubectl."""
import http.client
import json
import pathlib
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from sandbox_support import wait_until

SEEDED = {'fresh-app', 'multi-port', 'numeric-port', 'web-only', 'no-service', 'secret-app'}  # the Deployments
SEEDED_APPS = SEEDED | {'stateful-app'}  # every seeded workload's pod label `app`, the StatefulSet's too


def unique(prefix: str) -> str:
    return f'{prefix}-{uuid.uuid4().hex[:6]}'


def raw_get(sandbox, path, headers=None):
    request = urllib.request.Request(sandbox['TP_SANDBOX_API'] + path, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def raw_request(sandbox, method, path, body=None, content_type='application/json'):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(sandbox['TP_SANDBOX_API'] + path, data=data, method=method,
                                     headers={'Content-Type': content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def status_of(error: ApiException) -> dict:
    return json.loads(error.body)


def deployment_body(name, image='registry.sandbox.local/test/web:1', replicas=1):
    labels = {'app': name}
    return {'metadata': {'name': name, 'labels': labels},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels},
                                  'spec': {'containers': [{'name': 'web', 'image': image}]}}}}


@pytest.fixture
def namespace(kube):
    name = unique('t')
    kube.core.create_namespace({'metadata': {'name': name}})
    yield name
    try:
        kube.core.delete_namespace(name)
    except ApiException:
        pass


def deployment_available(kube, name, namespace):
    deployment = kube.apps.read_namespaced_deployment(name, namespace)
    conditions = {c.type: c for c in deployment.status.conditions or []}
    available = conditions.get('Available')
    return deployment if available is not None and available.status == 'True' and \
        deployment.status.observed_generation == deployment.metadata.generation and \
        deployment.status.updated_replicas == deployment.spec.replicas else None


# ---------------------------------------------------------------------- seeded state

def test_seeded_namespaces(kube):
    names = {ns.metadata.name for ns in kube.core.list_namespace().items}
    assert {'default', 'kube-system', 'app'} <= names
    assert 'ambassador' not in names


def test_seeded_workloads_services_and_running_pods(kube, sandbox):
    deployments = {d.metadata.name: d for d in kube.apps.list_namespaced_deployment('app').items}
    assert SEEDED <= set(deployments)
    services = {s.metadata.name: s for s in kube.core.list_namespaced_service('app').items}
    assert set(services) == SEEDED_APPS - {'no-service'}
    ports = {name: [(p.name, p.port, p.target_port) for p in svc.spec.ports] for name, svc in services.items()}
    assert ports['fresh-app'] == [('http', 80, 8080)]
    assert ports['multi-port'] == [('http', 80, 8080), ('grpc', 9090, 9090)]
    assert ports['numeric-port'] == [(None, 8080, 8080)]
    assert ports['web-only'] == [('web', 80, 8080)]
    for name in SEEDED:
        assert deployments[name].status.available_replicas == 1
        pods = kube.core.list_namespaced_pod('app', label_selector=f'app={name}').items
        assert [p.status.phase for p in pods] == ['Running'], name
        assert re.fullmatch(rf'{name}-[a-z0-9]{{10}}-[a-z0-9]{{5}}', pods[0].metadata.name)
        assert pods[0].status.container_statuses[0].ready is True


def test_seeded_statefulset_with_its_service_and_running_pod(kube):
    statefulset = kube.apps.read_namespaced_stateful_set('stateful-app', 'app')
    assert statefulset.spec.service_name == 'stateful-app' and statefulset.status.ready_replicas == 1
    assert 'stateful-app' not in {d.metadata.name for d in kube.apps.list_namespaced_deployment('app').items}
    service = kube.core.read_namespaced_service('stateful-app', 'app')
    assert [(p.name, p.port, p.target_port) for p in service.spec.ports] == [('http', 80, 8080)]
    pods = kube.core.list_namespaced_pod('app', label_selector='app=stateful-app').items
    assert [(p.metadata.name, p.status.phase) for p in pods] == [('stateful-app-0', 'Running')]


def test_secret_app_carries_the_sandbox_secret(kube, sandbox):
    assert sandbox['TP_SANDBOX_SECRET'].startswith('sbx-secret-')
    pod = kube.core.list_namespaced_pod('app', label_selector='app=secret-app').items[0]
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env == {'API_TOKEN': sandbox['TP_SANDBOX_SECRET'], 'DEBUG': 'false', 'RUN_AS': 'root', 'STATE': 'ACTIVE',
                   'DATA_HOME': '/root'}


# ---------------------------------------------------------------------- reading: selectors, lists, discovery

def test_label_selectors(kube):
    def names(selector):
        return {p.metadata.labels['app'] for p in kube.core.list_namespaced_pod('app', label_selector=selector).items}
    assert names('app=fresh-app') == {'fresh-app'}
    assert names('app in (fresh-app, web-only)') == {'fresh-app', 'web-only'}
    assert names('app notin (fresh-app),app') == SEEDED_APPS - {'fresh-app'}
    assert names('app!=fresh-app') == SEEDED_APPS - {'fresh-app'}
    assert names('missing-label') == set()
    assert names('!missing-label') == SEEDED_APPS


def test_field_selectors(kube):
    by_name = kube.apps.list_deployment_for_all_namespaces(field_selector='metadata.name=web-only').items
    assert [(d.metadata.namespace, d.metadata.name) for d in by_name] == [('app', 'web-only')]
    in_app = kube.core.list_pod_for_all_namespaces(field_selector='metadata.namespace=app,status.phase=Running')
    assert len([p for p in in_app.items if p.metadata.labels.get('app') in SEEDED_APPS]) == len(SEEDED_APPS)
    assert kube.core.list_pod_for_all_namespaces(field_selector='metadata.namespace=nowhere').items == []


def test_lists_carry_kind_api_version_and_resource_version(sandbox):
    deployments = raw_get(sandbox, '/apis/apps/v1/namespaces/app/deployments')
    assert deployments['kind'] == 'DeploymentList' and deployments['apiVersion'] == 'apps/v1'
    pods = raw_get(sandbox, '/api/v1/pods')
    assert pods['kind'] == 'PodList' and pods['apiVersion'] == 'v1'
    assert int(pods['metadata']['resourceVersion']) >= max(int(p['metadata']['resourceVersion']) for p in pods['items'])


def test_version_and_discovery(kube, sandbox):
    assert kube.version.get_code().git_version.startswith('v1.')
    assert raw_get(sandbox, '/version/')['major'] == '1'
    assert raw_get(sandbox, '/api')['versions'] == ['v1']
    core = raw_get(sandbox, '/api/v1')
    assert core['groupVersion'] == 'v1'
    assert {'name': 'pods', 'kind': 'Pod', 'namespaced': True}.items() <= \
        next(r for r in core['resources'] if r['name'] == 'pods').items()
    groups = {g['name']: g for g in raw_get(sandbox, '/apis')['groups']}
    assert groups['apps']['preferredVersion']['groupVersion'] == 'apps/v1'
    apps = raw_get(sandbox, '/apis/apps/v1')
    deploy = next(r for r in apps['resources'] if r['name'] == 'deployments')
    assert deploy['shortNames'] == ['deploy'] and 'watch' in deploy['verbs']


# ---------------------------------------------------------------------- writing: metadata, patch, put

def test_server_fills_metadata(kube, namespace):
    created = kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'cm'}, 'data': {'a': '1'}})
    assert uuid.UUID(created.metadata.uid)
    assert created.metadata.creation_timestamp is not None
    first = int(created.metadata.resource_version)
    patched = kube.core.patch_namespaced_config_map('cm', namespace, {'data': {'a': '2'}})
    assert int(patched.metadata.resource_version) > first
    assert patched.metadata.uid == created.metadata.uid


def test_generation_follows_spec_changes_only(kube, namespace):
    kube.apps.create_namespaced_deployment(namespace, deployment_body('web'))
    assert kube.apps.read_namespaced_deployment('web', namespace).metadata.generation == 1
    relabelled = kube.apps.patch_namespaced_deployment('web', namespace, {'metadata': {'labels': {'x': 'y'}}})
    assert relabelled.metadata.generation == 1
    rescaled = kube.apps.patch_namespaced_deployment('web', namespace, {'spec': {'replicas': 2}})
    assert rescaled.metadata.generation == 2


def test_patch_flavours_and_put(kube, namespace, sandbox):
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'cm'}, 'data': {'a': '1', 'b': '2'}})
    kube.core.patch_namespaced_config_map('cm', namespace, {'data': {'b': None, 'c': '3'}})  # strategic merge
    assert kube.core.read_namespaced_config_map('cm', namespace).data == {'a': '1', 'c': '3'}
    kube.core.patch_namespaced_config_map('cm', namespace, [{'op': 'replace', 'path': '/data/a', 'value': 'j'}])
    assert kube.core.read_namespaced_config_map('cm', namespace).data == {'a': 'j', 'c': '3'}
    raw_request(sandbox, 'PATCH', f'/api/v1/namespaces/{namespace}/configmaps/cm', {'data': {'m': 'merge'}},
                'application/merge-patch+json')
    assert kube.core.read_namespaced_config_map('cm', namespace).data['m'] == 'merge'
    current = kube.core.read_namespaced_config_map('cm', namespace)
    replaced = kube.core.replace_namespaced_config_map('cm', namespace, {
        'metadata': {'name': 'cm', 'resourceVersion': current.metadata.resource_version}, 'data': {'only': 'this'}})
    assert replaced.data == {'only': 'this'}
    with pytest.raises(ApiException) as stale:
        kube.core.replace_namespaced_config_map('cm', namespace, {
            'metadata': {'name': 'cm', 'resourceVersion': current.metadata.resource_version}, 'data': {}})
    assert stale.value.status == 409 and status_of(stale.value)['reason'] == 'Conflict'


def test_not_found_and_already_exists_texts(kube, namespace):
    with pytest.raises(ApiException) as missing:
        kube.apps.read_namespaced_deployment('x', namespace)
    assert missing.value.status == 404
    assert status_of(missing.value) == {
        'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure', 'code': 404, 'reason': 'NotFound',
        'message': 'deployments.apps "x" not found', 'details': {'name': 'x', 'group': 'apps', 'kind': 'deployments'}}
    with pytest.raises(ApiException) as core_missing:
        kube.core.read_namespaced_pod('x', namespace)
    assert status_of(core_missing.value)['message'] == 'pods "x" not found'
    with pytest.raises(ApiException) as exists:
        kube.core.create_namespace({'metadata': {'name': namespace}})
    assert exists.value.status == 409
    assert status_of(exists.value)['reason'] == 'AlreadyExists'
    assert status_of(exists.value)['message'] == f'namespaces "{namespace}" already exists'
    with pytest.raises(ApiException) as no_namespace:
        kube.core.create_namespaced_config_map('ambassador', {'metadata': {'name': 'c'}})
    assert no_namespace.value.status == 404
    assert status_of(no_namespace.value)['message'] == 'namespaces "ambassador" not found'


# ---------------------------------------------------------------------- watch

def collect_watch(list_call, namespace, *, timeout_seconds, out, **kwargs):
    stream = watch.Watch().stream(list_call, namespace, timeout_seconds=timeout_seconds, **kwargs)
    for event in stream:
        out.append((event['type'], event['object'].metadata.name))


def test_watch_events_in_order_and_scoped_to_namespace(kube, namespace):
    other = unique('t-other')
    kube.core.create_namespace({'metadata': {'name': other}})
    start = kube.core.list_namespaced_config_map(namespace).metadata.resource_version
    seen: list = []
    watcher = threading.Thread(target=collect_watch, args=(kube.core.list_namespaced_config_map, namespace),
                               kwargs={'timeout_seconds': 2, 'out': seen, 'resource_version': start})
    watcher.start()
    time.sleep(0.2)
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'w'}, 'data': {'v': '1'}})
    kube.core.create_namespaced_config_map(other, {'metadata': {'name': 'elsewhere'}})
    kube.core.patch_namespaced_config_map('w', namespace, {'data': {'v': '2'}})
    kube.core.delete_namespaced_config_map('w', namespace)
    watcher.join(timeout=10)
    assert not watcher.is_alive()
    assert seen == [('ADDED', 'w'), ('MODIFIED', 'w'), ('DELETED', 'w')]
    kube.core.delete_namespace(other)


def test_watch_from_resource_version_replays_and_times_out(kube, namespace):
    start = kube.core.list_namespaced_config_map(namespace).metadata.resource_version
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'before-watch'}})
    seen: list = []
    began = time.monotonic()
    collect_watch(kube.core.list_namespaced_config_map, namespace, timeout_seconds=1, out=seen,
                  resource_version=start)
    assert seen == [('ADDED', 'before-watch')]
    assert 0.8 < time.monotonic() - began < 5


def test_watch_without_version_lists_current_objects(kube, namespace):
    kube.core.create_namespaced_config_map(namespace, {'metadata': {'name': 'present'}})
    seen: list = []
    collect_watch(kube.core.list_namespaced_config_map, namespace, timeout_seconds=1, out=seen,
                  field_selector='metadata.name=present')
    assert seen == [('ADDED', 'present')]


# ---------------------------------------------------------------------- the controller

def test_deployment_becomes_available_after_ready_delay(kube, namespace, knobs):
    knobs(ready_delay=0.6)
    began = time.monotonic()
    kube.apps.create_namespaced_deployment(namespace, deployment_body('web'))
    early = kube.apps.read_namespaced_deployment('web', namespace)
    assert not early.status.available_replicas
    deployment = wait_until(lambda: deployment_available(kube, 'web', namespace), timeout=10)
    elapsed = time.monotonic() - began
    assert 0.5 <= elapsed < 3, elapsed
    status = deployment.status
    assert (status.observed_generation, status.replicas, status.updated_replicas, status.ready_replicas,
            status.available_replicas) == (1, 1, 1, 1, 1)
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conditions == {'Available': ('True', 'MinimumReplicasAvailable'),
                          'Progressing': ('True', 'NewReplicaSetAvailable')}
    pods = kube.core.list_namespaced_pod(namespace, label_selector='app=web').items
    assert len(pods) == 1 and pods[0].status.phase == 'Running'
    assert re.fullmatch(r'web-[a-z0-9]{10}-[a-z0-9]{5}', pods[0].metadata.name)


def test_template_change_rolls_out_new_pods(kube, namespace, knobs):
    knobs(ready_delay=0.2)
    kube.apps.create_namespaced_deployment(namespace, deployment_body('web', replicas=2))
    wait_until(lambda: deployment_available(kube, 'web', namespace))
    old = {p.metadata.name for p in kube.core.list_namespaced_pod(namespace).items}
    kube.apps.patch_namespaced_deployment('web', namespace, {'spec': {'template': {'spec': {'containers': [
        {'name': 'web', 'image': 'registry.sandbox.local/test/web:2'}]}}}})
    deployment = wait_until(lambda: deployment_available(kube, 'web', namespace) if {
        p.metadata.name for p in kube.core.list_namespaced_pod(namespace).items}.isdisjoint(old) else None)
    assert deployment.metadata.generation == 2 and deployment.status.observed_generation == 2
    pods = kube.core.list_namespaced_pod(namespace).items
    assert len(pods) == 2 and {p.spec.containers[0].image for p in pods} == {'registry.sandbox.local/test/web:2'}


def test_completed_rollouts_are_recorded_once_in_events_log(kube, namespace, knobs, sandbox):
    knobs(ready_delay=0.2)
    events_log = pathlib.Path(sandbox['TP_SANDBOX_DIR']) / 'events.log'

    def rollouts():
        lines = events_log.read_text().splitlines() if events_log.exists() else []
        return [json.loads(line) for line in lines if f'"{namespace}/web"' in line]
    before = time.time()
    kube.apps.create_namespaced_deployment(namespace, deployment_body('web'))
    wait_until(lambda: deployment_available(kube, 'web', namespace))
    wait_until(rollouts)
    time.sleep(0.5)  # further controller passes over a settled Deployment must not add lines
    [event] = rollouts()
    assert event['event'] == 'rollout-complete' and event['generation'] == 1 and event['ts'] >= before


def test_failing_deployment_stays_unavailable_with_pull_errors(kube, namespace, knobs):
    image = 'ghcr.io/telepresenceio/tel2:9.9.9'
    knobs(ready_delay=0.2, failing=[f'{namespace}/broken'])
    kube.apps.create_namespaced_deployment(namespace, deployment_body('broken', image=image))

    def waiting_pod():
        pods = kube.core.list_namespaced_pod(namespace, label_selector='app=broken').items
        statuses = pods[0].status.container_statuses if pods else None
        return pods[0] if statuses and statuses[0].state.waiting and \
            statuses[0].state.waiting.reason == 'ImagePullBackOff' else None
    pod = wait_until(waiting_pod)
    assert pod.status.phase == 'Pending'
    assert pod.status.container_statuses[0].state.waiting.message == f'Back-off pulling image "{image}"'
    events = kube.core.list_namespaced_event(
        namespace, field_selector=f'involvedObject.name={pod.metadata.name},involvedObject.kind=Pod,type=Warning').items
    assert [(e.reason, e.type) for e in events] == [('Failed', 'Warning')]
    assert events[0].message.startswith(f'Failed to pull image "{image}": rpc error:')
    assert 'not found' in events[0].message
    time.sleep(0.5)
    deployment = kube.apps.read_namespaced_deployment('broken', namespace)
    conditions = {c.type: (c.status, c.reason) for c in deployment.status.conditions}
    assert conditions['Available'] == ('False', 'MinimumReplicasUnavailable')
    assert not deployment.status.available_replicas


def test_statefulset_gets_ordinal_pods_and_status(kube, namespace, knobs):
    knobs(ready_delay=0.1)
    body = deployment_body('db')
    body['spec']['serviceName'] = 'db'
    client.AppsV1Api(kube.api).create_namespaced_stateful_set(namespace, body)
    sts = wait_until(lambda: (s := kube.apps.read_namespaced_stateful_set('db', namespace)).status.ready_replicas
                     and s)
    assert sts.status.observed_generation == 1 and sts.status.replicas == 1
    assert [p.metadata.name for p in kube.core.list_namespaced_pod(namespace).items] == ['db-0']


def test_namespace_delete_cascades(kube, knobs, sandbox):
    knobs(ready_delay=0.1)
    name = unique('t-gone')
    kube.core.create_namespace({'metadata': {'name': name}})
    kube.core.create_namespaced_config_map(name, {'metadata': {'name': 'cm'}})
    kube.apps.create_namespaced_deployment(name, deployment_body('web'))
    wait_until(lambda: deployment_available(kube, 'web', name))
    answer = raw_request(sandbox, 'DELETE', f'/api/v1/namespaces/{name}')
    assert answer['kind'] == 'Namespace' and answer['status']['phase'] == 'Terminating'  # as real servers answer
    assert name not in {ns.metadata.name for ns in kube.core.list_namespace().items}
    for items in (kube.core.list_namespaced_config_map(name).items, kube.apps.list_namespaced_deployment(name).items,
                  kube.core.list_namespaced_pod(name).items):
        assert items == []


# ---------------------------------------------------------------------- faults

def test_fault_403_names_verb_resource_and_namespace(kube, cluster_faults):
    cluster_faults({'mode': '403', 'verb': 'list', 'resource': 'deployments', 'namespace': 'ambassador'})
    with pytest.raises(ApiException) as denied:
        kube.apps.list_namespaced_deployment('ambassador')
    assert denied.value.status == 403
    status = status_of(denied.value)
    assert status['reason'] == 'Forbidden'
    assert status['message'] == ('deployments.apps is forbidden: User "sandbox" cannot list resource "deployments" '
                                 'in API group "apps" in the namespace "ambassador"')
    assert kube.apps.list_namespaced_deployment('app').items  # other namespaces are not affected
    kube.core.list_namespaced_pod('ambassador')  # nor other resources


def test_fault_500_with_times_then_success(kube, cluster_faults):
    cluster_faults({'mode': '500', 'verb': '*', 'resource': 'pods', 'namespace': '*', 'times': 2})
    for _attempt in range(2):
        with pytest.raises(ApiException) as failed:
            kube.core.list_namespaced_pod('app')
        assert failed.value.status == 500 and status_of(failed.value)['reason'] == 'InternalError'
    assert kube.core.list_namespaced_pod('app').items


def test_fault_unreachable_closes_the_connection(sandbox, kube, cluster_faults):
    cluster_faults({'mode': 'unreachable', 'times': 1})
    port = urllib.parse.urlsplit(sandbox['TP_SANDBOX_API']).port
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        connection.request('GET', '/version')
        connection.getresponse()
    connection.close()
    assert kube.version.get_code().major == '1'  # `times: 1` spent: reachable again


def test_fault_unreachable_fails_the_official_client(kube, cluster_faults):
    import urllib3
    cluster_faults({'mode': 'unreachable', 'verb': 'get', 'resource': 'deployments', 'namespace': 'app'})
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        kube.apps.read_namespaced_deployment('fresh-app', 'app', _request_timeout=5)
    assert kube.apps.list_namespaced_deployment('app').items  # only `get` was targeted


# ---------------------------------------------------------------------- kubectl

@pytest.mark.skipif(shutil.which('kubectl', path='/usr/bin') is None, reason='/usr/bin/kubectl is not installed')
def test_kubectl_reads_the_sandbox(sandbox):
    def kubectl(*args):
        result = subprocess.run(['/usr/bin/kubectl', *args], capture_output=True, text=True, timeout=60, check=False,
                                env={'KUBECONFIG': sandbox['KUBECONFIG'], 'HOME': sandbox['TP_SANDBOX_DIR'],
                                     'PATH': '/usr/bin:/bin'})
        assert result.returncode == 0, result.stderr
        return result.stdout
    listing = kubectl('get', 'deploy,svc', '-A')
    assert re.search(r'app\s+deployment.apps/fresh-app\s+1/1\s+1\s+1', listing)
    assert re.search(r'app\s+service/multi-port\s+ClusterIP\s+\S+\s+<none>\s+80/TCP,9090/TCP', listing)
    assert re.search(r'^app\s+Active', kubectl('get', 'ns'), re.M)
    pods = kubectl('-n', 'app', 'get', 'pods', '-l', 'app=fresh-app')
    assert re.search(r'fresh-app-\S+\s+1/1\s+Running\s+0', pods)
    assert 'multi-port' not in pods
