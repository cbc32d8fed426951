# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""summary_part: what each role's record task adds to the run's summary (a table of inputs and the parts they give)."""

from __future__ import annotations

import re

import pytest

from ansible_collections.devloop.telepresence.plugins.filter.summary_part import summary_part

INSTALLED = {"changed": True, "version": "2.24.0", "path": "/bin/tp"}
CHECKED = {"changed": False, "version": "2.24.0", "path": "/bin/tp"}


@pytest.mark.parametrize("parts,key,value,expected", [
    # Ansible's bookkeeping and file attributes go; the module's answer stays.
    ({}, "manager", {"changed": False, "action": "none", "invocation": {"module_args": {}}, "diff": {}, "failed": False,
                     "commands": [["helm"]], "uid": 0, "mode": "0600", "_ansible_no_log": False},
     {"manager": {"changed": False, "action": "none"}}),
    # Warnings stay with their part when there are any, not when the list is empty.
    ({}, "client", dict(CHECKED, warnings=["unverified"]), {"client": dict(CHECKED, warnings=["unverified"])}),
    ({}, "client", dict(CHECKED, warnings=[]), {"client": CHECKED}),
    # A change recorded earlier in the run is kept when the step is only re-checked; other parts are left alone.
    ({"client": INSTALLED, "manager": {"action": "none"}}, "client", CHECKED,
     {"client": INSTALLED, "manager": {"action": "none"}}),
    # A later change, or an earlier part without one, is replaced.
    ({"client": CHECKED}, "client", INSTALLED, {"client": INSTALLED}),
    ({"client": INSTALLED}, "client", dict(INSTALLED, version="2.25.0"), {"client": dict(INSTALLED, version="2.25.0")}),
])
def test_a_part_is_the_result_without_bookkeeping(parts, key, value, expected):
    before = dict(parts)
    assert summary_part(parts, key, value) == expected
    assert parts == before  # a new dict: the input fact is not changed in place


def test_each_gives_one_object_per_loop_item_without_the_loop_keys():
    results = [{"changed": False, "action": "none", "item": {"name": "a"}, "ansible_loop_var": "item", "failed": False,
                "ansible_index_var": "i", "i": 0, "invocation": {}},
               {"changed": True, "action": "created", "item": {"name": "b"}, "ansible_loop_var": "item"}]
    assert summary_part({"client": CHECKED}, "intercepts", results, each=True) == {
        "client": CHECKED, "intercepts": [{"changed": False, "action": "none"},
                                          {"changed": True, "action": "created"}]}


def test_a_loop_items_result_as_a_single_part_loses_the_loop_keys_too():
    # the intercept part is the first engagement's item result; its index variable is loop bookkeeping
    item = {"changed": False, "action": "none", "ansible_index_var": "telepresence_intercept_index",
            "telepresence_intercept_index": 0}
    assert summary_part({}, "intercept", item) == {"intercept": {"changed": False, "action": "none"}}


@pytest.mark.parametrize("parts,value,each,message", [
    ([], {}, False, "the input must be the summary parts (a dict), got list"),
    ({}, "text", False, "the value of client must be a registered result (a dict)"),
    ({}, {"changed": False}, True, "with each=true the value must be a list of results"),
])
def test_wrong_input_is_refused_naming_what_was_expected(parts, value, each, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        summary_part(parts, "client", value, each=each)
