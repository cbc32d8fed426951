# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tp_intercept helpers: the pre-flight messages, mapping comparison, secret collection and env files."""
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils.intercept import (
    EnvFiles,
    PreflightError,
    describe_intercept,
    env_file_values,
    env_path_problem,
    environment_values,
    find_own,
    header_list,
    mapping_problems,
    not_json_message,
    own_intercepts,
    preflight,
    secret_values,
    service_port_problem,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import KubeError


def deployment(name, labels=None, namespace="app"):
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"metadata": {"labels": labels or {"app": name}}}}}


def service(name, ports, selector=None, namespace="app"):
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name} if selector is None else selector, "ports": ports}}


def port(number, name=None):
    item = {"port": number, "targetPort": 8080, "protocol": "TCP"}
    if name:
        item["name"] = name
    return item


class FakeKube:
    """Objects by (api, resource, namespace); ``forbidden`` lists resources answering 403."""

    def __init__(self, namespaces=("app", "default"), objects=None, forbidden=()):
        self.objects = {("core", "namespace", None): [{"metadata": {"name": n}} for n in namespaces]}
        self.objects.update(objects or {})
        self.forbidden = set(forbidden)
        self.calls = []

    def _items(self, api, resource, namespace):
        if resource in self.forbidden:
            raise KubeError("forbidden (403): cannot list %s" % resource, status=403)
        return self.objects.get((api, resource, namespace), [])

    def get(self, api, resource, name, namespace=None):
        self.calls.append(("get", resource, name, namespace))
        for item in self._items(api, resource, namespace):
            if item["metadata"]["name"] == name:
                return item
        return None

    def list(self, api, resource, namespace=None):
        self.calls.append(("list", resource, namespace))
        return self._items(api, resource, namespace)


def seeded(extra=None):
    objects = {
        ("apps", "deployment", "app"): [deployment(n) for n in ("fresh-app", "multi-port", "no-service", "web-only")],
        ("core", "service", "app"): [service("fresh-app", [port(80, "http")]),
                                     service("multi-port", [port(80, "http"), port(9090, "grpc")]),
                                     service("web-only", [port(80, "web")])],
    }
    objects.update(extra or {})
    return FakeKube(objects=objects)


# --- pre-flight ---------------------------------------------------------------------------------

def test_preflight_finds_workload_service_and_named_port():
    target = preflight(seeded(), "app", "multi-port", None, "grpc")
    assert target == {"workload_kind": "Deployment", "service": "multi-port", "port_name": "grpc", "port_number": 9090,
                      "target_port": 8080}


def test_a_named_service_is_looked_up_before_the_workload():
    # The workload defaults to the Service's name: a typo in it must say Service, not workload.
    with pytest.raises(PreflightError) as info:
        preflight(seeded(), "app", "cart-typo", "cart-typo")
    assert info.value.msg.startswith("Service app/cart-typo not found (Services there: fresh-app, multi-port, web-only)")


def test_preflight_port_by_number():
    assert preflight(seeded(), "app", "fresh-app", None, "80")["port_name"] == "http"


def test_missing_namespace_lists_namespaces():
    with pytest.raises(PreflightError) as info:
        preflight(seeded(), "nope", "fresh-app")
    assert info.value.msg == ("namespace nope not found (Namespaces there: app, default); create it or set the "
                              "namespace option")


def test_namespace_check_skipped_when_forbidden():
    kube = seeded()
    kube.forbidden.add("namespace")
    assert preflight(kube, "app", "fresh-app")["service"] == "fresh-app"


def test_missing_workload_lists_deployments():
    with pytest.raises(PreflightError) as info:
        preflight(seeded(), "app", "missing-thing")
    assert info.value.msg == ("workload missing-thing not found in namespace app (Deployments there: fresh-app, "
                              "multi-port, no-service, web-only); set the workload option to one of them")


def test_statefulset_is_a_workload():
    kube = seeded({("apps", "stateful_set", "app"): [deployment("db")],
                   ("core", "service", "app"): [service("db", [port(5432, "http")])]})
    assert preflight(kube, "app", "db")["workload_kind"] == "StatefulSet"


def test_no_service_selects_workload():
    with pytest.raises(PreflightError) as info:
        preflight(seeded(), "app", "no-service")
    assert info.value.msg == ("no Service in namespace app selects workload no-service (Services there: fresh-app, "
                              "multi-port, web-only); create one or set the service option")


