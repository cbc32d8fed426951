# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every role's argument spec rejects a value of the wrong type, naming the variable, before any task runs."""

from __future__ import annotations

import json

import pytest
import yaml

from workflow_support import BIN, ROOT, run

# A value each type refuses (str and path accept anything Ansible can turn into text, raw anything at all).
WRONG = {"int": "not-a-number", "bool": "maybe", "dict": "not-a-dict", "list": {"not": "a list"}}
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())


def options(role):
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return spec["argument_specs"]["main"]["options"]


def play(tmp_path, role, extra_vars, env):
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"name": "Role under test", "hosts": "localhost", "gather_facts": False,
                                         "roles": [{"role": "devloop.telepresence.%s" % role}]}]))
    # A client path is given so the telepresence role's lookup of the client is skipped: nothing but validation runs.
    extra = dict({"telepresence_binary_path": "/nonexistent/telepresence"}, **extra_vars)
    return run([str(BIN / "ansible-playbook"), str(playbook), "-e", json.dumps(extra)], env=env, timeout=120)


def test_every_role_has_an_argument_spec_with_typed_options():
    assert ROLES == ["telepresence", "telepresence_client", "telepresence_connection", "telepresence_intercept",
                     "telepresence_manager", "telepresence_status", "telepresence_summary"]
    for role in ROLES:
        assert [name for name, option in options(role).items() if option.get("type") in WRONG], role


@pytest.mark.parametrize("role", ROLES)
def test_role_rejects_wrong_types(role, tmp_path, ansible_env):
    wrong = {name: WRONG[option["type"]] for name, option in options(role).items() if option.get("type") in WRONG}
    result = play(tmp_path, role, wrong, ansible_env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Validation of arguments failed" in output
    assert "devloop.telepresence.%s : Validating arguments against arg spec 'main'" % role in output
    for name in wrong:
        assert name in output.split("Validation of arguments failed", 1)[1], name
    assert "Traceback" not in output


@pytest.mark.parametrize("choice_option,role", [("telepresence_intercept_state", "telepresence_intercept"),
                                                ("telepresence_connection_state", "telepresence_connection"),
                                                ("telepresence_client_checksum_policy", "telepresence_client")])
def test_role_rejects_a_value_outside_the_choices(choice_option, role, tmp_path, ansible_env):
    result = play(tmp_path, role, {choice_option: "sideways"}, ansible_env)
    assert result.returncode != 0
    assert "value of %s must be one of" % choice_option in result.stdout


def test_right_types_pass_validation(tmp_path, ansible_env):
    """The control: the summary role with well-typed values runs to the end."""
    summary = tmp_path / "summary.json"
    result = play(tmp_path, "telepresence_summary", {"telepresence_summary_print": False, "telepresence_summary_path": str(summary)},
                  ansible_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(summary.read_text()) == {}
