"""Shared fixtures of the sandbox conformance suites.

`sandbox` (session): one sandbox started with tests/sandbox/up in a temporary directory; yields the exported
environment as a dict (TP_SANDBOX_DIR, KUBECONFIG, TP_SANDBOX_API, TP_SANDBOX_MIRROR, TP_SANDBOX_TRAFFIC_*, ...);
stops it with tests/sandbox/down and removes the directory at the end. Other suites (emulator, mirror) use it too.
"""
import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# The emulator's fixtures (sbx, tp, kube) for every test module, without importing them by name.
pytest_plugins = ['emulator_fixtures']

SANDBOX = pathlib.Path(__file__).resolve().parents[1]
UP, DOWN, RUN = SANDBOX / 'up', SANDBOX / 'down', SANDBOX / 'run'
COMMAND_TIMEOUT = 60
STARTUP_TIMES: list[tuple[str, float]] = []


def parse_exports(text: str) -> dict[str, str]:
    """`export K=V` lines (V shell-quoted) into a dict."""
    import shlex
    env = {}
    for line in text.splitlines():
        if line.startswith('export '):
            key, _sep, value = line[len('export '):].partition('=')
            env[key] = shlex.split(value)[0] if value else ''
    return env


def sandbox_command(script: pathlib.Path, directory: pathlib.Path, *args: str,
                    timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TP_SANDBOX_DIR=str(directory))
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def start_sandbox(directory: pathlib.Path, label: str) -> dict[str, str]:
    began = time.monotonic()
    result = sandbox_command(UP, directory)
    STARTUP_TIMES.append((label, time.monotonic() - began))
    assert result.returncode == 0, result.stderr
    return parse_exports(result.stdout)


@pytest.fixture(scope='session')
def sandbox() -> Iterator[dict[str, str]]:
    directory = pathlib.Path(tempfile.mkdtemp(prefix='tp-sandbox-test-'))
    try:
        yield start_sandbox(directory, 'session sandbox (cold)')
    finally:
        sandbox_command(DOWN, directory)
        shutil.rmtree(directory, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """`up` wall-clock times, printed (not asserted): the contract wants it well under 3 s."""
    for label, seconds in STARTUP_TIMES:
        terminalreporter.write_line(f'sandbox startup: {label}: {seconds:.2f} s')


# ---------------------------------------------------------------------- helpers for the cluster and traffic suites

@pytest.fixture(scope='session')
def kube(sandbox: dict[str, str]) -> Any:
    """The official kubernetes client, configured from the sandbox kubeconfig."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=sandbox['KUBECONFIG'])

    class Clients:
        api = api_client
        core = client.CoreV1Api(api_client)
        apps = client.AppsV1Api(api_client)
        version = client.VersionApi(api_client)
    return Clients


@pytest.fixture
def sandbox_dir(sandbox: dict[str, str]) -> pathlib.Path:
    return pathlib.Path(sandbox['TP_SANDBOX_DIR'])


@pytest.fixture
def knobs(sandbox_dir: pathlib.Path) -> Iterator[Callable[..., None]]:
    """Write knobs.json for one test; removed afterwards."""
    path = sandbox_dir / 'knobs.json'

    def write(**values: Any) -> None:
        path.write_text(json.dumps(values))
    yield write
    path.unlink(missing_ok=True)


@pytest.fixture
def cluster_faults(sandbox_dir: pathlib.Path) -> Iterator[Callable[..., None]]:
    """Write faults.json `cluster` rules for one test; removed (with the counters) afterwards."""
    def write(*rules: dict[str, Any]) -> None:
        (sandbox_dir / 'faults.json').write_text(json.dumps({'cluster': list(rules)}))
    yield write
    (sandbox_dir / 'faults.json').unlink(missing_ok=True)


@contextlib.contextmanager
def locked_file(lock_path: pathlib.Path) -> Iterator[None]:
    with open(lock_path, 'a+b') as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@pytest.fixture
def emulator_state(sandbox_dir: pathlib.Path) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Write state.json as the emulator does (under state.lock); removed afterwards."""
    def write(state: dict[str, Any]) -> None:
        with locked_file(sandbox_dir / 'state.lock'):
            (sandbox_dir / 'state.json').write_text(json.dumps(state))
    yield write
    with locked_file(sandbox_dir / 'state.lock'):
        (sandbox_dir / 'state.json').unlink(missing_ok=True)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; its value is returned. Fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f'condition not met within {timeout} s')
        time.sleep(interval)
