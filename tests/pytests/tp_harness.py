# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers of the reliability and security suites (test_bad_input, test_faults, test_concurrency,
test_security): a private copy of the collection, one sandbox per suite file, and a playbook runner that returns
every task's result through the test-only ``tp_json`` stdout callback, plus the raw output.

The suites import the fixtures from here (``from tp_harness import ...``) rather than from conftest.py, which belongs
to the role and playbook tests.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"
ACTIONS = Path(__file__).resolve().parent / "action_plugins"
SYNC_COPY = ROOT / "tests" / "tools" / "sync_copy.py"
# CLI commands that change something (daemons, sessions, intercepts, agents, the manager).
MUTATING_COMMANDS = ("connect", "quit", "intercept", "leave", "detach", "uninstall", "helm")


def run(argv, env=None, timeout=300, cwd=None):
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


# ---------------------------------------------------------------------------------------------------------------
# the collection
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def collections_path(tmp_path_factory):
    """A private copy of the checkout at .../ansible_collections/devloop/telepresence (tests/tools/sync_copy.py)."""
    base = tmp_path_factory.mktemp("reliability-collection")
    copy = base / "ansible_collections" / "devloop" / "telepresence"
    done = run([sys.executable, str(SYNC_COPY), str(ROOT), str(copy)], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return base


# ---------------------------------------------------------------------------------------------------------------
# the sandbox
# ---------------------------------------------------------------------------------------------------------------

class Sandbox:
    """One running sandbox (tests/sandbox/CONTRACT.md) and the files the tests read and write in it."""

    def __init__(self, directory, env):
        self.dir = Path(directory)
        self.env = env

    # --- binaries and settings -------------------------------------------------------------------------------
    def binary(self, version="2.24.0"):
        return str(self.dir / "bin" / ("telepresence-%s" % version))

    @property
    def secret(self):
        return self.env["TP_SANDBOX_SECRET"]

    @property
    def kubeconfig(self):
        return self.env["KUBECONFIG"]

    @property
    def token(self):
        config = json.loads(Path(self.kubeconfig).read_text())
        return config["users"][0]["user"]["token"]

    # --- faults and knobs -----------------------------------------------------------------------------------
    def clear_faults(self):
        """No faults (the suites switch them from playbooks with the tp_sandbox action)."""
        for name in ("faults.json", "faults.state.json"):
            try:
                (self.dir / name).unlink()
            except FileNotFoundError:
                pass

    def set_knobs(self, **knobs):
        (self.dir / "knobs.json").write_text(json.dumps(knobs))

    # --- what happened ----------------------------------------------------------------------------------------
    def calls(self):
        path = self.dir / "calls.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def mark(self):
        return len(self.calls())

    def calls_since(self, mark):
        return self.calls()[mark:]

    def state(self):
        path = self.dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def reset_session(self):
        """No daemons, no session, no intercepts (agents stay in the cluster, as after a real quit -s)."""
        try:
            (self.dir / "state.json").unlink()
        except FileNotFoundError:
            pass

    # --- the cluster ------------------------------------------------------------------------------------------
    def kube(self):
        from kubernetes import client, config  # pylint: disable=import-outside-toplevel
        api = client.ApiClient(config.new_client_from_config(config_file=self.kubeconfig).configuration)
        return client.CoreV1Api(api), client.AppsV1Api(api)

    def cluster_listing(self):
        """``{kind: {namespace/name: resourceVersion}}`` of namespaces, deployments, secrets, configmaps, services.

        Call it with no cluster faults configured: the listing goes through the same simulated API.
        """
        core, apps = self.kube()
        listing = {
            "namespaces": core.list_namespace(),
            "deployments": apps.list_deployment_for_all_namespaces(),
            "secrets": core.list_secret_for_all_namespaces(),
            "configmaps": core.list_config_map_for_all_namespaces(),
            "services": core.list_service_for_all_namespaces(),
        }
        return {kind: {"%s/%s" % (item.metadata.namespace or "", item.metadata.name): item.metadata.resource_version
                       for item in found.items} for kind, found in listing.items()}


def start_sandbox(directory, base_env):
    env = dict(base_env, TP_SANDBOX_DIR=str(directory),
               TP_SANDBOX_PYTHON=os.environ.get("TP_SANDBOX_PYTHON", str(BIN / "python")))
    up = run([str(ROOT / "tests" / "sandbox" / "up")], env=env, timeout=60)
    assert up.returncode == 0, up.stdout + up.stderr
    for line in up.stdout.splitlines():
        if line.startswith("export "):
            key, _sep, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return Sandbox(directory, env)


def stop_sandbox(sandbox):
    run([str(ROOT / "tests" / "sandbox" / "down")], env=sandbox.env, timeout=60)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, collections_path):
    """A sandbox for one suite file, with pods ready fast; the playbook environment is ``sandbox.env``."""
    directory = tmp_path_factory.mktemp("sandbox")
    base = dict(os.environ)
    for name in ("TELEPRESENCE_VERSION", "K8S_AUTH_KUBECONFIG", "K8S_AUTH_CONTEXT", "TELEPRESENCE_MANAGER_NAMESPACE"):
        base.pop(name, None)
    base.update(PATH="%s:%s" % (BIN, base.get("PATH", "")), ANSIBLE_COLLECTIONS_PATH=str(collections_path),
                ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0")
    box = start_sandbox(directory, base)
    box.set_knobs(ready_delay=0.1)
    try:
        yield box
    finally:
        stop_sandbox(box)


# ---------------------------------------------------------------------------------------------------------------
# playbooks
# ---------------------------------------------------------------------------------------------------------------

class PlayResult:
    """One ansible-playbook run: exit code, raw output (both streams), and every task result."""

    def __init__(self, completed, duration):
        self.rc = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.output = completed.stdout + completed.stderr
        self.duration = duration
        self.tasks = []
        start = completed.stdout.find('{\n "tasks"')
        if start >= 0:
            self.tasks = json.loads(completed.stdout[start:])["tasks"]

    def task(self, name):
        """The result of the task named ``name`` (exactly one)."""
        found = [item for item in self.tasks if item["task"] == name]
        assert len(found) == 1, "task %r ran %d times; tasks: %s\n%s" % (
            name, len(found), [item["task"] for item in self.tasks], self.output[-3000:])
        return found[0]

    def result(self, name):
        return self.task(name)["result"]


class Runner:
    """Runs playbooks on localhost (local connection, the venv's Python) against one sandbox."""

    def __init__(self, sandbox, workdir):
        self.sandbox = sandbox
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The modules' own temporary files (Helm values, env files' staging) land here and nowhere else.
        self.tmpdir = self.workdir / "tmp"
        self.tmpdir.mkdir(exist_ok=True)
        self.inventory = self.workdir / "inventory.ini"
        self.inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        self.count = 0

    def env(self, callback="tp_json", **extra):
        env = dict(self.sandbox.env, TMPDIR=str(self.tmpdir), ANSIBLE_LOCAL_TEMP=str(self.workdir / "ansible-local"),
                   ANSIBLE_REMOTE_TMP=str(self.workdir / "ansible-remote"), ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
                   ANSIBLE_ACTION_PLUGINS=str(ACTIONS),
                   ANSIBLE_STDOUT_CALLBACK=callback, ANSIBLE_PIPELINING="1", ANSIBLE_HOST_KEY_CHECKING="0", ANSIBLE_DEPRECATION_WARNINGS="0")
        env.update(extra)
        return env

    def write(self, plays):
        self.count += 1
        path = self.workdir / ("play-%02d.yml" % self.count)
        path.write_text(yaml.safe_dump(plays, sort_keys=False, width=1000))
        return path

    def play(self, tasks, extra_vars=None, args=(), callback="tp_json", timeout=600, env=None, name="reliability"):
        """Run ``tasks`` (a list of task dicts) in one play on localhost; return a :class:`PlayResult`."""
        return self.plays([tasks], extra_vars, args, callback, timeout, env, name)

    def plays(self, task_lists, extra_vars=None, args=(), callback="tp_json", timeout=600, env=None, name="reliability"):
        """One playbook with one play on localhost per list of tasks."""
        playbook = self.write([{"name": "%s %d" % (name, number), "hosts": "localhost", "gather_facts": False,
                                "tasks": tasks} for number, tasks in enumerate(task_lists)])
        return self.run_playbook(playbook, extra_vars, args, callback, timeout, env)

    def run_playbook(self, playbook, extra_vars=None, args=(), callback="tp_json", timeout=600, env=None):
        argv = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(playbook)] + list(args)
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        started = time.monotonic()
        completed = run(argv, env=self.env(callback=callback, **(env or {})), timeout=timeout)
        # Kept next to the playbook, to read a case's full result when a test fails.
        Path(str(playbook)[:-len(".yml")] + ".out").write_text(completed.stdout + completed.stderr)
        return PlayResult(completed, time.monotonic() - started)

    def leftovers(self):
        """Files the modules left in their temporary directory (Ansible's own folders excluded)."""
        return sorted(str(path.relative_to(self.tmpdir)) for path in self.tmpdir.rglob("*"))


@pytest.fixture(scope="module")
def runner(sandbox, tmp_path_factory):
    return Runner(sandbox, tmp_path_factory.mktemp("plays"))


# ---------------------------------------------------------------------------------------------------------------
# disk snapshots and checks
# ---------------------------------------------------------------------------------------------------------------

def tree(path):
    """``{relative path: (mode, size, mtime_ns)}`` of everything under ``path`` (the folder itself included)."""
    path = Path(path)
    snapshot = {}
    if not path.exists():
        return snapshot
    for item in [path] + sorted(path.rglob("*")):
        info = item.lstat()
        snapshot[str(item.relative_to(path))] = (stat.S_IMODE(info.st_mode), info.st_size if item.is_file() else 0,
                                                 info.st_mtime_ns)
    return snapshot


def calls_during(calls, task):
    """The calls.log records made while ``task`` (a tp_json task record) ran."""
    return [call for call in calls if task["start"] <= call["ts"] <= task["end"]]


def mutating(calls):
    """The calls among ``calls`` (calls.log records) that change something."""
    return [call for call in calls if call.get("cmd", "").split(" ")[0] in MUTATING_COMMANDS]
