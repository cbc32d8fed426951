# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a file tp_private_file would write on the controller already holds what it would write.

The telepresence_summary role writes the run's summary on the controller at the end of every run; when the file is
already that summary (a re-run that changed nothing), this filter lets the role skip the module task, which cost a
module process (0.4 s of a no-op dev_setup re-run, issue 16). The test is tp_private_file's own (files.holds).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: private_file_holds
short_description: Whether a file on the controller is already what M(devloop.telepresence.tp_private_file) would write
version_added: 0.1.0
author: devloop.telepresence contributors
description:
  - Returns C(true) when the input path on the controller is a regular file (not a symbolic link) with mode C(0600),
    owned by O(owner) and holding exactly O(content), that is when M(devloop.telepresence.tp_private_file) with the
    same options would report C(changed=false) and write nothing; else C(false), also when the file cannot be read.
  - O(owner) is resolved as the module resolves its option - the named user, else C(SUDO_UID) when the controller's
    process runs as root under sudo, else the user that runs C(ansible-playbook).
  - Reads only; writes nothing. An O(owner) that names no user gives C(false), so the module runs and reports it.
positional: content, owner
options:
  _input:
    description: The path of the file.
    type: str
    required: true
  content:
    description: What the file is to hold.
    type: str
    required: true
  owner:
    description: User (name or uid) the file is for; empty for the default of M(devloop.telepresence.tp_private_file).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Write the summary unless the file already holds it
  devloop.telepresence.tp_private_file:
    path: "{{ telepresence_summary_path }}"
    content: "{{ summary_text }}"
  when: not telepresence_summary_path | devloop.telepresence.private_file_holds(summary_text)
"""

RETURN = r"""
_value:
  description: Whether the file already holds O(content), private to O(owner).
  type: bool
"""

import os

from ansible_collections.devloop.telepresence.plugins.module_utils.files import FileRefused, holds, option_target


def private_file_holds(path, content, owner=""):
    try:
        path, uid = option_target(path, owner)
    except FileRefused:
        return False
    return os.path.isabs(path) and holds(path, str(content).encode("utf-8"), uid)


class FilterModule:
    def filters(self):
        return {"private_file_holds": private_file_holds}
