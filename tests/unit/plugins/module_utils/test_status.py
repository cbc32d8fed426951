# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Status and list normalisation for every shape in the facts sheet (sections 2 and 3)."""
from __future__ import annotations

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils.status import (
    disposition_name,
    intercepts_from_list,
    normalize_intercept,
    normalize_status,
    port_identifier_base,
    read_status_json,
    workloads_from_list,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import TelepresenceError

NOT_RUNNING_2_20 = {"root_daemon": {}, "traffic_manager": {"name": "", "traffic_agent": "", "version": ""},
                    "user_daemon": {}}

CONNECTED_2_24 = {
    "user_daemon": {"running": True, "name": "sandbox-app", "version": "2.24.0", "status": "Connected",
                    "kubernetes_server": "http://127.0.0.1:1234", "kubernetes_context": "sandbox",
                    "namespace": "app", "manager_namespace": "ambassador", "mapped_namespaces": ["app"],
                    "intercepts": [{"name": "fresh-app", "client": "dev@host"}]},
    "root_daemon": {"running": True, "name": "sandbox-app", "version": "v2.24.0", "api_version": 3},
    "traffic_manager": {"name": "OSS Traffic Manager", "version": "v2.24.0",
                        "traffic_agent": "ghcr.io/telepresenceio/tel2:2.24.0"},
}


def test_not_running():
    status = normalize_status(NOT_RUNNING_2_20, client_version="v2.20.2")
    assert status["connected"] is False and status["user_daemon_running"] is False
    assert status["state"] == "Not running" and status["client_version"] == "2.20.2"
    assert status["manager_version"] is None and status["intercepts"] == [] and status["connections"] == 0


def test_not_running_v2_encoder_keeps_false_values():
    data = {"user_daemon": {"running": False, "in_docker": False, "intercepts": None}, "root_daemon": {"running": False}}
    status = normalize_status(data)
    assert status["connected"] is False and status["in_docker"] is False and status["intercepts"] == []


def test_connected_host_daemons_versions_without_v():
    status = normalize_status(CONNECTED_2_24, client_version="2.24.0")
    assert status["connected"] and status["user_daemon_running"] and status["root_daemon_running"]
    assert (status["context"], status["namespace"], status["manager_namespace"]) == ("sandbox", "app", "ambassador")
    assert (status["daemon_version"], status["root_daemon_version"], status["manager_version"]) == \
        ("2.24.0", "2.24.0", "2.24.0")
    assert status["intercepts"] == ["fresh-app"] and status["mapped_namespaces"] == ["app"]


def test_user_daemon_version_with_v_in_2_17():
    data = {"user_daemon": {"running": True, "version": "v2.17.0", "status": "Connected"}}
    assert normalize_status(data)["daemon_version"] == "2.17.0"


def test_running_but_not_connected():
    data = {"user_daemon": {"running": True, "status": "Not connected", "version": "2.24.0"}}
    status = normalize_status(data)
    assert status["user_daemon_running"] and not status["connected"] and status["state"] == "Not connected"


def test_docker_daemon_shape():
    data = {"daemon": {"running": True, "in_docker": True, "status": "Connected", "kubernetes_context": "sandbox",
                       "namespace": "app", "manager_namespace": "ambassador", "version": "2.24.0"},
            "traffic_manager": {"version": "v2.24.0"}}
    status = normalize_status(data)
    assert status["in_docker"] and status["connected"] and status["root_daemon_running"]
    assert status["namespace"] == "app"


def test_multi_daemon_shape_picks_the_connected_one():
    idle = {"user_daemon": {"running": True, "status": "Not connected"}}
    data = {"connections": [idle, CONNECTED_2_24]}
    status = normalize_status(data)
    assert status["connected"] and status["namespace"] == "app" and status["connections"] == 2


def test_garbage_is_not_connected():
    assert normalize_status(None)["connected"] is False
    assert normalize_status({"user_daemon": "weird"})["connected"] is False


LIST_2_24 = [{
    "name": "fresh-app", "namespace": "app", "workload_resource_type": "Deployment", "agent_version": "2.24.0",
    "intercept_info": [{
        "spec": {"name": "fresh-app", "client": "dev@host", "agent": "fresh-app", "workload_kind": "Deployment",
                 "namespace": "app", "target_host": "127.0.0.1", "target_port": 8000, "port_identifier": "http",
                 "service_port_name": "http", "service_port": 80, "service_name": "fresh-app"},
        "id": "abc:fresh-app", "disposition": 1, "environment": {"API_TOKEN": "s3cret", "HOME": "/"}}],
}, {"name": "no-service", "namespace": "app", "workload_resource_type": "Deployment"}]


def test_intercepts_from_list_2_24_envelope_payload():
    [item] = intercepts_from_list(LIST_2_24)
    assert item["name"] == "fresh-app" and item["disposition"] == "ACTIVE"
    assert (item["workload"], item["namespace"], item["service"]) == ("fresh-app", "app", "fresh-app")
    assert (item["service_port"], item["local_port"], item["workload_kind"]) == ("http", 8000, "Deployment")
    assert item["environment_names"] == ["API_TOKEN", "HOME"]
    assert "s3cret" not in repr(item)


def test_intercepts_from_list_2_20_plural_key():
    data = [{"name": "fresh-app", "intercept_infos": [{"spec": {"name": "x", "service_port_name": "http",
                                                                "target_port": 9000}, "disposition": 2}]}]
    [item] = intercepts_from_list(data)
    assert (item["name"], item["disposition"], item["local_port"], item["service_port"]) == ("x", "WAITING", 9000, "http")


def test_intercepts_numeric_service_port():
    data = [{"name": "numeric-port", "intercept_info": [{"spec": {"name": "n", "service_port": 8080}, "disposition": 1}]}]
    assert intercepts_from_list(data)[0]["service_port"] == "8080"


def test_workloads_from_every_list_shape():
    assert workloads_from_list([]) == []
    assert workloads_from_list(None) == []
    assert len(workloads_from_list(LIST_2_24)) == 2
    assert workloads_from_list({"stdout": LIST_2_24})[0]["name"] == "fresh-app"


def test_detailed_output_object():
    info = {"id": "abc:fresh-app", "name": "fresh-app", "disposition": "ACTIVE", "workload_kind": "Deployment",
            "target_host": "127.0.0.1", "target_port": 8000, "port_id": "http", "environment": {"A": "1"},
            "mount": {"local_dir": "", "error": "sshfs not found"}}
    item = normalize_intercept(info)
    assert (item["name"], item["disposition"], item["service_port"], item["local_port"]) == \
        ("fresh-app", "ACTIVE", "http", 8000)
    assert item["environment_names"] == ["A"] and item["mount"]["error"] == "sshfs not found"


def test_disposition_names():
    assert [disposition_name(v) for v in (1, 4, 9, "active", None, 42)] == \
        ["ACTIVE", "NO_AGENT", "REMOVED", "ACTIVE", None, "42"]


def test_executable_of_the_user_daemon_in_every_shape():
    assert normalize_status(CONNECTED_2_24)["executable"] is None
    running = {"user_daemon": {"running": True, "executable": "/opt/tp/telepresence"}}
    assert normalize_status(running)["executable"] == "/opt/tp/telepresence"
    assert normalize_status({"connections": [running]})["executable"] == "/opt/tp/telepresence"
    assert normalize_status({"daemon": {"running": True, "executable": "/x"}})["executable"] == "/x"


@pytest.mark.parametrize("reported,base", [
    ("http", "http"), ("http/TCP", "http"), ("http/UDP", "http"), ("8080/TCP", "8080"), ("8080", "8080"),
    ("http/tcp", "http"), ("/TCP", "/TCP"), ("a/b", "a/b"), (8080, "8080"), (None, None),
])
def test_port_identifier_base_strips_only_a_protocol_suffix(reported, base):
    # facts sheet section 3, "The reported port identifier carries the protocol in 2.20.x"
    assert port_identifier_base(reported) == base


def test_2_20_list_and_detailed_output_report_the_bare_identifier():
    listed = [{"name": "fresh-app", "intercept_infos": [{"spec": {"name": "fresh-app", "port_identifier": "http/TCP",
                                                                  "service_port_name": "http"}, "disposition": 1}]}]
    assert intercepts_from_list(listed)[0]["service_port"] == "http"
    detailed = {"name": "fresh-app", "disposition": "ACTIVE", "port_id": "8080/TCP", "service_port_id": "8080/TCP"}
    assert normalize_intercept(detailed)["service_port"] == "8080"


# facts sheet section 9, "`status` after `quit` (2.21-2.31): UNVERIFIED" - three shapes, one reading
EMPTY_CONNECTED = {"user_daemon": {"running": True, "name": "sandbox-app", "version": "2.24.0", "status": "Connected"},
                   "root_daemon": {"running": True}, "traffic_manager": {"name": "", "version": "", "traffic_agent": ""}}


class FakeRunner:
    def __init__(self, reply):
        self.reply = reply

    def run_json(self, args):
        assert args == ["status"]
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def test_connected_without_cluster_fields_is_not_connected():
    status = normalize_status(EMPTY_CONNECTED)
    assert status["connected"] is False and status["state"] == "Not connected"
    assert status["user_daemon_running"] is True and status["context"] is None


def test_status_daemon_error_reads_as_a_running_disconnected_daemon():
    error = TelepresenceError("connector.Status: rpc error: code = Unavailable desc = no active session",
                              argv=["telepresence", "status", "--output", "json"], rc=1)
    status = normalize_status(read_status_json(FakeRunner(error)))
    assert (status["connected"], status["state"], status["user_daemon_running"]) == (False, "Not connected", True)
    assert status["error"] == "connector.Status: rpc error: code = Unavailable desc = no active session"


@pytest.mark.parametrize("error", [TelepresenceError("timed out", rc=-9, timed_out=True),
                                   TelepresenceError("not JSON", rc=0)])
def test_status_timeout_or_garbage_stays_an_error(error):
    with pytest.raises(TelepresenceError):
        read_status_json(FakeRunner(error))


def test_status_json_passes_through():
    assert read_status_json(FakeRunner(CONNECTED_2_24)) is CONNECTED_2_24
    assert normalize_status(CONNECTED_2_24)["connected"] is True
