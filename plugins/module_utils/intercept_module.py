# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The code of module tp_intercept (plugins/modules/tp_intercept.py holds its documentation).

Here, not in the module, so that tp_plan can run it in tp_plan's own process (issue 16).
"""

from __future__ import annotations

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.devloop.telepresence.plugins.module_utils.capabilities import FEATURES, LEAVE_NOT_FOUND_RE, version_string
from ansible_collections.devloop.telepresence.plugins.module_utils.censor import protect, remember
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import (
    TelepresenceCli,
    TelepresenceError,
    decode_json_output,
    failure_message,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.common import (
    TaskError,
    argument_spec,
    check_common,
    check_dns1123_labels,
    check_port,
    check_positive,
    fail_with,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.connection import (
    ConnectionSpec,
    connected_result,
    differences,
    ensure_connected,
    session_settings_problem,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.files import FileRefused, target_owner, target_problem
from ansible_collections.devloop.telepresence.plugins.module_utils.intercept import (
    FAILED_DISPOSITIONS,
    LIST_FLAGS,
    MODE_FEATURES,
    MODES,
    WITHHELD,
    EnvFiles,
    PreflightError,
    describe_intercept,
    env_file_values,
    env_path_problem,
    environment_values,
    engagement_mode,
    find_ingest,
    find_own,
    header_list,
    local_port_listening,
    mapping,
    mapping_problems,
    not_json_message,
    own_engagements,
    preflight,
    preflight_workload,
    service_port_problem,
)
from ansible_collections.devloop.telepresence.plugins.module_utils.kube import Kube, KubeError
from ansible_collections.devloop.telepresence.plugins.module_utils.status import normalize_status, read_status_json
from ansible_collections.devloop.telepresence.plugins.module_utils.common import protect_kubeconfig_secrets

POLL_SECONDS = 1.0
ALREADY_EXISTS_TEXT = "already exists"


def module_spec():
    return argument_spec(
        name=dict(type="str", required=True),
        workload=dict(type="str"),
        service=dict(type="str"),
        namespace=dict(type="str", default="default"),
        port=dict(type="int"),
        service_port=dict(type="str", default="http"),
        env_file=dict(type="path"),
        env_json=dict(type="path"),
        owner=dict(type="str"),
        mount=dict(type="bool", default=False),
        http_headers=dict(type="raw"),
        preview_url=dict(type="bool", default=False),
        strict=dict(type="bool", default=False),
        verify_local=dict(type="str", default="warn", choices=["warn", "fail", "off"]),
        wait_timeout=dict(type="int", default=30),
        docker=dict(type="bool", default=False),
        preflight_only=dict(type="bool", default=False),
        target=dict(type="dict"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        mode=dict(type="str", default="intercept", choices=list(MODES)),
        session=dict(type="dict", options=dict(
            namespace=dict(type="str"),
            also_proxy=dict(type="list", elements="str", default=[]),
            never_proxy=dict(type="list", elements="str", default=[]),
            mapped_namespaces=dict(type="list", elements="str", default=[]),
            reconnect=dict(type="bool", default=True),
        )),
    )


# ---------------------------------------------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------------------------------------------

def validate(module):
    """Fail naming the option for every input that cannot work; return the normalised header list."""
    params = module.params
    check_common(module)
    check_dns1123_labels(module, "name", "workload", "service", "namespace")
    check_positive(module, "wait_timeout")
    check_port(module, "port")
    check_mode_name(module)
    if params["state"] == "present" and params["port"] is None and params["mode"] != "ingest":
        module.fail_json(msg="port is required with state=present and mode %s: the local port (1-65535) the traffic "
                         "goes to" % params["mode"])
    problem = service_port_problem(params["service_port"])
    if problem:
        module.fail_json(msg="service_port %r %s" % (params["service_port"], problem))
    for option in ("env_file", "env_json"):
        if params[option]:
            problem = env_path_problem(params[option])
            if problem:
                module.fail_json(msg="%s %s" % (option, problem))
    if params["env_file"] and params["env_json"] and params["env_file"] == params["env_json"]:
        module.fail_json(msg="env_file and env_json name the same file %s; give them different paths"
                         % params["env_file"])
    check_env_file_targets(module)
    check_session(module)
    check_target(module)
    try:
        return header_list(params["http_headers"])
    except ValueError as exc:
        module.fail_json(msg="http_headers %s" % exc)


def check_target(module):
    """A given ``target`` has what the mode uses of a pre-flight's result."""
    target = module.params["target"]
    if not target or module.params["preflight_only"]:
        return
    mode = module.params["mode"]
    needed = {"workload_kind": str}
    if mode != "ingest":
        needed["port_number"] = int
    if mode in ("intercept", "wiretap"):
        needed["service"] = str
    wrong = sorted(key for key, kind in needed.items()
                   if not isinstance(target.get(key), kind) or isinstance(target.get(key), bool))
    if wrong:
        module.fail_json(msg="target lacks %s for mode %s: give the target a preflight_only task returned for this "
                         "engagement, or leave target unset so this task runs the pre-flight itself"
                         % (", ".join(wrong), mode))


