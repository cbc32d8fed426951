# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Normalised views of ``status`` and ``list`` output, whatever version printed them.

Go's omitempty drops false/empty keys in some versions and keeps them in others, so every key is read
with a default: a missing key means false or empty (facts sheet section 2).
"""

from __future__ import annotations

from ansible_collections.devloop.telepresence.plugins.module_utils.capabilities import DISPOSITIONS
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import TelepresenceError
from ansible_collections.devloop.telepresence.plugins.module_utils.common import strip_v

CONNECTED = "Connected"
NOT_CONNECTED = "Not connected"
SESSION_KEYS = ("kubernetes_context", "namespace", "manager_namespace")


def read_status_json(runner):
    """The raw ``status --output json`` object; a ``status`` that fails with a daemon error is "no usable session".

    How 2.21+ reports a running user daemon without a session is UNVERIFIED (facts sheet section 9, "`status`
    after `quit`"): ``Not connected``, a ``Connected`` object without context/namespace/manager fields (see
    :func:`normalize_status`), or exit 1 with the daemon's error. The last reads as a running, disconnected daemon
    whose ``error`` says why; a timeout or undecodable output stays an error.
    """
    try:
        return runner.run_json(["status"])
    except TelepresenceError as exc:
        if exc.timed_out or not exc.rc:
            raise
        return {"user_daemon": {"running": True, "status": NOT_CONNECTED, "error": exc.msg}}


def normalize_status(data, client_version=None):
    """One flat dict from any ``status`` JSON shape.

    Shapes: ``{user_daemon, root_daemon, traffic_manager}`` (host daemons), ``{daemon, traffic_manager}``
    (docker mode), ``{connections: [...]}`` (2.18+ with several daemons: the first connected one is
    described, and ``connections`` counts them).
    """
    data = data if isinstance(data, dict) else {}
    connections = data.get("connections")
    if isinstance(connections, list):
        chosen = _first_connected(connections) or (connections[0] if connections else {})
        result = normalize_status(chosen, client_version)
        result["connections"] = len(connections)
        return result
    in_docker = "daemon" in data and "user_daemon" not in data
    user = _mapping(data.get("daemon") if in_docker else data.get("user_daemon"))
    root = _mapping(data.get("root_daemon"))
    manager = _mapping(data.get("traffic_manager"))
    state = user.get("status") or ""
    if state == CONNECTED and not any(user.get(key) for key in SESSION_KEYS):
        # a "Connected" daemon that names no cluster has no usable session (facts sheet section 9)
        state = NOT_CONNECTED
    return {
        "user_daemon_running": bool(user.get("running")),
        "root_daemon_running": bool(root.get("running")) or in_docker and bool(user.get("running")),
        "in_docker": in_docker or bool(user.get("in_docker")),
        "connected": state == CONNECTED,
        "state": state or (NOT_CONNECTED if user.get("running") else "Not running"),
        "error": user.get("error") or None,
        "context": user.get("kubernetes_context") or None,
        "server": user.get("kubernetes_server") or None,
        "namespace": user.get("namespace") or None,
        "manager_namespace": user.get("manager_namespace") or None,
        "mapped_namespaces": list(user.get("mapped_namespaces") or []),
        "connection_name": user.get("name") or None,
        "executable": user.get("executable") or None,
        "client_version": strip_v(client_version),
        "daemon_version": strip_v(user.get("version")),
        "root_daemon_version": strip_v(root.get("version")),
        "manager_version": strip_v(manager.get("version")),
        "traffic_agent": manager.get("traffic_agent") or None,
        "intercepts": engagement_names(user),
        "connections": 1 if user.get("running") else 0,
    }


def engagement_names(user):
    """The names of every engagement of this client: intercepts, then replaces, wiretaps and ingests.

    2.27+ lists ``replacements`` and ``wiretaps`` (``{"name","client"}``) and ``ingests`` (``{"workload",...}``,
    named after the workload, as ``leave`` takes it) apart from ``intercepts``; 2.24 may list them among the
    intercepts (facts sheet section 2, UNVERIFIED), which reads the same here.
    """
    names = []
    for key, field in (("intercepts", "name"), ("replacements", "name"), ("wiretaps", "name"),
                       ("ingests", "workload")):
        for item in user.get(key) or []:
            if isinstance(item, dict) and item.get(field) and item[field] not in names:
                names.append(item[field])
    return names


def _first_connected(connections):
    for item in connections:
        if normalize_status(item)["connected"]:
            return item
    return None


def _mapping(value):
    return value if isinstance(value, dict) else {}


def workloads_from_list(data):
    """The WorkloadInfo list of ``list --output json`` (envelope payload or 2.29+ bare array)."""
    if isinstance(data, dict):
        data = data.get("workloads") or data.get("stdout") or []
    return [item for item in data or [] if isinstance(item, dict)]


def raw_intercepts(data):
    """``(info, workload)`` for every intercept in ``list`` output; accepts ``intercept_info`` and ``intercept_infos``."""
    for workload in workloads_from_list(data):
        infos = workload.get("intercept_info")
        if infos is None:
            infos = workload.get("intercept_infos")
        for info in infos or []:
            if isinstance(info, dict):
                yield info, workload


def intercepts_from_list(data):
    """Every intercept in ``list`` output, normalised."""
    return [normalize_intercept(info, workload) for info, workload in raw_intercepts(data)]


def normalize_intercept(info, workload=None):
    """One intercept from a list ``intercept_info`` element or an ``intercept --detailed-output`` object."""
    workload = workload or {}
    spec = _mapping(info.get("spec"))
    environment = info.get("environment") or {}
    local_port = _int_or_none(spec.get("target_port") or info.get("target_port"))
    service_port = _service_port(spec, info)
    return {
        "id": info.get("id") or None,
        "name": spec.get("name") or info.get("name"),
        "disposition": disposition_name(info.get("disposition")),
        "message": info.get("message") or None,
        "client": spec.get("client") or None,
        "workload": spec.get("agent") or workload.get("name") or None,
        "workload_kind": spec.get("workload_kind") or info.get("workload_kind")
        or workload.get("workload_resource_type") or None,
        "namespace": spec.get("namespace") or workload.get("namespace") or None,
        "service": spec.get("service_name") or None,
        "service_port": service_port,
        "local_port": local_port,
        # The mapping as tp_intercept reports it, so status and intercept results read alike.
        "ports": ["%s:%s" % (local_port, service_port)] if local_port and service_port else [],
        "target_host": spec.get("target_host") or info.get("target_host") or None,
        "environment_names": sorted(environment) if isinstance(environment, dict) else [],
        "mount": info.get("mount") if isinstance(info.get("mount"), dict) else None,
    }


def port_identifier_base(value):
    """A port identifier without its protocol suffix: ``http/TCP`` -> ``http``, ``8080/UDP`` -> ``8080``.

    2.20-2.22 report ``<name|number>/<PROTO>`` in ``list`` (``spec.port_identifier``) and in the detailed
    intercept output (``port_id``); later releases report the bare identifier (facts sheet section 3, "The
    reported port identifier carries the protocol in 2.20.x"). Comparing bare identifiers keeps an unchanged
    intercept unchanged on every version.
    """
    if value is None:
        return None
    text = str(value)
    base, sep, protocol = text.rpartition("/")
    return base if sep and base and protocol.upper() in ("TCP", "UDP") else text


def _service_port(spec, info):
    """The service port identifier an intercept targets: its name when it has one, else its number."""
    for key in ("port_identifier", "service_port_name", "service_port_identifier"):
        if spec.get(key):
            return port_identifier_base(spec[key])
    for key in ("port_id", "service_port_id"):
        if info.get(key):
            return port_identifier_base(info[key])
    number = spec.get("service_port")
    return str(number) if number else None


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def disposition_name(value):
    """``ACTIVE`` for 1 or ``"ACTIVE"``: list prints integers, intercept prints strings."""
    if isinstance(value, int):
        return DISPOSITIONS.get(value, str(value))
    return str(value).upper() if value else None
