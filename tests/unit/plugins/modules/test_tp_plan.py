# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tp_plan: each task's module runs in check mode in this process, and the plan stops at the first change."""

from __future__ import annotations

import sys

import pytest

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.devloop.telepresence.plugins.modules import tp_plan
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.module_args import patch_module_args

BINARY = tp_plan.PREFIX + "tp_binary"
MANAGER = tp_plan.PREFIX + "tp_manager"


@pytest.mark.parametrize("result, noop", [
    ({"changed": False}, True),
    ({"changed": True}, False),
    ({"changed": False, "failed": True, "msg": "no"}, False),
    ({"changed": False, "warnings": ["digest differs"]}, True),
    ({"module": MANAGER, "changed": False, "installed": True, "ready": True}, True),
    ({"module": MANAGER, "changed": False, "installed": True, "ready": False}, False),
    ({"module": MANAGER, "changed": False, "installed": False, "ready": False}, True),
    ({"module": BINARY, "changed": False, "installed": True, "ready": False}, True),
])
def test_is_noop(result, noop):
    assert tp_plan.is_noop(result) is noop


@pytest.mark.parametrize("args, options, client, expected", [
    ({"state": "present"}, ["binary_path", "version"], {"path": "/b/telepresence", "version": "2.24.0"},
     {"state": "present", "binary_path": "/b/telepresence", "version": "2.24.0"}),
    ({"binary_path": "/mine", "version": None}, ["binary_path", "version"], {"path": "/b", "version": "2.24.0"},
     {"binary_path": "/mine", "version": "2.24.0"}),
    ({"state": "present"}, [], {"path": "/b", "version": "2.24.0"}, {"state": "present"}),
    ({"state": "present"}, ["binary_path"], None, {"state": "present"}),
])
def test_with_client(args, options, client, expected):
    assert tp_plan.with_client(args, options, client) == expected


def fake_module(**behaviour):
    """A module main() that records the check mode and options it got, then does what ``behaviour`` says."""
    seen = {}

    def main():
        module = AnsibleModule(argument_spec=dict(name=dict(type="str")), supports_check_mode=True)
        seen.update(check_mode=module.check_mode, name=module.params["name"])
        if behaviour.get("warn"):
            module.warn(behaviour["warn"])
        if behaviour.get("raise"):
            raise behaviour["raise"]
        if behaviour.get("fail"):
            module.fail_json(msg=behaviour["fail"])
        module.exit_json(changed=behaviour.get("changed", False), name=module.params["name"])
    return main, seen


def run_checked(monkeypatch, main, args):
    monkeypatch.setitem(tp_plan.MAINS, "tp_fake", main)
    with patch_module_args({"_ansible_check_mode": False, "_ansible_diff": False}):
        own = basic._ANSIBLE_ARGS
        stdout = sys.stdout
        result = tp_plan.run_checked("tp_fake", args, tp_plan.internal_args())
        assert basic._ANSIBLE_ARGS is own and sys.stdout is stdout
    return result


def test_a_task_runs_in_check_mode_with_its_own_options(monkeypatch):
    main, seen = fake_module()
    result = run_checked(monkeypatch, main, {"name": "fresh-app"})
    assert seen == {"check_mode": True, "name": "fresh-app"}
    assert result["changed"] is False and result["name"] == "fresh-app"


def test_a_failed_task_and_a_crashed_one_are_results_not_failures(monkeypatch):
    main, _seen = fake_module(fail="cluster unreachable")
    assert run_checked(monkeypatch, main, {})["msg"] == "cluster unreachable"
    main, _seen = fake_module(**{"raise": ValueError("boom")})
    result = run_checked(monkeypatch, main, {})
    assert result == {"failed": True, "msg": "devloop.telepresence.tp_fake stopped with ValueError: boom"}


def test_each_task_reports_only_its_own_warnings(monkeypatch):
    first, _seen = fake_module(warn="first warning")
    second, _seen = fake_module()
    warned = run_checked(monkeypatch, first, {})
    assert [tp_plan.warning_text(item) for item in warned["warnings"]] == ["first warning"]
    assert "warnings" not in run_checked(monkeypatch, second, {})


def test_warning_text_of_both_formats():
    assert tp_plan.warning_text("plain") == "plain"
    assert tp_plan.warning_text({"event": {"msg": "from an event"}}) == "from an event"


def test_shown_args_are_the_given_options_as_their_module_shows_them():
    result = {"invocation": {"module_args": {"values": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER", "state": "present",
                                             "wait": True}}}
    assert tp_plan.shown_args({"values": {"token": "s3cret"}, "state": "present"}, result) == {
        "values": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER", "state": "present"}
    assert tp_plan.shown_args({"values": {"token": "s3cret"}}, {"failed": True}) == {
        "values": "VALUE_HIDDEN_BY_TP_PLAN"}
