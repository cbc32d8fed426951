"""Conformance of the Telepresence emulator (default v2.24.0) with /work/shared/docs/telepresence-cli-facts.md.

Each test runs a baked artifact `DIR/bin/telepresence-<ver>` as a subprocess against the sandbox cluster and
checks outputs, exit codes, the objects it leaves in the cluster and the emulator's own files.
"""
import base64
import gzip
import json
import pathlib
import re
import subprocess
import sys
import threading

import pytest

from emulator_fixtures import decode_release, kube_client

V = '2.24.0'
CONNECT = ('connect', '-n', 'app')    # the sandbox kubeconfig's context namespace is `default`
NOT_FOUND = ("connector.Connect: traffic manager not found, if it is not installed, please run 'telepresence helm "
             "install'. If it is installed, try connecting with a --manager-namespace to point telepresence to the "
             "namespace it's installed in.")
INTERCEPT_KEYS = {'name', 'namespace', 'workload', 'workload_kind', 'service', 'service_port_name', 'service_port', 'local_port',
                  'disposition', 'client', 'env_names', 'mount', 'id', 'mode'}


@pytest.fixture
def manager(tp):
    tp.ensure_manager(V)
    yield tp
    tp.remove_agents()


# --------------------------------------------------------------------------------------------- version / status

def test_emulator_version_text_and_json_do_not_start_daemons(tp):
    text = tp.run(V, 'version')
    assert (text.rc, text.err) == (0, '')
    assert text.out == 'OSS Client : v2.24.0\nRoot Daemon: not running\nUser Daemon: not running\n'
    assert re.search(r'Client\s*:\s*v2\.24\.0', text.out)
    envelope = tp.run(V, 'version', '--output', 'json')
    assert envelope.json() == {'cmd': 'version', 'stdout': text.out}
    assert envelope.out.endswith('}\n')
    assert not (tp.dir / 'state.json').exists() or not tp.state()['daemons']['user']['running']


def test_emulator_status_not_running(tp):
    result = tp.run(V, 'status', '--output', 'json')
    assert result.rc == 0
    assert result.json() == {'root_daemon': {}, 'traffic_manager': {'name': '', 'traffic_agent': '', 'version': ''},
                             'user_daemon': {}}
    text = tp.run(V, 'status')
    assert text.out == 'OSS User Daemon: Not running\nOSS Root Daemon: Not running\n'


def test_emulator_connect_status_quit_cycle(manager):
    tp = manager
    connect = tp.run(V, *CONNECT)
    assert connect.rc == 0, connect
    assert connect.out == f'Connected to context sandbox, namespace app ({tp.env["TP_SANDBOX_API"]})\n'
    status = tp.run(V, 'status', '--output', 'json').json()
    user, root, mgr = status['user_daemon'], status['root_daemon'], status['traffic_manager']
    assert user['status'] == 'Connected' and user['running'] is True
    assert user['version'] == '2.24.0'                      # no leading v since 2.19
    assert root['version'] == 'v2.24.0' and mgr['version'] == 'v2.24.0'
    assert (user['kubernetes_context'], user['namespace'], user['manager_namespace']) == ('sandbox', 'app', 'ambassador')
    assert user['executable'] == tp.binary(V)
    assert 'intercepts' not in user and 'mapped_namespaces' not in user       # omitempty
    assert mgr['traffic_agent'] == 'ghcr.io/telepresenceio/tel2:2.24.0'
    # identical request: reused, silent; any flag difference: the daemon refuses
    again = tp.run(V, *CONNECT, '--output', 'json')
    assert (again.rc, again.out, again.err) == (0, '', '')
    changed = tp.run(V, 'connect')
    assert changed.rc == 1
    assert changed.err == 'connector.Connect: Cluster configuration changed, please quit telepresence and reconnect\n'
    changed_json = tp.run(V, 'connect', '-n', 'default', '--output', 'json')
    assert changed_json.json() == {
        'cmd': 'connect', 'err': 'connector.Connect: Cluster configuration changed, please quit telepresence and reconnect'}
    version = tp.run(V, 'version').out
    assert 'OSS Traffic Manager: v2.24.0\n' in version and 'Traffic Agent      : ghcr.io/telepresenceio/tel2:2.24.0\n' in version
    assert tp.run(V, 'quit').out == 'Disconnected\n'
    assert tp.run(V, 'quit').out == 'Not connected\n'
    assert tp.run(V, 'status', '--output', 'json').json()['user_daemon']['status'] == 'Not connected'
    stop = tp.run(V, 'quit', '-s')
    assert (stop.rc, stop.out) == (0, 'Quit\n')
    assert tp.run(V, 'quit', '--stop-daemons').out == ''
    assert tp.state()['daemons']['user']['running'] is False


