# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readable cluster errors: unreachable API, unknown context, missing kubeconfig, 401/403/404/500."""
from __future__ import annotations

import json
import socket

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils import kube as kube_module
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import Kube, KubeError, KubeNotFound

kubernetes = pytest.importorskip("kubernetes")


def write_kubeconfig(path, server, contexts=("sandbox",)):
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": contexts[0],
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "tok"}}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": "u"}} for name in contexts],
    }
    path.write_text(json.dumps(config))
    return str(path)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_exception(status, message):
    exc = kubernetes.client.ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


def test_missing_kubeconfig(tmp_path):
    with pytest.raises(KubeError, match="kubeconfig .*/nope does not exist; set the kubeconfig option"):
        Kube(str(tmp_path / "nope")).api_client()


def test_unknown_context_lists_the_known_ones(tmp_path):
    path = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:1", contexts=("sandbox", "prod"))
    with pytest.raises(KubeError) as info:
        Kube(path, "nope").api_client()
    assert "context 'nope' was not found" in info.value.msg and "prod, sandbox" in info.value.msg


def test_unreachable_api_is_readable_and_bounded(tmp_path):
    path = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:%d" % free_port())
    kube = Kube(path, "sandbox", timeout=3)
    with pytest.raises(KubeError) as info:
        kube.list("apps", "deployment", "ambassador")
    assert info.value.msg.startswith("cannot reach the Kubernetes API of context sandbox to list deployments "
                                     "in namespace ambassador")


def test_forbidden_names_verb_resource_namespace():
    def deny(*_args, **_kwargs):
        raise api_exception(403, 'deployments.apps is forbidden: User "dev" cannot list resource "deployments"')
    with pytest.raises(KubeError) as info:
        Kube(context="sandbox").call("list", "deployments", "ambassador", deny)
    assert info.value.status == 403
    assert "cannot list deployments in namespace ambassador" in info.value.msg
    assert 'User "dev" cannot list' in info.value.msg


def test_unauthorized_and_server_error():
    def unauthorized(*_a, **_k):
        raise api_exception(401, "Unauthorized")

    def broken(*_a, **_k):
        raise api_exception(500, "etcd is sad")
    with pytest.raises(KubeError, match=r"rejected the credentials .* \(401 Unauthorized\) while trying to get secrets"):
        Kube().call("get", "secrets", "ambassador", unauthorized)
    with pytest.raises(KubeError, match="answered 500 to create services in namespace app: etcd is sad"):
        Kube().call("create", "services", "app", broken)


def test_not_found_is_its_own_type():
    def missing(*_a, **_k):
        raise api_exception(404, "not found")
    with pytest.raises(KubeNotFound):
        Kube().call("get", "deployments", "app", missing)


def test_call_passes_a_request_timeout():
    seen = {}

    def method(*args, **kwargs):
        seen.update(kwargs)
        return "ok"
    assert Kube(timeout=9).call("get", "pods", "app", method) == "ok"
    assert 8 < seen["_request_timeout"] <= 9  # what is left of the one deadline


def test_gc_is_frozen_at_exit_once_the_client_is_loaded(monkeypatch):
    from ansible_collections.devloop.telepresence.plugins.module_utils import kube as kube_utils
    registered = []
    monkeypatch.setattr(kube_utils, "_EXIT_GC_FROZEN", [])
    monkeypatch.setattr(kube_utils.atexit, "register", registered.append)
    kube_utils._kubernetes()
    kube_utils._kubernetes()
    assert registered == [kube_utils.gc.freeze]


# ---------------------------------------------------------------------------------------------------------------
# one deadline, exec plugins, tokens, no models (issues 12, 13, 16)
# ---------------------------------------------------------------------------------------------------------------

def exec_kubeconfig(tmp_path, script, server="http://127.0.0.1:1"):
    plugin = tmp_path / "plugin"
    plugin.write_text("#!/bin/sh\n" + script)
    plugin.chmod(0o755)
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "sso",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "sso-user", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}}}],
        "contexts": [{"name": "sso", "context": {"cluster": "c", "user": "sso-user"}}],
    }
    path = tmp_path / "kc"
    path.write_text(json.dumps(config))
    return str(path), str(plugin)