def check_session(module):
    session = module.params["session"]
    if session is None:
        return
    if module.params["state"] != "present" and not module.params["preflight_only"]:
        module.fail_json(msg="session makes sure of a session before an engagement is made; drop it with "
                             "state=absent (a leave never connects)")
    check_dns1123_labels(module, "namespace", params=session, prefix="session.")
    problem = session_settings_problem(session, prefix="session.")
    if problem:
        module.fail_json(msg=problem)


def check_mode_name(module):
    """replace and ingest take the workload as their argument and name the engagement after it (facts sheet
    section 5: replace has no --workload; leave takes the ingest's workload), so name and workload must agree."""
    params = module.params
    if params["mode"] in ("replace", "ingest") and params["workload"] != params["name"]:
        module.fail_json(msg="mode %s names the engagement after its workload (telepresence %s <workload>), but name "
                         "is %s and workload %s: set name to the workload's name, or leave workload unset"
                         % (params["mode"], params["mode"], params["name"], params["workload"]))
    if params["mode"] != "intercept" and (params["http_headers"] or params["preview_url"]):
        module.fail_json(msg="http_headers and preview_url apply to mode intercept only, not %s: remove them"
                         % params["mode"])


def check_mode_supported(caps, mode):
    """Refuse a mode the client does not have, naming the version that brings it (before any change)."""
    feature = MODE_FEATURES.get(mode)
    if feature and not caps.has(feature):
        raise Refused("mode %s needs a Telepresence client %s or newer (telepresence %s), but the client is %s: "
                      "upgrade the client (tp_binary version) or use mode intercept"
                      % (mode, version_string(FEATURES[feature][0]), mode, caps.version_string))


def check_env_file_targets(module):
    """Pre-flight of the env files: a path another user planted (a file or a link) fails the task before the
    intercept is made, naming the path and its owner. Sets ``env_file_owner`` to the ``(uid, gid)`` they are for."""
    params = module.params
    try:
        params["env_file_owner"] = target_owner(params["owner"])
    except FileRefused as exc:
        module.fail_json(msg=exc.msg)
    for option in ("env_file", "env_json"):
        if params[option]:
            problem = target_problem(params[option], params["env_file_owner"][0])
            if problem:
                module.fail_json(msg="%s %s" % (option, problem))


class Refused(TaskError):
    """The task cannot be done as asked (strict gating, verify_local=fail); nothing was changed."""


class AlreadyExists(TelepresenceError):
    """``intercept`` refused because an intercept with that name exists (see :func:`concurrent_twin`)."""