def test_named_service_missing_or_not_selecting():
    with pytest.raises(PreflightError) as info:
        preflight(seeded(), "app", "fresh-app", "nope")
    assert info.value.msg.startswith("Service app/nope not found (Services there: fresh-app, multi-port, web-only)")
    with pytest.raises(PreflightError) as info:
        preflight(seeded(), "app", "fresh-app", "web-only")
    assert info.value.msg == ("Service app/web-only does not select workload fresh-app (its selector: app=web-only; "
                              "the workload's pod labels: app=fresh-app)")


def test_several_services_need_the_service_option():
    kube = seeded({("core", "service", "app"): [service("a", [port(80, "http")], {"app": "fresh-app"}),
                                                service("b", [port(80, "http")], {"app": "fresh-app"})]})
    with pytest.raises(PreflightError, match="Services a, b in namespace app all select workload fresh-app; set "
                                             "the service option"):
        preflight(kube, "app", "fresh-app")
    assert preflight(kube, "app", "fresh-app", "b")["service"] == "b"


def test_service_with_empty_selector_selects_nothing():
    kube = seeded({("core", "service", "app"): [service("fresh-app", [port(80, "http")], selector={})]})
    with pytest.raises(PreflightError, match="no Service in namespace app selects workload fresh-app"):
        preflight(kube, "app", "fresh-app")


def test_missing_port_name_lists_ports():
    with pytest.raises(PreflightError) as info:
        preflight(seeded(), "app", "web-only")
    assert info.value.msg == "Service app/web-only has ports web(80), no port named http; set service_port to one of them"


def test_missing_port_number_and_unnamed_ports():
    kube = seeded({("apps", "deployment", "app"): [deployment("numeric-port")],
                   ("core", "service", "app"): [service("numeric-port", [port(8080)])]})
    with pytest.raises(PreflightError, match=r"Service app/numeric-port has ports 8080, no port named http"):
        preflight(kube, "app", "numeric-port")
    with pytest.raises(PreflightError, match=r"has ports 8080, no port numbered 81;"):
        preflight(kube, "app", "numeric-port", None, "81")
    assert preflight(kube, "app", "numeric-port", None, "8080")["port_number"] == 8080


def test_api_errors_other_than_403_propagate():
    kube = seeded()
    kube.forbidden.add("deployment")
    with pytest.raises(KubeError):
        preflight(kube, "app", "fresh-app")


# --- input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["http", "80", "1", "65535", "grpc-web", "h2c"])
def test_good_service_ports(value):
    assert service_port_problem(value) is None


@pytest.mark.parametrize("value", ["0", "70000", "HTTP", "http!", "-http", "http-", "a--b", "a" * 16, "", "123-",
                                   "http\n", "80\n", "\u0668\u0660", "000080"])
def test_bad_service_ports(value):
    assert service_port_problem(value)


def test_header_list_forms():
    assert header_list({"x-b": "2", "x-a": "1"}) == ["x-a=1", "x-b=2"]
    assert header_list(["x-dev=alice"]) == ["x-dev=alice"]
    assert header_list(None) == []
    with pytest.raises(ValueError, match="not name=value"):
        header_list(["novalue"])
    with pytest.raises(ValueError, match="must be a dict"):
        header_list(42)
    for smuggled in (["x-dev=me\n"], ["x-dev=me\r\nx-evil: 1"], {"x-dev": "a\nb"}):
        with pytest.raises(ValueError, match="not name=value"):
            header_list(smuggled)


def test_env_path_problems(tmp_path):
    assert "absolute" in env_path_problem("relative/.env")
    assert "is a directory" in env_path_problem(str(tmp_path))
    assert "does not exist" in env_path_problem(str(tmp_path / "missing" / ".env"))
    assert env_path_problem(str(tmp_path / ".env")) is None


# --- mappings and intercepts ----------------------------------------------------------------------

TARGET = {"workload_kind": "Deployment", "service": "fresh-app", "port_name": "http", "port_number": 80}
WANTED = {"workload": "fresh-app", "namespace": "app", "service_port": "http", "local_port": 8000}


def existing(**changes):
    base = {"workload": "fresh-app", "namespace": "app", "service_port": "http", "local_port": 8000,
            "service": "fresh-app"}
    base.update(changes)
    return base


