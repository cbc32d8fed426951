# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils import common


class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, **params):
        self.params = params

    def fail_json(self, **kwargs):
        raise Failed(kwargs)


@pytest.mark.parametrize("value", ["app", "ambassador", "a", "a-1", "x" * 63, "0abc"])
def test_dns1123_ok(value):
    assert common.dns1123_label_problem(value) is None


@pytest.mark.parametrize("value", ["", "App", "-a", "a-", "a_b", "a.b", "x" * 64, "app; rm -rf /", "app\n",
                                   "ambassador\n", "\napp", None, True])
def test_dns1123_bad(value):
    assert common.dns1123_label_problem(value)


def test_check_dns1123_names_option_and_form():
    with pytest.raises(Failed) as info:
        common.check_dns1123_labels(FakeModule(manager_namespace="Ambassador"), "manager_namespace")
    msg = info.value.args[0]["msg"]
    assert msg.startswith("manager_namespace 'Ambassador'") and "DNS-1123 label" in msg


def test_check_positive():
    common.check_positive(FakeModule(timeout=1), "timeout")
    with pytest.raises(Failed, match="timeout must be a positive number"):
        common.check_positive(FakeModule(timeout=-3), "timeout")
    with pytest.raises(Failed):
        common.check_positive(FakeModule(timeout=0), "timeout")


@pytest.mark.parametrize("port", [0, 70000, -1])
def test_check_port_bad(port):
    with pytest.raises(Failed, match="port must be a TCP port between 1 and 65535"):
        common.check_port(FakeModule(port=port), "port")


def test_check_port_ok():
    common.check_port(FakeModule(port=8000), "port")
    common.check_port(FakeModule(port=None), "port")


def test_argument_spec_merges_and_copies():
    spec = common.argument_spec(name=dict(type="str", required=True), timeout=dict(type="int", default=5))
    assert spec["name"]["required"] and spec["timeout"]["default"] == 5
    assert common.COMMON_ARGUMENT_SPEC["timeout"]["default"] == 60
    assert spec["kubeconfig"]["fallback"][1] == ["K8S_AUTH_KUBECONFIG", "KUBECONFIG"]
    assert spec["manager_namespace"]["default"] == "ambassador"


def test_fail_with_passes_error_details():
    class Err(Exception):
        def details(self):
            return {"command": ["tp", "x"], "rc": 1}
    with pytest.raises(Failed) as info:
        common.fail_with(FakeModule(), Err("boom"), changed=False)
    assert info.value.args[0] == {"msg": "boom", "command": ["tp", "x"], "rc": 1, "changed": False}


@pytest.mark.parametrize("raw, expected", [("v2.24.0", "2.24.0"), ("2.24.0", "2.24.0"), ("", None), (None, None)])
def test_strip_v(raw, expected):
    assert common.strip_v(raw) == expected


YAML_KUBECONFIG = """apiVersion: v1
users:
- name: dev
  user:
    token: abcdef123456
    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVkt
- name: basic
  user:
    password: "hunter2-long"
    username: admin
"""


def test_kubeconfig_secrets_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "config"
    yaml_file.write_text(YAML_KUBECONFIG)
    json_file = tmp_path / "config.json"
    json_file.write_text('{"users": [{"name": "s", "user": {"token": "sandbox-token-0123456789"}}]}')
    found = common.kubeconfig_secrets("%s:%s:%s" % (yaml_file, json_file, tmp_path / "missing"))
    assert found == {"abcdef123456", "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVkt", "hunter2-long", "sandbox-token-0123456789"}
    assert "admin" not in found


def test_protect_kubeconfig_secrets_feeds_no_log_values(tmp_path):
    path = tmp_path / "config"
    path.write_text(YAML_KUBECONFIG)
    module = FakeModule(kubeconfig=str(path))
    module.no_log_values = set()
    common.protect_kubeconfig_secrets(module)
    assert "abcdef123456" in module.no_log_values


def test_check_non_negative():
    common.check_non_negative(FakeModule(retries=0), "retries")
    with pytest.raises(Failed, match="retries must be 0 or more, got -2"):
        common.check_non_negative(FakeModule(retries=-2), "retries")


@pytest.mark.parametrize("check,name", [(common.check_port, "port"), (common.check_positive, "timeout"),
                                        (common.check_non_negative, "retries")])
@pytest.mark.parametrize("value", [True, False])
def test_number_checks_refuse_booleans(check, name, value):
    with pytest.raises(Failed) as info:
        check(FakeModule(**{name: value}), name)
    msg = info.value.args[0]["msg"]
    assert msg.startswith("%s must be " % name) and "got the boolean %s; give a number" % value in msg


class SpecModule(FakeModule):
    def __init__(self, spec, **params):
        super().__init__(**params)
        self.argument_spec = spec


def test_check_integer_options_refuses_booleans_in_every_int_option():
    spec = dict(port=dict(type="int"), mount=dict(type="bool"), name=dict(type="str"))
    common.check_integer_options(SpecModule(spec, port=8000, mount=True, name="True"))
    with pytest.raises(Failed, match="port must be a TCP port between 1 and 65535, got the boolean True"):
        common.check_integer_options(SpecModule(spec, port=True, mount=True, name="x"))
