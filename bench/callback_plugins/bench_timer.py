# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback (bench/run enables it): one JSON line per task result, with the wall clock.

Writes to the file named by BENCH_TIMER_FILE (nothing when unset): the controller's time.time() when each result
arrived, the task's name and action, the host and the outcome (and, for this collection's modules, the module_args
of each run), and a last ``stats`` line. The sandbox stamps events.log with time.time() too, so the two can be
subtracted (measurement 3 of bench/run).
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

MODULES = "devloop.telepresence."

DOCUMENTATION = """
name: bench_timer
type: aggregate
short_description: Record task results with wall-clock times (devloop.telepresence benchmarks)
description:
  - Appends one JSON line per task result to the file named by E(BENCH_TIMER_FILE).
requirements:
  - enabled with ANSIBLE_CALLBACKS_ENABLED=bench_timer and ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.path = os.environ.get("BENCH_TIMER_FILE")
        self.task_started = {}

    def _write(self, record):
        if self.path:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.task_started[task._uuid] = time.time()  # pylint: disable=protected-access

    def _result(self, result, outcome):
        task = result._task  # pylint: disable=protected-access
        self._write({
            "ts": time.time(),
            "started": self.task_started.get(task._uuid),  # pylint: disable=protected-access
            "host": result._host.get_name(),  # pylint: disable=protected-access
            "task": task.get_name(),
            "action": task.action,
            "outcome": outcome,
            "changed": bool(result._result.get("changed")),  # pylint: disable=protected-access
            # bench/run replays this collection's module runs with the arguments they ran with: row 1d.
            "invocations": self._invocations(result) if task.action.startswith(MODULES) else None,
        })

    @staticmethod
    def _invocations(result):
        """The module_args of each module run the result holds (one, or one per loop item)."""
        outcome = result._result  # pylint: disable=protected-access
        runs = outcome.get("results") if isinstance(outcome.get("results"), list) else [outcome]
        return [run["invocation"]["module_args"] for run in runs
                if isinstance(run, dict) and isinstance(run.get("invocation"), dict)]

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._write({"ts": time.time(), "stats": {host: stats.summarize(host) for host in sorted(stats.processed)}})
