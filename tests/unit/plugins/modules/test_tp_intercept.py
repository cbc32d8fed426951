# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tp_intercept driven through main(): the decision table, argv per client version (2.20, 2.24, 2.25, 2.29, 2.30),
header/preview gating, check and diff mode, env files, secrets never in the output, and bad input.

The telepresence process (cli.run_process) is scripted call by call; the cluster is a fake Kube. The module's real
exit_json/fail_json run, so results go through Ansible's no_log masking exactly as on a host.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible.module_utils import basic
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.devloop.telepresence.plugins.module_utils import cli, connection
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import KubeError
from ansible_collections.devloop.telepresence.plugins.module_utils import intercept_module as tp_intercept

SECRET = "sbx-secret-0123456789abcdef"
SEMVER = {"2.20": "2.20.2", "2.24": "2.24.0", "2.25": "2.25.0", "2.29": "2.29.0", "2.30": "2.30.0"}
STATUS = ["status", "--output", "json"]
VERSION = ["version"]
QUIT = ["quit"]
CONNECT_APP = ["connect", "--namespace", "app", "--manager-namespace", "ambassador", "--output", "json"]
LIST_APP = ["list", "--namespace", "app", "--intercepts", "--output", "json"]
INTERCEPT_BASE = ["intercept", "fresh-app", "--workload", "fresh-app", "--service", "fresh-app", "--port", "8000:http",
                  "--mount=false"]
TAIL = ["--detailed-output", "--output", "json"]
DEPRECATED_OUTPUT = "Flag --output has been deprecated, use --format instead\n"


# --- the fake process and cluster ----------------------------------------------------------------------------------

class Script:
    """Stands for the telepresence process: answers each call in order and checks its exact argv."""

    def __init__(self, binary, steps):
        self.binary = binary
        self.steps = list(steps)
        self.calls = []

    def __call__(self, argv, timeout, env=None):
        assert self.steps, "unexpected call %r" % (argv,)
        expected, rc, out, err, effect = self.steps.pop(0)
        assert argv[0] == self.binary
        assert argv[1:] == expected
        assert timeout > 0
        self.calls.append(argv[1:])
        if effect:
            effect(argv[1:])
        return rc, out, err, False


def ok(args, data=None, err="", effect=None):
    text = data if isinstance(data, str) else (json.dumps(data) if data is not None else "")
    return (args, 0, text, err, effect)


def fail(args, rc=1, out="", err="", effect=None):
    return (args, rc, out, err, effect)


def version(v):
    return ok(VERSION, "OSS Client         : v%s\nRoot Daemon        : not running\nUser Daemon        : not "
                       "running\n" % SEMVER[v])


def not_running():
    return {"root_daemon": {}, "traffic_manager": {"name": "", "traffic_agent": "", "version": ""}, "user_daemon": {}}


def connected(v="2.24", namespace="app", manager_namespace="ambassador", intercepts=()):
    user = {"running": True, "name": "sandbox-%s" % namespace, "version": SEMVER[v], "status": "Connected",
            "kubernetes_server": "http://127.0.0.1:6443", "kubernetes_context": "sandbox", "namespace": namespace,
            "manager_namespace": manager_namespace}
    if intercepts:
        user["intercepts"] = [{"name": name, "client": "dev@host"} for name in intercepts]
    return {"user_daemon": user, "root_daemon": {"running": True, "version": "v" + SEMVER[v]},
            "traffic_manager": {"name": "OSS Traffic Manager", "version": "v" + SEMVER[v]}}


def info(v="2.24", name="fresh-app", local_port=8000, port_id="http", disposition=1, client="dev@host",
         environment=None, workload="fresh-app"):
    spec = {"name": name, "client": client, "agent": workload, "workload_kind": "Deployment", "namespace": "app",
            "target_host": "127.0.0.1", "target_port": local_port, "port_identifier": port_id,
            "service_name": workload, "service_port": 80}
    return {"spec": spec, "id": "sess-1:%s" % name, "disposition": disposition,
            "environment": {"API_TOKEN": SECRET, "TELEPRESENCE_CONTAINER": "fresh-app"}
            if environment is None else environment}


def listing(v="2.24", *infos):
    key = "intercept_infos" if v == "2.20" else "intercept_info"
    workload = {"name": "fresh-app", "namespace": "app", "workload_resource_type": "Deployment"}
    if infos:
        workload[key] = list(infos)
    return {"cmd": "list", "stdout": [workload] if infos else []}


def detailed(name="fresh-app", local_port=8000, environment=None):
    return {"id": "sess-1:%s" % name, "name": name, "disposition": "ACTIVE", "workload_kind": "Deployment",
            "target_host": "127.0.0.1", "target_port": local_port, "port_id": "http", "container_port": 8080,
            "environment": {"API_TOKEN": SECRET, "TELEPRESENCE_CONTAINER": "fresh-app"}
            if environment is None else environment}


def output_err(v):
    return DEPRECATED_OUTPUT if v in ("2.29", "2.30") else ""


def deployment(name):
    return {"metadata": {"name": name}, "spec": {"template": {"metadata": {"labels": {"app": name}}}}}


def service(name, ports):
    return {"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": ports}}


CLUSTER = {
    ("core", "namespace", None): [{"metadata": {"name": "app"}}, {"metadata": {"name": "default"}}],
    ("apps", "deployment", "app"): [deployment(n) for n in ("fresh-app", "multi-port", "no-service", "web-only")],
    ("core", "service", "app"): [service("fresh-app", [{"name": "http", "port": 80}]),
                                 service("multi-port", [{"name": "http", "port": 80}, {"name": "grpc", "port": 9090}]),
                                 service("web-only", [{"name": "web", "port": 80}])],
}


class FakeKube:
    """The cluster the pre-flight reads; ``broken`` makes every call fail like an unreachable API."""
    broken = False
    calls = []

    @classmethod
    def from_params(cls, params):
        assert params["namespace"]
        return cls()

    def _items(self, api, resource, namespace):
        if FakeKube.broken:
            raise KubeError("cannot reach the Kubernetes API of the current context to get %s" % resource)
        FakeKube.calls.append((resource, namespace))
        return CLUSTER.get((api, resource, namespace), [])

    def get(self, api, resource, name, namespace=None):
        return next((item for item in self._items(api, resource, namespace) if item["metadata"]["name"] == name), None)

    def list(self, api, resource, namespace=None):
        return self._items(api, resource, namespace)


# --- harness -------------------------------------------------------------------------------------------------------

class Done(Exception):
    def __init__(self, result, output, warnings):
        super().__init__(result)
        self.result = result
        self.output = output
        self.warnings = warnings


class Failed(Done):
    pass


@pytest.fixture
def binary(tmp_path):
    path = tmp_path / "bin" / "telepresence"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 99\n")  # never runs: run_process is scripted
    path.chmod(0o755)
    return str(path)