@pytest.mark.parametrize("changes,problem", [
    ({}, None),
    ({"service_port": "80"}, None),  # the same port reported by number
    ({"service_port": None}, None),  # not reported: cannot differ
    ({"local_port": 8001}, "local port 8001, wanted 8000"),
    ({"workload": "other"}, "workload other, wanted fresh-app"),
    ({"service_port": "grpc"}, "service port grpc, wanted http"),
    ({"namespace": "dev"}, "namespace dev, wanted app"),
    ({"service": "other"}, "service other, wanted fresh-app"),
    # 2.20-2.22 report the protocol (facts sheet section 3, "The reported port identifier carries the protocol")
    ({"service_port": "http/TCP"}, None),
    ({"service_port": "80/TCP"}, None),
    ({"service_port": "http/UDP"}, None),
    ({"service_port": "grpc/TCP"}, "service port grpc, wanted http"),
])
def test_mapping_problems(changes, problem):
    assert mapping_problems(existing(**changes), WANTED, TARGET) == ([problem] if problem else [])


LIST_2_24 = {"cmd": "list", "stdout": [{
    "name": "fresh-app", "namespace": "app", "workload_resource_type": "Deployment",
    "intercept_info": [
        {"spec": {"name": "fresh-app", "client": "other@host", "agent": "fresh-app", "namespace": "app",
                  "target_port": 9000, "port_identifier": "http"}, "id": "s2:fresh-app", "disposition": 1},
        {"spec": {"name": "fresh-app", "client": "dev@host", "agent": "fresh-app", "namespace": "app",
                  "target_port": 8000, "port_identifier": "http", "service_name": "fresh-app"},
         "id": "s1:fresh-app", "disposition": 1, "environment": {"API_TOKEN": "s3cr3t-value", "PORT": "8080"},
         "client_mount_point": "/tmp/m", "mount_point": "/var/m"}]}]}


def test_find_own_picks_this_clients_intercept_and_returns_only_environment_names():
    found, raw = find_own(LIST_2_24, "fresh-app", {"fresh-app": "dev@host"})
    assert found["id"] == "s1:fresh-app"
    described = describe_intercept(found, raw)
    assert described["environment_names"] == ["API_TOKEN", "PORT"]
    assert "s3cr3t-value" not in repr(described)
    assert described["ports"] == ["8000:http"] and described["disposition"] == "ACTIVE"
    assert described["mount"] == {"local_dir": "/tmp/m", "remote_dir": "/var/m", "error": None}


def test_find_own_ignores_other_clients_and_matches_ids():
    assert find_own(LIST_2_24, "fresh-app", {"other": "dev@host"}) == (None, None)
    assert find_own(LIST_2_24, "fresh-app", {}) == (None, None)
    assert find_own(LIST_2_24, "nope", {"nope": None}) == (None, None)
    assert find_own(LIST_2_24, "fresh-app", {"fresh-app": None})[0]["id"] == "s2:fresh-app"
    assert find_own(LIST_2_24, "fresh-app", None, intercept_id="s1:fresh-app")[0]["local_port"] == 8000


@pytest.mark.parametrize("status,expected", [
    ({"user_daemon": {"intercepts": [{"name": "a", "client": "dev@host"}]}}, {"a": "dev@host"}),
    ({"daemon": {"intercepts": [{"name": "b"}]}}, {"b": None}),
    ({"connections": [{"user_daemon": {}}, {"user_daemon": {"intercepts": [{"name": "c", "client": "x"}]}}]},
     {"c": "x"}),
    ({"user_daemon": {}}, {}),
    (None, {}),
])
def test_own_intercepts_every_status_shape(status, expected):
    assert own_intercepts(status) == expected


def test_find_own_reads_2_20_intercept_infos():
    data = {"cmd": "list", "stdout": [{"name": "fresh-app", "intercept_infos": [
        {"spec": {"name": "fresh-app", "agent": "fresh-app", "target_port": 8000}, "disposition": 2}]}]}
    found, _raw = find_own(data, "fresh-app", {"fresh-app": None})
    assert found["disposition"] == "WAITING" and found["local_port"] == 8000