def test_emulator_connect_flags_recorded(manager):
    tp = manager
    result = tp.run(V, 'connect', '--namespace', 'app', '--manager-namespace', 'ambassador', '--context', 'sandbox',
                    '--mapped-namespaces', 'app,default', '--also-proxy', '10.0.0.0/8', '--output', 'json')
    assert (result.rc, result.out) == (0, '')
    session = tp.state()['session']
    assert session['flags'] == {'also-proxy': ['10.0.0.0/8'], 'context': 'sandbox', 'manager-namespace': 'ambassador',
                                'mapped-namespaces': ['app', 'default'], 'namespace': 'app'}
    status = tp.run(V, 'status', '--output', 'json').json()
    assert status['user_daemon']['mapped_namespaces'] == ['app', 'default']
    assert status['root_daemon']['also_proxy_subnets'] == ['10.0.0.0/8']
    # the same namespace, now implied instead of explicit: still "changed" (raw flag maps differ)
    assert tp.run(V, 'connect', '--manager-namespace', 'ambassador').rc == 1


def test_emulator_connect_without_manager(tp):
    result = tp.run(V, 'connect', '--manager-namespace', 'nowhere')
    assert (result.rc, result.out) == (1, '')
    assert result.err == NOT_FOUND + '\n'
    as_json = tp.run(V, 'connect', '--manager-namespace', 'nowhere', '--output', 'json')
    assert as_json.json() == {'cmd': 'connect', 'err': NOT_FOUND}
    # the user daemon was launched and stays up, not connected
    assert tp.state()['daemons']['user']['running'] and tp.state()['session'] is None


def test_emulator_manager_namespace_from_env_and_config(manager):
    tp = manager
    assert tp.run(V, 'connect', extra_env={'TELEPRESENCE_MANAGER_NAMESPACE': 'nowhere'}).err == NOT_FOUND + '\n'
    tp.config('cluster:\n  defaultManagerNamespace: nowhere\n')
    assert tp.run(V, 'connect').rc == 1
    tp.config('cluster:\n  defaultManagerNamespace: ambassador\n')
    assert tp.run(V, *CONNECT).rc == 0


# --------------------------------------------------------------------------------------------- sudo / mismatch

def test_emulator_sudo_missing(manager):
    tp = manager
    tp.knobs(sudo='missing')
    result = tp.run(V, *CONNECT, timeout=10)
    assert result.rc == 1 and result.duration < 5
    assert result.err == ('sudo: a terminal is required to read the password; either use the -S option to read from '
                          'standard input or configure an askpass helper\nsudo: a password is required\n'
                          'failed to launch the daemon service: exit status 1\n')
    assert tp.state()['daemons']['root']['running'] is False
    docker = tp.run(V, *CONNECT, '--docker')
    assert docker.rc == 0, docker
    status = tp.run(V, 'status', '--output', 'json').json()
    assert set(status) == {'daemon', 'traffic_manager'} and status['daemon']['in_docker'] is True