@pytest.fixture(autouse=True)
def isolation(monkeypatch):
    monkeypatch.setattr(connection.os, "geteuid", lambda: 0)
    monkeypatch.setattr(tp_intercept, "Kube", FakeKube)
    monkeypatch.setattr(tp_intercept, "local_port_listening", lambda port: True)
    FakeKube.broken = False
    FakeKube.calls = []
    for name in ("K8S_AUTH_KUBECONFIG", "KUBECONFIG", "K8S_AUTH_CONTEXT", "TELEPRESENCE_MANAGER_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


class Clock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = 0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(tp_intercept, "time", fake)
    return fake


@pytest.fixture
def run(monkeypatch, binary, capsys, clock):
    """run(args, *steps, check=False, diff=False) -> Done; raises Failed. Output is the module's real JSON."""
    def runner(args, *steps, check=False, diff=False):
        script = Script(binary, steps)
        warnings = []
        monkeypatch.setattr(cli, "run_process", script)
        monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warnings.append(text))
        module_args = dict({"binary_path": binary, "name": "fresh-app", "namespace": "app"}, **args)
        if check:
            module_args["_ansible_check_mode"] = True
        if diff:
            module_args["_ansible_diff"] = True
        capsys.readouterr()
        with patch_module_args(module_args):
            with pytest.raises(SystemExit) as exited:
                tp_intercept.main()
        output = capsys.readouterr().out
        result = json.loads(output.strip().splitlines()[-1])
        assert script.steps == [], "expected calls did not happen: %r" % ([s[0] for s in script.steps],)
        assert result.get("commands", [[binary] + c for c in script.calls]) == [[binary] + c for c in script.calls]
        if exited.value.code:
            raise Failed(result, output, warnings)
        return Done(result, output, warnings)
    return runner


def argvs(binary, *calls):
    return [[binary] + list(call) for call in calls]


PRESENT = {"port": 8000}


# --- decision table (client 2.24) ------------------------------------------------------------------------------------

def test_create_when_not_connected_connects_scoped_first(run, binary):
    done = run(PRESENT,
               ok(STATUS, not_running()),
               version("2.24"),
               ok(STATUS, not_running()),
               ok(CONNECT_APP),
               ok(STATUS, connected()),
               ok(INTERCEPT_BASE + TAIL, detailed()),
               ok(LIST_APP, listing("2.24", info())))
    result = done.result
    assert (result["changed"], result["action"], result["connection"]) == (True, "created", "connected")
    assert result["command"] == [binary] + INTERCEPT_BASE + TAIL
    intercept = result["intercept"]
    assert intercept["name"] == "fresh-app" and intercept["disposition"] == "ACTIVE"
    assert intercept["workload_kind"] == "Deployment" and intercept["ports"] == ["8000:http"]
    assert intercept["mount"] is False and intercept["id"] == "sess-1:fresh-app"
    assert intercept["environment_names"] == ["API_TOKEN", "TELEPRESENCE_CONTAINER"]
    assert SECRET not in done.output
    assert ("namespace", None) in FakeKube.calls and ("deployment", "app") in FakeKube.calls


def test_same_mapping_active_is_unchanged_with_status_and_list_only(run):
    done = run(PRESENT,
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())))
    result = done.result
    assert (result["changed"], result["action"], result["connection"], result["command"]) == \
        (False, "none", "none", None)
    assert len(result["commands"]) == 2
    assert result["intercept"]["local_port"] == 8000 and result["intercept"]["service_port"] == "http"
    assert SECRET not in done.output


def test_same_mapping_by_port_number_is_unchanged(run):
    done = run({"port": 8000, "service_port": "80"},
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info(port_id="http"))))
    assert done.result["action"] == "none"


def test_other_local_port_is_left_and_recreated(run, binary):
    done = run({"port": 8001},
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info(local_port=8000))),
               version("2.24"),
               ok(["leave", "fresh-app"]),
               ok(["intercept", "fresh-app", "--workload", "fresh-app", "--service", "fresh-app", "--port", "8001:http",
                   "--mount=false"] + TAIL, detailed(local_port=8001)),
               ok(LIST_APP, listing("2.24", info(local_port=8001))))
    result = done.result
    assert (result["changed"], result["action"], result["connection"]) == (True, "recreated", "none")
    assert result["reasons"] == ["local port 8000, wanted 8001"]
    assert result["intercept"]["local_port"] == 8001
    assert result["command"][1] == "intercept"


def test_other_service_port_is_recreated(run):
    done = run({"port": 8000, "name": "multi", "workload": "multi-port", "service_port": "grpc"},
               ok(STATUS, connected(intercepts=["multi"])),
               ok(LIST_APP, {"cmd": "list", "stdout": [{"name": "multi-port", "intercept_info": [
                   info(name="multi", workload="multi-port", port_id="http")]}]}),
               version("2.24"),
               ok(["leave", "multi"]),
               ok(["intercept", "multi", "--workload", "multi-port", "--service", "multi-port", "--port", "8000:grpc",
                   "--mount=false"] + TAIL, detailed(name="multi")),
               ok(LIST_APP, {"cmd": "list", "stdout": [{"name": "multi-port", "intercept_info": [
                   info(name="multi", workload="multi-port", port_id="grpc")]}]}))
    assert done.result["action"] == "recreated"
    assert done.result["reasons"] == ["service port http, wanted grpc"]


def test_same_mapping_not_active_is_recreated(run):
    done = run(PRESENT,
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info(disposition=4))),
               version("2.24"),
               ok(["leave", "fresh-app"]),
               ok(INTERCEPT_BASE + TAIL, detailed()),
               ok(LIST_APP, listing("2.24", info())))
    assert done.result["reasons"] == ["disposition NO_AGENT, wanted ACTIVE"]


ALREADY_EXISTS = {"cmd": "intercept", "err": 'connector.CreateIntercept: Intercept with name "fresh-app" already exists'}


def test_already_exists_is_explained(run):
    with pytest.raises(Failed) as failed:
        run(PRESENT,
            ok(STATUS, connected()),
            ok(LIST_APP, listing("2.24", info(client="someone@else"))),
            version("2.24"),
            fail(INTERCEPT_BASE + TAIL, out=json.dumps(ALREADY_EXISTS)),
            ok(STATUS, connected()))  # not this client's: no second list
    result = failed.value.result
    assert result["msg"].startswith('connector.CreateIntercept: Intercept with name "fresh-app" already exists; an '
                                    "intercept named fresh-app exists that this client does not own")
    assert result["action"] == "created" and result["rc"] == 1


def test_session_in_other_namespace_on_2_24_is_reconnected(run, binary):
    done = run(PRESENT,
               ok(STATUS, connected(namespace="dev", intercepts=["other"])),
               version("2.24"),
               ok(STATUS, connected(namespace="dev", intercepts=["other"])),
               ok(QUIT),
               ok(CONNECT_APP),
               ok(STATUS, connected()),
               ok(INTERCEPT_BASE + TAIL, detailed()),
               ok(LIST_APP, listing("2.24", info())))
    result = done.result
    assert (result["action"], result["connection"]) == ("created", "reconnected")
    assert any("ended this session's other intercepts: other" in w for w in done.warnings)


