# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tp_manager: the decision table, the argv per client version, waiting, diagnostics and bad input.

The CLI is mocked at the process boundary (cli.run_process) and the cluster with a fake Kube helper, so every
test asserts the exact argv list and number of CLI calls.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible.module_utils import basic
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.devloop.telepresence.plugins.module_utils import cli, connection, manager
from ansible_collections.devloop.telepresence.plugins.module_utils.capabilities import Capabilities
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import TelepresenceError
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import KubeError
from ansible_collections.devloop.telepresence.plugins.module_utils import manager_module as tp_manager
from ansible_collections.devloop.telepresence.tests.unit.plugins.module_utils.test_manager import (
    FakeKube,
    deployment,
    event,
    failing_pod,
    release_secret,
)

KUBECONFIG = "/home/dev/.kube/sandbox"
KUBE_FLAGS = ["--kubeconfig", KUBECONFIG]
INSTALL = ["helm", "install", "--manager-namespace", "ambassador"] + KUBE_FLAGS
UPGRADE = ["helm", "upgrade", "--manager-namespace", "ambassador"]
UNINSTALL = ["helm", "uninstall", "--manager-namespace", "ambassador"] + KUBE_FLAGS
STATUS = ["status", "--output", "json"]
AGENTS_CM = {"metadata": {"name": "telepresence-agents", "namespace": "app"}, "data": {"fresh-app": ""}}


def agent_pod(workload, namespace="app"):
    """A pod running a traffic agent: what the module looks for (facts sheet section 9, every version)."""
    return {"metadata": {"name": workload + "-0", "namespace": namespace,
                         "ownerReferences": [{"kind": "StatefulSet", "name": workload}]},
            "spec": {"containers": [{"name": workload}, {"name": "traffic-agent"}]}}


AGENT_PODS = [agent_pod("fresh-app")]


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


class ModuleFail(ModuleExit):
    pass


def status_json(connected=False, manager_namespace="ambassador", namespace="app"):
    if not connected:
        return {"user_daemon": {"running": True, "status": "Not connected"}, "root_daemon": {"running": True},
                "traffic_manager": {"name": "", "version": "", "traffic_agent": ""}}
    return {"user_daemon": {"running": True, "status": "Connected", "namespace": namespace,
                            "manager_namespace": manager_namespace, "kubernetes_context": "sandbox"},
            "root_daemon": {"running": True}, "traffic_manager": {"name": "OSS Traffic Manager", "version": "v2.24.0"}}


def installed(kube, version="2.24.0", values=None, revision=1, status="deployed", ready=True):
    """A manager as `telepresence helm install` leaves it: Deployment + release secret with the injected values."""
    config = {"image": {"registry": "ghcr.io/telepresenceio", "tag": version}}
    config.update(values or {})
    kube.workloads["deployment"] = deployment(version, ready=ready)
    kube.secrets.append(release_secret(revision, status, version, config))
    return kube


