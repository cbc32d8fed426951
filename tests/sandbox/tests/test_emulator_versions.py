"""Per-version behaviour of the emulator (2.20.2, 2.24.0, 2.25.0, 2.29.0, 2.30.0) against the facts sheet."""
import json
import time

import pytest


CONNECT = ('connect', '-n', 'app')
VERSIONS = ['2.20.2', '2.24.0', '2.25.0', '2.29.0', '2.30.0']


@pytest.fixture
def manager(tp):
    tp.ensure_manager('2.24.0')
    yield tp
    tp.remove_agents()


# --------------------------------------------------------------------------------------------- 2.20.2

def test_emulator_v2_20_status_and_version_text(tp):
    assert tp.run('2.20.2', 'status').out == ('User Daemon: Not running\nRoot Daemon: Not running\n'
                                              'Traffic Manager: Not connected\n')
    assert tp.run('2.20.2', 'version', '--output', 'json').json()['stdout'].startswith('OSS Client : v2.20.2\n')


def test_emulator_v2_20_session_commands(manager):
    tp = manager
    connect = tp.run('2.20.2', *CONNECT)
    assert connect.out == ('Launching Telepresence User Daemon\nLaunching Telepresence Root Daemon\n'
                           f'Connected to context sandbox, namespace app ({tp.env["TP_SANDBOX_API"]})\n')
    intercept = tp.run('2.20.2', 'intercept', 'fresh-app', '--port', '8180:http', '--mount=false', '--output', 'json')
    assert intercept.rc == 0, intercept
    envelope = intercept.json()                 # 2.20: the info text lands in the envelope's stdout
    assert envelope['cmd'] == 'intercept' and envelope['stdout'].startswith('Using Deployment fresh-app\n')
    workloads = tp.run('2.20.2', 'list', '--output', 'json').json()['stdout']
    fresh = next(w for w in workloads if w['name'] == 'fresh-app')
    assert fresh['intercept_infos'][0]['disposition'] == 1 and 'intercept_info' not in fresh
    assert 'sidecar' in fresh and 'agent_version' not in fresh
    assert tp.run('2.20.2', 'status', '--output', 'json').json()['user_daemon']['version'] == '2.20.2'
    leave = tp.run('2.20.2', 'leave', 'nope')
    assert leave.err == 'telepresence leave: error: Intercept named "nope" not found\n'
    assert tp.run('2.20.2', 'uninstall').err == 'telepresence uninstall: error: please specify --agent or --all-agents\n'
    assert tp.run('2.20.2', 'uninstall', '--agent', 'fresh-app').rc == 0
    assert tp.run('2.20.2', 'quit', '-s').out == 'Telepresence Daemons quitting...done\n'


def test_emulator_v2_20_refuses_newer_flags(tp):
    assert tp.run('2.20.2', 'helm', 'install', '--version', '2.20.2').err == \
        'telepresence helm install: error: unknown flag: --version\n'
    assert tp.run('2.20.2', 'connect', '--reroute-local', 'x').err == \
        'telepresence connect: error: unknown flag: --reroute-local\n'
    assert 'unknown flag: --format' in tp.run('2.20.2', 'version', '--format', 'json').err


def test_emulator_v2_20_implicit_warning_goes_to_stdout(manager):
    tp = manager
    result = tp.run('2.20.2', 'list', '-n', 'app')
    assert result.out.startswith('Launching Telepresence User Daemon\nLaunching Telepresence Root Daemon\n'
                                 'Warning: You are executing the "telepresence list [flags]" command without a preceding '
                                 '"telepresence connect", causing an implicit connect to take place.')
    assert 'fresh-app' in result.out and 'ready to intercept (traffic-agent not yet installed)' in result.out
    quiet = tp.run('2.20.2', 'list', '-n', 'app', '--output', 'json')
    assert 'Warning' not in quiet.out + quiet.err


# --------------------------------------------------------------------------------------------- 2.25.0

def test_emulator_v2_25_http_filters(manager):
    tp = manager
    assert tp.run('2.25.0', *CONNECT).rc == 0
    result = tp.run('2.25.0', 'intercept', 'fresh-app', '--port', '8181:http', '--mount=false',
                    '--http-header', 'x-dev=me', '--output', 'json', '--detailed-output')
    assert result.rc == 0, result
    assert result.json()['http_filter'] == ['x-dev=me']
    assert 'unknown flag: --namespace' in tp.run('2.25.0', 'intercept', 'x', '--namespace', 'app').err