def test_session_in_other_namespace_with_same_name_reports_recreated(run):
    done = run(PRESENT,
               ok(STATUS, connected(namespace="dev", intercepts=["fresh-app"])),
               version("2.24"),
               ok(STATUS, connected(namespace="dev", intercepts=["fresh-app"])),
               ok(QUIT),
               ok(CONNECT_APP),
               ok(STATUS, connected()),
               ok(INTERCEPT_BASE + TAIL, detailed()),
               ok(LIST_APP, listing("2.24", info())))
    assert (done.result["action"], done.result["connection"]) == ("recreated", "reconnected")
    assert not done.warnings


def test_session_with_other_manager_namespace_is_reconnected_on_any_version(run):
    done = run(PRESENT,
               ok(STATUS, connected("2.29", manager_namespace="tp")),
               version("2.29"),
               ok(STATUS, connected("2.29", manager_namespace="tp")),
               ok(QUIT),
               ok(CONNECT_APP, err=DEPRECATED_OUTPUT),
               ok(STATUS, connected("2.29")),
               ok(INTERCEPT_BASE + ["--namespace", "app"] + TAIL, detailed(), err=DEPRECATED_OUTPUT),
               ok(LIST_APP, listing("2.29", info()), err=DEPRECATED_OUTPUT))
    assert done.result["connection"] == "reconnected"


def test_session_in_other_namespace_on_2_29_is_kept_and_namespace_passed(run, binary):
    done = run(PRESENT,
               ok(STATUS, connected("2.29", namespace="dev")),
               version("2.29"),
               ok(LIST_APP, listing("2.29"), err=DEPRECATED_OUTPUT),
               ok(INTERCEPT_BASE + ["--namespace", "app"] + TAIL, detailed(), err=DEPRECATED_OUTPUT),
               ok(LIST_APP, listing("2.29", info()), err=DEPRECATED_OUTPUT))
    assert (done.result["action"], done.result["connection"]) == ("created", "none")


def test_session_in_other_namespace_on_2_29_unchanged_costs_version_too(run):
    done = run(PRESENT,
               ok(STATUS, connected("2.29", namespace="dev", intercepts=["fresh-app"])),
               version("2.29"),
               ok(LIST_APP, listing("2.29", info()), err=DEPRECATED_OUTPUT))
    assert (done.result["changed"], done.result["action"]) == (False, "none")


# --- argv per client version ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("v,extra", [
    ("2.20", []),
    ("2.24", []),
    ("2.25", []),
    ("2.29", ["--namespace", "app"]),
    ("2.30", ["--namespace", "app"]),
])
def test_create_argv_per_version(run, binary, v, extra):
    err = output_err(v)
    done = run(PRESENT,
               ok(STATUS, connected(v)),
               ok(LIST_APP, listing(v), err=err),
               version(v),
               ok(INTERCEPT_BASE + extra + TAIL, detailed(), err=err),
               ok(LIST_APP, listing(v, info(v)), err=err))
    assert done.result["command"] == [binary] + INTERCEPT_BASE + extra + TAIL
    assert done.result["intercept"]["disposition"] == "ACTIVE"


@pytest.mark.parametrize("v,leave", [
    ("2.20", ["leave", "fresh-app"]),
    ("2.24", ["leave", "fresh-app"]),
    ("2.25", ["leave", "fresh-app"]),
    ("2.29", ["leave", "fresh-app", "--namespace", "app"]),
    ("2.30", ["detach", "fresh-app", "--namespace", "app"]),
])
def test_absent_argv_per_version(run, binary, v, leave):
    done = run({"state": "absent"},
               ok(STATUS, connected(v, intercepts=["fresh-app"])),
               ok(LIST_APP, listing(v, info(v)), err=output_err(v)),
               version(v),
               ok(leave),
               ok(LIST_APP, listing(v), err=output_err(v)))
    result = done.result
    # The intercept that was removed, so a leave says what it left.
    assert (result["changed"], result["action"], result["intercept"]["name"]) == (True, "removed", "fresh-app")
    assert result["command"] == [binary] + leave


def test_2_20_waiting_intercept_becomes_active(run, clock):
    done = run(PRESENT,
               ok(STATUS, connected("2.20")),
               ok(LIST_APP, listing("2.20")),
               version("2.20"),
               ok(INTERCEPT_BASE + TAIL, detailed()),
               ok(LIST_APP, listing("2.20", info("2.20", disposition=2))),
               ok(LIST_APP, listing("2.20", info("2.20", disposition=1))))
    assert done.result["intercept"]["disposition"] == "ACTIVE" and clock.sleeps == 1


def test_never_active_is_removed_again_and_fails(run, clock, binary):
    with pytest.raises(Failed) as failed:
        run({"port": 8000, "wait_timeout": 2},
            ok(STATUS, connected()),
            ok(LIST_APP, listing()),
            version("2.24"),
            ok(INTERCEPT_BASE + TAIL, detailed()),
            ok(LIST_APP, listing("2.24", info(disposition=2))),
            ok(LIST_APP, listing("2.24", info(disposition=2))),
            ok(LIST_APP, listing("2.24", info(disposition=2))),
            ok(["leave", "fresh-app"]))
    assert failed.value.result["msg"].startswith("intercept fresh-app did not become ACTIVE within wait_timeout (2 s): "
                                                 "it is WAITING. It was removed again")
    assert SECRET not in failed.value.output


def test_agent_error_fails_without_waiting(run, clock):
    bad = info(disposition=7)
    bad["message"] = "agent crashed"
    with pytest.raises(Failed) as failed:
        run(PRESENT,
            ok(STATUS, connected()),
            ok(LIST_APP, listing()),
            version("2.24"),
            ok(INTERCEPT_BASE + TAIL, detailed()),
            ok(LIST_APP, listing("2.24", bad)),
            ok(["leave", "fresh-app"]))
    assert "it is AGENT_ERROR: agent crashed" in failed.value.result["msg"] and clock.sleeps == 0


# --- absent ----------------------------------------------------------------------------------------------------------

def test_absent_when_not_connected_does_not_connect(run):
    done = run({"state": "absent"}, ok(STATUS, not_running()))
    assert (done.result["changed"], done.result["action"], done.result["connection"]) == (False, "none", "none")
    assert len(done.result["commands"]) == 1


def test_absent_when_not_there(run):
    done = run({"state": "absent"}, ok(STATUS, connected()), ok(LIST_APP, listing()))
    assert (done.result["changed"], done.result["action"], done.result["command"]) == (False, "none", None)


def test_absent_not_found_answer_counts_as_absent(run):
    done = run({"state": "absent"},
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())),
               version("2.24"),
               fail(["leave", "fresh-app"], err='telepresence leave: error: Found no replace, intercept, or ingest '
                                                'named "fresh-app"\n'))
    assert (done.result["changed"], done.result["action"]) == (False, "none")


