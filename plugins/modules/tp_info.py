#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tp_info
short_description: Read the Telepresence client, session, intercepts, workloads and traffic manager
version_added: 0.1.0
description:
  - Reads, without changing anything, the client binary and its version, the normalised session status, this
    client's intercepts and, when asked, the workloads of a namespace and the traffic manager's state in the cluster.
  - Returns them and sets the fact C(telepresence) with the same data.
  - Never starts daemons and never connects. C(telepresence version) and C(telepresence status) only discover running
    daemons; C(telepresence list), which would connect implicitly, runs only when the status says the session is
    connected.
author:
  - devloop.telepresence maintainers (@devloop)
extends_documentation_fragment:
  - devloop.telepresence.common
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: The module only reads, so it behaves the same in check mode.
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
options:
  gather:
    description:
      - What to read.
      - V(client) is the executable's path and version (C(telepresence version)).
      - V(status) is the normalised C(telepresence status).
      - V(intercepts) are this client's intercepts, in detail from C(telepresence list) when connected.
      - V(workloads) are the workloads of O(namespace), read only when connected.
      - V(manager) is the traffic manager's state in O(manager_namespace), read from the cluster with the
        C(kubernetes) library (no Telepresence session needed).
    type: list
    elements: str
    choices: [client, status, intercepts, workloads, manager]
    default: [client, status, intercepts]
    version_added: 0.1.0
  namespace:
    description:
      - Namespace whose workloads V(workloads) lists.
      - When not set, the namespace the session is connected to.
      - Must be a DNS-1123 label.
    type: str
    version_added: 0.1.0
requirements:
  - The C(kubernetes) Python library on the host that runs the task, only for O(gather=manager) (C(pip install kubernetes)).
notes:
  - Environment variable values of intercepts are cluster secrets; only their names are returned. Before the module
    exits or fails, the values are added to the values Ansible masks in its output and logs, except values its own
    argv, parameters and structured result show anyway (such as the workload name in E(TELEPRESENCE_CONTAINER)) and
    common words and numbers (V(false), port-like numbers, values shorter than 4 characters), which masking would
    only garble. The CLI's own error text never counts as shown. M(devloop.telepresence.tp_intercept) follows the
    same policy.
seealso:
  - module: devloop.telepresence.tp_connection
  - module: devloop.telepresence.tp_intercept
  - module: devloop.telepresence.tp_manager
"""

EXAMPLES = r"""
- name: Read the client, the session and this client's intercepts
  devloop.telepresence.tp_info:
  register: tp

- name: Show where the session points
  ansible.builtin.debug:
    msg: "{{ ansible_facts.telepresence.status.context }} / {{ ansible_facts.telepresence.status.namespace }}"

- name: Read the workloads of the app namespace and the traffic manager's state
  devloop.telepresence.tp_info:
    gather: [status, workloads, manager]
    namespace: app
    manager_namespace: ambassador

- name: Fail early when the traffic manager is not ready
  ansible.builtin.assert:
    that:
      - ansible_facts.telepresence.manager.installed
      - ansible_facts.telepresence.manager.ready
    fail_msg: Install the traffic manager first (devloop.telepresence.tp_manager)
"""

RETURN = r"""
client:
  description: The client executable.
  returned: when O(gather) contains V(client)
  type: dict
  contains:
    path:
      description: Path of the executable.
      type: str
      sample: /usr/local/bin/telepresence
    version:
      description: Its version, without C(v).
      type: str
      sample: 2.24.0
