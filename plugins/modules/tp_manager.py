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

import contextlib
import copy
import json
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.devloop.telepresence.plugins.module_utils.capabilities import (
    MIN_MANAGER_FOR_CLIENT,
    parse_release_version,
    parse_version,
    version_string,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.censor import hidden_invocation, hide_diff_values
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import TelepresenceCli, TelepresenceError
from ansible_collections.devloop.telepresence.plugins.module_utils.common import (
    argument_spec,
    check_common,
    check_positive,
    fail_with,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.connection import (
    ConnectionSpec,
    describe,
    differences,
    daemons_running,
    ensure_connected,
    read_status,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import Kube, KubeError
from ansible_collections.devloop.telepresence.plugins.module_utils.manager import (
    MANAGER_NAME,
    collect_diagnostics,
    find_agents,
    read_manager_state,
    short_text,
    summarize_diagnostics,
    wait_until_no_agents,
    wait_until_ready,
    wait_until_removed,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.common import protect_kubeconfig_secrets
from ansible_collections.devloop.telepresence.plugins.module_utils.tempfiles import private_dir

# Time a Helm call may take beyond wait_timeout: the CLI's own start-up and its reply once Helm saw the manager ready.
HELM_MARGIN_SECONDS = 10
# Values the CLI merges into what it passes to Helm by itself: image.registry and image.tag always, the others when
# its config.yml sets them (facts sheet section 8, "Values always merged ... The client also injects, from"). The
# release's stored values hold them whether or not the user passed them, so they are never compared.
INJECTED_VALUES = (("image", "registry"), ("image", "tag"), ("agent", "image"), ("grpc", "maxReceiveSize"),
                   ("agentInjector", "appProtocolStrategy"), ("telepresenceAPI", "port"))
RESULT_ACTIONS = {"install": "installed", "upgrade": "upgraded", "downgrade": "downgraded", "uninstall": "uninstalled",
                  "none": "none", "foreign": "none", "refuse_downgrade": "none"}
_MISSING = object()


class ManagerFailure(Exception):
    """A failure that comes with diagnostics (and maybe the CLI error that caused it)."""

    def __init__(self, msg, diagnostics=None, cause=None):
        super().__init__(msg)
        self.msg = msg
        self.diagnostics = diagnostics
        self.cause = cause

    def details(self):
        details = self.cause.details() if hasattr(self.cause, "details") else {}
        if self.diagnostics is not None:
            details["diagnostics"] = self.diagnostics
        return details


def module_argument_spec():
    return argument_spec(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        version=dict(type="str"),
        upgrade=dict(type="bool", default=True),
        allow_downgrade=dict(type="bool", default=False),
        values=dict(type="raw"),
        values_no_log=dict(type="bool", default=True),
        create_namespace=dict(type="bool", default=True),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=120),
        remove_agents=dict(type="bool", default=True),
    )


def validate(module):
    check_common(module)
    check_positive(module, "wait_timeout")
    values = module.params["values"]
    if values is not None:
        if not isinstance(values, dict):
            module.fail_json(msg="values must be a mapping of Helm chart values (for example {agent: {logLevel: debug}}), "
                                 "got a %s: %r" % (type(values).__name__, values))
        try:
            json.dumps(values)
        except (TypeError, ValueError) as exc:
            module.fail_json(msg="values cannot be written as JSON for Helm: %s" % exc)
    version = module.params["version"]
    if version is not None and parse_release_version(version) is None:
        module.fail_json(msg="version %r is not a release version such as 2.24.0 (a leading v is allowed)" % version)


# ---------------------------------------------------------------------------------------------- deciding


def decide(state, before, version, values, upgrade, allow_downgrade=False):
    """The decision table. Returns ``(action, reason, drift)``; action is install, upgrade, downgrade, uninstall,
    none, foreign (a manager workload without a Helm release: installed by something else) or refuse_downgrade (a
    lower version than the installed one is wanted and ``allow_downgrade`` is false: the manager is shared by every
    session of the cluster, so an older client in one shell must not downgrade it for the whole team)."""
    release = before["release"]
    if state == "absent":
        if release is not None:
            return "uninstall", "release %s revision %s (%s) is present" % (
                MANAGER_NAME, release["revision"], release["status"]), []
        if before["installed"]:
            return "foreign", foreign_reason(before), []
        return "none", "the traffic manager is not installed", []
    if release is None:
        if before["installed"]:
            return "foreign", foreign_reason(before), version_drift(before["version"], version)
        return "install", "the traffic manager is not installed", []
    if release["status"] != "deployed":
        return "install", ("release %s revision %s is %s; installing repairs it (the CLI uninstalls a stuck release "
                           "and installs again)" % (MANAGER_NAME, release["revision"], release["status"])), []
    drift = []
    if not before["installed"]:
        drift.append("release %s is deployed but its Deployment/StatefulSet is missing" % MANAGER_NAME)
    drift += version_drift(before["version"] or release.get("app_version"), version)
    drift += values_drift(values, release.get("values"))
    if not drift:
        return "none", "the traffic manager is installed with the wanted version and values", []
    if not upgrade:
        return "none", "upgrade is false, so the drift is left alone", drift
    installed = before["version"] or release.get("app_version")
    if is_lower(version, installed):
        if not allow_downgrade:
            return "refuse_downgrade", downgrade_refusal(installed, version), drift
        return "downgrade", "; ".join(drift), drift
    return "upgrade", "; ".join(drift), drift


def is_lower(wanted, installed):
    wanted_parsed, installed_parsed = parse_version(wanted or ""), parse_version(installed or "")
    return wanted_parsed is not None and installed_parsed is not None and wanted_parsed < installed_parsed


def downgrade_refusal(installed, wanted):
    return ("refusing to downgrade the traffic manager from %s (installed) to %s (wanted): every session of the cluster "
            "uses it. Want %s or later (version; role variable telepresence_manager_version, or a newer client), or "
            "set allow_downgrade: true (role variable telepresence_manager_allow_downgrade: true) to downgrade it"
            % (installed, wanted, installed))


def foreign_reason(before):
    return ("a %s %s exists in namespace %s without a Helm release %s: it was installed by something else (another "
            "tool or release name)" % (before["kind"], MANAGER_NAME, before["namespace"], MANAGER_NAME))


def version_drift(installed, wanted):
    if installed == wanted:
        return []
    return ["version %s is installed, %s is wanted" % (installed or "(unknown)", wanted)]


def values_drift(wanted, release_values):
    """Differences between the wanted values and the release's; none when values are not managed (None)."""
    if wanted is None:
        return []
    if release_values is None:
        return ["the release's values cannot be read (its secret does not decode), so they are set again"]
    keys = differing_keys(comparable_values(wanted), comparable_values(release_values))
    return ["values differ at %s" % ", ".join(keys)] if keys else []


def comparable_values(values):
    """Values without the keys the CLI injects itself (``INJECTED_VALUES``), on either side of a comparison."""
    if values is None:
        return None
    values = copy.deepcopy(values)
    for path in INJECTED_VALUES:
        drop(values, path)
    return values


def injected_keys(values):
    """Dotted keys of ``values`` that the CLI sets itself: passed on, but never a reason to upgrade."""
    return [".".join(path) for path in INJECTED_VALUES if lookup(values or {}, path) is not _MISSING]


def injected_keys_warning(values):
    keys = injected_keys(values)
    if not keys:
        return None
    return ("values sets %s, which the telepresence CLI sets itself on every install and upgrade (image.tag to the "
            "manager version, the others from its config.yml): passed to the CLI as given but not compared, so "
            "they never cause an upgrade; choose the manager version with the version option" % ", ".join(keys))


def lookup(values, path):
    node = values
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def drop(values, path):
    """Remove ``path`` and any mapping it leaves empty."""
    parent = values
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
        if not parent and len(path) > 1:
            drop(values, path[:-1])


def differing_keys(left, right, prefix=""):
    """Dotted keys whose values differ between two nested mappings."""
    keys = []
    for key in sorted(set(left) | set(right), key=str):
        a, b = left.get(key, _MISSING), right.get(key, _MISSING)
        dotted = "%s%s" % (prefix, key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing_keys(a, b, dotted + ".")
        elif a is _MISSING or b is _MISSING or a != b:
            keys.append(dotted)
    return keys


def wanted_version(params, runner):
    """The version to install: the option, else the client's own (one ``telepresence version`` call)."""
    if params["version"]:
        return version_string(parse_release_version(params["version"]))
    return runner.client_version()


def may_be_too_old(version):
    """Whether some client in the capability table refuses a manager of ``version``: only then is the client's own
    version needed (and a ``telepresence version`` call worth making)."""
    parsed = parse_version(version)
    return parsed is not None and any(parsed < minimum for _since, minimum in MIN_MANAGER_FOR_CLIENT)


def check_compatible(runner, manager_version, acting):
    if not may_be_too_old(manager_version):
        return
    problem = runner.capabilities().manager_compatible(manager_version)
    if problem:
        raise TelepresenceError("refusing to %s traffic manager %s: %s" % (
            "install" if acting else "keep", manager_version, problem))


def version_flags(version, caps):
    """``--version`` when the wanted version is not the client's own; refused by clients without the flag."""
    if version == caps.version_string:
        return []
    if not caps.has("helm_version_flag"):
        raise TelepresenceError(
            "client %s installs only its own traffic manager version (helm --version needs a 2.21+ client), but "
            "version %s is wanted; use a %s client (devloop.telepresence.tp_binary) or leave version unset"
            % (caps.version_string, version, version))
    return ["--version", version]


def helm_args(action, namespace, version, caps, create_namespace, kube_flags, values_path=None):
    """``helm install|upgrade`` argv (after the binary) for this client version (facts sheet section 8)."""
    args = ["helm", action, "--manager-namespace", namespace]
    if action == "install" and not create_namespace and caps.has("helm_create_namespace"):
        args.append("--create-namespace=false")
    args += version_flags(version, caps)
    if values_path and action == "upgrade":
        # The CLI reuses the release's values when -f and --set* add up to an empty map (facts sheet section 8,
        # "No values given includes an empty values file"): only --reset-values makes the file the whole values.
        args.append("--reset-values")
    if values_path:
        args += ["-f", values_path]
    return args + list(kube_flags)


def uninstall_args(namespace, kube_flags):
    return ["helm", "uninstall", "--manager-namespace", namespace] + list(kube_flags)


def check_namespace(kube, namespace, create_namespace):
    if create_namespace or kube.get("core", "namespace", namespace) is not None:
        return
    raise KubeError("namespace %s does not exist and create_namespace is false; create the namespace first or set "
                    "create_namespace: true" % namespace)


@contextlib.contextmanager
def values_file(values):
    """A private JSON values file (JSON is YAML) for ``-f``, removed on the way out whatever happened."""
    if values is None:
        yield None
        return
    directory = private_dir("tp_manager_")
    try:
        path = os.path.join(directory, "values.json")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(values, handle)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- acting


def install_or_upgrade(module, runner, kube, action, version, before):
    params = module.params
    namespace = params["manager_namespace"]
    limit = params["wait_timeout"] + HELM_MARGIN_SECONDS if params["wait"] else None
    started = time.monotonic()
    try:
        with values_file(params["values"]) as path:
            acted = runner.run(helm_args(action, namespace, version, runner.capabilities(), params["create_namespace"],
                                         runner.kube_flags(), path), timeout=limit)
    except TelepresenceError as exc:
        raise not_ready(kube, namespace, helm_failure_text(exc, action, limit, params["wait_timeout"]), exc)
    after = read_manager_state(kube, namespace)
    confirm_present(params, action, version, after, acted)
    if not params["wait"]:
        return after
    remaining = max(1.0, params["wait_timeout"] - (time.monotonic() - started))
    after = wait_until_ready(kube, namespace, remaining, before["kind"])
    if not after["ready"]:
        raise not_ready(kube, namespace, "%s in namespace %s is not ready after %s s (wait_timeout)" % (
            MANAGER_NAME, namespace, params["wait_timeout"]))
    return after


def confirm_present(params, action, version, after, acted):
    """Decide again on the state read after the Helm call: its exit code 0 is no proof that the release changed.

    Checked before the readiness wait: when the call returned, Helm had written the release and the workload spec,
    so waiting cannot make a release that was not changed right.
    """
    again, reason, drift = decide("present", after, version, params["values"], True)
    if again != "none":
        raise unconfirmed(acted, "telepresence helm %s reported success but the release still differs: %s"
                          % (action, "; ".join(drift) or reason),
                          "run the task again; if it persists, look at the release with helm history %s -n %s"
                          % (MANAGER_NAME, params["manager_namespace"]))


def unconfirmed(acted, headline, advice):
    """A CLI call that exited 0 without the change it reports: a failure that shows the call and its output."""
    text = " ".join(part.strip() for part in (acted.stdout, acted.stderr) if part and part.strip())
    msg = "%s (%s); %s" % (headline, "unexpected output: %s" % short_text(text) if text else "no output", advice)
    return ManagerFailure(msg, cause=TelepresenceError(msg, argv=acted.argv, rc=acted.rc, stdout=acted.stdout,
                                                       stderr=acted.stderr))


def helm_failure_text(exc, action, limit, wait_timeout):
    if exc.timed_out and limit:
        return ("telepresence helm %s did not finish within %s s (wait_timeout %s s + %s s) and was stopped; the "
                "release may be left pending: running the task again repairs it, state=absent removes it"
                % (action, limit, wait_timeout, HELM_MARGIN_SECONDS))
    text = exc.msg
    if "timed out" in "%s %s %s" % (exc.msg, exc.stdout, exc.stderr):
        text += (" (the CLI's own Helm wait is timeouts.helm in its config.yml, 30 s by default; raise it for slow "
                 "clusters)")
    return text


def not_ready(kube, namespace, headline, cause=None):
    diagnostics = collect_diagnostics(kube, namespace)
    summary = summarize_diagnostics(diagnostics)
    return ManagerFailure("%s. %s" % (headline, summary) if summary else headline, diagnostics, cause)


def wait_when_present(module, kube, before):
    """Nothing to change: still make sure a present manager is ready when asked to wait."""
    params = module.params
    if not (params["wait"] and before["installed"]) or before["ready"]:
        return before
    after = wait_until_ready(kube, params["manager_namespace"], params["wait_timeout"], before["kind"])
    if not after["ready"]:
        raise not_ready(kube, params["manager_namespace"], "%s in namespace %s is installed but not ready after %s s "
                        "(wait_timeout)" % (MANAGER_NAME, params["manager_namespace"], params["wait_timeout"]))
    return after


def uninstall(module, runner, kube, before):
    params = module.params
    namespace = params["manager_namespace"]
    agents = remove_agents(module, runner, kube) if params["remove_agents"] else {"path": "skipped", "found": []}
    acted = runner.run(uninstall_args(namespace, runner.kube_flags()))
    # Helm deletes the release record before it returns; only the workload's deletion may take a while.
    left = read_manager_state(kube, namespace)
    if left["release"] is not None:
        raise unconfirmed(acted, "telepresence helm uninstall reported success but the traffic manager is still "
                          "installed: %s" % decide("absent", left, None, None, True)[1],
                          "run the task again; if it persists, look at the release with helm history %s -n %s"
                          % (MANAGER_NAME, namespace))
    if params["wait"] and not wait_until_removed(kube, namespace, before["kind"], params["wait_timeout"]):
        raise not_ready(kube, namespace, "%s in namespace %s is still present %s s after helm uninstall "
                        "(wait_timeout)" % (MANAGER_NAME, namespace, params["wait_timeout"]))
    return agents


def remove_agents(module, runner, kube, check_mode=False):
    """``uninstall --all-agents`` needs a session (it would connect implicitly), so it runs only where agents exist:
    in the connected session when it belongs to this manager, else in a temporary session that is quit afterwards.

    The cluster is searched first, so nothing runs at all when there is no agent. When that search is not allowed
    (RBAC), a session of this manager is still used; without one, agents are left and a warning says so.
    """
    params = module.params
    namespace = params["manager_namespace"]
    try:
        found = find_agents(kube)
    except KubeError as exc:
        found = None
        module.warn("cannot look for traffic agents in the cluster (%s); only a connected session can remove them" % exc)
    if found == []:
        return {"path": "no agents", "found": []}
    status = read_status(runner)
    ours = ConnectionSpec(manager_namespace=namespace, context=params["context"], docker=status["in_docker"])
    if status["connected"] and not differences(status, ours):
        if not check_mode:
            acted = runner.run(["uninstall", "--all-agents"])
            confirm_agents_removed(module, kube, acted, found)
        return {"path": "existing session", "found": found or []}
    if found is None:
        module.warn("traffic agents were not removed: no session with manager namespace %s is connected and the "
                    "cluster cannot be searched for agents" % namespace)
        return {"path": "not checked", "found": []}
    if status["connected"]:
        raise TelepresenceError(
            "traffic agents remain in %s; removing them needs a session with manager namespace %s, but the session "
            "is connected with %s: quit it first (devloop.telepresence.tp_connection), or set remove_agents: false"
            % (", ".join(found), namespace, describe(status)))
    if check_mode:
        return {"path": "temporary session", "found": found}
    spec = ConnectionSpec(namespace=found[0].split("/", 1)[0], manager_namespace=namespace, context=params["context"])
    # The session is this task's own; the daemons too when none ran before: quit -s stops those again.
    leave = ["quit"] if daemons_running(status) else ["quit", "-s"]
    ensure_connected(runner, spec)
    try:
        acted = runner.run(["uninstall", "--all-agents"])
    except TelepresenceError:
        with contextlib.suppress(TelepresenceError):
            runner.run(leave)
        raise
    runner.run(leave)
    confirm_agents_removed(module, kube, acted, found)
    return {"path": "temporary session", "found": found}


def confirm_agents_removed(module, kube, acted, found):
    """Search the cluster again after ``uninstall --all-agents``: its exit code 0 is no proof, and uninstalling the
    manager under an agent that is still there leaves that workload's traffic going to an agent without a manager.
    Not possible when the cluster could not be searched before (``found`` is None; a warning said so)."""
    if found is None:
        return
    params = module.params
    left = wait_until_no_agents(kube, params["wait_timeout"])
    if left:
        raise unconfirmed(acted, "telepresence uninstall --all-agents reported success but traffic agents remain in %s "
                          "after %s s (wait_timeout)" % (", ".join(left), params["wait_timeout"]),
                          "the traffic manager was left installed so that they keep working: remove them with "
                          "telepresence uninstall <workload> in a session with manager namespace %s and run the task "
                          "again, or set remove_agents: false to uninstall the manager anyway"
                          % params["manager_namespace"])


# ---------------------------------------------------------------------------------------------- results


def state_result(state):
    release = state["release"]
    return {
        "installed": state["installed"], "kind": state["kind"], "version": state["version"],
        "namespace": state["namespace"], "ready": state["ready"], "replicas": state["replicas"],
        "ready_replicas": state["ready_replicas"],
        "release": None if release is None else {key: release[key] for key in ("revision", "status", "chart_version")},
    }


def diff_view(state):
    release = state["release"]
    values = comparable_values(release.get("values")) if release else None
    return {"installed": state["installed"], "version": state["version"], "values": values}


def predicted_view(action, before, version, wanted_values):
    """What the diff's ``after`` would be, for check mode."""
    if action == "uninstall":
        return {"installed": False, "version": None, "values": None}
    if action in ("install", "upgrade", "downgrade"):
        current = diff_view(before)["values"] if action != "install" else {}
        return {"installed": True, "version": version,
                "values": comparable_values(wanted_values) if wanted_values is not None else current}
    return diff_view(before)


def run_module(module, runner, kube, result):
    params = module.params
    namespace = params["manager_namespace"]
    before = read_manager_state(kube, namespace)
    version = wanted_version(params, runner) if params["state"] == "present" else None
    action, reason, drift = decide(params["state"], before, version, params["values"], params["upgrade"],
                                   params["allow_downgrade"])
    result.update(action=RESULT_ACTIONS[action], reason=reason, drift=drift, **state_result(before))
    if action == "refuse_downgrade":
        module.fail_json(msg=reason, **result)
    preflight(module, runner, kube, action, reason, drift, before, version)
    if module._diff:
        result["diff"] = {"before": diff_view(before),
                          "after": predicted_view(action, before, version, params["values"])}
    if action in ("none", "foreign"):
        if not module.check_mode and params["state"] == "present":
            result.update(state_result(wait_when_present(module, kube, before)))
        return
    result["changed"] = True
    if module.check_mode:
        if action == "uninstall" and params["remove_agents"]:
            result["agents"] = remove_agents(module, runner, kube, check_mode=True)
        return
    if action == "uninstall":
        result["agents"] = uninstall(module, runner, kube, before)
        after = read_manager_state(kube, namespace)
    else:
        # A downgrade is a helm upgrade to a lower version.
        after = install_or_upgrade(module, runner, kube, "upgrade" if action == "downgrade" else action, version,
                                   before)
    result["command"] = last_helm_command(runner)
    result.update(state_result(after))
    if module._diff:
        result["diff"]["after"] = diff_view(after)


def preflight(module, runner, kube, action, reason, drift, before, version):
    """Everything that can refuse the task, checked before anything changes (and in check mode)."""
    params = module.params
    if action == "foreign" and params["state"] == "absent":
        raise TelepresenceError("%s; tp_manager removes only what telepresence helm installed: remove it with the "
                                "tool that installed it" % reason)
    if action == "foreign" or (drift and action == "none"):
        module.warn("%s%s" % (reason, ": " + "; ".join(drift) if drift else ""))
    if params["state"] == "present" and injected_keys_warning(params["values"]):
        module.warn(injected_keys_warning(params["values"]))
    acting = action in ("install", "upgrade", "downgrade")
    if params["state"] == "present":
        check_compatible(runner, version if acting else before["version"], acting)
    if action == "install":
        check_namespace(kube, params["manager_namespace"], params["create_namespace"])
    if acting:
        version_flags(version, runner.capabilities())


def last_helm_command(runner):
    """The acting call: the last ``helm`` argv the runner ran, or None."""
    return next((argv for argv in reversed(runner.commands) if argv[1:2] == ["helm"]), None)


def current_state(kube, namespace):
    """The state after a failed change, so the failure reports what is there now (nothing when unreadable)."""
    try:
        return state_result(read_manager_state(kube, namespace))
    except KubeError:
        return {}


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(), supports_check_mode=True)
    protect_kubeconfig_secrets(module)  # before anything can fail and quote them
    validate(module)
    runner = TelepresenceCli.from_params(module)
    kube = Kube.from_params(module.params)
    result = {"changed": False, "command": None, "commands": runner.commands, "action": "none",
              "namespace": module.params["manager_namespace"], "agents": {"path": "skipped", "found": []}}
    try:
        run_module(module, runner, kube, result)
    except (TelepresenceError, KubeError, ManagerFailure) as exc:
        acting = last_helm_command(runner)
        result.update(changed=acting is not None, command=acting)
        result.pop("diff", None)
        if isinstance(exc, ManagerFailure):
            result.update(current_state(kube, module.params["manager_namespace"]))
        details = exc.details()
        fail_with(module, exc, **dict(hidden_values_view(module, {key: value for key, value in result.items()
                                                                  if key not in details})))
    module.exit_json(**hidden_values_view(module, result))


def hidden_values_view(module, result):
    """The result with chart values masked when values_no_log (censor.hide_diff_values)."""
    if not module.params["values_no_log"]:
        return result
    result = dict(result, invocation=hidden_invocation(module.params, "values"))
    if "diff" in result:
        result["diff"] = hide_diff_values(result["diff"])
    return result


if __name__ == "__main__":
    main()