def test_absent_other_leave_failure_fails(run):
    with pytest.raises(Failed) as failed:
        run({"state": "absent"},
            ok(STATUS, connected(intercepts=["fresh-app"])),
            ok(LIST_APP, listing("2.24", info())),
            version("2.24"),
            fail(["leave", "fresh-app"], err="telepresence leave: error: connection refused\n"))
    assert failed.value.result["msg"] == "telepresence leave failed: connection refused"
    assert failed.value.result["action"] == "removed"


def test_absent_needs_no_preflight(run):
    FakeKube.broken = True
    done = run({"state": "absent", "workload": "gone-already"}, ok(STATUS, not_running()))
    assert done.result["action"] == "none"


@pytest.mark.parametrize("v, leave", [
    ("2.24", ["leave", "fresh-app"]),
    ("2.30", ["detach", "fresh-app", "--namespace", "app"]),
])
def test_absent_fails_when_leave_exits_0_but_the_intercept_stays(run, binary, v, leave):
    garbled = '{"cmd":"%s","stdout":[{"name":"fresh-app","namespace":"ap' % leave[0]
    with pytest.raises(Failed) as failed:
        run({"state": "absent"},
            ok(STATUS, connected(v, intercepts=["fresh-app"])),
            ok(LIST_APP, listing(v, info(v)), err=output_err(v)),
            version(v),
            ok(leave, garbled),
            ok(LIST_APP, listing(v, info(v)), err=output_err(v)))
    result = failed.value.result
    assert result["msg"] == ("telepresence %s exited 0 with unexpected output %r, but intercept fresh-app is still "
                             "there (telepresence list shows it ACTIVE in namespace app), so it was not removed; run "
                             "`telepresence %s fresh-app` by hand and check what it says, or the daemon logs "
                             "(telepresence gather-logs)" % (leave[0], garbled, leave[0]))
    assert result["command"] == [binary] + leave and result["rc"] == 0
    assert result["action"] == "removed" and SECRET not in failed.value.output


def test_absent_verifies_by_id_so_another_clients_intercept_does_not_count(run):
    done = run({"state": "absent"},
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())),
               version("2.24"),
               ok(["leave", "fresh-app"]),
               ok(LIST_APP, listing("2.24", dict(info(client="x@y"), id="sess-2:fresh-app"))))
    assert (done.result["changed"], done.result["action"]) == (True, "removed")


# --- two runs at once: "already exists" from a concurrent create ----------------------------------------------------

def test_already_exists_with_same_mapping_of_this_client_is_unchanged(run, binary):
    done = run(PRESENT,
               ok(STATUS, connected()),
               ok(LIST_APP, listing()),
               version("2.24"),
               fail(INTERCEPT_BASE + TAIL, out=json.dumps(ALREADY_EXISTS)),
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())), diff=True)
    result = done.result
    assert (result["changed"], result["action"], result["connection"], result["command"]) == \
        (False, "none", "none", None)
    assert result["intercept"]["id"] == "sess-1:fresh-app" and result["intercept"]["disposition"] == "ACTIVE"
    assert result["diff"]["before"] == result["diff"]["after"]
    assert SECRET not in done.output


def test_already_exists_after_connecting_waits_for_the_twin_to_become_active(run, clock):
    done = run(PRESENT,
               ok(STATUS, not_running()),
               version("2.24"),
               ok(STATUS, not_running()),
               ok(CONNECT_APP),
               ok(STATUS, connected()),
               fail(INTERCEPT_BASE + TAIL, out=json.dumps(ALREADY_EXISTS)),
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info(disposition=2))),
               ok(LIST_APP, listing("2.24", info(disposition=2))),
               ok(LIST_APP, listing("2.24", info())))
    result = done.result
    assert (result["changed"], result["action"], result["connection"]) == (True, "none", "connected")
    assert result["intercept"]["disposition"] == "ACTIVE" and clock.sleeps == 1


def test_already_exists_twin_never_active_fails_without_removing_it(run, clock):
    with pytest.raises(Failed) as failed:
        run({"port": 8000, "wait_timeout": 1},
            ok(STATUS, connected()),
            ok(LIST_APP, listing()),
            version("2.24"),
            fail(INTERCEPT_BASE + TAIL, out=json.dumps(ALREADY_EXISTS)),
            ok(STATUS, connected(intercepts=["fresh-app"])),
            ok(LIST_APP, listing("2.24", info(disposition=2))),
            ok(LIST_APP, listing("2.24", info(disposition=2))),
            ok(LIST_APP, listing("2.24", info(disposition=2))))  # no leave: the other run owns the attempt
    assert failed.value.result["msg"].startswith("intercept fresh-app with this mapping was being created by another "
                                                 "run of this client at the same time and did not become ACTIVE "
                                                 "within wait_timeout (1 s): it is WAITING.")


class InterceptWithEnvFile(list):
    """Matches the intercept argv whatever the private temporary path of --env-file is."""

    def __eq__(self, other):
        return other[0] == "intercept" and "--env-file" in other


@pytest.mark.parametrize("twin, with_env_file", [
    (info(local_port=8001), False),
    (info(port_id="grpc"), False),
    (info(client="x@y"), False),  # this client has one of that name, but the listed one is another client's
    (info(), True),  # same mapping, but env_file was not written by this task
])
def test_already_exists_with_another_mapping_keeps_the_explanation(run, twin, with_env_file, tmp_path):
    folder = tmp_path / "env"
    folder.mkdir()
    args = dict(PRESENT, env_file=str(folder / "app.env")) if with_env_file else PRESENT
    attempt = InterceptWithEnvFile() if with_env_file else INTERCEPT_BASE + TAIL
    with pytest.raises(Failed) as failed:
        run(args,
            ok(STATUS, connected()),
            ok(LIST_APP, listing()),
            version("2.24"),
            (attempt, 1, json.dumps(ALREADY_EXISTS), "", None),
            ok(STATUS, connected(intercepts=["fresh-app"])),
            ok(LIST_APP, listing("2.24", twin)))
    assert "already exists; an intercept named fresh-app exists that this client does not own" in \
        failed.value.result["msg"]
    assert failed.value.result["action"] == "created"
    assert list(folder.iterdir()) == []  # neither an env file nor a temporary folder stays


# --- output that is not JSON -----------------------------------------------------------------------------------------

NOT_JSON_END = "with output that is not JSON (withheld: it may hold the workload's environment)"


def test_list_exit_0_with_output_that_is_not_json(run):
    with pytest.raises(Failed) as failed:
        run(PRESENT,
            ok(STATUS, connected()),
            ok(LIST_APP, '{"cmd":"list","stdout":[{"intercept_info":[{"environment":{"A":"%s"' % SECRET))
    result = failed.value.result
    assert result["msg"] == "telepresence list exited 0 " + NOT_JSON_END
    assert result["stdout"].startswith("(withheld") and SECRET not in failed.value.output


