# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""connection.py: the connect argv, the reuse/reconnect decision, sudo and version-mismatch messages, disconnect.

The process boundary (cli.run_process) is scripted, so every test states the exact argv list and call count.
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils import cli, connection
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import TelepresenceCli, TelepresenceError
from ansible_collections.devloop.telepresence.plugins.module_utils.connection import (
    ConnectionSpec,
    connect_args,
    differences,
    disconnect,
    ensure_connected,
)

TP = "/opt/tp/telepresence"
STATUS = ["status", "--output", "json"]

NOT_RUNNING = {"root_daemon": {}, "traffic_manager": {"name": "", "traffic_agent": "", "version": ""}, "user_daemon": {}}
DAEMONS_ONLY = {"user_daemon": {"running": True, "version": "2.24.0", "status": "Not connected"},
                "root_daemon": {"running": True, "version": "v2.24.0"}, "traffic_manager": {}}


def connected(namespace="app", context="sandbox", manager_namespace="ambassador", docker=False):
    user = {"running": True, "version": "2.24.0", "status": "Connected", "kubernetes_context": context,
            "kubernetes_server": "http://127.0.0.1:1", "namespace": namespace, "manager_namespace": manager_namespace}
    manager = {"name": "OSS Traffic Manager", "version": "v2.24.0", "traffic_agent": "ghcr.io/telepresenceio/tel2:2.24.0"}
    if docker:
        user["in_docker"] = True
        return {"daemon": user, "traffic_manager": manager}
    return {"user_daemon": user, "root_daemon": {"running": True, "version": "v2.24.0"}, "traffic_manager": manager}