status:
  description: The normalised C(telepresence status); versions carry no leading C(v).
  returned: when O(gather) contains V(status)
  type: dict
  contains:
    connected:
      description: Whether the user daemon reports C(Connected).
      type: bool
      sample: true
    state:
      description: The user daemon's status text, C(Not running) when it does not run.
      type: str
      sample: Connected
    error:
      description: The error the user daemon reports, if any.
      type: str
      sample: null
    user_daemon_running:
      description: Whether the user daemon runs.
      type: bool
      sample: true
    root_daemon_running:
      description: Whether the root daemon runs (in docker mode, the containerised daemon).
      type: bool
      sample: true
    in_docker:
      description: Whether the daemon runs in a container.
      type: bool
      sample: false
    context:
      description: Kubeconfig context of the session.
      type: str
      sample: sandbox
    server:
      description: Kubernetes API server of the session.
      type: str
      sample: https://127.0.0.1:6443
    namespace:
      description: Namespace the session is scoped to.
      type: str
      sample: app
    manager_namespace:
      description: Namespace of the traffic manager the session uses.
      type: str
      sample: ambassador
    mapped_namespaces:
      description: Namespaces mapped into DNS.
      type: list
      elements: str
      sample: []
    connection_name:
      description: Name of the daemon connection.
      type: str
      sample: sandbox-app
    client_version:
      description: Version of the client; null unless O(gather) contains V(client).
      type: str
      sample: 2.24.0
    daemon_version:
      description: Version of the user daemon.
      type: str
      sample: 2.24.0
    root_daemon_version:
      description: Version of the root daemon.
      type: str
      sample: 2.24.0
    manager_version:
      description: Version of the traffic manager the session talks to.
      type: str
      sample: 2.24.0
    traffic_agent:
      description: Image of the traffic agent.
      type: str
      sample: ghcr.io/telepresenceio/tel2:2.24.0
    intercepts:
      description: Names of this client's intercepts.
      type: list
      elements: str
      sample: [fresh-app]
    connections:
      description: Number of daemon connections.
      type: int
      sample: 1
intercepts:
  description:
    - This client's intercepts. When connected, in detail from C(telepresence list); otherwise only the names the
      status reports, with the other keys null.
    - Environment variable values are never returned, only their names.
  returned: when O(gather) contains V(intercepts)
  type: list
  elements: dict
  contains:
    id:
      description: Intercept id.
      type: str
      sample: 9c2b6f5e-0c1d-4c9b-9e51-6a8f0d1c2b3a:fresh-app
    name:
      description: Intercept name.
      type: str
      sample: fresh-app
    disposition:
      description: State of the intercept, such as C(ACTIVE) or C(WAITING).
      type: str
      sample: ACTIVE
    message:
      description: The manager's message about the intercept, if any.
      type: str
      sample: null
    client:
      description: The client (user@host) that owns the intercept.
      type: str
      sample: dev@laptop
    workload:
      description: Intercepted workload.
      type: str
      sample: fresh-app
    workload_kind:
      description: Kind of the workload.
      type: str
      sample: Deployment
    namespace:
      description: Namespace of the workload.
      type: str
      sample: app
    service:
      description: Service whose traffic is intercepted.
      type: str
      sample: fresh-app
    service_port:
      description: Service port name, or number when it has no name.
      type: str
      sample: http
    local_port:
      description: Local port that receives the traffic.
      type: int
      sample: 8080
    ports:
      description: The port mapping as C(<local port>:<service port>), as M(devloop.telepresence.tp_intercept) reports
        it; empty when either is not reported.
      type: list
      elements: str
      sample: ["8080:http"]
    target_host:
      description: Local address that receives the traffic.
      type: str
      sample: 127.0.0.1
    environment_names:
      description: Names of the workload's environment variables (their values are never returned).
      type: list
      elements: str
      sample: [API_TOKEN, HOME]
    mount:
      description: Remote file system mount details, when reported.
      type: dict
      sample: null
workloads:
  description: Workloads of O(namespace) as C(telepresence list) reports them; null when not connected.
  returned: when O(gather) contains V(workloads)
  type: list
  elements: dict
  contains:
    name:
      description: Workload name.
      type: str
      sample: fresh-app
    namespace:
      description: Workload namespace.
      type: str
      sample: app
    kind:
      description: Workload kind (Deployment, ReplicaSet, StatefulSet, Rollout).
      type: str
      sample: Deployment
    uid:
      description: Workload UID.
      type: str
      sample: 0b5c8b1e-8a6f-4b8f-9a37-2d8f6b1f7c11
    agent_installed:
      description: Whether the traffic agent is injected into the workload.
      type: bool
      sample: true
    agent_version:
      description: Version of the injected traffic agent, without C(v).
      type: str
      sample: 2.24.0
    interceptable:
      description: Whether the workload can be intercepted now.
      type: bool
      sample: true
    not_interceptable_reason:
      description: Why it cannot, when it cannot.
      type: str
      sample: null
    intercepts:
      description: Names of the intercepts (of any client) on the workload.
      type: list
      elements: str
      sample: [fresh-app]
