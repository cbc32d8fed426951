# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the tests of the roles and playbooks: the collection built and installed from its tarball, and a
sandbox (tests/sandbox/CONTRACT.md) with a local dev server."""

from __future__ import annotations

import os
import shlex
import sys

import pytest

from workflow_support import BIN, ROOT, run

# Seconds each test module's tests took in the pytests phase, three workers on two cores (pytest --junitxml: setup,
# call and teardown, 2026-12-04), for every module over 10 s, the sandbox's own suites included.
# pytest-xdist's loadscope hands modules to its workers in collection order, as each worker frees up: the heaviest
# first, so that no long module starts last while the other workers have nothing left (issue 16; the 77 s
# test_emulator_versions.py, missing here, had started after every listed one). A module missing here keeps its
# place after these.
MODULE_SECONDS = {"test_playbooks_modes.py": 219, "test_faults.py": 147, "test_interrupts.py": 125,
                  "test_playbooks_idempotent.py": 146, "test_playbooks_team.py": 143, "test_emulator_versions.py": 77,
                  "test_bad_input.py": 72, "test_kube_client.py": 68, "test_playbooks_failures.py": 57,
                  "test_security.py": 30, "test_private_files.py": 25, "test_emulator.py": 25, "test_lifecycle.py": 22,
                  "test_try_your_app.py": 18, "test_role_argument_specs.py": 15, "test_concurrency.py": 15,
                  "test_collection_install.py": 14, "test_cluster.py": 12, "test_emulator_modes.py": 12,
                  "test_without_kubernetes.py": 11}


def pytest_collection_modifyitems(items):
    """Heaviest modules first; a module's tests stay together and in order (the sort is stable)."""
    items.sort(key=lambda item: -MODULE_SECONDS.get(item.path.name, 0))


@pytest.fixture(scope="session")
def installed_collection(tmp_path_factory):
    """The collection built with ansible-galaxy and installed from the tarball into an empty collections path."""
    work = tmp_path_factory.mktemp("galaxy")
    built = run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(work), str(ROOT)])
    assert built.returncode == 0, built.stdout + built.stderr
    tarball, = work.glob("devloop-telepresence-*.tar.gz")
    collections = work / "collections"
    collections.mkdir()
    installed = run([str(BIN / "ansible-galaxy"), "collection", "install", "--force", "-p", str(collections),
                     str(tarball)])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return collections


@pytest.fixture()
def ansible_env(installed_collection):
    """An environment in which ansible-playbook sees only the installed collection."""
    env = dict(os.environ)
    env.update(PATH="%s:%s" % (BIN, env.get("PATH", "")), ANSIBLE_COLLECTIONS_PATH=str(installed_collection),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0")
    env.pop("TELEPRESENCE_VERSION", None)
    return env


@pytest.fixture()
def sandbox(tmp_path, ansible_env):
    """A running sandbox in its own directory, with a local dev server; yields the environment to run playbooks in."""
    sandbox_dir = tmp_path / "sandbox"
    env = dict(ansible_env, TP_SANDBOX_DIR=str(sandbox_dir),
               TP_SANDBOX_PYTHON=os.environ.get("TP_SANDBOX_PYTHON", str(BIN / "python")))
    up = run([str(ROOT / "tests" / "sandbox" / "up")], env=env, timeout=60)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        for line in up.stdout.splitlines():
            if line.startswith("export "):
                key, value = line[len("export "):].split("=", 1)
                env[key] = shlex.split(value)[0] if value else ""
        started = run([sys.executable, str(ROOT / "tests" / "tools" / "dev_server.py"), "start", "--dir",
                       str(sandbox_dir), "--name", "pytest"], env=env, timeout=30)
        assert started.returncode == 0, started.stdout + started.stderr
        yield env
    finally:
        run([sys.executable, str(ROOT / "tests" / "tools" / "dev_server.py"), "stop", "--dir", str(sandbox_dir)],
            env=env, timeout=30)
        run([str(ROOT / "tests" / "sandbox" / "down")], env=env, timeout=60)
