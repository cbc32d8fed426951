# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tp_info driven through main(): what it reads for each gather choice, that it never calls list (an implicit
connect) unless connected, every status and list shape, secrets masked, facts set, bad input."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.common.warnings import get_warning_messages
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.devloop.telepresence.plugins.module_utils import cli
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import Kube, KubeError
from ansible_collections.devloop.telepresence.plugins.modules import tp_info
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.harness import (
    Failed, capture_exits, fail, make_binary, ok, run_main,
)

VERSION = ["version"]
STATUS = ["status", "--output", "json"]
LIST_INTERCEPTS = ["list", "--intercepts", "--output", "json"]
LIST_APP = ["list", "--namespace", "app", "--output", "json"]
SECRET = "s3cr3t-t0ken-from-the-cluster"
DEPRECATED_OUTPUT = "Flag --output has been deprecated, use --format instead\n"
SEMVER = {"2.20": "2.20.2", "2.24": "2.24.0", "2.25": "2.25.0", "2.29": "2.29.0", "2.30": "2.30.0"}
VERSIONS = sorted(SEMVER)


@pytest.fixture
def binary(tmp_path):
    return make_binary(tmp_path)


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    capture_exits(monkeypatch)


@pytest.fixture
def run(monkeypatch, binary):
    """run(args, *steps) -> (result, module, script); raises Failed on fail_json."""
    def runner(args, *steps):
        return run_main(monkeypatch, tp_info.main, binary, args, steps)
    return runner


def version_text(version):
    return "OSS Client         : v%s\nRoot Daemon        : not running\nUser Daemon        : not running\n" % \
        SEMVER[version]


def not_running(version="2.24"):
    if version in ("2.20", "2.24", "2.25"):
        return {"root_daemon": {}, "traffic_manager": {"name": "", "traffic_agent": "", "version": ""},
                "user_daemon": {}}
    return {"root_daemon": {"running": False}, "traffic_manager": {}, "user_daemon": {"running": False}}


def connected(version="2.24", namespace="app", intercepts=("fresh-app",)):
    semver = SEMVER[version]
    user = {"running": True, "name": "sandbox-" + namespace, "status": "Connected",
            "version": semver if version != "2.17" else "v" + semver,
            "kubernetes_server": "http://127.0.0.1:6443", "kubernetes_context": "sandbox", "namespace": namespace,
            "manager_namespace": "ambassador"}
    if intercepts:
        user["intercepts"] = [{"name": name, "client": "dev@host"} for name in intercepts]
    return {"user_daemon": user, "root_daemon": {"running": True, "version": "v" + semver},
            "traffic_manager": {"name": "OSS Traffic Manager", "version": "v" + semver,
                                "traffic_agent": "ghcr.io/telepresenceio/tel2:" + semver}}


def intercept_info(name="fresh-app", client="dev@host", disposition=1):
    return {"spec": {"name": name, "client": client, "agent": "fresh-app", "workload_kind": "Deployment",
                     "namespace": "app", "target_host": "127.0.0.1", "target_port": 8080,
                     "port_identifier": "http", "service_name": "fresh-app", "service_port": 80},
            "id": "abc:" + name, "disposition": disposition, "mechanism_args_desc": "all TCP connections",
            "environment": {"API_TOKEN": SECRET, "PORT": "8080", "TELEPRESENCE_CONTAINER": "fresh-app",
                            "TELEPRESENCE_INTERCEPT_ID": "abc:" + name}}


def workloads(version="2.24", infos=None):
    infos = [intercept_info()] if infos is None else infos
    key = "intercept_info" if version != "2.20" else "intercept_infos"
    fresh = {"name": "fresh-app", "namespace": "app", "workload_resource_type": "Deployment", "uid": "u1"}
    if infos:
        fresh[key] = infos
    if version == "2.20":
        fresh["sidecar"] = {"agentName": "fresh-app", "agentImage": "docker.io/datawire/tel2:2.20.2"}
    else:
        fresh["agent_version"] = SEMVER[version]
    other = {"name": "web-only", "namespace": "app", "workload_resource_type": "Deployment", "uid": "u2",
             "not_interceptable_reason": "Progressing"}
    return [fresh, other]


def envelope(items):
    return {"cmd": "list", "stdout": items}


