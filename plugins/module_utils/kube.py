# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way modules talk to the Kubernetes API.

The ``kubernetes`` package is imported on first use: it costs a noticeable part of a second, and
modules that never read the cluster (``tp_binary``, ``tp_connection``) should not pay it.
Every API error becomes a :class:`KubeError` whose message names the verb, the resource and the
namespace, and says what to check.
"""

from __future__ import annotations

import atexit
import gc
import os

from ansible.module_utils.basic import missing_required_lib

_EXIT_GC_FROZEN = []


class KubeError(Exception):
    """A cluster call that failed, with a message a person can act on; ``status`` is the HTTP code."""

    def __init__(self, msg, status=None, reason=None):
        super().__init__(msg)
        self.msg = msg
        self.status = status
        self.reason = reason

    def details(self):
        return {"api_status": self.status} if self.status else {}


class KubeNotFound(KubeError):
    """The object does not exist (HTTP 404)."""


def _kubernetes():
    try:
        import kubernetes  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise KubeError(missing_required_lib("kubernetes") + " (pip install kubernetes on the host that runs the task)")
    _freeze_gc_at_exit()
    return kubernetes


def _freeze_gc_at_exit():
    """Skip collecting the client's huge object graph at interpreter exit.

    The module has already printed its result by then, yet the task waits for the process: measured at
    0.75-1.2 s per task on 2 cores (bench/, measurement 3). Freezing moves every object out of the
    collector's reach, and the OS frees the memory anyway.
    """
    if not _EXIT_GC_FROZEN:
        atexit.register(gc.freeze)
        _EXIT_GC_FROZEN.append(True)


class Kube:
    """A configured API client for one kubeconfig/context, with readable errors and bounded calls."""

    def __init__(self, kubeconfig=None, context=None, timeout=60):
        self.kubeconfig = kubeconfig
        self.context = context
        self.timeout = timeout
        self._api_client = None
        self._apis = {}

    @classmethod
    def from_params(cls, params):
        return cls(params.get("kubeconfig"), params.get("context"), params.get("timeout") or 60)

    @property
    def k8s(self):
        return _kubernetes()

    def api_client(self):
        if self._api_client is None:
            self._api_client = self._load()
        return self._api_client

    def _load(self):
        kubernetes = self.k8s
        config_file = os.path.expanduser(self.kubeconfig) if self.kubeconfig else None
        if config_file and os.pathsep not in config_file and not os.path.exists(config_file):
            raise KubeError("kubeconfig %s does not exist; set the kubeconfig option (or K8S_AUTH_KUBECONFIG / "
                            "KUBECONFIG) to a readable kubeconfig file" % config_file)
        configuration = kubernetes.client.Configuration()
        # One retry at most: an unreachable API should fail within the timeout, not after urllib3's backoff.
        configuration.retries = 1
        try:
            kubernetes.config.load_kube_config(config_file=config_file, context=self.context,
                                               client_configuration=configuration)
        except kubernetes.config.ConfigException as exc:
            raise KubeError(self._config_problem(exc, config_file))
        except (OSError, ValueError, TypeError) as exc:
            raise KubeError("cannot load kubeconfig %s: %s" % (config_file or "~/.kube/config", exc))
        return kubernetes.client.ApiClient(configuration)

    def _config_problem(self, exc, config_file):
        text = str(exc)
        where = config_file or os.environ.get("KUBECONFIG") or "~/.kube/config"
        if self.context and "context" in text.lower():
            return ("context %r was not found in kubeconfig %s%s; set the context option (or K8S_AUTH_CONTEXT) "
                    "to one of them" % (self.context, where, self._available_contexts(config_file)))
        return "cannot use kubeconfig %s: %s" % (where, text)

    def _available_contexts(self, config_file):
        try:
            contexts, _active = self.k8s.config.list_kube_config_contexts(config_file=config_file)
        except Exception:  # pylint: disable=broad-except
            return ""
        names = sorted(item.get("name", "") for item in contexts or [])
        return " (contexts there: %s)" % ", ".join(names) if names else ""

    def api(self, name):
        """``core`` (CoreV1Api) or ``apps`` (AppsV1Api), created once."""
        if name not in self._apis:
            classes = {"core": "CoreV1Api", "apps": "AppsV1Api"}
            self._apis[name] = getattr(self.k8s.client, classes[name])(self.api_client())
        return self._apis[name]

    def call(self, verb, resource, namespace, method, *args, **kwargs):
        """Run one API method bounded by the timeout; translate every failure into a KubeError."""
        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            return method(*args, **kwargs)
        except KubeError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            raise self.translate(exc, verb, resource, namespace)

    def get(self, api, resource, name, namespace=None):
        """Read one object; None when it does not exist."""
        method = getattr(self.api(api), "read_namespaced_%s" % resource if namespace else "read_%s" % resource)
        args = (name, namespace) if namespace else (name,)
        try:
            return self.call("get", _plural(resource), namespace, method, *args)
        except KubeNotFound:
            return None

    def list(self, api, resource, namespace=None, **selectors):
        """List objects (label_selector=..., field_selector=...); without a namespace, across all of them."""
        client = self.api(api)
        if namespace:
            method = getattr(client, "list_namespaced_%s" % resource)
        else:  # namespaced kinds list cluster-wide through ..._for_all_namespaces; cluster kinds through list_<kind>
            method = getattr(client, "list_%s_for_all_namespaces" % resource, None) or getattr(client, "list_%s" % resource)
        args = (namespace,) if namespace else ()
        return self.call("list", _plural(resource), namespace, method, *args, **selectors).items

    def watch(self, api, resource, namespace, timeout, **selectors):
        """Yield ``(type, object)`` watch events for at most ``timeout`` seconds."""
        method = getattr(self.api(api), "list_namespaced_%s" % resource)
        watcher = self.k8s.watch.Watch()
        stream = watcher.stream(method, namespace, timeout_seconds=max(1, int(timeout)),
                                _request_timeout=timeout + 5, **selectors)
        try:
            for event in stream:
                yield event["type"], event["object"]
        except KubeError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            raise self.translate(exc, "watch", _plural(resource), namespace)
        finally:
            watcher.stop()

    def translate(self, exc, verb, resource, namespace):
        """A KubeError naming what was attempted, for any exception an API call can raise."""
        attempt = "%s %s %s" % (verb, resource, "in namespace %s" % namespace if namespace else "cluster-wide")
        who = self._context_name()
        status = getattr(exc, "status", None)
        if status == 404:
            return KubeNotFound("%s not found (%s)" % (resource, attempt), status=404)
        if status == 401:
            return KubeError("the API server rejected the credentials of %s (401 Unauthorized) while trying to %s; "
                             "refresh the kubeconfig's token or certificate" % (who, attempt), status=401)
        if status == 403:
            return KubeError("forbidden (403): the user of %s cannot %s; grant it that permission (RBAC) or use "
                             "another context. API said: %s" % (who, attempt, _api_message(exc)), status=403)
        if status:
            return KubeError("the API server answered %s to %s: %s" % (status, attempt, _api_message(exc)),
                             status=status)
        return KubeError("cannot reach the Kubernetes API of %s to %s: %s; check that the cluster is running and "
                         "the kubeconfig/context point at it" % (who, attempt, _short(exc)))

    def _context_name(self):
        return "context %s" % self.context if self.context else "the current context"


def _plural(resource):
    irregular = {"namespace": "namespaces", "secret": "secrets", "event": "events", "service": "services",
                 "pod": "pods", "config_map": "configmaps", "deployment": "deployments",
                 "stateful_set": "statefulsets", "deployment_status": "deployments", "service_account": "serviceaccounts"}
    return irregular.get(resource, resource + "s")


def _api_message(exc):
    body = getattr(exc, "body", None)
    if body:
        try:
            import json  # pylint: disable=import-outside-toplevel
            return json.loads(body).get("message") or body
        except (ValueError, AttributeError, TypeError):
            return str(body)[:300]
    return getattr(exc, "reason", None) or _short(exc)


def _short(exc):
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else exc.__class__.__name__
