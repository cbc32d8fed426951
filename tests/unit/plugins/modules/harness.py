# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A scripted telepresence process and a module driver, shared by the module unit tests."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils import basic
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.devloop.telepresence.plugins.module_utils import cli


class Exited(Exception):
    def __init__(self, result, module):
        super().__init__(result)
        self.result = result
        self.module = module


class Failed(Exited):
    pass


class Script:
    """Stands for the telepresence process: answers each call in order and checks its argv; records timeouts."""

    def __init__(self, binary, steps):
        self.binary = binary
        self.steps = list(steps)
        self.calls = []
        self.timeouts = []

    def __call__(self, argv, timeout, env=None):
        assert self.steps, "unexpected call %r" % (argv,)
        expected, rc, out, err = self.steps.pop(0)
        assert argv[0] == self.binary
        assert argv[1:] == expected
        self.calls.append(argv[1:])
        self.timeouts.append(timeout)
        return rc, out, err, False


def ok(args, data=None, err=""):
    """A successful call printing ``data``: a string as is, anything else as JSON."""
    out = data if isinstance(data, str) else json.dumps(data) if data is not None else ""
    return (args, 0, out, err)


def fail(args, rc=1, out="", err=""):
    return (args, rc, out, err)


def make_binary(tmp_path):
    path = tmp_path / "telepresence"
    path.write_text("#!/bin/sh\nexit 99\n")  # never runs: run_process is scripted
    path.chmod(0o755)
    return str(path)


def capture_exits(monkeypatch):
    """exit_json/fail_json raise Exited/Failed; the common options' environment fallbacks are cleared."""
    def exit_json(self, **kwargs):
        raise Exited(kwargs, self)

    def fail_json(self, **kwargs):
        raise Failed(kwargs, self)
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    for name in ("K8S_AUTH_KUBECONFIG", "KUBECONFIG", "K8S_AUTH_CONTEXT", "TELEPRESENCE_MANAGER_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


def run_main(monkeypatch, main, binary, args, steps):
    """Run a module's main() with ``args`` against the scripted process; ``(result, module, script)``.

    Raises Failed when the module failed; every scripted step must have been called.
    """
    script = Script(binary, steps)
    monkeypatch.setattr(cli, "run_process", script)
    with patch_module_args(dict({"binary_path": binary}, **args)):
        with pytest.raises(Exited) as info:
            main()
    assert script.steps == [], "expected calls did not happen: %r" % (script.steps,)
    if isinstance(info.value, Failed):
        raise Failed(info.value.result, info.value.module)
    return info.value.result, info.value.module, script