def test_list_failure_explained_on_stderr_keeps_that_reason(run):
    with pytest.raises(Failed) as failed:
        run(PRESENT,
            ok(STATUS, connected()),
            fail(LIST_APP, out='{"cmd":"list","stdout":[{"environment":{"A":"%s"' % SECRET,
                 err="telepresence list: error: connection refused\n"))
    assert failed.value.result["msg"] == "telepresence list failed: connection refused"
    assert SECRET not in failed.value.output


def test_intercept_exit_0_with_output_that_is_not_json(run):
    with pytest.raises(Failed) as failed:
        run(PRESENT,
            ok(STATUS, connected()),
            ok(LIST_APP, listing()),
            version("2.24"),
            ok(INTERCEPT_BASE + TAIL, json.dumps(detailed())[:-5]))
    result = failed.value.result
    assert result["msg"] == "telepresence intercept exited 0 " + NOT_JSON_END
    assert result["stdout"].startswith("(withheld") and SECRET not in failed.value.output


# --- check and diff mode ---------------------------------------------------------------------------------------------

def test_check_mode_not_connected_reports_create_without_connecting(run):
    done = run(PRESENT, ok(STATUS, not_running()), check=True, diff=True)
    result = done.result
    assert (result["changed"], result["action"], result["connection"], result["command"]) == \
        (True, "created", "connected", None)
    assert result["diff"] == {"before": {"present": False, "workload": None, "service_port": None, "local_port": None},
                              "after": {"present": True, "workload": "fresh-app", "service_port": "http",
                                        "local_port": 8000}}
    # Without diff mode too: what exists now (nothing) and, apart, the mapping it would make.
    plain = run(PRESENT, ok(STATUS, not_running()), check=True).result
    assert plain["intercept"] is None
    assert plain["planned"] == {"present": True, "workload": "fresh-app", "service_port": "http", "local_port": 8000}
    assert plain["target"]["port_number"] == 80


def test_check_mode_recreate_runs_read_only_calls(run):
    done = run({"port": 8001},
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())), check=True, diff=True)
    result = done.result
    assert (result["changed"], result["action"]) == (True, "recreated")
    assert result["diff"]["before"] == {"present": True, "workload": "fresh-app", "service_port": "http",
                                        "local_port": 8000}
    assert result["diff"]["after"]["local_port"] == 8001


def test_check_mode_unchanged(run):
    done = run(PRESENT, ok(STATUS, connected(intercepts=["fresh-app"])), ok(LIST_APP, listing("2.24", info())),
               check=True)
    assert (done.result["changed"], done.result["action"]) == (False, "none")
    assert "planned" not in done.result


def test_check_mode_absent_reports_removed(run):
    done = run({"state": "absent"}, ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())), check=True, diff=True)
    result = done.result
    assert (result["changed"], result["action"], result["command"]) == (True, "removed", None)
    assert result["diff"]["before"]["present"] is True and result["diff"]["after"]["present"] is False
    assert result["intercept"]["name"] == "fresh-app" and result["planned"]["present"] is False
    assert SECRET not in done.output


def test_diff_absent_to_absent(run):
    done = run({"state": "absent"}, ok(STATUS, not_running()), diff=True)
    assert done.result["diff"]["before"] == done.result["diff"]["after"]


# --- header and preview gating ---------------------------------------------------------------------------------------

HEADERS = {"port": 8000, "http_headers": {"x-dev-user": "alice"}}


def test_headers_ignored_with_warning_on_2_24(run, binary):
    done = run(HEADERS,
               ok(STATUS, connected()),
               ok(LIST_APP, listing()),
               version("2.24"),
               ok(INTERCEPT_BASE + TAIL, detailed()),
               ok(LIST_APP, listing("2.24", info())))
    assert "--http-header" not in done.result["command"]
    assert done.warnings == ["http_headers ignored: client 2.24.0 has no intercept --http-header (2.25 and newer have "
                             "it) (set strict: true to fail instead)"]


def test_headers_refused_when_strict_on_2_24_before_acting(run):
    with pytest.raises(Failed) as failed:
        run(dict(HEADERS, strict=True),
            ok(STATUS, connected()),
            ok(LIST_APP, listing()),
            version("2.24"))
    assert failed.value.result["msg"].startswith("http_headers cannot be honoured: client 2.24.0 has no intercept "
                                                 "--http-header")


@pytest.mark.parametrize("v,extra", [("2.25", []), ("2.30", ["--namespace", "app"])])
def test_headers_passed_on_2_25_and_later(run, binary, v, extra):
    done = run({"port": 8000, "http_headers": ["x-dev-user=alice", "x-b=1"], "strict": True},
               ok(STATUS, connected(v)),
               ok(LIST_APP, listing(v), err=output_err(v)),
               version(v),
               ok(INTERCEPT_BASE + extra + ["--http-header", "x-dev-user=alice", "--http-header", "x-b=1"] + TAIL,
                  detailed(), err=output_err(v)),
               ok(LIST_APP, listing(v, info(v)), err=output_err(v)))
    assert not done.warnings


def test_headers_gated_also_when_unchanged(run):
    done = run(HEADERS,
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())),
               version("2.24"))
    assert done.result["action"] == "none" and len(done.warnings) == 1


def test_preview_url_warned_without_any_version_call(run):
    done = run({"port": 8000, "preview_url": True},
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())))
    assert done.warnings == ["preview_url ignored: no open-source Telepresence client has intercept --preview-url "
                             "(set strict: true to fail instead)"]


def test_preview_url_refused_when_strict_before_any_call(run):
    with pytest.raises(Failed) as failed:
        run({"port": 8000, "preview_url": True, "strict": True})
    assert failed.value.result["msg"].startswith("preview_url cannot be honoured")
    assert failed.value.result["commands"] == []


# --- secrets ---------------------------------------------------------------------------------------------------------

def test_secret_never_in_failure_output_even_when_stdout_carries_it(run):
    broken = json.dumps(detailed())[:-5]  # truncated JSON holding the environment
    with pytest.raises(Failed) as failed:
        run(PRESENT,
            ok(STATUS, connected()),
            ok(LIST_APP, listing()),
            version("2.24"),
            (INTERCEPT_BASE + TAIL, 1, broken, "", None))
    assert SECRET not in failed.value.output
    assert failed.value.result["stdout"].startswith("(withheld")


def test_secret_masked_even_in_the_error_message(run):
    envelope = {"cmd": "intercept", "err": "agent said %s is wrong" % SECRET}
    with pytest.raises(Failed) as failed:
        run(PRESENT,
            ok(STATUS, connected()),
            ok(LIST_APP, listing("2.24", info(client="x@y"))),  # another client's intercept: its env is registered
            version("2.24"),
            fail(INTERCEPT_BASE + TAIL, out=json.dumps(envelope)))
    assert SECRET not in failed.value.output and "********" in failed.value.result["msg"]