def unsupported(module, what, why):
    """Ignore an option the client cannot honour with a warning, or fail when strict."""
    if module.params["strict"]:
        raise Refused("%s cannot be honoured: %s; remove it, use a client that supports it, or set "
                      "strict: false to ignore it with a warning" % (what, why))
    module.warn("%s ignored: %s (set strict: true to fail instead)" % (what, why))


# ---------------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------------

def run_listing(module, runner, namespace, flags=("--intercepts",)):
    """``list`` in the intercept's namespace; every environment value in it becomes a no-log value first."""
    args = ["list", "--namespace", namespace] + list(flags)
    try:
        data = runner.run_json(args)
    except TelepresenceError as exc:
        raise scrubbed(module, exc, args)
    remember(module, environment_values(data))
    return data


def scrubbed(module, exc, args):
    """A failure of a command whose output can hold the environment, safe to report.

    Values in output that still decodes become no-log values; output that does not decode is never quoted,
    not even in the message. The raw stdout is withheld in both cases.
    """
    try:
        remember(module, environment_values(decode_json_output(exc.stdout).data))
    except TelepresenceError:
        if not exc.timed_out:  # the timeout message quotes no output and says more than "not JSON"
            exc.msg = not_json_message(args, exc.rc, exc.stderr)
            exc.args = (exc.msg,)
    if exc.stdout:
        exc.stdout = WITHHELD
    return exc


def find_existing(module, runner, params, owners, intercept_id=None, modes=None):
    """This client's engagement named ``name`` as ``(normalised, raw)`` (its ``mode`` set), or ``(None, None)``.

    ``list`` is filtered to the wanted mode (facts sheet section 3). When ``status`` names the engagement in
    another mode (``modes``: name -> mode, see read_own_status), or names it at all while a mode other than
    intercept is wanted, it is looked for under every filter the client has, so a change of mode is seen.
    """
    mode, namespace = params["mode"], params["namespace"]
    if mode == "ingest":
        return find_ingest(run_listing(module, runner, namespace, [LIST_FLAGS["ingest"]]), params["workload"],
                           namespace)
    data = run_listing(module, runner, namespace, [LIST_FLAGS[mode]])
    found, raw = find_own(data, params["name"], owners, intercept_id)
    known = (modes or {}).get(params["name"])
    if found is None and not intercept_id and params["name"] in (owners or {}) and known != mode \
            and (known or mode != "intercept"):
        caps = runner.capabilities()
        flags = [LIST_FLAGS[item] for item in MODES
                 if item != "ingest" and (item not in MODE_FEATURES or caps.has(MODE_FEATURES[item]))]
        data = run_listing(module, runner, namespace, flags)
        found, raw = find_own(data, params["name"], owners)
        if found is not None:
            # not under this mode's filter, so of another mode, even when neither list nor status says which
            found["mode"] = engagement_mode(raw) or known or "unknown"
            return found, raw
    if found is not None:
        # Found under this mode's filter: the mode is that one unless list or status says otherwise.
        found["mode"] = engagement_mode(raw) or known or mode
    return found, raw


def read_own_status(runner):
    """``(normalised status, {name: client} of this client's intercepts)`` from one ``status`` call.

    The status also gets ``modes``: name -> replace/wiretap for engagements ``status`` lists apart, else None.
    """
    raw = read_status_json(runner)
    status = normalize_status(raw)
    engagements = own_engagements(raw)
    status["modes"] = {name: mode for name, (_client, mode) in engagements.items()}
    return status, {name: client for name, (client, _mode) in engagements.items()}


