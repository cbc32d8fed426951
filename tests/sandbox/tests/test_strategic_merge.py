"""Strategic merge patch in the sandbox cluster (clusterkit/strategic.py), and `kubectl apply` of edited manifests.

Where the expected objects come from: Kubernetes' strategic-merge-patch semantics, i.e. the patch.go algorithm of
k8s.io/apimachinery/pkg/util/strategicpatch (mergeMap/mergeSlice/mergePatchIntoOriginal, its documented directives
`$patch`, `$setElementOrder/`, `$retainKeys`, `$deleteFromPrimitiveList/`) and the patchStrategy/patchMergeKey tags
of k8s.io/api core/v1 types.go (ServiceSpec.Ports: merge by `port`; PodSpec.Containers/InitContainers: merge by
`name`; Container.Env: merge by `name`; Container.Ports: merge by `containerPort`; Container.VolumeMounts: merge by
`mountPath`; PodSpec.Volumes: merge,retainKeys by `name`; ObjectMeta.Finalizers: merge of a primitive list) and
apps/v1 (DeploymentSpec.Strategy: retainKeys). For `kubectl apply` the expectation is what the API server ends up
with after a client-side apply: the fields of the last applied manifest exactly (kubectl's three-way patch removes
what the previous manifest had and the new one has not), with the order of the new manifest, plus what the server
itself defaulted (protocol TCP, targetPort = port, ...), which the patch leaves alone.
"""
import json
import shutil
import subprocess

import pytest
import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from clusterkit.errors import ApiError  # noqa: E402
from clusterkit.strategic import strategic_merge_patch  # noqa: E402

SERVICE = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 's', 'namespace': 'n'},
           'spec': {'ports': [{'name': 'web', 'port': 80, 'protocol': 'TCP', 'targetPort': 'web'},
                              {'name': 'admin', 'port': 9000, 'protocol': 'TCP', 'targetPort': 9000}]}}


def container(**fields):
    return dict({'name': 'app', 'image': 'app:1'}, **fields)


def deployment(*containers, **spec):
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'd', 'finalizers': ['a', 'b']},
            'spec': dict({'template': {'spec': {'containers': list(containers)}}}, **spec)}


# ---------------------------------------------------------------------- the algorithm, case by case

def test_list_items_merge_by_their_key():
    patched = strategic_merge_patch('Service', SERVICE, {'spec': {'ports': [{'port': 80, 'targetPort': 8080}]}})
    assert patched['spec']['ports'] == [{'name': 'web', 'port': 80, 'protocol': 'TCP', 'targetPort': 8080},
                                        SERVICE['spec']['ports'][1]]


def test_patch_delete_in_a_list_and_set_element_order():
    # what kubectl apply sends when `admin` is removed and `web` renamed to `http` (merge key `port` unchanged)
    patch = {'spec': {'$setElementOrder/ports': [{'port': 80}],
                      'ports': [{'name': 'http', 'port': 80}, {'$patch': 'delete', 'port': 9000}]}}
    patched = strategic_merge_patch('Service', SERVICE, patch)
    assert patched['spec'] == {'ports': [{'name': 'http', 'port': 80, 'protocol': 'TCP', 'targetPort': 'web'}]}


def test_set_element_order_reorders_and_keeps_server_only_items():
    current = deployment(container(name='a'), container(name='b'), container(name='c'))
    patch = {'spec': {'template': {'spec': {'$setElementOrder/containers': [{'name': 'b'}, {'name': 'a'}]}}}}
    names = [c['name'] for c in strategic_merge_patch('Deployment', current, patch)['spec']['template']['spec']
             ['containers']]
    assert names == ['b', 'a', 'c']


def test_new_items_go_where_the_order_says():
    current = deployment(container(env=[{'name': 'A', 'value': '1'}, {'name': 'C', 'value': '3'}]))
    patch = {'spec': {'template': {'spec': {'containers': [{'name': 'app', '$setElementOrder/env': [
        {'name': 'A'}, {'name': 'B'}, {'name': 'C'}], 'env': [{'name': 'B', 'value': '2'}]}]}}}}
    env = strategic_merge_patch('Deployment', current, patch)['spec']['template']['spec']['containers'][0]['env']
    assert env == [{'name': 'A', 'value': '1'}, {'name': 'B', 'value': '2'}, {'name': 'C', 'value': '3'}]