def test_emulator_version_mismatch(manager):
    tp = manager
    assert tp.run(V, *CONNECT).rc == 0
    for args in (['connect', '-n', 'app'], ['list', '--output', 'json'], ['intercept', 'fresh-app'], ['leave', 'x'],
                 ['uninstall', '--all-agents']):
        result = tp.run('2.25.0', *args)
        assert result.rc == 1, (args, result)
        message = "version mismatch. Client v2.25.0 != user daemon v2.24.0, please run 'telepresence quit -s' and reconnect"
        assert message in result.out + result.err
    assert tp.run('2.25.0', 'version').rc == 0
    assert tp.run('2.25.0', 'status', '--output', 'json').json()['user_daemon']['version'] == '2.24.0'
    assert tp.run('2.25.0', 'quit', '-s').rc == 0
    assert tp.run('2.25.0', *CONNECT).rc == 0
    assert tp.state()['daemons']['user']['version'] == '2.25.0'


# --------------------------------------------------------------------------------------------- helm

def test_emulator_helm_install_upgrade_uninstall(tp):
    tp.run(V, 'helm', 'uninstall')
    k = kube_client(tp.env)
    install = tp.run(V, 'helm', 'install', '--set', 'agent.logLevel=debug')
    assert (install.rc, install.out) == (0, '\nTraffic Manager installed successfully\n'), install
    deployment = k.apps.read_namespaced_deployment('traffic-manager', 'ambassador')
    labels = deployment.metadata.labels
    assert labels['app'] == 'traffic-manager' and labels['telepresence'] == 'manager'
    assert labels['helm.sh/chart'] == 'telepresence-oss-2.24.0' and labels['app.kubernetes.io/version'] == '2.24.0'
    assert labels['app.kubernetes.io/managed-by'] == 'Helm'
    assert deployment.spec.template.spec.containers[0].image == 'ghcr.io/telepresenceio/tel2:2.24.0'
    assert deployment.status.available_replicas == 1
    service = k.core.read_namespaced_service('traffic-manager', 'ambassador')
    assert service.spec.cluster_ip == 'None' and service.spec.ports[0].name == 'api' and service.spec.ports[0].port == 8081
    secret = k.core.read_namespaced_secret('sh.helm.release.v1.traffic-manager.v1', 'ambassador')
    assert secret.type == 'helm.sh/release.v1'
    assert secret.metadata.labels == {'owner': 'helm', 'name': 'traffic-manager', 'status': 'deployed', 'version': '1'}
    release = decode_release(secret)
    assert (release['name'], release['namespace'], release['version']) == ('traffic-manager', 'ambassador', 1)
    assert release['info']['status'] == 'deployed'
    assert release['chart']['metadata'] == {**release['chart']['metadata'], 'name': 'telepresence-oss',
                                            'version': '2.24.0', 'appVersion': '2.24.0'}
    assert release['config']['agent'] == {'logLevel': 'debug'}
    assert release['config']['image'] == {'registry': 'ghcr.io/telepresenceio', 'tag': '2.24.0'}

    again = tp.run(V, 'helm', 'install')
    assert again.rc == 1
    assert again.err == ('telepresence helm install: error: traffic-manager version "2.24.0" is already installed, '
                         "use 'telepresence helm upgrade' instead to replace it\n")
    upgrade = tp.run('2.24.1', 'helm', 'upgrade')
    assert (upgrade.rc, upgrade.out) == (0, '\nTraffic Manager upgraded successfully\n'), upgrade
    v1 = decode_release(k.core.read_namespaced_secret('sh.helm.release.v1.traffic-manager.v1', 'ambassador'))
    v2 = decode_release(k.core.read_namespaced_secret('sh.helm.release.v1.traffic-manager.v2', 'ambassador'))
    assert (v1['info']['status'], v2['info']['status']) == ('superseded', 'deployed')
    assert v2['config']['agent'] == {'logLevel': 'debug'}           # no values given: --reuse-values implied
    assert tp.manager_version() == '2.24.1'
    reset = tp.run(V, 'helm', 'upgrade', '--reset-values', '--reuse-values')
    assert reset.err.endswith('error: --reset-values and --reuse-values are mutually exclusive\n')
    assert tp.run(V, 'helm', 'uninstall').out == '\nTraffic Manager uninstalled successfully\n'
    assert tp.manager_version() is None
    assert k.core.list_namespaced_secret('ambassador', label_selector='owner=helm').items == []
    assert tp.run(V, 'helm', 'uninstall').rc == 0          # absent: success
    missing = tp.run(V, 'helm', 'upgrade')
    assert missing.err == ("telepresence helm upgrade: error: traffic-manager is not installed, use 'telepresence helm "
                           "install' to install it\n")
    assert not (tp.dir / 'state.json').exists() or not tp.state()['daemons']['user']['running']


