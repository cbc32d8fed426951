# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of tp_intercept: input checks, the pre-flight against the cluster, reading intercepts out of
``list``, comparing mappings, keeping the workload's environment secret and writing env files safely.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket

from ansible_collections.devloop.telepresence.plugins.module_utils.censor import could_be_secret
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import command_name, failure_message
from ansible_collections.devloop.telepresence.plugins.module_utils.common import TaskError
from ansible_collections.devloop.telepresence.plugins.module_utils.files import read_nofollow, write_private
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import KubeError, KubeNotFound
from ansible_collections.devloop.telepresence.plugins.module_utils.status import (normalize_intercept,
                                                                                  port_identifier_base, raw_intercepts,
                                                                                  workloads_from_list)
from ansible_collections.devloop.telepresence.plugins.module_utils.tempfiles import private_dir

# Kubernetes port names (IANA_SVC_NAME): at most 15 of [a-z0-9-], a letter among them, no leading, trailing
# or doubled '-'. Every pattern here is used with fullmatch: "$" would accept a trailing newline.
PORT_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9]|-(?!-))*")
PORT_NUMBER_RE = re.compile(r"[0-9]{1,5}")
HTTP_HEADER_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+=[^\r\n]*")
# Variables the client adds to every intercept's environment itself (facts sheet section 12): not secrets.
CLIENT_VARIABLES = frozenset(("TELEPRESENCE_ROOT", "TELEPRESENCE_MOUNTS", "TELEPRESENCE_CONTAINER",
                              "TELEPRESENCE_INTERCEPT_ID"))
WITHHELD = "(withheld: this command's output can hold the workload's environment)"
NOT_JSON_WITHHELD = "(withheld: it may hold the workload's environment)"
# Dispositions after which waiting is pointless (facts sheet section 3).
FAILED_DISPOSITIONS = frozenset(("NO_MECHANISM", "NO_PORTS", "AGENT_ERROR", "BAD_ARGS", "REMOVED"))


# Engagement modes (facts sheet section 5): the capability that gates each, and the list filter flag that shows it
# (section 3: -i/-r/-t/-g are OR-ed into a bitmask).
MODES = ("intercept", "replace", "wiretap", "ingest")
MODE_FEATURES = {"replace": "replace", "wiretap": "wiretap", "ingest": "ingest"}
LIST_FLAGS = {"intercept": "--intercepts", "replace": "--replacements", "wiretap": "--wiretaps", "ingest": "--ingests"}
# The status keys of this client's engagements (section 2: 2.27+ splits them; 2.24 UNVERIFIED).
STATUS_KEYS = (("intercepts", None), ("replacements", "replace"), ("wiretaps", "wiretap"))


class PreflightError(TaskError):
    """Something the intercept needs is missing in the cluster; the message says what exists instead."""


# ---------------------------------------------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------------------------------------------

def service_port_problem(value):
    """None when ``value`` names or numbers a Service port, else why it cannot."""
    text = str(value)
    if text.isdigit():  # also non-ASCII digits, which int() accepts but a port is not
        if not PORT_NUMBER_RE.fullmatch(text) or not 1 <= int(text) <= 65535:
            return "is not a port number between 1 and 65535"
        return None
    if len(text) > 15 or not PORT_NAME_RE.fullmatch(text) or not re.search(r"[a-z]", text) or text.endswith("-"):
        return ("is neither a port number (1-65535) nor a Kubernetes port name (at most 15 lowercase letters, "
                "digits and single '-', with at least one letter)")
    return None


def header_list(value):
    """``http_headers`` (a dict or a list of ``name=value``) as ``name=value`` strings; raises ValueError."""
    if not value:
        return []
    if isinstance(value, dict):
        items = ["%s=%s" % (name, "" if text is None else text) for name, text in sorted(value.items())]
    elif isinstance(value, (list, tuple)):
        items = [str(item) for item in value]
    else:
        raise ValueError("must be a dict of header names to values or a list of name=value strings, got %r" % (value,))
    for item in items:
        if not HTTP_HEADER_RE.fullmatch(item):
            raise ValueError("entry %r is not name=value with an HTTP header name" % item)
    return items


def env_path_problem(path):
    """None when ``path`` can receive an env file, else why not."""
    if not os.path.isabs(path):
        return "must be an absolute path, got %s" % path
    if os.path.isdir(path):
        return "%s is a directory; name a file in it" % path
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        return "the directory %s does not exist" % parent
    if not os.access(parent, os.W_OK | os.X_OK):
        return "the directory %s is not writable" % parent
    return None


