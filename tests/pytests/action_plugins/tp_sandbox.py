# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only action: set the sandbox's faults and knobs, or take a snapshot of what a case left behind.

It runs inside ansible-playbook (no module process), so a suite can switch faults between the tasks of one playbook
for almost nothing. Options: ``dir`` (the sandbox directory); ``faults`` (the faults.json document; empty or null
removes it; the counters in faults.state.json are always reset); ``knobs`` (the knobs.json document);
``snapshot`` (true: return the emulator's state.json); ``folders`` (paths whose file names are returned);
``processes`` (true: return the command lines of live processes that run a sandbox binary); ``cluster`` (true: return
the traffic manager's Deployment and Helm releases, and the workloads with a traffic agent, read after the faults
were removed); ``cli`` (argv lists run in order after the faults changed, for setup: a failing call fails the task
unless its list starts with ``-``).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import urllib.error
import urllib.request

from ansible.plugins.action import ActionBase

DOCUMENTATION = """
name: tp_sandbox
short_description: sandbox faults, knobs and snapshots for the reliability suites (test helper)
"""


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _write(path, document):
    temp = path + ".tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
    os.replace(temp, path)


def _live_sandbox_processes(directory):
    """Command lines of processes running one of this sandbox's telepresence artifacts (a CLI call that outlived
    its task)."""
    found = []
    marker = os.path.join(directory, "bin", "telepresence-")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        text = " ".join(part.decode("utf-8", "replace") for part in argv if part)
        if marker in text:
            found.append(text)
    return found


def _api_get(directory, path):
    """GET ``path`` on the sandbox's API (it does not check credentials); None on 404."""
    with open(os.path.join(directory, "ports", "api"), encoding="utf-8") as handle:
        base = "http://127.0.0.1:%s" % handle.read().strip()
    try:
        with urllib.request.urlopen(base + path, timeout=10) as response:  # nosec: loopback test API
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _manager(directory):
    """The traffic manager as the cluster has it: Deployment present and ready, Helm release revisions."""
    deployment = _api_get(directory, "/apis/apps/v1/namespaces/ambassador/deployments/traffic-manager")
    secrets = _api_get(directory, "/api/v1/namespaces/ambassador/secrets?labelSelector=owner%3Dhelm") or {}
    releases = sorted(({"revision": int(item["metadata"]["labels"].get("version")),
                        "status": item["metadata"]["labels"].get("status"), "values": _release_values(item)}
                       for item in secrets.get("items") or []), key=lambda release: release["revision"])
    status = (deployment or {}).get("status") or {}
    return {"installed": deployment is not None, "ready_replicas": status.get("readyReplicas", 0),
            "releases": releases}


def _release_values(secret):
    """The user values of a Helm release secret: data.release = base64(base64(gzip(JSON)))."""
    try:
        raw = base64.b64decode(base64.b64decode(secret["data"]["release"]))
        return json.loads(gzip.decompress(raw)).get("config")
    except (KeyError, ValueError, OSError):
        return None


def _agents(directory):
    deployments = _api_get(directory, "/apis/apps/v1/deployments") or {}
    return sorted("%s/%s" % (item["metadata"]["namespace"], item["metadata"]["name"])
                  for item in deployments.get("items") or []
                  if any(container["name"] == "traffic-agent"
                         for container in item["spec"]["template"]["spec"]["containers"]))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        directory = str(args["dir"])
        result["changed"] = False
        # The snapshot is taken first, so it sees the counters of the faults that the same task then removes.
        if args.get("snapshot"):
            path = os.path.join(directory, "state.json")
            try:
                with open(path, encoding="utf-8") as handle:
                    result["state"] = json.load(handle)
            except FileNotFoundError:
                result["state"] = {}
            try:
                with open(os.path.join(directory, "faults.state.json"), encoding="utf-8") as handle:
                    result["fault_counters"] = json.load(handle)
            except FileNotFoundError:
                result["fault_counters"] = {}
        if args.get("folders"):
            result["folders"] = {str(folder): sorted(os.listdir(str(folder))) if os.path.isdir(str(folder)) else None
                                 for folder in args["folders"]}
        if args.get("processes"):
            result["processes"] = _live_sandbox_processes(directory)
        if "faults" in args:
            _remove(os.path.join(directory, "faults.state.json"))
            if args["faults"]:
                _write(os.path.join(directory, "faults.json"), args["faults"])
            else:
                _remove(os.path.join(directory, "faults.json"))
        if "knobs" in args:
            _write(os.path.join(directory, "knobs.json"), args["knobs"] or {})
        if args.get("cli"):
            # Setup through the sandbox's CLI directly (70 ms a call instead of a module run); rc != 0 fails the task
            # unless the argv list starts with "-" (as in a Makefile).
            result["cli"] = []
            for argv in args["cli"]:
                argv = [str(item) for item in argv]
                tolerant = argv[0] == "-"
                argv = argv[1:] if tolerant else argv
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                                      check=False)
                result["cli"].append({"argv": argv, "rc": done.returncode, "stderr": done.stderr[-500:]})
                if done.returncode and not tolerant:
                    result["failed"] = True
                    result["msg"] = "setup call failed: %s: %s" % (" ".join(argv), done.stderr.strip()[-300:])
                    return result
        # After the faults are gone: the cluster's own API answers the rest.
        if args.get("cluster"):
            result["manager"] = _manager(directory)
            result["agents"] = _agents(directory)
        return result