def test_emulator_helm_values_file_and_namespace(tp, tmp_path):
    values = tmp_path / 'values.yaml'
    values.write_text('# a comment\nimage:\n  registry: registry.local/tp\nlogLevel: debug\nlist:\n  - a\n  - b\n')
    result = tp.run(V, 'helm', 'install', '-n', 'tm-values', '-f', str(values), '--output', 'json')
    assert result.rc == 0, result
    assert result.json() == {'cmd': 'install', 'stdout': '\nTraffic Manager installed successfully\n'}
    k = kube_client(tp.env)
    deployment = k.apps.read_namespaced_deployment('traffic-manager', 'tm-values')
    assert deployment.spec.template.spec.containers[0].image == 'registry.local/tp/tel2:2.24.0'
    release = decode_release(k.core.read_namespaced_secret('sh.helm.release.v1.traffic-manager.v1', 'tm-values'))
    assert release['config']['logLevel'] == 'debug' and release['config']['list'] == ['a', 'b']
    no_ns = tp.run(V, 'helm', 'install', '--manager-namespace', 'tm-absent', '--create-namespace=false')
    assert no_ns.rc == 1 and 'namespaces "tm-absent" not found' in no_ns.err
    assert tp.run(V, 'helm', 'uninstall', '-n', 'tm-values').rc == 0


def test_emulator_helm_timeout_rolls_back(tp):
    tp.run(V, 'helm', 'uninstall', '--manager-namespace', 'tm-fail')
    tp.config('timeouts:\n  helm: 1s\n')
    tp.knobs(failing=['tm-fail/traffic-manager'])
    result = tp.run(V, 'helm', 'install', '--manager-namespace', 'tm-fail')
    assert result.rc == 1 and 1 <= result.duration < 10
    assert 'timed out waiting for the condition' in result.err and 'atomic' in result.err
    k = kube_client(tp.env)
    assert k.apps.list_namespaced_deployment('tm-fail').items == []
    assert k.core.list_namespaced_secret('tm-fail', label_selector='owner=helm').items == []


def test_emulator_helm_repairs_stuck_release(tp):
    tp.run(V, 'helm', 'uninstall', '--manager-namespace', 'tm-stuck')
    assert tp.run(V, 'helm', 'install', '--manager-namespace', 'tm-stuck').rc == 0
    k = kube_client(tp.env)
    secret = k.core.read_namespaced_secret('sh.helm.release.v1.traffic-manager.v1', 'tm-stuck')
    release = decode_release(secret)
    release['info']['status'] = 'pending-install'
    blob = base64.b64encode(gzip.compress(json.dumps(release).encode())).decode()
    k.core.patch_namespaced_secret(secret.metadata.name, 'tm-stuck', {
        'metadata': {'labels': {'status': 'pending-install'}},
        'data': {'release': base64.b64encode(blob.encode()).decode()}})
    assert tp.run(V, 'helm', 'upgrade', '--manager-namespace', 'tm-stuck').rc == 1
    repaired = tp.run(V, 'helm', 'install', '--manager-namespace', 'tm-stuck')
    assert repaired.rc == 0, repaired
    secret = k.core.read_namespaced_secret('sh.helm.release.v1.traffic-manager.v1', 'tm-stuck')
    assert secret.metadata.labels['status'] == 'deployed'
    assert tp.run(V, 'helm', 'uninstall', '--manager-namespace', 'tm-stuck').rc == 0


# --------------------------------------------------------------------------------------------- list / intercept