def make_session(module, runner, status):
    """Make sure of O(session) from the ``status`` just read, as tp_connection state=connected would.

    Returns ``(result, status)``: tp_connection's result for it, and the status the engagement starts from. A
    session this step makes (or would make, in check mode) is new: nothing is engaged in it yet.
    """
    settings = module.params["session"]
    spec = ConnectionSpec.from_params(dict(module.params, **settings), namespace=settings["namespace"])
    # the status as tp_connection reports it: without the engagement modes read_own_status adds
    as_read = {key: value for key, value in status.items() if key != "modes"}
    outcome = ensure_connected(runner, spec, reconnect=settings["reconnect"], check_mode=module.check_mode,
                               before=as_read, reconnect_option="session.reconnect")
    result = connected_result(runner, spec, outcome, module.check_mode)
    before, after = result.pop("before"), result.pop("after")
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    result["commands"] = [list(argv) for argv in runner.commands]
    if not outcome["changed"]:
        return result, status
    fresh = dict(status, connected=False) if module.check_mode else dict(outcome["status"])
    fresh.update(intercepts=[], modes={})
    return result, fresh


def plan_connection(runner, status, params):
    """``(action, spec, caps)``: none, connected or reconnected, with the spec to connect with.

    The client version is asked only when the session is connected in another namespace, the one case where
    it decides (intercept --namespace exists from 2.28).
    """
    spec = ConnectionSpec.from_params(params, namespace=params["namespace"])
    if not status["connected"]:
        return "connected", spec, None
    diff = differences(status, spec)
    if not diff:
        return "none", spec, None
    if differences(status, ConnectionSpec.from_params(params, namespace="")):
        return "reconnected", spec, None
    caps = runner.capabilities()
    feature = "ingest_namespace" if params["mode"] == "ingest" else "intercept_namespace"
    return ("none" if caps.has(feature) else "reconnected"), spec, caps


# ---------------------------------------------------------------------------------------------------------------
# acting
# ---------------------------------------------------------------------------------------------------------------

def leave(runner, caps, name, namespace):
    """Leave (detach on 2.30+) the intercept; its CliResult, or None when the CLI says it was not there."""
    args = [caps.leave_command(), name]
    if caps.has("leave_namespace"):
        args += ["--namespace", namespace]
    try:
        return runner.run(args)
    except TelepresenceError as exc:
        if LEAVE_NOT_FOUND_RE.search("\n".join(filter(None, (exc.msg, exc.stdout, exc.stderr)))):
            return None
        raise


def intercept_args(params, caps, target, headers, env_files):
    """The argv of the engaging command, per mode (facts sheet section 5 and its "Sibling commands").

    intercept and wiretap: ``<name> --workload --service --port <local>:<service port>``; replace: ``<workload>
    --port <local>:<container port>`` (no --workload/--service); ingest: ``<workload>`` and no --port or
    --detailed-output, which 2.24's ingest does not have. --namespace: 2.28 for the first three, 2.29 for ingest.
    """
    mode = params["mode"]
    mount = "--mount=%s" % ("true" if params["mount"] else "false")
    port = "%s:%s" % (params["port"], params["service_port"])
    if mode == "ingest":
        args = ["ingest", params["workload"], mount]
    elif mode == "replace":
        args = ["replace", params["workload"], "--port", port, mount]
    else:
        args = [mode, params["name"], "--workload", params["workload"], "--service", target["service"],
                "--port", port, mount]
    if caps.has("ingest_namespace" if mode == "ingest" else "intercept_namespace"):
        args += ["--namespace", params["namespace"]]
    if env_files.temp_path("env_file"):
        args += ["--env-file", env_files.temp_path("env_file")]
    if env_files.temp_path("env_json"):
        args += ["--env-json", env_files.temp_path("env_json")]
    if mode == "ingest":
        return args
    if caps.has("http_filters"):
        for header in headers:
            args += ["--http-header", header]
    return args + ["--detailed-output"]


