# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Malformed input to every module and to the roles' variables fails cleanly (issue 8, Reliability 1).

All cases run in ONE playbook (each task ``ignore_errors``; each role case in a block whose rescue records the
failure). Then, per case: the task failed, its message names the option (or role variable) and the accepted form.
For the whole run: no Python traceback anywhere in the output, nothing changed in the scratch folder the cases point
at, nothing changed in the cluster (namespaces, deployments, secrets, configmaps, services and their
resourceVersions), and no Telepresence CLI call that changes anything (calls.log).
"""

from __future__ import annotations

import os
import re

import pytest

from tp_harness import calls_during, collections_path, mutating, runner, sandbox, tree  # noqa: F401  pylint: disable=unused-import


class Case:
    """One malformed input: a module task (``module`` + ``args``) or a role (``role`` + ``role_vars``)."""

    def __init__(self, ident, module=None, args=None, role=None, role_vars=None, expect=(), no_calls=False):
        self.ident = ident
        self.module = module
        self.args = args or {}
        self.role = role
        self.role_vars = role_vars or {}
        # Regular expressions the failure message must all match: the option's name and the accepted form.
        self.expect = expect
        # Fails in validation: no Telepresence CLI call at all while it runs, not even a reading one.
        self.no_calls = no_calls

    def __repr__(self):
        return self.ident


def cases(scratch, binary, kubeconfig):
    """Every malformed input. ``scratch`` is the folder whose content must not change."""
    dest = os.path.join(scratch, "bin", "telepresence")
    tpb = dict(dest=dest, base_url="https://mirror.invalid/releases", prefer_system=False)
    common = dict(binary_path=binary)
    icpt = dict(common, name="fresh-app", namespace="app", port=8000, verify_local="off")
    conn = dict(common)
    mgr = dict(common)
    form_version = r"X\.Y\.Z|release version"
    form_int = r"int"
    form_dns = r"DNS-1123"
    form_port = r"1 and 65535|1-65535"
    form_choice = r"must be one (or more )?of"
    return [
        # --- tp_binary: versions, paths, checksums, URLs, numbers, types ------------------------------------
        Case("binary version partial", "tp_binary", dict(tpb, version="2.24"), expect=["version", form_version]),
        Case("binary version latest", "tp_binary", dict(tpb, version="latest"), expect=["version", form_version]),
        Case("binary version injection", "tp_binary", dict(tpb, version="v2.24.0; rm -rf /"),
             expect=["version", form_version]),
        Case("binary version empty", "tp_binary", dict(tpb, version=""), expect=["version", form_version]),
        Case("binary dest relative", "tp_binary", dict(tpb, dest="bin/telepresence"),
             expect=["dest", "absolute path"]),
        Case("binary dest is a folder", "tp_binary", dict(tpb, dest=os.path.join(scratch, "bin")),
             expect=["dest", "folder", "path of the executable"]),
        Case("binary dest under a file", "tp_binary", dict(tpb, dest=os.path.join(scratch, "a-file", "telepresence")),
             expect=["dest", "not a folder"]),
        Case("binary checksum not hex", "tp_binary", dict(tpb, checksum="sha256:xyz"),
             expect=["checksum", r"sha256:<64 hex digits>"]),
        Case("binary checksum md5", "tp_binary", dict(tpb, checksum="md5:d41d8cd98f00b204e9800998ecf8427e"),
             expect=["checksum", r"sha256:<64 hex digits>"]),
        Case("binary checksum too short", "tp_binary", dict(tpb, checksum="356f075ee670af4b5a85"),
             expect=["checksum", r"64 hex"]),
        Case("binary base_url ftp", "tp_binary", dict(tpb, base_url="ftp://mirror.example/releases"),
             expect=["base_url", r"https://"]),
        Case("binary base_url plain http", "tp_binary", dict(tpb, base_url="http://mirror.example/releases"),
             expect=["base_url", "http://", "allow_insecure_http"]),
        Case("binary base_url not a URL", "tp_binary", dict(tpb, base_url="mirror example"),
             expect=["base_url", r"blanks|https://"]),
        Case("binary base_url bad port", "tp_binary", dict(tpb, base_url="https://mirror.example:99999/x"),
             expect=["base_url", r"not a valid URL|port"]),
        Case("binary checksum_url plain http", "tp_binary",
             dict(tpb, checksum_url="http://mirror.example/sha256sums.txt"), expect=["checksum_url", "https://"]),
        Case("binary timeout zero", "tp_binary", dict(tpb, timeout=0), expect=["timeout", "positive"]),
        Case("binary timeout negative", "tp_binary", dict(tpb, timeout=-5), expect=["timeout", "positive"]),
        Case("binary timeout not a number", "tp_binary", dict(tpb, timeout="soon"), expect=["timeout", form_int]),
        Case("binary retries negative", "tp_binary", dict(tpb, retries=-1), expect=["retries", "0 or more"]),
        Case("binary state unknown", "tp_binary", dict(tpb, state="installed"), expect=["state", form_choice]),
        Case("binary policy unknown", "tp_binary", dict(tpb, checksum_policy="strict"),
             expect=["checksum_policy", form_choice]),
        Case("binary force not a bool", "tp_binary", dict(tpb, force="maybe"), expect=["force", "bool"]),
        # --- tp_manager -------------------------------------------------------------------------------------
        Case("manager namespace uppercase", "tp_manager", dict(mgr, manager_namespace="Ambassador"),
             expect=["manager_namespace", form_dns]),
        Case("manager namespace underscore", "tp_manager", dict(mgr, manager_namespace="amb_assador"),
             expect=["manager_namespace", form_dns]),
        Case("manager namespace too long", "tp_manager", dict(mgr, manager_namespace="a" * 64),
             expect=["manager_namespace", form_dns]),
        Case("manager values a string", "tp_manager", dict(mgr, values="agent.logLevel=debug"),
             expect=["values", "mapping"]),
        Case("manager values a list", "tp_manager", dict(mgr, values=[1, 2]), expect=["values", "mapping"]),
        Case("manager wait_timeout negative", "tp_manager", dict(mgr, wait_timeout=-1),
             expect=["wait_timeout", "positive"]),
        Case("manager version invalid", "tp_manager", dict(mgr, version="2.x"), expect=["version", "release version"]),
        Case("manager kubeconfig missing", "tp_manager", dict(mgr, kubeconfig=os.path.join(scratch, "no-kubeconfig")),
             expect=["kubeconfig", "does not exist", "readable kubeconfig"]),
        Case("manager context unknown", "tp_manager", dict(mgr, kubeconfig=kubeconfig, context="nope"),
             expect=["context", "nope", "not found", "sandbox"]),
        Case("manager timeout not a number", "tp_manager", dict(mgr, timeout="1h"), expect=["timeout", form_int]),
        # --- tp_intercept -----------------------------------------------------------------------------------
        Case("intercept port zero", "tp_intercept", dict(icpt, port=0), expect=["port", form_port]),
        Case("intercept port too big", "tp_intercept", dict(icpt, port=70000), expect=["port", form_port]),
        Case("intercept port not a number", "tp_intercept", dict(icpt, port="abc"), expect=["port", form_int]),
        Case("intercept port missing", "tp_intercept", {k: v for k, v in icpt.items() if k != "port"},
             expect=["port is required", form_port]),
        Case("intercept name uppercase", "tp_intercept", dict(icpt, name="Fresh_App"), expect=["name", form_dns]),
        Case("intercept name too long", "tp_intercept", dict(icpt, name="x" * 64), expect=["name", form_dns]),
        Case("intercept namespace uppercase", "tp_intercept", dict(icpt, namespace="App"),
             expect=["namespace", form_dns]),
        Case("intercept workload leading dash", "tp_intercept", dict(icpt, workload="-fresh"),
             expect=["workload", form_dns]),
        Case("intercept service dotted", "tp_intercept", dict(icpt, service="fresh.app"),
             expect=["service", form_dns]),
        Case("intercept wait_timeout negative", "tp_intercept", dict(icpt, wait_timeout=-3),
             expect=["wait_timeout", "positive"]),
        Case("intercept service_port bad name", "tp_intercept", dict(icpt, service_port="Http_Port"),
             expect=["service_port", "port name|port number"]),
        Case("intercept service_port out of range", "tp_intercept", dict(icpt, service_port="99999"),
             expect=["service_port", "1-65535|65535"]),
        Case("intercept env_file relative", "tp_intercept", dict(icpt, env_file="app.env"),
             expect=["env_file", "absolute path"]),
        Case("intercept env_file is a folder", "tp_intercept", dict(icpt, env_file=os.path.join(scratch, "envdir")),
             expect=["env_file", "directory", "name a file"]),
        Case("intercept env_json folder missing", "tp_intercept",
             dict(icpt, env_json=os.path.join(scratch, "missing", "app.json")), expect=["env_json", "does not exist"]),
        Case("intercept env files the same", "tp_intercept",
             dict(icpt, env_file=os.path.join(scratch, "envdir", "a"), env_json=os.path.join(scratch, "envdir", "a")),
             expect=["env_file and env_json", "different paths"]),
        Case("intercept http_headers a string", "tp_intercept", dict(icpt, http_headers="x-dev"),
             expect=["http_headers", "dict|name=value"]),
        Case("intercept http_headers bad entry", "tp_intercept", dict(icpt, http_headers=["x dev: me"]),
             expect=["http_headers", "name=value"]),
        Case("intercept verify_local unknown", "tp_intercept", dict(icpt, verify_local="maybe"),
             expect=["verify_local", form_choice]),
        Case("intercept manager namespace bad", "tp_intercept", dict(icpt, manager_namespace="Amb"),
             expect=["manager_namespace", form_dns]),
        Case("intercept namespace trailing newline", "tp_intercept", dict(icpt, namespace="app\n"),
             expect=["namespace", form_dns], no_calls=True),
        Case("intercept name trailing newline", "tp_intercept", dict(icpt, name="fresh-app\n"),
             expect=["name", form_dns], no_calls=True),
        Case("intercept port boolean", "tp_intercept", dict(icpt, port=True),
             expect=["port", form_port, "boolean"], no_calls=True),
        Case("intercept wait_timeout boolean", "tp_intercept", dict(icpt, wait_timeout=True),
             expect=["wait_timeout", "positive", "boolean"], no_calls=True),
        Case("manager namespace trailing newline", "tp_manager", dict(mgr, manager_namespace="ambassador\n"),
             expect=["manager_namespace", form_dns], no_calls=True),
        Case("manager timeout boolean", "tp_manager", dict(mgr, timeout=True),
             expect=["timeout", "positive", "boolean"], no_calls=True),
        Case("binary retries boolean", "tp_binary", dict(tpb, retries=True),
             expect=["retries", "0 or more", "boolean"], no_calls=True),
        # --- tp_connection ------------------------------------------------------------------------------------
        Case("connection namespace blank", "tp_connection", dict(conn, namespace="bad ns"),
             expect=["namespace", form_dns]),
        Case("connection also_proxy not a CIDR", "tp_connection", dict(conn, also_proxy=["not-a-cidr"]),
             expect=["also_proxy", "CIDR"]),
        Case("connection never_proxy bad mask", "tp_connection", dict(conn, never_proxy=["10.0.0.0/40"]),
             expect=["never_proxy", "CIDR"]),
        Case("connection mapped_namespaces uppercase", "tp_connection", dict(conn, mapped_namespaces=["App"]),
             expect=["mapped_namespaces", form_dns]),
        Case("connection state unknown", "tp_connection", dict(conn, state="up"), expect=["state", form_choice]),
        Case("connection timeout zero", "tp_connection", dict(conn, timeout=0), expect=["timeout", "positive"]),
        Case("connection binary missing", "tp_connection", dict(conn, binary_path=os.path.join(scratch, "nope")),
             expect=["binary_path", "not an executable file"]),
        Case("connection namespace trailing newline", "tp_connection", dict(conn, namespace="app\n"),
             expect=["namespace", form_dns], no_calls=True),
        Case("connection timeout boolean", "tp_connection", dict(conn, timeout=True),
             expect=["timeout", "positive", "boolean"], no_calls=True),
        # --- tp_info ------------------------------------------------------------------------------------------
        Case("info gather unknown", "tp_info", dict(common, gather=["everything"]), expect=["gather", form_choice]),
        Case("info gather empty", "tp_info", dict(common, gather=[]), expect=["gather", "at least one"]),
        Case("info namespace bad", "tp_info", dict(common, namespace="NS!"), expect=["namespace", form_dns]),
        # --- role variables -------------------------------------------------------------------------------------
        Case("role client version latest", role="telepresence_client",
             role_vars=dict(telepresence_version="latest", telepresence_binary_dest=dest),
             expect=["version", form_version]),
        Case("role client timeout wrong type", role="telepresence_client",
             role_vars=dict(telepresence_client_download_timeout="soon", telepresence_binary_dest=dest),
             expect=["telepresence_client_download_timeout", form_int]),
        Case("role client plain http mirror", role="telepresence_client",
             role_vars=dict(telepresence_client_base_url="http://mirror.example/releases",
                            telepresence_binary_dest=dest),
             expect=["base_url", "allow_insecure_http"]),
        Case("role client policy unknown", role="telepresence_client",
             role_vars=dict(telepresence_client_checksum_policy="never", telepresence_binary_dest=dest),
             expect=["telepresence_client_checksum_policy", form_choice]),
        Case("role manager namespace bad", role="telepresence_manager",
             role_vars=dict(telepresence_manager_namespace="Bad_NS", telepresence_binary_path=binary),
             expect=["manager_namespace", form_dns]),
        Case("role manager values not a dict", role="telepresence_manager",
             role_vars=dict(telepresence_manager_values="debug", telepresence_binary_path=binary),
             expect=["telepresence_manager_values", "dict"]),
        Case("role connection namespace bad", role="telepresence_connection",
             role_vars=dict(telepresence_namespace="Bad NS", telepresence_binary_path=binary),
             expect=["namespace", form_dns]),
        Case("role intercept port zero", role="telepresence_intercept",
             role_vars=dict(telepresence_local_port=0, telepresence_binary_path=binary,
                            telepresence_intercept_verify_local="off"),
             expect=["port", form_port]),
        Case("role intercept port boolean", role="telepresence_intercept",
             role_vars=dict(telepresence_local_port=True, telepresence_binary_path=binary,
                            telepresence_intercept_verify_local="off"),
             expect=["telepresence_local_port", "whole number", "boolean"], no_calls=True),
        Case("role intercept namespace trailing newline", role="telepresence_intercept",
             role_vars=dict(telepresence_namespace="app\n", telepresence_binary_path=binary,
                            telepresence_intercept_verify_local="off"),
             expect=["telepresence_namespace", form_dns], no_calls=True),
        Case("role connection timeout boolean", role="telepresence_connection",
             role_vars=dict(telepresence_timeout=True, telepresence_binary_path=binary),
             expect=["telepresence_timeout", "whole number", "boolean"], no_calls=True),
        Case("role intercept state unknown", role="telepresence_intercept",
             role_vars=dict(telepresence_intercept_state="gone", telepresence_binary_path=binary),
             expect=["telepresence_intercept_state", form_choice]),
        Case("role status gather unknown", role="telepresence_status",
             role_vars=dict(telepresence_status_gather=["bogus"], telepresence_binary_path=binary),
             expect=["gather", form_choice]),
        Case("role manager context unknown", role="telepresence_manager",
             role_vars=dict(telepresence_context="nope", telepresence_kubeconfig=kubeconfig,
                            telepresence_binary_path=binary),
             expect=["telepresence_context", "nope", "not found"]),
        Case("role intercept service typo", role="telepresence_intercept",
             role_vars=dict(telepresence_service="fresh-ap", telepresence_intercept_workload="fresh-app",
                            telepresence_kubeconfig=kubeconfig, telepresence_binary_path=binary,
                            telepresence_intercept_verify_local="off"),
             expect=["Service app/fresh-ap not found", "set telepresence_service to one of them"], no_calls=True),
        Case("role intercept service and workload typo", role="telepresence_intercept",
             role_vars=dict(telepresence_service="fresh-ap", telepresence_kubeconfig=kubeconfig,
                            telepresence_binary_path=binary, telepresence_intercept_verify_local="off"),
             expect=["Service app/fresh-ap not found", "telepresence_service"], no_calls=True),
        Case("role connection binary missing", role="telepresence_connection",
             role_vars=dict(telepresence_binary_path=os.path.join(scratch, "nope")),
             expect=["telepresence_binary_path", "not an executable file", "telepresence_client role"]),
        Case("role timeout wrong type", role="telepresence_connection",
             role_vars=dict(telepresence_timeout="forever", telepresence_binary_path=binary),
             expect=["telepresence_timeout", form_int]),
    ]


def task_for(case):
    """Module cases: one task. Role cases: a block whose rescue records the failure under the case's name."""
    if case.module:
        return {"name": case.ident, "devloop.telepresence.%s" % case.module: case.args, "ignore_errors": True}
    return {"name": "%s (block)" % case.ident,
            "block": [{"name": "%s (role)" % case.ident,
                       "ansible.builtin.include_role": {"name": "devloop.telepresence.%s" % case.role},
                       "vars": case.role_vars},
                      {"name": "%s did not fail" % case.ident, "ansible.builtin.debug": {"msg": "no failure"}}],
            "rescue": [{"name": case.ident, "ansible.builtin.debug": {"var": "ansible_failed_result"}}]}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    base = tmp_path_factory.mktemp("scratch")
    (base / "bin").mkdir()
    (base / "envdir").mkdir()
    (base / "a-file").write_text("a regular file where a folder is expected\n")
    return base


