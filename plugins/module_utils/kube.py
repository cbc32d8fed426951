# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way modules talk to the Kubernetes API.

The ``kubernetes`` package is imported on first use, and only its ``config`` part and ``ApiClient``: kubeconfig
loading and authentication (certificates, proxies, auth providers) stay the client's, but requests go through its
urllib3 pool as plain JSON, read into dicts. Neither the generated API classes nor the model classes are built: they
cost most of a second per task, and the modules want dicts anyway (issue 16).

Every call is bounded by the task's ``timeout`` in total: one deadline covers the exec credential plugin, the
connection and the answer, and urllib3 does not retry on its own (issue 12). Every failure becomes a
:class:`KubeError` whose message names the verb, the resource and the namespace, and says what to check.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import re
import sys
import time
from urllib.parse import quote, urlencode

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.devloop.telepresence.plugins.module_utils.cli import run_process
from ansible_collections.devloop.telepresence.plugins.module_utils.common import kubeconfig_user

_EXIT_GC_FROZEN = []
_EXEC_PATCHED = []
# urllib3 (http.client) refuses header values with these; kubectl trims the token's surrounding space first.
_BAD_HEADER_CHARS = re.compile(r"[\x00-\x1f\x7f]")
API_ROOTS = {"core": "/api/v1", "apps": "/apis/apps/v1"}


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


class HttpError(Exception):
    """A non-2xx answer of the API server (``status``, ``reason``, ``body`` as the client's ApiException has)."""

    def __init__(self, status, reason, body):
        super().__init__("HTTP %s %s" % (status, reason))
        self.status = status
        self.reason = reason
        self.body = body


class ExecPluginFailed(BaseException):
    """The kubeconfig's exec credential plugin did not answer in time or failed.

    A BaseException on purpose: the client catches every Exception of a plugin, logs it and goes on without
    credentials, which would end in a misleading 401.
    """

    def __init__(self, command, timed_out, detail=""):
        super().__init__(command)
        self.command = command
        self.timed_out = timed_out
        self.detail = detail


def _kubernetes():
    """``(config, client)``: the client's kubeconfig loader and ``ApiClient``/``Configuration`` module."""
    try:
        from kubernetes import config  # pylint: disable=import-outside-toplevel
        from kubernetes.config import kube_config  # pylint: disable=import-outside-toplevel
        from kubernetes.client import api_client, configuration  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise KubeError(missing_required_lib("kubernetes") + " (for the Python that runs this task: %s -m pip install "
                        "kubernetes)" % sys.executable)
    _freeze_gc_at_exit()
    _bound_exec_plugins(kube_config)
    return config, api_client.ApiClient, configuration.Configuration


def _freeze_gc_at_exit():
    """Skip collecting the client's object graph at interpreter exit.

    The module has already printed its result by then, yet the task waits for the process: measured at
    0.75-1.2 s per task on 2 cores (bench/, measurement 3). Freezing moves every object out of the
    collector's reach, and the OS frees the memory anyway.
    """
    if not _EXIT_GC_FROZEN:
        atexit.register(gc.freeze)
        _EXIT_GC_FROZEN.append(True)


def _bound_exec_plugins(kube_config):
    """Make the client run exec credential plugins through :func:`run_exec_plugin` (the client has no time limit)."""
    if _EXEC_PATCHED:
        return
    original = kube_config.ExecProvider

    class BoundedExecProvider(original):
        deadline = None

        def run(self, previous_response=None):
            return run_exec_plugin(self, previous_response, BoundedExecProvider.deadline)

    kube_config.ExecProvider = BoundedExecProvider
    _EXEC_PATCHED.append(BoundedExecProvider)


def _exec_deadline(deadline):
    for provider in _EXEC_PATCHED:
        provider.deadline = deadline


