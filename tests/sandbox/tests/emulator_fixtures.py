"""Fixtures and helpers for the emulator and mirror conformance tests.

`sbx` is the shared session `sandbox` fixture (tests/sandbox/tests/conftest.py) when it exists; otherwise a
small stand-in that builds the artifacts and starts `cluster.py` itself, so this suite can run on its own.
`tp` runs a baked artifact `DIR/bin/telepresence-<version>` as a subprocess against that sandbox, after
resetting the emulator's files (state, faults, calls log) so that tests do not depend on their order.
"""
import base64
import gzip
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import pytest

SANDBOX = pathlib.Path(__file__).resolve().parents[1]
MIRROR = SANDBOX / 'mirror.py'
PYTHON = os.environ.get('TP_SANDBOX_PYTHON') or str(SANDBOX.parents[1] / '.venv' / 'bin' / 'python')
READY_DELAY = 0.1
RUN_TIMEOUT = 40


def wait_for_file(path, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise TimeoutError(f'{path} did not appear within {timeout}s')


def write_kubeconfig(path, server):
    path.write_text(json.dumps({
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'sandbox',
        'clusters': [{'name': 'sandbox', 'cluster': {'server': server}}],
        'users': [{'name': 'sandbox', 'user': {'token': 'sandbox-token'}}],
        'contexts': [{'name': 'sandbox', 'context': {'cluster': 'sandbox', 'user': 'sandbox', 'namespace': 'app'}}],
    }))


def start_standalone_sandbox(directory):
    """Stand-in for tests/sandbox/up: artifacts, cluster API, kubeconfig. Returns (env, processes)."""
    subprocess.run([sys.executable, str(MIRROR), 'build', '--dir', str(directory)], check=True, timeout=30)
    (directory / 'knobs.json').write_text(json.dumps({'ready_delay': READY_DELAY}))
    log = open(directory / 'cluster.log', 'wb')
    cluster = subprocess.Popen([PYTHON, str(SANDBOX / 'cluster.py'), '--dir', str(directory)],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    port = wait_for_file(directory / 'ports' / 'api', timeout=20)
    server = f'http://127.0.0.1:{port}'
    write_kubeconfig(directory / 'kubeconfig', server)
    secret = (directory / 'secret').read_text().strip() if (directory / 'secret').exists() else ''
    env = {'TP_SANDBOX_DIR': str(directory), 'KUBECONFIG': str(directory / 'kubeconfig'),
           'TP_SANDBOX_API': server, 'TP_SANDBOX_SECRET': secret}
    return env, [cluster]


@pytest.fixture(scope='module')
def sbx(request):
    """The sandbox env dict: the shared `sandbox` fixture if the conftest provides one."""
    try:
        env = request.getfixturevalue('sandbox')
    except pytest.FixtureLookupError:
        env = None
    if env is not None:
        yield dict(env)
        return
    directory = pathlib.Path(tempfile.mkdtemp(prefix='tp-emulator-'))
    env, processes = start_standalone_sandbox(directory)
    try:
        yield env
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


class Result:
    def __init__(self, completed, duration):
        self.rc = completed.returncode
        self.out = completed.stdout
        self.err = completed.stderr
        self.duration = duration

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f'Result(rc={self.rc}, out={self.out!r}, err={self.err!r})'


class Telepresence:
    """Runs the baked artifacts of one sandbox and reads/writes its emulator files."""

    def __init__(self, env, config_home):
        self.env = env
        self.dir = pathlib.Path(env['TP_SANDBOX_DIR'])
        self.config_home = config_home

    def binary(self, version):
        return str(self.dir / 'bin' / f'telepresence-{version}')

    def run(self, version, *args, timeout=RUN_TIMEOUT, extra_env=None):
        env = dict(os.environ)
        env.update({k: v for k, v in self.env.items() if v is not None})
        env['XDG_CONFIG_HOME'] = str(self.config_home)
        env.pop('TELEPRESENCE_MANAGER_NAMESPACE', None)
        env.update(extra_env or {})
        started = time.monotonic()
        completed = subprocess.run([self.binary(version), *args], capture_output=True, text=True, env=env,
                                   timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        return Result(completed, time.monotonic() - started)

    # --- emulator files -------------------------------------------------------------------------------
    def reset(self):
        for name in ('state.json', 'faults.json', 'faults.state.json', 'calls.log'):
            (self.dir / name).unlink(missing_ok=True)
        self.knobs()

    def knobs(self, **knobs):
        knobs.setdefault('ready_delay', READY_DELAY)
        (self.dir / 'knobs.json').write_text(json.dumps(knobs))

    def faults(self, **faults):
        (self.dir / 'faults.json').write_text(json.dumps(faults))
        (self.dir / 'faults.state.json').unlink(missing_ok=True)

    def config(self, text):
        path = self.config_home / 'telepresence' / 'config.yml'
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def state(self):
        return json.loads((self.dir / 'state.json').read_text())

    def calls(self):
        path = self.dir / 'calls.log'
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    # --- cluster preparation through the CLI itself ----------------------------------------------------
    def ensure_manager(self, version='2.24.0'):
        """A deployed traffic-manager of `version` in `ambassador` (installed by that version's CLI)."""
        current = self.manager_version()
        if current == version:
            return
        if current is not None:
            assert self.run(version, 'helm', 'uninstall').rc == 0
        result = self.run(version, 'helm', 'install')
        assert result.rc == 0, result

    def manager_version(self):
        from kubernetes.client.rest import ApiException
        try:
            deployment = kube_client(self.env).apps.read_namespaced_deployment('traffic-manager', 'ambassador')
        except ApiException:
            return None
        return deployment.metadata.labels.get('app.kubernetes.io/version')

    def remove_agents(self):
        """Undo intercept side effects in the cluster between tests."""
        (self.dir / 'state.json').unlink(missing_ok=True)     # whatever daemons the test left behind
        (self.dir / 'faults.json').unlink(missing_ok=True)
        self.knobs()
        assert self.run('2.24.0', 'connect', '-n', 'app').rc == 0
        result = self.run('2.24.0', 'uninstall', '--all-agents')
        assert result.rc == 0, result
        (self.dir / 'state.json').unlink(missing_ok=True)


class Kube:
    def __init__(self, env):
        from kubernetes import client, config
        api_client = config.new_client_from_config(config_file=env['KUBECONFIG'])
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)


def kube_client(env):
    return Kube(env)


def decode_release(secret):
    """Helm's storage format: Secret data = base64(base64(gzip(json)))."""
    outer = base64.b64decode(secret.data['release'])
    return json.loads(gzip.decompress(base64.b64decode(outer)))


@pytest.fixture
def tp(sbx, tmp_path):
    helper = Telepresence(sbx, tmp_path / 'config')
    helper.reset()
    yield helper
    (helper.dir / 'faults.json').unlink(missing_ok=True)
    (helper.dir / 'state.json').unlink(missing_ok=True)