def test_emulator_v2_25_refuses_old_manager(tp):
    tp.ensure_manager('2.20.2')
    try:
        result = tp.run('2.25.0', *CONNECT)
        assert result.rc == 1
        assert result.err == ('connector.Connect: traffic manager version 2.20.2 is too old. Minimum supported version '
                              'is 2.21.0, please upgrade\n')
    finally:
        (tp.dir / 'state.json').unlink(missing_ok=True)
        tp.ensure_manager('2.24.0')


# --------------------------------------------------------------------------------------------- 2.29.0

def test_emulator_v2_29_format_json(manager):
    tp = manager
    version = tp.run('2.29.0', 'version', '--format', 'json')
    assert version.json() == {'client': 'v2.29.0'} and not version.out.endswith('\n')
    status = tp.run('2.29.0', 'status', '--format', 'json').json()
    assert status['user_daemon'] == {}
    assert tp.run('2.29.0', *CONNECT, '--format', 'json').out == ''
    listed = tp.run('2.29.0', 'list', '--format', 'json').json()
    assert isinstance(listed, list) and any(w['name'] == 'fresh-app' for w in listed)
    info = tp.run('2.29.0', 'intercept', 'fresh-app', '--port', '8182:http', '--mount=false', '--format', 'json')
    assert info.json()['name'] == 'fresh-app' and info.json()['disposition'] == 'ACTIVE'
    error = tp.run('2.29.0', 'leave', 'nope', '--format', 'json')
    assert error.rc == 1 and error.json() == {'error': 'Found no replace, intercept, or ingest named "nope"'}
    yaml_out = tp.run('2.29.0', 'version', '--format', 'yaml')
    assert yaml_out.out.startswith('client: v2.29.0\nroot_daemon: v2.29.0\n')
    assert tp.run('2.29.0', 'leave', 'fresh-app', '--namespace', 'app').rc == 0


def test_emulator_v2_29_output_deprecated(tp):
    legacy = tp.run('2.29.0', 'status', '--output', 'json')
    assert legacy.rc == 0 and legacy.err == 'Flag --output has been deprecated, use --format instead\n'
    assert json.loads(legacy.out)['traffic_manager'] == {'name': '', 'traffic_agent': '', 'version': ''}
    both = tp.run('2.29.0', 'status', '--output', 'json', '--format', 'json')
    assert both.rc == 1 and 'if any flags in the group [format output] are set none of the others can be' in both.err


def test_emulator_v2_29_intercept_namespace_flag(manager):
    tp = manager
    assert tp.run('2.29.0', 'connect').rc == 0                 # connected to `default`
    result = tp.run('2.29.0', 'intercept', 'fresh-app', '--namespace', 'app', '--port', '8183:http',
                    '--mount=false', '--format', 'json')
    assert result.rc == 0, result
    assert tp.state()['intercepts'][0]['namespace'] == 'app'


# --------------------------------------------------------------------------------------------- 2.30.0

def test_emulator_v2_30_detach_and_leave_alias(manager):
    tp = manager
    assert tp.run('2.30.0', *CONNECT).rc == 0
    assert tp.run('2.30.0', 'intercept', 'fresh-app', '--port', '8184:http', '--mount=false').rc == 0
    assert tp.run('2.30.0', 'detach', 'fresh-app').rc == 0
    missing = tp.run('2.30.0', 'detach', 'fresh-app')
    assert missing.err == 'telepresence detach: error: Found no replace, intercept, or ingest named "fresh-app"\n'
    assert tp.run('2.30.0', 'intercept', 'fresh-app', '--port', '8184:http', '--mount=false').rc == 0
    alias = tp.run('2.30.0', 'leave', 'fresh-app')
    assert alias.rc == 0 and 'Command "leave" is deprecated' in alias.err
    assert 'detach' in tp.run('2.30.0', '--help').out and 'leave' not in tp.run('2.30.0', '--help').out


# --------------------------------------------------------------------------------------------- all versions

def _json_flags(version):
    return ('--format', 'json') if version >= '2.29' else ('--output', 'json')


def _listed_intercept(tp, version, name):
    listed = tp.run(version, 'list', *_json_flags(version)).json()
    workloads = listed if isinstance(listed, list) else listed['stdout']
    for workload in workloads:
        for info in workload.get('intercept_info') or workload.get('intercept_infos') or []:
            if info['spec']['name'] == name:
                return info
    raise AssertionError('intercept %s not listed: %s' % (name, listed))