def run_exec_plugin(provider, previous_response, deadline):
    """The ``status`` of an ExecCredential from the plugin ``provider`` describes, killed at ``deadline``.

    The plugin runs in its own process group, never interactive (a module has no terminal), stdin closed; on
    timeout or interrupt the whole group is killed so no helper is left behind.
    """
    spec = {"interactive": False}
    if previous_response:
        spec["response"] = previous_response
    cluster = getattr(provider, "cluster", None)
    if cluster is not None:
        spec["cluster"] = dict(cluster.value)
        for extension in cluster.value.get("extensions") or []:
            if extension.get("name") == "client.authentication.k8s.io/exec":
                spec["cluster"]["config"] = extension.get("extension")
    env = dict(provider.env, KUBERNETES_EXEC_INFO=json.dumps(
        {"apiVersion": provider.api_version, "kind": "ExecCredential", "spec": spec}))
    argv = list(provider.args)
    command = argv[0]
    remaining = max(0.1, deadline - time.monotonic()) if deadline else 60
    # The plugin runs through the collection's one runner: its own process group, killed at the deadline or when
    # the module is interrupted, so a plugin waiting for a browser login is never left behind.
    try:
        rc, stdout, stderr, timed_out = run_process(argv, remaining, env=env, cwd=getattr(provider, "cwd", None) or None)
    except OSError as exc:
        raise ExecPluginFailed(command, False, "cannot start it: %s" % exc.strerror)
    if timed_out:
        raise ExecPluginFailed(command, True)
    if rc != 0:
        lines = (stderr or "").strip().splitlines()
        raise ExecPluginFailed(command, False, "it exited with %s%s" % (
            rc, ": %s" % lines[-1][:200] if lines else ""))
    try:
        data = json.loads(stdout)
        status = data["status"]
    except (ValueError, KeyError, TypeError):
        raise ExecPluginFailed(command, False, "its output is not an ExecCredential")
    if data.get("apiVersion") != provider.api_version:
        raise ExecPluginFailed(command, False, "it answered apiVersion %s, the kubeconfig asks for %s"
                               % (data.get("apiVersion"), provider.api_version))
    return status


