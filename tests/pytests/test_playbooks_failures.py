# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the playbooks fail and what they report, run by path from the checkout with names that are not the defaults
(issue 14): Service and Deployment cart in namespace shop, Service port web (80 -> 8080), local port 19090 (the issue
had 9090), traffic manager namespace tp-system, client v2.25.0.

- A typo in the Service name fails in dev_setup's pre-flight, naming telepresence_service and the Services there,
  before any change: no client installed, no traffic manager, no Telepresence CLI call at all.
- A failure after some changes still prints (and writes) the summary: what was done, and under "failed" the task and
  its message; the run then fails.
- A bad telepresence_summary_path fails before any change.
- --check from a disconnected state reports the connection and intercept it would make and what the pre-flight found
  (port number and target port), and a nothing-listening warning in the intercept's part.
"""

from __future__ import annotations

import json
import os
import re
import socket

import pytest

from workflow_support import BIN, ROOT, read_summary, run

SHOP = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec:
      containers:
        - name: cart
          image: shop/cart:1.0
          ports: [{name: web, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: cart}
  ports: [{name: web, port: 80, targetPort: 8080}]
"""
MANAGER_NAMESPACE = "tp-system"


def free(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


# The user had 9090; test_try_your_app.py starts the README's dev server there, and with the suites side by
# side (pytest-xdist) it could be listening while the check-mode test below needs a port where nothing listens. So a
# port no other suite uses.
LOCAL_PORT = 19090


@pytest.fixture()
def shop(sandbox, tmp_path):
    """The sandbox with cart in shop applied (kubectl, as the README's "Try it on your own app" does)."""
    manifests = tmp_path / "app.yaml"
    manifests.write_text(SHOP)
    applied = run(["kubectl", "apply", "--validate=false", "-f", str(manifests)], env=sandbox, timeout=60)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return sandbox


def names(*extra):
    pairs = {"telepresence_namespace": "shop", "telepresence_service": "cart", "telepresence_service_port": "web",
             "telepresence_local_port": LOCAL_PORT, "telepresence_manager_namespace": MANAGER_NAMESPACE,
             "telepresence_version": "v2.25.0"}
    pairs.update(dict(item.split("=", 1) for item in extra))
    return ["-e", json.dumps(pairs)]


def playbook(env, name, *args):
    return run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "sandbox"),
                str(ROOT / "playbooks" / ("%s.yml" % name))] + list(args), env=env)


def calls(env):
    path = os.path.join(env["TP_SANDBOX_DIR"], "calls.log")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line)["argv"] for line in handle if line.strip()]


def namespaces(env):
    listed = run(["kubectl", "get", "namespaces", "-o", "json"], env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    return sorted(item["metadata"]["name"] for item in json.loads(listed.stdout)["items"])


def client_installed(env):
    return os.path.exists(os.path.join(env["TP_SANDBOX_DIR"], "workstation", "bin", "telepresence"))


def printed_summary(output):
    """The summary object the "Print the summary" task showed."""
    start = output.index('"telepresence_summary_report": {')
    depth, begin = 0, output.index("{", start)
    for index in range(begin, len(output)):
        depth += {"{": 1, "}": -1}.get(output[index], 0)
        if depth == 0:
            return json.loads(output[begin:index + 1])
    raise AssertionError("no complete summary in the output")


def test_a_typo_in_the_service_name_fails_before_any_change(shop):
    result = playbook(shop, "dev_setup", *names("telepresence_service=crat"))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    failed = read_summary(shop)["failed"]
    # The workload defaults to the Service's name: the message is about the Service, in the role variable's name.
    assert failed["message"] == ("Service shop/crat not found (Services there: cart); set telepresence_service to one "
                                 "of them"), failed
    assert failed["task"] == "Pre-flight, each engagement's Service, port and workload exist"
    assert printed_summary(result.stdout) == read_summary(shop)
    assert sorted(read_summary(shop)) == ["failed"]
    # Nothing changed: no client, no manager namespace, and not one Telepresence call (so no connect).
    assert not client_installed(shop)
    assert MANAGER_NAMESPACE not in namespaces(shop)
    assert calls(shop) == []
    assert "workload" not in failed["message"]


def test_a_failure_after_changes_prints_the_summary_with_the_error(shop):
    # The intercept call fails once the client, the manager and the session are there.
    faults = os.path.join(shop["TP_SANDBOX_DIR"], "faults.json")
    with open(faults, "w") as handle:
        json.dump({"cli": {"intercept": {"mode": "error", "message": "intercept refused by the sandbox"}}}, handle)
    result = playbook(shop, "dev_setup", *names())
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    summary = read_summary(shop)
    assert printed_summary(result.stdout) == summary
    assert sorted(summary) == ["client", "connection", "failed", "manager"]
    assert summary["client"]["changed"] and summary["client"]["version"] == "2.25.0"
    assert (summary["manager"]["action"], summary["manager"]["namespace"]) == ("installed", MANAGER_NAMESPACE)
    assert summary["connection"]["status"]["namespace"] == "shop"
    assert summary["failed"]["task"] == "Make sure each engagement is present"
    assert "intercept refused by the sandbox" in summary["failed"]["message"]
    # The run's last word is the failure, naming the host and the task.
    assert 'localhost: task "Make sure each engagement is present" failed: ' in output
    assert re.search(r"localhost\s+: ok=\d+\s+changed=[1-9]\d*\s+unreachable=0\s+failed=1\s+skipped=\d+\s+rescued=[1-9]",
                     output), output[-2000:]


def test_a_bad_summary_path_fails_before_any_change(shop, tmp_path):
    result = playbook(shop, "dev_setup", *names("telepresence_summary_path=%s" % (tmp_path / "no-such-dir" / "s.json")))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    summary = printed_summary(result.stdout)
    assert sorted(summary) == ["failed"]
    assert summary["failed"]["message"].startswith("telepresence_summary_path %s: the directory " % (
        tmp_path / "no-such-dir" / "s.json"))
    assert not client_installed(shop)
    assert calls(shop) == []


def test_check_mode_from_disconnected_shows_what_it_would_make(shop):
    setup = playbook(shop, "setup", *names())
    assert setup.returncode == 0, setup.stdout[-4000:] + setup.stderr
    port = LOCAL_PORT if free(LOCAL_PORT) else None
    if port is None:
        pytest.fail("port %d is taken on this machine; the check-mode case needs it free" % LOCAL_PORT)
    result = playbook(shop, "dev_setup", "--check", *names())
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    summary = read_summary(shop)
    connection, intercept = summary["connection"], summary["intercept"]
    assert connection["action"] == "connected" and connection["changed"]
    # What is true now, next to what would be.
    assert connection["connected"] is False and connection["status"]["connected"] is False
    assert connection["planned"] == {"connected": True, "context": "sandbox", "namespace": "shop",
                                     "manager_namespace": MANAGER_NAMESPACE}
    assert intercept["action"] == "created" and intercept["intercept"] is None
    assert intercept["planned"] == {"present": True, "workload": "cart", "service_port": "web",
                                    "local_port": LOCAL_PORT}
    assert intercept["target"] == {"workload_kind": "Deployment", "service": "cart", "port_name": "web",
                                   "port_number": 80, "target_port": 8080}
    assert any("nothing is listening on 127.0.0.1:%d" % LOCAL_PORT in item for item in intercept["warnings"])