@pytest.mark.parametrize('version,reported', [
    ('2.20.2', 'http/TCP'), ('2.24.0', 'http'), ('2.25.0', 'http'), ('2.29.0', 'http'), ('2.30.0', 'http')])
def test_emulator_reported_port_identifier_by_version(manager, version, reported):
    """Facts sheet section 3, "The reported port identifier carries the protocol in 2.20.x"."""
    tp = manager
    assert tp.run(version, *CONNECT).rc == 0
    detailed = ('--detailed-output',) if version < '2.29' else ()
    result = tp.run(version, 'intercept', 'fresh-app', '--port', '8185:http', '--mount=false',
                    *_json_flags(version), *detailed)
    assert result.rc == 0, result
    assert (result.json()['port_id'], result.json()['service_port_id']) == (reported, reported)
    assert _listed_intercept(tp, version, 'fresh-app')['spec']['port_identifier'] == reported


@pytest.mark.parametrize('version,knob,reported', [('2.20.2', 'plain', 'http'), ('2.24.0', 'suffix', 'http/TCP')])
def test_emulator_port_identifier_knob_overrides_the_version(manager, version, knob, reported):
    """The 2.24 form is UNVERIFIED in the sheet (section 3): knob `port_identifier_protocol` offers both."""
    tp = manager
    tp.knobs(port_identifier_protocol=knob)
    assert tp.run(version, *CONNECT).rc == 0
    result = tp.run(version, 'intercept', 'fresh-app', '--port', '8186:http', '--mount=false',
                    '--output', 'json', '--detailed-output')
    assert result.rc == 0, result
    assert result.json()['port_id'] == reported
    assert _listed_intercept(tp, version, 'fresh-app')['spec']['port_identifier'] == reported


def _release_config(tp, namespace='ambassador'):
    from emulator_fixtures import decode_release, kube_client
    secrets = kube_client(tp.env).core.list_namespaced_secret(namespace, label_selector='owner=helm').items
    latest = max(secrets, key=lambda secret: int(secret.metadata.labels['version']))
    return decode_release(latest)['config']


@pytest.mark.parametrize('version', ['2.20.2', '2.24.0', '2.25.0', '2.29.0', '2.30.0'])
def test_emulator_helm_empty_values_file_reuses_and_reset_drops(tp, tmp_path, version):
    """Facts sheet section 8, "No values given includes an empty values file" (--reset-values drops them)."""
    namespace = 'tm-values-' + version.replace('.', '-')
    empty = tmp_path / 'empty.json'
    empty.write_text('{}')
    tp.run(version, 'helm', 'uninstall', '--manager-namespace', namespace)
    try:
        assert tp.run(version, 'helm', 'install', '--manager-namespace', namespace,
                      '--set', 'agent.logLevel=debug').rc == 0
        assert tp.run(version, 'helm', 'upgrade', '--manager-namespace', namespace, '-f', str(empty)).rc == 0
        assert _release_config(tp, namespace)['agent'] == {'logLevel': 'debug'}       # -f {} reuses them
        reset = tp.run(version, 'helm', 'upgrade', '--manager-namespace', namespace, '--reset-values',
                       '-f', str(empty))
        assert reset.rc == 0, reset
        assert _release_config(tp, namespace) == {'image': {'registry': 'ghcr.io/telepresenceio', 'tag': version}}
    finally:
        tp.run(version, 'helm', 'uninstall', '--manager-namespace', namespace)


@pytest.mark.parametrize('version', VERSIONS)
def test_emulator_helm_injects_values_from_client_config(tp, version):
    """Facts sheet section 8, "Values always merged ... The client also injects, from its own config.yml"."""
    namespace = 'tm-inject-' + version.replace('.', '-')
    tp.config('images:\n  registry: registry.local/tp\n  webhookRegistry: registry.local/agents\n'
              'grpc:\n  maxReceiveSize: 10Mi\ntelepresenceAPI:\n  port: 9980\n')
    tp.run(version, 'helm', 'uninstall', '--manager-namespace', namespace)
    try:
        assert tp.run(version, 'helm', 'install', '--manager-namespace', namespace).rc == 0
        assert _release_config(tp, namespace) == {
            'image': {'registry': 'registry.local/tp', 'tag': version},
            'agent': {'image': {'registry': 'registry.local/agents'}},
            'grpc': {'maxReceiveSize': '10Mi'}, 'telepresenceAPI': {'port': 9980}}
    finally:
        tp.run(version, 'helm', 'uninstall', '--manager-namespace', namespace)