class Harness:
    """Stands in for the telepresence binary and the cluster; records every argv (without the binary)."""

    def __init__(self, monkeypatch, tmp_path):
        self.binary = tmp_path / "telepresence"
        self.binary.write_text("#!/bin/sh\nexit 99\n")
        self.binary.chmod(self.binary.stat().st_mode | stat.S_IXUSR)
        self.kube = FakeKube()
        self.client = "2.24.0"
        self.status = status_json()
        self.calls, self.timeouts, self.warnings, self.values_files = [], [], [], []
        self.replies = {}
        for name in ("K8S_AUTH_KUBECONFIG", "KUBECONFIG", "K8S_AUTH_CONTEXT", "TELEPRESENCE_MANAGER_NAMESPACE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(cli, "run_process", self.run_process)
        monkeypatch.setattr(connection, "check_sudo", lambda runner: None)
        monkeypatch.setattr(tp_manager, "Kube", self)
        monkeypatch.setattr(manager, "REWATCH_PAUSE", 0.05)
        monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit)
        monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail)
        monkeypatch.setattr(basic.AnsibleModule, "warn", lambda _module, text: self.warnings.append(text))

    def from_params(self, params):
        return self.kube

    def run(self, check=False, diff=False, **params):
        args = dict(binary_path=str(self.binary), kubeconfig=KUBECONFIG)
        args.update(params)
        args.update(_ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(args):
            with pytest.raises(ModuleExit) as info:
                tp_manager.main()
        return info.value

    def ok(self, **params):
        outcome = self.run(**params)
        assert not isinstance(outcome, ModuleFail), outcome.result.get("msg")
        return outcome.result

    def fail(self, **params):
        outcome = self.run(**params)
        assert isinstance(outcome, ModuleFail), "expected a failure, got %r" % outcome.result
        return outcome.result

    # ------------------------------------------------------------------ the fake binary

    def run_process(self, argv, timeout, env=None):
        assert argv[0] == str(self.binary)
        args = argv[1:]
        self.calls.append(args)
        self.timeouts.append(timeout)
        key = " ".join(args[:2]) if args[0] == "helm" else args[0]
        if key in self.replies:
            return self.replies[key](args)
        return getattr(self, "cli_" + key.replace(" ", "_"))(args)

    def cli_version(self, _args):
        return 0, "OSS Client : v%s\nRoot Daemon: not running\nUser Daemon: not running\n" % self.client, "", False

    def cli_status(self, _args):
        return 0, json.dumps(self.status), "", False

    def cli_connect(self, args):
        self.status = status_json(True, args[args.index("--manager-namespace") + 1])
        return 0, "", "", False

    def cli_quit(self, _args):
        self.status = status_json()
        return 0, "Disconnected\n", "", False

    def cli_uninstall(self, _args):
        self.kube.config_maps, self.kube.all_pods = [], []
        return 0, "", "", False

    def cli_helm_install(self, args):
        version = flag(args, "--version") or self.client
        values = self.read_values(args)
        self.kube.secrets = []
        installed(self.kube, version, values)
        return 0, "\nTraffic Manager installed successfully\n", "", False

    def cli_helm_upgrade(self, args):
        version = flag(args, "--version") or self.client
        values = self.read_values(args)
        revision = max(manager.release_revision(s["metadata"]["name"]) for s in self.kube.secrets)
        self.kube.secrets = [release_secret(revision, "superseded")]
        installed(self.kube, version, values, revision=revision + 1)
        return 0, "\nTraffic Manager upgraded successfully\n", "", False

    def cli_helm_uninstall(self, _args):
        self.kube.workloads.pop("deployment", None)
        self.kube.secrets = []
        return 0, "\nTraffic Manager uninstalled successfully\n", "", False

    def read_values(self, args):
        path = flag(args, "-f")
        if path is None:
            return None
        mode = stat.S_IMODE(os.stat(path).st_mode)
        directory_mode = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
        with open(path) as handle:
            content = json.load(handle)
        self.values_files.append({"path": path, "mode": mode, "dir_mode": directory_mode, "content": content})
        return content


def forbidden_search(_kube):
    raise KubeError("forbidden (403): cannot list pods cluster-wide", status=403)


def flag(args, name):
    return args[args.index(name) + 1] if name in args else None


def _exit(_module, **result):
    raise ModuleExit(result)


def _fail(_module, msg=None, **result):
    result["msg"] = msg
    result["failed"] = True
    raise ModuleFail(result)


@pytest.fixture
def h(monkeypatch, tmp_path):
    return Harness(monkeypatch, tmp_path)


# ---------------------------------------------------------------------------------------------- decision table


def state_of(kube):
    return manager.read_manager_state(kube, "ambassador")


@pytest.mark.parametrize("setup, state, version, values, upgrade, expected_action, reason_part", [
    (lambda k: k, "present", "2.24.0", None, True, "install", "not installed"),
    (installed, "present", "2.24.0", None, True, "none", "wanted version and values"),
    (installed, "present", "2.25.0", None, True, "upgrade", "version 2.24.0 is installed, 2.25.0"),
    (installed, "present", "2.25.0", None, False, "none", "upgrade is false"),
    (lambda k: installed(k, values={"agent": {"logLevel": "debug"}}), "present", "2.24.0",
     {"agent": {"logLevel": "debug"}}, True, "none", "wanted version and values"),
    (lambda k: installed(k, values={"agent": {"logLevel": "debug"}}), "present", "2.24.0",
     {"agent": {"logLevel": "info"}}, True, "upgrade", "values differ at agent.logLevel"),
    (lambda k: installed(k, values={"agent": {"logLevel": "debug"}}), "present", "2.24.0", {}, True,
     "upgrade", "values differ at agent"),
    (installed, "present", "2.24.0", {}, True, "none", "wanted version and values"),
    # keys the CLI injects itself are never compared (facts sheet section 8, "injects, from")
    (installed, "present", "2.24.0", {"image": {"tag": "2.24.1"}}, True, "none", "wanted version and values"),
    (lambda k: installed(k, values={"agent": {"image": {"registry": "r.local"}}, "telepresenceAPI": {"port": 9980}}),
     "present", "2.24.0", {}, True, "none", "wanted version and values"),
    (lambda k: installed(k, values={"agent": {"image": {"registry": "r.local"}, "logLevel": "debug"}}),
     "present", "2.24.0", {"agent": {"logLevel": "debug"}}, True, "none", "wanted version and values"),
    (installed, "present", "2.24.0", {"image": {"registry": "ghcr.io/telepresenceio"}}, True, "none",
     "wanted version"),
    (lambda k: installed(k, status="pending-install"), "present", "2.24.0", None, True, "install",
     "revision 1 is pending-install; installing repairs it"),
    (lambda k: installed(k, status="failed"), "present", "2.24.0", None, True, "install", "is failed"),
    (lambda k: installed(k, status="pending-upgrade"), "present", "2.24.0", None, False, "install",
     "pending-upgrade"),
    (lambda k: installed(k) and k.workloads.clear() or k, "present", "2.24.0", None, True, "upgrade",
     "deployed but its Deployment/StatefulSet is missing"),
    (lambda k: k.workloads.update(deployment=deployment("2.24.0")) or k, "present", "2.25.0", None, True, "foreign",
     "without a Helm release traffic-manager"),
    (installed, "absent", None, None, True, "uninstall", "revision 1 (deployed) is present"),
    (lambda k: installed(k, status="failed"), "absent", None, None, True, "uninstall", "(failed)"),
    (lambda k: k, "absent", None, None, True, "none", "not installed"),
    (lambda k: k.workloads.update(deployment=deployment("2.24.0")) or k, "absent", None, None, True, "foreign",
     "installed by something else"),
])
def test_decision_table(setup, state, version, values, upgrade, expected_action, reason_part):
    kube = FakeKube()
    setup(kube)
    action, reason, _drift = tp_manager.decide(state, state_of(kube), version, values, upgrade)
    assert action == expected_action
    assert reason_part in reason


@pytest.mark.parametrize("allow, expected_action, reason_part", [
    (False, "refuse_downgrade", "refusing to downgrade the traffic manager from 2.24.0 (installed) to 2.23.0 (wanted)"),
    (True, "downgrade", "version 2.24.0 is installed, 2.23.0 is wanted"),
])
def test_decision_table_downgrade(allow, expected_action, reason_part):
    kube = installed(FakeKube())
    action, reason, drift = tp_manager.decide("present", state_of(kube), "2.23.0", None, True, allow)
    assert (action, drift) == (expected_action, ["version 2.24.0 is installed, 2.23.0 is wanted"])
    assert reason_part in reason
    if not allow:
        assert "telepresence_manager_allow_downgrade" in reason and "allow_downgrade: true" in reason


def test_downgrade_with_upgrade_false_changes_nothing():
    assert tp_manager.decide("present", state_of(installed(FakeKube())), "2.23.0", None, False)[0] == "none"


def test_undecodable_release_values_count_as_drift_only_when_values_are_managed():
    kube = FakeKube(workloads={"deployment": deployment()}, secrets=[release_secret(2, "deployed", data="garbage")])
    assert tp_manager.decide("present", state_of(kube), "2.24.0", None, True)[0] == "none"
    action, _reason, drift = tp_manager.decide("present", state_of(kube), "2.24.0", {"a": 1}, True)
    assert action == "upgrade" and "cannot be read" in drift[0]


def test_drift_lists_every_difference():
    kube = installed(FakeKube(), values={"agent": {"logLevel": "debug"}, "replicaCount": 1})
    _action, _reason, drift = tp_manager.decide("present", state_of(kube), "2.25.0",
                                                {"agent": {"logLevel": "info"}, "grpc": {"keepAlive": "10s"}},
                                                False)
    assert drift == ["version 2.24.0 is installed, 2.25.0 is wanted",
                     "values differ at agent.logLevel, grpc, replicaCount"]


# ---------------------------------------------------------------------------------------------- argv per version


@pytest.mark.parametrize("client", ["2.20.2", "2.24.0", "2.25.0", "2.29.0", "2.30.0"])
def test_install_argv_is_the_same_for_every_client_version(client):
    caps = Capabilities(client)
    assert tp_manager.helm_args("install", "ambassador", client, caps, True, KUBE_FLAGS) == INSTALL
    assert tp_manager.helm_args("install", "ambassador", client, caps, False, KUBE_FLAGS, "/t/v.json") == \
        ["helm", "install", "--manager-namespace", "ambassador", "--create-namespace=false", "-f", "/t/v.json"] + \
        KUBE_FLAGS


@pytest.mark.parametrize("client", ["2.24.0", "2.25.0", "2.29.0", "2.30.0"])
def test_another_version_uses_the_version_flag(client):
    caps = Capabilities(client)
    assert tp_manager.helm_args("upgrade", "tm", "2.31.2", caps, False, []) == \
        ["helm", "upgrade", "--manager-namespace", "tm", "--version", "2.31.2"]


def test_client_without_the_version_flag_refuses_another_version():
    with pytest.raises(TelepresenceError) as info:
        tp_manager.helm_args("install", "ambassador", "2.24.0", Capabilities("2.20.2"), True, [])
    assert "client 2.20.2 installs only its own traffic manager version" in info.value.msg
    assert "use a 2.24.0 client" in info.value.msg


def test_client_without_create_namespace_flag_gets_no_flag():
    assert tp_manager.helm_args("install", "ambassador", "2.19.0", Capabilities("2.19.0"), False, []) == \
        ["helm", "install", "--manager-namespace", "ambassador"]


def test_upgrade_never_passes_create_namespace():
    assert "--create-namespace=false" not in tp_manager.helm_args("upgrade", "a", "2.24.0", Capabilities("2.24.0"),
                                                                  False, [])


# ---------------------------------------------------------------------------------------------- present


@pytest.mark.parametrize("client", ["2.20.2", "2.24.0", "2.25.0", "2.29.0", "2.30.0"])
def test_install_learns_the_client_version_then_installs_and_waits(h, client):
    h.client = client
    result = h.ok()
    assert h.calls == [["version"], INSTALL]
    assert h.timeouts[1] == 130          # wait_timeout 120 + 10 s margin
    assert result["changed"] and result["action"] == "installed"
    assert result["command"] == [str(h.binary)] + INSTALL
    assert result["commands"] == [[str(h.binary), "version"], [str(h.binary)] + INSTALL]
    assert (result["installed"], result["version"], result["ready"], result["kind"]) == (True, client, True,
                                                                                         "Deployment")
    assert (result["replicas"], result["ready_replicas"]) == (1, 1)
    assert result["release"] == {"revision": 1, "status": "deployed", "chart_version": client}


def test_rerun_with_explicit_version_makes_no_cli_call(h):
    installed(h.kube)
    result = h.ok(version="v2.24.0")
    assert h.calls == []
    assert not result["changed"] and result["action"] == "none" and result["command"] is None
    assert result["commands"] == []


def test_rerun_without_version_makes_exactly_the_version_call(h):
    installed(h.kube)
    result = h.ok()
    assert h.calls == [["version"]]
    assert not result["changed"]


def test_upgrade_to_the_client_version(h):
    installed(h.kube, "2.24.0")
    h.client = "2.25.0"
    result = h.ok()
    assert h.calls == [["version"], UPGRADE + KUBE_FLAGS]
    assert result["action"] == "upgraded" and result["version"] == "2.25.0"
    assert result["release"] == {"revision": 2, "status": "deployed", "chart_version": "2.25.0"}
    assert result["reason"] == "version 2.24.0 is installed, 2.25.0 is wanted"


@pytest.mark.parametrize("client", ["2.24.0", "2.25.0", "2.29.0", "2.30.0"])
def test_upgrade_to_another_version_with_the_version_flag(h, client):
    installed(h.kube, "2.24.0")
    h.client = client
    result = h.ok(version="2.31.2")
    assert h.calls == [["version"], UPGRADE + ["--version", "2.31.2"] + KUBE_FLAGS]
    assert result["version"] == "2.31.2"


def test_old_client_refuses_another_version_before_acting(h):
    h.client = "2.20.2"
    result = h.fail(version="2.24.0")
    assert h.calls == [["version"]]
    assert "client 2.20.2 installs only its own traffic manager version" in result["msg"]
    assert result["command"] is None and not result["changed"]
    assert not h.kube.secrets


def test_values_go_through_a_private_file_that_is_removed(h):
    installed(h.kube)
    result = h.ok(version="2.24.0", values={"agent": {"logLevel": "debug"}})
    assert h.calls[0] == ["version"] and len(h.calls) == 2
    assert h.calls[1][:5] == UPGRADE + ["--reset-values"] and h.calls[1][5] == "-f" and h.calls[1][7:] == KUBE_FLAGS
    written = h.values_files[0]
    assert (written["mode"], written["dir_mode"]) == (0o600, 0o700)
    assert written["content"] == {"agent": {"logLevel": "debug"}}
    assert not os.path.exists(written["path"]) and not os.path.exists(os.path.dirname(written["path"]))
    assert result["action"] == "upgraded" and result["reason"] == "values differ at agent"


def test_unchanged_values_are_a_no_op(h):
    installed(h.kube, values={"agent": {"logLevel": "debug"}})
    result = h.ok(version="2.24.0", values={"agent": {"logLevel": "debug"}})
    assert h.calls == [] and not result["changed"]


@pytest.mark.parametrize("reply, message", [
    (lambda args: (1, "", "telepresence helm install: error: boom\n", False), "telepresence helm install failed: boom"),
    (lambda args: (-9, "", "", True), "did not finish within 130 s (wait_timeout 120 s + 10 s) and was stopped"),
])
def test_values_file_is_removed_on_failure_and_timeout(h, reply, message):
    seen = []
    h.replies["helm install"] = lambda args: (seen.append(flag(args, "-f")), reply(args))[1]
    result = h.fail(version="2.24.0", values={"a": 1})
    assert message in result["msg"]
    assert seen and not os.path.exists(seen[0]) and not os.path.exists(os.path.dirname(seen[0]))
    assert result["changed"] and result["command"][1:3] == ["helm", "install"]
    assert "diagnostics" in result


def test_upgrade_false_warns_about_drift_and_changes_nothing(h):
    installed(h.kube, "2.24.0")
    result = h.ok(version="2.25.0", upgrade=False, values={"a": 1})
    assert h.calls == []
    assert not result["changed"] and result["action"] == "none"
    assert result["drift"] == ["version 2.24.0 is installed, 2.25.0 is wanted", "values differ at a"]
    assert h.warnings == ["upgrade is false, so the drift is left alone: version 2.24.0 is installed, 2.25.0 is "
                          "wanted; values differ at a"]


def test_stuck_release_is_repaired_with_install(h):
    installed(h.kube, status="pending-install", ready=False)
    result = h.ok(version="2.24.0")
    assert h.calls == [["version"], INSTALL]
    assert result["action"] == "installed" and "pending-install" in result["reason"]
    assert result["release"]["status"] == "deployed"


def test_foreign_manager_is_left_alone_with_a_warning(h):
    h.kube.workloads["deployment"] = deployment("2.24.0")
    result = h.ok(version="2.25.0")
    assert h.calls == [] and not result["changed"] and result["action"] == "none"
    assert "without a Helm release traffic-manager" in h.warnings[0] and "2.25.0 is wanted" in h.warnings[0]


def test_create_namespace_false_fails_before_acting_when_the_namespace_is_missing(h):
    result = h.fail(version="2.24.0", create_namespace=False)
    assert h.calls == []
    assert result["msg"] == ("namespace ambassador does not exist and create_namespace is false; create the namespace "
                             "first or set create_namespace: true")


def test_create_namespace_false_with_an_existing_namespace(h):
    h.kube.workloads["namespace"] = {"metadata": {"name": "ambassador"}}
    h.ok(version="2.24.0", create_namespace=False)
    assert h.calls == [["version"], ["helm", "install", "--manager-namespace", "ambassador",
                                     "--create-namespace=false"] + KUBE_FLAGS]


def test_without_wait_the_cli_gets_the_module_timeout_and_nothing_is_watched(h):
    h.ok(version="2.24.0", wait=False, timeout=45)
    assert h.timeouts == [45, 45]
    assert not [call for call in h.kube.calls if call[0] == "watch"]


# ---------------------------------------------------------------------------------------------- compatibility


def test_new_client_refuses_to_install_an_old_manager(h):
    h.client = "2.25.0"
    result = h.fail(version="2.20.2")
    assert h.calls == [["version"]]
    assert result["msg"].startswith("refusing to install traffic manager 2.20.2: client 2.25.0 requires a traffic "
                                    "manager >= 2.21.0")


def test_new_client_refuses_to_keep_an_old_manager(h):
    installed(h.kube, "2.20.2")
    h.client = "2.29.0"
    result = h.fail(upgrade=False)
    assert h.calls == [["version"]]
    assert result["msg"].startswith("refusing to keep traffic manager 2.20.2: client 2.29.0 requires")


def test_new_client_upgrades_an_old_manager(h):
    installed(h.kube, "2.20.2")
    h.client = "2.25.0"
    assert h.ok()["action"] == "upgraded"
    assert h.calls == [["version"], UPGRADE + KUBE_FLAGS]


def test_old_client_may_keep_an_old_manager(h):
    installed(h.kube, "2.20.2")
    h.client = "2.24.0"
    assert not h.ok(version="2.20.2")["changed"]
    assert h.calls == [["version"]]       # only to learn the client can work with it


# ---------------------------------------------------------------------------------------------- check and diff


def test_check_mode_reports_and_runs_nothing(h):
    result = h.ok(check=True, diff=True, values={"a": 1}, values_no_log=False)
    assert h.calls == [["version"]]
    assert result["changed"] and result["action"] == "installed" and result["command"] is None
    assert not h.kube.secrets and not h.kube.workloads
    assert result["diff"] == {"before": {"installed": False, "version": None, "values": None},
                              "after": {"installed": True, "version": "2.24.0", "values": {"a": 1}}}


def test_check_mode_upgrade(h):
    installed(h.kube, values={"a": 1})
    result = h.ok(check=True, diff=True, version="2.25.0", values_no_log=False)
    assert h.calls == [["version"]]       # capabilities, to know the upgrade can be done
    assert result["action"] == "upgraded" and result["changed"]
    assert result["diff"]["after"] == {"installed": True, "version": "2.25.0", "values": {"a": 1}}
    assert state_of(h.kube)["version"] == "2.24.0"


def test_check_mode_uninstall(h):
    installed(h.kube)
    result = h.ok(check=True, diff=True, state="absent")
    assert h.calls == []
    assert result["action"] == "uninstalled" and result["agents"] == {"path": "no agents", "found": []}
    assert result["diff"]["after"] == {"installed": False, "version": None, "values": None}
    assert state_of(h.kube)["installed"]


def test_diff_after_a_real_upgrade_shows_values_without_injected_keys(h):
    installed(h.kube)
    result = h.ok(diff=True, version="2.24.0", values={"a": 1}, values_no_log=False)
    assert result["diff"] == {"before": {"installed": True, "version": "2.24.0", "values": {}},
                              "after": {"installed": True, "version": "2.24.0", "values": {"a": 1}}}


LICENCE = "lic-0123456789abcdef-secret"


def test_values_no_log_masks_values_in_diff_and_invocation_but_shows_the_differing_keys(h):
    installed(h.kube, values={"licence": {"key": "old-" + LICENCE}, "agent": {"logLevel": "debug"}})
    result = h.ok(diff=True, version="2.24.0",
                  values={"licence": {"key": LICENCE}, "agent": {"logLevel": "debug"}, "replicaCount": 2})
    assert result["action"] == "upgraded"
    assert result["diff"]["before"]["values"] == {"licence": {"key": "(hidden, differs: old value)"},
                                                  "agent": {"logLevel": "(hidden: values_no_log)"}}
    assert result["diff"]["after"]["values"] == {"licence": {"key": "(hidden, differs: new value)"},
                                                 "agent": {"logLevel": "(hidden: values_no_log)"},
                                                 "replicaCount": "(hidden, differs: new value)"}
    assert result["invocation"]["module_args"]["values"] == {"licence": {"key": "(hidden: values_no_log)"},
                                                             "agent": {"logLevel": "(hidden: values_no_log)"},
                                                             "replicaCount": "(hidden: values_no_log)"}
    assert result["drift"] == ["values differ at licence.key, replicaCount"]
    assert LICENCE not in repr(result) and "debug" not in repr(result)


def test_values_no_log_masks_values_on_failure_too(h):
    result = h.fail(diff=True, version="2.24.0", values={"licence": LICENCE}, manager_namespace="ambassador",
                    create_namespace=False)
    assert result["invocation"]["module_args"]["values"] == {"licence": "(hidden: values_no_log)"}
    assert LICENCE not in repr(result)


def test_values_no_log_false_shows_values(h):
    result = h.ok(check=True, diff=True, values={"licence": LICENCE}, values_no_log=False)
    assert result["diff"]["after"]["values"] == {"licence": LICENCE}


# ---------------------------------------------------------------------------------------------- absent


def test_a_stale_agents_config_map_entry_is_not_an_agent(h):
    """A telepresence-agents entry left by a 2.21-or-older manager, with no pod running an agent (facts sheet
    section 9, "How agents get into pods, by version"): nothing to remove, so no session is needed."""
    installed(h.kube)
    h.kube.config_maps = [AGENTS_CM]
    result = h.ok(state="absent")
    assert h.calls == [UNINSTALL]
    assert result["agents"] == {"path": "no agents", "found": []}


def test_absent_when_nothing_is_installed_makes_no_call(h):
    result = h.ok(state="absent")
    assert h.calls == [] and not result["changed"] and result["action"] == "none"


def test_check_mode_uninstall_with_agents_reads_the_session_only(h):
    installed(h.kube)
    h.kube.all_pods = list(AGENT_PODS)
    result = h.ok(check=True, state="absent")
    assert h.calls == [STATUS]
    assert result["agents"] == {"path": "temporary session", "found": ["app/fresh-app"]}
    assert result["command"] is None and state_of(h.kube)["installed"]


def test_absent_without_agents_runs_only_helm_uninstall(h):
    installed(h.kube)
    h.status = status_json(connected=True)     # even a session of this manager is not needed then
    result = h.ok(state="absent")
    assert h.calls == [UNINSTALL]
    assert result["action"] == "uninstalled" and result["changed"] and not result["installed"]
    assert result["agents"] == {"path": "no agents", "found": []}
    assert result["command"] == [str(h.binary)] + UNINSTALL


def test_absent_with_our_session_uninstalls_agents_in_it(h):
    installed(h.kube)
    h.kube.all_pods = list(AGENT_PODS)
    h.status = status_json(connected=True)
    result = h.ok(state="absent")
    assert h.calls == [STATUS, ["uninstall", "--all-agents"], UNINSTALL]
    assert result["agents"] == {"path": "existing session", "found": ["app/fresh-app"]}


def test_absent_when_agents_cannot_be_searched_uses_our_session(h, monkeypatch):
    installed(h.kube)
    h.status = status_json(connected=True)
    monkeypatch.setattr(tp_manager, "find_agents", forbidden_search)
    result = h.ok(state="absent")
    assert h.calls == [STATUS, ["uninstall", "--all-agents"], UNINSTALL]
    assert result["agents"]["path"] == "existing session"
    assert "cannot look for traffic agents in the cluster (forbidden (403): cannot list pods" in h.warnings[0]


def test_absent_when_agents_cannot_be_searched_and_no_session_warns(h, monkeypatch):
    installed(h.kube)
    monkeypatch.setattr(tp_manager, "find_agents", forbidden_search)
    result = h.ok(state="absent")
    assert h.calls == [STATUS, UNINSTALL]
    assert result["agents"] == {"path": "not checked", "found": []}
    assert "traffic agents were not removed" in h.warnings[1]


def test_absent_with_agents_and_no_session_connects_uninstalls_and_quits(h):
    installed(h.kube)
    h.kube.all_pods = list(AGENT_PODS)
    result = h.ok(state="absent")
    assert h.calls == [STATUS, STATUS,
                       ["connect", "--namespace", "app", "--manager-namespace", "ambassador"] + KUBE_FLAGS +
                       ["--output", "json"],
                       STATUS, ["uninstall", "--all-agents"], ["quit"], UNINSTALL]
    assert result["agents"] == {"path": "temporary session", "found": ["app/fresh-app"]}


NO_DAEMONS = {"user_daemon": {}, "root_daemon": {}, "traffic_manager": {"name": "", "version": "", "traffic_agent": ""}}


def test_absent_stops_the_daemons_it_started_for_the_temporary_session(h):
    """Issue 12: with no daemons before, the temporary session ends with quit -s, not a bare quit."""
    installed(h.kube)
    h.kube.all_pods = list(AGENT_PODS)
    h.status = dict(NO_DAEMONS)
    result = h.ok(state="absent")
    assert h.calls[-3:] == [["uninstall", "--all-agents"], ["quit", "-s"], UNINSTALL]
    assert result["agents"] == {"path": "temporary session", "found": ["app/fresh-app"]}


def test_absent_stops_its_daemons_also_when_agent_removal_fails(h):
    installed(h.kube)
    h.kube.all_pods = list(AGENT_PODS)
    h.status = dict(NO_DAEMONS)
    h.replies["uninstall"] = lambda args: (1, "", "telepresence uninstall: error: nope\n", False)
    h.fail(state="absent")
    assert h.calls[-2:] == [["uninstall", "--all-agents"], ["quit", "-s"]]


def test_absent_quits_the_temporary_session_when_agent_removal_fails(h):
    installed(h.kube)
    h.kube.all_pods = [agent_pod("web")]
    h.replies["uninstall"] = lambda args: (1, "", "telepresence uninstall: error: nope\n", False)
    result = h.fail(state="absent")
    assert h.calls[-2:] == [["uninstall", "--all-agents"], ["quit"]]
    assert "telepresence uninstall failed: nope" in result["msg"]
    assert state_of(h.kube)["installed"]


def test_absent_refuses_to_use_a_session_of_another_manager(h):
    installed(h.kube)
    h.status = status_json(connected=True, manager_namespace="other")
    h.kube.all_pods = [agent_pod("web")]
    result = h.fail(state="absent")
    assert h.calls == [STATUS]
    assert "traffic agents remain in app/web" in result["msg"] and "manager namespace other" in result["msg"]


def test_absent_without_removing_agents(h):
    installed(h.kube)
    result = h.ok(state="absent", remove_agents=False)
    assert h.calls == [UNINSTALL]
    assert result["agents"] == {"path": "skipped", "found": []}


def test_absent_refuses_a_manager_installed_by_something_else(h):
    h.kube.workloads["deployment"] = deployment()
    result = h.fail(state="absent")
    assert h.calls == []
    assert "removes only what telepresence helm installed" in result["msg"]


# ---------------------------------------------------------------------------------------------- readiness


def test_not_ready_after_install_fails_with_diagnostics(h):
    def install_failing(args):
        h.kube.workloads["deployment"] = deployment(ready=False)
        h.kube.secrets = [release_secret(1, "deployed")]
        h.kube.pods = [failing_pod()]
        h.kube.events = [event("traffic-manager-abc-x1", "Failed", 'Failed to pull image "x:1": not found', "t1")]
        return 0, "", "", False
    h.replies["helm install"] = install_failing
    result = h.fail(version="2.24.0", wait_timeout=1)
    assert result["msg"].startswith("traffic-manager in namespace ambassador is not ready after 1 s (wait_timeout). "
                                    "Deployment traffic-manager: 0/1 ready, Available=False")
    assert "container traffic-manager waiting: ImagePullBackOff" in result["msg"]
    assert 'Warning Failed: Failed to pull image "x:1": not found' in result["msg"]
    assert result["diagnostics"]["pods"][0]["containers"][0]["reason"] == "ImagePullBackOff"
    assert result["changed"] and not result["ready"] and result["installed"]
    assert [call for call in h.kube.calls if call[0] == "watch"]


def test_present_but_not_ready_is_awaited(h):
    installed(h.kube, ready=False)

    def ready_now(kube):
        kube.workloads["deployment"] = deployment()
        return ("MODIFIED", deployment())
    h.kube.watch_events = [("ADDED", deployment(ready=False)), ready_now]
    result = h.ok(version="2.24.0")
    assert h.calls == [] and not result["changed"] and result["ready"]


def test_present_never_ready_fails(h):
    installed(h.kube, ready=False)
    result = h.fail(version="2.24.0", wait_timeout=1)
    assert "is installed but not ready after 1 s" in result["msg"]
    assert not result["changed"]


# ---------------------------------------------------------------------------------------------- exit 0 is no proof

MALFORMED = '{"cmd":"upgrade","stdout":[{"name":"fresh-app","namespace":"ap'


def exits_0_and_does_nothing(stdout=""):
    return lambda args: (0, stdout, "", False)


def test_upgrade_that_leaves_the_old_values_fails_naming_the_drift(h):
    installed(h.kube, values={"agent": {"logLevel": "info"}})
    h.replies["helm upgrade"] = exits_0_and_does_nothing(MALFORMED)
    result = h.fail(version="2.24.0", values={"agent": {"logLevel": "debug"}})
    assert len(h.calls) == 2 and h.calls[1] == UPGRADE + ["--reset-values", "-f", h.calls[1][6]] + KUBE_FLAGS
    assert result["msg"] == (
        "telepresence helm upgrade reported success but the release still differs: values differ at agent.logLevel "
        "(unexpected output: %s); run the task again; if it persists, look at the release with helm history "
        "traffic-manager -n ambassador" % MALFORMED)
    assert result["changed"] and result["command"] == [str(h.binary)] + h.calls[1]
    assert (result["rc"], result["stdout"]) == (0, MALFORMED)
    assert result["installed"] and result["release"]["revision"] == 1 and result["action"] == "upgraded"
    assert "diff" not in result
    # failed on the state read right after the call: nothing to wait for
    assert not [call for call in h.kube.calls if call[0] == "watch"]


@pytest.mark.parametrize("wait", [True, False])
def test_upgrade_that_keeps_the_old_version_fails(h, wait):
    installed(h.kube, "2.24.0")
    h.client = "2.25.0"
    h.replies["helm upgrade"] = exits_0_and_does_nothing("\nTraffic Manager upgraded successfully\n")
    result = h.fail(wait=wait)
    assert h.calls == [["version"], UPGRADE + KUBE_FLAGS]
    assert result["msg"].startswith("telepresence helm upgrade reported success but the release still differs: "
                                    "version 2.24.0 is installed, 2.25.0 is wanted (unexpected output: Traffic "
                                    "Manager upgraded successfully); run the task again")
    assert result["version"] == "2.24.0"


@pytest.mark.parametrize("wait", [True, False])
def test_install_that_installs_nothing_fails_without_waiting(h, wait):
    h.replies["helm install"] = exits_0_and_does_nothing()
    result = h.fail(version="2.24.0", wait=wait, wait_timeout=60)
    assert h.calls == [["version"], INSTALL]
    assert result["msg"].startswith("telepresence helm install reported success but the release still differs: the "
                                    "traffic manager is not installed (no output); run the task again")
    assert result["changed"] and not result["installed"] and result["release"] is None
    assert not [call for call in h.kube.calls if call[0] == "watch"]


def test_install_that_repairs_nothing_fails(h):
    installed(h.kube, status="pending-install", ready=False)
    h.replies["helm install"] = exits_0_and_does_nothing()
    result = h.fail(version="2.24.0")
    assert "reported success but the release still differs: release traffic-manager revision 1 is pending-install" \
        in result["msg"]


def test_a_real_upgrade_is_confirmed_and_succeeds(h):
    installed(h.kube, values={"agent": {"logLevel": "info"}})
    result = h.ok(version="2.24.0", values={"agent": {"logLevel": "debug"}})
    assert result["action"] == "upgraded" and result["release"]["revision"] == 2


@pytest.mark.parametrize("wait", [True, False])
def test_helm_uninstall_that_leaves_the_release_fails_before_waiting(h, wait):
    installed(h.kube)
    h.replies["helm uninstall"] = exits_0_and_does_nothing(MALFORMED)
    result = h.fail(state="absent", wait=wait, wait_timeout=60)
    assert h.calls == [UNINSTALL]
    assert result["msg"].startswith("telepresence helm uninstall reported success but the traffic manager is still "
                                    "installed: release traffic-manager revision 1 (deployed) is present (unexpected "
                                    "output: {\"cmd\"")
    assert result["changed"] and result["installed"] and result["command"] == [str(h.binary)] + UNINSTALL
    assert not [call for call in h.kube.calls if call[0] == "watch"]


def test_uninstall_of_agents_that_leaves_them_fails_before_helm_uninstall(h, monkeypatch):
    monkeypatch.setattr(manager, "AGENT_POLL_PAUSE", 0.05)
    installed(h.kube)
    h.kube.all_pods = list(AGENT_PODS)
    h.status = status_json(connected=True)
    h.replies["uninstall"] = exits_0_and_does_nothing(MALFORMED)
    result = h.fail(state="absent", wait_timeout=1)
    assert h.calls == [STATUS, ["uninstall", "--all-agents"]]
    assert result["msg"] == (
        "telepresence uninstall --all-agents reported success but traffic agents remain in app/fresh-app after 1 s "
        "(wait_timeout) (unexpected output: %s); the traffic manager was left installed so that they keep working: "
        "remove them with telepresence uninstall <workload> in a session with manager namespace ambassador and run "
        "the task again, or set remove_agents: false to uninstall the manager anyway" % MALFORMED)
    assert result["command"] == [str(h.binary), "uninstall", "--all-agents"] and not result["changed"]
    assert result["installed"] and state_of(h.kube)["release"] is not None
    searches = [call for call in h.kube.calls if call[:2] == ("list", "pod")]
    assert len(searches) > 2          # searched again until wait_timeout, not once


def test_uninstall_of_agents_in_a_temporary_session_quits_then_fails_when_they_remain(h, monkeypatch):
    monkeypatch.setattr(manager, "AGENT_POLL_PAUSE", 0.05)
    installed(h.kube)
    h.kube.all_pods = list(AGENT_PODS)
    h.replies["uninstall"] = exits_0_and_does_nothing()
    result = h.fail(state="absent", wait_timeout=1)
    assert h.calls[-2:] == [["uninstall", "--all-agents"], ["quit"]]
    assert UNINSTALL not in h.calls
    assert "traffic agents remain in app/fresh-app after 1 s (wait_timeout) (no output)" in result["msg"]
    assert h.status == status_json()


def test_agents_that_leave_with_their_rollout_are_awaited(h, monkeypatch):
    installed(h.kube)
    h.kube.all_pods = list(AGENT_PODS)
    h.status = status_json(connected=True)

    def rollout_still_running(_args):
        h.kube.all_pods = [agent_pod("fresh-app")]    # the replaced pod has not gone yet
        return 0, "", "", False
    h.replies["uninstall"] = rollout_still_running
    monkeypatch.setattr(manager.time, "sleep", lambda _seconds: h.kube.all_pods.clear())
    result = h.ok(state="absent")
    assert h.calls == [STATUS, ["uninstall", "--all-agents"], UNINSTALL]
    assert result["action"] == "uninstalled" and not result["installed"]


def test_helm_timeout_reports_the_pods(h):
    def hang(args):
        h.kube.workloads["deployment"] = deployment(ready=False)
        h.kube.pods = [failing_pod()]
        return -9, "", "", True
    h.replies["helm install"] = hang
    result = h.fail(version="2.24.0", wait_timeout=5)
    assert h.timeouts[-1] == 15
    assert result["timed_out"] and "ImagePullBackOff" in result["msg"]
    assert "running the task again repairs it" in result["msg"]


# ---------------------------------------------------------------------------------------------- errors and bad input


def test_forbidden_cluster_read_fails_readably_without_cli_calls(h):
    h.kube.fail = KubeError("forbidden (403): the user of the current context cannot get statefulsets in namespace "
                            "ambassador", status=403)
    result = h.fail(version="2.24.0")
    assert h.calls == []
    assert result["msg"].startswith("forbidden (403)") and result["api_status"] == 403


@pytest.mark.parametrize("params, message", [
    ({"manager_namespace": "Bad_NS"}, "manager_namespace 'Bad_NS' has characters outside [a-z0-9-]"),
    ({"manager_namespace": "a" * 64}, "manager_namespace '%s' is 64 characters long" % ("a" * 64)),
    ({"manager_namespace": "-ambassador"}, "manager_namespace '-ambassador'"),
    ({"values": ["a", "b"]}, "values must be a mapping of Helm chart values"),
    ({"values": "agent.logLevel=debug"}, "values must be a mapping of Helm chart values"),
    ({"timeout": -1}, "timeout must be a positive number of seconds, got -1"),
    ({"wait_timeout": 0}, "wait_timeout must be a positive number of seconds, got 0"),
    ({"wait_timeout": -5}, "wait_timeout must be a positive number of seconds, got -5"),
    ({"version": "latest"}, "version 'latest' is not a release version such as 2.24.0"),
    ({"version": "2.24"}, "version '2.24' is not a release version"),
    ({"state": "gone"}, "state"),
    ({"binary_path": "/nonexistent/telepresence"}, "binary_path /nonexistent/telepresence is not an executable file"),
])
def test_bad_input_fails_naming_the_option_and_touches_nothing(h, params, message):
    result = h.fail(**params)
    assert message in result["msg"]
    assert h.calls == [] and h.kube.calls == []


def test_unknown_state_names_the_choices(h):
    assert "value of state must be one of: present, absent, got: gone" in h.fail(state="gone")["msg"]


# ---------------------------------------------------------------------------------------------- values semantics


@pytest.mark.parametrize("client", ["2.20.2", "2.24.0", "2.25.0", "2.29.0", "2.30.0"])
def test_upgrade_with_values_resets_the_release_values(client):
    """facts sheet section 8, "No values given includes an empty values file": -f {} alone would keep old values."""
    caps = Capabilities(client)
    assert tp_manager.helm_args("upgrade", "ambassador", client, caps, True, KUBE_FLAGS, "/t/v.json") == \
        UPGRADE + ["--reset-values", "-f", "/t/v.json"] + KUBE_FLAGS
    assert tp_manager.helm_args("upgrade", "ambassador", client, caps, True, KUBE_FLAGS) == UPGRADE + KUBE_FLAGS


def test_no_values_option_is_no_opinion_about_release_values(h):
    installed(h.kube, values={"agent": {"logLevel": "debug"}})
    result = h.ok(version="2.24.0")
    assert h.calls == [] and not result["changed"] and result["drift"] == [] and h.warnings == []


def test_empty_values_remove_values_set_earlier_with_reset_values(h):
    installed(h.kube, values={"agent": {"logLevel": "debug"}})
    result = h.ok(version="2.24.0", values={})
    # the version call gives the client's capabilities for the argv
    assert h.calls == [["version"], UPGRADE + ["--reset-values", "-f", h.calls[1][6]] + KUBE_FLAGS]
    assert h.values_files[0]["content"] == {}
    assert result["changed"] and result["action"] == "upgraded" and result["reason"] == "values differ at agent"
    assert state_of(h.kube)["release"]["values"] == {"image": {"registry": "ghcr.io/telepresenceio", "tag": "2.24.0"}}


def test_injected_keys_in_values_warn_once_and_never_upgrade(h):
    installed(h.kube)
    result = h.ok(version="2.24.0", values={"image": {"tag": "9.9.9", "registry": "r.local"}})
    assert h.calls == [] and not result["changed"]
    assert len(h.warnings) == 1
    assert h.warnings[0].startswith("values sets image.registry, image.tag, which the telepresence CLI sets itself")


def test_injected_keys_are_passed_on_when_something_else_differs(h):
    installed(h.kube)
    result = h.ok(version="2.24.0", values={"image": {"tag": "9.9.9"}, "agent": {"logLevel": "debug"}})
    assert result["changed"] and h.values_files[0]["content"] == {"image": {"tag": "9.9.9"},
                                                                  "agent": {"logLevel": "debug"}}
    assert result["reason"] == "values differ at agent" and len(h.warnings) == 1