def create(module, runner, caps, params, target, headers):
    """Run intercept (env files via private temp dirs); return ``(argv, detailed info)``."""
    destinations = {"env_file": params["env_file"], "env_json": params["env_json"]}
    with EnvFiles(destinations) as env_files:
        args = intercept_args(params, caps, target, headers, env_files) + ["--output", "json"]
        result = runner.run(args, check=False)
        detailed = decode_secret_output(module, runner, result, params["name"])
        for path in env_files.written().values():
            remember(module, env_file_values(path))
        try:
            missing = env_files.commit(*params["env_file_owner"])
        except (FileRefused, OSError) as exc:
            raise Refused("intercept %s was created, but its env file could not be written: %s. The intercept was "
                          "left in place; fix the path and run again (the missing file makes the task create the "
                          "intercept again)" % (params["name"], getattr(exc, "msg", None) or exc))
    for option in missing:
        module.warn("telepresence intercept did not write %s (%s)" % (option, params[option]))
    return result.argv, detailed


def decode_secret_output(module, runner, result, name):
    """The intercept's detailed output, its environment values registered before any failure can carry them."""
    try:
        payload = result.json()
    except TelepresenceError:
        payload = None
    data = payload.data if payload is not None else None
    remember(module, environment_values(data))
    if payload is not None and not payload.error and result.rc == 0:
        return data if isinstance(data, dict) else {}
    command = [module.params["mode"]]
    if payload is None:
        message = not_json_message(command, result.rc, result.stderr)
    else:
        message = payload.error or failure_message(command, "", result.stderr, result.rc)
    error = TelepresenceError
    if ALREADY_EXISTS_TEXT in message:
        error = AlreadyExists
        message += ("; an intercept named %s exists that this client does not own or that is outside namespace %s: "
                    "leave it (or choose another name) first" % (name, module.params["namespace"]))
    raise error(message, argv=result.argv, rc=result.rc,
                stdout=WITHHELD if result.stdout.strip() else "", stderr=result.stderr)


def poll_active(module, runner, params, intercept_id):
    """Poll ``list`` until the intercept is ACTIVE, fails, or wait_timeout passes; return ``(found, raw)``."""
    deadline = time.monotonic() + params["wait_timeout"]
    while True:
        found, raw = find_existing(module, runner, params, {params["name"]: None}, intercept_id)
        state = found["disposition"] if found else None
        if state == "ACTIVE" or state in FAILED_DISPOSITIONS or time.monotonic() >= deadline:
            return found, raw
        time.sleep(POLL_SECONDS)


def is_active(found):
    return bool(found) and found["disposition"] == "ACTIVE"


def not_active_reason(found):
    if found:
        return "is %s%s" % (found["disposition"], ": %s" % found["message"] if found.get("message") else "")
    return "does not appear in telepresence list"


def wait_active(module, runner, caps, params, intercept_id):
    """Poll ``list`` until the intercept is ACTIVE; on failure or timeout, remove it again and fail."""
    found, raw = poll_active(module, runner, params, intercept_id)
    if is_active(found):
        return found, raw
    leave(runner, caps, params["name"], params["namespace"])
    raise TelepresenceError("intercept %s did not become ACTIVE within wait_timeout (%s s): it %s. It was removed "
                            "again so no half-made intercept stays; check the workload's traffic-agent (telepresence "
                            "list, the pod's events) and retry, or raise wait_timeout"
                            % (params["name"], params["wait_timeout"], not_active_reason(found)))


def concurrent_twin(module, runner, params, wanted, target):
    """After ``already exists``: ``(twin, unlisted)``. ``twin`` is the intercept another run of this client made
    meanwhile, as wanted, or None; ``unlisted`` is true when ``status`` names the engagement as this client's but
    ``list`` under this mode's filter does not show it (so it may be of another mode, see :func:`other_mode`).

    Two runs that both found no intercept both create it, and the CLI refuses the second. When the one there now
    is this client's, maps the same and has the env files asked for, the task's goal is met: wait until it is
    ACTIVE like the run that made it, and leave removing it to that run if it never gets there.
    """
    _status, owners = read_own_status(runner)
    if params["name"] not in owners:
        return None, False
    found, raw = find_existing(module, runner, params, owners)
    if found is None:
        return None, True
    if not same_client(found, owners[params["name"]]):
        return None, False
    if mapping_problems(found, wanted, target) or missing_env_files(params):
        return None, False
    if not is_active(found):
        found, raw = poll_active(module, runner, params, found["id"])
        if not is_active(found):
            raise TelepresenceError("intercept %s with this mapping was being created by another run of this client "
                                    "at the same time and did not become ACTIVE within wait_timeout (%s s): it %s. "
                                    "It was left to the run that created it; check the workload's traffic-agent "
                                    "(telepresence list, the pod's events) and retry, or raise wait_timeout"
                                    % (params["name"], params["wait_timeout"], not_active_reason(found)))
    return (found, raw), False


