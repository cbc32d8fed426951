# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tp_connection driven through main(): the decision table, argv per client version, every status shape,
check and diff mode, failures and bad input. The process boundary (cli.run_process) is scripted."""

from __future__ import annotations

import json

import pytest

from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.devloop.telepresence.plugins.module_utils import cli, connection
from ansible_collections.devloop.telepresence.plugins.modules import tp_connection
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.harness import (
    Failed, capture_exits, fail, make_binary, ok, run_main,
)

STATUS = ["status", "--output", "json"]
CONNECT_APP = ["connect", "--namespace", "app", "--manager-namespace", "ambassador", "--output", "json"]
DEPRECATED_OUTPUT = "Flag --output has been deprecated, use --format instead\n"


@pytest.fixture
def binary(tmp_path):
    return make_binary(tmp_path)


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    capture_exits(monkeypatch)
    monkeypatch.setattr(connection.os, "geteuid", lambda: 0)


@pytest.fixture
def run(monkeypatch, binary):
    """run(args, *steps) -> (result, script); raises Failed on fail_json."""
    def runner(args, *steps):
        result, _module, script = run_main(monkeypatch, tp_connection.main, binary, args, steps)
        return result, script
    return runner


def argvs(binary, *calls):
    return [[binary] + list(call) for call in calls]


# --- status shapes, version by version (facts section 2) ------------------------------------------

def not_running(version):
    if version in ("2.20", "2.24", "2.25"):
        return {"root_daemon": {}, "traffic_manager": {"name": "", "traffic_agent": "", "version": ""},
                "user_daemon": {}}
    # json v2 encoder (2.27+) may keep false values
    return {"root_daemon": {"running": False}, "traffic_manager": {}, "user_daemon": {"running": False}}


def connected(version="2.24", namespace="app", context="sandbox", manager_namespace="ambassador", intercepts=()):
    semver = {"2.20": "2.20.2", "2.24": "2.24.0", "2.25": "2.25.0", "2.29": "2.29.0", "2.30": "2.30.0"}[version]
    user = {"running": True, "name": "%s-%s" % (context, namespace), "version": semver, "status": "Connected",
            "kubernetes_server": "http://127.0.0.1:6443", "kubernetes_context": context, "namespace": namespace,
            "manager_namespace": manager_namespace, "executable": "/opt/tp/telepresence"}
    if intercepts:
        user["intercepts"] = [{"name": name, "client": "dev@host"} for name in intercepts]
    return {"user_daemon": user, "root_daemon": {"running": True, "name": "OSS Root Daemon", "version": "v" + semver,
                                                 "api_version": 3},
            "traffic_manager": {"name": "OSS Traffic Manager", "version": "v" + semver,
                                "traffic_agent": "ghcr.io/telepresenceio/tel2:" + semver}}


def warning_for(version):
    """2.29+ still accept --output json but print a deprecation line on stderr."""
    return DEPRECATED_OUTPUT if version in ("2.29", "2.30") else ""


VERSIONS = ["2.20", "2.24", "2.25", "2.29", "2.30"]


@pytest.mark.parametrize("version", VERSIONS)
def test_connect_argv_is_the_same_for_every_client_version(run, binary, version):
    warn = warning_for(version)
    result, script = run({"namespace": "app"}, ok(STATUS, not_running(version), warn), ok(CONNECT_APP, None, warn),
                         ok(STATUS, connected(version), warn))
    assert result["changed"] is True and result["action"] == "connected" and result["connected"] is True
    assert result["command"] == [binary] + CONNECT_APP
    assert result["commands"] == argvs(binary, STATUS, CONNECT_APP, STATUS)
    semver = connected(version)["user_daemon"]["version"]
    status = result["status"]
    assert (status["client_version"], status["daemon_version"], status["manager_version"]) == (semver, semver, semver)
    assert status["namespace"] == "app" and status["root_daemon_version"] == semver


@pytest.mark.parametrize("version", VERSIONS)
def test_rerun_is_one_status_call(run, binary, version):
    result, script = run({"namespace": "app"}, ok(STATUS, connected(version), warning_for(version)))
    assert result["changed"] is False and result["action"] == "none" and result["connected"] is True
    assert result["command"] is None and result["commands"] == argvs(binary, STATUS)
    assert result["status"]["client_version"] is None  # only the status was read


def test_status_with_v_prefixed_user_daemon_version_2_17(run):
    data = connected()
    data["user_daemon"]["version"] = "v2.17.0"
    result, _script = run({"namespace": "app"}, ok(STATUS, data))
    assert result["status"]["daemon_version"] == "2.17.0"


def test_docker_status_shape(run, binary):
    docker_connected = {"daemon": dict(connected()["user_daemon"], in_docker=True),
                        "traffic_manager": connected()["traffic_manager"]}
    result, _script = run({"namespace": "app", "docker": True}, ok(STATUS, docker_connected))
    assert result["changed"] is False and result["status"]["in_docker"] is True
    assert result["status"]["root_daemon_running"] is True


def test_docker_session_with_host_wanted_reconnects(run, binary):
    docker_connected = {"daemon": dict(connected()["user_daemon"], in_docker=True), "traffic_manager": {}}
    result, script = run({"namespace": "app"}, ok(STATUS, docker_connected), ok(["quit"]), ok(CONNECT_APP),
                         ok(STATUS, connected()))
    assert result["action"] == "reconnected" and script.calls == [STATUS, ["quit"], CONNECT_APP, STATUS]


def test_multi_daemon_shape_uses_the_connected_one(run):
    data = {"connections": [{"daemon": {"running": True, "in_docker": True, "status": "Not connected"}},
                            connected()]}
    result, _script = run({"namespace": "app"}, ok(STATUS, data))
    assert result["changed"] is False and result["status"]["connections"] == 2
    assert result["status"]["namespace"] == "app"


def test_running_but_not_connected_connects_without_quit(run, binary):
    daemons = {"user_daemon": {"running": True, "status": "Not connected", "version": "2.24.0"},
               "root_daemon": {"running": True, "version": "v2.24.0"}}
    result, script = run({"namespace": "app"}, ok(STATUS, daemons), ok(CONNECT_APP), ok(STATUS, connected()))
    assert result["action"] == "connected" and script.calls == [STATUS, CONNECT_APP, STATUS]


def test_error_state_from_2_20_is_not_connected(run):
    data = {"user_daemon": {"running": True, "status": "Not connected, error talking to cluster", "error": "x509"},
            "root_daemon": {"running": True}, "traffic_manager": {"name": "", "traffic_agent": "", "version": ""}}
    result, script = run({"namespace": "app"}, ok(STATUS, data), ok(CONNECT_APP), ok(STATUS, connected()))
    assert result["action"] == "connected" and result["status"]["error"] is None


# --- the decision table ---------------------------------------------------------------------------

def test_every_connect_flag_in_fixed_order(run, binary, tmp_path):
    kubeconfig = str(tmp_path / "kubeconfig")
    args = {"namespace": "app", "manager_namespace": "tp", "context": "staging", "kubeconfig": kubeconfig,
            "also_proxy": ["10.1.0.0/16", "fd00::/8"], "never_proxy": ["10.1.2.0/24"],
            "mapped_namespaces": ["app", "shop"]}
    connect = ["connect", "--namespace", "app", "--manager-namespace", "tp", "--kubeconfig", kubeconfig,
               "--context", "staging", "--also-proxy", "10.1.0.0/16,fd00::/8", "--never-proxy", "10.1.2.0/24",
               "--mapped-namespaces", "app,shop", "--output", "json"]
    result, _script = run(args, ok(STATUS, not_running("2.24")), ok(connect),
                          ok(STATUS, connected(context="staging", manager_namespace="tp")))
    assert result["command"] == [binary] + connect


def test_docker_flag(run, binary):
    connect = ["connect", "--namespace", "app", "--manager-namespace", "ambassador", "--docker", "--output", "json"]
    docker_connected = {"daemon": dict(connected()["user_daemon"], in_docker=True), "traffic_manager": {}}
    result, _script = run({"namespace": "app", "docker": True}, ok(STATUS, not_running("2.24")), ok(connect),
                          ok(STATUS, docker_connected))
    assert result["command"] == [binary] + connect


def test_no_namespace_accepts_any_connected_namespace(run):
    result, script = run({}, ok(STATUS, connected(namespace="whatever")))
    assert result["changed"] is False and script.calls == [STATUS]


def test_no_namespace_connect_passes_none(run, binary):
    connect = ["connect", "--manager-namespace", "ambassador", "--output", "json"]
    result, _script = run({}, ok(STATUS, not_running("2.24")), ok(connect), ok(STATUS, connected(namespace="default")))
    assert result["command"] == [binary] + connect


@pytest.mark.parametrize("current", [
    connected(namespace="other"), connected(manager_namespace="tp"), connected(context="prod"),
])
def test_connected_differently_quits_then_connects(run, binary, current):
    result, script = run({"namespace": "app", "context": "sandbox"}, ok(STATUS, current), ok(["quit"]),
                         ok(CONNECT_APP[:5] + ["--context", "sandbox", "--output", "json"]), ok(STATUS, connected()))
    assert result["changed"] is True and result["action"] == "reconnected"
    assert script.calls[:2] == [STATUS, ["quit"]] and len(script.calls) == 4
    assert result["command"][1] == "connect"


def test_connected_differently_without_reconnect_fails_naming_both(run, binary):
    with pytest.raises(Failed) as info:
        run({"namespace": "app", "reconnect": False}, ok(STATUS, connected(namespace="other")))
    result = info.value.result
    assert result["msg"] == ("connected with other settings (context sandbox, namespace other, manager namespace "
                             "ambassador): namespace is other, wanted app; set reconnect: true to quit and connect "
                             "again, or quit the session first")
    assert result["commands"] == argvs(binary, STATUS) and result["command"] is None


def test_timeout_is_passed_to_every_call(run):
    _result, script = run({"namespace": "app", "timeout": 7}, ok(STATUS, not_running("2.24")), ok(CONNECT_APP),
                          ok(STATUS, connected()))
    assert script.timeouts == [7, 7, 7]


# --- check mode and diff --------------------------------------------------------------------------

def test_check_mode_connect_reads_only_and_predicts(run):
    result, script = run({"namespace": "app", "_ansible_check_mode": True, "_ansible_diff": True},
                         ok(STATUS, not_running("2.24")))
    assert result["changed"] is True and result["action"] == "connected" and result["command"] is None
    assert script.calls == [STATUS]
    # Not connected now (nothing was done), as the status says; the session it would make is planned.
    assert result["connected"] is False and result["status"]["connected"] is False
    assert result["planned"] == {"connected": True, "context": None, "namespace": "app", "manager_namespace": "ambassador"}
    assert result["diff"] == {
        "before": {"connected": False, "context": None, "namespace": None, "manager_namespace": None},
        "after": {"connected": True, "context": None, "namespace": "app", "manager_namespace": "ambassador"}}


def test_check_mode_reconnect(run):
    result, script = run({"namespace": "app", "_ansible_check_mode": True, "_ansible_diff": True},
                         ok(STATUS, connected(namespace="other")))
    assert result["action"] == "reconnected" and script.calls == [STATUS]
    assert result["diff"]["before"]["namespace"] == "other"
    assert result["diff"]["after"] == {"connected": True, "context": "sandbox", "namespace": "app",
                                       "manager_namespace": "ambassador"}


def test_diff_after_connect(run):
    result, _script = run({"namespace": "app", "_ansible_diff": True}, ok(STATUS, not_running("2.24")), ok(CONNECT_APP),
                          ok(STATUS, connected()))
    assert result["diff"]["after"] == {"connected": True, "context": "sandbox", "namespace": "app",
                                       "manager_namespace": "ambassador"}


def test_no_diff_unless_asked(run):
    result, _script = run({"namespace": "app"}, ok(STATUS, connected()))
    assert "diff" not in result


# --- disconnected and stopped ---------------------------------------------------------------------

def test_disconnect_then_again(run, binary):
    result, _script = run({"state": "disconnected", "_ansible_diff": True}, ok(STATUS, connected()), ok(["quit"]),
                          ok(STATUS, {"user_daemon": {"running": True, "status": "Not connected"},
                                      "root_daemon": {"running": True}}))
    assert (result["changed"], result["action"], result["connected"]) == (True, "disconnected", False)
    assert result["command"] == [binary, "quit"]
    assert result["diff"]["before"]["connected"] is True and result["diff"]["after"]["connected"] is False
    daemons_only = {"user_daemon": {"running": True, "status": "Not connected"}}
    again, script = run({"state": "disconnected"}, ok(STATUS, daemons_only))
    assert (again["changed"], again["action"], again["command"]) == (False, "none", None)
    assert script.calls == [STATUS]


@pytest.mark.parametrize("version", VERSIONS)
def test_stop_then_again(run, binary, version):
    result, _script = run({"state": "stopped"}, ok(STATUS, connected(version)), ok(["quit", "-s"]),
                          ok(STATUS, not_running(version)))
    assert (result["changed"], result["action"], result["connected"]) == (True, "stopped", False)
    assert result["command"] == [binary, "quit", "-s"]
    assert result["status"]["user_daemon_running"] is False
    again, script = run({"state": "stopped"}, ok(STATUS, not_running(version)))
    assert (again["changed"], again["action"]) == (False, "none") and script.calls == [STATUS]


def test_stop_daemons_without_session(run, binary):
    daemons = {"user_daemon": {"running": True, "status": "Not connected"}, "root_daemon": {"running": True}}
    result, _script = run({"state": "stopped"}, ok(STATUS, daemons), ok(["quit", "-s"]), ok(STATUS, not_running("2.24")))
    assert result["changed"] is True and result["action"] == "stopped"


@pytest.mark.parametrize("state, action", [("disconnected", "disconnected"), ("stopped", "stopped")])
def test_disconnect_check_mode(run, state, action):
    result, script = run({"state": state, "_ansible_check_mode": True, "_ansible_diff": True},
                         ok(STATUS, connected()))
    assert (result["changed"], result["action"], result["command"]) == (True, action, None)
    # What is now (still connected) and, apart, what would be.
    assert result["connected"] is True and script.calls == [STATUS]
    assert result["diff"]["after"] == result["planned"] == {"connected": False, "context": None, "namespace": None,
                                                            "manager_namespace": None}


# --- failures -------------------------------------------------------------------------------------

def test_sudo_missing_fails_with_the_actionable_message(run, binary):
    err = ("sudo: a terminal is required to read the password; either use the -S option to read from standard input "
           "or configure an askpass helper\nsudo: a password is required\n")
    with pytest.raises(Failed) as info:
        run({"namespace": "app"}, ok(STATUS, not_running("2.24")), fail(CONNECT_APP, err=err), ok(["quit", "-s"]))
    result = info.value.result
    assert result["msg"] == connection.sudo_message(binary)
    assert result["command"] == [binary] + CONNECT_APP and result["rc"] == 1
    # the user daemon the failed connect launched is stopped again (issue 12)
    assert result["commands"] == argvs(binary, STATUS, CONNECT_APP, ["quit", "-s"])


def test_sudo_preflight_fails_before_connect_for_a_user(run, binary, monkeypatch):
    monkeypatch.setattr(connection.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(connection, "run_process", lambda argv, timeout, env=None: (1, "", "", False))
    with pytest.raises(Failed) as info:
        run({"namespace": "app"}, ok(STATUS, not_running("2.24")))
    result = info.value.result
    assert "sudo cannot start it without a password" in result["msg"]
    assert result["command"] == ["sudo", "-n", "-l", binary]
    assert result["commands"] == argvs(binary, STATUS)


def test_version_mismatch_says_to_stop(run):
    err = "version mismatch. Client v2.24.0 != user daemon v2.20.2, please run 'telepresence quit -s' and reconnect\n"
    with pytest.raises(Failed) as info:
        run({"namespace": "app"}, ok(STATUS, not_running("2.24")), fail(CONNECT_APP, err=err))
    assert "tp_connection state=stopped" in info.value.result["msg"]


def test_traffic_manager_missing_envelope(run):
    envelope = {"cmd": "connect", "err": "connector.Connect: traffic manager not found, if it is not installed, "
                                         "please run 'telepresence helm install'."}
    with pytest.raises(Failed) as info:
        run({"namespace": "app"}, ok(STATUS, not_running("2.24")), fail(CONNECT_APP, out=json.dumps(envelope)),
            ok(["quit", "-s"]))
    assert info.value.result["msg"].startswith("connector.Connect: traffic manager not found")
    assert info.value.result["commands"][-1][1:] == ["quit", "-s"]


def test_status_malformed_output_fails_cleanly(run, binary):
    with pytest.raises(Failed) as info:
        run({"namespace": "app"}, (STATUS, 0, "{not json", ""))
    assert "not JSON" in info.value.result["msg"] and info.value.result["commands"] == argvs(binary, STATUS)


def test_timed_out_call_fails_with_the_hint(monkeypatch, binary):
    monkeypatch.setattr(cli, "run_process", lambda argv, timeout, env=None: (-9, "", "", True))
    with patch_module_args({"binary_path": binary, "namespace": "app", "timeout": 3}):
        with pytest.raises(Failed) as info:
            tp_connection.main()
    result = info.value.result
    assert result["msg"].startswith("telepresence status did not finish within 3 s")
    assert result["timed_out"] is True


def test_missing_binary_fails_naming_binary_path(tmp_path):
    with patch_module_args({"binary_path": str(tmp_path / "nope")}):
        with pytest.raises(Failed) as info:
            tp_connection.main()
    assert info.value.result["msg"].startswith("binary_path %s is not an executable file" % (tmp_path / "nope"))


# --- bad input: each fails before any CLI call, naming the option ------------------------------------

@pytest.mark.parametrize("args, words", [
    ({"namespace": "App_1"}, ["namespace 'App_1'", "DNS-1123"]),
    ({"namespace": "x" * 64}, ["namespace", "64 characters"]),
    ({"manager_namespace": "amb.assador"}, ["manager_namespace 'amb.assador'"]),
    ({"timeout": -5}, ["timeout must be a positive number", "-5"]),
    ({"timeout": 0}, ["timeout must be a positive number"]),
    ({"timeout": "abc"}, ["timeout", "int"]),
    ({"state": "up"}, ["state", "connected, disconnected, stopped"]),
    ({"also_proxy": ["10.0.0.0/33"]}, ["also_proxy item '10.0.0.0/33'", "CIDR"]),
    ({"never_proxy": ["not-a-cidr"]}, ["never_proxy item 'not-a-cidr'"]),
    ({"never_proxy": ["10.0.0.1"]}, ["never_proxy item '10.0.0.1'", "prefix length is missing"]),
    ({"mapped_namespaces": ["app", "Bad!"]}, ["mapped_namespaces item 'Bad!'", "DNS-1123"]),
    ({"docker": "maybe"}, ["docker", "bool"]),
    ({"reconnect": "perhaps"}, ["reconnect", "bool"]),
    ({"colour": "red"}, ["colour"]),
])
def test_bad_input(monkeypatch, binary, args, words):
    calls = []
    monkeypatch.setattr(cli, "run_process", lambda *a, **k: calls.append(a))
    with patch_module_args(dict({"binary_path": binary}, **args)):
        with pytest.raises(Failed) as info:
            tp_connection.main()
    for word in words:
        assert word in info.value.result["msg"]
    assert calls == []


def test_cidr_with_host_bits_is_accepted_as_the_cli_does(run):
    result, _script = run({"namespace": "app", "also_proxy": ["10.1.2.3/16"]}, ok(STATUS, connected()))
    assert result["changed"] is False


# facts sheet section 9, "`status` after `quit` (2.21-2.31): UNVERIFIED": every shape is "no usable session"
AFTER_QUIT = {
    "not_connected": ok(STATUS, {"user_daemon": {"running": True, "status": "Not connected", "version": "2.24.0"},
                                 "root_daemon": {"running": True, "version": "v2.24.0"},
                                 "traffic_manager": {"name": "", "version": "", "traffic_agent": ""}}),
    "empty_connected": ok(STATUS, {"user_daemon": {"running": True, "status": "Connected", "version": "2.24.0"},
                                   "root_daemon": {"running": True, "version": "v2.24.0"},
                                   "traffic_manager": {"name": "", "version": "", "traffic_agent": ""}}),
    "daemon_error": fail(STATUS, out=json.dumps({"cmd": "status", "err": "connector.Status: rpc error: code = "
                                                 "Unavailable desc = no active session"})),
}


@pytest.mark.parametrize("shape", sorted(AFTER_QUIT))
def test_status_after_quit_is_not_connected_and_connect_runs(run, binary, shape):
    result, script = run({"namespace": "app"}, AFTER_QUIT[shape], ok(CONNECT_APP), ok(STATUS, connected()))
    assert result["changed"] is True and result["action"] == "connected" and result["connected"] is True
    assert script.calls == [STATUS, CONNECT_APP, STATUS]


@pytest.mark.parametrize("shape", sorted(AFTER_QUIT))
def test_status_after_quit_check_mode_reports_not_connected(run, shape):
    result, script = run({"namespace": "app", "_ansible_check_mode": True, "_ansible_diff": True}, AFTER_QUIT[shape])
    assert result["changed"] is True and result["action"] == "connected" and script.calls == [STATUS]
    assert result["diff"]["before"] == {"connected": False, "context": None, "namespace": None,
                                        "manager_namespace": None}


def test_status_error_right_after_connect_fails_naming_the_status_call(run, binary):
    error = fail(STATUS, out=json.dumps({"cmd": "status", "err": "connector.Status: boom"}))
    with pytest.raises(Failed) as info:
        run({"namespace": "app"}, AFTER_QUIT["daemon_error"], ok(CONNECT_APP), error)
    assert info.value.result["msg"] == "connector.Status: boom"
    assert info.value.result["command"] == [binary] + STATUS
