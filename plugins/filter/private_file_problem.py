# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pre-flight of a file tp_private_file will write on the controller, in the controller's own process.

The telepresence_summary role checks its path before a playbook changes anything; as a filter that check costs no
module process (a third of a second per run, issue 16). The checks are tp_private_file's own (module_utils/files.py).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: private_file_problem
short_description: Why M(devloop.telepresence.tp_private_file) could not write a file on the controller
version_added: 0.1.0
author: devloop.telepresence contributors
description:
  - Returns an empty string when M(devloop.telepresence.tp_private_file) running on the controller could write the
    input path for O(owner), else the reason, the module's own message (it starts with C(path) or C(owner)).
  - The checks are the module's check mode ones, run in the controller's process as the user that runs
    C(ansible-playbook) (with C(SUDO_UID) as the owner when that user is root under sudo) - an absolute path in an
    existing, writable directory; not a symbolic link, not something other than a regular file, not another user's
    file; O(owner) an existing user.
  - Reads only; writes nothing.
positional: owner
options:
  _input:
    description: The path the file is to be written to.
    type: str
    required: true
  owner:
    description: User (name or uid) the file is for; empty for the default of M(devloop.telepresence.tp_private_file).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Pre-flight, the summary can be written to telepresence_summary_path
  ansible.builtin.assert:
    that: telepresence_summary_problem | length == 0
    fail_msg: "{{ telepresence_summary_problem }}"
  vars:
    telepresence_summary_problem: "{{ telepresence_summary_path | devloop.telepresence.private_file_problem }}"
"""

RETURN = r"""
_value:
  description: The reason the file could not be written, or an empty string.
  type: str
"""

from ansible_collections.devloop.telepresence.plugins.module_utils.files import (
    FileRefused,
    check_writable,
    option_target,
)


def private_file_problem(path, owner=""):
    try:
        check_writable(*option_target(path, owner))
    except FileRefused as exc:
        return exc.msg
    return ""


class FilterModule:
    def filters(self):
        return {"private_file_problem": private_file_problem}
