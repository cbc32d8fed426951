# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster-API client under a hanging exec credential plugin, a black-holed API server, and kubeconfig
credentials in every form kubectl accepts (issues 12 and 13; docs/SECURITY.md, docs/RELIABILITY.md).

Each group is one playbook against the sandbox, with its own kubeconfig written by the test:
- a hanging exec plugin makes tp_info, tp_manager and tp_intercept fail within ``timeout`` + 2 s with a message
  naming the plugin command and the kubeconfig user and suggesting to log in first, and leaves no plugin process;
- an API that accepts connections and never answers fails tp_info and tp_manager with ``timeout: 5`` within 7 s;
- tokens inline, as a ``token: |`` block scalar, in a ``tokenFile`` written by echo, as exec ``env`` values and as a
  password never appear in ``-vvv --diff`` output, results or the ANSIBLE_LOG_PATH log, on success and on failure;
  a newline-terminated token works (kubectl trims it).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading

import pytest
import yaml

from tp_harness import collections_path, runner, sandbox  # noqa: F401  pylint: disable=unused-import

HANG_TIMEOUT = 3
HANG_SLACK = 2          # the bound: timeout + 2 s for the whole task
BLACK_HOLE_TIMEOUT = 5
BLACK_HOLE_LIMIT = 7
PLUGIN_MESSAGE = (r"the exec credential plugin '%s' of kubeconfig user 'sso-dev' \(.*\) did not answer within %d s"
                  r".*log in first, for example by running `kubectl get ns` once")


def server_of(sandbox):
    return json.loads(open(sandbox.kubeconfig).read())["clusters"][0]["cluster"]["server"]


def kubeconfig(path, server, user, name="dev"):
    """A YAML kubeconfig with one context ``sandbox`` whose user ``name`` is ``user``."""
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "sandbox",
              "clusters": [{"name": "sandbox", "cluster": {"server": server}}],
              "users": [{"name": name, "user": user}],
              "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": name,
                                                           "namespace": "default"}}]}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(str(path), 0o600)
    return str(path)


def plugin(path, body):
    path.write_text("#!%s\n%s" % (sys.executable, body))
    os.chmod(str(path), 0o755)
    return str(path)


def exec_user(command, env=()):
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": command,
                     "interactiveMode": "Never", "env": [{"name": key, "value": value} for key, value in env]}}


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with open("/proc/%d/stat" % pid) as handle:  # a zombie has let go of everything
        return handle.read().split(") ")[-1][:1] != "Z"


def module_tasks(sandbox, kubeconfig_path, timeout, modules=("tp_info", "tp_manager", "tp_intercept")):
    base = dict(binary_path=sandbox.binary("2.24.0"), kubeconfig=kubeconfig_path, timeout=timeout)
    args = {"tp_info": dict(base, gather=["manager"]),
            "tp_manager": dict(base, wait_timeout=30),
            "tp_intercept": dict(base, name="fresh-app", namespace="app", port=18000, verify_local="off")}
    return [{"name": module, "devloop.telepresence.%s" % module: args[module], "ignore_errors": True}
            for module in modules]