class Script:
    """Stands for the telepresence process: answers each call in order and checks its argv."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.calls = []

    def __call__(self, argv, timeout, env=None):
        assert self.steps, "unexpected call %r" % (argv,)
        expected, rc, out, err = self.steps.pop(0)
        self.calls.append(argv[1:])
        assert argv[0] == TP
        assert argv[1:] == expected
        return rc, out, err, False


def ok(args, data=None, err=""):
    return (args, 0, json.dumps(data) if data is not None else "", err)


def fail(args, rc=1, out="", err=""):
    return (args, rc, out, err)


class FakeModule:
    params = {}

    def get_bin_path(self, name):
        return TP


@pytest.fixture
def process(monkeypatch):
    def install(*steps):
        script = Script(*steps)
        monkeypatch.setattr(cli, "run_process", script)
        return script
    return install


@pytest.fixture(autouse=True)
def as_root(monkeypatch):
    """Most tests run as root (no sudo pre-flight); the sudo tests switch to a user."""
    monkeypatch.setattr(connection.os, "geteuid", lambda: 0)


def runner(**kwargs):
    return TelepresenceCli(FakeModule(), TP, **kwargs)


def spec(**kwargs):
    kwargs.setdefault("namespace", "app")
    return ConnectionSpec(**kwargs)


CONNECT_APP = ["connect", "--namespace", "app", "--manager-namespace", "ambassador", "--output", "json"]


# --- connect argv ------------------------------------------------------------------------------

def test_connect_args_minimal():
    assert connect_args(runner(), spec()) == ["connect", "--namespace", "app", "--manager-namespace", "ambassador"]


def test_connect_args_without_namespace_never_passes_an_empty_one():
    assert connect_args(runner(), ConnectionSpec()) == ["connect", "--manager-namespace", "ambassador"]


def test_connect_args_every_flag_in_fixed_order():
    run = runner(kubeconfig="/k/config", context="staging")
    wanted = spec(manager_namespace="tp", context="staging", docker=True, also_proxy=["10.1.0.0/16", "10.2.0.0/16"],
                  never_proxy=["10.3.0.0/24"], mapped_namespaces=["app", "shop"])
    assert connect_args(run, wanted) == [
        "connect", "--namespace", "app", "--manager-namespace", "tp", "--kubeconfig", "/k/config",
        "--context", "staging", "--docker", "--also-proxy", "10.1.0.0/16,10.2.0.0/16", "--never-proxy", "10.3.0.0/24",
        "--mapped-namespaces", "app,shop"]


def test_connect_args_kubeconfig_list_goes_through_environment():
    run = runner(kubeconfig="/a:/b", context="sandbox")
    assert connect_args(run, spec()) == ["connect", "--namespace", "app", "--manager-namespace", "ambassador",
                                         "--context", "sandbox"]
    assert run.environment()["KUBECONFIG"] == "/a:/b"


def test_spec_from_params_and_namespace_override():
    params = {"namespace": "app", "manager_namespace": "tp", "context": "c", "docker": None, "also_proxy": None,
              "never_proxy": ["10.0.0.0/8"], "mapped_namespaces": None}
    made = ConnectionSpec.from_params(params)
    assert made.as_dict() == {"namespace": "app", "manager_namespace": "tp", "context": "c", "docker": False}
    assert made.never_proxy == ["10.0.0.0/8"] and made.also_proxy == [] and made.mapped_namespaces == []
    assert ConnectionSpec.from_params(params, namespace="other").namespace == "other"


# --- the decision table ---------------------------------------------------------------------------

@pytest.mark.parametrize("status, wanted, found", [
    (connected(), spec(), []),
    (connected(), spec(namespace=None), []),
    (connected(), spec(context="sandbox"), []),
    (connected(namespace="other"), spec(), ["namespace is other, wanted app"]),
    (connected(manager_namespace="tp"), spec(), ["manager_namespace is tp, wanted ambassador"]),
    (connected(), spec(context="prod"), ["context is sandbox, wanted prod"]),
    (connected(), spec(docker=True), ["docker mode is False, wanted True"]),
    (connected(docker=True), spec(), ["docker mode is True, wanted False"]),
])
def test_differences(status, wanted, found):
    assert differences(connection.normalize_status(status), wanted) == found


def test_connected_with_same_settings_is_one_status_call(process):
    script = process(ok(STATUS, connected()))
    result = ensure_connected(runner(), spec())
    assert (result["changed"], result["action"]) == (False, "none")
    assert script.calls == [STATUS]


@pytest.mark.parametrize("before", [NOT_RUNNING, DAEMONS_ONLY])
def test_not_connected_connects_with_explicit_flags(process, before):
    script = process(ok(STATUS, before), ok(CONNECT_APP), ok(STATUS, connected()))
    result = ensure_connected(runner(), spec())
    assert (result["changed"], result["action"]) == (True, "connected")
    assert result["status"]["namespace"] == "app" and result["before"]["connected"] is False
    assert script.calls == [STATUS, CONNECT_APP, STATUS]


def test_connected_elsewhere_quits_then_connects(process):
    script = process(ok(STATUS, connected(namespace="other")), ok(["quit"]), ok(CONNECT_APP), ok(STATUS, connected()))
    result = ensure_connected(runner(), spec())
    assert (result["changed"], result["action"]) == (True, "reconnected")
    assert result["before"]["namespace"] == "other" and result["status"]["namespace"] == "app"
    assert script.calls == [STATUS, ["quit"], CONNECT_APP, STATUS]


def test_connected_elsewhere_without_reconnect_fails_naming_both(process):
    script = process(ok(STATUS, connected(namespace="other")))
    with pytest.raises(TelepresenceError) as info:
        ensure_connected(runner(), spec(), reconnect=False)
    assert info.value.msg == ("connected with other settings (context sandbox, namespace other, manager namespace "
                              "ambassador): namespace is other, wanted app; set reconnect: true to quit and connect "
                              "again, or quit the session first")
    assert script.calls == [STATUS]


@pytest.mark.parametrize("before, action", [(NOT_RUNNING, "connected"), (connected(namespace="x"), "reconnected")])
def test_check_mode_only_reads(process, before, action):
    script = process(ok(STATUS, before))
    result = ensure_connected(runner(), spec(), check_mode=True)
    assert (result["changed"], result["action"]) == (True, action)
    assert result["status"] == result["before"]
    assert script.calls == [STATUS]


def test_connect_that_does_not_connect_is_an_error(process):
    still = {"user_daemon": {"running": True, "status": "Not connected, error talking to cluster",
                             "error": "dial tcp: connection refused"}}
    script = process(ok(STATUS, NOT_RUNNING), ok(CONNECT_APP), ok(STATUS, still), ok(["quit", "-s"]))
    with pytest.raises(TelepresenceError) as info:
        ensure_connected(runner(), spec())
    assert script.calls[-1] == ["quit", "-s"]  # the daemons this failed connect launched are stopped again
    assert info.value.msg == ("telepresence connect returned but status says Not connected, error talking to cluster: "
                              "dial tcp: connection refused")


def test_connect_failure_keeps_argv_and_reason(process):
    envelope = {"cmd": "connect", "err": "connector.Connect: traffic manager not found, if it is not installed, "
                                         "please run 'telepresence helm install'."}
    process(ok(STATUS, NOT_RUNNING), fail(CONNECT_APP, out=json.dumps(envelope)), ok(["quit", "-s"]))
    with pytest.raises(TelepresenceError) as info:
        ensure_connected(runner(), spec())
    assert info.value.msg.startswith("connector.Connect: traffic manager not found")
    assert info.value.argv == [TP] + CONNECT_APP and info.value.rc == 1


# --- sudo and version mismatch --------------------------------------------------------------------

SUDO_STDERR = ("sudo: a terminal is required to read the password; either use the -S option to read from standard "
               "input or configure an askpass helper\nsudo: a password is required\n")


@pytest.mark.parametrize("out, err", [
    ("", SUDO_STDERR),                                                        # 2.23+ quiet progress: stderr only
    (json.dumps({"cmd": "connect", "err": "failed to launch the daemon service: exit status 1",
                 "stderr": SUDO_STDERR}), ""),                                 # 2.20 envelope
    (json.dumps({"error": "sudo: a password is required"}), ""),               # 2.29 --format
])
def test_sudo_prompt_becomes_the_actionable_message(process, out, err):
    process(ok(STATUS, NOT_RUNNING), fail(CONNECT_APP, out=out, err=err), ok(["quit", "-s"]))
    with pytest.raises(TelepresenceError) as info:
        ensure_connected(runner(), spec())
    assert info.value.msg == connection.sudo_message(TP)
    assert "passwordless sudo for %s" % TP in info.value.msg
    assert "become: true" in info.value.msg and "docker: true" in info.value.msg
    assert info.value.argv == [TP] + CONNECT_APP


def test_version_mismatch_says_to_stop_the_daemons(process):
    err = "version mismatch. Client v2.24.0 != user daemon v2.20.2, please run 'telepresence quit -s' and reconnect\n"
    process(ok(STATUS, DAEMONS_ONLY), fail(CONNECT_APP, err=err))
    with pytest.raises(TelepresenceError) as info:
        ensure_connected(runner(), spec())
    assert info.value.msg.startswith("telepresence connect failed: version mismatch. Client v2.24.0 != user daemon")
    assert info.value.msg.endswith("daemons of another Telepresence version are running: stop them with "
                                   "devloop.telepresence.tp_connection state=stopped (telepresence quit -s) and "
                                   "connect again")


def sudo_probe(monkeypatch, rc=None, exc=None, timed_out=False):
    """Become an unprivileged user whose ``sudo -n -l`` answers rc (or raises exc); record its argv."""
    seen = []

    def fake_run(argv, timeout, env=None):
        seen.append((argv, {"timeout": timeout, "env": env}))
        if exc:
            raise exc
        return rc, "", "", timed_out
    monkeypatch.setattr(connection.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(connection, "run_process", fake_run)
    return seen


@pytest.mark.parametrize("rc, exc, timed_out", [(1, None, False), (None, OSError("no sudo"), False),
                                                (-9, None, True)])
def test_sudo_needing_a_password_fails_before_connect(process, monkeypatch, rc, exc, timed_out):
    seen = sudo_probe(monkeypatch, rc=rc, exc=exc, timed_out=timed_out)
    script = process(ok(STATUS, NOT_RUNNING))
    with pytest.raises(TelepresenceError) as info:
        ensure_connected(runner(), spec())
    assert info.value.msg == connection.sudo_message(TP)
    assert script.calls == [STATUS]                        # connect never ran
    argv, kwargs = seen[0]
    assert argv == ["sudo", "-n", "-l", TP]
    assert kwargs == {"timeout": connection.SUDO_CHECK_SECONDS, "env": None}


def test_passwordless_sudo_lets_connect_run(process, monkeypatch):
    seen = sudo_probe(monkeypatch, rc=0)
    script = process(ok(STATUS, NOT_RUNNING), ok(CONNECT_APP), ok(STATUS, connected()))
    assert ensure_connected(runner(), spec())["action"] == "connected"
    assert len(seen) == 1 and script.calls == [STATUS, CONNECT_APP, STATUS]


def test_docker_mode_needs_no_sudo(process, monkeypatch):
    seen = sudo_probe(monkeypatch, rc=1)
    connect = ["connect", "--namespace", "app", "--manager-namespace", "ambassador", "--docker", "--output", "json"]
    process(ok(STATUS, NOT_RUNNING), ok(connect), ok(STATUS, connected(docker=True)))
    assert ensure_connected(runner(), spec(docker=True))["status"]["in_docker"] is True
    assert seen == []


def test_root_needs_no_sudo_probe(process, monkeypatch):
    seen = []
    monkeypatch.setattr(connection, "run_process", lambda *a, **k: seen.append(a))
    process(ok(STATUS, NOT_RUNNING), ok(CONNECT_APP), ok(STATUS, connected()))
    ensure_connected(runner(), spec())
    assert seen == []


# --- disconnect -----------------------------------------------------------------------------------

@pytest.mark.parametrize("before, stop, expected_calls", [
    (connected(), False, [STATUS, ["quit"], STATUS]),
    (DAEMONS_ONLY, False, [STATUS]),                       # daemons but no session: nothing to quit
    (NOT_RUNNING, False, [STATUS]),
    (connected(), True, [STATUS, ["quit", "-s"], STATUS]),
    (DAEMONS_ONLY, True, [STATUS, ["quit", "-s"], STATUS]),
    (NOT_RUNNING, True, [STATUS]),
    (connected(docker=True), True, [STATUS, ["quit", "-s"], STATUS]),
])
def test_disconnect_decisions(process, before, stop, expected_calls):
    after = DAEMONS_ONLY if not stop else NOT_RUNNING
    steps = [ok(STATUS, before)]
    if len(expected_calls) > 1:
        steps += [ok(expected_calls[1]), ok(STATUS, after)]
    script = process(*steps)
    result = disconnect(runner(), stop_daemons=stop)
    assert result["changed"] is (len(expected_calls) > 1)
    assert script.calls == expected_calls
    assert result["status"]["connected"] is False


def test_disconnect_check_mode_only_reads(process):
    script = process(ok(STATUS, connected()))
    result = disconnect(runner(), stop_daemons=True, check_mode=True)
    assert result["changed"] is True and result["status"]["connected"] is True
    assert script.calls == [STATUS]


def test_quit_failure_is_reported(process):
    process(ok(STATUS, connected()), fail(["quit"], err="telepresence quit: error: rpc error\n"))
    with pytest.raises(TelepresenceError) as info:
        disconnect(runner())
    assert info.value.msg == "telepresence quit failed: rpc error" and info.value.argv == [TP, "quit"]


# --- sudo pre-flight: before quit, and only when a root daemon must be started ---------------------------

def test_rewritten_message_is_what_str_reports(process):
    process(ok(STATUS, NOT_RUNNING), fail(CONNECT_APP, err=SUDO_STDERR), ok(["quit", "-s"]))
    with pytest.raises(TelepresenceError) as info:
        ensure_connected(runner(), spec())
    assert str(info.value) == info.value.msg == connection.sudo_message(TP)


def test_running_root_daemon_needs_no_sudo_probe(process, monkeypatch):
    seen = sudo_probe(monkeypatch, rc=1)
    script = process(ok(STATUS, connected(namespace="other")), ok(["quit"]), ok(CONNECT_APP), ok(STATUS, connected()))
    assert ensure_connected(runner(), spec())["action"] == "reconnected"
    assert seen == [] and script.calls == [STATUS, ["quit"], CONNECT_APP, STATUS]


def test_sudo_probe_runs_before_quitting_a_docker_session(process, monkeypatch):
    seen = sudo_probe(monkeypatch, rc=1)
    script = process(ok(STATUS, connected(docker=True)))
    with pytest.raises(TelepresenceError) as info:
        ensure_connected(runner(), spec())
    assert info.value.msg == connection.sudo_message(TP)
    assert len(seen) == 1 and script.calls == [STATUS]     # the docker session was kept


@pytest.mark.parametrize("stop, after, still", [
    (False, connected(), "connected"),
    (True, DAEMONS_ONLY, "daemons are running"),
])
def test_disconnect_that_changed_nothing_fails(process, stop, after, still):
    quit_args = ["quit", "-s"] if stop else ["quit"]
    process(ok(STATUS, connected()), ok(quit_args), ok(STATUS, after))
    with pytest.raises(TelepresenceError) as info:
        disconnect(runner(), stop_daemons=stop)
    assert "returned but status still says %s" % still in info.value.msg
    assert info.value.argv == [TP] + quit_args


def test_a_failed_connect_keeps_daemons_that_ran_before(process):
    envelope = {"cmd": "connect", "err": "connector.Connect: traffic manager not found"}
    script = process(ok(STATUS, DAEMONS_ONLY), fail(CONNECT_APP, out=json.dumps(envelope)))
    with pytest.raises(TelepresenceError):
        ensure_connected(runner(), spec())
    assert script.calls == [STATUS, CONNECT_APP]


def test_a_failing_cleanup_quit_does_not_hide_the_connect_failure(process):
    envelope = {"cmd": "connect", "err": "connector.Connect: traffic manager not found"}
    process(ok(STATUS, NOT_RUNNING), fail(CONNECT_APP, out=json.dumps(envelope)), fail(["quit", "-s"], err="boom"))
    with pytest.raises(TelepresenceError) as info:
        ensure_connected(runner(), spec())
    assert info.value.msg.startswith("connector.Connect: traffic manager not found")
