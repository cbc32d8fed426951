# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tp_intercept's modes (replace, wiretap, ingest; facts sheet section 5 "Sibling commands"): the gate per client
version, the exact argv per mode and version, idempotence, a change of mode, absent, and the decision table.

Uses the scripted process and fake cluster of test_tp_intercept.
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils import intercept_module as tp_intercept
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules import test_tp_intercept as base
# binary, clock, isolation and run are fixtures: importing them is what makes pytest use them here.
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.test_tp_intercept import (  # noqa: F401
    STATUS, TAIL, Failed, connected, detailed, info, listing, ok, output_err, version)
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.test_tp_intercept import (  # noqa: F401 pylint: disable=unused-import
    binary, clock, isolation, run)

LIST = ["list", "--namespace", "app"]
JSON = ["--output", "json"]
REPLACE = ["replace", "fresh-app", "--port", "8000:http", "--mount=false"]
WIRETAP = ["wiretap", "fresh-app", "--workload", "fresh-app", "--service", "fresh-app", "--port", "8000:http",
           "--mount=false"]
INGEST = ["ingest", "fresh-app", "--mount=false"]


@pytest.fixture(autouse=True)
def containers(monkeypatch):
    """fresh-app's container ports, which replace's pre-flight reads (named after the Service port)."""
    workload = base.deployment("fresh-app")
    workload["spec"]["template"]["spec"] = {"containers": [{"name": "fresh-app",
                                                            "ports": [{"name": "http", "containerPort": 8080}]}]}
    others = [item for item in base.CLUSTER[("apps", "deployment", "app")] if item["metadata"]["name"] != "fresh-app"]
    monkeypatch.setitem(base.CLUSTER, ("apps", "deployment", "app"), [workload] + others)


def engaged(v="2.24", **keys):
    """connected() whose user daemon lists engagements under ``keys`` (replacements=[...], wiretaps=[...])."""
    status = connected(v)
    for key, names in keys.items():
        status["user_daemon"][key] = [{"name": name, "client": "dev@host"} for name in names]
    return status


def tapped(mode, **overrides):
    """An intercept_info element of a replace or wiretap, with the spec boolean newer clients report."""
    element = info(**overrides)
    element["spec"][mode] = True
    return element


def ingest_listing(*workloads):
    return {"cmd": "list", "stdout": [{"name": name, "namespace": "app", "workload_resource_type": "Deployment",
                                       "ingest_info": [{"workload": name, "container": name}]} for name in workloads]}


# --- the gate -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,since", [("ingest", "2.21.0"), ("replace", "2.22.0"), ("wiretap", "2.23.0")])
def test_each_mode_refused_on_a_client_too_old_before_any_other_call(run, mode, since):
    with pytest.raises(Failed) as failed:
        run({"port": 8000, "mode": mode}, version("2.20"))
    message = failed.value.result["msg"]
    assert message.startswith("mode %s needs a Telepresence client %s or newer (telepresence %s), but the client is "
                              "2.20.2" % (mode, since, mode))
    assert not failed.value.result.get("changed") and base.FakeKube.calls == []


def test_replace_needs_name_and_workload_to_agree(run):
    with pytest.raises(Failed) as failed:
        run({"port": 8000, "mode": "replace", "workload": "web-only"})
    assert "mode replace names the engagement after its workload" in failed.value.result["msg"]
    assert not failed.value.result.get("commands")      # and the script allowed no call at all


def test_headers_refused_outside_mode_intercept(run):
    with pytest.raises(Failed) as failed:
        run({"port": 8000, "mode": "wiretap", "http_headers": {"x-dev": "me"}})
    assert failed.value.result["msg"].startswith("http_headers and preview_url apply to mode intercept only")


def test_ingest_needs_no_port(run):
    run({"mode": "ingest", "state": "present"}, version("2.24"), ok(STATUS, engaged()),
        ok(LIST + ["--ingests"] + JSON, ingest_listing("fresh-app")))


