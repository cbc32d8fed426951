# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by every module (documented in doc_fragments/common.py) and their validation."""

from __future__ import annotations

import json
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
# auth-provider (oidc, gcp, azure) config keys whose values are credentials.
AUTH_PROVIDER_SECRET_KEYS = ("id-token", "refresh-token", "access-token", "client-secret", "apiserver-secret")
# Shorter values are not censored: Ansible would mask every occurrence of them in unrelated text.
MIN_CENSORED_LENGTH = 4

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


def check_dns1123_labels(module, *names, params=None, prefix=""):
    """Fail naming the option when any of ``names`` (option names) holds a value that is not a DNS-1123 label.

    ``params`` and ``prefix`` check the suboptions of a dict option instead (``session.namespace``).
    """
    params = module.params if params is None else params
    for name in names:
        value = params.get(name)
        if value is None:
            continue
        problem = dns1123_label_problem(value)
        if problem:
            module.fail_json(msg="%s%s %r %s; it must be %s" % (prefix, name, value, problem, DNS1123_LABEL_FORM))


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


def kubeconfig_files(kubeconfig=None):
    """The kubeconfig files a task reads, in merge order (the option, else $KUBECONFIG, else ~/.kube/config)."""
    paths = (kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)
    return [os.path.expanduser(path) for path in paths if path]


def _parse_kubeconfig(text):
    """A kubeconfig's mapping; YAML when PyYAML is there (it comes with ``kubernetes``), else JSON, else None."""
    try:
        import yaml  # pylint: disable=import-outside-toplevel
    except ImportError:
        yaml = None
    try:
        loaded = yaml.safe_load(text) if yaml is not None else json.loads(text)
    except Exception:  # pylint: disable=broad-except
        return None
    return loaded if isinstance(loaded, dict) else None


def kubeconfig_user(kubeconfig=None, context=None):
    """The user entry of the context a task uses, merged as kubectl merges files (the first name wins).

    Returns ``{"name", "user", "file", "context", "raw", "users"}``: ``user`` (a mapping) and ``file`` (where it
    is defined) are None when the files, the context or its user cannot be found; ``users`` maps every user name
    to ``(entry, file)``; ``raw`` holds the texts read, for the fallback pattern when nothing could be parsed.
    """
    current, contexts, users, raw = None, {}, {}, []
    for path in kubeconfig_files(kubeconfig):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read(4 * 1024 * 1024)
        except (OSError, ValueError):
            continue
        raw.append(text)
        config = _parse_kubeconfig(text)
        if config is None:
            continue
        current = current or config.get("current-context")
        for key, found in (("contexts", contexts), ("users", users)):
            for item in config.get(key) or []:
                if isinstance(item, dict) and item.get("name") not in found:
                    found[item.get("name")] = (item.get(key[:-1]) or {}, path)
    name = context or current
    chosen = contexts.get(name, ({}, None))[0]
    user_name = chosen.get("user") if isinstance(chosen, dict) else None
    user, path = users.get(user_name, (None, None))
    found = {"name": user_name, "user": user, "file": path, "context": name, "raw": raw, "users": users}
    if not isinstance(user, dict):
        found.update(user=None, file=None)
    return found


def _token_file_text(path, kubeconfig_file):
    if not isinstance(path, str) or not path:
        return None
    if not os.path.isabs(path) and kubeconfig_file:
        path = os.path.join(os.path.dirname(os.path.abspath(kubeconfig_file)), path)
    try:
        with open(os.path.expanduser(path), encoding="utf-8", errors="replace") as handle:
            return handle.read(1024 * 1024)
    except (OSError, ValueError):
        return None


def user_credentials(user, kubeconfig_file=None):
    """Every credential string of one kubeconfig user entry, as written and as kubectl uses it (trimmed)."""
    values = [user.get(key) for key in ("token", "password", "client-key-data", "client-certificate-data")]
    values.append(_token_file_text(user.get("tokenFile"), kubeconfig_file))
    provider = user.get("auth-provider") if isinstance(user.get("auth-provider"), dict) else {}
    provider_config = provider.get("config") if isinstance(provider.get("config"), dict) else {}
    values.extend(provider_config.get(key) for key in AUTH_PROVIDER_SECRET_KEYS)
    plugin = user.get("exec") if isinstance(user.get("exec"), dict) else {}
    values.extend(item.get("value") for item in plugin.get("env") or [] if isinstance(item, dict))
    found = set()
    for value in values:
        if isinstance(value, str):
            found.update(item for item in (value, value.strip()) if len(item.strip()) >= MIN_CENSORED_LENGTH)
    return found


def kubeconfig_secrets(kubeconfig=None, context=None):
    """Credential values of the kubeconfig user that the task's context uses, so they can be censored.

    When the context or its user cannot be found, the credentials of every user in the files.

    Parsed as YAML (JSON when PyYAML is missing); when no file can be parsed at all, a pattern over the text
    catches the usual keys. A missed structure only means a value is not censored, never that the task fails.
    """
    found = kubeconfig_user(kubeconfig, context)
    if found["user"] is not None:
        return user_credentials(found["user"], found["file"])
    if found["users"]:  # the context or its user is not there (the task will fail): censor every user's
        return set().union(*(user_credentials(entry, path) for entry, path in found["users"].values()
                             if isinstance(entry, dict)))
    if any(_parse_kubeconfig(text) is not None for text in found["raw"]):
        return set()
    return set(value for text in found["raw"] for _key, value in KUBECONFIG_SECRET_RE.findall(text)
               if len(value) >= MIN_CENSORED_LENGTH)


def protect_kubeconfig_secrets(module):
    """Add the credentials of the kubeconfig user the task uses to the values Ansible censors in results and logs.

    Call it right after creating the AnsibleModule, before anything can fail. It never fails the task.
    """
    try:
        secrets = kubeconfig_secrets(module.params.get("kubeconfig"), module.params.get("context"))
    except Exception:  # pylint: disable=broad-except
        return
    for value in secrets:
        module.no_log_values.add(value)