def local_port_listening(port, host="127.0.0.1", timeout=1.0):
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------------
# pre-flight
# ---------------------------------------------------------------------------------------------------------------

WORKLOAD_KINDS = (("deployment", "Deployment", "Deployments"), ("stateful_set", "StatefulSet", "StatefulSets"),
                  ("replica_set", "ReplicaSet", "ReplicaSets"))


def preflight(kube, namespace, workload, service=None, service_port="http"):
    """Check that what the intercept targets exists; return ``{workload_kind, service, port_name, port_number}``.

    Raises :class:`PreflightError` naming what exists instead, or KubeError when the API cannot answer.
    """
    check_namespace(kube, namespace)
    # A named Service is looked up before the workload: the workload usually defaults to the Service's name, and a
    # typo in it is then a missing Service, not a missing workload.
    named = find_service(kube, namespace, service) if service else None
    kind, obj = find_workload(kube, namespace, workload)
    labels = pod_labels(kube, obj)
    chosen = choose_service(kube, namespace, workload, labels, service, named)
    port = find_port(chosen, namespace, service_port)
    return {"workload_kind": kind, "service": name_of(chosen), "port_name": port.get("name") or None,
            "port_number": port.get("port"), "target_port": port.get("targetPort", port.get("port"))}


def preflight_workload(kube, namespace, workload, container_port=None):
    """The pre-flight of replace (``container_port``: the container port it takes over) and ingest (none).

    Neither needs a Service: replace's ``--port`` identifiers are container ports and ingest takes no port
    (facts sheet section 5, "Sibling commands").
    """
    check_namespace(kube, namespace)
    kind, obj = find_workload(kube, namespace, workload)
    result = {"workload_kind": kind, "service": None, "port_name": None, "port_number": None}
    if container_port is not None:
        port = find_container_port(obj, namespace, workload, container_port)
        result.update(port_name=port.get("name") or None, port_number=port.get("containerPort"))
    return result


