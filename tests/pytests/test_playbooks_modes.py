# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 18 through the playbooks: several engagements in one run (telepresence_intercepts), the modes replace,
wiretap and ingest with the traffic each gives, the gates on old clients, and namespaces per client version.

Each test has its own sandbox (the `sandbox` fixture); the local servers are threads of this process that record
what reaches them.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.request

import pytest

from workflow_support import BIN, ROOT, read_summary, recap, run


class Local:
    """A developer's local server: answers ``local: <name>`` and records the paths (and wiretap copies) it got."""

    def __init__(self, name):
        self.name, self.seen = name, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # pylint: disable=invalid-name
                owner.seen.append((self.path, self.headers.get("X-Telepresence-Wiretap")))
                payload = ("local: %s\n" % owner.name).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # pylint: disable=arguments-differ
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def locals_():
    servers = [Local("one"), Local("two")]
    yield servers
    for server in servers:
        server.stop()


def playbook(name, env, extra=None, version="v2.24.0", expect_rc=0):
    extra_vars = dict({"telepresence_version": version}, **(extra or {}))
    result = run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "sandbox"),
                  str(ROOT / "playbooks" / ("%s.yml" % name)), "-e", json.dumps(extra_vars)], env=env, timeout=600)
    assert result.returncode == expect_rc, result.stdout[-5000:] + result.stderr
    return recap(result.stdout)["localhost"], result.stdout


def body(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def state(env):
    with open(os.path.join(env["TP_SANDBOX_DIR"], "state.json")) as handle:
        return json.load(handle)


def calls(env):
    path = os.path.join(env["TP_SANDBOX_DIR"], "calls.log")
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def test_two_intercepts_active_together_each_to_its_local_server(sandbox, locals_):
    one, two = locals_
    entries = {"telepresence_intercepts": [
        {"service": "fresh-app", "local_port": one.port},
        {"service": "web-only", "service_port": "web", "local_port": two.port}]}
    playbook("setup", sandbox)
    first = playbook("intercept", sandbox, entries)[0]
    assert first["changed"] > 0
    summary = read_summary(sandbox)
    assert [(item["intercept"]["name"], item["intercept"]["disposition"], item["action"])
            for item in summary["intercepts"]] == [("fresh-app", "ACTIVE", "created"), ("web-only", "ACTIVE", "created")]
    assert summary["intercept"]["intercept"]["name"] == "fresh-app"      # the one-entry key stays
    assert sorted(item["name"] for item in state(sandbox)["intercepts"]) == ["fresh-app", "web-only"]
    assert body(sandbox["TP_SANDBOX_TRAFFIC_FRESH_APP"]) == "local: one\n"
    assert body(sandbox["TP_SANDBOX_TRAFFIC_WEB_ONLY"]) == "local: two\n"
    assert body(sandbox["TP_SANDBOX_TRAFFIC_NUMERIC_PORT"]) == "cluster: numeric-port.app\n"
    again = playbook("intercept", sandbox, entries)[0]
    assert again["changed"] == 0
    assert [item["action"] for item in read_summary(sandbox)["intercepts"]] == ["none", "none"]
    playbook("status", sandbox)
    assert sorted(item["name"] for item in read_summary(sandbox)["status"]["intercepts"]) == ["fresh-app", "web-only"]
    left = playbook("leave", sandbox, entries)[0]
    assert left["changed"] > 0 and state(sandbox)["intercepts"] == []
    assert [item["action"] for item in read_summary(sandbox)["intercepts"]] == ["removed", "removed"]
    assert body(sandbox["TP_SANDBOX_TRAFFIC_FRESH_APP"]) == "cluster: fresh-app.app\n"
    assert playbook("leave", sandbox, entries)[0]["changed"] == 0


def test_replace_and_wiretap_on_2_25(sandbox, locals_):
    one, two = locals_
    entries = {"telepresence_intercepts": [
        {"service": "fresh-app", "mode": "replace", "local_port": one.port},
        {"service": "web-only", "name": "web-only-tap", "mode": "wiretap", "service_port": "web",
         "local_port": two.port}]}
    playbook("setup", sandbox, version="v2.25.0")
    assert playbook("intercept", sandbox, entries, version="v2.25.0")[0]["changed"] > 0
    modes = {item["intercept"]["name"]: item["intercept"]["mode"] for item in read_summary(sandbox)["intercepts"]}
    assert modes == {"fresh-app": "replace", "web-only-tap": "wiretap"}
    assert body(sandbox["TP_SANDBOX_TRAFFIC_FRESH_APP"] + "/replaced") == "local: one\n"      # replace: local answers
    assert body(sandbox["TP_SANDBOX_TRAFFIC_WEB_ONLY"] + "/tapped") == "cluster: web-only.app\n"   # wiretap: cluster
    assert two.seen == [("/tapped", "1")]                                       # ... and the local server got a copy
    assert playbook("intercept", sandbox, entries, version="v2.25.0")[0]["changed"] == 0
    assert playbook("leave", sandbox, entries, version="v2.25.0")[0]["changed"] > 0
    assert state(sandbox)["intercepts"] == []


def test_ingest_writes_the_env_file_and_changes_no_traffic(sandbox, tmp_path):
    env_file = tmp_path / "secret-app.env"
    entries = {"telepresence_intercepts": [{"service": "secret-app", "mode": "ingest", "env_file": str(env_file)}]}
    playbook("setup", sandbox)
    assert playbook("intercept", sandbox, entries)[0]["changed"] > 0
    assert "API_TOKEN=%s" % sandbox["TP_SANDBOX_SECRET"] in env_file.read_text().splitlines()
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert sandbox["TP_SANDBOX_SECRET"] not in (ROOT / "README.md").read_text()  # (sanity of the fixture)
    assert sandbox["TP_SANDBOX_SECRET"] not in json.dumps(read_summary(sandbox))
    assert body(sandbox["TP_SANDBOX_TRAFFIC_SECRET_APP"]) == "cluster: secret-app.app\n"
    assert playbook("intercept", sandbox, entries)[0]["changed"] == 0
    assert playbook("leave", sandbox, entries)[0]["changed"] > 0
    assert state(sandbox)["ingests"] == []


def test_each_mode_refused_on_a_client_too_old_before_any_change(sandbox, locals_):
    one, _two = locals_
    entries = {"telepresence_intercepts": [
        {"service": "fresh-app", "mode": "replace", "local_port": one.port},
        {"service": "web-only", "mode": "wiretap", "service_port": "web", "local_port": one.port},
        {"service": "secret-app", "mode": "ingest"}]}
    playbook("setup", sandbox, version="v2.20.2")
    _recap, output = playbook("intercept", sandbox, entries, version="v2.20.2", expect_rc=2)
    assert ("telepresence_intercepts fresh-app (mode replace needs 2.22.0), web-only (mode wiretap needs 2.23.0), "
            "secret-app (mode ingest needs 2.21.0): client 2.20.2 is too old") in " ".join(output.split())
    assert not [call for call in calls(sandbox) if call["cmd"] in ("connect", "intercept", "replace", "wiretap",
                                                                   "ingest")]


def create_shop(env):
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=env["KUBECONFIG"])
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "shop"}})
    labels = {"app": "cart"}
    apps.create_namespaced_deployment("shop", {
        "metadata": {"name": "cart", "labels": labels},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "containers": [{"name": "cart", "image": "registry.sandbox.local/shop/cart:1.0.0",
                            "ports": [{"name": "web", "containerPort": 8080}]}]}}}})
    core.create_namespaced_service("shop", {"metadata": {"name": "cart"}, "spec": {
        "selector": labels, "ports": [{"name": "web", "port": 80, "targetPort": 8080}]}})