@pytest.mark.parametrize('version', ['2.20.2', '2.24.0', '2.25.0', '2.29.0', '2.30.0'])
@pytest.mark.parametrize('shape', ['not_connected', 'empty_connected', 'daemon_error'])
def test_emulator_status_after_quit_shapes(manager, version, shape):
    """Facts sheet section 9, "`status` after `quit` (2.21-2.31): UNVERIFIED": knob status_after_quit."""
    tp = manager
    tp.knobs(status_after_quit=shape)
    assert tp.run(version, *CONNECT).rc == 0
    assert tp.run(version, 'quit').rc == 0
    result = tp.run(version, 'status', '--output', 'json')
    if version == '2.20.2' or shape == 'not_connected':      # 2.20.2 is VERIFIED: Not connected
        assert result.rc == 0 and result.json()['user_daemon']['status'] == 'Not connected'
    elif shape == 'empty_connected':
        user = result.json()['user_daemon']
        assert result.rc == 0 and user['status'] == 'Connected' and user['running'] is True
        assert not {'kubernetes_context', 'namespace', 'manager_namespace'} & set(user)
    else:
        assert result.rc == 1
        assert 'no active session' in result.json()['err']
    assert tp.run(version, 'quit', '-s').rc == 0


@pytest.mark.parametrize('version,carries_mount', [
    ('2.20.2', True), ('2.24.0', False), ('2.25.0', False), ('2.29.0', False), ('2.30.0', False)])
def test_emulator_detailed_output_mount_with_mount_false(manager, version, carries_mount):
    """Facts sheet section 3, "Mount point in 2.20.2 detailed output" (2.23+ blanks it)."""
    tp = manager
    assert tp.run(version, *CONNECT).rc == 0
    detailed = ('--detailed-output',) if version < '2.29' else ()
    result = tp.run(version, 'intercept', 'fresh-app', '--port', '8187:http', '--mount=false',
                    *_json_flags(version), *detailed)
    assert result.rc == 0, result
    info = result.json()
    assert ('mount' in info) == carries_mount
    if carries_mount:
        assert info['mount']['remote_dir'] and 'error' not in info['mount']


def _workload_body(kind, name):
    labels = {'app': name}
    return {'apiVersion': 'apps/v1', 'kind': kind, 'metadata': {'name': name, 'namespace': 'app', 'labels': labels},
            'spec': {'replicas': 1, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels},
                                  'spec': {'containers': [{'name': name, 'image': 'registry.local/%s:1' % name}]}}}}


@pytest.mark.parametrize('version', ['2.20.2', '2.24.0', '2.25.0', '2.29.0', '2.30.0'])
def test_emulator_list_shows_statefulsets_and_replicasets(manager, version):
    """Facts sheet section 3, WorkloadInfo `workload_resource_type` (Deployment/ReplicaSet/StatefulSet/Rollout) and the
    text form "No Workloads (Deployments, StatefulSets, ReplicaSets, or Rollouts)"."""
    from emulator_fixtures import kube_client
    tp = manager
    apps = kube_client(tp.env).apps
    apps.create_namespaced_stateful_set('app', _workload_body('StatefulSet', 'list-db'))
    apps.create_namespaced_replica_set('app', _workload_body('ReplicaSet', 'list-batch'))
    try:
        assert tp.run(version, *CONNECT).rc == 0
        listed = tp.run(version, 'list', *_json_flags(version)).json()
        workloads = listed if isinstance(listed, list) else listed['stdout']
        kinds = {w['name']: w['workload_resource_type'] for w in workloads}
        assert (kinds['list-db'], kinds['list-batch'], kinds['fresh-app']) == ('StatefulSet', 'ReplicaSet', 'Deployment')
        # the ReplicaSets the Deployments own are not workloads of their own
        assert list(kinds.values()).count('ReplicaSet') == 1
        text = tp.run(version, 'list').out
        if version >= '2.22':
            assert 'statefulset list-db: ready to engage' in text and 'replicaset list-batch: ready to engage' in text
        else:
            assert 'list-db' in text and 'list-batch' in text
    finally:
        apps.delete_namespaced_stateful_set('list-db', 'app')
        apps.delete_namespaced_replica_set('list-batch', 'app')