def test_patch_replace_in_a_list_and_in_a_map():
    patched = strategic_merge_patch('Service', SERVICE, {'metadata': {'labels': {'x': '1'}}, 'spec': {
        'ports': [{'$patch': 'replace'}, {'port': 81}]}})
    assert patched['spec']['ports'] == [{'port': 81}]
    replaced = strategic_merge_patch('Service', patched, {'metadata': {'labels': {'$patch': 'replace', 'y': '2'}}})
    assert replaced['metadata']['labels'] == {'y': '2'}
    deleted = strategic_merge_patch('Service', patched, {'metadata': {'labels': {'$patch': 'delete'}}})
    assert deleted['metadata']['labels'] == {}


def test_retain_keys_clears_the_other_union_members():
    current = deployment(container(), strategy={'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': 1}})
    patched = strategic_merge_patch('Deployment', current, {'spec': {'strategy': {
        '$retainKeys': ['type'], 'type': 'Recreate'}}})
    assert patched['spec']['strategy'] == {'type': 'Recreate'}
    with pytest.raises(ApiError, match='retainKeys'):
        strategic_merge_patch('Deployment', current, {'spec': {'strategy': {'$retainKeys': ['type'], 'x': 1}}})


def test_delete_from_primitive_list_and_primitive_merge():
    current = deployment(container())
    patched = strategic_merge_patch('Deployment', current, {'metadata': {
        '$deleteFromPrimitiveList/finalizers': ['a'], 'finalizers': ['c']}})
    # mergeSortedSlice puts a patch item before a server-only one when it cannot compare them (it is not in the
    # live list); kubectl sends `$setElementOrder/finalizers` when the order matters
    assert patched['metadata']['finalizers'] == ['c', 'b']


def test_lists_without_a_strategy_are_replaced_and_nulls_delete():
    current = deployment(container(args=['x', 'y'], ports=[{'containerPort': 80}]))
    patched = strategic_merge_patch('Deployment', current, {'spec': {'template': {'spec': {'containers': [
        {'name': 'app', 'args': ['z'], 'image': None, 'ports': [{'containerPort': 81}]}]}}}})
    assert patched['spec']['template']['spec']['containers'] == [
        {'name': 'app', 'args': ['z'], 'ports': [{'containerPort': 81}, {'containerPort': 80}]}]  # see above


def test_no_directive_is_ever_stored():
    with pytest.raises(ApiError, match='unknown patch type'):
        strategic_merge_patch('Service', SERVICE, {'spec': {'$patch': 'x'}})
    fresh = strategic_merge_patch('Service', {'kind': 'Service'}, {'spec': {
        '$setElementOrder/ports': [{'port': 80}], 'ports': [{'port': 80}, {'$patch': 'delete', 'port': 1}]}})
    assert '$' not in json.dumps(fresh)


# ---------------------------------------------------------------------- kubectl apply of edited manifests

KUBECTL = shutil.which('kubectl', path='/usr/bin')


def manifests(service_ports, containers):
    return {'apiVersion': 'v1', 'kind': 'List', 'items': [
        {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'cart', 'namespace': 'smp-shop'},
         'spec': {'selector': {'app': 'cart'}, 'ports': service_ports}},
        {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'cart', 'namespace': 'smp-shop'},
         'spec': {'replicas': 1, 'selector': {'matchLabels': {'app': 'cart'}},
                  'template': {'metadata': {'labels': {'app': 'cart'}}, 'spec': {'containers': containers}}}}]}