@pytest.fixture(scope="module")
def bad_input_run(sandbox, runner, scratch):
    """Runs every case once; returns (cases, play result, disk before/after, cluster before/after, calls)."""
    every = cases(str(scratch), sandbox.binary(), sandbox.kubeconfig)
    sandbox.clear_faults()
    sandbox.reset_session()
    disk_before = tree(scratch)
    cluster_before = sandbox.cluster_listing()
    mark = sandbox.mark()
    # Role cases each get a play of their own: a role dependency (the telepresence role, with its argument spec)
    # runs once per play, so later role cases in the same play would skip its validation.
    plays = [[task_for(case) for case in every if case.module]] + [[task_for(case)] for case in every if case.role]
    result = runner.plays(plays, extra_vars={"telepresence_summary_print": False, "telepresence_find_client": False})
    return {"cases": {case.ident: case for case in every}, "play": result, "disk_before": disk_before,
            "disk_after": tree(scratch), "cluster_before": cluster_before, "cluster_after": sandbox.cluster_listing(),
            "calls": sandbox.calls_since(mark), "leftovers": runner.leftovers()}


def test_there_are_at_least_40_cases_across_modules_and_roles(scratch):
    every = cases(str(scratch), "/bin/false", "/dev/null")
    assert len(every) >= 40
    modules = {"tp_binary", "tp_manager", "tp_intercept", "tp_connection", "tp_info"}
    assert {case.module for case in every if case.module} == modules
    assert len([case for case in every if case.role]) >= 8


