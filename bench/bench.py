# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench`: the performance measurements of issue 8, against sandboxes this script starts and stops.

    bench/run [--runs N] [--onboarding-runs N] [--hosts 1,10,50] [--only 1,2,3,4,5] [--no-doc]

1+2. a no-op re-run of playbooks/dev_setup.yml against a floor playbook of FLOOR_PINGS ansible.builtin.ping tasks
     (alternating, side by side), and the Telepresence CLI calls of each re-run (the sandbox's calls.log);
3.   the sandbox's rollout-complete event of ambassador/traffic-manager to tp_manager returning (ready_delay 2 s);
4.   a 100 MiB download through tp_binary's Downloader against curl on the same URL, and its peak RSS for
     100 MiB against 1 MiB;
5.   the telepresence_client role on 1, 10 and 50 local workstation hosts (forks 10): install and no-op re-run.

Prints the table, writes docs/PERFORMANCE.md (unless --no-doc) and keeps the raw data, logs and generated
playbooks in bench/results/<timestamp>/ (git-ignored). The collection under test is this checkout, copied to
.build/bench/collections (tests/tools/sync_copy.py). No test asserts any of these times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".venv", "bin")
PYTHON = os.path.join(BIN, "python")
COLLECTIONS = os.path.join(ROOT, ".build", "bench", "collections")
COLLECTION = os.path.join(COLLECTIONS, "ansible_collections", "devloop", "telepresence")
SANDBOX = os.path.join(ROOT, "tests", "sandbox")
HERE = os.path.join(ROOT, "bench")
DOC = os.path.join(ROOT, "docs", "PERFORMANCE.md")
MODULE_PREFIX = "devloop.telepresence."
MANAGER_OBJECT = "ambassador/traffic-manager"
READY_DELAY = 2.0
BIG_MIB = 100
SMALL_MIB = 1

# Issue 16's floor: what Ansible itself costs for the five module tasks a no-op dev_setup must run to look.
FLOOR_PINGS = 5

GOALS = {
    "noop": 1.6,          # dev_setup re-run / floor of FLOOR_PINGS pings
    "manager": 0.5,       # seconds from rollout-complete to tp_manager returning
    "throughput": 0.8,    # tp_binary download / curl
    "memory": 1.2,        # peak RSS 100 MiB / 1 MiB
}


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------------------

def log(message):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


def summary(values):
    """median, min, max of a list of numbers (None when empty)."""
    values = [value for value in values if value is not None]
    if not values:
        return None
    return {"runs": values, "median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(value, unit="", digits=2):
    if value is None:
        return "n/a"
    return ("%." + str(digits) + "f%s") % (value, unit)


def fmt_runs(values, unit="", digits=2):
    return ", ".join(fmt(value, "", digits) for value in values) + (" " + unit if unit else "")


def read_jsonl(path):
    records = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line:
                    records.append(json.loads(line))
    return records


def count_lines(path):
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as handle:
        return sum(1 for _line in handle)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def run_measured(argv, env=None, cwd=None, stdout_path=None):
    """Run argv and reap it with os.wait4: (returncode, wall seconds, peak RSS KiB, stdout bytes, stderr bytes)."""
    out_handle = open(stdout_path, "wb") if stdout_path else subprocess.PIPE  # pylint: disable=consider-using-with
    started = time.perf_counter()
    try:
        # pylint: disable-next=consider-using-with
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out_handle,
                                stderr=subprocess.STDOUT if stdout_path else subprocess.PIPE)
        out = proc.stdout.read() if proc.stdout else b""
        err = proc.stderr.read() if proc.stderr else b""
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stdout_path:
            out_handle.close()
    return proc.returncode, wall, usage.ru_maxrss, out, err


