#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tp_connection
short_description: Connect Telepresence to a cluster, scoped to a namespace, or disconnect it
version_added: 0.1.0
description:
  - Makes sure the local Telepresence daemons hold a session with the wanted context, namespace and traffic-manager
    namespace (C(telepresence connect)), or that there is no session (C(telepresence quit)), or that the daemons are
    stopped (C(telepresence quit -s)).
  - Reads C(telepresence status --output json) first. A session that already has the wanted settings is left alone,
    so a re-run makes exactly one CLI call and reports no change.
  - A session with other settings is quit and connected again when O(reconnect=true), because a plain C(connect) with
    other settings fails with C(Cluster configuration changed).
  - Every connect passes the same explicit flags, in the same order, so sessions started by this module always match.
author:
  - devloop.telepresence maintainers (@devloop)
extends_documentation_fragment:
  - devloop.telepresence.common
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the status and reports what would change without running C(connect) or C(quit).
  diff_mode:
    support: full
    details: Shows the session (connected, context, namespace, manager namespace) before and after.
  platform:
    platforms: posix
options:
  state:
    description:
      - V(connected) makes sure a session with the wanted settings exists.
      - V(disconnected) ends the session (C(telepresence quit)); the daemons keep running, and intercepts end.
      - V(stopped) ends the session and stops the daemons (C(telepresence quit -s)), which is needed after replacing
        the client binary.
    type: str
    choices: [connected, disconnected, stopped]
    default: connected
    version_added: 0.1.0
  namespace:
    description:
      - Namespace the session is scoped to, passed as C(--namespace). Intercepts are created in this namespace on
        clients older than 2.28.
      - When not set, the kubeconfig context's namespace is used and any connected namespace is accepted.
      - Must be a DNS-1123 label.
    type: str
    version_added: 0.1.0
  docker:
    description:
      - Run the daemon in a Docker container (C(connect --docker)). Docker mode needs no root daemon, so no sudo.
    type: bool
    default: false
    version_added: 0.1.0
  also_proxy:
    description:
      - Extra subnets (CIDR notation, for example V(10.10.0.0/16)) to route through the cluster (C(--also-proxy)).
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  never_proxy:
    description:
      - Subnets (CIDR notation) never to route through the cluster (C(--never-proxy)).
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  mapped_namespaces:
    description:
      - Namespaces whose names the session resolves in DNS (C(--mapped-namespaces)). Each must be a DNS-1123 label.
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  reconnect:
    description:
      - When connected with another context, namespace, manager namespace or docker mode, quit and connect again.
      - When V(false), fail instead, naming the current and the wanted settings.
    type: bool
    default: true
    version_added: 0.1.0
notes:
  - A session is compared on its context, namespace, manager namespace and docker mode. The proxy lists and mapped
    namespaces are passed on every connect but do not by themselves cause a reconnect.
  - Connecting on the host starts a root daemon through C(sudo). When sudo would ask for a password the module fails
    at once, before C(connect), with what to do instead (passwordless sudo for the binary, C(become), or O(docker=true)).
  - Daemons of another client version make connect fail; the message says to use O(state=stopped) first.
  - When C(connect) fails and no daemon ran before it, the daemons it launched are stopped again (C(quit -s)) before
    the task fails; C(commands) lists that call.
seealso:
  - module: devloop.telepresence.tp_info
  - module: devloop.telepresence.tp_intercept
  - module: devloop.telepresence.tp_manager
"""

EXAMPLES = r"""
- name: Connect, scoped to the app namespace
  devloop.telepresence.tp_connection:
    namespace: app

- name: Connect to another cluster context, failing instead of replacing a session with other settings
  devloop.telepresence.tp_connection:
    context: staging
    namespace: shop
    manager_namespace: telepresence
    reconnect: false

- name: Connect in docker mode (no root daemon, no sudo) and route an extra subnet through the cluster
  devloop.telepresence.tp_connection:
    namespace: app
    docker: true
    also_proxy:
      - 10.20.0.0/16

- name: End the session (intercepts end too), keep the daemons
  devloop.telepresence.tp_connection:
    state: disconnected

- name: Stop the daemons, for example after upgrading the client
  devloop.telepresence.tp_connection:
    state: stopped
"""

RETURN = r"""
connected:
  description:
    - Whether a session is connected after the task. In check mode nothing is done, so it is whether one is connected
      now (as RV(status.connected) says); RV(planned) is the session the task would leave.
  returned: always
  type: bool
  sample: true
