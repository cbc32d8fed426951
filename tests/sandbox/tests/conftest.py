"""Shared fixtures of the sandbox conformance suites.

`sandbox` (session): one sandbox started with tests/sandbox/up in a temporary directory; yields the exported
environment as a dict (TP_SANDBOX_DIR, KUBECONFIG, TP_SANDBOX_API, TP_SANDBOX_MIRROR, TP_SANDBOX_TRAFFIC_*, ...);
stops it with tests/sandbox/down and removes the directory at the end. Other suites (emulator, mirror) use it too.
"""
import json
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sandbox_support import DOWN, STARTUP_TIMES, locked_file, sandbox_command, start_sandbox

# The emulator's fixtures (sbx, tp, kube) for every test module, without importing them by name.
pytest_plugins = ['emulator_fixtures']


# One sandbox per test module: a module that installs traffic managers or makes namespaces (test_emulator_versions)
# must not change what another module's assertions about the seed see, whatever order xdist runs them in.
@pytest.fixture(scope='module')
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

@pytest.fixture(scope='module')
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


@pytest.fixture
def emulator_state(sandbox_dir: pathlib.Path) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Write state.json as the emulator does (under state.lock); removed afterwards."""
    def write(state: dict[str, Any]) -> None:
        with locked_file(sandbox_dir / 'state.lock'):
            (sandbox_dir / 'state.json').write_text(json.dumps(state))
    yield write
    with locked_file(sandbox_dir / 'state.lock'):
        (sandbox_dir / 'state.json').unlink(missing_ok=True)
