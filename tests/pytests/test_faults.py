# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules under the sandbox's faults (issue 8, Reliability 2).

Every CLI command the modules call x {error, hang, malformed output, 2 transient failures}; downloads x {404, 500,
truncated, slow, wrong bytes}; the cluster API x {unreachable, 403, 500}. Each group of cases is ONE playbook: the
test-only ``tp_sandbox`` action switches faults.json between tasks and snapshots state.json, folders and live CLI
processes after each case. A case passes when the module either failed inside its timeout with a clear message, or
(where a retry is safe) recovered and the end state is right; and in both cases left no partial state.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil

import pytest

from tp_harness import collections_path, mutating, runner, sandbox  # noqa: F401  pylint: disable=unused-import

TIMEOUT = 3            # the modules' timeout option in hang cases (seconds)
STARTUP_SLACK = 12     # a module's own start-up and its other calls on this loaded 2-core machine
MODES = {
    "error": {"mode": "error"},
    "hang": {"mode": "hang"},
    "malformed": {"mode": "malformed"},
    "flaky": {"mode": "flaky", "times": 2},
}
NOT_JSON = r"not JSON|cannot find the client version|cannot be (read|decoded|parsed)|unexpected output"


TEXT_OUTPUT_COMMANDS = ("quit", "leave", "detach", "uninstall", "helm install", "helm upgrade", "helm uninstall")
STILL_THERE = r"(returned|reported success) but .*still"


def message_for(command, mode):
    """What a clear failure message says for a CLI fault: the command, and why."""
    if mode == "hang":
        return [r"telepresence %s did not finish within %d s" % (command, TIMEOUT)]
    if mode == "malformed":
        # Text commands exit 0 with garbage: only re-reading the state afterwards can tell nothing happened.
        return [NOT_JSON + "|" + STILL_THERE if command in TEXT_OUTPUT_COMMANDS else NOT_JSON]
    # The CLI's own error text (run_json reports the JSON error as is; text commands get "telepresence X failed: ").
    return [r"sandbox fault injected into telepresence %s" % command]


class Case:
    """One fault case: the fault, the task under it, what may happen and what must hold afterwards."""

    def __init__(self, ident, module, args, faults, outcomes=("failed",), message=(), max_seconds=None, check=None):
        self.ident = ident
        self.module = module
        self.args = args
        self.faults = faults
        self.outcomes = outcomes
        self.message = message
        self.max_seconds = max_seconds
        self.check = check

    def __repr__(self):
        return self.ident


class Scenario:
    """A playbook being built: setup steps (no faults) and cases, in order."""

    def __init__(self, sandbox, folders=()):
        self.sandbox = sandbox
        self.tasks = []
        self.cases = {}
        self.folders = list(folders)

    def control(self, name, **args):
        self.tasks.append({"name": name, "tp_sandbox": dict(args, dir=str(self.sandbox.dir))})

    def step(self, name, module, args):
        """A setup step; it must succeed (checked by test_setup_steps_succeeded)."""
        self.tasks.append({"name": "setup: %s" % name, "devloop.telepresence.%s" % module: args, "ignore_errors": True})

    def cli(self, name, *argv_lists):
        """A setup step through the sandbox's CLI directly (a list starting with "-" may fail)."""
        self.tasks.append({"name": "setup: %s" % name, "tp_sandbox": {"dir": str(self.sandbox.dir), "faults": None,
                                                                      "cli": [list(argv) for argv in argv_lists]},
                           "ignore_errors": True})

    def case(self, case):
        self.cases[case.ident] = case
        self.control("%s: faults" % case.ident, faults=case.faults)
        self.tasks.append({"name": case.ident, "devloop.telepresence.%s" % case.module: case.args,
                           "ignore_errors": True})
        self.control("%s: after" % case.ident, faults=None, snapshot=True, processes=True, folders=self.folders,
                     cluster=True)


def cli_fault(command, mode):
    return {"cli": {command: MODES[mode]}}


def run_scenario(runner, scenario):
    result = runner.play(scenario.tasks)
    assert result.tasks, result.output[-4000:]
    return {"scenario": scenario, "play": result}