# --------------------------------------------------------------------------------------------------------------
# environment, sandboxes, playbooks
# --------------------------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.results = os.path.join(HERE, "results", stamp)
        os.makedirs(self.results, exist_ok=True)
        self.sandboxes = []
        self.dev_servers = []
        self.data = {"started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        self.env = self.base_env()

    def base_env(self):
        env = dict(os.environ)
        for name in ("TELEPRESENCE_VERSION", "TP_SANDBOX_DIR", "ANSIBLE_CONFIG", "ANSIBLE_STDOUT_CALLBACK"):
            env.pop(name, None)
        env.update({
            "PATH": BIN + os.pathsep + env.get("PATH", ""),
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": "bench_timer",
            "TP_SANDBOX_PYTHON": PYTHON,
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        return env

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def sandbox(self, name, knobs=None):
        directory = tempfile.mkdtemp(prefix="tp-bench-%s." % name)
        self.sandboxes.append(directory)
        if knobs:
            write(os.path.join(directory, "knobs.json"), json.dumps(knobs))
        env = dict(self.env, TP_SANDBOX_DIR=directory)
        proc = subprocess.run([os.path.join(SANDBOX, "up")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              check=False, text=True)
        if proc.returncode:
            raise BenchError("sandbox %s did not start:\n%s%s" % (name, proc.stdout, proc.stderr))
        for line in proc.stdout.splitlines():
            if line.startswith("export "):
                key, _sep, value = line[len("export "):].partition("=")
                env[key] = shlex.split(value)[0] if value else ""
        log("sandbox %s up in %s" % (name, directory))
        return env

    def dev_server(self, env):
        directory = env["TP_SANDBOX_DIR"]
        port = subprocess.run([PYTHON, os.path.join(ROOT, "tests", "tools", "dev_server.py"), "start", "--dir", directory,
                               "--port", "0", "--name", "bench"], env=env, check=True, text=True,
                              stdout=subprocess.PIPE).stdout.strip()
        self.dev_servers.append(directory)
        return port

    def close(self):
        for directory in self.dev_servers:
            subprocess.run([PYTHON, os.path.join(ROOT, "tests", "tools", "dev_server.py"), "stop", "--dir", directory],
                           env=self.env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for directory in self.sandboxes:
            subprocess.run([os.path.join(SANDBOX, "down")], env=dict(self.env, TP_SANDBOX_DIR=directory), check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(directory, ignore_errors=True)
        self.dev_servers, self.sandboxes = [], []

    # --- running playbooks -------------------------------------------------------------------------------------

    def playbook(self, name, argv, env, expect_changed=None):
        """ansible-playbook argv; returns {wall, records, stats, log}; raises when it fails."""
        timer = os.path.join(self.results, "%s.timer.jsonl" % name)
        output = os.path.join(self.results, "%s.log" % name)
        for path in (timer,):
            if os.path.exists(path):
                os.remove(path)
        started = time.time()
        code, wall, _rss, _out, _err = run_measured([os.path.join(BIN, "ansible-playbook")] + argv,
                                                    env=dict(env, BENCH_TIMER_FILE=timer), cwd=ROOT,
                                                    stdout_path=output)
        records = read_jsonl(timer)
        stats = next((record["stats"] for record in records if "stats" in record), {})
        tasks = [record for record in records if "stats" not in record]
        if code:
            with open(output, encoding="utf-8", errors="replace") as handle:
                tail = "".join(handle.readlines()[-25:])
            raise BenchError("%s failed (rc=%s); log %s:\n%s" % (name, code, output, tail))
        changed = sum(host["changed"] for host in stats.values())
        if expect_changed is not None and changed != expect_changed:
            log("WARNING: %s reported changed=%d, expected %d (log %s)" % (name, changed, expect_changed, output))
        return {"wall": wall, "tasks": tasks, "stats": stats, "log": output, "started": started, "changed": changed}


# --------------------------------------------------------------------------------------------------------------
# 1 + 2: dev_setup no-op re-run against a ping floor, and its CLI calls
# --------------------------------------------------------------------------------------------------------------

def floor_playbook(path, count):
    tasks = "".join("    - name: Ping %d\n      ansible.builtin.ping:\n" % number for number in range(1, count + 1))
    write(path, "---\n# Generated by bench/run: the floor for the dev_setup no-op re-run (issue 16: five pings).\n"
                "- name: Floor\n  hosts: localhost\n  gather_facts: false\n  tasks:\n" + tasks)


STUB_MODULE = """#!/usr/bin/python
# Generated by bench/run: a module that only starts and exits, named after one the dev_setup re-run runs.
from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

if __name__ == "__main__":
    AnsibleModule(argument_spec={}, supports_check_mode=True).exit_json(changed=False)
"""


def stub_floor_playbook(path, modules):
    """A floor with the re-run's own module tasks as stubs: as many tasks, as many distinct modules (library/ next to
    the playbook). Ansible builds each distinct module's payload once per run (about 0.2 s, mostly compiling
    ansible.module_utils.basic and what it imports); five pings build one."""
    library = os.path.join(os.path.dirname(path), "library")
    os.makedirs(library, exist_ok=True)
    for module in set(modules):
        write(os.path.join(library, "stub_%s.py" % module), STUB_MODULE)
    tasks = "".join("    - name: Stub of %s\n      stub_%s:\n" % (module, module) for module in modules)
    write(path, "---\n# Generated by bench/run: the re-run's module tasks as modules that only start and exit.\n"
                "- name: Module floor\n  hosts: localhost\n  gather_facts: false\n  tasks:\n" + tasks)


def module_options(env, modules):
    """{module: set of its documented options}, from ansible-doc of the benchmark's collection copy."""
    proc = subprocess.run([os.path.join(BIN, "ansible-doc"), "--json"] + [MODULE_PREFIX + module for module in modules],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, text=True)
    if proc.returncode:
        raise BenchError("ansible-doc failed:\n%s" % proc.stderr)
    docs = json.loads(proc.stdout)
    return {module: set(docs[MODULE_PREFIX + module]["doc"].get("options") or {}) for module in modules}


def direct_floor_playbook(path, env, tasks):
    """The re-run's module runs alone, no roles: each with the options it ran with (the result's module_args, less
    the keys a module adds to its own params and the unset ones). The lower bound of any playbook that makes these
    module calls, whatever its roles."""
    runs = [(label.split(" #")[0], args) for label, task in module_tasks(tasks) for args in task.get("invocations") or []]
    options = module_options(env, sorted({module for module, _args in runs}))
    lines = []
    for number, (module, args) in enumerate(runs, 1):
        kept = {name: value for name, value in args.items() if name in options[module] and value is not None}
        if any("{{" in text or "{%" in text for text in map(json.dumps, kept.values())):
            raise BenchError("row 1d: %s's arguments hold template markers; replaying them would template them" % module)
        lines.append("    - name: Run %d, %s\n      %s%s:\n" % (number, module, MODULE_PREFIX, module))
        lines += ["        %s: %s\n" % (name, json.dumps(value, sort_keys=True)) for name, value in sorted(kept.items())]
    write(path, "---\n# Generated by bench/run: the re-run's module runs alone, with their own arguments, no roles.\n"
                "- name: Module runs alone\n  hosts: localhost\n  gather_facts: false\n  tasks:\n" + "".join(lines))
    return len(runs)


def module_tasks(tasks):
    """The module tasks (devloop.telepresence.*) that ran, each with a label unique in the run (tp_binary, tp_binary #2)."""
    found, seen = [], {}
    for task in tasks:
        if task["action"].startswith(MODULE_PREFIX) and task["outcome"] != "skipped":
            module = task["action"][len(MODULE_PREFIX):]
            seen[module] = seen.get(module, 0) + 1
            found.append((module if seen[module] == 1 else "%s #%d" % (module, seen[module]), task))
    return found


def attribute_calls(calls, tasks):
    """Map calls.log lines to the module task whose time span holds them."""
    labelled = module_tasks(tasks)
    spans = [task for _label, task in labelled]
    per_task, unattributed = [], []
    for label, task in labelled:
        per_task.append({"task": task["task"], "module": label, "calls": []})
    for call in calls:
        for task, entry in zip(spans, per_task):
            if task["started"] - 0.05 <= call["ts"] <= task["ts"] + 0.05:
                entry["calls"].append(call)
                break
        else:
            unattributed.append(call)
    return per_task, unattributed


def measure_noop(bench, env, runs):
    inventory = ["-i", os.path.join(ROOT, "inventories", "sandbox")]
    dev_setup = os.path.join(ROOT, "playbooks", "dev_setup.yml")
    calls_log = os.path.join(env["TP_SANDBOX_DIR"], "calls.log")
    port = bench.dev_server(env)
    log("local dev server on %s; dev_setup first run (client from the mirror, manager, connect, intercept)" % port)
    first = bench.playbook("1-dev_setup-first", inventory + [dev_setup], env)
    first_calls = read_jsonl(calls_log)
    warm = bench.playbook("1-dev_setup-warmup", inventory + [dev_setup], env, expect_changed=0)
    host_stats = next(iter(warm["stats"].values()))
    task_count = host_stats["ok"] + host_stats["skipped"]
    floor = os.path.join(bench.results, "floor.yml")
    floor_playbook(floor, FLOOR_PINGS)
    stub_floor, stubs = os.path.join(bench.results, "floor-modules.yml"), None
    direct_floor, direct_runs = os.path.join(bench.results, "floor-direct.yml"), None
    log("first run %.1f s; re-run has %d tasks (ok %d incl. changed, skipped %d): floor = %d pings"
        % (first["wall"], task_count, host_stats["ok"], host_stats["skipped"], FLOOR_PINGS))
    reruns, floors, stub_floors, direct_floors, call_runs = [], [], [], [], []
    for number in range(1, runs + 1):
        order = ("rerun", "floor", "stubs", "direct") if number % 2 else ("direct", "stubs", "floor", "rerun")
        for kind in order:
            if kind == "floor":
                floors.append(bench.playbook("1-floor-%d" % number, inventory + [floor], env))
                continue
            if kind == "stubs":
                stub_floors.append(bench.playbook("1-floor-modules-%d" % number, inventory + [stub_floor], env))
                continue
            if kind == "direct":
                direct_floors.append(bench.playbook("1-floor-direct-%d" % number, inventory + [direct_floor], env,
                                                    expect_changed=0))
                continue
            before = count_lines(calls_log)
            rerun = bench.playbook("1-dev_setup-rerun-%d" % number, inventory + [dev_setup], env, expect_changed=0)
            if stubs is None:  # the first re-run comes before the first stub floor; the warm-up still wrote a summary
                stubs = [label.split(" #")[0] for label, _task in module_tasks(rerun["tasks"])]
                stub_floor_playbook(stub_floor, stubs)
                direct_runs = direct_floor_playbook(direct_floor, env, rerun["tasks"])
            calls = read_jsonl(calls_log)[before:]
            per_task, unattributed = attribute_calls(calls, rerun["tasks"])
            call_runs.append({"total": len(calls), "per_task": per_task, "unattributed": unattributed,
                              "repeated": repeated_reads(calls),
                              "implicit": sum(1 for call in calls if call.get("implicit_connect"))})
            reruns.append(rerun)
        log("run %d/%d: re-run %.2f s, floor %.2f s, stub floor %.2f s, module runs alone %.2f s" % (
            number, runs, reruns[-1]["wall"], floors[-1]["wall"], stub_floors[-1]["wall"], direct_floors[-1]["wall"]))
    return {
        "first_run": first["wall"],
        "first": first_run_split(first, first_calls),
        "task_count": task_count,
        "ok": host_stats["ok"],
        "skipped": host_stats["skipped"],
        "rerun": summary([run["wall"] for run in reruns]),
        "floor": summary([run["wall"] for run in floors]),
        "ratio": summary([rerun["wall"] / floor["wall"] for rerun, floor in zip(reruns, floors)]),
        "stub_modules": stubs,
        "stub_floor": summary([run["wall"] for run in stub_floors]),
        "stub_ratio": summary([rerun["wall"] / floor["wall"] for rerun, floor in zip(reruns, stub_floors)]),
        "direct_runs": direct_runs,
        "direct_floor": summary([run["wall"] for run in direct_floors]),
        "direct_ratio": summary([direct["wall"] / floor["wall"] for direct, floor in zip(direct_floors, floors)]),
        "changed": [run["changed"] for run in reruns],
        "task_times": task_times(reruns),
        "ping_time": summary([statistics.median(task["ts"] - task["started"] for task in run["tasks"])
                              for run in floors]),
        "calls": call_runs,
    }


def first_run_split(first, calls):
    """Where dev_setup's run from scratch goes: the module tasks, and the time inside Telepresence CLI calls.

    In the sandbox a CLI call's time is the emulator waiting on the simulated cluster (the manager's rollout,
    the daemons, agent injection and the pods it restarts), as the real CLI waits on a real cluster; the rest of
    the run is ours: Ansible, the modules' own work (download, hashing, cluster reads) and their process start-up.
    """
    per_command = {}
    for call in calls:
        per_command.setdefault(call.get("cmd") or call["argv"][0], []).append(call.get("duration") or 0.0)
    cli = sum(sum(values) for values in per_command.values())
    return {
        "wall": first["wall"],
        "cli_seconds": cli,
        "cli_calls": len(calls),
        "per_command": {name: {"calls": len(values), "seconds": sum(values)} for name, values in per_command.items()},
        "module_tasks": [(label, task["ts"] - task["started"]) for label, task in module_tasks(first["tasks"])],
    }


def repeated_reads(calls):
    """The argv lists a re-run made more than once (issue 16: each read at most once per host)."""
    seen = {}
    for call in calls:
        key = " ".join(call["argv"])
        seen[key] = seen.get(key, 0) + 1
    return {argv: count for argv, count in seen.items() if count > 1}


def task_times(reruns):
    """Median duration per module task and the sum of the other tasks, across the re-runs."""
    per_name = {}
    for run in reruns:
        labelled = module_tasks(run["tasks"])
        for label, task in labelled:
            per_name.setdefault(label, []).append(task["ts"] - task["started"])
        modules = [id(task) for _label, task in labelled]
        rest = sum(task["ts"] - task["started"] for task in run["tasks"] if id(task) not in modules)
        per_name.setdefault("(all other tasks)", []).append(rest)
    return {name: summary(values) for name, values in per_name.items()}


# --------------------------------------------------------------------------------------------------------------
# 3: rollout-complete of the traffic manager to tp_manager returning
# --------------------------------------------------------------------------------------------------------------

TIMED_PYTHON = """#!/bin/sh
# Generated by bench/run: the module interpreter, stamping the wall clock when the module process exits.
%s"%s" "$@"
rc=$?
printf '%%s %%s\\n' "$(date +%%s.%%N)" "$*" >> "%s"
exit $rc
"""

# What-if: the fix proposed for module_utils/kube.py, applied from outside the collection (the wrapper above puts
# this sitecustomize.py on PYTHONPATH); modules are not changed.
FREEZE_SITECUSTOMIZE = """# Generated by bench/run (what-if): skip the shutdown garbage collection of the module process.
import atexit
import gc

atexit.register(gc.freeze)
"""


def manager_playbook(path, env):
    binary = os.path.join(env["TP_SANDBOX_DIR"], "bin", "telepresence-2.24.0")
    write(path, """---
# Generated by bench/run: install the traffic manager (timed), then remove it for the next run.
- name: Traffic manager install, timed from the sandbox's rollout-complete event
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/devloop.telepresence.telepresence:
      binary_path: %s
      kubeconfig: %s
      context: sandbox
      manager_namespace: ambassador
  tasks:
    - name: Install the traffic manager and wait until it is ready
      devloop.telepresence.tp_manager:
        state: present
        wait: true
        wait_timeout: 120
    - name: Remove it for the next run
      devloop.telepresence.tp_manager:
        state: absent
        remove_agents: false
""" % (json.dumps(binary), json.dumps(env["KUBECONFIG"])))


def timed_wrapper(bench, name, exits, freeze):
    wrapper = os.path.join(bench.results, name)
    prefix = ""
    if freeze:
        site = os.path.join(bench.results, "whatif-freeze")
        write(os.path.join(site, "sitecustomize.py"), FREEZE_SITECUSTOMIZE)
        prefix = "PYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} " % shlex.quote(site)
    write(wrapper, TIMED_PYTHON % (prefix, PYTHON, exits))
    os.chmod(wrapper, 0o755)
    return wrapper


def manager_sample(bench, env, name, playbook, wrapper, exits):
    """One install/remove cycle: times from the rollout-complete event to the module's exit and to the result."""
    events_log = os.path.join(env["TP_SANDBOX_DIR"], "events.log")
    calls_log = os.path.join(env["TP_SANDBOX_DIR"], "calls.log")
    calls_before = count_lines(calls_log)
    run = bench.playbook(name, ["-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % wrapper,
                                playbook], env)
    install = next(task for task in run["tasks"] if task["action"].endswith("tp_manager"))
    events = [event for event in read_jsonl(events_log) if event.get("object") == MANAGER_OBJECT
              and install["started"] <= event["ts"] <= install["ts"]]
    if not events:
        raise BenchError("no rollout-complete event for %s during the install (%s)" % (MANAGER_OBJECT, name))
    module_exit = None
    with open(exits, encoding="utf-8") as handle:
        stamps = handle.read().splitlines()
    for line in stamps:
        stamp, _sep, command = line.partition(" ")
        if "AnsiballZ_tp_manager" in command and install["started"] <= float(stamp) <= install["ts"] + 0.05:
            module_exit = float(stamp)
    helm = [call for call in read_jsonl(calls_log)[calls_before:] if call.get("cmd", "").startswith("helm ")]
    return {"ready": events[-1]["ts"], "module_exit": module_exit, "controller": install["ts"],
            "helm_end": helm[0]["ts"] + helm[0]["duration"] if helm else None,
            "task_seconds": install["ts"] - install["started"]}


def measure_manager(bench, env, runs):
    playbook = os.path.join(bench.results, "manager.yml")
    manager_playbook(playbook, env)
    exits = os.path.join(bench.results, "manager.exits")
    wrappers = {"plain": timed_wrapper(bench, "python-timed", exits, False),
                "freeze": timed_wrapper(bench, "python-timed-freeze", exits, True)}
    samples = {"plain": [], "freeze": []}
    for number in range(1, runs + 1):
        for kind in ("plain", "freeze") if number % 2 else ("freeze", "plain"):
            sample = manager_sample(bench, env, "3-manager-%s-%d" % (kind, number), playbook, wrappers[kind], exits)
            samples[kind].append(sample)
            log("run %d/%d (%s): ready -> module exit %s s (helm CLI returned %+.3f s after ready; Ansible had the "
                "result %+.3f s after ready)" % (number, runs, kind, fmt(
                    sample["module_exit"] - sample["ready"] if sample["module_exit"] else None, "", 3),
                    (sample["helm_end"] or sample["ready"]) - sample["ready"], sample["controller"] - sample["ready"]))
    plain = samples["plain"]
    return {
        "module_exit": summary([s["module_exit"] - s["ready"] for s in plain if s["module_exit"]]),
        "module_exit_freeze": summary([s["module_exit"] - s["ready"] for s in samples["freeze"] if s["module_exit"]]),
        "controller": summary([s["controller"] - s["ready"] for s in plain]),
        "helm_cli": summary([s["helm_end"] - s["ready"] for s in plain if s["helm_end"]]),
        "after_helm": summary([s["module_exit"] - s["helm_end"] for s in plain if s["module_exit"] and s["helm_end"]]),
        "task_seconds": summary([s["task_seconds"] for s in plain]),
        "ready_delay": READY_DELAY,
    }


# --------------------------------------------------------------------------------------------------------------
# 4: download throughput against curl, and peak memory
# --------------------------------------------------------------------------------------------------------------

def ensure_curl():
    curl = shutil.which("curl")
    if curl:
        return curl, False
    log("curl is missing: installing it with apt-get (apt-get install -y curl) for the download comparison")
    subprocess.run(["apt-get", "install", "-y", "-q", "curl"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("curl"), True


def measure_download(bench, env, runs):
    curl, installed = ensure_curl()
    directory = env["TP_SANDBOX_DIR"]
    subprocess.run([PYTHON, os.path.join(SANDBOX, "mirror.py"), "build", "--dir", directory, "--big", str(BIG_MIB)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    small = os.path.join(directory, "mirror", "bench", "small")
    os.makedirs(os.path.dirname(small), exist_ok=True)
    with open(os.path.join(directory, "mirror", "v2.24.0", "telepresence-big"), "rb") as source, \
            open(small, "wb") as target:
        target.write(source.read(SMALL_MIB * 1024 * 1024))
    with open(os.path.join(directory, "mirror", "v2.24.0", "sha256sums.txt"), encoding="utf-8") as handle:
        sums = handle.read()
    expected = re.search(r"^([0-9a-f]{64})\s+telepresence-big$", sums, re.M).group(1)
    urls = {"big": env["TP_SANDBOX_MIRROR"] + "/v2.24.0/telepresence-big",
            "small": env["TP_SANDBOX_MIRROR"] + "/bench/small"}
    folder = tempfile.mkdtemp(prefix="downloads.", dir=directory)
    probe = [PYTHON, os.path.join(HERE, "download_probe.py"), COLLECTIONS]
    sha256sum = shutil.which("sha256sum")

    def module_path(url):
        code, wall, rss, out, err = run_measured(probe + [url, folder], env=env)
        if code:
            raise BenchError("download probe failed: %s" % err.decode(errors="replace")[-2000:])
        result = json.loads(out)
        result.update(wall=wall, rss_kib=rss)
        return result

    def curl_path(url):
        target = os.path.join(folder, "curl.out")
        code, wall, rss, out, err = run_measured([curl, "-sS", "--fail", "-o", target, "-w",
                                                  "%{time_total} %{size_download}", url], env=env)
        if code:
            raise BenchError("curl failed: %s" % err.decode(errors="replace"))
        # The module also verifies the digest: curl followed by sha256sum is the like-for-like reference.
        hash_started = time.perf_counter()
        hashed = subprocess.run(["sha256sum", target], check=False, stdout=subprocess.DEVNULL) if sha256sum else None
        hash_seconds = time.perf_counter() - hash_started if hashed else None
        os.remove(target)
        seconds, size = out.decode().split()
        return {"fetch_seconds": float(seconds), "bytes": int(float(size)), "wall": wall, "rss_kib": rss,
                "hash_seconds": hash_seconds}

    module_runs, curl_runs, small_runs = [], [], []
    for number in range(1, runs + 1):
        order = (("module", module_path), ("curl", curl_path))
        for kind, action in order if number % 2 else tuple(reversed(order)):
            result = action(urls["big"])
            (module_runs if kind == "module" else curl_runs).append(result)
        small_runs.append(module_path(urls["small"]))
        if module_runs[-1]["sha256"] != expected:
            raise BenchError("the download's SHA-256 %s is not the mirror's %s" % (module_runs[-1]["sha256"], expected))
        log("run %d/%d: tp_binary path %.0f MiB/s, curl %.0f MiB/s, RSS %d KiB (100 MiB) / %d KiB (1 MiB)" % (
            number, runs, mib_per_s(module_runs[-1]), mib_per_s(curl_runs[-1]), module_runs[-1]["rss_kib"],
            small_runs[-1]["rss_kib"]))
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "curl": curl, "curl_installed": installed,
        "module_mib_s": summary([mib_per_s(run) for run in module_runs]),
        "curl_mib_s": summary([mib_per_s(run) for run in curl_runs]),
        "ratio": summary([mib_per_s(m) / mib_per_s(c) for m, c in zip(module_runs, curl_runs)]),
        "fsync": summary([run["fsync_seconds"] for run in module_runs]),
        "imports": summary([run["import_seconds"] for run in module_runs]),
        "rss_big_mib": summary([run["rss_kib"] / 1024 for run in module_runs]),
        "rss_small_mib": summary([run["rss_kib"] / 1024 for run in small_runs]),
        "rss_ratio": summary([big["rss_kib"] / small["rss_kib"] for big, small in zip(module_runs, small_runs)]),
        "curl_rss_mib": summary([run["rss_kib"] / 1024 for run in curl_runs]),
        "curl_sha_mib_s": summary([run["bytes"] / 1048576.0 / (run["fetch_seconds"] + run["hash_seconds"])
                                   for run in curl_runs if run["hash_seconds"]]),
        "hash_only": summary([run["hash_seconds"] for run in curl_runs if run["hash_seconds"]]),
    }


def mib_per_s(run):
    return run["bytes"] / 1048576.0 / run["fetch_seconds"]


# --------------------------------------------------------------------------------------------------------------
# 5: team onboarding, the client role on 1, 10 and 50 hosts
# --------------------------------------------------------------------------------------------------------------

def onboarding_files(bench, env, count):
    inventory = os.path.join(bench.results, "onboarding-%d.yml" % count)
    hosts = {"ws%02d" % number: {} for number in range(1, count + 1)}
    variables = {
        "ansible_connection": "local",
        "ansible_python_interpreter": PYTHON,
        "telepresence_client_base_url": env["TP_SANDBOX_MIRROR"],
        "telepresence_client_allow_insecure_http": True,
        "telepresence_client_checksum_url": env["TP_SANDBOX_MIRROR"] + "/v2.24.0/sha256sums.txt",
        "telepresence_client_checksum_policy": "require",
        "telepresence_version": "v2.24.0",
        "telepresence_prefer_system": False,
        "telepresence_binary_dest": "{{ bench_hosts_root }}/{{ inventory_hostname }}/bin/telepresence",
    }
    write(inventory, "---\n# Generated by bench/run: %d workstations on this machine, each with its own dest.\n%s\n"
          % (count, json.dumps({"all": {"vars": variables, "children": {"workstations": {"hosts": hosts}}}}, indent=2)))
    playbook = os.path.join(bench.results, "onboarding.yml")
    write(playbook, "---\n# Generated by bench/run: the client role on every workstation.\n"
                    "- name: Onboard the team's workstations\n  hosts: workstations\n  gather_facts: false\n"
                    "  roles:\n    - role: devloop.telepresence.telepresence_client\n")
    return inventory, playbook


def measure_onboarding(bench, env, counts, runs):
    rows = []
    for count in counts:
        inventory, playbook = onboarding_files(bench, env, count)
        installs, reruns = [], []
        for number in range(1, runs + 1):
            root = tempfile.mkdtemp(prefix="hosts-%d." % count, dir=env["TP_SANDBOX_DIR"])
            argv = ["-i", inventory, "--forks", "10", "-e", "bench_hosts_root=%s" % root, playbook]
            installs.append(bench.playbook("5-onboard-%d-install-%d" % (count, number), argv, env, expect_changed=count))
            reruns.append(bench.playbook("5-onboard-%d-rerun-%d" % (count, number), argv, env, expect_changed=0))
            shutil.rmtree(root, ignore_errors=True)
            log("%d hosts, run %d/%d: install %.1f s, re-run %.1f s"
                % (count, number, runs, installs[-1]["wall"], reruns[-1]["wall"]))
        rows.append({
            "hosts": count,
            "install": summary([run["wall"] for run in installs]),
            "install_per_host": summary([run["wall"] / count for run in installs]),
            "rerun": summary([run["wall"] for run in reruns]),
            "rerun_per_host": summary([run["wall"] / count for run in reruns]),
        })
    return rows


# --------------------------------------------------------------------------------------------------------------
# profiling support: what the module tasks pay before they do anything
# --------------------------------------------------------------------------------------------------------------

IMPORT_PROBE = "import time; t = time.perf_counter(); import %s; print(time.perf_counter() - t)"


def measure_kube_cost(env, runs=3):
    """kube_probe.py as it is (plain) and with gc.freeze() at exit (freeze), alternating; plus a bare import."""
    probe = [PYTHON, os.path.join(HERE, "kube_probe.py"), COLLECTIONS, env["KUBECONFIG"], "sandbox"]
    found = {"plain": [], "freeze": []}
    for _run in range(runs):
        for mode in ("plain", "freeze"):
            proc = subprocess.run(probe + [mode], env=env, check=False, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
            ended = time.time()
            if proc.returncode:
                raise BenchError("kube_probe.py failed: %s" % proc.stderr[-2000:])
            result = json.loads(proc.stdout)
            result["exit_seconds"] = ended - result["end"]
            found[mode].append(result)
    basic = []
    for _run in range(runs):
        proc = subprocess.run([PYTHON, "-c", IMPORT_PROBE % "ansible.module_utils.basic"], env=env, check=False,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if proc.returncode == 0:
            basic.append(float(proc.stdout.strip()))
    return {
        "first_call": summary([run["first_call_seconds"] for run in found["plain"]]),
        "next_calls": summary([run["next_calls_seconds"] for run in found["plain"]]),
        "exit_plain": summary([run["exit_seconds"] for run in found["plain"]]),
        "exit_freeze": summary([run["exit_seconds"] for run in found["freeze"]]),
        "basic_import": summary(basic),
    }


# --------------------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------------------

def machine():
    memory = "?"
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            kib = int(re.search(r"MemTotal:\s+(\d+)", handle.read()).group(1))
        memory = "%.1f GiB" % (kib / 1048576.0)
    except (OSError, AttributeError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            match = re.search(r"model name\s*:\s*(.+)", handle.read())
            cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    core = subprocess.run([PYTHON, "-c", "from ansible.release import __version__; print(__version__)"],
                          check=False, text=True, stdout=subprocess.PIPE).stdout.strip()
    python = subprocess.run([PYTHON, "-c", "import platform; print(platform.python_version())"], check=False,
                            text=True, stdout=subprocess.PIPE).stdout.strip()
    return {"nproc": os.cpu_count(), "memory": memory, "cpu": cpu, "python": python, "ansible_core": core,
            "kernel": platform.release(), "load_start": os.getloadavg()}


def verdict(ok):
    return "met" if ok else "**missed**"


def rows_of(data):
    """The summary table: (measurement, runs, median, spread, goal, verdict)."""
    rows = []
    noop = data.get("noop")
    if noop:
        rows.append(("1. dev_setup no-op re-run (%d tasks)" % noop["task_count"], fmt_runs(noop["rerun"]["runs"], "s"),
                     fmt(noop["rerun"]["median"], " s"), "%s–%s s" % (fmt(noop["rerun"]["min"]), fmt(noop["rerun"]["max"])),
                     "", ""))
        rows.append(("1. floor: %d x ansible.builtin.ping" % FLOOR_PINGS, fmt_runs(noop["floor"]["runs"], "s"),
                     fmt(noop["floor"]["median"], " s"), "%s–%s s" % (fmt(noop["floor"]["min"]), fmt(noop["floor"]["max"])),
                     "", ""))
        ratio = noop["ratio"]
        rows.append(("1. re-run / floor (pairwise)", fmt_runs(ratio["runs"], "x"), fmt(ratio["median"], "x"),
                     "%s–%s" % (fmt(ratio["min"]), fmt(ratio["max"])), "≤ %.1fx" % GOALS["noop"],
                     verdict(ratio["median"] <= GOALS["noop"])))
        if noop.get("stub_floor"):
            stub, stub_ratio = noop["stub_floor"], noop["stub_ratio"]
            rows.append(("1c. floor: the re-run's %d module task(s) as stubs (%d distinct)" % (
                len(noop["stub_modules"]), len(set(noop["stub_modules"]))), fmt_runs(stub["runs"], "s"),
                fmt(stub["median"], " s"), "%s–%s s" % (fmt(stub["min"]), fmt(stub["max"])), "reported, no goal", ""))
            rows.append(("1c. re-run / stub floor (pairwise)", fmt_runs(stub_ratio["runs"], "x"),
                         fmt(stub_ratio["median"], "x"), "%s–%s" % (fmt(stub_ratio["min"]), fmt(stub_ratio["max"])),
                         "reported, no goal", ""))
        if noop.get("direct_floor"):
            direct, direct_ratio = noop["direct_floor"], noop["direct_ratio"]
            rows.append(("1d. the re-run's %d module run(s) alone, their own arguments, no roles" % noop["direct_runs"],
                         fmt_runs(direct["runs"], "s"), fmt(direct["median"], " s"),
                         "%s–%s s" % (fmt(direct["min"]), fmt(direct["max"])), "reported, no goal", ""))
            rows.append(("1d. module runs alone / floor (pairwise)", fmt_runs(direct_ratio["runs"], "x"),
                         fmt(direct_ratio["median"], "x"), "%s–%s" % (fmt(direct_ratio["min"]), fmt(direct_ratio["max"])),
                         "reported, no goal", ""))
        first = noop.get("first")
        if first:
            share = 100.0 * first["cli_seconds"] / first["wall"] if first["wall"] else 0
            rows.append(("1b. dev_setup first run, from scratch", fmt(first["wall"], " s"), fmt(first["wall"], " s"),
                         "%.0f %% waiting on the cluster (CLI), %.0f %% ours" % (share, 100 - share),
                         "reported, no goal", ""))
        calls = noop["calls"]
        totals = [run["total"] for run in calls]
        module_tasks = len(calls[0]["per_task"]) if calls else 0
        repeats = max((sum(run.get("repeated", {}).values()) - len(run.get("repeated", {})) for run in calls), default=0)
        implicit = sum(run["implicit"] for run in calls)
        rows.append(("2. CLI calls in the re-run (%d module task(s))" % module_tasks, fmt_runs(totals, "", 0),
                     fmt(statistics.median(totals), "", 0) if totals else "n/a",
                     "%d repeated reads; %d implicit connects" % (repeats, implicit),
                     "each read once per host, 0 implicit", verdict(repeats == 0 and implicit == 0)))
    manager = data.get("manager")
    if manager and manager["module_exit"]:
        value = manager["module_exit"]
        rows.append(("3. manager ready → tp_manager returns", fmt_runs(value["runs"], "s", 3), fmt(value["median"], " s", 3),
                     "%s–%s s" % (fmt(value["min"], "", 3), fmt(value["max"], "", 3)), "< %.1f s" % GOALS["manager"],
                     verdict(value["median"] < GOALS["manager"])))
    if manager and manager.get("module_exit_freeze"):
        value = manager["module_exit_freeze"]
        rows.append(("3. check: same, gc.freeze also set from outside the module", fmt_runs(value["runs"], "s", 3),
                     fmt(value["median"], " s", 3), "%s–%s s" % (fmt(value["min"], "", 3), fmt(value["max"], "", 3)),
                     "< %.1f s" % GOALS["manager"],
                     "(%s)" % ("met" if value["median"] < GOALS["manager"] else "missed")))
    download = data.get("download")
    if download:
        for key, label in (("module_mib_s", "4. 100 MiB via tp_binary's Downloader"), ("curl_mib_s", "4. 100 MiB via curl")):
            value = download[key]
            rows.append((label, fmt_runs(value["runs"], "MiB/s", 0), fmt(value["median"], " MiB/s", 0),
                         "%s–%s" % (fmt(value["min"], "", 0), fmt(value["max"], "", 0)), "", ""))
        value = download["ratio"]
        rows.append(("4. throughput tp_binary / curl", fmt_runs(value["runs"], "x"), fmt(value["median"], "x"),
                     "%s–%s" % (fmt(value["min"]), fmt(value["max"])), "≥ %.1fx" % GOALS["throughput"],
                     verdict(value["median"] >= GOALS["throughput"])))
        value = download["rss_ratio"]
        sizes = (fmt(download["rss_big_mib"]["median"], "", 1), fmt(download["rss_small_mib"]["median"], "", 1))
        label = "4. peak RSS 100 MiB / 1 MiB (%s / %s MiB)" % sizes
        rows.append((label,
                     fmt_runs(value["runs"], "x", 3), fmt(value["median"], "x", 3),
                     "%s–%s" % (fmt(value["min"], "", 3), fmt(value["max"], "", 3)), "≤ %.1fx" % GOALS["memory"],
                     verdict(value["median"] <= GOALS["memory"])))
    for row in data.get("onboarding") or []:
        rows.append(("5. client role, %d host(s): install, per host" % row["hosts"],
                     fmt_runs(row["install_per_host"]["runs"], "s"), fmt(row["install_per_host"]["median"], " s"),
                     "total %s s" % fmt(row["install"]["median"], "", 1), "reported, no goal", ""))
        rows.append(("5. client role, %d host(s): no-op re-run, per host" % row["hosts"],
                     fmt_runs(row["rerun_per_host"]["runs"], "s"), fmt(row["rerun_per_host"]["median"], " s"),
                     "total %s s" % fmt(row["rerun"]["median"], "", 1), "reported, no goal", ""))
    return rows


def table(rows):
    header = ("measurement", "runs", "median", "spread", "goal", "result")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def details(data):
    parts = []
    noop = data.get("noop")
    if noop:
        lines = ["### 1–2. Where the no-op re-run spends its time, and its CLI calls", "",
                 "dev_setup's first run (setup from scratch) took %s s. The re-run ran %d tasks (%d ok, %d skipped; "
                 "changed per re-run: %s). A ping task of the floor takes %s s (median)." % (
                     fmt(noop["first_run"], "", 1), noop["task_count"], noop["ok"], noop["skipped"],
                     ", ".join(str(value) for value in noop["changed"]), fmt(noop["ping_time"]["median"])), "",
                 "| task (module) | median s | CLI calls in the re-run (first re-run) |", "|---|---|---|"]
        first_calls = {entry["module"]: entry["calls"] for entry in noop["calls"][0]["per_task"]} if noop["calls"] else {}
        for name, value in sorted(noop["task_times"].items(), key=lambda item: -item[1]["median"]):
            argvs = first_calls.get(name)
            described = "; ".join("`telepresence %s`" % " ".join(call["argv"]) for call in argvs) if argvs else (
                "0" if name in first_calls else "")
            count = "%d: " % len(argvs) if argvs else ""
            lines.append("| %s | %s | %s%s |" % (name, fmt(value["median"]), count, described))
        repeated = noop["calls"][0].get("repeated") if noop["calls"] else None
        if repeated:
            lines.append("")
            lines.append("Reads made more than once in the first re-run: %s." % ", ".join(
                "`telepresence %s` %d times" % (argv, count) for argv, count in sorted(repeated.items())))
        unattributed = noop["calls"][0]["unattributed"] if noop["calls"] else []
        if unattributed:
            lines.append("")
            lines.append("Calls outside any module task: %s" % ", ".join(" ".join(call["argv"]) for call in unattributed))
        parts.append("\n".join(lines))
        if noop.get("first"):
            parts.append(first_run_details(noop["first"]))
    manager = data.get("manager")
    if manager:
        parts.append("\n".join([
            "### 3. Traffic manager: rollout complete → tp_manager returns", "",
            "Sandbox knob `ready_delay` = %.1f s (the pod really waits). Time zero is the sandbox's `rollout-complete` "
            "line for `%s` in events.log; the module's return is stamped by a wrapper interpreter when the module "
            "process exits." % (manager["ready_delay"], MANAGER_OBJECT), "",
            "| span | median s | min–max s |", "|---|---|---|",
            "| ready → `telepresence helm install` exits (the CLI's own wait) | %s | %s–%s |" % (
                fmt(manager["helm_cli"]["median"], "", 3), fmt(manager["helm_cli"]["min"], "", 3),
                fmt(manager["helm_cli"]["max"], "", 3)) if manager["helm_cli"] else "| helm CLI | n/a | |",
            "| helm exits → tp_manager process exits (watch, re-read, result) | %s | %s–%s |" % (
                fmt(manager["after_helm"]["median"], "", 3), fmt(manager["after_helm"]["min"], "", 3),
                fmt(manager["after_helm"]["max"], "", 3)) if manager["after_helm"] else "| after helm | n/a | |",
            "| ready → tp_manager process exits (the goal) | %s | %s–%s |" % (
                fmt(manager["module_exit"]["median"], "", 3), fmt(manager["module_exit"]["min"], "", 3),
                fmt(manager["module_exit"]["max"], "", 3)),
            "| ready → Ansible has the task result | %s | %s–%s |" % (
                fmt(manager["controller"]["median"], "", 3), fmt(manager["controller"]["min"], "", 3),
                fmt(manager["controller"]["max"], "", 3)),
            "| whole tp_manager install task | %s | %s–%s |" % (
                fmt(manager["task_seconds"]["median"]), fmt(manager["task_seconds"]["min"]),
                fmt(manager["task_seconds"]["max"])),
        ]))
    download = data.get("download")
    if download:
        parts.append("\n".join([
            "### 4. Download", "",
            "`Downloader.fetch_to_file` (plugins/module_utils/binary.py, with Ansible's `open_url`, SHA-256 while "
            "writing, 64 KiB reads) in a fresh Python process, against `%s -sS -o FILE` on the same URL (mirror.py's "
            "`--big %d` artifact, loopback). Throughput counts the transfer only (curl's `time_total`; the probe's "
            "fetch), not process start-up. The module also fsyncs the file: %s s median, not counted%s." % (
                download["curl"], BIG_MIB, fmt(download["fsync"]["median"], "", 3),
                "; curl was installed by bench/run" if download["curl_installed"] else ""), "",
            "Like for like (the module verifies the digest, curl does not): curl then `sha256sum` of the file gives "
            "%s MiB/s (median; sha256sum alone %s s), against %s MiB/s for the module's path." % (
                fmt(download["curl_sha_mib_s"]["median"] if download.get("curl_sha_mib_s") else None, "", 0),
                fmt(download["hash_only"]["median"] if download.get("hash_only") else None, "", 3),
                fmt(download["module_mib_s"]["median"], "", 0)), "",
            "Peak RSS (ru_maxrss of the process, from wait4): %s MiB for 100 MiB, %s MiB for 1 MiB; curl %s MiB." % (
                fmt(download["rss_big_mib"]["median"], "", 1), fmt(download["rss_small_mib"]["median"], "", 1),
                fmt(download["curl_rss_mib"]["median"], "", 1)),
        ]))
    onboarding = data.get("onboarding")
    if onboarding:
        lines = ["### 5. Team onboarding: telepresence_client on N local hosts (forks 10)", "",
                 "| hosts | install total s | install per host s | no-op re-run total s | re-run per host s |",
                 "|---|---|---|---|---|"]
        for row in onboarding:
            lines.append("| %d | %s (%s–%s) | %s | %s (%s–%s) | %s |" % (
                row["hosts"], fmt(row["install"]["median"], "", 1), fmt(row["install"]["min"], "", 1),
                fmt(row["install"]["max"], "", 1), fmt(row["install_per_host"]["median"]),
                fmt(row["rerun"]["median"], "", 1), fmt(row["rerun"]["min"], "", 1), fmt(row["rerun"]["max"], "", 1),
                fmt(row["rerun_per_host"]["median"])))
        parts.append("\n".join(lines))
    cost = data.get("kube_cost")
    if cost:
        parts.append("\n".join([
            "### Profile: what a module pays to read the cluster (bench/kube_probe.py, fresh process, 3 runs)", "",
            "| step | median s | min–max s |", "|---|---|---|",
            "| `import ansible.module_utils.basic` (every module, for scale) | %s | %s–%s |" % (
                fmt(cost["basic_import"]["median"], "", 3), fmt(cost["basic_import"]["min"], "", 3),
                fmt(cost["basic_import"]["max"], "", 3)),
            "| first `Kube.get` (imports the client's kubeconfig loader and ApiClient, loads the kubeconfig, one GET) "
            "| %s | %s–%s |" % (
                fmt(cost["first_call"]["median"], "", 3), fmt(cost["first_call"]["min"], "", 3),
                fmt(cost["first_call"]["max"], "", 3)),
            "| two more `Kube.get` (a Deployment and a Service, read as JSON) | %s | %s–%s |" % (
                fmt(cost["next_calls"]["median"], "", 3), fmt(cost["next_calls"]["min"], "", 3),
                fmt(cost["next_calls"]["max"], "", 3)),
            "| interpreter shutdown after that | %s | %s–%s |" % (
                fmt(cost["exit_plain"]["median"], "", 3), fmt(cost["exit_plain"]["min"], "", 3),
                fmt(cost["exit_plain"]["max"], "", 3)),
            "| interpreter shutdown with `atexit.register(gc.freeze)` | %s | %s–%s |" % (
                fmt(cost["exit_freeze"]["median"], "", 3), fmt(cost["exit_freeze"]["min"], "", 3),
                fmt(cost["exit_freeze"]["max"], "", 3)),
        ]))
    return "\n\n".join(parts)


def first_run_details(first):
    wall, cli = first["wall"], first["cli_seconds"]
    lines = ["### 1b. dev_setup from scratch: waiting on the cluster against our own work", "",
             "One run on a fresh sandbox (client downloaded from the mirror, manager installed, connect, intercept): "
             "%s s. Inside Telepresence CLI calls, which in the sandbox is the emulator waiting on the simulated "
             "cluster (the manager's rollout, the daemons, agent injection and the pods it restarts): %s s in %d "
             "calls, **%.0f %%**. The rest, %s s (**%.0f %%**), is ours: Ansible's per-task cost, the modules' "
             "process start-up and their own work (download and hashing, cluster reads, the summary)." % (
                 fmt(wall, "", 1), fmt(cli, "", 1), first["cli_calls"], 100.0 * cli / wall if wall else 0,
                 fmt(wall - cli, "", 1), 100.0 * (wall - cli) / wall if wall else 0), "",
             "| CLI command | calls | seconds |", "|---|---|---|"]
    for name, value in sorted(first["per_command"].items(), key=lambda item: -item[1]["seconds"]):
        lines.append("| `%s` | %d | %s |" % (name, value["calls"], fmt(value["seconds"])))
    lines += ["", "| module task (first run) | seconds |", "|---|---|"]
    for label, seconds in sorted(first["module_tasks"], key=lambda item: -item[1]):
        lines.append("| %s | %s |" % (label, fmt(seconds)))
    return "\n".join(lines)


def direct_floor_note(noop):
    """What row 1d says about goal 1: the room the goal leaves the roles' own tasks."""
    if not noop.get("direct_floor"):
        return ""
    direct, floor = noop["direct_floor"]["median"], noop["floor"]["median"]
    room = GOALS["noop"] * floor - direct
    others = noop["task_times"].get("(all other tasks)", {}).get("median")
    text = (" Row 1d runs the re-run's %d module runs alone, with the arguments they had and no role around them: "
            "%s the floor (%s s). With this Ansible configuration no playbook that makes these module calls can be "
            "faster, so it is the floor of any role design; " % (
                noop["direct_runs"], fmt(noop["direct_ratio"]["median"], "x"), fmt(direct)))
    if room <= 0:
        text += "it is already above %.1fx before any role task runs." % GOALS["noop"]
    else:
        text += "%.1fx leaves the roles %s s for everything else they do (%d tasks%s, and the start of the plays)." % (
            GOALS["noop"], fmt(room), noop["task_count"] - len(noop.get("stub_modules") or []),
            ", %s s in this re-run" % fmt(others) if others is not None else "")
    return text


def interpretation(data):
    """Short notes on each goal; the causes were found by profiling (see docs/PERFORMANCE.md's history)."""
    notes = []
    noop = data.get("noop")
    if noop:
        ratio = noop["ratio"]["median"]
        times = noop["task_times"]
        modules = {name: value["median"] for name, value in times.items() if not name.startswith("(")}
        slowest = sorted(modules.items(), key=lambda item: -item[1])
        notes.append(
            "- **No-op re-run** %.2fx the floor (goal ≤ %.1fx, %s). The %d module task(s) take %s s of the run "
            "(%s), against %s s for a ping; the %d other tasks (argument validation, set_fact, include_role, skipped "
            "tasks, the summary) run no module." % (
                ratio, GOALS["noop"], "met" if ratio <= GOALS["noop"] else "missed", len(modules), fmt(sum(modules.values())),
                ", ".join("%s %s" % (name, fmt(value)) for name, value in slowest), fmt(noop["ping_time"]["median"]),
                noop["task_count"] - len(modules)) + NOTES["noop"] + direct_floor_note(noop))
        calls = noop["calls"][0] if noop["calls"] else None
        if calls:
            per = ", ".join("%s %d" % (entry["module"], len(entry["calls"])) for entry in calls["per_task"])
            note = "- **CLI calls** %d for %d module task(s) (%s), %d implicit connects." % (
                calls["total"], len(calls["per_task"]), per, calls["implicit"]) + NOTES["calls"]
            notes.append(note)
    manager = data.get("manager")
    if manager and manager["module_exit"]:
        notes.append("- **Manager readiness** %s s from the rollout event to tp_manager's exit (goal < %.1f s)." % (
            fmt(manager["module_exit"]["median"], "", 3), GOALS["manager"]) + NOTES["manager"])
    download = data.get("download")
    if download:
        note = "- **Download** %.2fx curl's throughput (goal ≥ %.1fx); peak RSS ratio %.3f (goal ≤ %.1f)." % (
            download["ratio"]["median"], GOALS["throughput"], download["rss_ratio"]["median"], GOALS["memory"])
        if download.get("curl_sha_mib_s"):
            note += (" Against curl followed by sha256sum (the same work: fetch and verify) it is %.2fx: Python's "
                     "hashlib (OpenSSL) hashes faster than this machine's coreutils sha256sum." % (
                         download["module_mib_s"]["median"] / download["curl_sha_mib_s"]["median"]))
        notes.append(note + NOTES["download"])
    onboarding = data.get("onboarding")
    if onboarding:
        per_host = ", ".join("%d: %s s" % (row["hosts"], fmt(row["install_per_host"]["median"])) for row in onboarding)
        rerun = ", ".join("%d: %s s" % (row["hosts"], fmt(row["rerun_per_host"]["median"])) for row in onboarding)
        note = "- **Onboarding** install time per host by host count: %s; no-op re-run per host: %s." % (per_host, rerun)
        if len(onboarding) > 1:
            first, last = onboarding[-2], onboarding[-1]
            growth = last["install_per_host"]["median"] / first["install_per_host"]["median"]
            note += " From %d to %d hosts the total grows %.1fx for %.0fx the hosts" % (
                first["hosts"], last["hosts"], last["install"]["median"] / first["install"]["median"],
                last["hosts"] / first["hosts"])
            note += (": time per host levels off." if growth <= 1.2 else
                     ": time per host grows %.0f %%." % ((growth - 1) * 100))
        notes.append(note + NOTES["onboarding"])
    return "\n".join(notes)


# Causes found by profiling the modules (cProfile, -X importtime, the calls log); kept here so every `make bench`
# rewrites docs/PERFORMANCE.md with them next to fresh figures.
NOTES = {
    "noop": (
        " The re-run is one module task: dev_setup's plan play hands tp_plan the tasks its other plays would run "
        "(the client's tp_binary, the traffic manager's tp_manager, the engagement's tp_intercept, with the options "
        "the roles give them), tp_plan runs their module code in check mode in its own process, and finding "
        "nothing to do, the play records those results and the four other plays match no host. That process pays "
        "once what each module task paid on its own: the start of Python, `import ansible.module_utils.basic`, the "
        "payload's compilation and, on the controller, one payload build (0.23-0.25 s for tp_plan's, the union of "
        "the three modules' module_utils, against 0.08 s for ping's; timed around module_common._find_module_utils, "
        "2026-12-06). The `kubernetes` client's kubeconfig loader is imported once (0.12 s), for tp_manager's read "
        "and tp_intercept's, which reads the Service, workload and port itself, the reads the skipped pre-flight "
        "made; the three CLI calls, the checksum file and the hashing of the client remain (cProfile of the kept "
        "AnsiballZ file: 0.55 s for the process, 0.42 s of it in the three checks). The small tasks left are the plan "
        "play's (the shared role's argument validation and include for the client's and the manager's plan entries, "
        "the entries' set_facts, the decision, the summary path's pre-flight and the three records) and the summary "
        "play's. The plays after the plan include their roles rather than import them, so a run that skips them "
        "does not parse them either: `--syntax-check` of dev_setup takes about 0.15 s more than the floor's "
        "(0.55-0.69 s against 0.43-0.59 s, 2026-12-06), where importing them had cost about 0.3 s more. Row 1c runs "
        "the re-run's module task as a stub that only starts and exits; row 1d runs it alone with its own "
        "arguments."),
    "calls": (
        " All three are tp_plan's checks: tp_binary asks `version` of an existing dest (issue 4); tp_intercept reads "
        "`status` first, so that `list` can never connect implicitly, and makes sure of the session from that same "
        "status (option `session`); `list` gives the mapping (status only names the intercepts). tp_manager takes "
        "the client's version from the plan's tp_binary check (tp_plan's client_options, as the telepresence_manager "
        "role takes it from telepresence_client), so it makes no call."),
    "manager": (
        " The CLI returns about 0.05-0.1 s after the rollout (its own 0.1 s poll); before kube.py froze the "
        "collector at exit, most of the rest was the module process collecting the `kubernetes` models after it had "
        "printed its result (0.85 s median at load 7 earlier the same day). The what-if row runs "
        "the same module with `gc.freeze` also registered from outside (a sitecustomize.py in the interpreter "
        "wrapper): equal figures show kube.py's own `atexit` registration does the job."),
    "download": (
        " The module's path receives, hashes and writes in one thread; cProfile of a 100 MiB run splits it about "
        "40 % recv_into, 35 % sha256, 25 % write; Python's own overhead is small. Memory stays "
        "flat (64 KiB chunks), whatever the size. A reader thread handing chunks to a hashing/writing thread "
        "(hashlib and write release the GIL) would overlap the two halves when a core is free; on this busy 2-core "
        "machine a prototype gained nothing."),
    "onboarding": (
        " With forks 10, a single host pays the run's fixed cost alone (start-up, parsing, the role's argument "
        "validation); from 10 hosts on, the work per host is constant (the checksum file, hashing the binary, one "
        "`version` call, Ansible's per-task cost) and no host waits on another (each has its own dest and lock). "
        "What grows beyond that is CPU contention: 10 workers, the controller and the sandbox's mirror share 2 "
        "cores (and whatever else runs; see the load average), so the totals here are an upper bound. "
        "`strategy: free` did not change the 50-host time in a manual try."),
}


# What each change for issue 16 bought, as measured when it landed (bench/run --only 1,2 --runs 5 for the no-op
# figures, ratios paired in one run; make test on a clean clone, `CI=true bash .ci/run`). Kept here so every
# `make bench` writes it next to the fresh figures.
HISTORY = [
    ("Issue filed",
     "no-op re-run 10.1 s against 2.9 s for five pings: **3.7x**; 5 CLI calls (`version` twice, `status` twice); "
     "`make test` 16 min on an idle machine"),
    ("module_utils/kube.py reads JSON through the client's ApiClient and urllib3 pool, no generated API classes or "
     "models (519e0ff)",
     "the kubeconfig loader and ApiClient cost about 0.25 s per module process, where building "
     "CoreV1Api/AppsV1Api and their models cost 1-2 s"),
    ("`gc.freeze` at exit of a module that imported `kubernetes` (3eca878)",
     "0.75-1.2 s less per cluster-reading task (the shutdown's collection; measurement 3)"),
    ("dev_setup/setup: the control host's client role is skipped on a host that installed the client earlier in the "
     "run (b09adc3)",
     "one tp_binary task (checksum fetch, hashing, `version`) less: 5 CLI calls to 4"),
    ("dev_setup's pre-flight play looks up no client; the intercept role does not repeat a passed pre-flight "
     "(2b7082c)",
     "two module tasks less in the re-run"),
    ("tp_intercept `session`: the intercept role connects through tp_intercept instead of a tp_connection task "
     "first (6e7ee38)",
     "one module task and the second `status` less: 4 CLI calls to 3, no read repeated (goal 2 met); 63 tasks to "
     "60; re-run/floor 3.12x to 2.96x (each paired, the same day)"),
    ("make test: integration targets in two groups and Molecule in two shards side by side, pytests on two xdist "
     "workers (a2d44c7, df3a5e7)",
     "16 min to 15.7 min (943 s) on a clean clone"),
    ("compat phase: ansible-test and the pytest runs side by side (82b3448)",
     "the phase 204 s to 126 s (warm venvs, the same machine, back to back)"),
    ("Measured again: make test on a clean clone at cf5fd41",
     "1355 s, green; that day the machine ran the same phases 1.4-1.7x slower (lint 51 s and Molecule 147 s, "
     "against 29 s and 89 s in the 943 s run; a ping task 0.38 s, against 0.25 s on 2026-11-21): the 15-minute "
     "goal is not shown on it"),
    ("tp_intercept takes the pre-flight's `target` and loads no Kubernetes client (acb11ef); summary parts recorded "
     "by the filter summary_part in one imported set_fact, not an include_role each (e986d34); the summary path's "
     "pre-flight as the controller-side filter private_file_problem, not a tp_private_file task (4dfd375); the "
     "client lookup included only when no client is known (c71ba4c); CLI calls waited for on a pidfd (e9a3d0c)",
     "no-op re-run 5.35 s to 4.59 s, 60 tasks to 49, 6 module tasks to 5; re-run/floor **3.12x to 2.64x** (852ca8a "
     "and e9a3d0c..102570c back to back, 5 paired runs each, 2026-12-03). A `telepresence version` call of the "
     "emulator through cli.run_process: 68 ms to 35 ms (median of 30; Popen.wait's sleeps had reached 32 ms)"),
    ("compat phase: the 2.16 and 2.21 controller venvs kept in ~/.cache/devloop-telepresence/compat, keyed by the "
     "pins and the Python (102570c)",
     "the phase 231 s when it builds both venvs to 93 s from the cache (the same machine, the same day); 120 s in "
     "a clean clone (388 s in a clean clone on a cold machine, at 852ca8a the same day)"),
    ("pytests phase: the heaviest test modules handed out first (conftest MODULE_SECONDS), three xdist workers "
     "instead of two",
     "the phase 385 s to 314 s (two workers had left the cores about a third idle; the ordering alone: 393-401 s "
     "to 385 s), all 465 tests, the same idle machine"),
    ("make test on a clean clone at 509c680 (before the pytests change), `CI=true bash .ci/run`",
     "green: the venv 25 s, then lint 33, sanity 40, units 19, compat 120, integration 187, Molecule 96, pytests "
     "393 s: phases 888 s, **913 s** in all, just over the 15-minute goal (900 s)"),
    ("make test on a clean clone at 3ac2f25, `CI=true bash .ci/run` (goal 4)",
     "green: the venv about 25 s, then lint 32, sanity 38, units 21, compat 116, integration 185, Molecule 91, "
     "pytests 313 s: phases 796 s, **821 s** in all (goal <= 900 s, met), on the idle machine, warm caches under "
     "~/.cache and ~/.ansible from earlier runs"),
    ("the summary role leaves a summary file that already holds the run's summary, without a tp_private_file task "
     "(filter private_file_holds, b52bab2); bench row 1c, the re-run's module tasks as stubs",
     "no-op re-run 6.36 s to 5.35 s, 5 module tasks to 4; re-run/floor **2.67x to 2.55x** (9e271fd and b52bab2 "
     "back to back, 5 paired runs each, 2026-12-04, a machine slower that day: five pings 2.1-2.4 s against 1.7-1.9 "
     "s on 2026-12-03). The stub floor (4 tasks, 3 distinct modules) 2.22 s against 2.10 s for five pings"),
    ("roles: the shared role one task per play (its integer check and client lookup included only when there is "
     "work), the intercept role's engagements and session namespace in one imported set_fact, its two input asserts "
     "in one, the leave-only read of other intercepts included only on that path; the summary put together in one "
     "set_fact (423f353, faa1e63)",
     "no-op re-run 49 tasks to 38, the same 4 module tasks and 3 CLI calls; re-run/floor **2.47x to 2.32x** "
     "(0adca86 and faa1e63 back to back, 5 paired runs each, 2026-12-04; five pings 1.86 s and 2.07 s)"),
    ("make test: ansible-lint beside sanity and units (phase `checks`, c5f27b9); integration groups weighted by "
     "what each target took alone (c5f27b9); pytests with `--no-loadscope-reorder` and weights for every module "
     "over 10 s (4bbef76); Molecule scenarios ordered so the two shards take about as long (a9fd360)",
     "checks 123 s to 83-95 s (lint, sanity and units were 46-51, 48-50 and 24-27 s one after the other); "
     "integration 242 s to 192-211 s; pytests 430 s to 389 s back to back. xdist's default had reordered the "
     "modules by their number of tests, so the heaviest-first order of the row above had never applied (its "
     "393-401 s to 385 s was noise). A clean clone at 6a713df: green in 954 s (phases 927 s: checks 83, compat 140, "
     "integration 192, Molecule 109, pytests 403), against 987 s for the previous stop's CI"),
    ("make test on a clean clone at c4cff98 (with the Molecule order), `CI=true bash .ci/run` (goal 4)",
     "green: checks 78, compat 133, integration 194, Molecule 103 (shards 101 and 103 s), pytests 389 s: phases "
     "897 s, **923 s** in all with the venv, just over the goal (900 s); the same machine ran 821 s at 3ac2f25 on "
     "a faster day (five pings then 1.7-1.9 s, today 1.9-2.1 s)"),
    ("make test on a clean clone at ca9fc93, `CI=true bash .ci/run` (goal 4)",
     "green: checks 84, compat 146, integration 196, Molecule 91, pytests 355 s: phases 872 s, **900 s** in all, at "
     "the goal; the project's own CI of the same commit: green in 842 s"),
    ("compat phase: the units on the newest managed-node Python beside the pytest runs, in a second copy of the "
     "tree (f0192a7)",
     "the phase 107 s to 98 s (warm, back to back, the same machine): its lanes 107 and 73 s to 87 and 97 s"),
    ("bench row 1d: the re-run's module runs alone, with their own arguments and no roles (9fb1611)",
     "1.47x five pings (5 paired runs; 1.50x and 1.56x in runs of 1 and 3 the same evening). So 1.6x leaves the "
     "roles about 0.2 s, where their 34 tasks take 0.9-1.2 s and ten of them are the argument validations every "
     "role with meta/argument_specs.yml gets in every play: short of dropping that validation and nearly every other "
     "task, no role design that makes these module calls meets goal 1"),
    ("make test on a clean clone at 91e2951 (with the compat lanes), `CI=true bash .ci/run` (goal 4)",
     "green: checks 80, compat 119, integration 190, Molecule 87, pytests 330 s: phases 806 s, **about 832 s** in "
     "all with the venv (goal <= 900 s, met), against 900 s for ca9fc93 on the same machine the same day"),
    ("dev_setup's plan play: tp_plan runs the tasks of the other plays (tp_binary, tp_manager, tp_intercept, with "
     "the roles' options) in check mode in one module process per host; when no host has anything to do, the play "
     "records their results and the four other plays match no host (56b8f9c..a5a0880)",
     "no-op re-run 38 tasks to 23, 4 module tasks to 1, the same 3 CLI calls; re-run/floor **2.41x to 1.56x** "
     "(98dfbe9: 3 paired runs, a5a0880: 9, `bench/run --only 1,2`, the same evening). The first run from scratch "
     "pays for the plan, which stops at the client it would install: 6.1 s to 7.8-8.3 s"),
    ("dev_setup: the plays after the plan include their roles instead of importing them (8204298)",
     "a skipped play's roles are not parsed: re-run/floor **1.60x to 1.38x** (9 paired runs each, back to back, "
     "2026-12-06)"),
    ("make test on a clean clone at a5a0880 and at ad02ff7 (with the plan play and the tp_plan target), "
     "`CI=true bash .ci/run` (goal 4)",
     "green both: checks 79 and 79, compat 104 and 113, integration 172 and 191, Molecule 88 and 108, pytests 358 "
     "and 366 s: phases 801 and 857 s, plus about 25 s for the venv (goal <= 900 s, met; the first run of "
     "dev_setup, which many tests make, pays for the plan)"),
]

TRIED = (
    "Tried and dropped: pytest-xdist `--dist loadgroup`, every test handed out on its own except those sharing a "
    "module-scoped fixture (the module-scoped workflow fixtures were then built twice: 705 s against 600 s for "
    "`loadscope` on the same busy machine); the integration targets beside the Molecule scenarios (402 s against "
    "407 s one after the other: both phases are CPU-bound on two cores); four pytest-xdist workers instead of three "
    "(401 s against 389 s, both with `--no-loadscope-reorder`, the same day); dev_setup's pre-flight and client "
    "plays as one play (both run on the workstations): the shared role, a dependency of both imported roles, still "
    "ran twice in that play, so the re-run kept its 38 tasks; on the quick way, recording the client and the "
    "manager in the intercept role's record task (one task less): a control host has no engagement to record."
)


def history():
    lines = ["| change | what it bought |", "|---|---|"]
    lines += ["| %s | %s |" % row for row in HISTORY]
    return "\n".join(lines + ["", TRIED, ""])


def document(data):
    info = data["machine"]
    lines = [
        "# Performance",
        "",
        "Written by `make bench` (bench/run); do not edit by hand. Ratios are measured side by side in one run, "
        "alternating the two sides; every figure is the median of the runs listed. No test asserts a time.",
        "",
        "- date: %s (took %s s)" % (data["started"], fmt(data.get("duration"), "", 0)),
        "- machine: %s CPUs (%s), %s memory, kernel %s; Python %s, ansible-core %s" % (
            info["nproc"], info["cpu"], info["memory"], info["kernel"], info["python"], info["ansible_core"]),
        "- load average at start %s, at end %s (other work on the machine inflates absolute times; ratios are "
        "side by side)" % ("/".join("%.1f" % value for value in info["load_start"]),
                           "/".join("%.1f" % value for value in info.get("load_end", ()))),
        "",
        table(rows_of(data)),
        "",
        "## Interpretation",
        "",
        interpretation(data),
        "",
        "## What each change bought",
        "",
        history(),
        "## Details",
        "",
        details(data),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement 1-4 (default 5)")
    parser.add_argument("--onboarding-runs", type=int, default=3, help="runs per host count (default 3)")
    parser.add_argument("--hosts", default="1,10,50", help="host counts for onboarding (default 1,10,50)")
    parser.add_argument("--only", default="1,2,3,4,5", help="measurements to run (default all: 1,2,3,4,5)")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/PERFORMANCE.md")
    parser.add_argument("--render", metavar="DATA_JSON",
                        help="measure nothing: rewrite docs/PERFORMANCE.md from a bench/results/*/data.json")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        with open(args.render, encoding="utf-8") as handle:
            data = json.load(handle)
        print(table(rows_of(data)))
        write(DOC, document(data))
        log("wrote %s from %s" % (os.path.relpath(DOC, ROOT), args.render))
        return 0
    only = set(args.only.split(","))
    started = time.perf_counter()

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    if not os.access(PYTHON, os.X_OK):
        print("bench/run: %s is missing; run `make venv` first" % PYTHON, file=sys.stderr)
        return 2
    bench = Bench(args)
    data = bench.data
    data["machine"] = machine()
    log("results in %s; collection copy in %s" % (bench.results, COLLECTION))
    subprocess.run([PYTHON, os.path.join(ROOT, "tests", "tools", "sync_copy.py"), ROOT, COLLECTION], check=True)
    try:
        if only & {"1", "2", "5"}:
            main_env = bench.sandbox("main")
            if only & {"1", "2"}:
                log("measurements 1-2: dev_setup no-op re-run against the ping floor, CLI calls (%d runs)" % args.runs)
                data["noop"] = measure_noop(bench, main_env, args.runs)
            if "5" in only:
                counts = [int(count) for count in args.hosts.split(",") if count]
                log("measurement 5: telepresence_client on %s hosts (%d runs each)" % (counts, args.onboarding_runs))
                data["onboarding"] = measure_onboarding(bench, main_env, counts, args.onboarding_runs)
            log("profile: what reading the cluster through module_utils/kube.py costs a module process")
            data["kube_cost"] = measure_kube_cost(main_env)
        if only & {"3", "4"}:
            other_env = bench.sandbox("manager", knobs={"ready_delay": READY_DELAY})
            if "3" in only:
                log("measurement 3: rollout-complete -> tp_manager returns (ready_delay %.1f s, %d runs)"
                    % (READY_DELAY, args.runs))
                data["manager"] = measure_manager(bench, other_env, args.runs)
            if "4" in only:
                log("measurement 4: %d MiB download, tp_binary's Downloader against curl (%d runs)" % (BIG_MIB, args.runs))
                data["download"] = measure_download(bench, other_env, args.runs)
    except BenchError as exc:
        print("bench/run: %s" % exc, file=sys.stderr)
        return 1
    finally:
        bench.close()
    data["duration"] = time.perf_counter() - started
    data["machine"]["load_end"] = os.getloadavg()
    write(os.path.join(bench.results, "data.json"), json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    print()
    print(table(rows_of(data)))
    print()
    print(interpretation(data))
    if not args.no_doc:
        write(DOC, document(data))
        log("wrote %s" % os.path.relpath(DOC, ROOT))
    log("done in %.0f s; raw data in %s" % (data["duration"], os.path.relpath(bench.results, ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
