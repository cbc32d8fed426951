# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and establishing a Telepresence connection, shared by tp_connection, tp_intercept and tp_info.

A connect with flags other than the running session's fails with "Cluster configuration changed"
(facts sheet section 4), so connect is always called with the same explicit flags, in the same order,
and a session with other settings is quit first.
"""

from __future__ import annotations

import ipaddress
import os
import re

from ansible_collections.devloop.telepresence.plugins.module_utils.cli import TelepresenceError, run_process
from ansible_collections.devloop.telepresence.plugins.module_utils.common import DNS1123_LABEL_FORM, dns1123_label_problem
from ansible_collections.devloop.telepresence.plugins.module_utils.status import normalize_status, read_status_json

SUDO_PROMPT_RE = re.compile(r"a password is required|a terminal is required|sudo: .*password", re.IGNORECASE)
VERSION_MISMATCH_RE = re.compile(r"version mismatch", re.IGNORECASE)
# How long the sudo pre-flight may take: it never prompts (-n), so anything longer is a broken sudo.
SUDO_CHECK_SECONDS = 10


class ConnectionSpec:
    """The connection a task wants: the settings that decide whether a session can be reused."""

    def __init__(self, namespace=None, manager_namespace="ambassador", context=None, docker=False,
                 also_proxy=None, never_proxy=None, mapped_namespaces=None):
        self.namespace = namespace
        self.manager_namespace = manager_namespace
        self.context = context
        self.docker = bool(docker)
        self.also_proxy = list(also_proxy or [])
        self.never_proxy = list(never_proxy or [])
        self.mapped_namespaces = list(mapped_namespaces or [])

    @classmethod
    def from_params(cls, params, namespace=None):
        return cls(namespace=namespace if namespace is not None else params.get("namespace"),
                   manager_namespace=params.get("manager_namespace"), context=params.get("context"),
                   docker=params.get("docker"), also_proxy=params.get("also_proxy"),
                   never_proxy=params.get("never_proxy"), mapped_namespaces=params.get("mapped_namespaces"))

    def as_dict(self):
        return {"namespace": self.namespace, "manager_namespace": self.manager_namespace, "context": self.context,
                "docker": self.docker}


def cidr_problem(value):
    """None when Telepresence accepts ``value`` as a subnet, else why not.

    The CLI parses with Go's net.ParseCIDR, which needs the prefix length and accepts host bits, hence
    the explicit '/' check and strict=False.
    """
    if "/" not in value:
        return "the /prefix length is missing"
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        return str(exc)
    return None


def session_settings_problem(settings, prefix=""):
    """Why the proxy or mapped-namespace ``settings`` of a session cannot work, or None.

    ``prefix`` is how the task's user reaches these options (``session.`` for tp_intercept).
    """
    for name in ("also_proxy", "never_proxy"):
        for value in settings[name]:
            problem = cidr_problem(value)
            if problem:
                return "%s%s item %r is not a subnet in CIDR notation (like 10.0.0.0/16): %s" % (
                    prefix, name, value, problem)
    for value in settings["mapped_namespaces"]:
        problem = dns1123_label_problem(value)
        if problem:
            return "%smapped_namespaces item %r %s; each must be %s" % (prefix, value, problem, DNS1123_LABEL_FORM)
    return None


def connect_args(runner, spec):
    """The argv (after the binary) of the connect for ``spec``; always the same flags in the same order."""
    args = ["connect"]
    if spec.namespace:
        args += ["--namespace", spec.namespace]
    args += ["--manager-namespace", spec.manager_namespace]
    args += runner.kube_flags()
    if spec.docker:
        args.append("--docker")
    for flag, values in (("--also-proxy", spec.also_proxy), ("--never-proxy", spec.never_proxy),
                         ("--mapped-namespaces", spec.mapped_namespaces)):
        if values:
            args += [flag, ",".join(values)]
    return args


def read_status(runner, confirming=False):
    """The normalised status; never starts daemons (``status`` only discovers them).

    A failing ``status`` reads as "no usable session" (what 2.21+ may print after ``quit``), except when
    ``confirming`` a connect just made: then its error is the task's failure, naming the ``status`` call.
    """
    return normalize_status(runner.run_json(["status"]) if confirming else read_status_json(runner))


def differences(status, spec):
    """The settings in which a connected session differs from ``spec``, as readable strings.

    Settings the task leaves unset (namespace, context) are not compared: any session satisfies them.
    """
    wanted = [("namespace", spec.namespace), ("manager_namespace", spec.manager_namespace),
              ("context", spec.context)]
    found = ["%s is %s, wanted %s" % (key, status.get(key) or "(unset)", value)
             for key, value in wanted if value and status.get(key) != value]
    if spec.docker != bool(status.get("in_docker")):
        found.append("docker mode is %s, wanted %s" % (bool(status.get("in_docker")), spec.docker))
    return found


def describe(status):
    return "context %s, namespace %s, manager namespace %s" % (
        status.get("context") or "(unknown)", status.get("namespace") or "(unknown)",
        status.get("manager_namespace") or "(unknown)")


def ensure_connected(runner, spec, reconnect=True, check_mode=False, before=None, reconnect_option="reconnect"):
    """Make sure a session with ``spec``'s settings exists.

    ``before`` is the normalised status when the caller has just read it (so it is not read twice);
    ``reconnect_option`` is how the caller's user spells the reconnect option in the message.
    Returns ``{"changed", "action", "before", "status"}`` with action ``none``, ``connected`` or
    ``reconnected``; ``status`` is the state after (in check mode, the state before).
    """
    if before is None:
        before = read_status(runner)
    diff = differences(before, spec) if before["connected"] else []
    if before["connected"] and not diff:
        return {"changed": False, "action": "none", "before": before, "status": before}
    if diff and not reconnect:
        raise TelepresenceError("connected with other settings (%s): %s; set %s: true to quit and connect "
                                "again, or quit the session first" % (describe(before), "; ".join(diff),
                                                                      reconnect_option))
    action = "reconnected" if diff else "connected"
    if check_mode:
        return {"changed": True, "action": action, "before": before, "status": before}
    # Before quit, so a session is never given up for a connect that cannot start its root daemon; and only when
    # connect will have to start one (quit keeps a host root daemon running).
    if needs_root_daemon(before, spec):
        check_sudo(runner)
    if diff:
        runner.run(["quit"])
    try:
        connect(runner, spec)
        after = read_status(runner, confirming=True)
        if not after["connected"]:
            raise TelepresenceError("telepresence connect returned but status says %s%s" % (
                after["state"], ": %s" % after["error"] if after["error"] else ""))
    except TelepresenceError as exc:
        if not daemons_running(before) and not VERSION_MISMATCH_RE.search(" ".join((exc.msg, exc.stdout, exc.stderr))):
            # connect launches the daemons before it can fail (facts sheet section 4, "Launching ... Daemon" comes
            # before "Connected"; whether they stay after a failure is not on the sheet): a failed connect must not
            # leave daemons that nobody asked for, and that the next connect of another version would trip over
            stop_daemons_quietly(runner)
        raise
    return {"changed": True, "action": action, "before": before, "status": after}


SESSION_KEYS = ("connected", "context", "namespace", "manager_namespace")


def session_view(status):
    return {key: status.get(key) for key in SESSION_KEYS}


def predicted_session(before, spec):
    """The session a check-mode connect would leave: unset settings keep what the cluster would pick."""
    return {"connected": True, "context": spec.context or before.get("context"),
            "namespace": spec.namespace or before.get("namespace"), "manager_namespace": spec.manager_namespace}


def last_command(runner, verb):
    """The argv of the last ``verb`` call the runner made, or None."""
    for argv in reversed(runner.commands):
        if len(argv) > 1 and argv[1] == verb:
            return argv
    return None


def connected_result(runner, spec, outcome, check_mode):
    """What tp_connection state=connected returns for ``outcome`` (of :func:`ensure_connected`).

    ``before`` and ``after`` are the diff's halves. Check mode reports what is (``connected``, ``status``) and,
    apart, what would be (``planned``).
    """
    status = outcome["status"]
    acted = outcome["changed"] and not check_mode
    if acted:
        # The CLI refuses to connect to daemons of another version, so after our connect they match the client.
        status = dict(status, client_version=status.get("daemon_version"))
    planned = predicted_session(outcome["before"], spec) if check_mode and outcome["changed"] else None
    return with_plan({
        "changed": outcome["changed"],
        "action": outcome["action"],
        "connected": bool(session_view(status)["connected"]),
        "status": status,
        "command": last_command(runner, "connect") if acted else None,
        "before": session_view(outcome["before"]),
        "after": planned or session_view(status),
    }, planned)


def with_plan(result, planned):
    """Check mode reports what is (``connected``, ``status``) and, apart, what would be (``planned``)."""
    if planned is not None:
        result["planned"] = planned
    return result


def daemons_running(status):
    return bool(status["user_daemon_running"] or status["root_daemon_running"])


def stop_daemons_quietly(runner):
    """``quit -s`` on the way out of a failure: the failure is what the task reports, not this cleanup."""
    try:
        runner.run(["quit", "-s"])
    except TelepresenceError:
        pass


def needs_root_daemon(status, spec):
    """Whether connect for ``spec`` must start a host root daemon (docker mode has none)."""
    return not spec.docker and not (status["root_daemon_running"] and not status["in_docker"])


def connect(runner, spec):
    """Run connect, turning the two classic traps (sudo prompt, stale daemons) into instructions."""
    try:
        runner.run_json(connect_args(runner, spec))
    except TelepresenceError as exc:
        text = "\n".join(filter(None, (exc.msg, exc.stdout, exc.stderr)))
        if SUDO_PROMPT_RE.search(text):
            exc.msg = sudo_message(runner.binary)
        elif VERSION_MISMATCH_RE.search(text):
            exc.msg = ("%s; daemons of another Telepresence version are running: stop them with "
                       "devloop.telepresence.tp_connection state=stopped (telepresence quit -s) and connect again"
                       % exc.msg)
        raise


def sudo_message(binary):
    return ("telepresence connect needs a root daemon, and sudo cannot start it without a password. Allow "
            "passwordless sudo for %s (a NOPASSWD sudoers rule), run the task with become: true, or use docker: true "
            "(docker mode needs no root daemon)" % binary)


def check_sudo(runner):
    """Fail at once, before connect, when the root daemon would need a sudo password."""
    if os.geteuid() == 0:
        return
    argv = ["sudo", "-n", "-l", runner.binary]
    try:
        rc, _out, _err, timed_out = run_process(argv, SUDO_CHECK_SECONDS)
    except OSError:
        rc, timed_out = 1, False
    if timed_out:
        rc = 1
    if rc != 0:
        raise TelepresenceError(sudo_message(runner.binary), argv=argv, rc=rc)


def disconnect(runner, stop_daemons=False, check_mode=False):
    """``quit`` (end the session) or ``quit -s`` (also stop the daemons); changed only when something ran.

    Returns ``{"changed", "before", "status"}``.
    """
    before = read_status(runner)
    running = before["user_daemon_running"] or before["root_daemon_running"]
    needed = running if stop_daemons else before["connected"]
    if not needed:
        return {"changed": False, "before": before, "status": before}
    if check_mode:
        return {"changed": True, "before": before, "status": before}
    quit_result = runner.run(["quit", "-s"] if stop_daemons else ["quit"])
    after = read_status(runner)
    still = (after["user_daemon_running"] or after["root_daemon_running"]) if stop_daemons else after["connected"]
    if still:
        raise TelepresenceError("telepresence %s returned but status still says %s (%s); stop the daemons by hand "
                                "with 'telepresence quit -s' and check the daemon logs"
                                % ("quit -s" if stop_daemons else "quit",
                                   "daemons are running" if stop_daemons else "connected", describe(after)),
                                argv=quit_result.argv, rc=quit_result.rc, stdout=quit_result.stdout,
                                stderr=quit_result.stderr)
    return {"changed": True, "before": before, "status": after}