def check_case(run, ident):
    """The checks every case shares; returns (task record, after-snapshot)."""
    case = run["scenario"].cases[ident]
    play = run["play"]
    task = play.task(ident)
    after = play.result("%s: after" % ident)
    result = task["result"]
    assert task["status"] in ("ok", "changed", "failed"), task
    outcome = "failed" if task["status"] == "failed" else "ok"
    assert outcome in case.outcomes, "%s ended %s: %s" % (ident, outcome, result.get("msg", result))
    if outcome == "failed":
        message = str(result.get("msg", ""))
        assert message, result
        for pattern in case.message:
            assert re.search(pattern, message), "%r not in the message: %s" % (pattern, message)
        assert "MODULE FAILURE" not in message and "Traceback" not in str(result), result
        command = cli_command(case)
        if command and not (case.module == "tp_manager" and "malformed" in ident):
            # the failing call is reported as data: its argv names the command
            assert command in " ".join(result.get("command") or []), result.get("command")
    if case.max_seconds:
        took = task["duration"]
        assert took <= case.max_seconds, "%s took %.1f s (limit %s s)" % (ident, took, case.max_seconds)
    assert after["processes"] == [], "CLI processes outlived the task: %s" % after["processes"]
    for folder, names in (after.get("folders") or {}).items():
        stray = [name for name in names or [] if name.startswith((".telepresence-", ".tp_intercept-", "tp_manager_"))]
        assert stray == [], "stray temporary files in %s: %s" % (folder, stray)
    if case.check:
        case.check(outcome, result, after)
    return task, after


def cli_command(case):
    """The CLI command a case puts a fault on ("helm install", "leave", ...), or None."""
    for command in (case.faults.get("cli") or {}):
        return command
    return None


def intercepts_named(after, name):
    return [item for item in after["state"].get("intercepts") or [] if item["name"] == name]


# ---------------------------------------------------------------------------------------------------------------
# session commands: version, status, connect, quit, list, intercept, leave, detach
# ---------------------------------------------------------------------------------------------------------------

SESSION_COMMANDS = ("version", "status", "connect", "quit", "list", "intercept", "leave", "detach")


