# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readable cluster errors: unreachable API, unknown context, missing kubeconfig, 401/403/404/500."""
from __future__ import annotations

import json
import socket

import pytest

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
