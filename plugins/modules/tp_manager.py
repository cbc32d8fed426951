#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tp_manager
short_description: Install, upgrade or remove the Telepresence traffic manager, and wait until it is ready
version_added: 0.1.0
description:
  - Makes sure the Telepresence traffic manager (Helm release C(traffic-manager)) is installed with the wanted version and
    chart values, or is absent, in O(manager_namespace).
  - The current state is read from the cluster with the Kubernetes API, never with the CLI - the C(traffic-manager)
    StatefulSet or Deployment, its version label (falling back to the image tag), its readiness, and the latest Helm
    release secret C(sh.helm.release.v1.traffic-manager.v<N>) with its status, chart version and values.
  - The change itself is made with C(telepresence helm install), C(helm upgrade) or C(helm uninstall), always with an
    explicit C(--manager-namespace) and with the flags of the client's version.
  - Readiness is awaited with a Kubernetes watch, bounded by O(wait_timeout). When the manager does not become ready,
    the task fails with the workload's conditions, each pod's phase and waiting reason (for example C(ImagePullBackOff)),
    and the recent events of those pods.
author:
  - devloop.telepresence maintainers (@devloop)
extends_documentation_fragment:
  - devloop.telepresence.common
  - ansible.builtin.action_common_attributes
requirements:
  - The C(kubernetes) Python library on the host that runs the task (C(pip install kubernetes)).
attributes:
  check_mode:
    support: full
    details: Reports the install, upgrade or uninstall that would happen. Only read-only CLI calls run
      (C(telepresence version), C(telepresence status) when agents would be removed).
  diff_mode:
    support: full
    details: Shows C(installed), C(version) and C(values) before and after.
  platform:
    platforms: posix