def test_list_failure_withholds_stdout(run):
    with pytest.raises(Failed) as failed:
        run(PRESENT,
            ok(STATUS, connected()),
            fail(LIST_APP, out='{"cmd":"list","stdout":[{"intercept_info":[{"environment":{"A":"%s"' % SECRET))
    assert SECRET not in failed.value.output
    assert failed.value.result["msg"] == ("telepresence list exited 1 with output that is not JSON (withheld: it may "
                                          "hold the workload's environment)")
    assert failed.value.result["stdout"].startswith("(withheld")


# --- env files -------------------------------------------------------------------------------------------------------

def env_writer(content):
    """A side effect that writes the env files the way the CLI does, into the paths it was given."""
    def effect(argv):
        for flag, text in (("--env-file", content), ("--env-json", json.dumps({"API_TOKEN": SECRET}))):
            if flag in argv:
                path = argv[argv.index(flag) + 1]
                assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
                with open(path, "w") as handle:
                    handle.write(text)
    return effect


def test_env_files_are_0600_whole_and_temp_dirs_removed(run, tmp_path, binary):
    env_file, env_json = tmp_path / "out" / ".env", tmp_path / "out" / "env.json"
    env_file.parent.mkdir()
    seen = {}

    def effect(argv):
        seen["argv"] = argv
        env_writer("API_TOKEN=%s\nTELEPRESENCE_MOUNTS=\n" % SECRET)(argv)

    steps = [ok(STATUS, connected()), ok(LIST_APP, listing()), version("2.24")]
    script_intercept = ("placeholder", 0, json.dumps(detailed()), "", effect)
    args = {"port": 8000, "env_file": str(env_file), "env_json": str(env_json)}

    class AnyIntercept(list):
        def __eq__(self, other):
            return other[:len(INTERCEPT_BASE)] == INTERCEPT_BASE and other[-3:] == TAIL

    steps.append((AnyIntercept(), ) + script_intercept[1:])
    steps.append(ok(LIST_APP, listing("2.24", info())))
    done = run(args, *steps)
    argv = seen["argv"]
    temp_file = argv[argv.index("--env-file") + 1]
    temp_json = argv[argv.index("--env-json") + 1]
    assert os.path.dirname(temp_file) != str(env_file.parent) and os.path.basename(temp_file) == ".env"
    assert os.path.basename(temp_json) == "env.json"
    assert sorted(os.listdir(env_file.parent)) == [".env", "env.json"]
    for path in (env_file, env_json):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert SECRET in path.read_text()
    assert SECRET not in done.output
    assert done.result["changed"] is True


def test_failed_intercept_leaves_no_env_file(run, tmp_path):
    env_file = tmp_path / ".env"

    class AnyIntercept(list):
        def __eq__(self, other):
            return other[0] == "intercept"

    with pytest.raises(Failed) as failed:
        run({"port": 8000, "env_file": str(env_file)},
            ok(STATUS, connected()),
            ok(LIST_APP, listing()),
            version("2.24"),
            (AnyIntercept(), 1, json.dumps({"cmd": "intercept", "err": "connector.CreateIntercept: boom"}), "",
             env_writer("API_TOKEN=%s\n" % SECRET)))
    assert failed.value.result["msg"] == "connector.CreateIntercept: boom"
    assert os.listdir(tmp_path) == ["bin"]
    assert SECRET not in failed.value.output


def test_missing_env_file_makes_an_active_intercept_be_recreated(run, tmp_path):
    env_file = tmp_path / ".env"

    class AnyIntercept(list):
        def __eq__(self, other):
            return other[0] == "intercept" and "--env-file" in other

    done = run({"port": 8000, "env_file": str(env_file)},
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())),
               version("2.24"),
               ok(["leave", "fresh-app"]),
               (AnyIntercept(), 0, json.dumps(detailed()), "", env_writer("API_TOKEN=%s\n" % SECRET)),
               ok(LIST_APP, listing("2.24", info())))
    assert done.result["reasons"] == ["env_file %s does not exist" % env_file]
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    again = run({"port": 8000, "env_file": str(env_file)},
                ok(STATUS, connected(intercepts=["fresh-app"])),
                ok(LIST_APP, listing("2.24", info())))
    assert again.result["action"] == "none"


# --- pre-flight and verify_local through the module -------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    ({"workload": "missing-thing"}, "workload missing-thing not found in namespace app (Deployments there: fresh-app, "
                                    "multi-port, no-service, web-only)"),
    ({"workload": "no-service"}, "no Service in namespace app selects workload no-service (Services there: fresh-app, "
                                 "multi-port, web-only)"),
    ({"workload": "web-only"}, "Service app/web-only has ports web(80), no port named http"),
    ({"namespace": "nope"}, "namespace nope not found (Namespaces there: app, default)"),
])
def test_preflight_failures_before_any_cli_call(run, args, message):
    with pytest.raises(Failed) as failed:
        run(dict(PRESENT, **args))
    assert message in failed.value.result["msg"]
    assert failed.value.result["commands"] == []


def test_preflight_only_calls_no_client_and_returns_the_target(run, monkeypatch, binary):
    # No scripted steps: any CLI call would fail the test. The binary need not exist either.
    monkeypatch.setattr(tp_intercept, "local_port_listening", lambda port: False)
    done = run({"port": 9090, "service": "multi-port", "workload": "multi-port", "service_port": "grpc",
                "preflight_only": True, "binary_path": binary + "-missing"})
    assert (done.result["changed"], done.result["commands"], done.result["action"]) == (False, [], "none")
    assert done.result["target"] == {"workload_kind": "Deployment", "service": "multi-port", "port_name": "grpc",
                                     "port_number": 9090, "target_port": 9090}
    assert done.warnings == ["nothing is listening on 127.0.0.1:9090 (verify_local): start the local server, or the "
                             "intercepted traffic will fail"]


TARGET = {"workload_kind": "Deployment", "service": "fresh-app", "port_name": "http", "port_number": 80,
          "target_port": 8080}


def test_target_of_an_earlier_preflight_is_used_without_reading_the_cluster(run):
    done = run(dict(PRESENT, target=TARGET),
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())))
    assert FakeKube.calls == []
    assert (done.result["action"], done.result["target"]) == ("none", TARGET)


def test_target_is_ignored_by_preflight_only_which_reads_the_cluster(run):
    done = run(dict(PRESENT, preflight_only=True, target=dict(TARGET, service="stale")))
    assert done.result["target"]["service"] == "fresh-app"
    assert ("deployment", "app") in FakeKube.calls


@pytest.mark.parametrize("mode,target,missing", [
    ("intercept", {"workload_kind": "Deployment", "service": "fresh-app"}, "port_number"),
    ("intercept", dict(TARGET, port_number=True), "port_number"),
    ("wiretap", dict(TARGET, service=None), "service"),
    ("replace", {"port_number": 80}, "workload_kind"),
    ("ingest", {"service": None}, "workload_kind"),
])
def test_target_without_what_the_mode_uses_is_refused_before_any_call(run, mode, target, missing):
    name = {"replace": {"name": "fresh-app"}, "ingest": {"name": "fresh-app"}}.get(mode, {})
    with pytest.raises(Failed) as failed:
        run(dict(PRESENT, mode=mode, target=target, **name))
    assert failed.value.result["msg"].startswith("target lacks %s for mode %s: " % (missing, mode))
    assert FakeKube.calls == []  # and no CLI call: none is scripted


