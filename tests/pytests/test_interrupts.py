# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ctrl-C and SIGTERM of ansible-playbook stop what the run started (issue 12).

A slow ``helm install`` and a slow ``intercept`` (the emulator's ``slow``/``slow_after`` CLI faults, see
tests/sandbox/README.md) are interrupted by a signal to the ansible-playbook process only, as a terminal or a CI
runner sends it. Within 5 s no process of that run may remain: every process whose environment carries the run's
marker, or whose command line names this sandbox's telepresence executables. Then an immediate re-run succeeds
and a second re-run changes nothing. A module killed with SIGKILL mid-call takes its CLI call with it (Linux
parent-death signal), and the next run removes the temporary folder it left (module_utils/tempfiles.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from tp_harness import BIN, collections_path, runner, sandbox  # noqa: F401  pylint: disable=unused-import

GRACE = 5.0   # seconds within which nothing of an interrupted run may remain


def run_processes(marker, sandbox_bin):
    """``{pid: cmdline}`` of the live processes of one run (zombies excluded)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/environ" % entry, "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if marker.encode() in environ or sandbox_bin in cmdline:
            found[int(entry)] = cmdline
    return found


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def interrupt_run(runner, playbook, signum, cli_words):  # noqa: F811
    """Start ``playbook``, wait for the CLI call named by ``cli_words``, send ``signum`` to ansible-playbook.

    Returns the seconds from the signal until nothing of the run remained.
    """
    marker = "TP_INTERRUPT_RUN=%s" % uuid.uuid4().hex
    name, value = marker.split("=")
    sandbox_bin = str(runner.sandbox.dir / "bin") + "/"
    env = runner.env(**{name: value})
    out = open(str(playbook)[:-len(".yml")] + ".interrupted.out", "w")
    # its own session, so that the test's cleanup can end exactly this run's group and nothing else
    proc = subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(runner.inventory), str(playbook)], env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def cli_running():
            return [pid for pid, cmdline in run_processes(marker, sandbox_bin).items()
                    if sandbox_bin in cmdline and all(" %s " % word in cmdline + " " for word in cli_words)]
        assert wait_for(cli_running, 60), "the CLI call %s never started" % (cli_words,)
        proc.send_signal(signum)
        signalled = time.monotonic()
        remaining = wait_for(lambda: not run_processes(marker, sandbox_bin), GRACE)
        elapsed = time.monotonic() - signalled
        left = run_processes(marker, sandbox_bin)
        assert remaining and not left, "%.1f s after %s, processes of the run remain: %s" % (
            GRACE, signal.Signals(signum).name, json.dumps(left, indent=1))
        proc.wait(timeout=10)
        return elapsed
    finally:
        out.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in run_processes(marker, sandbox_bin):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def set_cli_faults(sandbox, faults):  # noqa: F811
    for name in ("faults.json", "faults.state.json"):
        try:
            (sandbox.dir / name).unlink()
        except FileNotFoundError:
            pass
    if faults:
        (sandbox.dir / "faults.json").write_text(json.dumps({"cli": faults}))


def assert_converges(runner, playbook):  # noqa: F811
    first = runner.run_playbook(playbook)
    assert first.rc == 0, first.output[-4000:]
    second = runner.run_playbook(playbook)
    assert second.rc == 0, second.output[-4000:]
    changed = [item["task"] for item in second.tasks if item["result"].get("changed")]
    assert changed == [], "the second re-run changed %s\n%s" % (changed, second.output[-3000:])
    return first.duration


def manager_task(sandbox, state="present"):  # noqa: F811
    return {"name": "manager %s" % state, "devloop.telepresence.tp_manager": {
        "binary_path": sandbox.binary(), "state": state, "wait_timeout": 30}}


def test_interrupted_helm_install(runner, sandbox, signum):  # noqa: F811
    """The manager install is interrupted before anything lands (``slow``), then installed by the next run."""
    runner.play([manager_task(sandbox, "absent")])
    playbook = runner.write([{"name": "install", "hosts": "localhost", "gather_facts": False,
                              "tasks": [manager_task(sandbox)]}])
    set_cli_faults(sandbox, {"helm install": {"mode": "slow", "seconds": 30}})
    try:
        elapsed = interrupt_run(runner, playbook, signum, ["helm", "install"])
    finally:
        set_cli_faults(sandbox, None)
    print("helm install, %s: nothing of the run left after %.2f s" % (signal.Signals(signum).name, elapsed))
    rerun = assert_converges(runner, playbook)
    print("helm install, %s: re-run converged in %.1f s" % (signal.Signals(signum).name, rerun))


def test_interrupted_intercept(runner, sandbox, signum, tmp_path):  # noqa: F811
    """The intercept lands but the CLI is still waiting (``slow_after``); the next run adopts it."""
    binary = sandbox.binary()
    runner.play([manager_task(sandbox)])
    tasks = [{"name": "connected", "devloop.telepresence.tp_connection": {"binary_path": binary, "namespace": "app"}},
             {"name": "intercepted", "devloop.telepresence.tp_intercept": {
                 "binary_path": binary, "name": "fresh-app", "namespace": "app", "port": 18000,
                 "verify_local": "off", "wait_timeout": 10, "env_file": str(tmp_path / "app.env")}}]
    playbook = runner.write([{"name": "intercept", "hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    set_cli_faults(sandbox, {"intercept": {"mode": "slow_after", "seconds": 30}})
    try:
        elapsed = interrupt_run(runner, playbook, signum, ["intercept"])
    finally:
        set_cli_faults(sandbox, None)
    print("intercept, %s: nothing of the run left after %.2f s" % (signal.Signals(signum).name, elapsed))
    try:
        rerun = assert_converges(runner, playbook)
        print("intercept, %s: re-run converged in %.1f s" % (signal.Signals(signum).name, rerun))
        assert oct((tmp_path / "app.env").stat().st_mode & 0o777) == "0o600"
    finally:
        end_intercept(runner, binary)


@pytest.fixture(params=[signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def signum(request):
    return request.param


def test_tp_binary_into_an_unrelated_dest_leaves_another_clients_intercept_alone(runner, sandbox, tmp_path):  # noqa: F811
    """Issue 12: installing v2.25.0 into a new folder replaces nothing, so the 2.24.0 session keeps its intercept."""
    binary = sandbox.binary()
    mirror = sandbox.env["TP_SANDBOX_MIRROR"]
    dest = tmp_path / "other-bin" / "telepresence"
    runner.play([manager_task(sandbox)])
    try:
        setup = runner.play([
            {"name": "connected", "devloop.telepresence.tp_connection": {"binary_path": binary, "namespace": "app"}},
            {"name": "intercepted", "devloop.telepresence.tp_intercept": {
                "binary_path": binary, "name": "fresh-app", "namespace": "app", "port": 18004, "verify_local": "off"}}])
        assert setup.rc == 0, setup.output[-3000:]
        before = sandbox.state()
        played = runner.play([{"name": "install", "devloop.telepresence.tp_binary": {
            "version": "2.25.0", "dest": str(dest), "base_url": mirror, "allow_insecure_http": True,
            "checksum_url": "%s/v2.25.0/sha256sums.txt" % mirror, "prefer_system": False}}])
        assert played.rc == 0, played.output[-3000:]
        result = played.result("install")
        assert result["changed"] is True and result["daemons_stopped"] is False and result["command"] is None
        assert not [argv for argv in result["commands"] if argv[1:2] == ["quit"]]
        assert any("daemons of another client are running" in warning for warning in result.get("warnings", [])), result
        after = sandbox.state()
        assert after["daemons"] == before["daemons"] and after["daemons"]["user"]["version"] == "2.24.0"
        assert [(item["name"], item["disposition"]) for item in after["intercepts"]] == [("fresh-app", "ACTIVE")]
    finally:
        end_intercept(runner, binary)


def end_intercept(runner, binary):  # noqa: F811
    runner.play([
        {"name": "left", "devloop.telepresence.tp_intercept": {
            "binary_path": binary, "name": "fresh-app", "namespace": "app", "state": "absent"}},
        {"name": "quit", "devloop.telepresence.tp_connection": {"binary_path": binary, "state": "disconnected"}}])


def parent_of(pid):
    with open("/proc/%d/stat" % pid) as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def sigkill_module(runner, playbook, cli_words):  # noqa: F811
    """Start ``playbook``, SIGKILL the module process (the CLI call's parent) once the call runs.

    Returns the seconds from the kill until the CLI call was gone (the kernel's parent-death signal).
    """
    marker = "TP_INTERRUPT_RUN=%s" % uuid.uuid4().hex
    name, value = marker.split("=")
    sandbox_bin = str(runner.sandbox.dir / "bin") + "/"
    out = open(str(playbook)[:-len(".yml")] + ".killed.out", "w")
    proc = subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(runner.inventory), str(playbook)],
                            env=runner.env(**{name: value}), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        def cli_running():
            return [pid for pid, cmdline in run_processes(marker, sandbox_bin).items()
                    if sandbox_bin in cmdline and all(" %s " % word in cmdline + " " for word in cli_words)]
        calls = wait_for(cli_running, 60)
        assert calls, "the CLI call %s never started" % (cli_words,)
        cli_pid = calls[0]
        module = parent_of(cli_pid)
        os.kill(module, signal.SIGKILL)
        killed = time.monotonic()
        gone = wait_for(lambda: cli_pid not in run_processes(marker, sandbox_bin), GRACE)
        assert gone, "the CLI call outlived its SIGKILLed module by %.0f s" % GRACE
        elapsed = time.monotonic() - killed
        proc.wait(timeout=60)
        return elapsed
    finally:
        out.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in run_processes(marker, sandbox_bin):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_sigkilled_helm_install_leaves_values_that_the_next_run_removes(runner, sandbox):  # noqa: F811
    runner.play([manager_task(sandbox, "absent")])
    task = manager_task(sandbox)
    task["devloop.telepresence.tp_manager"]["values"] = {"agent": {"logLevel": "debug"}}
    playbook = runner.write([{"name": "install", "hosts": "localhost", "gather_facts": False, "tasks": [task]}])
    set_cli_faults(sandbox, {"helm install": {"mode": "slow", "seconds": 30}})
    try:
        elapsed = sigkill_module(runner, playbook, ["helm", "install"])
    finally:
        set_cli_faults(sandbox, None)
    print("helm install, module SIGKILLed: CLI gone after %.2f s" % elapsed)
    left = [name for name in os.listdir(str(runner.tmpdir)) if name.startswith("tp_manager_")]
    assert left, "the SIGKILLed module left no values folder: the test did not kill it mid-call"
    assert_converges(runner, playbook)
    assert [name for name in os.listdir(str(runner.tmpdir)) if name.startswith("tp_manager_")] == []


def test_sigkilled_intercept_leaves_an_env_folder_that_the_next_run_removes(runner, sandbox, tmp_path):  # noqa: F811
    binary = sandbox.binary()
    runner.play([manager_task(sandbox)])
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    tasks = [{"name": "connected", "devloop.telepresence.tp_connection": {"binary_path": binary, "namespace": "app"}},
             {"name": "intercepted", "devloop.telepresence.tp_intercept": {
                 "binary_path": binary, "name": "fresh-app", "namespace": "app", "port": 18000,
                 "verify_local": "off", "wait_timeout": 10, "env_file": str(env_dir / "app.env")}}]
    playbook = runner.write([{"name": "intercept", "hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    set_cli_faults(sandbox, {"intercept": {"mode": "slow_after", "seconds": 30}})
    try:
        elapsed = sigkill_module(runner, playbook, ["intercept"])
        print("intercept, module SIGKILLed: CLI gone after %.2f s" % elapsed)
    finally:
        set_cli_faults(sandbox, None)
    try:
        left = [name for name in os.listdir(str(env_dir)) if name.startswith(".tp_intercept-")]
        assert left, "the SIGKILLed module left no staging folder: the test did not kill it mid-call"
        assert_converges(runner, playbook)
        assert os.listdir(str(env_dir)) == ["app.env"]
    finally:
        end_intercept(runner, binary)


def daemons_running(sandbox):  # noqa: F811
    daemons = sandbox.state().get("daemons") or {}
    return sorted(name for name, daemon in daemons.items() if (daemon or {}).get("running"))


def test_a_failed_connect_stops_the_daemons_it_launched(runner, sandbox):  # noqa: F811
    """Issue 12: connect with a wrong manager namespace fails; the daemons it launched do not stay."""
    binary = sandbox.binary()
    runner.play([{"name": "stopped", "devloop.telepresence.tp_connection": {"binary_path": binary, "state": "stopped"}}])
    assert daemons_running(sandbox) == []
    played = runner.play([{"name": "connect", "devloop.telepresence.tp_connection": {
        "binary_path": binary, "namespace": "app", "manager_namespace": "no-manager-here"}}])
    assert played.rc != 0
    result = played.result("connect")
    assert "traffic" in result["msg"].lower(), result
    assert result["commands"][-1] == [binary, "quit", "-s"]
    assert daemons_running(sandbox) == []


def test_agent_removal_in_a_temporary_session_leaves_no_daemons(runner, sandbox):  # noqa: F811
    """Issue 12: tp_manager state=absent connects only to remove the agents; it stops what it started."""
    binary = sandbox.binary()
    setup = runner.play([
        manager_task(sandbox),
        {"name": "connected", "devloop.telepresence.tp_connection": {"binary_path": binary, "namespace": "app"}},
        {"name": "intercepted", "devloop.telepresence.tp_intercept": {
            "binary_path": binary, "name": "fresh-app", "namespace": "app", "port": 18005, "verify_local": "off"}},
        {"name": "stopped", "devloop.telepresence.tp_connection": {"binary_path": binary, "state": "stopped"}}])
    assert setup.rc == 0, setup.output[-3000:]
    assert daemons_running(sandbox) == []
    played = runner.play([manager_task(sandbox, "absent")])
    assert played.rc == 0, played.output[-3000:]
    result = played.result("manager absent")
    assert result["agents"]["path"] == "temporary session", result
    assert [binary, "quit", "-s"] in result["commands"]
    assert daemons_running(sandbox) == []


def test_interrupted_download(runner, sandbox, signum, tmp_path):  # noqa: F811
    """A slow tp_binary download (mirror fault ``slow``) interrupted: nothing of the run stays, no partial file."""
    mirror = sandbox.env["TP_SANDBOX_MIRROR"]
    dest = tmp_path / "bin" / "telepresence"
    task = {"name": "install", "devloop.telepresence.tp_binary": {
        "version": "2.25.0", "dest": str(dest), "base_url": mirror, "allow_insecure_http": True,
        "checksum_url": "%s/v2.25.0/sha256sums.txt" % mirror, "prefer_system": False}}
    playbook = runner.write([{"name": "download", "hosts": "localhost", "gather_facts": False, "tasks": [task]}])
    (sandbox.dir / "faults.json").write_text(json.dumps({"mirror": {"v2.25.0/telepresence-linux-amd64": {"mode": "slow"}}}))
    marker = "TP_INTERRUPT_RUN=%s" % uuid.uuid4().hex
    name, value = marker.split("=")
    out = open(str(playbook)[:-len(".yml")] + ".interrupted.out", "w")
    proc = subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(runner.inventory), str(playbook)],
                            env=runner.env(**{name: value}), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        def downloading():
            return dest.parent.is_dir() and [item for item in os.listdir(str(dest.parent)) if item.endswith(".download")]
        assert wait_for(downloading, 60), "the download never started"
        proc.send_signal(signum)
        signalled = time.monotonic()
        assert wait_for(lambda: not run_processes(marker, "\0"), GRACE), run_processes(marker, "\0")
        elapsed = time.monotonic() - signalled
        proc.wait(timeout=10)
    finally:
        out.close()
        set_cli_faults(sandbox, None)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print("download, %s: nothing of the run left after %.2f s" % (signal.Signals(signum).name, elapsed))
    assert not os.path.exists(str(dest))
    assert_converges(runner, playbook)
    assert os.listdir(str(dest.parent)) == ["telepresence"]