CASE_IDS = [case.ident for case in cases("/scratch", "/bin/false", "/dev/null")]


@pytest.mark.parametrize("ident", CASE_IDS)
def test_case_fails_naming_the_option_and_the_accepted_form(ident, bad_input_run):
    case = bad_input_run["cases"][ident]
    play = bad_input_run["play"]
    assert not [item for item in play.tasks if item["task"] == "%s did not fail" % ident], "%s did not fail" % ident
    task = play.task(ident)
    result = task["result"]
    if case.role:
        result = result["ansible_failed_result"]
        assert result.get("failed") is True, result
    else:
        assert task["status"] == "failed", result
    message = result.get("msg") or ""
    if isinstance(message, list):
        message = " ".join(message)
    for pattern in case.expect:
        assert re.search(pattern, message, re.IGNORECASE), "%r not in the message: %s" % (pattern, message)
    assert "Traceback" not in str(result)
    # The role cases record their failure in a rescue task; the calls made while the case ran are what counts.
    window = dict(task)
    included = [item for item in play.tasks if item["task"] == "%s (role)" % ident]
    if case.role and included:
        window["start"] = included[0]["start"]
    assert mutating(calls_during(bad_input_run["calls"], window)) == [], "CLI calls that change something"
    if case.no_calls:
        assert calls_during(bad_input_run["calls"], window) == [], "CLI calls before validation failed"