def test_preflight_only_names_a_missing_service_before_the_workload(run):
    with pytest.raises(Failed) as failed:
        run(dict(PRESENT, service="fresh-ap", preflight_only=True))
    assert failed.value.result["msg"].startswith("Service app/fresh-ap not found (Services there: ")
    assert failed.value.result["commands"] == []


def test_preflight_only_refuses_state_absent(run):
    with pytest.raises(Failed) as failed:
        run({"state": "absent", "preflight_only": True})
    assert "preflight_only" in failed.value.result["msg"] and "state=absent" in failed.value.result["msg"]


def test_unreachable_cluster_fails_readably(run):
    FakeKube.broken = True
    with pytest.raises(Failed) as failed:
        run(PRESENT)
    assert failed.value.result["msg"].startswith("cannot reach the Kubernetes API")


def test_verify_local_fail_stops_before_telepresence(run, monkeypatch):
    monkeypatch.setattr(tp_intercept, "local_port_listening", lambda port: False)
    with pytest.raises(Failed) as failed:
        run({"port": 8000, "verify_local": "fail"})
    assert failed.value.result["msg"].startswith("nothing is listening on 127.0.0.1:8000 (verify_local)")
    assert failed.value.result["commands"] == []


def test_verify_local_warn_and_off(run, monkeypatch):
    monkeypatch.setattr(tp_intercept, "local_port_listening", lambda port: False)
    done = run(PRESENT, ok(STATUS, connected(intercepts=["fresh-app"])), ok(LIST_APP, listing("2.24", info())))
    assert done.warnings and done.warnings[0].startswith("nothing is listening on 127.0.0.1:8000")
    done = run(dict(PRESENT, verify_local="off"), ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST_APP, listing("2.24", info())))
    assert not done.warnings


def test_local_port_listening_really_probes():
    import socket
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert tp_intercept.local_port_listening.__module__.endswith("intercept")
        from ansible_collections.devloop.telepresence.plugins.module_utils.intercept import local_port_listening
        assert local_port_listening(port) is True
    assert local_port_listening(port) is False


# --- bad input ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,option", [
    ({"port": 0}, "port must be a TCP port between 1 and 65535, got 0"),
    ({"port": 70000}, "port must be a TCP port between 1 and 65535, got 70000"),
    ({"port": "abc"}, "port"),
    ({"port": 8000, "name": "Fresh_App"}, "name 'Fresh_App'"),
    ({"port": 8000, "name": "a" * 64}, "name '"),
    ({"port": 8000, "workload": "-bad"}, "workload '-bad'"),
    ({"port": 8000, "service": "Svc"}, "service 'Svc'"),
    ({"port": 8000, "namespace": "App"}, "namespace 'App'"),
    ({"port": 8000, "wait_timeout": -5}, "wait_timeout must be a positive number of seconds, got -5"),
    ({"port": 8000, "wait_timeout": 0}, "wait_timeout must be a positive number of seconds, got 0"),
    ({"port": 8000, "timeout": 0}, "timeout must be a positive number of seconds"),
    ({}, "port is required with state=present"),
    ({"port": 8000, "service_port": "HTTP!"}, "service_port 'HTTP!' is neither a port number"),
    ({"port": 8000, "service_port": "0"}, "service_port '0' is not a port number between 1 and 65535"),
    ({"port": 8000, "service_port": "70000"}, "service_port '70000' is not a port number"),
    ({"port": 8000, "env_file": "relative/.env"}, "env_file must be an absolute path, got relative/.env"),
    ({"port": 8000, "env_json": "/"}, "env_json / is a directory"),
    ({"port": 8000, "env_file": "/nonexistent-dir/.env"}, "env_file the directory /nonexistent-dir does not exist"),
    ({"port": 8000, "env_file": "/tmp/x.env", "env_json": "/tmp/x.env"}, "env_file and env_json name the same file"),
    ({"port": 8000, "http_headers": ["no-equals-sign"]}, "http_headers entry 'no-equals-sign' is not name=value"),
    ({"port": 8000, "http_headers": 5}, "http_headers must be a dict"),
    ({"port": 8000, "verify_local": "maybe"}, "verify_local"),
    ({"port": 8000, "state": "gone"}, "state"),
    ({"port": 8000, "manager_namespace": "Amb"}, "manager_namespace 'Amb'"),
    # "$" matches before a trailing newline: a "|" block scalar must not pass as a name (issue 13).
    ({"port": 8000, "namespace": "app\n"}, "namespace 'app\\n'"),
    ({"port": 8000, "name": "fresh-app\n"}, "name 'fresh-app\\n'"),
    ({"port": 8000, "workload": "fresh-app\n"}, "workload 'fresh-app\\n'"),
    ({"port": 8000, "manager_namespace": "ambassador\n"}, "manager_namespace 'ambassador\\n'"),
    ({"port": 8000, "service_port": "http\n"}, "service_port 'http\\n' is neither"),
    ({"port": 8000, "service_port": "\u0668\u0660"}, "is not a port number between 1 and 65535"),
    ({"port": 8000, "http_headers": ["x-dev=me\nx-evil=1"]}, "http_headers entry"),
    # Ansible's type int keeps a YAML boolean; port: yes once ran --port True:8080.
    ({"port": True}, "port must be a TCP port between 1 and 65535, got the boolean True"),
    ({"port": 8000, "wait_timeout": True}, "wait_timeout must be a positive number of seconds, got the boolean"),
    ({"port": 8000, "timeout": False}, "timeout must be a positive number of seconds, got the boolean False"),
])
def test_bad_input_fails_naming_the_option_without_any_call(run, args, option):
    with pytest.raises(Failed) as failed:
        run(args)
    assert option in failed.value.result["msg"]
    assert "Traceback" not in failed.value.output
    assert FakeKube.calls == []


def test_absent_needs_no_port(run):
    done = run({"state": "absent"}, ok(STATUS, not_running()))
    assert done.result["changed"] is False


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
def test_status_after_quit_absent_reads_no_session_and_does_not_connect(run, shape):
    done = run({"state": "absent"}, after_quit(shape))
    assert (done.result["changed"], done.result["action"], done.result["connection"]) == (False, "none", "none")
    assert len(done.result["commands"]) == 1


@pytest.mark.parametrize("shape", AFTER_QUIT_SHAPES)
def test_status_after_quit_present_connects_first(run, binary, shape):
    done = run(PRESENT,
               after_quit(shape),
               version("2.24"),
               after_quit(shape),
               ok(CONNECT_APP),
               ok(STATUS, connected()),
               ok(INTERCEPT_BASE + TAIL, detailed()),
               ok(LIST_APP, listing("2.24", info())))
    assert (done.result["changed"], done.result["action"], done.result["connection"]) == (True, "created", "connected")