@pytest.mark.parametrize("version,accepted", [("v2.24.0", False), ("v2.29.0", True)])
def test_a_list_mixing_namespaces(sandbox, locals_, version, accepted):
    one, two = locals_
    create_shop(sandbox)
    entries = {"telepresence_intercepts": [
        {"service": "fresh-app", "local_port": one.port},
        {"service": "cart", "namespace": "shop", "service_port": "web", "local_port": two.port}]}
    playbook("setup", sandbox, version=version)
    if not accepted:
        _recap, output = playbook("intercept", sandbox, entries, version=version, expect_rc=2)
        assert ("telepresence_intercepts cart (namespace shop) are not in the session's namespace app (the first "
                "entry's): client 2.24.0 engages only in the namespace it connected to") in " ".join(output.split())
        assert not [call for call in calls(sandbox) if call["cmd"] in ("connect", "intercept")]
        return
    assert playbook("intercept", sandbox, entries, version=version)[0]["changed"] > 0
    placed = {item["name"]: item["namespace"] for item in state(sandbox)["intercepts"]}
    assert placed == {"fresh-app": "app", "cart": "shop"}
    assert body(sandbox["TP_SANDBOX_TRAFFIC_FRESH_APP"]) == "local: one\n"
    assert playbook("intercept", sandbox, entries, version=version)[0]["changed"] == 0
    assert playbook("leave", sandbox, entries, version=version)[0]["changed"] > 0
    assert state(sandbox)["intercepts"] == []