# --- argv per mode and version --------------------------------------------------------------------------------------

@pytest.mark.parametrize("v,extra", [("2.24", []), ("2.25", []), ("2.29", ["--namespace", "app"]),
                                     ("2.30", ["--namespace", "app"])])
def test_replace_argv_per_version(run, binary, v, extra):
    err = output_err(v)
    listed = LIST + ["--replacements"] + JSON
    done = run({"port": 8000, "mode": "replace"},
               version(v),
               ok(STATUS, engaged(v)),
               ok(listed, listing(v), err=err),
               ok(REPLACE + extra + TAIL, dict(detailed(), replace=True), err=err),
               ok(listed, listing(v, tapped("replace", port_id="http")), err=err))
    result = done.result
    assert result["command"] == [binary] + REPLACE + extra + TAIL
    assert (result["action"], result["intercept"]["mode"], result["intercept"]["disposition"]) == \
        ("created", "replace", "ACTIVE")
    assert result["intercept"]["ports"] == ["8000:http"]


@pytest.mark.parametrize("v,extra", [("2.24", []), ("2.29", ["--namespace", "app"])])
def test_wiretap_argv_per_version(run, binary, v, extra):
    err = output_err(v)
    listed = LIST + ["--wiretaps"] + JSON
    done = run({"port": 8000, "mode": "wiretap"},
               version(v),
               ok(STATUS, engaged(v)),
               ok(listed, listing(v), err=err),
               ok(WIRETAP + extra + TAIL, dict(detailed(), wiretap=True), err=err),
               ok(listed, listing(v, tapped("wiretap")), err=err))
    assert done.result["command"] == [binary] + WIRETAP + extra + TAIL
    assert done.result["intercept"]["mode"] == "wiretap"


@pytest.mark.parametrize("v,extra", [("2.24", []), ("2.25", []), ("2.29", ["--namespace", "app"])])
def test_ingest_argv_per_version_writes_no_port_and_no_detailed_output(run, binary, v, extra):
    err = output_err(v)
    listed = LIST + ["--ingests"] + JSON
    done = run({"mode": "ingest"},
               version(v),
               ok(STATUS, engaged(v)),
               ok(listed, {"cmd": "list", "stdout": []}, err=err),
               ok(INGEST + extra + JSON, "", err=err),      # 2.23+: --output json prints nothing on success
               ok(listed, ingest_listing("fresh-app"), err=err))
    result = done.result
    assert result["command"] == [binary] + INGEST + extra + JSON
    assert (result["changed"], result["action"], result["intercept"]["mode"], result["intercept"]["ports"]) == \
        (True, "created", "ingest", [])


class IngestWithEnvFile(list):
    """The ingest argv with a private temporary --env-file path (EnvFiles picks it), compared around that path."""

    def __eq__(self, other):
        return other[:3] == INGEST and other[3] == "--env-file" and other[5:] == JSON


def test_ingest_env_file_is_passed_and_written_0600(run, tmp_path):
    destination = tmp_path / "ingest.env"

    def write(argv):
        with open(argv[argv.index("--env-file") + 1], "w") as handle:
            handle.write("API_TOKEN=%s\n" % base.SECRET)
    listed = LIST + ["--ingests"] + JSON
    done = run({"mode": "ingest", "env_file": str(destination)},
               version("2.24"), ok(STATUS, engaged()), ok(listed, {"cmd": "list", "stdout": []}),
               (IngestWithEnvFile(), 0, "", "", write),
               ok(listed, ingest_listing("fresh-app")))
    assert done.result["action"] == "created"
    assert destination.read_text() == "API_TOKEN=%s\n" % base.SECRET
    assert oct(destination.stat().st_mode & 0o777) == "0o600"
    assert base.SECRET not in done.output


# --- idempotence, a change of mode, absent ---------------------------------------------------------------------------