def session_scenario(sandbox, scratch):
    b24, b30 = sandbox.binary("2.24.0"), sandbox.binary("2.30.0")
    scenario = Scenario(sandbox, folders=[str(scratch), str(scratch / "env")])
    base = dict(binary_path=b24)
    icpt = dict(base, name="fresh-app", namespace="app", port=18000, verify_local="off", wait_timeout=5)
    kube = ["--kubeconfig", sandbox.kubeconfig]

    def stop(binary=b24):
        return ["-", binary, "quit", "-s"]

    def connect(binary=b24):
        return [binary, "connect", "--namespace", "app", "--manager-namespace", "ambassador"] + kube

    def intercept(binary=b24):
        return [binary, "intercept", "fresh-app", "--workload", "fresh-app", "--service", "fresh-app", "--port",
                "18000:http", "--mount=false"]

    def leave(binary=b24):
        return ["-", binary, "detach" if binary == b30 else "leave", "fresh-app"]

    scenario.step("manager present", "tp_manager", dict(base, wait_timeout=30))
    scenario.cli("stopped", stop())

    def session(after):
        return after["state"].get("session") or {}

    for mode in MODES:
        timeout = dict(timeout=TIMEOUT) if mode == "hang" else {}

        def connected_ok(outcome, result, after, mode=mode):
            if outcome == "ok":
                assert result["connected"] is True and session(after).get("namespace") == "app", (mode, result)

        def disconnected_ok(outcome, result, after, mode=mode):
            if outcome == "ok":
                assert result["connected"] is False, (mode, result)
                assert not session(after), "state=disconnected succeeded but the session is still there (%s)" % mode

        def one_or_none(outcome, result, after, mode=mode):
            found = intercepts_named(after, "fresh-app")
            assert len(found) <= 1, "duplicate intercepts: %s" % found
            if outcome == "ok":
                assert [item["disposition"] for item in found] == ["ACTIVE"], (mode, found)
            env = scratch / "env" / "app.env"
            if outcome == "failed":
                assert found == [] or found[0]["disposition"] == "ACTIVE", found
            if env.exists():
                assert oct(env.stat().st_mode & 0o777) == "0o600"

        def removed_ok(outcome, result, after, mode=mode):
            found = intercepts_named(after, "fresh-app")
            if outcome == "ok":
                assert found == [], "state=absent succeeded but the intercept is still there (%s): %s" % (mode, found)
            else:
                assert len(found) <= 1

        # version: tp_info asks the client its version
        scenario.case(Case("version %s" % mode, "tp_info", dict(base, gather=["client"], **timeout),
                           cli_fault("version", mode), outcomes=("failed", "ok") if mode == "flaky" else ("failed",),
                           message=message_for("version", mode), max_seconds=TIMEOUT + STARTUP_SLACK))
        # status and connect: tp_connection connects from nothing
        for command in ("status", "connect"):
            scenario.case(Case("%s %s" % (command, mode), "tp_connection", dict(base, namespace="app", **timeout),
                               cli_fault(command, mode), outcomes=("failed", "ok") if mode in ("flaky", "malformed") else ("failed",),
                               message=message_for(command, mode), max_seconds=TIMEOUT + STARTUP_SLACK,
                               check=connected_ok))
            scenario.cli("stopped after %s %s" % (command, mode), stop())
        # quit: tp_connection disconnects a connected session
        scenario.cli("connected before quit %s" % mode, connect())
        scenario.case(Case("quit %s" % mode, "tp_connection", dict(base, state="disconnected", **timeout),
                           cli_fault("quit", mode), outcomes=("failed", "ok"),
                           message=message_for("quit", mode), max_seconds=TIMEOUT + STARTUP_SLACK,
                           check=disconnected_ok))
        # list and intercept: tp_intercept creates an intercept in a connected session
        scenario.cli("connected before list %s" % mode, stop(), connect())
        for command in ("list", "intercept"):
            scenario.case(Case("%s %s" % (command, mode), "tp_intercept",
                               dict(icpt, env_file=str(scratch / "env" / "app.env"), **timeout),
                               cli_fault(command, mode), outcomes=("failed", "ok") if mode in ("flaky", "malformed") else ("failed",),
                               message=message_for(command, mode), max_seconds=TIMEOUT + STARTUP_SLACK + 5,
                               check=one_or_none))
            scenario.cli("absent after %s %s" % (command, mode), leave())
        # leave: tp_intercept removes an intercept (2.24)
        scenario.cli("present before leave %s" % mode, intercept())
        scenario.case(Case("leave %s" % mode, "tp_intercept", dict(icpt, state="absent", **timeout),
                           cli_fault("leave", mode), outcomes=("failed", "ok"), message=message_for("leave", mode),
                           max_seconds=TIMEOUT + STARTUP_SLACK, check=removed_ok))
        # detach: the same with a 2.30 client
        i30 = dict(icpt, binary_path=b30)
        scenario.cli("present 2.30 before detach %s" % mode, leave(), stop(), connect(b30), intercept(b30))
        scenario.case(Case("detach %s" % mode, "tp_intercept", dict(i30, state="absent", **timeout),
                           cli_fault("detach", mode), outcomes=("failed", "ok"), message=message_for("detach", mode),
                           max_seconds=TIMEOUT + STARTUP_SLACK, check=removed_ok))
        scenario.cli("stopped 2.30 after detach %s" % mode, leave(b30), stop(b30))
    return scenario


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults-scratch")
    (base / "env").mkdir()
    return base


@pytest.fixture(scope="module")
def session_run(sandbox, runner, scratch):
    sandbox.clear_faults()
    return run_scenario(runner, session_scenario(sandbox, scratch))


SESSION_CASES = ["%s %s" % (command, mode) for mode in MODES for command in SESSION_COMMANDS]


@pytest.mark.parametrize("ident", SESSION_CASES)
def test_session_command_fault(ident, session_run):
    check_case(session_run, ident)


def test_session_setup_steps_succeeded(session_run):
    failed = [(item["task"], item["result"].get("msg")) for item in session_run["play"].tasks
              if item["task"].startswith("setup:") and item["status"] == "failed"]
    assert failed == []


# ---------------------------------------------------------------------------------------------------------------
# tp_manager: helm install, helm upgrade, helm uninstall, uninstall (agents)
# ---------------------------------------------------------------------------------------------------------------

MANAGER_COMMANDS = ("helm install", "helm upgrade", "helm uninstall", "uninstall")


