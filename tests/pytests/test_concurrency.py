# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two playbooks at once on one workstation (issue 8, Reliability 3).

Both install the same pinned client into the same dest with tp_binary, then intercept the same Service with
tp_intercept through that client, against one sandbox. They must end consistent: one valid binary (the verified
artifact, 0755, nothing else in its folder), one ACTIVE intercept, one session, no stray temporary files.
"""

from __future__ import annotations

import hashlib
import platform
import stat
import subprocess
import time

import pytest

from tp_harness import BIN, PlayResult, collections_path, runner, sandbox  # noqa: F401  pylint: disable=unused-import


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture(scope="module")
def concurrent_runs(sandbox, runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared-bin")
    dest = folder / "telepresence"
    mirror = sandbox.env["TP_SANDBOX_MIRROR"]
    setup = runner.play([
        {"name": "manager", "devloop.telepresence.tp_manager": {"binary_path": sandbox.binary(), "wait_timeout": 30}},
        {"name": "no daemons", "devloop.telepresence.tp_connection": {"binary_path": sandbox.binary(), "state": "stopped"}},
    ])
    assert setup.rc == 0, setup.output[-3000:]
    sandbox.clear_faults()
    playbooks = []
    for number in (1, 2):
        tasks = [
            {"name": "install", "devloop.telepresence.tp_binary": {
                "version": "2.25.0", "dest": str(dest), "base_url": mirror, "allow_insecure_http": True,
                "checksum_url": "%s/v2.25.0/sha256sums.txt" % mirror, "prefer_system": False}},
            {"name": "intercept", "devloop.telepresence.tp_intercept": {
                "binary_path": str(dest), "name": "fresh-app", "namespace": "app", "port": 18003,
                "verify_local": "off"}},
        ]
        playbooks.append(runner.write([{"name": "run %d" % number, "hosts": "localhost", "gather_facts": False,
                                        "tasks": tasks}]))
    started = time.monotonic()
    processes = [subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(runner.inventory), str(playbook)],
                                  env=runner.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for playbook in playbooks]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        results.append(PlayResult(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
                                  time.monotonic() - started))
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    artifact = sandbox.dir / "mirror" / "v2.25.0" / ("telepresence-%s-%s" % (platform.system().lower(), arch))
    return {"results": results, "dest": dest, "folder": folder, "artifact": artifact,
            "state": sandbox.state()}


def test_both_playbooks_succeed(concurrent_runs):
    for result in concurrent_runs["results"]:
        assert result.rc == 0, result.output[-4000:]
        assert "Traceback" not in result.output


def test_one_valid_binary(concurrent_runs):
    installs = [result.result("install") for result in concurrent_runs["results"]]
    assert sorted(item["source"] for item in installs) in (["downloaded", "existing"], ["downloaded", "downloaded"])
    assert all(item["version"] == "2.25.0" and item["checksum_verified"] for item in installs), installs
    dest = concurrent_runs["dest"]
    assert sha256(dest) == sha256(concurrent_runs["artifact"])
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert sorted(p.name for p in concurrent_runs["folder"].iterdir()) == ["telepresence"]


def test_one_intercept_and_one_session(concurrent_runs):
    state = concurrent_runs["state"]
    intercepts = [item for item in state.get("intercepts") or [] if item["name"] == "fresh-app"]
    assert len(intercepts) == 1, intercepts
    assert intercepts[0]["disposition"] == "ACTIVE" and intercepts[0]["local_port"] in (18003, "18003")
    assert state["session"]["namespace"] == "app"
    assert state["daemons"]["user"]["version"] == "2.25.0"
    results = [result.result("intercept") for result in concurrent_runs["results"]]
    assert intercepts[0]["id"] in {(item.get("intercept") or {}).get("id") for item in results}, results


def test_no_stray_files(concurrent_runs, runner):
    assert sorted(p.name for p in concurrent_runs["folder"].iterdir()) == ["telepresence"]
    assert runner.leftovers() == []