planned:
  description: In check mode, the session the task would leave (C(connected), C(context), C(namespace),
    C(manager_namespace)); unset settings keep what the cluster would pick (null when unknown).
  returned: in check mode, when the task would change the session
  type: dict
  sample: {connected: true, context: sandbox, namespace: app, manager_namespace: ambassador}
action:
  description: What the task did (in check mode, would do).
  returned: always
  type: str
  choices: [none, connected, reconnected, disconnected, stopped]
  sample: connected
status:
  description:
    - The normalised C(telepresence status) after the task (in check mode, before it).
    - Versions carry no leading C(v).
  returned: always
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
      description: Whether the daemon runs in a container (docker mode).
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
      description:
        - Version of the client binary. Known after this task connected (the CLI refuses daemons of another
          version); null when the task only read the status.
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
      description: Image of the traffic agent the manager injects.
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
command:
  description: The argv of the acting CLI call (C(connect) or C(quit)); null when none ran, as in check mode.
  returned: always
  type: list
  elements: str
  sample: [/usr/local/bin/telepresence, connect, --namespace, app, --manager-namespace, ambassador, --output, json]
commands:
  description: Every argv the task ran, in order.
  returned: always
  type: list
  elements: list
  sample: [[/usr/local/bin/telepresence, status, --output, json]]
diff:
  description: The session before and after, each as C(connected), C(context), C(namespace), C(manager_namespace).
  returned: when diff mode is on
  type: dict
  sample:
    before: {connected: false, context: null, namespace: null, manager_namespace: null}
    after: {connected: true, context: sandbox, namespace: app, manager_namespace: ambassador}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.devloop.telepresence.plugins.module_utils.cli import TelepresenceCli, TelepresenceError
from ansible_collections.devloop.telepresence.plugins.module_utils.common import (
    argument_spec,
    check_common,
    check_dns1123_labels,
    fail_with,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.connection import (
    ConnectionSpec,
    SESSION_KEYS,
    connected_result,
    disconnect,
    ensure_connected,
    last_command,
    session_settings_problem,
    session_view,
    with_plan,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.common import protect_kubeconfig_secrets


def module_argument_spec():
    return argument_spec(
        state=dict(type="str", default="connected", choices=["connected", "disconnected", "stopped"]),
        namespace=dict(type="str"),
        docker=dict(type="bool", default=False),
        also_proxy=dict(type="list", elements="str", default=[]),
        never_proxy=dict(type="list", elements="str", default=[]),
        mapped_namespaces=dict(type="list", elements="str", default=[]),
        reconnect=dict(type="bool", default=True),
    )


def validate(module):
    check_common(module)
    check_dns1123_labels(module, "namespace")
    problem = session_settings_problem(module.params)
    if problem:
        module.fail_json(msg=problem)


def apply_connected(module, runner):
    spec = ConnectionSpec.from_params(module.params)
    outcome = ensure_connected(runner, spec, reconnect=module.params["reconnect"], check_mode=module.check_mode)
    return connected_result(runner, spec, outcome, module.check_mode)


def apply_disconnected(module, runner, stop_daemons):
    outcome = disconnect(runner, stop_daemons=stop_daemons, check_mode=module.check_mode)
    acted = outcome["changed"] and not module.check_mode
    planned = None
    if module.check_mode and outcome["changed"]:
        planned = dict.fromkeys(SESSION_KEYS)
        planned["connected"] = False
    return with_plan({
        "changed": outcome["changed"],
        "action": ("stopped" if stop_daemons else "disconnected") if outcome["changed"] else "none",
        "connected": bool(session_view(outcome["status"])["connected"]),
        "status": outcome["status"],
        "command": last_command(runner, "quit") if acted else None,
        "before": session_view(outcome["before"]),
        "after": planned or session_view(outcome["status"]),
    }, planned)


def apply_state(module, runner):
    state = module.params["state"]
    if state == "connected":
        return apply_connected(module, runner)
    return apply_disconnected(module, runner, stop_daemons=state == "stopped")


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(), supports_check_mode=True)
    protect_kubeconfig_secrets(module)  # before anything can fail and quote them
    validate(module)
    runner = TelepresenceCli.from_params(module)
    try:
        result = apply_state(module, runner)
    except TelepresenceError as exc:
        fail_with(module, exc, command=exc.argv, commands=runner.commands)
    else:
        exit_with(module, runner, result)


def exit_with(module, runner, result):
    before, after = result.pop("before"), result.pop("after")
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(commands=runner.commands, **result)


if __name__ == "__main__":
    main()