manager:
  description: The traffic manager's state in O(manager_namespace), read from the cluster.
  returned: when O(gather) contains V(manager)
  type: dict
  contains:
    installed:
      description: Whether a traffic manager is installed.
      type: bool
      sample: true
    kind:
      description: Kind of the manager workload (Deployment or StatefulSet).
      type: str
      sample: Deployment
    version:
      description: Installed version, without C(v).
      type: str
      sample: 2.24.0
    image:
      description: Image of the manager container.
      type: str
      sample: ghcr.io/telepresenceio/tel2:2.24.0
    ready:
      description: Whether the manager is rolled out and available.
      type: bool
      sample: true
    replicas:
      description: Wanted replicas.
      type: int
      sample: 1
    ready_replicas:
      description: Ready replicas.
      type: int
      sample: 1
    conditions:
      description: The workload's status conditions.
      type: list
      elements: dict
      sample: [{type: Available, status: "True", reason: MinimumReplicasAvailable, message: Deployment has minimum availability.}]
    release:
      description: The latest revision of the C(traffic-manager) Helm release; null when there is no release secret.
      type: dict
      contains:
        revision:
          description: Release revision.
          type: int
          sample: 1
        status:
          description: Helm status of the release, such as C(deployed) or C(failed).
          type: str
          sample: deployed
        chart_version:
          description: Chart version, without C(v); null when the release payload cannot be decoded.
          type: str
          sample: 2.24.0
        app_version:
          description: Chart application version, without C(v).
          type: str
          sample: 2.24.0
        user_values:
          description:
            - The user values the release was installed with; null when the payload cannot be decoded.
            - Named C(values) before the first release.
          type: dict
          sample: {}
    namespace:
      description: Namespace that was read.
      type: str
      sample: ambassador
ansible_facts:
  description: The same data under the C(telepresence) fact.
  returned: always
  type: dict
  contains:
    telepresence:
      description: The keys this task gathered (C(client), C(status), C(intercepts), C(workloads), C(manager)).
      type: dict
      sample: {client: {path: /usr/local/bin/telepresence, version: 2.24.0}}
command:
  description: Always null; the module runs no acting CLI call.
  returned: always
  type: list
  elements: str
  sample: null