def find_container_port(workload_obj, namespace, workload, identifier):
    identifier = str(identifier)
    containers = ((workload_obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    ports = [port for container in containers if container.get("name") != "traffic-agent"
             for port in container.get("ports") or []]
    for port in ports:
        if identifier in (port.get("name"), str(port.get("containerPort"))):
            return port
    described = ", ".join("%s(%s)" % (port["name"], port.get("containerPort")) if port.get("name")
                          else str(port.get("containerPort")) for port in ports) or "none"
    raise PreflightError("workload %s/%s has container ports %s, no container port %s; mode replace takes container "
                         "ports (not Service ports): set service_port to one of them"
                         % (namespace, workload, described, identifier))


def check_namespace(kube, namespace):
    try:
        found = kube.get("core", "namespace", namespace)
    except KubeError as exc:
        if exc.status == 403:
            return  # credentials limited to some namespaces cannot read Namespaces: the workload check decides
        raise
    if found is None:
        raise PreflightError("namespace %s not found%s; create it or set the namespace option"
                             % (namespace, there(kube, "core", "namespace", None, "Namespaces")))


def find_workload(kube, namespace, workload):
    for resource, kind, _plural in WORKLOAD_KINDS:
        obj = kube.get("apps", resource, workload, namespace)
        if obj is not None:
            return kind, to_dict(kube, obj)
    listing = "; ".join(filter(None, (names_of(kube, "apps", resource, namespace, plural, quiet=True)
                                      for resource, _kind, plural in WORKLOAD_KINDS[:2])))
    raise PreflightError("workload %s not found in namespace %s (%s); set the workload option to one of them"
                         % (workload, namespace, listing or "no Deployments or StatefulSets there"))


def find_service(kube, namespace, service):
    obj = kube.get("core", "service", service, namespace)
    if obj is None:
        raise PreflightError("Service %s/%s not found%s; set the service option to one of them"
                             % (namespace, service, there(kube, "core", "service", namespace, "Services")))
    return to_dict(kube, obj)


def choose_service(kube, namespace, workload, labels, service, named=None):
    if service:
        obj = named or find_service(kube, namespace, service)
        if not selects(obj, labels):
            raise PreflightError("Service %s/%s does not select workload %s (its selector: %s; the workload's pod "
                                 "labels: %s)" % (namespace, service, workload, pairs(selector_of(obj)), pairs(labels)))
        return obj
    services = [to_dict(kube, item) for item in kube.list("core", "service", namespace)]
    matching = [item for item in services if selects(item, labels)]
    if not matching:
        names = ", ".join(sorted(name_of(item) for item in services)) or "none"
        raise PreflightError("no Service in namespace %s selects workload %s (Services there: %s); create one or "
                             "set the service option" % (namespace, workload, names))
    if len(matching) > 1:
        raise PreflightError("Services %s in namespace %s all select workload %s; set the service option to one "
                             "of them" % (", ".join(sorted(name_of(item) for item in matching)), namespace, workload))
    return matching[0]


def find_port(service, namespace, identifier):
    ports = (service.get("spec") or {}).get("ports") or []
    identifier = str(identifier)
    for port in ports:
        if identifier.isdigit() and port.get("port") == int(identifier) or port.get("name") == identifier:
            return port
    described = ", ".join(port_label(port) for port in ports) or "none"
    what = "numbered" if identifier.isdigit() else "named"
    raise PreflightError("Service %s/%s has ports %s, no port %s %s; set service_port to one of them"
                         % (namespace, name_of(service), described, what, identifier))


def port_label(port):
    return "%s(%s)" % (port["name"], port.get("port")) if port.get("name") else str(port.get("port"))


def selects(service, labels):
    selector = selector_of(service)
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def selector_of(service):
    return (service.get("spec") or {}).get("selector") or {}


def pod_labels(kube, workload):
    template = (workload.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


def name_of(obj):
    return (obj.get("metadata") or {}).get("name")


def pairs(mapping):
    return ",".join("%s=%s" % item for item in sorted(mapping.items())) or "(none)"


def there(kube, api, resource, namespace, plural):
    listing = names_of(kube, api, resource, namespace, plural, quiet=True)
    return " (%s)" % listing if listing else ""


def names_of(kube, api, resource, namespace, plural, quiet=False):
    """``Deployments there: a, b`` (empty when there are none, or, with quiet, when the API will not say)."""
    try:
        items = kube.list(api, resource, namespace)
    except KubeNotFound:
        return ""
    except KubeError:
        if quiet:
            return ""
        raise
    names = sorted(filter(None, (name_of(to_dict(kube, item)) for item in items)))
    return "%s there: %s" % (plural, ", ".join(names)) if names else ""


def to_dict(kube, obj):
    """API objects as the plain dicts the API server sends (camelCase keys)."""
    if isinstance(obj, dict):
        return obj
    return kube.api_client().sanitize_for_serialization(obj)


# ---------------------------------------------------------------------------------------------------------------
# intercepts, mappings, secrets
# ---------------------------------------------------------------------------------------------------------------

def intercepts_in(data):
    """``[(normalised, raw)]`` for every intercept in ``list`` output."""
    return [(normalize_intercept(info, workload), info) for info, workload in raw_intercepts(data)]


def own_intercepts(status):
    """``{name: client}`` of this client's intercepts from raw ``status`` JSON, whatever its shape.

    ``list`` shows every client's intercepts; ``status`` names only this client's (facts sheet section 2).
    """
    return {name: client for name, (client, _mode) in own_engagements(status).items()}


def own_engagements(status):
    """``{name: (client, mode)}`` of this client's intercepts, replaces and wiretaps from raw ``status`` JSON.

    ``mode`` is None for names under ``intercepts``: whether 2.24 lists replaces and wiretaps apart (like the
    2.27+ ``replacements``/``wiretaps``) or among the intercepts is UNVERIFIED (facts sheet section 2).
    """
    status = status if isinstance(status, dict) else {}
    found = {}
    for connection in status.get("connections") or []:
        found.update(own_engagements(connection))
    for key in ("user_daemon", "daemon"):
        daemon = status.get(key)
        if not isinstance(daemon, dict):
            continue
        for status_key, mode in STATUS_KEYS:
            for item in daemon.get(status_key) or []:
                if isinstance(item, dict) and item.get("name"):
                    found[item["name"]] = (item.get("client") or None, mode)
    return found


def engagement_mode(raw):
    """replace or wiretap from a list ``intercept_info`` element or the detailed output, else None (unknown).

    The ``replace``/``wiretap`` booleans are UNVERIFIED for 2.24 (facts sheet sections 3 and 5); a spec without
    them says nothing, since Go's omitempty drops false too.
    """
    raw = raw if isinstance(raw, dict) else {}
    spec = raw.get("spec") if isinstance(raw.get("spec"), dict) else {}
    for mode in ("replace", "wiretap"):
        if spec.get(mode) is True or raw.get(mode) is True:
            return mode
    return None


def find_ingest(data, workload, namespace):
    """This workload's ingest in ``list --ingests`` output as ``(normalised, raw)``, or ``(None, None)``.

    ``ingest_info`` (``ingest_infos`` before 2.22, UNVERIFIED) holds ``{"workload", "container", ...}`` (facts
    sheet section 3); an ingest has no disposition, so one that is listed is reported ACTIVE.
    """
    for item in workloads_from_list(data):
        infos = item.get("ingest_info")
        if infos is None:
            infos = item.get("ingest_infos")
        for info in infos or []:
            if isinstance(info, dict) and (info.get("workload") or item.get("name")) == workload \
                    and (item.get("namespace") or namespace) == namespace:
                return {"id": None, "name": workload, "disposition": "ACTIVE", "message": None, "client": None,
                        "workload": workload, "workload_kind": item.get("workload_resource_type") or None,
                        "namespace": namespace, "service": None, "service_port": None, "local_port": None,
                        "target_host": None, "environment_names": [], "mount": None, "mode": "ingest",
                        "container": info.get("container") or None}, info
    return None, None


def find_own(data, name, owners=None, intercept_id=None):
    """An intercept in ``list`` output, as ``(normalised, raw)``, or ``(None, None)``.

    With ``intercept_id``, the one with that ID. Otherwise the one named ``name`` that ``owners`` (see
    :func:`own_intercepts`) says this client has, preferring the entry whose client matches.
    """
    candidates = [(normalised, raw) for normalised, raw in intercepts_in(data)
                  if (normalised["id"] == intercept_id if intercept_id else normalised["name"] == name)]
    if not intercept_id:
        if name not in (owners or {}):
            return None, None
        client = owners[name]
        candidates = [item for item in candidates if item[0]["client"] == client] or candidates
    return candidates[0] if candidates else (None, None)


def not_json_message(args, rc, stderr):
    """Why a command whose stdout can hold the environment failed when that stdout is not JSON; never quotes it.

    A non-zero exit that stderr explains is reported as that reason. Otherwise the undecodable output is the
    problem, and saying "no output" (what cli.failure_message says once stdout is withheld) would mislead.
    """
    explained = failure_message(args, "", stderr, rc)
    if rc != 0 and explained != failure_message(args, "", "", rc):
        return explained
    return "telepresence %s exited %s with output that is not JSON %s" % (command_name(args), rc, NOT_JSON_WITHHELD)


def environment_values(data):
    """Every value of every ``environment`` mapping anywhere in ``data``."""
    values = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "environment" and isinstance(value, dict):
                values.extend(secret_values(value))
            else:
                values.extend(environment_values(value))
    elif isinstance(data, list):
        for item in data:
            values.extend(environment_values(item))
    return values


def secret_values(environment):
    """The values of an environment mapping worth masking (censor.could_be_secret)."""
    found = []
    for name, value in environment.items():
        text = "" if value is None else str(value)
        if name in CLIENT_VARIABLES or not could_be_secret(text):
            continue
        found.append(text)
    return found


def env_file_values(path):
    """Values in an env file the CLI wrote: JSON (``--env-json``) or ``NAME=value`` lines (docker syntax)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return secret_values(data)
    environment = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            environment[name.strip()] = value
    return secret_values(environment)


def mapping(present, workload=None, service_port=None, local_port=None, mode=None):
    """The part of an intercept that decides whether it can stay: the diff's before/after.

    ``mode`` is shown only for the other modes, so an intercept's diff reads as before modes existed.
    """
    if not present:
        shown = {"present": False, "workload": None, "service_port": None, "local_port": None}
    else:
        shown = {"present": True, "workload": workload,
                 "service_port": None if service_port is None else str(service_port), "local_port": local_port}
    if mode and mode != "intercept":
        shown["mode"] = mode
    return shown


def mapping_problems(existing, wanted, target):
    """How an existing intercept differs from the wanted one (empty when it can stay).

    ``target`` is the pre-flight result: a port requested by number matches an intercept that reports its name.
    """
    problems = []
    wanted_mode = wanted.get("mode") or "intercept"
    if existing.get("mode") and existing["mode"] != wanted_mode:
        problems.append("mode %s, wanted %s" % (existing["mode"], wanted_mode))
    if wanted_mode == "ingest":
        # an ingest maps no port: its workload and namespace are the whole mapping
        return problems + _place_problems(existing, wanted)
    problems.extend(_place_problems(existing, wanted))
    if existing.get("local_port") != wanted["local_port"]:
        problems.append("local port %s, wanted %s" % (existing.get("local_port"), wanted["local_port"]))
    reported = port_identifier_base(existing.get("service_port"))
    accepted = {port_identifier_base(wanted["service_port"]), str(target.get("port_name")),
                str(target.get("port_number"))}
    if reported is not None and reported not in accepted:
        problems.append("%s %s, wanted %s" % ("container port" if wanted_mode == "replace" else "service port",
                                              reported, wanted["service_port"]))
    if existing.get("service") and target.get("service") and existing["service"] != target["service"]:
        problems.append("service %s, wanted %s" % (existing["service"], target["service"]))
    return problems


def _place_problems(existing, wanted):
    problems = []
    if existing.get("workload") != wanted["workload"]:
        problems.append("workload %s, wanted %s" % (existing.get("workload"), wanted["workload"]))
    if existing.get("namespace") and existing["namespace"] != wanted["namespace"]:
        problems.append("namespace %s, wanted %s" % (existing["namespace"], wanted["namespace"]))
    return problems


def describe_intercept(normalised, raw=None, detailed=None, mount_requested=None):
    """The intercept as the module returns it: no environment values, only their names.

    ``mount_requested=False`` (an intercept made with ``--mount=false``) reports no mount whatever the output
    carries: 2.20-2.22 print the agent's mount point even then (facts sheet section 3, "Mount point in 2.20.2
    detailed output").
    """
    detailed = detailed or {}
    raw = raw or {}
    merged = dict(normalised)
    detailed_view = normalize_intercept(detailed) if detailed else {}
    for key, value in detailed_view.items():
        if merged.get(key) in (None, []) and value not in (None, []):
            merged[key] = value
    names = set(merged.get("environment_names") or []) | set(detailed_view.get("environment_names") or [])
    local_port, service_port = merged.get("local_port"), merged.get("service_port")
    return {
        "id": merged.get("id"),
        "name": merged.get("name"),
        "mode": merged.get("mode") or engagement_mode(raw) or engagement_mode(detailed) or "intercept",
        "disposition": merged.get("disposition"),
        "message": merged.get("message"),
        "client": merged.get("client"),
        "workload": merged.get("workload"),
        "workload_kind": merged.get("workload_kind"),
        "namespace": merged.get("namespace"),
        "service": merged.get("service"),
        "service_port": service_port,
        "local_port": local_port,
        "target_host": merged.get("target_host"),
        "ports": ["%s:%s" % (local_port, service_port)] if local_port and service_port else [],
        "mount": False if mount_requested is False else mount_of(raw, detailed),
        "environment_names": sorted(names),
    }


def mount_of(raw, detailed):
    """The mount an intercept has: False when none, else ``{local_dir, remote_dir, error}``."""
    mount = detailed.get("mount") if isinstance(detailed.get("mount"), dict) else None
    if mount is None and (raw.get("client_mount_point") or raw.get("mount_point")):
        mount = {"local_dir": raw.get("client_mount_point"), "remote_dir": raw.get("mount_point")}
    if not mount:
        return False
    return {"local_dir": mount.get("local_dir") or None, "remote_dir": mount.get("remote_dir") or None,
            "error": mount.get("error") or None}


# ---------------------------------------------------------------------------------------------------------------
# env files
# ---------------------------------------------------------------------------------------------------------------

class EnvFiles:
    """Env files the CLI writes into private temporary directories, copied into place whole, 0600 and owned by
    the user they are for (files.write_private).

    Use as a context manager: ``temp_path(option)`` gives the path to pass to the CLI, ``commit()`` copies
    every written file to its destination, and leaving the block removes the temporary directories, so a
    failed intercept leaves neither a partial file nor a temporary one.
    """

    def __init__(self, destinations):
        self.destinations = {option: path for option, path in destinations.items() if path}
        self._temp = {}
        self._dirs = []

    def __enter__(self):
        for option, destination in self.destinations.items():
            # The temporary directory sits next to the destination, so os.replace stays on one filesystem.
            directory = private_dir(".tp_intercept-", os.path.dirname(destination))
            self._dirs.append(directory)
            self._temp[option] = os.path.join(directory, os.path.basename(destination))
        return self

    def temp_path(self, option):
        return self._temp.get(option)

    def written(self):
        return {option: path for option, path in self._temp.items() if os.path.isfile(path)}

    def commit(self, uid, gid):
        """Copy the written files into place, 0600 and owned by ``uid``:``gid`` (see files.write_private); return
        the options whose file the CLI did not write. Raises FileRefused when a destination became another's."""
        missing = []
        for option, path in self._temp.items():
            if not os.path.isfile(path):
                missing.append(option)
                continue
            write_private(self.destinations[option], read_nofollow(path), uid, gid)
        return missing

    def __exit__(self, *exc_info):
        for directory in self._dirs:
            shutil.rmtree(directory, ignore_errors=True)
        return False