def test_same_wiretap_active_is_unchanged(run):
    done = run({"port": 8000, "mode": "wiretap"},
               version("2.24"),
               ok(STATUS, engaged(wiretaps=["fresh-app"])),
               ok(LIST + ["--wiretaps"] + JSON, listing("2.24", tapped("wiretap"))))
    assert (done.result["changed"], done.result["action"], done.result["intercept"]["mode"]) == \
        (False, "none", "wiretap")


@pytest.mark.parametrize("spec_flag", [True, False])
def test_same_replace_unchanged_whatever_the_list_reports(run, spec_flag):
    element = tapped("replace") if spec_flag else info()
    done = run({"port": 8000, "mode": "replace"},
               version("2.24"),
               ok(STATUS, engaged(replacements=["fresh-app"])),
               ok(LIST + ["--replacements"] + JSON, listing("2.24", element)))
    assert done.result["action"] == "none" and done.result["intercept"]["mode"] == "replace"


def test_wiretap_reported_apart_in_status_becomes_an_intercept(run, binary):
    """status lists the wiretap under `wiretaps` (the 2.27+ shape): --intercepts does not show it, every filter does."""
    all_filters = LIST + ["--intercepts", "--replacements", "--wiretaps"] + JSON
    done = run({"port": 8000},
               ok(STATUS, engaged(wiretaps=["fresh-app"])),
               ok(LIST + ["--intercepts"] + JSON, listing("2.24")),
               version("2.24"),
               ok(all_filters, listing("2.24", info())),        # no spec boolean: status says wiretap
               ok(["leave", "fresh-app"]),
               ok(base.INTERCEPT_BASE + TAIL, detailed()),
               ok(LIST + ["--intercepts"] + JSON, listing("2.24", info())))
    result = done.result
    assert (result["action"], result["reasons"]) == ("recreated", ["mode wiretap, wanted intercept"])
    assert result["intercept"]["mode"] == "intercept"


def test_intercept_listed_among_status_intercepts_becomes_a_wiretap(run):
    """status lists everything under `intercepts` and list has no booleans: only the filters tell the modes apart."""
    all_filters = LIST + ["--intercepts", "--replacements", "--wiretaps"] + JSON
    done = run({"port": 8000, "mode": "wiretap"},
               version("2.24"),
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(LIST + ["--wiretaps"] + JSON, listing("2.24")),
               ok(all_filters, listing("2.24", info())),
               ok(["leave", "fresh-app"]),
               ok(WIRETAP + TAIL, dict(detailed(), wiretap=True)),
               ok(LIST + ["--wiretaps"] + JSON, listing("2.24", tapped("wiretap"))))
    assert done.result["reasons"] == ["mode unknown, wanted wiretap"]
    assert done.result["intercept"]["mode"] == "wiretap"


EXISTS = 'connector.CreateIntercept: Intercept with name "fresh-app" already exists'


def test_wiretap_among_status_intercepts_found_after_already_exists(run, binary):
    """status lumps the wiretap among the intercepts: only `already exists` and list under every filter reveal it."""
    listed = LIST + ["--intercepts"] + JSON
    done = run({"port": 8000},
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(listed, listing("2.24")),
               version("2.24"),
               base.fail(base.INTERCEPT_BASE + TAIL, out=json.dumps({"cmd": "intercept", "err": EXISTS})),
               ok(STATUS, connected(intercepts=["fresh-app"])),
               ok(listed, listing("2.24")),
               ok(LIST + ["--intercepts", "--replacements", "--wiretaps"] + JSON, listing("2.24", tapped("wiretap"))),
               ok(["leave", "fresh-app"]),
               ok(base.INTERCEPT_BASE + TAIL, detailed()),
               ok(listed, listing("2.24", info())))
    result = done.result
    assert (result["changed"], result["action"], result["reasons"]) == (True, "recreated",
                                                                        ["mode wiretap, wanted intercept"])
    assert result["command"] == [binary] + base.INTERCEPT_BASE + TAIL and result["intercept"]["mode"] == "intercept"


