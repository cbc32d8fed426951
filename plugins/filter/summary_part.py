# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's summary, one part per step: what each role's record task adds to ``telepresence_summary_parts``.

A filter, so that recording is one set_fact however many parts a role adds, not an include_role per part (issue 16).
Errors are plain TypeErrors, which the template reports: importing ansible.errors here would load controller code
into the unit tests' process, which makes module warnings go to the display instead of the result on ansible-core
2.21.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: summary_part
short_description: Add a step's result to a host's summary of the run
version_added: 0.1.0
author: devloop.telepresence contributors
description:
  - Returns the summary parts (the input, C(telepresence_summary_parts)) with O(key) set to the registered result
    O(value) of a step, without Ansible's bookkeeping (C(invocation), C(diff), C(failed), C(skipped), C(commands),
    file attributes, a loop's own keys and keys that start with C(_)). The module's warnings stay with its part
    when there are any.
  - A part that recorded a change is kept when the same step is only re-checked later in the run (the control host's
    client check after the workstation's install), so the summary says what the run did.
  - With O(each=true), O(value) is a list of a loop's results and the part is one object per item.
  - The devloop.telepresence roles record each step with it; the telepresence_summary role prints the parts.
positional: key, value
options:
  _input:
    description: The summary parts so far (C(telepresence_summary_parts | default({}))).
    type: dict
    required: true
  key:
    description: The part's name (C(client), C(manager), C(connection), C(intercept), C(intercepts), C(leave), C(quit), C(status), C(failed)).
    type: str
    required: true
  value:
    description: The step's registered result, or with O(each=true) the list of a loop's results.
    type: raw
    required: true
  each:
    description: O(value) is a list of results, one per loop item.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Record the traffic manager in the run's summary
  ansible.builtin.set_fact:
    telepresence_summary_parts: >-
      {{ telepresence_summary_parts | default({}) | devloop.telepresence.summary_part('manager', telepresence_manager_result) }}
"""

RETURN = r"""
_value:
  description: The summary parts with O(key) added or kept.
  type: dict
"""

# Result keys left out of the run's summary: Ansible's bookkeeping and file attributes, not the module's answer.
OMITTED = frozenset(("invocation", "diff", "failed", "skipped", "skip_reason", "warnings", "deprecations",
                     "ansible_facts", "commands", "uid", "gid", "owner", "group", "mode", "size", "state", "secontext"))
LOOP_KEYS = frozenset(("item", "ansible_loop_var", "ansible_index_var"))


def _answer(result):
    # A loop's index variable is named by the result's ansible_index_var: loop bookkeeping too.
    omitted = OMITTED | LOOP_KEYS | {result.get("ansible_index_var")}
    return {key: value for key, value in result.items() if key not in omitted and not str(key).startswith("_")}


def summary_part(parts, key, value, each=False):
    if not isinstance(parts, dict):
        raise TypeError("summary_part: the input must be the summary parts (a dict), got %s" % type(parts).__name__)
    if each:
        if not isinstance(value, (list, tuple)):
            raise TypeError("summary_part: with each=true the value must be a list of results")
        return dict(parts, **{key: [_answer(item) for item in value]})
    if not isinstance(value, dict):
        raise TypeError("summary_part: the value of %s must be a registered result (a dict)" % key)
    part = _answer(value)
    if value.get("warnings"):
        part["warnings"] = value["warnings"]
    earlier = parts.get(key) or {}
    keep_earlier = isinstance(earlier, dict) and earlier.get("changed", False) and not part.get("changed", False)
    return dict(parts, **{key: earlier if keep_earlier else part})


class FilterModule:
    def filters(self):
        return {"summary_part": summary_part}