options:
  state:
    description:
      - V(present) installs the traffic manager when it is missing and upgrades it when its version or values differ
        from the wanted ones.
      - V(absent) removes the traffic agents (see O(remove_agents)) and then uninstalls the Helm release.
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
  version:
    description:
      - Traffic manager version to install, such as V(2.24.0); a leading V(v) is allowed.
      - When not set, the client's own version, learned with one C(telepresence version) call.
      - A version other than the client's is installed with C(--version), which clients older than 2.21 do not have;
        with such a client the task fails and asks for the matching client.
      - Ignored with O(state=absent).
    type: str
    version_added: 0.1.0
  upgrade:
    description:
      - When the installed version or values differ from the wanted ones, V(true) upgrades the release.
      - V(false) leaves the release alone (C(changed=false)) and warns about the drift.
    type: bool
    default: true
    version_added: 0.1.0
  allow_downgrade:
    description:
      - The traffic manager is shared by every session of the cluster, so a wanted version lower than the installed one
        (say an older client in one developer's shell) fails the task, naming both versions, unless this is V(true).
      - With V(true) the release is downgraded with C(helm upgrade) and RV(action) is V(downgraded).
      - Not used with O(upgrade=false), which never changes the release.
    type: bool
    default: false
    version_added: 0.1.0
  values:
    description:
      - 'Helm chart values for the traffic manager, as a mapping (for example V({agent: {logLevel: debug}})).'
      - Passed to the CLI as C(-f) with a temporary JSON file (mode 0600, in a private directory) that is always removed,
        also when the call fails or times out.
      - When not set, the module has no opinion about values - the release's values are left as they are, never
        reported as drift, and an upgrade (for a new O(version)) keeps them.
      - When set (even to V({})), these are exactly the user values the release must have. A difference upgrades the
        release with C(--reset-values) and this file, because the CLI otherwise keeps the previous values whenever the
        given values add up to an empty map; so V({}) removes values set earlier. The release is read again afterwards
        to confirm it.
      - The CLI sets some keys itself on every install and upgrade - C(image.registry) and C(image.tag) always
        (C(image.tag) to the manager version), and C(agent.image), C(grpc.maxReceiveSize),
        C(agentInjector.appProtocolStrategy) and C(telepresenceAPI.port) when its C(config.yml) sets them. These keys
        are never compared, on either side. When this option sets one of them, it is passed on as given and the task
        warns that it never causes an upgrade.
      - C(image.tag) here is the tag of the chart's manager image, not the manager version; whether the CLI keeps it
        or replaces it with its own depends on the client. Choose the manager version with O(version).
      - Values can hold secrets (licence keys, tokens); see O(values_no_log).
    type: raw
    version_added: 0.1.0
  values_no_log:
    description:
      - Keep chart values out of the result, C(--diff) output and the controller's logs.
      - V(true) replaces every value, in the C(values) of the diff (the release's and the wanted ones) and in the
        module's C(invocation), by a placeholder and keeps the keys, so the diff still shows which keys differ (their
        lines say C(differs)); C(drift) names the differing keys as it always does.
      - The managed host's own syslog entry of the invocation is written by Ansible before the module runs; set
        C(no_target_syslog) to keep it out of syslog.
      - V(false) shows the values as they are.
    type: bool
    default: true
    version_added: 0.1.0
  create_namespace:
    description:
      - Whether an install may create O(manager_namespace).
      - V(false) fails before any change when the namespace does not exist, and passes C(--create-namespace=false) to
        clients that have it (2.19.1 and later).
    type: bool
    default: true
    version_added: 0.1.0
  wait:
    description:
      - Wait until the manager is ready after an install or upgrade (or until a present one is ready), and until its
        workload is gone after an uninstall.
      - The Helm call then runs with a time limit of O(wait_timeout) plus 10 seconds.
    type: bool
    default: true
    version_added: 0.1.0
  wait_timeout:
    description:
      - Seconds to wait for readiness (or removal) when O(wait=true). Must be positive.
    type: int
    default: 120
    version_added: 0.1.0
  remove_agents:
    description:
      - With O(state=absent), remove every traffic agent (C(telepresence uninstall --all-agents)) before uninstalling
        the manager.
      - The cluster is searched for agents first (pods with a C(traffic-agent) container, which is where agents run
        in every version; up to 2.21 the manager patches the workload so its new pods carry one, from 2.22 it evicts
        the pods and its webhook injects the agent into their replacements); when there is none, no command runs. An
        entry of a C(telepresence-agents) ConfigMap that no running pod matches is not an agent.
      - C(uninstall) needs a session, so it runs in the connected session when that one uses this manager namespace,
        else the module connects, removes the agents and quits again (C(quit -s) when no daemon ran before, so the
        daemons it started for that session do not stay).
      - Afterwards the cluster is searched again until no agent is left (their workloads roll out without them), for
        at most O(wait_timeout) seconds, also with O(wait=false). When agents remain, the task fails and the manager
        is left installed, so that no agent is left without its manager.
    type: bool
    default: true
    version_added: 0.1.0
notes:
  - A CLI call that exits 0 is not taken as proof. After C(helm install) or C(helm upgrade) the manager is read again,
    and the task fails when its release, version or values still differ from the wanted ones; after C(helm uninstall)
    it fails when the release is still there.
  - 'Idempotence: when the release is deployed with the wanted version and values, no CLI command runs at all if
    O(version) is set, and only C(telepresence version) runs if it is not.'
  - A release stuck in C(pending-install), C(pending-upgrade) or C(failed) is repaired by running the install path, which
    the CLI turns into an uninstall and a new install.
  - A C(traffic-manager) workload without a C(traffic-manager) Helm release was installed by something else; it is left
    alone with a warning, and O(state=absent) fails instead of pretending to remove it.
  - A client of 2.25 or later cannot work with a traffic manager older than 2.21; such a combination is refused before
    anything changes.
  - The CLI's own Helm call also waits (atomic, C(timeouts.helm) in the client's C(config.yml), 30 seconds by default)
    and rolls back when that expires; raise it for slow clusters.
  - The task needs read access to StatefulSets, Deployments, Secrets, Pods and Events in O(manager_namespace), and for
    O(state=absent) with O(remove_agents=true), list access to Pods in all namespaces.
seealso:
  - module: devloop.telepresence.tp_binary
  - module: devloop.telepresence.tp_connection
  - module: devloop.telepresence.tp_info
  - name: Telepresence traffic manager installation
    description: How the CLI installs the traffic manager with Helm.
    link: https://telepresence.io/docs/install/manager
"""

EXAMPLES = r"""
- name: Install the traffic manager of the client's version and wait until it is ready
  devloop.telepresence.tp_manager:
    binary_path: "{{ ansible_user_dir }}/.local/bin/telepresence"