def assert_secret_hidden(result, module):
    assert SECRET not in json.dumps(result)
    assert SECRET in module.no_log_values
    # values the result shows anyway (port, workload name, intercept id) would only garble it if masked
    assert not {"8080", "fresh-app", "abc:fresh-app"} & module.no_log_values


# --- default gather: client, status, intercepts ---------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_not_connected_never_calls_list(run, binary, version):
    warn = DEPRECATED_OUTPUT if version in ("2.29", "2.30") else ""
    result, _module, script = run({}, ok(VERSION, version_text(version)), ok(STATUS, not_running(version), warn))
    assert script.calls == [VERSION, STATUS]
    assert result["changed"] is False and result["command"] is None
    assert result["client"] == {"path": binary, "version": SEMVER[version]}
    assert result["status"]["connected"] is False and result["status"]["client_version"] == SEMVER[version]
    assert result["intercepts"] == []
    assert "workloads" not in result and "manager" not in result
    assert result["ansible_facts"]["telepresence"] == {key: result[key] for key in ("client", "status", "intercepts")}


@pytest.mark.parametrize("version", VERSIONS)
def test_connected_reads_this_clients_intercepts(run, binary, version):
    warn = DEPRECATED_OUTPUT if version in ("2.29", "2.30") else ""
    others = [intercept_info(), intercept_info(name="someone-else", client="other@laptop")]
    result, module, script = run({}, ok(VERSION, version_text(version)), ok(STATUS, connected(version), warn),
                                 ok(LIST_INTERCEPTS, envelope(workloads(version, others)), warn))
    assert script.calls == [VERSION, STATUS, LIST_INTERCEPTS]
    assert result["commands"] == [[binary] + call for call in script.calls]
    intercept, = result["intercepts"]
    assert intercept == {
        "id": "abc:fresh-app", "name": "fresh-app", "disposition": "ACTIVE", "message": None, "client": "dev@host",
        "workload": "fresh-app", "workload_kind": "Deployment", "namespace": "app", "service": "fresh-app",
        "service_port": "http", "local_port": 8080, "ports": ["8080:http"], "target_host": "127.0.0.1",
        "environment_names": ["API_TOKEN", "PORT", "TELEPRESENCE_CONTAINER", "TELEPRESENCE_INTERCEPT_ID"],
        "mount": None}
    assert result["status"]["intercepts"] == ["fresh-app"]
    assert_secret_hidden(result, module)


def test_list_as_bare_array_229_format(run):
    result, module, _script = run({"gather": ["intercepts"]}, ok(STATUS, connected("2.29")),
                                  ok(LIST_INTERCEPTS, workloads("2.29")))
    assert [i["name"] for i in result["intercepts"]] == ["fresh-app"]
    assert "status" not in result and "client" not in result
    assert_secret_hidden(result, module)


def test_intercept_missing_from_list_keeps_its_name(run):
    """2.28+ can intercept in another namespace: list of the connected namespace does not show it."""
    status = connected(intercepts=("fresh-app", "elsewhere"))
    result, _module, _script = run({"gather": ["intercepts"]}, ok(STATUS, status), ok(LIST_INTERCEPTS, envelope(workloads())))
    names = [(i["name"], i["disposition"]) for i in result["intercepts"]]
    assert names == [("fresh-app", "ACTIVE"), ("elsewhere", None)]


def test_not_connected_intercept_names_come_from_status(run):
    must_restart = connected()
    must_restart["user_daemon"]["status"] = "Connected, but must restart"
    result, _module, script = run({"gather": ["intercepts"]}, ok(STATUS, must_restart))
    assert script.calls == [STATUS]
    assert [(i["name"], i["id"]) for i in result["intercepts"]] == [("fresh-app", None)]


def test_connected_without_intercepts_needs_no_list(run):
    """status lists this client's intercepts: none there means nothing to read in detail."""
    result, _module, script = run({"gather": ["intercepts"]}, ok(STATUS, connected(intercepts=())))
    assert result["intercepts"] == [] and script.calls == [STATUS]


def test_version_mismatch_on_list_warns_and_returns_names(run):
    err = "version mismatch. Client v2.24.0 != user daemon v2.20.2, please run 'telepresence quit -s' and reconnect\n"
    result, _module, _script = run({"gather": ["intercepts"]}, ok(STATUS, connected()), (LIST_INTERCEPTS, 1, "", err))
    assert [(i["name"], i["id"]) for i in result["intercepts"]] == [("fresh-app", None)]
    assert any("version mismatch" in warning for warning in get_warning_messages())


