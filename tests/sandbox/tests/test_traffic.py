"""Conformance of the traffic stand-ins (traffic.py): cluster answers by default, the local server when intercepted."""
import http.server
import json
import os
import subprocess
import time
import threading
import urllib.error
import urllib.request

import pytest
from sandbox_support import SANDBOX

SERVICES = ('fresh-app', 'multi-port', 'numeric-port', 'web-only', 'secret-app', 'stateful-app')


def traffic_url(sandbox, service):
    return sandbox['TP_SANDBOX_TRAFFIC_' + service.upper().replace('-', '_')]


def fetch(url, method='GET', body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def intercept(service, local_port, **overrides):
    entry = {'name': service, 'namespace': 'app', 'workload': service, 'service': service,
             'service_port_name': 'http', 'service_port': 80, 'local_port': local_port, 'disposition': 'ACTIVE'}
    entry.update(overrides)
    return entry


@pytest.fixture
def local_server():
    """The developer's local process: echoes what it received."""
    class Echo(http.server.BaseHTTPRequestHandler):
        def do_any(self):
            body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
            payload = json.dumps({'method': self.command, 'path': self.path, 'body': body.decode(),
                                  'x-test': self.headers.get('X-Test')}).encode()
            self.send_response(201)
            self.send_header('Content-Type', 'application/json')
            self.send_header('X-Served-By', 'local')
            self.send_header('Content-Length', str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        do_GET = do_POST = do_PUT = do_any

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_ports_file_lists_every_seeded_service(sandbox, sandbox_dir):
    ports = json.loads((sandbox_dir / 'ports' / 'traffic.json').read_text())
    assert {key for key in ports if key.startswith('app/')} == {f'app/{name}' for name in SERVICES}
    for name in SERVICES:
        assert traffic_url(sandbox, name) == ports['app/' + name]['url']
    # one URL per port, by name and by number; the default is `http` (multi-port: http 80, grpc 9090)
    multi = ports['app/multi-port']
    assert multi['url'] == multi['ports']['http'] == multi['ports']['80']
    assert multi['ports']['grpc'] == multi['ports']['9090'] != multi['url']
    assert set(ports['app/numeric-port']['ports']) == {'8080'}


@pytest.mark.parametrize('service', SERVICES)
def test_cluster_answers_by_default(sandbox, service):
    status, headers, body = fetch(traffic_url(sandbox, service) + '/anything')
    assert (status, body) == (200, f'cluster: {service}.app\n')
    assert headers['X-Served-By'] == 'cluster'


def test_active_intercept_reaches_the_local_server(sandbox, emulator_state, local_server):
    emulator_state({'daemons': {}, 'session': None, 'intercepts': [intercept('fresh-app', local_server)]})
    status, headers, body = fetch(traffic_url(sandbox, 'fresh-app') + '/api/items?q=1', method='POST',
                                  body=b'{"x": 1}', headers={'X-Test': 'yes', 'Content-Type': 'application/json'})
    assert status == 201 and headers['X-Served-By'] == 'local'
    assert json.loads(body) == {'method': 'POST', 'path': '/api/items?q=1', 'body': '{"x": 1}', 'x-test': 'yes'}
    other = fetch(traffic_url(sandbox, 'web-only'))  # other Services still reach the cluster
    assert other[2] == 'cluster: web-only.app\n'


def test_intercept_that_is_not_active_leaves_the_cluster_serving(sandbox, emulator_state, local_server):
    emulator_state({'intercepts': [intercept('fresh-app', local_server, disposition='WAITING')]})
    assert fetch(traffic_url(sandbox, 'fresh-app'))[2] == 'cluster: fresh-app.app\n'


def test_intercept_of_another_port_leaves_http_alone(sandbox, emulator_state, local_server):
    emulator_state({'intercepts': [intercept('multi-port', local_server, service_port_name='grpc',
                                             service_port=9090)]})
    assert fetch(traffic_url(sandbox, 'multi-port'))[2] == 'cluster: multi-port.app\n'


def test_numeric_port_intercept(sandbox, emulator_state, local_server):
    emulator_state({'intercepts': [intercept('numeric-port', local_server, service_port_name='',
                                             service_port=8080)]})
    status, headers, _body = fetch(traffic_url(sandbox, 'numeric-port'))
    assert status == 201 and headers['X-Served-By'] == 'local'


def test_intercept_ends_when_state_changes(sandbox, emulator_state, local_server):
    emulator_state({'intercepts': [intercept('fresh-app', local_server)]})
    assert fetch(traffic_url(sandbox, 'fresh-app'))[0] == 201
    emulator_state({'intercepts': []})
    assert fetch(traffic_url(sandbox, 'fresh-app'))[0] == 200


def test_refused_local_port_gives_a_readable_502(sandbox, emulator_state):
    import socket
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(('127.0.0.1', 0))
        free_port = probe.getsockname()[1]
    emulator_state({'intercepts': [intercept('fresh-app', free_port)]})
    status, _headers, body = fetch(traffic_url(sandbox, 'fresh-app'))
    assert status == 502
    assert f'127.0.0.1:{free_port}' in body and 'fresh-app' in body


# ---------------------------------------------------------------------- the stand-in follows the cluster's Services

TRAFFIC_URL = SANDBOX / 'traffic-url'


def run_traffic_url(sandbox, *args):
    env = dict(os.environ, TP_SANDBOX_DIR=sandbox['TP_SANDBOX_DIR'])
    return subprocess.run([str(TRAFFIC_URL), *args], env=env, capture_output=True, text=True, timeout=30, check=False)


def service_manifest(name, namespace, ports):
    return {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': name, 'namespace': namespace},
            'spec': {'selector': {'app': name}, 'ports': ports}}


def poll(predicate, timeout):
    """The first truthy predicate() within `timeout` seconds, and the seconds it took; (None, timeout) otherwise."""
    started = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - started
        if value or elapsed >= timeout:
            return value, elapsed
        time.sleep(0.05)


def url_of(sandbox_dir, key, port=None):
    table = json.loads((sandbox_dir / 'ports' / 'traffic.json').read_text())
    entry = table.get(key)
    if entry is None:
        return None
    return entry['url'] if port is None else entry['ports'].get(port)


def answers(url):
    try:
        return fetch(url)
    except OSError:  # refused: nobody listens any more
        return None


@pytest.fixture
def shop_namespace(kube):
    from kubernetes import client
    name = 'shop-traffic'
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    kube.core.delete_namespace(name)


def test_service_created_after_up_is_routable_within_2_s(sandbox, sandbox_dir, kube, shop_namespace):
    kube.core.create_namespaced_service(shop_namespace, service_manifest('cart', shop_namespace, [
        {'name': 'web', 'port': 80, 'targetPort': 8080}, {'name': 'admin', 'port': 9000, 'targetPort': 9000}]))
    url, seconds = poll(lambda: url_of(sandbox_dir, f'{shop_namespace}/cart', 'web'), 2.0)
    assert url, f'{shop_namespace}/cart not in traffic.json after {seconds:.2f} s'
    assert fetch(url + '/x')[::2] == (200, f'cluster: cart.{shop_namespace}\n')
    assert fetch(url_of(sandbox_dir, f'{shop_namespace}/cart', '9000'))[2] == f'cluster: cart.{shop_namespace}\n'
    result = run_traffic_url(sandbox, f'{shop_namespace}/cart:web')
    assert (result.returncode, result.stdout.strip()) == (0, url)
    assert run_traffic_url(sandbox, f'{shop_namespace}/cart').stdout.strip() == url_of(
        sandbox_dir, f'{shop_namespace}/cart')  # no `http` port: the first one
    assert run_traffic_url(sandbox, f'{shop_namespace}/cart:admin').stdout.strip() == url_of(
        sandbox_dir, f'{shop_namespace}/cart', '9000')

    kube.core.delete_namespaced_service('cart', shop_namespace, _preload_content=False)
    gone, seconds = poll(lambda: answers(url) is None and url_of(sandbox_dir, f'{shop_namespace}/cart') is None, 2.0)
    assert gone, f'deleted Service still served after {seconds:.2f} s'


def test_intercept_of_a_new_service_reaches_the_local_server(sandbox, sandbox_dir, kube, shop_namespace,
                                                             emulator_state, local_server):
    kube.core.create_namespaced_service(shop_namespace, service_manifest('cart', shop_namespace, [
        {'name': 'web', 'port': 80, 'targetPort': 8080}]))
    url, _seconds = poll(lambda: url_of(sandbox_dir, f'{shop_namespace}/cart', 'web'), 2.0)
    emulator_state({'intercepts': [intercept('cart', local_server, namespace=shop_namespace,
                                             service_port_name='web')]})
    status, headers, _body = fetch(url)
    assert status == 201 and headers['X-Served-By'] == 'local'
    emulator_state({'intercepts': []})
    assert fetch(url)[2] == f'cluster: cart.{shop_namespace}\n'


def test_edited_service_ports_follow(sandbox, sandbox_dir, kube, shop_namespace):
    kube.core.create_namespaced_service(shop_namespace, service_manifest('edit', shop_namespace, [
        {'name': 'web', 'port': 80, 'targetPort': 8080}, {'name': 'extra', 'port': 81, 'targetPort': 8081}]))
    web, _seconds = poll(lambda: url_of(sandbox_dir, f'{shop_namespace}/edit', 'web'), 2.0)
    extra = url_of(sandbox_dir, f'{shop_namespace}/edit', 'extra')
    kube.core.patch_namespaced_service('edit', shop_namespace, [{'op': 'remove', 'path': '/spec/ports/1'}])
    gone, _seconds = poll(lambda: url_of(sandbox_dir, f'{shop_namespace}/edit', 'extra') is None, 2.0)
    assert gone and answers(extra) is None
    assert url_of(sandbox_dir, f'{shop_namespace}/edit', 'web') == web and fetch(web)[0] == 200  # kept its URL


@pytest.mark.parametrize('target, message', [
    ('app/nope', "no Service 'nope' in namespace 'app' is served"),
    ('app/multi-port:nope', "Service app/multi-port has no port 'nope' (its ports: 80, 9090, grpc, http)"),
])
def test_traffic_url_says_what_is_unknown(sandbox, target, message):
    result = run_traffic_url(sandbox, '--wait', '0', target)
    assert result.returncode == 1 and result.stdout == ''
    assert message in result.stderr


def test_traffic_url_refuses_a_malformed_target(sandbox):
    result = run_traffic_url(sandbox, 'cart')
    assert result.returncode == 2 and 'expected NAMESPACE/SERVICE[:PORT]' in result.stderr


@pytest.fixture
def recording_server():
    """A local process that records the requests it gets (a wiretap's copies arrive here)."""
    seen = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append({'path': self.path, 'wiretap': self.headers.get('X-Telepresence-Wiretap')})
            payload = b'local\n'
            self.send_response(200)
            self.send_header('Content-Length', str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_replace_sends_the_traffic_to_the_local_server(sandbox, emulator_state, local_server):
    emulator_state({'intercepts': [intercept('fresh-app', local_server, mode='replace')]})
    status, headers, _body = fetch(traffic_url(sandbox, 'fresh-app'))
    assert status == 201 and headers['X-Served-By'] == 'local'


def test_wiretap_leaves_the_answer_to_the_cluster_and_copies_the_request(sandbox, emulator_state, recording_server):
    port, seen = recording_server
    emulator_state({'intercepts': [intercept('fresh-app', port, mode='wiretap')]})
    status, headers, body = fetch(traffic_url(sandbox, 'fresh-app') + '/tapped?x=1')
    assert (status, headers['X-Served-By'], body) == (200, 'cluster', 'cluster: fresh-app.app\n')
    assert seen == [{'path': '/tapped?x=1', 'wiretap': '1'}]


def test_wiretap_with_nothing_listening_locally_still_gets_the_cluster_answer(sandbox, emulator_state):
    emulator_state({'intercepts': [intercept('fresh-app', 1, mode='wiretap')]})
    assert fetch(traffic_url(sandbox, 'fresh-app'))[2] == 'cluster: fresh-app.app\n'


def test_ingest_changes_no_traffic(sandbox, emulator_state, recording_server):
    port, seen = recording_server
    emulator_state({'intercepts': [], 'ingests': [{'workload': 'fresh-app', 'namespace': 'app',
                                                   'container': 'fresh-app', 'client': 'dev@host'}]})
    assert fetch(traffic_url(sandbox, 'fresh-app'))[2] == 'cluster: fresh-app.app\n'
    assert seen == []
