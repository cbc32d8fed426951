"""Conformance of tests/sandbox/up, down and run: reuse, exact stopping, cleanup, exit codes."""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import pytest

from sandbox_support import DOWN, RUN, UP, parse_exports, sandbox_command, start_sandbox


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions `text` (a sandbox directory)."""
    found = []
    for proc in pathlib.Path('/proc').iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if text.encode() in (proc / 'cmdline').read_bytes() and \
                    (proc / 'stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z':
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def pids_of(directory: pathlib.Path) -> dict[str, int]:
    return {path.stem: int(path.read_text()) for path in (directory / 'pids').glob('*.pid')}


@pytest.fixture
def own_dir():
    directory = pathlib.Path(tempfile.mkdtemp(prefix='tp-sandbox-life-'))
    yield directory
    sandbox_command(DOWN, directory)
    shutil.rmtree(directory, ignore_errors=True)


def test_up_twice_reuses_the_running_services(own_dir):
    first = start_sandbox(own_dir, 'own dir (cold)')
    pids = pids_of(own_dir)
    assert set(pids) == {'cluster', 'traffic', 'mirror'}
    second = start_sandbox(own_dir, 'own dir (already running)')
    assert second == first and pids_of(own_dir) == pids
    assert (own_dir / 'env.sh').read_text() == ''.join(
        line + '\n' for line in sandbox_command(UP, own_dir).stdout.splitlines())
    assert parse_exports((own_dir / 'env.sh').read_text()) == first


def test_exports_and_kubeconfig(own_dir, sandbox):
    import json
    import stat
    env = start_sandbox(own_dir, 'own dir (cold, for kubeconfig)')
    assert env['TP_SANDBOX_DIR'] == str(own_dir.resolve())
    assert env['KUBECONFIG'] == str(own_dir.resolve() / 'kubeconfig')
    assert env['TP_SANDBOX_VERSIONS'] == '2.20.2 2.24.0 2.24.1 2.25.0 2.29.0 2.30.0'
    assert env['TP_SANDBOX_MIRROR'].startswith('http://127.0.0.1:')
    config = json.loads(pathlib.Path(env['KUBECONFIG']).read_text())
    assert config['current-context'] == 'sandbox'
    assert config['clusters'] == [{'name': 'sandbox', 'cluster': {'server': env['TP_SANDBOX_API']}}]
    assert config['users'][0]['name'] == 'sandbox'
    assert config['users'][0]['user']['token'].startswith('sandbox-token-')
    # docs/SECURITY.md: written 0600, and its token is unique per sandbox directory, so a leak is detectable
    assert stat.S_IMODE(pathlib.Path(env['KUBECONFIG']).stat().st_mode) == 0o600
    other = json.loads(pathlib.Path(sandbox['KUBECONFIG']).read_text())['users'][0]['user']['token']
    assert other.startswith('sandbox-token-') and other != config['users'][0]['user']['token']
    with urllib.request.urlopen(env['TP_SANDBOX_API'] + '/version', timeout=5) as response:
        assert response.status == 200


def test_down_stops_only_its_own_pids(own_dir, sandbox):
    start_sandbox(own_dir, 'own dir (cold, for down)')
    services = pids_of(own_dir)
    stranger = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)
    try:
        (own_dir / 'pids' / 'stranger.pid').write_text(f'{stranger.pid}\n')  # e.g. a pid reused by another program
        result = sandbox_command(DOWN, own_dir)
        assert result.returncode == 0
        assert stranger.poll() is None, 'down killed a process it did not start'
        assert not processes_mentioning(str(own_dir.resolve()))
        assert all(not pathlib.Path(f'/proc/{pid}').exists() or pid not in processes_mentioning(str(own_dir))
                   for pid in services.values())
        assert list((own_dir / 'pids').glob('*.pid')) == []
        with urllib.request.urlopen(sandbox['TP_SANDBOX_API'] + '/version', timeout=5) as response:
            assert response.status == 200  # another sandbox (the session's) still runs
    finally:
        stranger.kill()
        stranger.wait(timeout=5)
    again = sandbox_command(DOWN, own_dir)
    assert again.returncode == 0 and 'stopped nothing' in again.stderr


def test_down_is_safe_on_an_empty_directory(own_dir):
    result = sandbox_command(DOWN, own_dir)
    assert result.returncode == 0


def test_run_exports_the_environment_and_returns_the_status():
    env = {key: value for key, value in os.environ.items() if not key.startswith('TP_SANDBOX')}
    script = ('echo "dir=$TP_SANDBOX_DIR"; test -s "$KUBECONFIG" && curl -sf "$TP_SANDBOX_TRAFFIC_FRESH_APP" '
              '>/dev/null 2>&1 || python3 -c "import urllib.request,os;'
              'urllib.request.urlopen(os.environ[\'TP_SANDBOX_TRAFFIC_FRESH_APP\'])"; exit 7')
    result = subprocess.run([str(RUN), '--', 'sh', '-c', script], env=env, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 7, result.stderr
    directory = result.stdout.split('dir=', 1)[1].split()[0]
    assert not pathlib.Path(directory).exists(), 'run left its temporary directory behind'
    assert not processes_mentioning(directory)


def test_run_cleans_up_after_a_failing_command_in_a_given_dir(own_dir):
    env = dict(os.environ, TP_SANDBOX_DIR=str(own_dir))
    result = subprocess.run([str(RUN), 'false'], env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 1
    assert own_dir.exists(), 'a directory given by the caller is kept'
    assert not processes_mentioning(str(own_dir.resolve()))


def test_up_fails_cleanly_when_a_service_cannot_start(own_dir, tmp_path):
    broken = tmp_path / 'python'
    broken.write_text('#!/bin/sh\necho "boom: $*" >&2\nexit 3\n')
    broken.chmod(0o755)
    env = dict(os.environ, TP_SANDBOX_DIR=str(own_dir), TP_SANDBOX_PYTHON=str(broken))
    result = subprocess.run([str(UP)], env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 1
    assert 'sandbox up:' in result.stderr
    assert list((own_dir / 'pids').glob('*.pid')) == []
    assert not processes_mentioning(str(own_dir.resolve()))