def test_emulator_list_implicit_connect(manager):
    tp = manager
    result = tp.run(V, 'list', '-n', 'app', '--output', 'json')
    assert result.rc == 0, result
    envelope = result.json()
    assert envelope['cmd'] == 'list'
    names = [w['name'] for w in envelope['stdout']]
    assert {'fresh-app', 'multi-port', 'numeric-port', 'web-only', 'no-service', 'secret-app'} <= set(names)
    fresh = next(w for w in envelope['stdout'] if w['name'] == 'fresh-app')
    assert fresh['namespace'] == 'app' and fresh['workload_resource_type'] == 'Deployment' and fresh['uid']
    assert 'agent_version' not in fresh and 'intercept_info' not in fresh
    assert tp.calls()[-1]['implicit_connect'] is True
    assert tp.state()['session']['namespace'] == 'default'     # implicit: the context's namespace
    # a second call reuses the session: no implicit connect
    assert tp.run(V, 'list', '-n', 'app', '-i', '--output', 'json').json() == {'cmd': 'list', 'stdout': []}
    assert tp.calls()[-1]['implicit_connect'] is False


def test_emulator_implicit_connect_warning_text_mode(manager):
    tp = manager
    result = tp.run(V, 'list', '-n', 'app')
    assert result.rc == 0
    assert result.err == ('Warning: You are executing the "telepresence list [flags]" command without a preceding '
                          '"telepresence connect", causing an implicit connect to namespace "default". The implicit '
                          'connect behavior is deprecated and will be removed in a future release.\n')
    assert 'deployment fresh-app: ready to engage (traffic-agent not yet installed)\n' in result.out


def test_emulator_intercept_detailed_output(manager, tmp_path):
    tp = manager
    assert tp.run(V, *CONNECT).rc == 0
    env_file, env_json = tmp_path / 'app.env', tmp_path / 'app.json'
    result = tp.run(V, 'intercept', 'secret-app', '--port', '8091:http', '--mount=false', '-e', str(env_file),
                    '-j', str(env_json), '--output', 'json', '--detailed-output')
    assert result.rc == 0, result
    info = result.json()
    secret = tp.env['TP_SANDBOX_SECRET']
    assert info['name'] == 'secret-app' and info['disposition'] == 'ACTIVE' and info['workload_kind'] == 'Deployment'
    assert (info['target_host'], info['target_port'], info['port_id'], info['container_port']) == \
        ('127.0.0.1', 8091, 'http', 8080)
    assert info['environment']['API_TOKEN'] == secret and info['id'] and info['service_uid']
    assert 'mount' not in info
    assert f'API_TOKEN={secret}\n' in env_file.read_text()
    assert json.loads(env_json.read_text())['API_TOKEN'] == secret
    # the cluster side, 2.24 manager (facts sheet section 9, "How agents get into pods, by version"): the pod was
    # replaced and the webhook put the agent and its configuration annotation into the new one; the template is
    # untouched and no telepresence-agents entry is written
    k = kube_client(tp.env)
    deployment = k.apps.read_namespaced_deployment('secret-app', 'app')
    assert [c.name for c in deployment.spec.template.spec.containers] == ['secret-app']
    assert not deployment.spec.template.metadata.annotations
    (pod,) = k.core.list_namespaced_pod('app', label_selector='app=secret-app').items
    containers = {c.name: c for c in pod.spec.containers}
    assert containers['traffic-agent'].image == 'ghcr.io/telepresenceio/tel2:2.24.0'
    assert json.loads(pod.metadata.annotations['telepresence.io/agent-config'])['workloadName'] == 'secret-app'
    assert 'secret-app' not in config_map_entries(k, 'app')
    # the state the traffic proxies read
    record = tp.state()['intercepts'][0]
    assert set(record) == INTERCEPT_KEYS
    assert record == {**record, 'name': 'secret-app', 'namespace': 'app', 'workload': 'secret-app',
                      'service': 'secret-app', 'service_port_name': 'http', 'service_port': 80, 'local_port': 8091,
                      'disposition': 'ACTIVE', 'mount': False, 'mode': 'intercept'}
    assert 'API_TOKEN' in record['env_names'] and re.match(r'^[^@]+@[^@]+$', record['client'])
    # list and status see it
    workloads = tp.run(V, 'list', '--output', 'json').json()['stdout']
    entry = next(w for w in workloads if w['name'] == 'secret-app')
    assert entry['agent_version'] == '2.24.0'
    (element,) = entry['intercept_info']
    assert element['disposition'] == 1 and element['spec']['name'] == 'secret-app'
    assert element['spec']['service_port_name'] == 'http' and element['spec']['target_port'] == 8091
    assert [w['name'] for w in tp.run(V, 'list', '-i', '--output', 'json').json()['stdout']] == ['secret-app']
    status = tp.run(V, 'status', '--output', 'json').json()
    assert status['user_daemon']['intercepts'] == [{'name': 'secret-app', 'client': record['client']}]
    # already exists, then leave, then leave again
    dup = tp.run(V, 'intercept', 'secret-app', '--port', '8091:http', '--output', 'json', '--detailed-output')
    assert dup.rc == 1 and dup.json() == {
        'cmd': 'intercept', 'err': 'connector.CreateIntercept: Intercept with name "secret-app" already exists'}
    leave = tp.run(V, 'leave', 'secret-app')
    assert (leave.rc, leave.out, leave.err) == (0, '', '')
    again = tp.run(V, 'leave', 'secret-app')
    assert again.rc == 1
    assert again.err == 'telepresence leave: error: Found no replace, intercept, or ingest named "secret-app"\n'
    assert tp.state()['intercepts'] == []
    # the agent stays installed after leave
    assert has_agent(k, 'secret-app')