def manager_scenario(sandbox):
    base = dict(binary_path=sandbox.binary("2.24.0"))
    scenario = Scenario(sandbox, folders=[])

    def helm_args(mode, **extra):
        # A hang is cut by the helm call's own limit: wait_timeout + 10 s with wait, else the timeout option.
        if mode == "hang":
            return dict(base, wait=False, timeout=TIMEOUT, **extra)
        return dict(base, wait_timeout=5, **extra)

    def manager_present(expect, values=None):
        def check(outcome, result, after):
            manager = after["manager"]
            statuses = [release["status"] for release in manager["releases"]]
            assert not [status for status in statuses if status.startswith("pending")], manager["releases"]
            if outcome == "ok":
                assert manager["installed"] is expect, (result, manager)
                if expect:
                    assert manager["ready_replicas"] >= 1 and statuses[-1] == "deployed", manager
                if values:
                    assert manager["releases"][-1]["values"].get("agent") == values["agent"], \
                        "tp_manager reported success but the release does not have the wanted values: %s" % manager
            elif expect:
                # a failed install or upgrade leaves nothing half-made: no manager and no release, or a deployed one
                assert (not manager["installed"] and not statuses) or (manager["installed"] and "deployed" in statuses), \
                    manager
            else:
                assert manager["installed"], "a failed uninstall removed the manager anyway"
        return check

    b24 = sandbox.binary("2.24.0")
    kube = ["--kubeconfig", sandbox.kubeconfig]
    stop = ["-", b24, "quit", "-s"]
    helm_install = [b24, "helm", "install", "--manager-namespace", "ambassador"] + kube
    helm_uninstall = ["-", b24, "helm", "uninstall", "--manager-namespace", "ambassador"] + kube
    scenario.step("manager absent", "tp_manager", dict(base, state="absent"))
    scenario.cli("stopped", stop)

    def agents_removed(outcome, result, after):
        manager_present(False)(outcome, result, after)
        if outcome == "ok":
            assert after["agents"] == [], "tp_manager reported the agents removed but they remain: %s" % after["agents"]

    for mode in MODES:
        scenario.case(Case("helm install %s" % mode, "tp_manager", helm_args(mode),
                           cli_fault("helm install", mode), outcomes=("failed", "ok") if mode in ("flaky", "malformed") else ("failed",),
                           message=manager_message("install", mode), max_seconds=TIMEOUT + STARTUP_SLACK + 10,
                           check=manager_present(True)))
        scenario.cli("manager absent after helm install %s" % mode, helm_uninstall)
    scenario.cli("manager present", helm_install)
    for mode in MODES:
        values = {"agent": {"logLevel": "debug-%s" % mode}}
        scenario.case(Case("helm upgrade %s" % mode, "tp_manager", helm_args(mode, values=values),
                           cli_fault("helm upgrade", mode), outcomes=("failed", "ok") if mode in ("flaky", "malformed") else ("failed",),
                           message=manager_message("upgrade", mode), max_seconds=TIMEOUT + STARTUP_SLACK + 10,
                           check=manager_present(True, values)))

    for mode in MODES:
        scenario.case(Case("helm uninstall %s" % mode, "tp_manager",
                           dict(helm_args(mode), state="absent", remove_agents=False),
                           cli_fault("helm uninstall", mode), outcomes=("failed", "ok"),
                           message=manager_message("uninstall", mode), max_seconds=TIMEOUT + STARTUP_SLACK + 10,
                           check=manager_present(False)))
        scenario.cli("manager present after helm uninstall %s" % mode, helm_uninstall, helm_install)
    for mode in MODES:
        scenario.cli("agent injected before uninstall %s" % mode,
                     [b24, "connect", "--namespace", "app", "--manager-namespace", "ambassador"] + kube,
                     [b24, "intercept", "fresh-app", "--workload", "fresh-app", "--service", "fresh-app", "--port",
                      "18000:http", "--mount=false"], [b24, "leave", "fresh-app"])
        scenario.case(Case("uninstall %s" % mode, "tp_manager",
                           dict(helm_args(mode), state="absent", remove_agents=True),
                           cli_fault("uninstall", mode), outcomes=("failed", "ok"),
                           message=message_for("uninstall", mode), max_seconds=TIMEOUT + STARTUP_SLACK + 10,
                           check=agents_removed))
        scenario.cli("manager present after uninstall %s" % mode, stop, helm_uninstall, helm_install)
    return scenario