def test_hanging_exec_plugin_is_killed_at_the_deadline(tmp_path):
    import os
    import time
    pid_file = tmp_path / "pid"
    path, plugin = exec_kubeconfig(tmp_path, "echo $$ > %s\nexec sleep 300\n" % pid_file)
    started = time.monotonic()
    with pytest.raises(KubeError) as info:
        Kube(path, timeout=1).get("core", "namespace", "app")
    assert time.monotonic() - started < 3
    assert info.value.msg.startswith("the exec credential plugin %r of kubeconfig user 'sso-user' (%s) did not answer "
                                     "within 1 s" % (plugin, path))
    assert "`kubectl get ns` once" in info.value.msg
    pid = int(pid_file.read_text())
    with pytest.raises(OSError):
        os.kill(pid, 0)


def test_failing_exec_plugin_is_named_not_a_401(tmp_path):
    path, plugin = exec_kubeconfig(tmp_path, "echo 'no session, run sso login' >&2\nexit 3\n")
    with pytest.raises(KubeError) as info:
        Kube(path, timeout=5).get("core", "namespace", "app")
    assert info.value.msg.startswith("the exec credential plugin %r of kubeconfig user 'sso-user'" % plugin)
    assert "it exited with 3: no session, run sso login" in info.value.msg


def test_a_timed_out_call_makes_the_next_fail_at_once():
    kube = Kube(timeout=5)

    def slow(**_kwargs):
        raise TimeoutError("timed out")
    with pytest.raises(KubeError, match="no answer within 5 s"):
        kube.call("get", "pods", "app", slow)
    called = []
    with pytest.raises(KubeError, match="no answer within 5 s"):
        kube.call("get", "pods", "app", lambda **_k: called.append(1))
    assert called == []


class FakeConfiguration:
    def __init__(self, value):
        self.value = value

    def auth_settings(self):
        return {"BearerToken": {"in": "header", "key": "authorization", "value": self.value}}


def test_bearer_tokens_are_trimmed_as_kubectl_does():
    headers = Kube()._auth_headers(FakeConfiguration("Bearer  tok-with-newline\n"))
    assert headers == {"authorization": "Bearer tok-with-newline"}


def test_a_token_with_a_line_break_inside_is_named_not_quoted(tmp_path):
    path = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:1")
    with pytest.raises(KubeError) as info:
        Kube(path)._auth_headers(FakeConfiguration("Bearer secret-part\nother-part"))
    assert info.value.msg.startswith("the token of user u in %s has invalid characters" % path)
    assert "secret-part" not in info.value.msg and "other-part" not in info.value.msg


def test_reading_builds_no_generated_models(tmp_path):
    """Importing kube.py imports no kubernetes; loading a kubeconfig imports no API class and no model beyond what
    ``import kubernetes`` itself loads: nothing on kubernetes 37 (seen), every model on 35 (the newest for Python 3.9,
    whose package imports them eagerly)."""
    import os
    import subprocess
    import sys
    path = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:1")
    code = ("import json, sys\nfrom ansible_collections.devloop.telepresence.plugins.module_utils.kube import Kube\n"
            "assert 'kubernetes' not in sys.modules\n"
            "def generated():\n"
            "    return {m for m in sys.modules if m.startswith(('kubernetes.client.api.', 'kubernetes.client.models.'))}\n"
            "import kubernetes\nbase = generated()\nKube(%r).api_client()\n"
            "print(json.dumps({'version': kubernetes.__version__, 'base': len(base), 'extra': sorted(generated() - base)}))\n"
            % path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["extra"] == []
    if int(seen["version"].split(".")[0]) >= 37:
        assert seen["base"] == 0


def test_missing_library_names_the_interpreter_to_install_it_for(monkeypatch):
    import builtins
    import sys
    real_import = builtins.__import__

    def no_kubernetes(name, *args, **kwargs):
        if name == "kubernetes" or name.startswith("kubernetes."):
            raise ImportError("No module named %r" % name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_kubernetes)
    with pytest.raises(KubeError) as info:
        kube_module._kubernetes()
    assert "%s -m pip install kubernetes" % sys.executable in str(info.value)