def other_mode(module, runner, caps, params):
    """After ``already exists``, when no engagement of this mode has the name: this client's engagement of that name
    in another mode, or None.

    Where ``status`` lists replaces and wiretaps among the intercepts (facts sheet section 2, UNVERIFIED), nothing
    before ``intercept`` showed the name to be a wiretap or replace; ``list`` under every filter does.
    """
    flags = [LIST_FLAGS[item] for item in MODES
             if item != "ingest" and (item not in MODE_FEATURES or caps.has(MODE_FEATURES[item]))]
    data = run_listing(module, runner, params["namespace"], flags)
    found, raw = find_own(data, params["name"], {params["name"]: None})
    if found is None:
        return None
    found["mode"] = engagement_mode(raw) or "unknown"
    return found if found["mode"] != params["mode"] else None


def engage_again(module, runner, caps, params, target, headers, other, result):
    """Leave the engagement of another mode and make this one; the result says why."""
    leave(runner, caps, params["name"], params["namespace"])
    result.update(action="recreated", reasons=["mode %s, wanted %s" % (other["mode"], params["mode"])])
    result["diff"]["before"] = before_mapping(other, True)
    return create(module, runner, caps, params, target, headers)


def same_client(found, client):
    """False only when both ``status`` and ``list`` name the client and the names differ."""
    return not (client and found.get("client")) or found["client"] == client


def missing_env_files(params):
    return ["%s %s does not exist" % (option, params[option]) for option in ("env_file", "env_json")
            if params[option] and not os.path.exists(params[option])]


# ---------------------------------------------------------------------------------------------------------------
# states
# ---------------------------------------------------------------------------------------------------------------

def target_of(params):
    """The pre-flight of the mode: the Service port for intercept and wiretap, the container port for replace.

    An earlier pre-flight's result (option ``target``) is used as it is: reading the same objects again in the same
    run would only repeat the Kubernetes client's import and the API calls (issue 16).
    """
    if params["target"] and not params["preflight_only"]:
        return dict(params["target"])
    kube = Kube.from_params(params)
    if params["mode"] == "replace":
        return preflight_workload(kube, params["namespace"], params["workload"], params["service_port"])
    if params["mode"] == "ingest":
        return preflight_workload(kube, params["namespace"], params["workload"])
    return preflight(kube, params["namespace"], params["workload"], params["service"], params["service_port"])