ROLE_CASE_IDS = [case.ident for case in cases("/scratch", "/bin/false", "/dev/null") if case.role]


@pytest.mark.parametrize("ident", ROLE_CASE_IDS)
def test_role_failure_names_a_telepresence_variable(ident, bad_input_run):
    """A playbook user set telepresence_* variables, not module options: every role failure names one (issue 14)."""
    result = bad_input_run["play"].task(ident)["result"]["ansible_failed_result"]
    message = result.get("msg") or ""
    if isinstance(message, list):
        message = " ".join(message)
    assert re.search(r"\btelepresence_[a-z_]+", message), message
    # Module option names a playbook user never set do not stand alone in it.
    assert not re.search(r"(?<![\w.])(binary_path|allow_insecure_http|base_url|manager_namespace|tp_binary)\b", message), \
        message


def test_no_traceback_anywhere_in_the_output(bad_input_run):
    play = bad_input_run["play"]
    assert play.tasks, play.output[-3000:]
    assert "Traceback" not in play.output
    assert "MODULE FAILURE" not in play.output


def test_nothing_changed_on_disk(bad_input_run):
    assert bad_input_run["disk_after"] == bad_input_run["disk_before"]
    assert bad_input_run["leftovers"] == []


def test_nothing_changed_in_the_cluster(bad_input_run):
    assert bad_input_run["cluster_after"] == bad_input_run["cluster_before"]


def test_no_cli_call_changed_anything(bad_input_run):
    assert mutating(bad_input_run["calls"]) == []
