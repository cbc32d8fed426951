"""The release mirror: artifact layout, checksums, HTTP serving and its faults."""
import hashlib
import http.client
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from emulator_fixtures import wait_for_file

MIRROR = pathlib.Path(__file__).resolve().parents[1] / 'mirror.py'
VERSIONS = ('2.20.2', '2.24.0', '2.24.1', '2.25.0', '2.29.0', '2.30.0')
PLATFORMS = ('linux-amd64', 'linux-arm64', 'darwin-amd64', 'darwin-arm64')


@pytest.fixture(scope='module')
def mirror(tmp_path_factory):
    """A mirror of its own (built with a 3 MiB big artifact), so its faults do not touch the shared sandbox."""
    directory = tmp_path_factory.mktemp('mirror')
    subprocess.run([sys.executable, str(MIRROR), 'build', '--dir', str(directory), '--big', '3'], check=True, timeout=30)
    server = subprocess.Popen([sys.executable, str(MIRROR), 'serve', '--dir', str(directory)], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = wait_for_file(directory / 'ports' / 'mirror')
    yield directory, f'http://127.0.0.1:{port}'
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=10)


@pytest.fixture
def faults(mirror):
    directory, _base = mirror

    def write(**spec):
        (directory / 'faults.json').write_text(json.dumps({'mirror': spec}))
        (directory / 'faults.state.json').unlink(missing_ok=True)
    yield write
    (directory / 'faults.json').unlink(missing_ok=True)


def fetch(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, dict(response.headers), response.read()


def test_mirror_build_layout_and_speed(tmp_path):
    began = time.monotonic()
    subprocess.run([sys.executable, str(MIRROR), 'build', '--dir', str(tmp_path)], check=True, timeout=30)
    assert time.monotonic() - began < 1.5          # includes interpreter start-up; the build itself is ~0.2 s
    digests = set()
    for version in VERSIONS:
        folder = tmp_path / 'mirror' / f'v{version}'
        sums = dict(reversed(line.split('  ')) for line in (folder / 'sha256sums.txt').read_text().splitlines())
        assert sorted(sums) == sorted(f'telepresence-{p}' for p in PLATFORMS)
        for name, digest in sums.items():
            data = (folder / name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == digest
            assert os.stat(folder / name).st_mode & 0o777 == 0o755
            digests.add(digest)
        binary = tmp_path / 'bin' / f'telepresence-{version}'
        assert os.access(binary, os.X_OK)
        result = subprocess.run([str(binary), 'version'], capture_output=True, text=True, timeout=10,
                                env={'PATH': os.environ['PATH']}, check=False)          # the sandbox dir is baked in
        assert result.returncode == 0 and result.stdout.startswith(f'OSS Client : v{version}\n'), result
    assert len(digests) == len(VERSIONS) * len(PLATFORMS)                # bytes differ per version and platform


def test_mirror_serves_github_layout(mirror):
    directory, base = mirror
    status, headers, body = fetch(f'{base}/v2.24.0/telepresence-linux-amd64')
    assert status == 200 and int(headers['Content-Length']) == len(body)
    assert body == (directory / 'mirror' / 'v2.24.0' / 'telepresence-linux-amd64').read_bytes()
    assert fetch(f'{base}/v2.24.0/sha256sums.txt')[2].decode().count('\n') == 5        # 4 platforms + big
    with pytest.raises(urllib.error.HTTPError) as missing:
        fetch(f'{base}/v9.9.9/telepresence-linux-amd64')
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError):
        fetch(f'{base}/../mirror.py')


def test_mirror_big_artifact_streams(mirror):
    directory, base = mirror
    status, headers, body = fetch(f'{base}/v2.24.0/telepresence-big', timeout=30)
    assert int(headers['Content-Length']) == len(body) == 3 * 1024 * 1024
    sums = (directory / 'mirror' / 'v2.24.0' / 'sha256sums.txt').read_text()
    assert f'{hashlib.sha256(body).hexdigest()}  telepresence-big' in sums


def test_mirror_fault_404(mirror, faults):
    base = mirror[1]
    faults(**{'v2.24.0/telepresence-linux-amd64': {'mode': '404'}})
    with pytest.raises(urllib.error.HTTPError) as error:
        fetch(f'{base}/v2.24.0/telepresence-linux-amd64')
    assert error.value.code == 404
    assert fetch(f'{base}/v2.24.0/telepresence-linux-arm64')[0] == 200           # other paths unaffected


def test_mirror_fault_500_then_success(mirror, faults):
    base = mirror[1]
    faults(**{'*': {'mode': '500', 'times': 1}})
    with pytest.raises(urllib.error.HTTPError) as error:
        fetch(f'{base}/v2.25.0/telepresence-linux-amd64')
    assert error.value.code == 500
    assert fetch(f'{base}/v2.25.0/telepresence-linux-amd64')[0] == 200


def test_mirror_fault_truncate(mirror, faults):
    base = mirror[1]
    faults(**{'telepresence-linux-amd64': {'mode': 'truncate'}})
    with pytest.raises(http.client.IncompleteRead):
        fetch(f'{base}/v2.24.0/telepresence-linux-amd64')


def test_mirror_fault_wrong_bytes(mirror, faults):
    directory, base = mirror
    faults(**{'telepresence-linux-amd64': {'mode': 'wrong'}})
    _status, headers, body = fetch(f'{base}/v2.24.0/telepresence-linux-amd64')
    real = (directory / 'mirror' / 'v2.24.0' / 'telepresence-linux-amd64').read_bytes()
    assert len(body) == len(real) == int(headers['Content-Length']) and body != real


def test_mirror_fault_slow(mirror, faults):
    base = mirror[1]
    faults(**{'*': {'mode': 'slow'}})
    began = time.monotonic()
    body = fetch(f'{base}/v2.24.0/sha256sums.txt')[2]             # ~460 bytes: one chunk, one pause
    assert time.monotonic() - began >= 0.45 and body.endswith(b'telepresence-big\n')
    # the 270 KiB artifact trickles: after ~1.2 s only a few KiB have arrived
    with urllib.request.urlopen(f'{base}/v2.24.0/telepresence-darwin-arm64', timeout=5) as response:
        received, began = 0, time.monotonic()
        while time.monotonic() - began < 1.2:
            received += len(response.read(1024))
    assert 0 < received <= 4 * 1024
