# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only stdout callback: one JSON document with every task result, for the reliability suites.

ansible-core has no json callback (it lives in ansible.posix, which the test venv does not install). This one prints
``{"tasks": [{"task", "action", "host", "status", "duration", "result"}], "stats": {...}}`` at the end of the run.
"""

from __future__ import annotations

import json
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: tp_json
type: stdout
short_description: every task result as one JSON document (test helper)
description: Used by tests/pytests to read per-task results of a playbook run.
"""


def _field(result, name):
    """The public accessor of ansible-core 2.19 result objects, or the older private attribute."""
    value = getattr(result, name, None)
    return value if value is not None else getattr(result, "_" + name)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "tp_json"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks = []
        self.started = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.started[task._uuid] = time.time()

    def v2_playbook_on_handler_task_start(self, task):
        self.started[task._uuid] = time.time()

    def _record(self, result, status):
        task = _field(result, "task")
        payload = dict(_field(result, "result"))
        if status == "ok" and payload.get("changed"):
            status = "changed"
        started, ended = self.started.get(task._uuid, time.time()), time.time()
        self.tasks.append({"task": task.get_name(), "action": task.action, "host": _field(result, "host").get_name(),
                           "status": status, "start": started, "end": ended, "duration": round(ended - started, 3),
                           "result": payload})

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        summary = {host: stats.summarize(host) for host in sorted(stats.processed)}
        self._display.display(json.dumps({"tasks": self.tasks, "stats": summary}, default=str, indent=1))