@pytest.fixture
def kubectl(sandbox):
    def run(*args, stdin=None):
        result = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, timeout=60,
                                check=False, env={'KUBECONFIG': sandbox['KUBECONFIG'],
                                                  'HOME': sandbox['TP_SANDBOX_DIR'], 'PATH': '/usr/bin:/bin'})
        assert result.returncode == 0, result.stderr
        return result.stdout
    run.kubeconfig, run.home = sandbox['KUBECONFIG'], sandbox['TP_SANDBOX_DIR']
    namespace = json.dumps({'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'smp-shop'}})
    run('create', '--validate=false', '-f', '-', stdin=namespace)
    yield run
    run('delete', '-f', '-', stdin=namespace)


def live(kubectl):
    service = json.loads(kubectl('-n', 'smp-shop', 'get', 'service', 'cart', '-o', 'json'))
    deploy = json.loads(kubectl('-n', 'smp-shop', 'get', 'deployment', 'cart', '-o', 'json'))
    return service, deploy


def app_container(image='shop/cart:1', env=None, ports=None):
    result = {'name': 'cart', 'image': image,
              'ports': ports or [{'name': 'web', 'containerPort': 8080}, {'name': 'metrics', 'containerPort': 9102}],
              'env': env or [{'name': 'MODE', 'value': 'prod'}, {'name': 'DEBUG', 'value': '0'}]}
    return result


def defaulted_ports(ports):
    """What the server adds to Service ports (protocol TCP, targetPort = port): kept across applies."""
    return [dict({'protocol': 'TCP', 'targetPort': port['port']}, **port) for port in ports]


def without_protocol(ports):
    """A real server also defaults container ports' protocol to TCP; the sandbox does not (a field the patch
    never touches, so leaving it out of the comparison does not hide a merge difference)."""
    return [{k: v for k, v in port.items() if k != 'protocol'} for port in ports]


@pytest.mark.skipif(KUBECTL is None, reason='/usr/bin/kubectl is not installed')
def test_kubectl_apply_of_edited_manifests_stores_what_a_real_server_would(kubectl):
    first_ports = [{'name': 'web', 'port': 80, 'targetPort': 'web'}, {'name': 'metrics', 'port': 9102}]
    kubectl('apply', '--validate=false', '-f', '-', stdin=json.dumps(manifests(first_ports, [app_container()])))
    service, deploy = live(kubectl)
    assert service['spec']['ports'] == defaulted_ports(first_ports)

    steps = [
        # targetPort web -> 8080 (the edit that used to drop the port's name)
        ([{'name': 'web', 'port': 80, 'targetPort': 8080}, {'name': 'metrics', 'port': 9102}], app_container()),
        # port renamed web -> http, metrics port removed, env entry DEBUG removed, image changed
        ([{'name': 'http', 'port': 80, 'targetPort': 8080}],
         app_container(image='shop/cart:2', env=[{'name': 'MODE', 'value': 'prod'}])),
        # a container port removed, an env entry added in the middle, order changed
        ([{'name': 'http', 'port': 80, 'targetPort': 8080}, {'name': 'grpc', 'port': 9090}],
         app_container(image='shop/cart:2', ports=[{'name': 'web', 'containerPort': 8080}],
                       env=[{'name': 'NEW', 'value': 'x'}, {'name': 'MODE', 'value': 'dev'}])),
    ]
    for ports, cart in steps:
        kubectl('apply', '--validate=false', '-f', '-', stdin=json.dumps(manifests(ports, [cart])))
        service, deploy = live(kubectl)
        assert service['spec']['ports'] == defaulted_ports(ports)
        stored = deploy['spec']['template']['spec']['containers']
        assert len(stored) == 1
        got = {k: stored[0][k] for k in cart}
        assert dict(got, ports=without_protocol(got['ports'])) == cart
        assert '$' not in json.dumps(service) + json.dumps(deploy)


# ---------------------------------------------------------------------- kubectl's typed generators (protobuf bodies)

@pytest.mark.skipif(KUBECTL is None, reason='/usr/bin/kubectl is not installed')
def test_kubectl_typed_create_of_namespace_configmap_secret(kubectl):
    """They send protobuf (clusterkit/protobuf.py reads those three kinds); other generators get a 415 that says why."""
    kubectl('create', 'namespace', 'smp-typed')
    try:
        kubectl('create', 'configmap', 'cfg', '-n', 'smp-typed', '--from-literal=a=1', '--from-literal=b=two')
        kubectl('create', 'secret', 'generic', 's1', '-n', 'smp-typed', '--from-literal=pw=hunter2', '--type=Opaque')
        namespace = json.loads(kubectl('get', 'namespace', 'smp-typed', '-o', 'json'))
        assert namespace['status'] == {'phase': 'Active'}
        configmap = json.loads(kubectl('-n', 'smp-typed', 'get', 'configmap', 'cfg', '-o', 'json'))
        assert configmap['data'] == {'a': '1', 'b': 'two'}
        secret = json.loads(kubectl('-n', 'smp-typed', 'get', 'secret', 's1', '-o', 'json'))
        assert (secret['data'], secret['type']) == ({'pw': 'aHVudGVyMg=='}, 'Opaque')
        refused = subprocess.run([KUBECTL, 'create', 'deployment', 'd1', '-n', 'smp-typed', '--image=x'],
                                 capture_output=True, text=True, timeout=60, check=False,
                                 env={'KUBECONFIG': kubectl.kubeconfig, 'HOME': kubectl.home, 'PATH': '/usr/bin:/bin'})
        assert refused.returncode == 1
        assert 'not apps/v1 Deployment' in refused.stderr and '--dry-run=client -o yaml | kubectl apply' in refused.stderr
    finally:
        kubectl('delete', 'namespace', 'smp-typed')