def has_agent(k, name):
    """A pod of the workload runs the agent: where agents are in every version (facts sheet section 9)."""
    pods = k.core.list_namespaced_pod('app', label_selector='app=%s' % name).items
    return any(c.name == 'traffic-agent' for pod in pods for c in pod.spec.containers)


def config_map_entries(k, namespace):
    from kubernetes.client.rest import ApiException
    try:
        return k.core.read_namespaced_config_map('telepresence-agents', namespace).data or {}
    except ApiException as exc:
        assert exc.status == 404
        return {}


def test_emulator_intercept_output_modes(manager):
    tp = manager
    assert tp.run(V, *CONNECT).rc == 0
    quiet = tp.run(V, 'intercept', 'fresh-app', '--port', '8092:http', '--output', 'json')
    assert (quiet.rc, quiet.out) == (0, '')            # 2.23+: no --detailed-output, nothing printed
    text = tp.run(V, 'intercept', 'multi-port', '--port', '8093:grpc')
    assert text.rc == 0
    assert text.out.startswith('Using Deployment multi-port\n')
    assert 'Volume Mount Error     : remote volume mounts are disabled: sshfs is not installed' in text.out
    detailed = tp.run(V, 'intercept', 'web-only', '--port', '8094:80', '--output', 'json', '--detailed-output')
    info = detailed.json()
    assert info['port_id'] == 'web'
    assert info['mount'] == {'error': 'remote volume mounts are disabled: sshfs is not installed on your local machine'}
    records = {r['name']: r for r in tp.state()['intercepts']}
    assert records['multi-port']['service_port'] == 9090 and records['multi-port']['service_port_name'] == 'grpc'
    assert records['web-only']['service_port_name'] == 'web' and records['web-only']['mount'] == 'true'
    numeric = tp.run(V, 'intercept', 'numeric-port', '--port', '8095', '--output', 'json', '--detailed-output')
    assert numeric.json()['port_id'] == '8080' and tp.state()['intercepts'][-1]['service_port_name'] == ''
    no_service = tp.run(V, 'intercept', 'no-service', '--mount=false', '--output', 'json', '--detailed-output')
    assert no_service.rc == 0 and no_service.json()['target_port'] == 8080          # 2.21+: container port
    assert tp.run(V, 'quit').out == 'Disconnected\n'
    assert tp.state()['intercepts'] == []