def test_check_mode_change_of_mode_reports_recreated_and_the_diff(run):
    done = run({"port": 8000, "mode": "replace"},
               version("2.24"),
               ok(STATUS, engaged(wiretaps=["fresh-app"])),
               ok(LIST + ["--replacements"] + JSON, listing("2.24")),
               ok(LIST + ["--intercepts", "--replacements", "--wiretaps"] + JSON, listing("2.24", tapped("wiretap"))),
               check=True, diff=True)
    result = done.result
    assert (result["changed"], result["action"]) == (True, "recreated")
    assert result["diff"]["before"]["mode"] == "wiretap" and result["diff"]["after"]["mode"] == "replace"


@pytest.mark.parametrize("v,leave", [("2.24", ["leave", "fresh-app"]),
                                     ("2.29", ["leave", "fresh-app", "--namespace", "app"]),
                                     ("2.30", ["detach", "fresh-app", "--namespace", "app"])])
def test_absent_ingest_leaves_the_workload(run, binary, v, leave):
    listed = LIST + ["--ingests"] + JSON
    done = run({"state": "absent", "mode": "ingest"},
               ok(STATUS, engaged(v)),
               ok(listed, ingest_listing("fresh-app"), err=output_err(v)),
               version(v),
               ok(leave),
               ok(listed, {"cmd": "list", "stdout": []}, err=output_err(v)))
    assert (done.result["changed"], done.result["action"], done.result["command"]) == (True, "removed",
                                                                                       [binary] + leave)


def test_absent_ingest_when_none_is_unchanged(run):
    done = run({"state": "absent", "mode": "ingest"},
               ok(STATUS, engaged()),
               ok(LIST + ["--ingests"] + JSON, {"cmd": "list", "stdout": []}))
    assert (done.result["changed"], done.result["action"]) == (False, "none")


def test_replace_preflight_names_the_container_ports(run):
    with pytest.raises(Failed) as failed:
        run({"port": 8000, "mode": "replace", "service_port": "grpc"}, version("2.24"))
    assert failed.value.result["msg"] == ("workload app/fresh-app has container ports http(8080), no container port "
                                          "grpc; mode replace takes container ports (not Service ports): set "
                                          "service_port to one of them")


# --- the decision table ----------------------------------------------------------------------------------------------

WANTED = {"workload": "fresh-app", "namespace": "app", "service_port": "http", "local_port": 8000}
TARGET = {"service": "fresh-app", "port_name": "http", "port_number": 80}


def existing(mode, **overrides):
    found = {"workload": "fresh-app", "namespace": "app", "service_port": "http", "local_port": 8000,
             "disposition": "ACTIVE", "mode": mode, "service": "fresh-app"}
    found.update(overrides)
    return found


@pytest.mark.parametrize("wanted_mode,found,action,reasons", [
    ("intercept", None, "created", []),
    ("wiretap", existing("wiretap"), "none", []),
    ("replace", existing("replace", service=None), "none", []),
    ("intercept", existing("wiretap"), "recreated", ["mode wiretap, wanted intercept"]),
    ("replace", existing("intercept"), "recreated", ["mode intercept, wanted replace"]),
    ("wiretap", existing("wiretap", local_port=9000), "recreated", ["local port 9000, wanted 8000"]),
    ("replace", existing("replace", service_port="grpc"), "recreated", ["container port grpc, wanted http"]),
    ("ingest", existing("ingest", service_port=None, local_port=None), "none", []),
    ("ingest", existing("ingest", namespace="other"), "recreated", ["namespace other, wanted app"]),
    ("wiretap", existing("wiretap", disposition="WAITING"), "recreated", ["disposition WAITING, wanted ACTIVE"]),
])
def test_decide_present_per_mode(wanted_mode, found, action, reasons):
    params = {"name": "fresh-app", "namespace": "app", "env_file": None, "env_json": None}
    wanted = dict(WANTED, mode=wanted_mode)
    assert tp_intercept.decide_present(params, {"intercepts": []}, "none", found, wanted, TARGET) == (action, reasons)