# ---------------------------------------------------------------------------------------------------------------
# a hanging exec credential plugin
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hanging_plugin_run(sandbox, runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hanging-plugin")
    pids = folder / "pids"
    command = plugin(folder / "sso-login", "import os, time\nopen(%r, 'a').write('%%d\\n' %% os.getpid())\n"
                     "time.sleep(600)\n" % str(pids))
    path = kubeconfig(folder / "config", server_of(sandbox), exec_user(command), name="sso-dev")
    sandbox.clear_faults()
    sandbox.reset_session()
    # the manager is there, so that tp_manager's only reason to fail is the plugin
    setup = runner.play([{"name": "manager", "devloop.telepresence.tp_manager": dict(
        binary_path=sandbox.binary("2.24.0"), wait_timeout=30)}])
    assert setup.rc == 0, setup.output[-3000:]
    play = runner.play(module_tasks(sandbox, path, HANG_TIMEOUT))
    return {"play": play, "command": command,
            "pids": [int(line) for line in pids.read_text().split()] if pids.exists() else []}


@pytest.mark.parametrize("module", ["tp_info", "tp_manager", "tp_intercept"])
def test_hanging_exec_plugin_fails_within_the_timeout(hanging_plugin_run, module):
    task = hanging_plugin_run["play"].task(module)
    result = task["result"]
    assert task["status"] == "failed", result
    assert re.search(PLUGIN_MESSAGE % (re.escape(hanging_plugin_run["command"]), HANG_TIMEOUT), result["msg"]), \
        result["msg"]
    assert "Traceback" not in json.dumps(result)
    assert task["duration"] <= HANG_TIMEOUT + HANG_SLACK, "%s took %.1f s" % (module, task["duration"])


def test_hanging_exec_plugin_is_not_left_running(hanging_plugin_run):
    pids = hanging_plugin_run["pids"]
    assert len(pids) == 3, "the plugin ran %d times, not once per task" % len(pids)
    assert [pid for pid in pids if alive(pid)] == []


# ---------------------------------------------------------------------------------------------------------------
# an API server that accepts and never answers
# ---------------------------------------------------------------------------------------------------------------

class BlackHole:
    """A listening socket on 127.0.0.1 that accepts connections and never sends a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.sock.getsockname()[1]

    def _accept(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture(scope="module")
def black_hole_run(sandbox, runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("black-hole")
    hole = BlackHole()
    try:
        path = kubeconfig(folder / "config", hole.url, {"token": "black-hole-token-0f0f0f0f"})
        play = runner.play(module_tasks(sandbox, path, BLACK_HOLE_TIMEOUT, modules=("tp_info", "tp_manager")))
        connections = len(hole.held)
    finally:
        hole.close()
    return {"play": play, "connections": connections}


@pytest.mark.parametrize("module", ["tp_info", "tp_manager"])
def test_black_holed_api_fails_within_seven_seconds(black_hole_run, module):
    task = black_hole_run["play"].task(module)
    result = task["result"]
    assert task["status"] == "failed", result
    assert re.search(r"cannot reach the Kubernetes API of the current context to get \S+ in namespace ambassador: "
                     r"no answer within 5 s \(the timeout option\)", result["msg"]), result["msg"]
    assert task["duration"] <= BLACK_HOLE_LIMIT, "%s took %.1f s" % (module, task["duration"])
    assert "black-hole-token-0f0f0f0f" not in black_hole_run["play"].output


def test_black_holed_api_was_really_reached(black_hole_run):
    """The control: the modules connected (and waited) rather than failing before any request."""
    assert black_hole_run["connections"] >= 2


# ---------------------------------------------------------------------------------------------------------------
# credentials in every form: never in output, results or log
# ---------------------------------------------------------------------------------------------------------------

TOKENS = {
    "inline": "inline-token-3c1d5e7f9a",
    "block": "block-scalar-token-8b2e4c6a",
    "file": "token-file-token-5d7f9b1c",
    "exec": "exec-plugin-token-2a4c6e8f",
    "exec-env": "exec-env-secret-7e9a1b3d",
    "password": "basic-password-6f8b0d2e",
}


def credential_kubeconfigs(folder, server):
    """``{form: kubeconfig path}``; the sandbox API does not check credentials, so each must work."""
    token_file = folder / "token"
    token_file.write_text(TOKENS["file"] + "\n")  # as `echo TOKEN > token` writes it
    command = plugin(folder / "get-token", (
        "import json, os\nassert os.environ['SSO_SECRET'] == %r\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', 'kind': 'ExecCredential',"
        " 'status': {'token': %r}}))\n" % (TOKENS["exec-env"], TOKENS["exec"])))
    block = folder / "block"
    block.write_text("apiVersion: v1\nkind: Config\ncurrent-context: sandbox\nclusters:\n- name: sandbox\n  cluster:\n"
                     "    server: %s\nusers:\n- name: dev\n  user:\n    token: |\n      %s\ncontexts:\n- name: sandbox\n"
                     "  context: {cluster: sandbox, user: dev, namespace: default}\n" % (server, TOKENS["block"]))
    os.chmod(str(block), 0o600)
    return {
        "inline": kubeconfig(folder / "inline", server, {"token": TOKENS["inline"]}),
        "block": str(block),
        "file": kubeconfig(folder / "file", server, {"tokenFile": str(token_file)}),
        "exec": kubeconfig(folder / "exec", server, exec_user(command, [("SSO_SECRET", TOKENS["exec-env"])])),
        "password": kubeconfig(folder / "password", server, {"username": "admin", "password": TOKENS["password"]}),
    }


@pytest.fixture(scope="module")
def credentials_run(sandbox, runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("credentials")
    configs = credential_kubeconfigs(folder, server_of(sandbox))
    binary = sandbox.binary("2.24.0")
    tasks = []
    for form, path in configs.items():
        base = dict(binary_path=binary, kubeconfig=path, timeout=10)
        tasks += [
            {"name": "%s info" % form, "devloop.telepresence.tp_info": dict(base, gather=["manager"])},
            {"name": "%s manager" % form, "devloop.telepresence.tp_manager": dict(base, wait_timeout=30)},
            # the failure path: a namespace that does not exist
            {"name": "%s intercept fails" % form, "devloop.telepresence.tp_intercept": dict(
                base, name="fresh-app", namespace="nowhere", port=18000, verify_local="off"),
             "ignore_errors": True},
        ]
    # a token with a line break inside it: kubectl refuses it too; the message must not quote it
    broken = kubeconfig(folder / "broken", server_of(sandbox), {"token": "broken-token-1a2b\ntail-4d5e6f"})
    tasks.append({"name": "broken token", "devloop.telepresence.tp_info": dict(
        binary_path=binary, kubeconfig=broken, gather=["manager"]), "ignore_errors": True})
    sandbox.clear_faults()
    log = folder / "ansible.log"
    verbose = runner.play(tasks, args=["-vvv", "--diff"], callback="default", env={"ANSIBLE_LOG_PATH": str(log)})
    results = runner.play(tasks)
    return {"verbose": verbose, "results": results, "log": log, "broken": broken}


@pytest.mark.parametrize("form", ["inline", "block", "file", "exec", "password"])
def test_each_credential_form_works(credentials_run, form):
    play = credentials_run["results"]
    assert play.task("%s info" % form)["status"] == "ok", play.result("%s info" % form)
    assert play.result("%s info" % form)["manager"]["installed"] is True
    assert play.task("%s manager" % form)["status"] == "ok", play.result("%s manager" % form)
    failed = play.task("%s intercept fails" % form)
    assert failed["status"] == "failed" and "nowhere" in failed["result"]["msg"], failed["result"]


@pytest.mark.parametrize("form", sorted(TOKENS))
def test_credential_nowhere_in_output_results_or_log(credentials_run, form):
    secret = TOKENS[form]
    assert secret not in credentials_run["verbose"].output
    assert secret not in credentials_run["results"].output
    assert secret not in credentials_run["log"].read_text()


def test_token_with_a_line_break_is_reported_without_quoting_it(credentials_run):
    result = credentials_run["results"].result("broken token")
    assert result["msg"].startswith("the token of user dev in %s has invalid characters" % credentials_run["broken"])
    for run in (credentials_run["results"], credentials_run["verbose"]):
        assert "broken-token-1a2b" not in run.output and "tail-4d5e6f" not in run.output
    assert "broken-token-1a2b" not in credentials_run["log"].read_text()


def test_the_verbose_run_was_verbose(credentials_run):
    """The control: -vvv printed the invocations, and the log was written."""
    assert "invocation" in credentials_run["verbose"].output or "module_args" in credentials_run["verbose"].output
    assert credentials_run["log"].stat().st_size > 1000