def test_other_list_failure_fails(run, binary):
    with pytest.raises(Failed) as info:
        run({"gather": ["intercepts"]}, ok(STATUS, connected()),
            (LIST_INTERCEPTS, 1, json.dumps({"cmd": "list", "err": "connector.List: rpc error"}), ""))
    result = info.value.result
    assert result["msg"] == "connector.List: rpc error"
    assert result["commands"] == [[binary] + STATUS, [binary] + LIST_INTERCEPTS]


# --- status shapes through the module -------------------------------------------------------------

def test_docker_status(run):
    data = {"daemon": dict(connected()["user_daemon"], in_docker=True), "traffic_manager": {}}
    result, _module, _script = run({"gather": ["status"]}, ok(STATUS, data))
    assert result["status"]["in_docker"] is True and result["status"]["connected"] is True
    assert result["status"]["client_version"] is None


def test_multi_daemon_status(run):
    data = {"connections": [connected(namespace="one"), connected(namespace="two")]}
    result, _module, _script = run({"gather": ["status"]}, ok(STATUS, data))
    assert result["status"]["connections"] == 2 and result["status"]["namespace"] == "one"


def test_2_17_user_daemon_version_with_v(run):
    data = connected()
    data["user_daemon"]["version"] = "v2.17.0"
    result, _module, _script = run({"gather": ["status"]}, ok(STATUS, data))
    assert result["status"]["daemon_version"] == "2.17.0"


# --- workloads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_workloads_and_intercepts_share_one_list_call(run, version):
    result, module, script = run({"gather": ["intercepts", "workloads"]}, ok(STATUS, connected(version)),
                                 ok(LIST_APP, envelope(workloads(version))))
    assert script.calls == [STATUS, LIST_APP]
    fresh, web = result["workloads"]
    agent = "2.20.2" if version == "2.20" else SEMVER[version]
    assert fresh == {"name": "fresh-app", "namespace": "app", "kind": "Deployment", "uid": "u1",
                     "agent_installed": True, "agent_version": agent, "interceptable": True,
                     "not_interceptable_reason": None, "intercepts": ["fresh-app"]}
    assert web["agent_installed"] is False and web["interceptable"] is False
    assert web["not_interceptable_reason"] == "Progressing" and web["agent_version"] is None
    assert [i["name"] for i in result["intercepts"]] == ["fresh-app"]
    assert_secret_hidden(result, module)


def test_workloads_of_another_namespace_need_their_own_list(run):
    list_shop = ["list", "--namespace", "shop", "--output", "json"]
    result, _module, script = run({"gather": ["intercepts", "workloads"], "namespace": "shop"}, ok(STATUS, connected()),
                                  ok(LIST_INTERCEPTS, envelope(workloads())), ok(list_shop, envelope([])))
    assert script.calls == [STATUS, LIST_INTERCEPTS, list_shop]
    assert result["workloads"] == []


def test_workloads_when_not_connected_are_null_and_list_never_runs(run):
    result, _module, script = run({"gather": ["workloads"], "namespace": "app"}, ok(STATUS, not_running()))
    assert result["workloads"] is None and script.calls == [STATUS]
    assert result["ansible_facts"]["telepresence"] == {"workloads": None}


# --- manager --------------------------------------------------------------------------------------

MANAGER_STATE = {"installed": True, "kind": "Deployment", "version": "2.24.0",
                 "image": "ghcr.io/telepresenceio/tel2:2.24.0", "ready": True, "replicas": 1, "ready_replicas": 1,
                 "conditions": [], "release": None, "namespace": "tp"}


def test_manager_reads_the_cluster_only(run, monkeypatch, tmp_path):
    seen = []

    def fake_read(kube, namespace):
        seen.append((kube, namespace))
        return dict(MANAGER_STATE)
    monkeypatch.setattr(tp_info, "read_manager_state", fake_read)
    kubeconfig = str(tmp_path / "config")
    result, _module, script = run({"gather": ["manager"], "manager_namespace": "tp", "kubeconfig": kubeconfig,
                                  "context": "sandbox", "timeout": 9})
    assert script.calls == [] and result["commands"] == []
    assert result["manager"] == MANAGER_STATE
    assert result["ansible_facts"]["telepresence"] == {"manager": MANAGER_STATE}
    kube, namespace = seen[0]
    assert isinstance(kube, Kube) and namespace == "tp"
    assert (kube.kubeconfig, kube.context, kube.timeout) == (kubeconfig, "sandbox", 9)