# --- censoring (issue 13: one policy with tp_info, in censor.py) ---------------------------------------------------

COMMON_VALUES = {"API_TOKEN": SECRET, "MOUNT": "false", "USER": "root", "STATE": "ACTIVE", "HOME": "/root",
                 "TELEPRESENCE_CONTAINER": "fresh-app"}


def test_common_env_values_do_not_garble_argv_client_or_disposition(run, binary):
    done = run(PRESENT,
               ok(STATUS, not_running()),
               version("2.24"),
               ok(STATUS, not_running()),
               ok(CONNECT_APP),
               ok(STATUS, connected()),
               ok(INTERCEPT_BASE + TAIL, detailed(environment=COMMON_VALUES)),
               ok(LIST_APP, listing("2.24", info(environment=COMMON_VALUES, client="root@host"))))
    result = done.result
    assert result["command"] == [binary] + INTERCEPT_BASE + TAIL and "--mount=false" in result["command"]
    assert result["intercept"]["disposition"] == "ACTIVE" and result["intercept"]["client"] == "root@host"
    assert "********" not in done.output and "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" not in done.output
    assert SECRET not in done.output
    assert result["intercept"]["environment_names"] == sorted(COMMON_VALUES)


def test_secret_in_cli_error_text_is_masked_while_argv_stays_readable(run, binary):
    with pytest.raises(Failed) as failed:
        run(PRESENT,
            ok(STATUS, connected()),
            ok(LIST_APP, listing("2.24")),
            version("2.24"),
            fail(INTERCEPT_BASE + TAIL, err="agent said: API_TOKEN=%s is false for root\n" % SECRET,
                 out=json.dumps({"environment": COMMON_VALUES})))
    assert SECRET not in failed.value.output
    assert "--mount=false" in failed.value.result["commands"][-1]
    assert "is false for root" in failed.value.result["msg"] + failed.value.result.get("stderr", "")


# --- session: the connect of tp_connection state=connected, from the one status read (issue 16) ----------------------

SESSION = dict(PRESENT, session={"namespace": "app"})
EMPTY_LIST = ok(LIST_APP, listing("2.24"))


def created_steps(*first):
    return list(first) + [EMPTY_LIST, version("2.24"), ok(INTERCEPT_BASE + TAIL, detailed()),
                          ok(LIST_APP, listing("2.24", info()))]


def test_session_no_op_reads_the_status_once(run, binary):
    done = run(SESSION, ok(STATUS, connected(intercepts=["fresh-app"])), ok(LIST_APP, listing("2.24", info())))
    result = done.result
    assert (result["changed"], result["action"], result["connection"]) == (False, "none", "none")
    session = result["session"]
    assert (session["changed"], session["action"], session["connected"], session["command"]) == \
        (False, "none", True, None)
    assert session["commands"] == argvs(binary, STATUS)
    assert session["status"]["namespace"] == "app" and "before" not in session and "diff" not in session


def test_session_connects_from_the_status_it_read_then_intercepts(run, binary):
    done = run(SESSION, *created_steps(ok(STATUS, not_running()), ok(CONNECT_APP), ok(STATUS, connected())))
    result = done.result
    assert (result["changed"], result["action"], result["connection"]) == (True, "created", "connected")
    session = result["session"]
    assert (session["changed"], session["action"], session["connected"]) == (True, "connected", True)
    assert session["command"] == [binary] + CONNECT_APP
    assert session["commands"] == argvs(binary, STATUS, CONNECT_APP, STATUS)
    # after our own connect the daemons are the client's version, as tp_connection reports
    assert session["status"]["client_version"] == session["status"]["daemon_version"] == "2.24.0"


def test_session_in_another_namespace_reconnects(run, binary):
    done = run(SESSION, *created_steps(ok(STATUS, connected(namespace="other", intercepts=["old"])), ok(QUIT),
                                       ok(CONNECT_APP), ok(STATUS, connected())))
    assert (done.result["connection"], done.result["session"]["action"]) == ("reconnected", "reconnected")


def test_session_without_reconnect_fails_naming_the_option(run):
    args = dict(PRESENT, session={"namespace": "app", "reconnect": False})
    with pytest.raises(Failed) as failed:
        run(args, ok(STATUS, connected(namespace="other")))
    assert "namespace is other, wanted app" in failed.value.result["msg"]
    assert "set session.reconnect: true" in failed.value.result["msg"]


def test_session_proxies_go_on_the_connect(run, binary):
    args = dict(PRESENT, session={"namespace": "app", "also_proxy": ["10.1.0.0/16"], "mapped_namespaces": ["app"]})
    connect = CONNECT_APP[:-2] + ["--also-proxy", "10.1.0.0/16", "--mapped-namespaces", "app", "--output", "json"]
    done = run(args, *created_steps(ok(STATUS, not_running()), ok(connect), ok(STATUS, connected())))
    assert done.result["session"]["command"] == [binary] + connect


def test_session_check_mode_plans_from_one_status(run):
    done = run(SESSION, ok(STATUS, not_running()), check=True, diff=True)
    result = done.result
    assert (result["changed"], result["action"], result["connection"]) == (True, "created", "connected")
    session = result["session"]
    assert (session["changed"], session["action"], session["connected"]) == (True, "connected", False)
    assert session["planned"] == {"connected": True, "context": None, "namespace": "app",
                                  "manager_namespace": "ambassador"}
    assert session["diff"]["before"]["connected"] is False and session["diff"]["after"] == session["planned"]


def test_session_is_in_the_result_of_an_engagement_that_fails(run, binary):
    with pytest.raises(Failed) as failed:
        run(SESSION, ok(STATUS, not_running()), ok(CONNECT_APP), ok(STATUS, connected()), EMPTY_LIST, version("2.24"),
            fail(INTERCEPT_BASE + TAIL, err="intercept refused"))
    session = failed.value.result["session"]
    assert (session["action"], session["command"]) == ("connected", [binary] + CONNECT_APP)


@pytest.mark.parametrize("settings,state,expected", [
    ({"also_proxy": ["10.0.0.0"]}, "present", "session.also_proxy item '10.0.0.0' is not a subnet in CIDR notation"),
    ({"mapped_namespaces": ["App"]}, "present", "session.mapped_namespaces item 'App'"),
    ({"namespace": "bad ns"}, "present", "session.namespace 'bad ns'"),
    ({"namespace": "app"}, "absent", "session makes sure of a session before an engagement is made; drop it with "
                                     "state=absent"),
])
def test_session_bad_input_names_the_option(run, settings, state, expected):
    with pytest.raises(Failed) as failed:
        run(dict(PRESENT, session=settings, state=state))
    assert expected in failed.value.result["msg"]


def test_session_status_is_the_one_tp_connection_reports(run):
    done = run(SESSION, ok(STATUS, connected(intercepts=["fresh-app"])), ok(LIST_APP, listing("2.24", info())))
    assert "modes" not in done.result["session"]["status"]
    assert done.result["session"]["status"]["intercepts"] == ["fresh-app"]