@pytest.mark.parametrize('version', VERSIONS)
def test_emulator_intercepts_a_statefulset(manager, version):
    """Facts sheet section 3 (workload kinds) and section 5 (interceptable deployment, replicaset, or statefulset)."""
    from emulator_fixtures import kube_client
    tp = manager
    k = kube_client(tp.env)
    body = _workload_body('StatefulSet', 'stateful-db')
    body['spec']['template']['spec']['containers'][0]['ports'] = [{'name': 'http', 'containerPort': 8080}]
    k.apps.create_namespaced_stateful_set('app', body)
    k.core.create_namespaced_service('app', {'apiVersion': 'v1', 'kind': 'Service',
                                             'metadata': {'name': 'stateful-db', 'namespace': 'app'},
                                             'spec': {'selector': {'app': 'stateful-db'},
                                                      'ports': [{'name': 'http', 'port': 80, 'targetPort': 8080}]}})
    try:
        assert tp.run(version, *CONNECT).rc == 0
        detailed = ('--detailed-output',) if version < '2.29' else ()
        result = tp.run(version, 'intercept', 'stateful-db', '--port', '8188:http', '--mount=false',
                        *_json_flags(version), *detailed)
        assert result.rc == 0, result
        assert result.json()['workload_kind'] == 'StatefulSet'
        info = _listed_intercept(tp, version, 'stateful-db')
        assert info['spec']['workload_kind'] == 'StatefulSet'
        assert _agent_pods(k, 'stateful-db') == ['stateful-db-0']
        assert tp.run(version, 'detach' if version >= '2.30' else 'leave', 'stateful-db').rc == 0
        assert tp.run(version, 'uninstall', '--agent' if version < '2.21' else '--all-agents',
                      *(['stateful-db'] if version < '2.21' else [])).rc == 0
        assert _eventually(lambda: _agent_pods(k, 'stateful-db') == [])
    finally:
        k.apps.delete_namespaced_stateful_set('stateful-db', 'app')
        k.core.delete_namespaced_service('stateful-db', 'app', _preload_content=False)


# ------------------------------------------------------------------- agents, by the traffic-manager's version

