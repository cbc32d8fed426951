#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tp_plan
short_description: Say in one process whether tasks of this collection would change anything
version_added: 0.1.0
description:
  - Runs each task of O(tasks), a M(devloop.telepresence.tp_binary), M(devloop.telepresence.tp_manager) or
    M(devloop.telepresence.tp_intercept) task with its arguments, in check mode, one after the other in this
    module's own process, and returns their results (RV(checked)).
  - It stops at the first task that would change something or failed; RV(noop) is then false. A traffic manager
    that is installed but not ready also counts as something to do (M(devloop.telepresence.tp_manager) waits for
    it).
  - M(devloop.telepresence.tp_binary) tasks run with O(devloop.telepresence.tp_binary#module:verify_in_check_mode),
    so an existing client is checked against O(devloop.telepresence.tp_binary#module:checksum_url) as on its own.
  - The tasks' warnings are this module's warnings too, prefixed with the module's name.
  - Each task reads what it reads when it runs on its own (the client's version, the cluster, the session) and
    decides the same way, since it is the same module code; only the module process is shared, which saves a
    module start and payload for every task after the first (issue 16).
  - The collection's C(dev_setup) playbook runs it first; when every task of the run is a no-op, it skips the plays
    that would run those tasks again one by one and reports these results.
  - Changes nothing itself, so C(changed) is always false.
author:
  - devloop.telepresence maintainers (@devloop)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The tasks always run in check mode, so the module behaves the same in check mode.
  diff_mode:
    support: full
    details: Each task returns the C(diff) it returns in diff mode on its own.
  platform:
    platforms: posix
options:
  tasks:
    description:
      - The tasks to check, in order.
    type: list
    elements: dict
    required: true
    version_added: 0.1.0
    suboptions:
      module:
        description:
          - The module, by its name in the collection or its full name.
        type: str
        required: true
        choices: [tp_binary, tp_manager, tp_intercept, devloop.telepresence.tp_binary, devloop.telepresence.tp_manager,
                  devloop.telepresence.tp_intercept]
      args:
        description:
          - The module's options, as the task would give them. Options a playbook leaves out get the module's
            defaults and environment fallbacks, as on their own.
        type: dict
        default: {}
      client_options:
        description:
          - Options left out of O(tasks[].args) that take the client the last M(devloop.telepresence.tp_binary) task
            before this one found, V(binary_path) from its RV(devloop.telepresence.tp_binary#module:path) and
            V(version) from its RV(devloop.telepresence.tp_binary#module:version), as the collection's roles hand them
            on.
        type: list
        elements: str
        choices: [binary_path, version]
        default: []
requirements:
  - What each task's module requires (the C(kubernetes) Python library for M(devloop.telepresence.tp_manager) and
    for M(devloop.telepresence.tp_intercept) without O(devloop.telepresence.tp_intercept#module:target)).
notes:
  - A task's problem (bad arguments, an unreachable cluster) is no failure of this module; that task's result has
    C(failed) and C(msg), and RV(noop) is false, so the task itself runs next and fails with its own message.
seealso:
  - module: devloop.telepresence.tp_binary
  - module: devloop.telepresence.tp_manager
  - module: devloop.telepresence.tp_intercept
"""

EXAMPLES = r"""
- name: Would the client and the traffic manager change?
  devloop.telepresence.tp_plan:
    tasks:
      - module: tp_binary
        args: {version: 2.24.0, dest: ~/.local/bin/telepresence}
      - module: tp_manager
        args: {version: 2.24.0}
  register: plan

- name: Install only when something would change
  ansible.builtin.include_role:
    name: devloop.telepresence.telepresence_client
  when: not plan.noop
"""

RETURN = r"""
noop:
  description: Whether every task ran and none would change anything or failed.
  returned: always
  type: bool
  sample: true
checked:
  description:
    - The result of each task that ran, in order, as the module returns it in check mode, with C(module) added
      (its full name). The last one is the task that stopped the run when RV(noop) is false.
  returned: always
  type: list
  elements: dict
  sample: [{module: devloop.telepresence.tp_binary, changed: false, path: /home/dev/.local/bin/telepresence,
            version: 2.24.0}]
"""

import io
import json
import sys

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common import warnings

from ansible_collections.devloop.telepresence.plugins.module_utils import binary_module, intercept_module, manager_module

PREFIX = "devloop.telepresence."
MAINS = {"tp_binary": binary_module.main, "tp_manager": manager_module.main, "tp_intercept": intercept_module.main}


# Options tp_plan gives each module, so that its check mode reads what a run that is not in check mode reads.
CHECK_ARGS = {"tp_binary": {"verify_in_check_mode": True}}


def is_noop(result):
    """Whether a task's check-mode result says a real run would do nothing: not changed, not failed.

    tp_manager waits for a traffic manager that is installed but not ready, which check mode does not: such a
    manager is something to do.
    """
    if result.get("changed") or result.get("failed"):
        return False
    return not (result.get("module") == PREFIX + "tp_manager" and result.get("installed") and not result.get("ready"))


def run_checked(name, args, internal):
    """The check-mode result of module ``name`` with ``args``, run in this process.

    The module reads its parameters where AnsiballZ left this module's own (basic._ANSIBLE_ARGS) and prints its
    result before it exits, so both are swapped around the call; warnings are process-wide, so each run starts
    without the previous one's.
    """
    own_args, own_stdout = basic._ANSIBLE_ARGS, sys.stdout
    internal = dict(internal, _ansible_check_mode=True, _ansible_module_name=PREFIX + name)
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, **internal)}).encode("utf-8")
    captured = sys.stdout = io.StringIO()
    clear_messages()
    try:
        MAINS[name]()
    except SystemExit:
        pass
    except Exception as exc:  # pylint: disable=broad-except
        return {"failed": True, "msg": "%s%s stopped with %s: %s" % (PREFIX, name, type(exc).__name__, exc)}
    finally:
        basic._ANSIBLE_ARGS, sys.stdout = own_args, own_stdout
        clear_messages()
    try:
        return json.loads(captured.getvalue())
    except ValueError:
        return {"failed": True, "msg": "%s%s returned no result" % (PREFIX, name)}


def warning_text(warning):
    """A warning as a module printed it: text, or from ansible-core 2.19 on an event with its ``msg``."""
    if isinstance(warning, dict):
        return (warning.get("event") or {}).get("msg") or json.dumps(warning, sort_keys=True)
    return str(warning)


def clear_messages():
    # pylint: disable=protected-access
    warnings._global_warnings.clear()
    warnings._global_deprecations.clear()


def internal_args():
    """The ``_ansible_*`` settings this module was given (verbosity, diff, no_log, temporary folders...)."""
    given = json.loads(basic._ANSIBLE_ARGS)["ANSIBLE_MODULE_ARGS"]
    return dict((key, value) for key, value in given.items() if key.startswith("_ansible_"))


def with_client(args, options, client):
    """``args`` with each of ``options`` it leaves out taken from the tp_binary result ``client`` (if any)."""
    keys = {"binary_path": "path", "version": "version"}
    filled = dict(args)
    for option in options:
        if filled.get(option) is None and (client or {}).get(keys[option]):
            filled[option] = client[keys[option]]
    return filled


def shown_args(args, result):
    """The options a task was given, with the values its module shows in its own invocation.

    That module has already hidden what it keeps secret (no_log options, chart values); a value it does not show
    (a task that failed before it parsed its options) stays hidden here too.
    """
    shown = (result.get("invocation") or {}).get("module_args") or {}
    return dict((key, shown.get(key, "VALUE_HIDDEN_BY_TP_PLAN")) for key in args)


def main():
    module = AnsibleModule(argument_spec=dict(tasks=dict(type="list", elements="dict", required=True, options=dict(
        module=dict(type="str", required=True, choices=sorted(set(MAINS) | set(PREFIX + name for name in MAINS))),
        args=dict(type="dict", default={}),
        client_options=dict(type="list", elements="str", default=[], choices=["binary_path", "version"])))),
        supports_check_mode=True)
    internal = internal_args()
    checked, given, client, warned = [], [], None, []
    for task in module.params["tasks"]:
        name = task["module"][len(PREFIX):] if task["module"].startswith(PREFIX) else task["module"]
        args = dict(CHECK_ARGS.get(name, {}), **with_client(task["args"], task["client_options"], client))
        result = dict(run_checked(name, args, internal), module=PREFIX + name)
        checked.append(result)
        given.append(dict(task, args=shown_args(task["args"], result)))
        warned.extend("%s: %s" % (result["module"], warning_text(warning)) for warning in result.get("warnings") or [])
        if name == "tp_binary":
            client = result
        if not is_noop(result):
            break
    # After the last task: each run starts from no process-wide warnings.
    for warning in warned:
        module.warn(warning)
    noop = len(checked) == len(module.params["tasks"]) and all(is_noop(result) for result in checked)
    # Not "results": Ansible and callbacks read a result's "results" as a loop's items.
    module.exit_json(changed=False, noop=noop, checked=checked, invocation={"module_args": {"tasks": given}})


if __name__ == "__main__":
    main()