def manager_message(action, mode):
    if mode == "hang":
        return [r"telepresence helm %s did not finish within %d s" % (action, TIMEOUT)]
    if mode == "malformed":
        # helm prints text the module does not parse: exit 0 with nothing installed is caught by the readiness wait
        return [r"not ready|not JSON|still present|unexpected"]
    return [r"telepresence helm %s failed: sandbox fault injected" % action]


@pytest.fixture(scope="module")
def manager_run(sandbox, runner, session_run):  # pylint: disable=unused-argument  # runs after the session cases
    sandbox.clear_faults()
    return run_scenario(runner, manager_scenario(sandbox))


MANAGER_CASES = ["%s %s" % (command, mode) for command in MANAGER_COMMANDS for mode in MODES]


@pytest.mark.parametrize("ident", MANAGER_CASES)
def test_manager_command_fault(ident, manager_run):
    check_case(manager_run, ident)


def test_manager_setup_steps_succeeded(manager_run):
    failed = [(item["task"], item["result"].get("msg")) for item in manager_run["play"].tasks
              if item["task"].startswith("setup:") and item["status"] == "failed"]
    assert failed == []


def test_no_values_file_left_behind(manager_run, runner):
    assert runner.leftovers() == []


# ---------------------------------------------------------------------------------------------------------------
# the cluster API: unreachable, 403, 500
# ---------------------------------------------------------------------------------------------------------------

CLUSTER_MESSAGES = {
    "unreachable": r"cannot reach the Kubernetes API",
    "403": r"forbidden \(403\).*cannot (get|list|watch) deployments in namespace %s",
    "500": r"the API server answered 500 to (get|list|watch) deployments in namespace %s",
}


def cluster_scenario(sandbox):
    base = dict(binary_path=sandbox.binary("2.24.0"), timeout=5)
    scenario = Scenario(sandbox)
    scenario.step("stopped", "tp_connection", dict(base, state="stopped"))
    scenario.step("manager present", "tp_manager", dict(base, wait_timeout=30))
    for mode in CLUSTER_MESSAGES:
        def rule(namespace, mode=mode):
            return [{"mode": mode, "verb": "*", "resource": "*" if mode == "unreachable" else "deployments",
                     "namespace": namespace}]
        scenario.case(Case("cluster %s tp_manager" % mode, "tp_manager", dict(base, values={"x": mode}),
                           {"cluster": rule("ambassador")}, message=[cluster_message(mode, "ambassador")],
                           max_seconds=5 + STARTUP_SLACK))
        scenario.case(Case("cluster %s tp_intercept" % mode, "tp_intercept",
                           dict(base, name="fresh-app", namespace="app", port=18000, verify_local="off"),
                           {"cluster": rule("app")}, message=[cluster_message(mode, "app")],
                           max_seconds=5 + STARTUP_SLACK))
        scenario.case(Case("cluster %s tp_info" % mode, "tp_info", dict(base, gather=["manager"]),
                           {"cluster": rule("ambassador")}, message=[cluster_message(mode, "ambassador")],
                           max_seconds=5 + STARTUP_SLACK))
    return scenario


def cluster_message(mode, namespace):
    return CLUSTER_MESSAGES[mode] % namespace if "%s" in CLUSTER_MESSAGES[mode] else CLUSTER_MESSAGES[mode]


@pytest.fixture(scope="module")
def cluster_run(sandbox, runner, manager_run):  # pylint: disable=unused-argument
    sandbox.clear_faults()
    mark = sandbox.mark()
    run = run_scenario(runner, cluster_scenario(sandbox))
    run["calls"] = sandbox.calls_since(mark)
    return run


CLUSTER_CASES = ["cluster %s %s" % (mode, module) for mode in CLUSTER_MESSAGES
                 for module in ("tp_manager", "tp_intercept", "tp_info")]


@pytest.mark.parametrize("ident", CLUSTER_CASES)
def test_cluster_api_fault(ident, cluster_run):
    task, _after = check_case(cluster_run, ident)
    # Nothing was changed on the strength of an unreadable cluster: no CLI call that acts ran during the case.
    during = [call for call in cluster_run["calls"] if task["start"] <= call["ts"] <= task["end"]]
    assert mutating(during) == []