@pytest.mark.parametrize('args, message', [
    (['intercept', 'missing-app', '--port', '8080'], 'connector.CreateIntercept: workload "missing-app.app" not found'),
    (['intercept', 'fresh-app', '--port', '80x:http'],
     'port must be of the format --port <local-port>[:<svcPortIdentifier>], was "80x:http"'),
    (['intercept', 'fresh-app', '--port', '8080:nope'],
     'connector.CreateIntercept: service fresh-app.app has no port named or numbered "nope"'),
])
def test_emulator_intercept_errors(manager, args, message):
    tp = manager
    assert tp.run(V, *CONNECT).rc == 0
    as_json = tp.run(V, *args, '--output', 'json', '--detailed-output')
    assert as_json.rc == 1 and as_json.json() == {'cmd': 'intercept', 'err': message}
    text = tp.run(V, *args)
    assert text.rc == 1 and message in text.err


@pytest.mark.parametrize('flag', ['--http-header=x=y', '--preview-url=true', '--namespace=app'])
def test_emulator_intercept_unknown_flags_2_24(tp, flag):
    result = tp.run(V, 'intercept', 'fresh-app', flag, '--output', 'json')
    assert (result.rc, result.out) == (1, '')
    assert result.err == f'telepresence intercept: error: unknown flag: {flag.split("=")[0]}\n'


def test_emulator_intercept_timeout_when_agent_never_ready(manager):
    tp = manager
    tp.config('timeouts:\n  intercept: 1s\n')
    tp.knobs(failing=['app/web-only'])
    assert tp.run(V, *CONNECT).rc == 0
    result = tp.run(V, 'intercept', 'web-only', '--port', '8096:web', '--output', 'json', '--detailed-output')
    assert result.rc == 1 and result.duration < 10
    assert result.json()['err'] == ('connector.CreateIntercept: request timed out while waiting for agent web-only.app '
                                    'to arrive')
    assert tp.state()['intercepts'] == []
    tp.knobs()


def test_emulator_uninstall(manager):
    tp = manager
    assert tp.run(V, *CONNECT).rc == 0
    assert tp.run(V, 'intercept', 'fresh-app', '--port', '8097:http', '--mount=false').rc == 0
    none = tp.run(V, 'uninstall')
    assert none.err == 'telepresence uninstall: error: please specify at least one workload or use or --all-agents\n'
    both = tp.run(V, 'uninstall', '-a', 'fresh-app')
    assert both.err == 'telepresence uninstall: error: --all-agents cannot be used with additional arguments\n'
    result = tp.run(V, 'uninstall', 'fresh-app')
    assert (result.rc, result.out) == (0, ''), result
    k = kube_client(tp.env)
    assert not has_agent(k, 'fresh-app')
    assert 'fresh-app' not in config_map_entries(k, 'app')
    assert tp.state()['intercepts'] == []
    deprecated = tp.run(V, 'uninstall', '--agent', 'fresh-app')
    assert deprecated.rc == 0 and "--agent is deprecated (it's the default, so the flag has no effect)" in deprecated.err


def test_emulator_uninstall_all_agents_reaches_every_namespace(manager):
    tp = manager
    assert tp.run(V, *CONNECT).rc == 0
    assert tp.run(V, 'intercept', 'fresh-app', '--port', '8095:http', '--mount=false').rc == 0
    assert tp.run(V, 'quit').rc == 0
    # a session in another namespace: --all-agents carries no namespace, so app's agent goes too
    assert tp.run(V, 'connect', '-n', 'default', '--manager-namespace', 'ambassador').rc == 0
    result = tp.run(V, 'uninstall', '--all-agents')
    assert (result.rc, result.out) == (0, ''), result
    k = kube_client(tp.env)
    assert not has_agent(k, 'fresh-app')
    assert 'fresh-app' not in config_map_entries(k, 'app')


# --------------------------------------------------------------------------------------------- cli faults / log