def _eventually(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _agent_pods(k, workload):
    """Names of the workload's pods that run a traffic agent (the sheet's detection, section 9)."""
    pods = k.core.list_namespaced_pod('app', label_selector='app=%s' % workload).items
    return sorted(p.metadata.name for p in pods if 'traffic-agent' in [c.name for c in p.spec.containers])


def _pod_uids(k, workload):
    return {p.metadata.uid for p in k.core.list_namespaced_pod('app', label_selector='app=%s' % workload).items}


def _template(k, kind, workload):
    read = k.apps.read_namespaced_stateful_set if kind == 'StatefulSet' else k.apps.read_namespaced_deployment
    return read(workload, 'app').spec.template


def _agents_config_map(k):
    from kubernetes.client.rest import ApiException
    try:
        return k.core.read_namespaced_config_map('telepresence-agents', 'app').data or {}
    except ApiException as exc:
        assert exc.status == 404
        return {}


def _listed_agent_version(tp, version, workload):
    listed = tp.run(version, 'list', *_json_flags(version)).json()
    entry = next(w for w in (listed if isinstance(listed, list) else listed['stdout']) if w['name'] == workload)
    if version >= '2.22':
        return entry.get('agent_version', '')
    return (entry.get('sidecar') or {}).get('agentImage', '').rpartition(':')[2]


def _uninstall_args(version, workload):
    return ('uninstall', '--agent', workload) if version < '2.21' else ('uninstall', workload)


@pytest.mark.parametrize('kind,workload,port', [('Deployment', 'fresh-app', 8190), ('StatefulSet', 'stateful-app', 8191)])
@pytest.mark.parametrize('version', VERSIONS)
def test_emulator_agents_get_into_pods_by_manager_version(tp, version, kind, workload, port):
    """Facts sheet section 9, "How agents get into pods, by version": up to 2.21 a telepresence-agents ConfigMap
    entry and a patched pod template; from 2.22 no ConfigMap and no template patch, the pods are evicted and the
    webhook injects the agent into their replacements. Both paths end with the agent in a pod, and
    `telepresence uninstall` removes it on both."""
    from emulator_fixtures import kube_client
    k = kube_client(tp.env)
    tp.ensure_manager(version)
    try:
        before = _pod_uids(k, workload)
        untouched = _template(k, kind, workload).to_dict()
        assert tp.run(version, *CONNECT).rc == 0
        detailed = ('--detailed-output',) if version < '2.29' else ()
        result = tp.run(version, 'intercept', workload, '--port', '%d:http' % port, '--mount=false',
                        *_json_flags(version), *detailed)
        assert result.rc == 0, result
        assert result.json()['workload_kind'] == kind
        assert len(_agent_pods(k, workload)) == 1
        assert not before & _pod_uids(k, workload)          # the agent came with a new pod on both paths
        template = _template(k, kind, workload)
        if version >= '2.22':
            assert template.to_dict() == untouched
            assert workload not in _agents_config_map(k)
            (pod,) = k.core.list_namespaced_pod('app', label_selector='app=%s' % workload).items
            assert json.loads(pod.metadata.annotations['telepresence.io/agent-config'])['workloadName'] == workload
        else:
            assert 'traffic-agent' in [c.name for c in template.spec.containers]
            assert any(key.endswith('/restartedAt') for key in template.metadata.annotations)
            assert json.loads(_agents_config_map(k)[workload])['workloadName'] == workload
        assert _listed_agent_version(tp, version, workload) == version
        assert tp.run(version, 'detach' if version >= '2.30' else 'leave', workload).rc == 0
        assert tp.run(version, *_uninstall_args(version, workload)).rc == 0
        assert _eventually(lambda: _agent_pods(k, workload) == [])
        assert 'traffic-agent' not in [c.name for c in _template(k, kind, workload).spec.containers]
        assert workload not in _agents_config_map(k)
        assert _listed_agent_version(tp, version, workload) == ''
        if version >= '2.22':
            assert _template(k, kind, workload).to_dict() == untouched
    finally:
        tp.remove_agents()


@pytest.mark.parametrize('client,manager_version,evicts', [('2.24.0', '2.20.2', False), ('2.20.2', '2.24.0', True)])
def test_emulator_the_managers_version_picks_the_agent_path(tp, client, manager_version, evicts):
    """Facts sheet section 9, "How agents get into pods, by version": the manager injects, so its version counts."""
    from emulator_fixtures import kube_client
    k = kube_client(tp.env)
    tp.ensure_manager(manager_version)
    try:
        assert tp.run(client, *CONNECT).rc == 0
        result = tp.run(client, 'intercept', 'fresh-app', '--port', '8192:http', '--mount=false',
                        '--output', 'json', '--detailed-output')
        assert result.rc == 0, result
        patched = 'traffic-agent' in [c.name for c in _template(k, 'Deployment', 'fresh-app').spec.containers]
        assert patched is not evicts and ('fresh-app' in _agents_config_map(k)) is not evicts
        assert _agent_pods(k, 'fresh-app')
        uninstall = ('uninstall', '--all-agents')
        assert tp.run(client, *uninstall).rc == 0
        assert _eventually(lambda: _agent_pods(k, 'fresh-app') == [])
    finally:
        tp.remove_agents()


def test_emulator_a_stale_agents_config_map_entry_is_no_agent(manager):
    """Facts sheet section 9: a 2.22+ manager does not use the telepresence-agents ConfigMap, so an entry left by an
    older one names no agent: `list` shows none and `uninstall --all-agents` has nothing to do."""
    from emulator_fixtures import kube_client
    tp = manager
    k = kube_client(tp.env)
    stale = {'metadata': {'name': 'telepresence-agents'},
             'data': {'fresh-app': json.dumps({'workloadName': 'fresh-app'})}}
    present = [c.metadata.name for c in k.core.list_namespaced_config_map('app').items]
    if 'telepresence-agents' in present:
        k.core.replace_namespaced_config_map('telepresence-agents', 'app', stale)   # one an older test left
    else:
        k.core.create_namespaced_config_map('app', stale)
    try:
        assert tp.run('2.24.0', *CONNECT).rc == 0
        assert _listed_agent_version(tp, '2.24.0', 'fresh-app') == ''
        assert tp.run('2.24.0', 'list', '--agents', '--output', 'json').json()['stdout'] == []
        assert tp.run('2.24.0', 'uninstall', '--all-agents').rc == 0
        assert _agent_pods(k, 'fresh-app') == []
    finally:
        k.core.delete_namespaced_config_map('telepresence-agents', 'app')
