"""Helpers shared by the sandbox conformance suites (importable by name; conftest.py holds only fixtures).

A module of its own because several test folders have a conftest.py: importing names from "conftest" picks
whichever was loaded first.
"""
import contextlib
import fcntl
import os
import pathlib
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

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


@contextlib.contextmanager
def locked_file(lock_path: pathlib.Path) -> Iterator[None]:
    with open(lock_path, 'a+b') as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