# ---------------------------------------------------------------------------------------------------------------
# downloads: 404, 500, truncated, slow, wrong bytes
# ---------------------------------------------------------------------------------------------------------------

def host_platform():
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    return "%s-%s" % (platform.system().lower(), machine)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()  # pylint: disable=consider-using-with


DOWNLOAD_CASES = {
    # ident: (mirror fault, tp_binary options, outcome, message patterns)
    "download 404": ({"mode": "404"}, {}, "failed", [r"v2\.25\.0 has no artifact telepresence-\S+ at http"]),
    "download 500 once": ({"mode": "500", "times": 1}, {"retries": 2}, "ok", []),
    "download 500 always": ({"mode": "500"}, {"retries": 1}, "failed", [r"HTTP 500", r"gave up after 2 attempts"]),
    "download truncated once": ({"mode": "truncate", "times": 1}, {"retries": 2}, "ok", []),
    "download truncated always": ({"mode": "truncate"}, {"retries": 0}, "failed", [r"cut short"]),
    "download slow": ({"mode": "slow"}, {"retries": 0, "timeout": 2}, "failed",
                      [r"did not finish within the timeout of 2 s|stalled"]),
    "download wrong bytes with checksum_url": ({"mode": "wrong"}, {"checksum_url": "{mirror}/v2.25.0/sha256sums.txt"},
                                               "failed", [r"checksum mismatch", "nothing was installed"]),
    "download wrong bytes without digest": ({"mode": "wrong"}, {}, "failed",
                                            [r"does not run as a Telepresence client|reports version", "nothing was"]),
}


@pytest.fixture(scope="module")
def download_run(sandbox, runner, tmp_path_factory):
    base = tmp_path_factory.mktemp("downloads")
    mirror = sandbox.env["TP_SANDBOX_MIRROR"]
    artifact = "v2.25.0/telepresence-%s" % host_platform()
    scenario = Scenario(sandbox)
    folders = {}
    for ident, (fault, options, _outcome, _message) in DOWNLOAD_CASES.items():
        folder = base / ident.replace(" ", "-")
        folder.mkdir()
        # an older client already installed: a failed upgrade must leave it untouched
        shutil.copy2(sandbox.binary("2.24.0"), folder / "telepresence")
        folders[ident] = folder
        args = dict(version="2.25.0", dest=str(folder / "telepresence"), base_url=mirror, allow_insecure_http=True,
                    prefer_system=False)
        args.update({key: value.format(mirror=mirror) if isinstance(value, str) else value
                     for key, value in options.items()})
        scenario.folders = [str(folder)]
        scenario.case(Case(ident, "tp_binary", args, {"mirror": {artifact: fault}}))
    run = run_scenario(runner, scenario)
    run["folders"] = folders
    run["old_sha256"] = sha256(sandbox.binary("2.24.0"))
    run["new_sha256"] = sha256(sandbox.dir / "mirror" / artifact)
    return run


@pytest.mark.parametrize("ident", list(DOWNLOAD_CASES))
def test_download_fault(ident, download_run):
    fault, options, outcome, message = DOWNLOAD_CASES[ident]
    case = download_run["scenario"].cases[ident]
    case.outcomes, case.message = (outcome,), message
    timeout = options.get("timeout", 300)
    case.max_seconds = STARTUP_SLACK + (min(timeout, 30) + 2) * (options.get("retries", 3) + 1)
    task, after = check_case(download_run, ident)
    dest = download_run["folders"][ident] / "telepresence"
    assert sorted(os.listdir(download_run["folders"][ident])) == ["telepresence"]
    if outcome == "ok":
        assert task["result"]["source"] == "downloaded" and task["result"]["version"] == "2.25.0"
        assert sha256(dest) == download_run["new_sha256"]
    else:
        assert sha256(dest) == download_run["old_sha256"], "a failed download changed the installed client"
    counters = (after.get("fault_counters") or {}).get("mirror") or {}
    used = sum(counters.values()) if isinstance(counters, dict) else counters
    if fault["mode"] == "404":
        assert used == 1, "a 404 must not be retried: %s" % counters
    if ident == "download 500 always":
        assert used == 2, counters