def present(module, runner, headers, result):
    params = module.params
    if params["preview_url"]:
        unsupported(module, "preview_url", "no open-source Telepresence client has intercept --preview-url")
    caps = None
    if params["mode"] != "intercept":
        # the one version call an intercept does not need: the mode is refused before anything else runs
        caps = runner.capabilities()
        check_mode_supported(caps, params["mode"])
    target = result["target"] = run_preflight(module)
    status, owners = read_own_status(runner)
    session_action = "none"
    if params["session"]:
        result["session"], status = make_session(module, runner, status)
        if result["session"]["changed"]:
            session_action, owners = result["session"]["action"], {}
    connection, spec, planned_caps = plan_connection(runner, status, params)
    caps = caps or planned_caps
    existing = raw = None
    if connection == "none":
        existing, raw = find_existing(module, runner, params, owners, modes=status["modes"])
    wanted = {"workload": params["workload"], "namespace": params["namespace"], "mode": params["mode"],
              "service_port": params["service_port"], "local_port": params["port"]}
    action, reasons = decide_present(params, status, connection, existing, wanted, target)
    if headers:
        caps = caps or runner.capabilities()
        if not caps.has("http_filters"):
            unsupported(module, "http_headers", "client %s has no intercept --http-header (2.25 and newer have it)"
                        % caps.version_string)
    result.update(connection=session_action if session_action != "none" else connection, action=action,
                  intercept=describe_intercept(existing, raw) if existing else None,
                  diff={"before": before_mapping(existing, connection != "none" and params["name"] in status["intercepts"]),
                        "after": wanted_mapping(params)})
    if reasons:
        result["reasons"] = reasons
    if action == "none" or module.check_mode:
        result["changed"] = action != "none" or result["connection"] != "none"
        if action != "none":
            # RV(intercept) is what exists now (in check mode nothing was made): say apart what would be.
            result["planned"] = result["diff"]["after"]
        return
    caps = caps or runner.capabilities()
    if connection != "none":
        result["connection"] = ensure_connected(runner, spec, reconnect=True)["action"]
        lost = [item for item in status["intercepts"] if item != params["name"]] if connection == "reconnected" else []
        if lost:
            module.warn("reconnected in namespace %s, which ended this session's other intercepts: %s"
                        % (params["namespace"], ", ".join(lost)))
    if action == "recreated" and connection == "none":
        leave(runner, caps, params["name"], params["namespace"])
    try:
        argv, detailed = create(module, runner, caps, params, target, headers)
    except AlreadyExists:
        twin, unlisted = concurrent_twin(module, runner, params, wanted, target)
        other = other_mode(module, runner, caps, params) if unlisted else None
        if twin is None and other is None:
            raise
        if other is not None:
            argv, detailed = engage_again(module, runner, caps, params, target, headers, other, result)
            found, raw = wait_active(module, runner, caps, params, (detailed or {}).get("id"))
            result.update(changed=True, command=argv,
                          intercept=describe_intercept(found, raw, detailed, mount_requested=params["mount"]))
            return
        # Made by a concurrent run: this task changed the intercept no more than a re-run would have.
        result.pop("reasons", None)
        result["diff"]["before"] = result["diff"]["after"]
        result.update(changed=result["connection"] != "none", action="none",
                      intercept=describe_intercept(*twin, mount_requested=params["mount"]))
        return
    found, raw = wait_active(module, runner, caps, params, (detailed or {}).get("id"))
    result.update(changed=True, command=argv,
                  intercept=describe_intercept(found, raw, detailed, mount_requested=params["mount"]))


def run_preflight(module):
    """Everything present() checks before it calls the client; raises PreflightError/KubeError/Refused."""
    params = module.params
    target = target_of(params)
    if params["mode"] != "ingest":
        check_local(module)
    return target


def decide_present(params, status, connection, existing, wanted, target):
    """``(action, reasons)``: none, created or recreated, and why."""
    if connection != "none":
        # A new session has no intercepts; quitting the old one ends them (facts sheet section 7).
        if params["name"] in status["intercepts"]:
            return "recreated", ["the session is connected again in namespace %s, which ends its intercepts"
                                 % params["namespace"]]
        return "created", []
    if existing is None:
        return "created", []
    problems = mapping_problems(existing, wanted, target)
    if existing.get("disposition") != "ACTIVE":
        problems.append("disposition %s, wanted ACTIVE" % existing.get("disposition"))
    problems.extend(missing_env_files(params))
    return ("recreated" if problems else "none"), problems


def before_mapping(existing, named_in_status):
    if existing:
        return mapping(True, existing["workload"], existing["service_port"], existing["local_port"],
                       existing.get("mode"))
    return mapping(named_in_status)


def wanted_mapping(params):
    if params["mode"] == "ingest":
        return mapping(True, params["workload"], mode="ingest")
    return mapping(True, params["workload"], params["service_port"], params["port"], params["mode"])