- name: Pin the manager version and set chart values
  devloop.telepresence.tp_manager:
    version: 2.24.0
    manager_namespace: ambassador
    values:
      agent:
        logLevel: debug
    wait_timeout: 300

- name: Report drift without upgrading
  devloop.telepresence.tp_manager:
    version: 2.25.0
    upgrade: false
  register: manager

- name: Remove the traffic agents and the traffic manager
  devloop.telepresence.tp_manager:
    state: absent
    context: dev-cluster
"""

RETURN = r"""
action:
  description: What the task did (or would do in check mode).
  returned: always
  type: str
  choices: [installed, upgraded, downgraded, uninstalled, none]
  sample: upgraded
reason:
  description: Why that action was chosen.
  returned: always
  type: str
  sample: version 2.24.0 is installed, 2.25.0 is wanted
drift:
  description: The differences between the installed and the wanted manager; with O(upgrade=false) they are left alone.
  returned: always
  type: list
  elements: str
  sample: ["version 2.24.0 is installed, 2.25.0 is wanted"]
installed:
  description: Whether a C(traffic-manager) Deployment or StatefulSet exists after the task.
  returned: always
  type: bool
  sample: true
kind:
  description: Kind of the manager workload, or null when it is not installed.
  returned: always
  type: str
  sample: Deployment
version:
  description: Installed manager version (no V(v)), from the C(app.kubernetes.io/version) label or the image tag.
  returned: always
  type: str
  sample: 2.24.0
namespace:
  description: The manager namespace.
  returned: always
  type: str
  sample: ambassador
ready:
  description:
    - Whether the manager workload is rolled out, as C(kubectl rollout status) sees it - the latest spec observed, every
      replica updated and available, no pod of an older revision left, and (Deployment) the C(Available) condition true.
  returned: always
  type: bool
  sample: true
replicas:
  description: Desired number of manager pods.
  returned: always
  type: int
  sample: 1
ready_replicas:
  description: Number of ready manager pods.
  returned: always
  type: int
  sample: 1
release:
  description: The latest revision of the C(traffic-manager) Helm release, or null when there is none.
  returned: always
  type: dict
  contains:
    revision:
      description: Helm revision number.
      type: int
      sample: 2
    status:
      description: Helm release status.
      type: str
      sample: deployed
    chart_version:
      description: Chart version, or null when the release secret cannot be decoded.
      type: str
      sample: 2.25.0
agents:
  description: How traffic agents were handled with O(state=absent).
  returned: always
  type: dict
  contains:
    path:
      description:
        - V(skipped) (nothing to uninstall, or O(remove_agents=false)), V(no agents) (none in the cluster),
          V(existing session) (C(uninstall --all-agents) in the connected session), V(temporary session) (connected,
          removed the agents, quit), V(not checked) (the cluster could not be searched and no session of this
          manager was connected; a warning says so).
      type: str
      sample: temporary session
    found:
      description: Workloads found with an agent, as C(namespace/name), when the cluster was searched.
      type: list
      elements: str
      sample: ["app/fresh-app"]
command:
  description: Argv of the acting CLI call (install, upgrade or uninstall), or null when none ran.
  returned: always
  type: list
  elements: str
  sample: ["/usr/local/bin/telepresence", "helm", "upgrade", "--manager-namespace", "ambassador", "-f",
           "/tmp/tp_manager_x1y2/values.json"]
commands:
  description: Argv of every CLI call the task ran, in order.
  returned: always
  type: list
  elements: list
  sample: [["/usr/local/bin/telepresence", "version"],
           ["/usr/local/bin/telepresence", "helm", "install", "--manager-namespace", "ambassador"]]
diagnostics:
  description: Why the manager is not ready, when the task failed for that reason.
  returned: failure
  type: dict
  contains:
    workload:
      description: The manager workload's kind, image, replica counts and conditions, or null when it does not exist.
      type: dict
    pods:
      description: Each manager pod's name, phase, unmet conditions, containers (state, reason, message) and recent events.
      type: list
      elements: dict
    events:
      description: Recent events of C(traffic-manager*) objects, when no manager pod is left.
      type: list
      elements: dict
    error:
      description: A cluster error met while collecting, or null.
      type: str
"""

from ansible_collections.devloop.telepresence.plugins.module_utils.manager_module import main


if __name__ == "__main__":
    main()