def test_secret_is_masked_when_a_later_step_fails(run, monkeypatch):
    def broken(kube, namespace):
        raise KubeError("cannot list secrets in namespace ambassador: 403 Forbidden", status=403)
    monkeypatch.setattr(tp_info, "read_manager_state", broken)
    with pytest.raises(Failed) as info:
        run({"gather": ["intercepts", "manager"]}, ok(STATUS, connected()), ok(LIST_INTERCEPTS, envelope(workloads())))
    assert SECRET in info.value.module.no_log_values
    assert SECRET not in json.dumps(info.value.result)


def test_manager_cluster_error_fails_cleanly(run, monkeypatch):
    def broken(kube, namespace):
        raise KubeError("cannot get deployments in namespace ambassador: 403 Forbidden; check the RBAC", status=403)
    monkeypatch.setattr(tp_info, "read_manager_state", broken)
    with pytest.raises(Failed) as info:
        run({"gather": ["manager"]})
    assert info.value.result["msg"].startswith("cannot get deployments in namespace ambassador")
    assert info.value.result["api_status"] == 403


# --- check mode, failures, bad input --------------------------------------------------------------

def test_check_mode_reads_the_same(run):
    result, _module, script = run({"_ansible_check_mode": True}, ok(VERSION, version_text("2.24")),
                                  ok(STATUS, connected()), ok(LIST_INTERCEPTS, envelope(workloads())))
    assert result["changed"] is False and script.calls == [VERSION, STATUS, LIST_INTERCEPTS]


def test_unparseable_version_fails_cleanly(run, binary):
    with pytest.raises(Failed) as info:
        run({"gather": ["client"]}, ok(VERSION, "something else\n"))
    assert "cannot find the client version" in info.value.result["msg"]
    assert info.value.result["commands"] == [[binary, "version"]]


@pytest.mark.parametrize("args, words", [
    ({"gather": ["client", "everything"]}, ["gather", "everything"]),
    ({"gather": []}, ["gather is empty"]),
    ({"namespace": "Not_DNS"}, ["namespace 'Not_DNS'", "DNS-1123"]),
    ({"manager_namespace": "-amb"}, ["manager_namespace '-amb'"]),
    ({"timeout": -1}, ["timeout must be a positive number"]),
    ({"timeout": "soon"}, ["timeout"]),
    ({"state": "present"}, ["state"]),
])
def test_bad_input(monkeypatch, binary, args, words):
    calls = []
    monkeypatch.setattr(cli, "run_process", lambda *a, **k: calls.append(a))
    with patch_module_args(dict({"binary_path": binary}, **args)):
        with pytest.raises(Failed) as info:
            tp_info.main()
    for word in words:
        assert word in info.value.result["msg"]
    assert calls == []


# facts sheet section 9, "`status` after `quit` (2.21-2.31): UNVERIFIED": every shape is "no usable session"
def after_quit(shape):
    idle_manager = {"name": "", "version": "", "traffic_agent": ""}
    if shape == "daemon_error":
        return fail(STATUS, out=json.dumps({"cmd": "status", "err": "connector.Status: rpc error: code = "
                                            "Unavailable desc = no active session"}))
    return ok(STATUS, {"user_daemon": {"running": True, "version": "2.24.0",
                                       "status": "Connected" if shape == "empty_connected" else "Not connected"},
                       "root_daemon": {"running": True, "version": "v2.24.0"}, "traffic_manager": idle_manager})


AFTER_QUIT_SHAPES = ["not_connected", "empty_connected", "daemon_error"]


@pytest.mark.parametrize("shape", AFTER_QUIT_SHAPES)
def test_status_after_quit_reads_as_not_connected(run, shape):
    result, _module, script = run({}, ok(VERSION, version_text("2.24")), after_quit(shape))
    assert script.calls == [VERSION, STATUS]
    assert result["status"]["connected"] is False and result["status"]["state"] == "Not connected"
    assert result["status"]["context"] is None and result["intercepts"] == []
    assert ("no active session" in (result["status"]["error"] or "")) == (shape == "daemon_error")