@pytest.mark.parametrize('output, expect', [
    ([], lambda r: r.err == 'telepresence status: error: boom\n' and r.out == ''),
    (['--output', 'json'], lambda r: r.json() == {'cmd': 'status', 'err': 'boom'}),
])
def test_emulator_fault_error(tp, output, expect):
    tp.faults(cli={'status': {'mode': 'error', 'message': 'boom'}})
    result = tp.run(V, 'status', *output)
    assert result.rc == 1 and expect(result), result
    assert tp.calls()[-1]['rc'] == 1


def test_emulator_fault_flaky_then_ok(tp):
    tp.faults(cli={'version': {'mode': 'flaky', 'times': 2}})
    assert [tp.run(V, 'version').rc for _attempt in range(3)] == [1, 1, 0]
    assert [c['rc'] for c in tp.calls()] == [1, 1, 0]


def test_emulator_fault_malformed(tp):
    tp.faults(cli={'helm install': {'mode': 'malformed'}})
    result = tp.run(V, 'helm', 'install', '--output', 'json')
    assert result.rc == 0
    with pytest.raises(ValueError):
        json.loads(result.out)


def test_emulator_fault_hang_is_logged_then_killed(tp):
    tp.faults(cli={'connect': {'mode': 'hang'}})
    with pytest.raises(subprocess.TimeoutExpired):
        tp.run(V, 'connect', timeout=1.0)
    record = tp.calls()[-1]
    assert record['argv'] == ['connect'] and record['rc'] is None


def test_emulator_calls_log_shape(tp):
    tp.run(V, 'version')
    tp.run(V, 'bogus')
    first, second = tp.calls()
    assert {'ts', 'version', 'argv', 'rc', 'duration', 'implicit_connect'} <= set(first)
    assert (first['version'], first['argv'], first['rc'], first['implicit_connect']) == ('2.24.0', ['version'], 0, False)
    assert second['rc'] == 1


def test_emulator_unknown_command_and_flags(tp):
    bogus = tp.run(V, 'bogus')
    assert bogus.rc == 1 and bogus.err.startswith('telepresence: error: unknown command "bogus" for "telepresence"')
    flag = tp.run(V, 'status', '--bogus')
    assert flag.err == 'telepresence status: error: unknown flag: --bogus\n'
    short = tp.run(V, 'quit', '-x')
    assert short.err == "telepresence quit: error: unknown shorthand flag: 'x' in -x\n"
    detach = tp.run(V, 'detach', 'x')
    assert detach.rc == 1 and 'unknown command "detach"' in detach.err
    bad_output = tp.run(V, 'status', '--output', 'xml')
    assert bad_output.rc == 1 and 'invalid output format "xml"' in bad_output.err


def test_emulator_no_sandbox_dir(tp, tmp_path):
    source = tp.dir.parent / 'nowhere'
    emulator = pathlib.Path(__file__).resolve().parents[1] / 'emulator' / 'telepresence.py'
    result = subprocess.run([sys.executable, str(emulator), 'version'], capture_output=True, text=True,
                            env={'PATH': '/usr/bin:/bin', 'TP_SANDBOX_DIR': str(source)}, timeout=10, check=False)
    assert result.returncode == 1 and 'no sandbox directory' in result.stderr


def test_emulator_concurrent_calls_keep_state_valid(manager):
    tp = manager
    assert tp.run(V, *CONNECT).rc == 0
    results = {}

    def intercept(name, port):
        results[name] = tp.run(V, 'intercept', name, '--port', f'{port}:http', '--mount=false')

    threads = [threading.Thread(target=intercept, args=args) for args in (('fresh-app', 8098), ('secret-app', 8099))]
    threads += [threading.Thread(target=lambda: tp.run(V, 'status', '--output', 'json')) for _reader in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(r.rc == 0 for r in results.values()), results
    assert sorted(i['name'] for i in tp.state()['intercepts']) == ['fresh-app', 'secret-app']
    assert len(tp.calls()) == 7
