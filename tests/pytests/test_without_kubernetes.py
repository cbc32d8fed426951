# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A managed node whose Python has no ``kubernetes`` library (issue 15).

tp_binary, tp_connection and tp_info's default reads need only the CLI, so they work; tp_manager and tp_intercept
need the cluster API, so they fail before any change, saying how to install the library for that interpreter.
The node's Python is a fresh venv of the test's own interpreter: no kubernetes, no PyYAML.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tp_harness import collections_path, mutating, runner, sandbox  # noqa: F401  pylint: disable=unused-import


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("bare-node") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import kubernetes"], capture_output=True, check=False)
    assert probe.returncode != 0, "the bare venv sees a kubernetes library"
    return str(python)


def test_cli_only_modules_work_and_cluster_modules_fail_before_any_change(sandbox, runner, bare_python, tmp_path):
    binary = sandbox.binary()
    mirror = sandbox.env["TP_SANDBOX_MIRROR"]
    on_bare = {"ansible_python_interpreter": bare_python}
    mark = sandbox.mark()
    played = runner.play([
        {"name": "binary", "vars": on_bare, "devloop.telepresence.tp_binary": {
            "version": "2.25.0", "dest": str(tmp_path / "telepresence"), "base_url": mirror, "allow_insecure_http": True,
            "checksum_url": "%s/v2.25.0/sha256sums.txt" % mirror, "prefer_system": False}},
        {"name": "info", "vars": on_bare, "devloop.telepresence.tp_info": {"binary_path": binary}},
        {"name": "connection", "vars": on_bare, "devloop.telepresence.tp_connection": {
            "binary_path": binary, "state": "stopped"}},
        {"name": "manager", "vars": on_bare, "ignore_errors": True,
         "devloop.telepresence.tp_manager": {"binary_path": binary, "wait_timeout": 30}},
        {"name": "intercept", "vars": on_bare, "ignore_errors": True, "devloop.telepresence.tp_intercept": {
            "binary_path": binary, "name": "fresh-app", "namespace": "app", "port": 18009, "service_port": "http"}},
    ])
    for name in ("binary", "info", "connection"):
        assert played.task(name)["status"] in ("ok", "changed"), played.task(name)
    assert played.result("info")["client"]["version"] == "2.24.0"
    advice = "%s -m pip install kubernetes" % bare_python
    for name in ("manager", "intercept"):
        task = played.task(name)
        assert task["status"] == "failed" and advice in task["result"]["msg"], task
        assert task["result"]["changed"] is False
    assert [call for call in mutating(sandbox.calls_since(mark)) if call.get("cmd", "").split(" ")[0] != "quit"] == []