class Kube:
    """A configured API client for one kubeconfig/context, with readable errors and bounded calls.

    ``get``, ``list`` and ``watch`` return the API server's JSON as dicts (camelCase keys).
    """

    def __init__(self, kubeconfig=None, context=None, timeout=60):
        self.kubeconfig = kubeconfig
        self.context = context
        self.timeout = timeout
        self._api_client = None
        self._user = None
        self._gave_up = None

    @classmethod
    def from_params(cls, params):
        return cls(params.get("kubeconfig"), params.get("context"), params.get("timeout") or 60)

    def api_client(self, deadline=None):
        """The client's ApiClient (configuration, authentication, connection pool), loaded once."""
        if self._api_client is None:
            self._api_client = self._load(deadline or time.monotonic() + self.timeout)
        return self._api_client

    def _config_file(self):
        return os.path.expanduser(self.kubeconfig) if self.kubeconfig else None

    def _load(self, deadline):
        config, api_client_class, configuration_class = _kubernetes()
        config_file = self._config_file()
        if config_file and os.pathsep not in config_file and not os.path.exists(config_file):
            raise KubeError("kubeconfig %s does not exist; set the kubeconfig option (or K8S_AUTH_KUBECONFIG / "
                            "KUBECONFIG) to a readable kubeconfig file" % config_file)
        configuration = configuration_class()
        # No urllib3 retries: each would get the whole timeout again; one deadline bounds the call instead.
        configuration.retries = False
        _exec_deadline(deadline)
        try:
            config.load_kube_config(config_file=config_file, context=self.context,
                                    client_configuration=configuration)
        except ExecPluginFailed as exc:
            raise self._exec_problem(exc, deadline)
        except config.ConfigException as exc:
            raise KubeError(self._config_problem(config, exc, config_file))
        except (OSError, ValueError, TypeError) as exc:
            raise KubeError("cannot load kubeconfig %s: %s" % (config_file or "~/.kube/config", exc))
        return api_client_class(configuration)

    def _config_problem(self, config, exc, config_file):
        text = str(exc)
        where = config_file or os.environ.get("KUBECONFIG") or "~/.kube/config"
        if self.context and "context" in text.lower():
            return ("context %r was not found in kubeconfig %s%s; set the context option (or K8S_AUTH_CONTEXT) "
                    "to one of them" % (self.context, where, self._available_contexts(config, config_file)))
        return "cannot use kubeconfig %s: %s" % (where, text)

    @staticmethod
    def _available_contexts(config, config_file):
        try:
            contexts, _active = config.list_kube_config_contexts(config_file=config_file)
        except Exception:  # pylint: disable=broad-except
            return ""
        names = sorted(item.get("name", "") for item in contexts or [])
        return " (contexts there: %s)" % ", ".join(names) if names else ""

    def user(self):
        """``{"name", "file", ...}`` of the kubeconfig user the context uses (see common.kubeconfig_user)."""
        if self._user is None:
            try:
                self._user = kubeconfig_user(self.kubeconfig, self.context)
            except Exception:  # pylint: disable=broad-except
                self._user = {}
        return self._user

    def _exec_problem(self, exc, deadline):
        user = self.user().get("name") or "(unknown)"
        where = self.user().get("file") or self._config_file() or "~/.kube/config"
        if exc.timed_out:
            self._gave_up = KubeError(
                "the exec credential plugin %r of kubeconfig user %r (%s) did not answer within %s s (the timeout "
                "option) and was stopped; it may be waiting for a login: log in first, for example by running "
                "`kubectl get ns` once with this kubeconfig and context, then run the task again"
                % (exc.command, user, where, self.timeout))
            return self._gave_up
        return KubeError("the exec credential plugin %r of kubeconfig user %r (%s) failed: %s; log in first, for "
                         "example by running `kubectl get ns` once with this kubeconfig and context, then run the task "
                         "again" % (exc.command, user, where, exc.detail))

    # ------------------------------------------------------------------------------------------ calls

    def call(self, verb, resource, namespace, method, *args, **kwargs):
        """Run ``method`` with ``_request_timeout`` set to what is left of the timeout; every failure a KubeError."""
        deadline = kwargs.pop("_deadline", None) or time.monotonic() + self.timeout
        if self._gave_up is not None:
            raise self._gave_up
        kwargs.setdefault("_request_timeout", max(0.1, deadline - time.monotonic()))
        _exec_deadline(deadline)
        try:
            return method(*args, **kwargs)
        except KubeError:
            raise
        except ExecPluginFailed as exc:
            raise self._exec_problem(exc, deadline)
        except Exception as exc:  # pylint: disable=broad-except
            raise self.translate(exc, verb, resource, namespace)

    def request(self, path, query=None, deadline=None, stream_timeout=None):
        """GET ``path`` (with ``query``) from the API server; the urllib3 response, its status checked.

        Without ``stream_timeout`` the whole request must finish by ``deadline``; with it (watches), the
        connection must be made by the deadline and each read may wait ``stream_timeout`` seconds.
        """
        deadline = deadline or time.monotonic() + self.timeout
        client = self.api_client(deadline)
        configuration = client.configuration
        url = configuration.host + path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": "application/json", "User-Agent": "devloop.telepresence"}
        headers.update(self._auth_headers(configuration))
        import urllib3  # pylint: disable=import-outside-toplevel
        remaining = max(0.1, deadline - time.monotonic())
        timeout = (urllib3.Timeout(connect=remaining, read=stream_timeout) if stream_timeout
                   else urllib3.Timeout(total=remaining))
        response = client.rest_client.pool_manager.request("GET", url, headers=headers, timeout=timeout,
                                                           retries=False, preload_content=False, redirect=False)
        if not 200 <= response.status <= 299:
            body = response.data
            response.release_conn()
            raise HttpError(response.status, response.reason, body.decode("utf-8", "replace") if body else "")
        return response

    def _auth_headers(self, configuration):
        """Header values from the client's auth settings, tokens trimmed as kubectl trims them, and checked."""
        headers = {}
        for setting in (configuration.auth_settings() or {}).values():
            if setting.get("in") != "header" or not setting.get("value"):
                continue
            value = setting["value"]
            if value.startswith("Bearer "):
                value = "Bearer " + value[len("Bearer "):].strip()
            if _BAD_HEADER_CHARS.search(value):
                user = self.user()
                raise KubeError("the token of user %s in %s has invalid characters (control characters or a line "
                                "break inside it); fix the token in the kubeconfig or its tokenFile"
                                % (user.get("name") or "(unknown)", user.get("file") or self._config_file()
                                   or "~/.kube/config"))
            headers[setting["key"]] = value
        return headers

    def read_json(self, verb, resource, namespace, path, query=None):
        """One bounded GET, decoded; failures translated."""
        deadline = time.monotonic() + self.timeout

        def fetch(**_kwargs):
            response = self.request(path, query, deadline)
            try:
                return json.loads(response.data)
            finally:
                response.release_conn()
        return self.call(verb, resource, namespace, fetch, _deadline=deadline)

    def get(self, api, resource, name, namespace=None):
        """Read one object (a dict); None when it does not exist."""
        try:
            return self.read_json("get", _plural(resource), namespace,
                                  _path(api, resource, namespace) + "/" + quote(name, safe=""))
        except KubeNotFound:
            return None

    def list(self, api, resource, namespace=None, **selectors):
        """List objects (label_selector=..., field_selector=...); without a namespace, across all of them."""
        found = self.read_json("list", _plural(resource), namespace, _path(api, resource, namespace),
                               _query(selectors))
        return list(found.get("items") or []) if isinstance(found, dict) else []

    def watch(self, api, resource, namespace, timeout, **selectors):
        """Yield ``(type, object)`` watch events (objects as dicts) for at most ``timeout`` seconds."""
        query = dict(_query(selectors), watch="true", timeoutSeconds=max(1, int(timeout)))
        deadline = time.monotonic() + min(self.timeout, timeout + 5)
        holder = []

        def start(**_kwargs):
            holder.append(self.request(_path(api, resource, namespace), query, deadline, stream_timeout=timeout + 5))
        self.call("watch", _plural(resource), namespace, start, _deadline=deadline)
        response = holder[0]
        try:
            for line in _lines(response):
                event = json.loads(line)
                yield event.get("type"), event.get("object")
        except KubeError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            # a stream that went quiet is no reason to give up on the calls after it
            raise self.translate(exc, "watch", _plural(resource), namespace, sticky=False)
        finally:
            response.release_conn()

    def translate(self, exc, verb, resource, namespace, sticky=True):
        """A KubeError naming what was attempted, for any exception an API call can raise.

        A timeout is ``sticky``: the task's later calls fail with it at once instead of waiting again.
        """
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
        if _is_timeout(exc):
            error = KubeError(
                "cannot reach the Kubernetes API of %s to %s: no answer within %s s (the timeout option); check "
                "that the cluster is running and the kubeconfig/context point at it" % (who, attempt, self.timeout))
            if sticky:
                self._gave_up = error
            return error
        return KubeError("cannot reach the Kubernetes API of %s to %s: %s; check that the cluster is running and "
                         "the kubeconfig/context point at it" % (who, attempt, _short(exc)))

    def _context_name(self):
        return "context %s" % self.context if self.context else "the current context"


def _path(api, resource, namespace):
    root = API_ROOTS[api]
    if resource == "namespace" or not namespace:
        return "%s/%s" % (root, _plural(resource))
    return "%s/namespaces/%s/%s" % (root, quote(namespace, safe=""), _plural(resource))


def _query(selectors):
    names = {"label_selector": "labelSelector", "field_selector": "fieldSelector", "limit": "limit"}
    return dict((names[key], value) for key, value in selectors.items() if value is not None)


def _lines(response):
    """The newline-separated JSON documents of a watch stream, as they arrive."""
    pending = b""
    for chunk in response.stream(None, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _is_timeout(exc):
    names = {klass.__name__ for klass in type(exc).__mro__}
    return bool(names & {"TimeoutError", "ReadTimeoutError", "ConnectTimeoutError", "timeout"}) or \
        "timed out" in str(exc).lower()


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
