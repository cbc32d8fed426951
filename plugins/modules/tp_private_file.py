#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tp_private_file
short_description: Write a file for the user, mode 0600, never another user's file or a symbolic link
version_added: 0.1.0
description:
  - Writes O(content) to O(path) the way the collection writes the files it makes for the user (the run's summary of
    the C(telepresence_summary) role, the env files of M(devloop.telepresence.tp_intercept)).
  - The file is created with mode C(0600) (a temporary file next to it, created exclusively without following
    symbolic links, renamed into place), so it is never readable by others, not even for a moment.
  - An existing O(path) is replaced only when it is a regular file the owner already owns. A symbolic link, anything
    that is not a regular file, or a file of another user makes the module fail naming the path and its owner,
    leaving it as it is.
author:
  - devloop.telepresence maintainers (@devloop)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Checks that the file could be written (an absolute path in an existing, writable directory; not a symbolic
        link, not something other than a regular file, not another user's file) and writes nothing; C(changed) says
        whether it would be written. The C(telepresence_summary) role runs it so before a playbook changes anything.
      - The summary reports a run, so the role writes it in check mode too (C(check_mode=false) on that task).
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  path:
    description:
      - Absolute path of the file. Its directory must exist.
    type: path
    required: true
    version_added: 0.1.0
  content:
    description:
      - What the file holds.
    type: str
    required: true
    version_added: 0.1.0
  owner:
    description:
      - User (name or uid) who owns the file. Changing the owner needs root (C(become)).
      - Default, the user who invoked sudo when running as root under C(become) (C(SUDO_UID)/C(SUDO_GID)), else the
        user the module runs as.
    type: str
    version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Write the run's summary for the developer
  devloop.telepresence.tp_private_file:
    path: "{{ playbook_dir }}/telepresence-summary.json"
    content: "{{ telepresence_summary_report | to_nice_json }}\n"
"""

RETURN = r"""
path:
  description: The file written.
  returned: success
  type: str
  sample: /home/dev/telepresence-summary.json
uid:
  description: The uid that owns the file.
  returned: success
  type: int
  sample: 1000
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.devloop.telepresence.plugins.module_utils.files import (
    FileRefused,
    check_location,
    check_writable,
    holds,
    target_owner,
    write_private,
)


def main():
    module = AnsibleModule(argument_spec=dict(path=dict(type="path", required=True),
                                              content=dict(type="str", required=True),
                                              owner=dict(type="str")),
                           supports_check_mode=True)
    path = module.params["path"]
    data = module.params["content"].encode("utf-8")
    try:
        check_location(path)
        uid, gid = target_owner(module.params["owner"])
        if holds(path, data, uid):
            module.exit_json(changed=False, path=path, uid=uid)
        if module.check_mode:
            check_writable(path, uid)
            module.exit_json(changed=True, path=path, uid=uid)
        write_private(path, data, uid, gid)
    except FileRefused as exc:
        module.fail_json(msg=exc.msg)  # names the path (or the owner option) and the fix
    except OSError as exc:
        module.fail_json(msg="path %s cannot be written: %s" % (path, exc.strerror or exc))
    module.exit_json(changed=True, path=path, uid=uid)


if __name__ == "__main__":
    main()
