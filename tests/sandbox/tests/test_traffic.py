"""Conformance of the traffic stand-ins (traffic.py): cluster answers by default, the local server when intercepted."""
import http.server
import json
import threading
import urllib.error
import urllib.request

import pytest

SERVICES = ('fresh-app', 'multi-port', 'numeric-port', 'web-only', 'secret-app')


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
    assert set(ports) == {f'app/{name}' for name in SERVICES}
    for name in SERVICES:
        assert traffic_url(sandbox, name) == f'http://127.0.0.1:{ports["app/" + name]}'


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