@pytest.mark.parametrize("args, rc, stderr, message", [
    (["list", "--namespace", "app"], 0, "", "telepresence list exited 0 with output that is not JSON (withheld: it may "
                                            "hold the workload's environment)"),
    (["intercept"], 0, "Flag --output has been deprecated, use --format instead\n",
     "telepresence intercept exited 0 with output that is not JSON (withheld: it may hold the workload's environment)"),
    (["intercept"], 0, "some chatter\n", "telepresence intercept exited 0 with output that is not JSON (withheld: it "
                                         "may hold the workload's environment)"),
    (["list"], 1, "", "telepresence list exited 1 with output that is not JSON (withheld: it may hold the workload's "
                      "environment)"),
    (["list"], 1, "telepresence list: error: connection refused\n", "telepresence list failed: connection refused"),
])
def test_not_json_message_names_the_command_and_exit_code_never_the_output(args, rc, stderr, message):
    assert not_json_message(args, rc, stderr) == message


def test_environment_values_are_collected_anywhere_but_not_trivial_ones():
    data = {"stdout": [{"intercept_info": [{"environment": {
        "API_TOKEN": "s3cr3t-value", "PORT": "8080", "PROTO": "tcp", "EMPTY": "",
        "TELEPRESENCE_CONTAINER": "fresh-app", "DB_URL": "postgres://u:p@db/x"}}]}],
        "environment": {"OTHER": "another-secret"}}
    assert sorted(environment_values(data)) == ["another-secret", "postgres://u:p@db/x", "s3cr3t-value"]
    assert secret_values({"X": None, "Y": 123456}) == ["123456"]


def test_env_file_values_json_and_docker(tmp_path):
    json_file = tmp_path / "env.json"
    json_file.write_text('{"API_TOKEN": "s3cr3t-value", "TELEPRESENCE_ROOT": "/tmp/x"}')
    docker_file = tmp_path / "env"
    docker_file.write_text("API_TOKEN=s3cr3t=with=equals\nTELEPRESENCE_MOUNTS=\n")
    assert env_file_values(str(json_file)) == ["s3cr3t-value"]
    assert env_file_values(str(docker_file)) == ["s3cr3t=with=equals"]
    assert env_file_values(str(tmp_path / "missing")) == []


# --- env files ------------------------------------------------------------------------------------

def test_env_files_written_whole_and_private(tmp_path):
    destination = tmp_path / ".env"
    with EnvFiles({"env_file": str(destination), "env_json": None}) as files:
        temp = files.temp_path("env_file")
        assert os.path.dirname(temp) != str(tmp_path)
        assert stat.S_IMODE(os.stat(os.path.dirname(temp)).st_mode) == 0o700
        assert files.temp_path("env_json") is None
        with open(temp, "w") as handle:
            handle.write("A=secret\n")
        assert not destination.exists()
        assert files.commit(os.geteuid(), os.getegid()) == []
    assert destination.read_text() == "A=secret\n"
    assert stat.S_IMODE(destination.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == [".env"]


def test_env_files_nothing_left_on_failure(tmp_path):
    destination = tmp_path / ".env"
    with pytest.raises(RuntimeError):
        with EnvFiles({"env_file": str(destination)}) as files:
            with open(files.temp_path("env_file"), "w") as handle:
                handle.write("partial")
            raise RuntimeError("intercept failed")
    assert os.listdir(tmp_path) == []


def test_env_files_report_what_the_cli_did_not_write(tmp_path):
    with EnvFiles({"env_json": str(tmp_path / "env.json")}) as files:
        assert files.written() == {}
        assert files.commit(os.geteuid(), os.getegid()) == ["env_json"]
    assert os.listdir(tmp_path) == []


def test_mount_is_reported_as_asked_not_from_its_presence_in_the_output():
    """facts sheet section 3, "Mount point in 2.20.2 detailed output": --mount=false still prints a mount."""
    found = {"name": "fresh-app", "local_port": 8000, "service_port": "http"}
    detailed_2_20 = {"name": "fresh-app", "port_id": "http/TCP", "mount": {"remote_dir": "/tmp/telfs-1", "port": 2222}}
    assert describe_intercept(found, {}, detailed_2_20, mount_requested=False)["mount"] is False
    assert describe_intercept(found, {}, detailed_2_20, mount_requested=True)["mount"] == \
        {"local_dir": None, "remote_dir": "/tmp/telfs-1", "error": None}
    assert describe_intercept(found, {}, detailed_2_20)["mount"]["remote_dir"] == "/tmp/telfs-1"
