# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The code of module tp_manager (plugins/modules/tp_manager.py holds its documentation).

Here, not in the module, so that tp_plan can run it in tp_plan's own process (issue 16).
"""

from __future__ import annotations

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