commands:
  description: Every argv the task ran, in order.
  returned: always
  type: list
  elements: list
  sample: [[/usr/local/bin/telepresence, version], [/usr/local/bin/telepresence, status, --output, json]]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.devloop.telepresence.plugins.module_utils.censor import protect, remember
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import TelepresenceCli, TelepresenceError
from ansible_collections.devloop.telepresence.plugins.module_utils.common import (
    argument_spec,
    check_common,
    check_dns1123_labels,
    fail_with,
    strip_v,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.connection import VERSION_MISMATCH_RE
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import Kube, KubeError
from ansible_collections.devloop.telepresence.plugins.module_utils.manager import read_manager_state, version_from_image
from ansible_collections.devloop.telepresence.plugins.module_utils.status import (
    intercepts_from_list,
    normalize_intercept,
    normalize_status,
    read_status_json,
    workloads_from_list,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.common import protect_kubeconfig_secrets

GATHER_CHOICES = ["client", "status", "intercepts", "workloads", "manager"]
NEEDS_STATUS = ("status", "intercepts", "workloads")


def module_argument_spec():
    return argument_spec(
        gather=dict(type="list", elements="str", default=["client", "status", "intercepts"], choices=GATHER_CHOICES),
        namespace=dict(type="str"),
    )


def validate(module):
    check_common(module)
    check_dns1123_labels(module, "namespace")
    if not module.params["gather"]:
        module.fail_json(msg="gather is empty; name at least one of %s" % ", ".join(GATHER_CHOICES))


class ListReader:
    """Runs ``list`` at most once per argv, and remembers the environment values it saw (censor.remember)."""

    def __init__(self, module, runner):
        self.module = module
        self.runner = runner
        self._cache = {}

    def read(self, namespace=None, intercepts_only=False):
        args = ["list"]
        if namespace:
            args += ["--namespace", namespace]
        if intercepts_only:
            args.append("--intercepts")
        key = tuple(args)
        if key not in self._cache:
            data = workloads_from_list(self.runner.run_json(args))
            remember(self.module, environment_values(data))
            self._cache[key] = data
        return self._cache[key]


def environment_values(workloads):
    for workload in workloads:
        for info in intercept_infos(workload):
            environment = info.get("environment")
            if isinstance(environment, dict):
                for value in environment.values():
                    if value not in (None, ""):
                        yield str(value)


def intercept_infos(workload):
    infos = workload.get("intercept_info")
    if infos is None:
        infos = workload.get("intercept_infos")
    return [info for info in infos or [] if isinstance(info, dict)]


def gather_client(runner):
    return {"path": runner.binary, "version": runner.client_version()}


def gather_intercepts(module, lists, status, workloads_namespace):
    """This client's intercepts: its names come from status, the details from ``list`` when connected."""
    names = status["intercepts"]
    if not status["connected"] or not names:
        return [normalize_intercept({"name": name}) for name in names]
    # One list call serves workloads and intercepts when both look at the connected namespace.
    shared = workloads_namespace == status["namespace"]
    try:
        data = lists.read(status["namespace"]) if shared else lists.read(intercepts_only=True)
    except TelepresenceError as exc:
        if not VERSION_MISMATCH_RE.search(str(exc)):
            raise
        module.warn("intercept details are not available: %s; returning the names only" % exc)
        return [normalize_intercept({"name": name}) for name in names]
    found = {}
    for intercept in intercepts_from_list(data):
        if intercept["name"] in names and intercept["name"] not in found:
            found[intercept["name"]] = intercept
    # An intercept in another namespace (2.28+ intercept --namespace) is not in this list: keep its name.
    return [found.get(name) or normalize_intercept({"name": name}) for name in names]


def gather_workloads(lists, status, namespace):
    if not status["connected"]:
        return None
    return [normalize_workload(item) for item in lists.read(namespace)]


def normalize_workload(item):
    sidecar = item.get("sidecar") if isinstance(item.get("sidecar"), dict) else {}
    agent_version = strip_v(item.get("agent_version")) or version_from_image(sidecar.get("agentImage"))
    reason = item.get("not_interceptable_reason") or None
    return {
        "name": item.get("name"),
        "namespace": item.get("namespace"),
        "kind": item.get("workload_resource_type") or None,
        "uid": item.get("uid") or None,
        "agent_installed": bool(item.get("agent_version") or sidecar),
        "agent_version": agent_version,
        "interceptable": reason is None,
        "not_interceptable_reason": reason,
        "intercepts": [normalize_intercept(info, item)["name"] for info in intercept_infos(item)],
    }


def gather_manager(module):
    state = read_manager_state(Kube.from_params(module.params), module.params["manager_namespace"])
    release = state.get("release")
    if release:
        # ansible-core 2.21's sanity refuses a return key named like a dict method, hence user_values.
        release = dict(release)
        release["user_values"] = release.pop("values", None)
        state["release"] = release
    return state


def gather(module, runner, lists):
    wanted = set(module.params["gather"])
    info = {}
    if "client" in wanted:
        info["client"] = gather_client(runner)
    if wanted.intersection(NEEDS_STATUS):
        client_version = info["client"]["version"] if "client" in info else None
        status = normalize_status(read_status_json(runner), client_version=client_version)
        workloads_namespace = module.params["namespace"] or status["namespace"]
        if "status" in wanted:
            info["status"] = status
        if "intercepts" in wanted:
            info["intercepts"] = gather_intercepts(module, lists, status,
                                                   workloads_namespace if "workloads" in wanted else None)
        if "workloads" in wanted:
            info["workloads"] = gather_workloads(lists, status, workloads_namespace)
    if "manager" in wanted:
        info["manager"] = gather_manager(module)
    return info


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(), supports_check_mode=True)
    protect_kubeconfig_secrets(module)  # before anything can fail and quote them
    validate(module)
    runner = TelepresenceCli.from_params(module)
    lists = ListReader(module, runner)
    try:
        info = gather(module, runner, lists)
    except (TelepresenceError, KubeError) as exc:
        protect(module, runner.commands, module.params)  # the error's text is the CLI's: never proof of public
        fail_with(module, exc, commands=runner.commands)
    else:
        protect(module, runner.commands, module.params, info)
        module.exit_json(changed=False, command=None, commands=runner.commands,
                         ansible_facts={"telepresence": info}, **info)


if __name__ == "__main__":
    main()