def check_local(module):
    params = module.params
    if params["verify_local"] == "off" or local_port_listening(params["port"]):
        return
    message = ("nothing is listening on 127.0.0.1:%s (verify_local): start the local server, or the intercepted "
               "traffic will fail" % params["port"])
    if params["verify_local"] == "fail":
        raise Refused(message)
    module.warn(message)


def absent(module, runner, result):
    params = module.params
    status, owners = read_own_status(runner)
    result.update(connection="none", action="none", intercept=None,
                  diff={"before": mapping(False), "after": mapping(False)})
    if not status["connected"]:
        return
    existing, raw = find_existing(module, runner, params, owners, modes=status["modes"])
    if existing is None:
        return
    result.update(action="removed", intercept=describe_intercept(existing, raw),
                  diff={"before": before_mapping(existing, True), "after": mapping(False)})
    if module.check_mode:
        result.update(changed=True, planned=mapping(False))
        return
    caps = runner.capabilities()
    left = leave(runner, caps, params["name"], params["namespace"])
    command = runner.commands[-1]
    if left is not None:
        verify_removed(module, runner, params, owners, existing, left)
    result.update(changed=left is not None, action="removed" if left is not None else "none", command=command)
    if left is None:
        result["intercept"] = None


def verify_removed(module, runner, params, owners, existing, left):
    """Fail when ``list`` still shows the intercept the CLI just reported leaving (an exit 0 proves nothing)."""
    still, _raw = find_existing(module, runner, params, owners, existing.get("id"))
    if still is None:
        return
    verb = left.argv[1]
    printed = left.stdout.strip()
    how = " with unexpected output %r" % excerpt(printed) if printed else " without output"
    raise TelepresenceError("telepresence %s exited %s%s, but intercept %s is still there (telepresence list shows it "
                            "%s in namespace %s), so it was not removed; run `telepresence %s %s` by hand and check "
                            "what it says, or the daemon logs (telepresence gather-logs)"
                            % (verb, left.rc, how, params["name"], still.get("disposition"), params["namespace"],
                               verb, params["name"]),
                            argv=left.argv, rc=left.rc, stdout=left.stdout, stderr=left.stderr)


def excerpt(text, limit=200):
    return text if len(text) <= limit else text[:limit] + "..."


def preflight_only(module, result):
    """Exit with the pre-flight's findings (no client needed, none called), or fail with its message."""
    if module.params["state"] != "present":
        module.fail_json(msg="preflight_only checks what state=present needs; drop it with state=absent")
    try:
        result["target"] = run_preflight(module)
    except (KubeError, PreflightError, Refused) as exc:
        protect(module, [], module.params, result)
        fail_with(module, exc, commands=[], action="none", connection="none")
    result.pop("diff", None)
    module.exit_json(commands=[], **result)


def main():
    module = AnsibleModule(argument_spec=module_spec(), supports_check_mode=True)
    protect_kubeconfig_secrets(module)  # before anything can fail and quote them
    params = module.params
    params["workload"] = params["workload"] or params["name"]
    headers = validate(module)
    result = {"changed": False, "action": "none", "intercept": None, "connection": "none", "command": None}
    if params["preflight_only"]:
        preflight_only(module, result)
    runner = TelepresenceCli.from_params(module)
    try:
        if params["state"] == "present":
            present(module, runner, headers, result)
        else:
            absent(module, runner, result)
    except (TelepresenceError, KubeError, PreflightError, Refused) as exc:
        # The argv and parameters are what this module composed; the error's message and output are the CLI's.
        protect(module, runner.commands, params, result)
        session = {"session": result["session"]} if "session" in result else {}
        fail_with(module, exc, commands=runner.commands, action=result["action"], connection=result["connection"],
                  **session)
    diff = result.pop("diff", None)
    if module._diff:
        result["diff"] = diff
    protect(module, runner.commands, params, result)
    module.exit_json(commands=runner.commands, **result)
