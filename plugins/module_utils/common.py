# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by every module (documented in doc_fragments/common.py) and their validation."""

from __future__ import annotations

import os
import re

from ansible.module_utils.basic import env_fallback

COMMON_ARGUMENT_SPEC = dict(
    binary_path=dict(type="path"),
    kubeconfig=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_KUBECONFIG", "KUBECONFIG"])),
    context=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_CONTEXT"])),
    manager_namespace=dict(type="str", default="ambassador",
                           fallback=(env_fallback, ["TELEPRESENCE_MANAGER_NAMESPACE"])),
    timeout=dict(type="int", default=60),
)

# Kubeconfig keys whose values are credentials, in YAML (key: value) or JSON ("key": "value") spelling.
KUBECONFIG_SECRET_RE = re.compile(
    r"""["']?(token|password|client-key-data|id-token|refresh-token|access-token|client-secret)["']?\s*:\s*"""
    r"""["']?([^"'\s,}]+)""")

# Matched with fullmatch: "$" also matches before a trailing newline, and "app\n" is no namespace.
DNS1123_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_LABEL_FORM = "a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending alphanumeric"


class TaskError(Exception):
    """A task that cannot be done as asked; the message says why and what to do. Carries no CLI details."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg

    def details(self):
        return {}


def argument_spec(**module_options):
    """The common options merged with a module's own (the module's win on a name clash)."""
    spec = {name: dict(option) for name, option in COMMON_ARGUMENT_SPEC.items()}
    spec.update(module_options)
    return spec


def dns1123_label_problem(value):
    """None when ``value`` is a valid Kubernetes namespace/object label name, else why not."""
    if not isinstance(value, str) or not value:
        return "is empty"
    if len(value) > 63:
        return "is %d characters long" % len(value)
    if not DNS1123_LABEL_RE.fullmatch(value):
        return "has characters outside [a-z0-9-] or does not start and end with one of [a-z0-9]"
    return None


def check_dns1123_labels(module, *names):
    """Fail naming the option when any of ``names`` (option names) holds a value that is not a DNS-1123 label."""
    for name in names:
        value = module.params.get(name)
        if value is None:
            continue
        problem = dns1123_label_problem(value)
        if problem:
            module.fail_json(msg="%s %r %s; it must be %s" % (name, value, problem, DNS1123_LABEL_FORM))


def boolean_problem(name, value, form):
    """A message when ``value`` is a boolean where a number is wanted, else None.

    Ansible's ``type: int`` keeps a YAML boolean (``port: yes``) as True, which Python counts as 1 and formats
    as ``True``: refuse it instead of running ``--port True:8080``.
    """
    if isinstance(value, bool):
        return "%s must be %s, got the boolean %s; give a number" % (name, form, value)
    return None


def integer_form(name):
    """The accepted form of an integer option, for messages."""
    if name == "port" or name.endswith("_port"):
        return "a TCP port between 1 and 65535"
    if name == "timeout" or name.endswith("_timeout"):
        return "a positive number of seconds"
    return "a whole number"


def check_integer_options(module):
    """Fail naming the option when any ``type: int`` option of the module holds a boolean."""
    for name, option in sorted(module.argument_spec.items()):
        if option.get("type") == "int":
            problem = boolean_problem(name, module.params.get(name), integer_form(name))
            if problem:
                module.fail_json(msg=problem)


def check_positive(module, *names):
    """Fail naming the option when a number option is a boolean, zero or negative."""
    for name in names:
        value = module.params.get(name)
        problem = boolean_problem(name, value, "a positive number of seconds")
        if problem:
            module.fail_json(msg=problem)
        if value is not None and value <= 0:
            module.fail_json(msg="%s must be a positive number of seconds, got %s" % (name, value))


def check_non_negative(module, *names):
    """Fail naming the option when a count option is a boolean or negative."""
    for name in names:
        value = module.params.get(name)
        problem = boolean_problem(name, value, "a whole number, 0 or more")
        if problem:
            module.fail_json(msg=problem)
        if value is not None and value < 0:
            module.fail_json(msg="%s must be 0 or more, got %s" % (name, value))


def check_port(module, name, value=None):
    """Fail naming the option when a TCP port is a boolean or outside 1-65535."""
    value = module.params.get(name) if value is None else value
    problem = boolean_problem(name, value, "a TCP port between 1 and 65535")
    if problem:
        module.fail_json(msg=problem)
    if value is not None and not 1 <= int(value) <= 65535:
        module.fail_json(msg="%s must be a TCP port between 1 and 65535, got %s" % (name, value))


def check_common(module):
    """Validate the common options every module has, and refuse booleans in every integer option."""
    check_integer_options(module)
    check_positive(module, "timeout")
    check_dns1123_labels(module, "manager_namespace")


def fail_with(module, error, **result):
    """Report a TelepresenceError or KubeError: its message and its details (argv, rc, output) as data."""
    details = error.details() if hasattr(error, "details") else {}
    details.update(result)
    module.fail_json(msg=str(error), **details)


def strip_v(version):
    """``2.24.0`` from ``v2.24.0``; None and empty strings stay None."""
    if not version:
        return None
    return str(version)[1:] if str(version).startswith("v") else str(version)


def kubeconfig_secrets(kubeconfig=None):
    """Credential values found in the kubeconfig file(s) a task uses, so they can be censored.

    A pattern rather than a YAML parser: the managed host may lack PyYAML, and a missed structure only
    means a value is not censored, never that the task fails.
    """
    paths = (kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)
    found = set()
    for path in paths:
        try:
            with open(os.path.expanduser(path), encoding="utf-8", errors="replace") as handle:
                text = handle.read(1024 * 1024)
        except (OSError, ValueError):
            continue
        found.update(value for _key, value in KUBECONFIG_SECRET_RE.findall(text) if len(value) >= 6)
    return found


def protect_kubeconfig_secrets(module):
    """Add the kubeconfig's credentials to the values Ansible censors in results and logs."""
    for value in kubeconfig_secrets(module.params.get("kubeconfig")):
        module.no_log_values.add(value)
