# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CLI runner and the decoding of every output shape in the facts sheet."""

from __future__ import annotations

import json
import os
import stat
import textwrap
import time

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils import cli
from ansible_collections.devloop.telepresence.plugins.module_utils.cli import (
    TelepresenceCli,
    TelepresenceError,
    command_name,
    decode_json_output,
    failure_message,
    parse_client_version,
)


class FakeModule:
    def __init__(self, **params):
        self.params = params
        self.bin_path = None

    def get_bin_path(self, name):
        return self.bin_path

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs["msg"])


def fake_binary(tmp_path, body):
    """An executable Python script standing for telepresence; it records its argv and env in calls.jsonl."""
    path = tmp_path / "telepresence"
    path.write_text("#!/usr/bin/env python3\nimport json, os, sys, time\n"
                    "open(os.path.join(os.path.dirname(__file__), 'calls.jsonl'), 'a').write("
                    "json.dumps({'argv': sys.argv[1:], 'lc_all': os.environ.get('LC_ALL'), "
                    "'kubeconfig': os.environ.get('KUBECONFIG')}) + '\\n')\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def recorded_calls(tmp_path):
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


# --- version text (facts section 1) -------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("OSS Client         : v2.24.0\nRoot Daemon        : not running\nUser Daemon        : not running\n", "2.24.0"),
    ("OSS Client : v2.20.2\nOSS Root Daemon : v2.20.2\n", "2.20.2"),
    ("Client: v2.5.0 (api v3)\n", "2.5.0"),
    ("Client : v2.31.2\n", "2.31.2"),
    ("OSS Client   : v2.25.0-rc.1\n", "2.25.0-rc.1"),
    ('{"cmd":"version","stdout":"OSS Client : v2.24.0\\nRoot Daemon: not running\\nUser Daemon: not running\\n"}', "2.24.0"),
    ('{"client":"v2.29.0","root_daemon":"not running","user_daemon":"not running"}', "2.29.0"),
])
def test_client_version_from_every_format(text, expected):
    assert parse_client_version(text) == expected


@pytest.mark.parametrize("text", ["", "User Daemon: not running\n", "OSS Client : vnext\n", '{"cmd":"version"}'])
def test_client_version_missing_or_garbled_is_an_error(text):
    with pytest.raises(TelepresenceError) as info:
        parse_client_version(text, argv=["tp", "version"])
    assert "version" in info.value.msg
    assert info.value.argv == ["tp", "version"]


# --- JSON shapes (facts sections 2, 3, 5, 11) ---------------------------------------------------

def test_envelope_with_text_stdout():
    out = decode_json_output('{"cmd":"version","stdout":"OSS Client : v2.24.0\\n"}\n')
    assert (out.shape, out.data, out.error) == ("envelope", "OSS Client : v2.24.0\n", None)


def test_envelope_with_json_stdout_list():
    out = decode_json_output('{"cmd":"list","stdout":[{"name":"fresh-app","namespace":"app"}]}')
    assert out.shape == "envelope"
    assert out.data == [{"name": "fresh-app", "namespace": "app"}]


def test_envelope_empty_list():
    out = decode_json_output('{"cmd":"list","stdout":[]}')
    assert (out.shape, out.data) == ("envelope", [])


def test_envelope_error():
    out = decode_json_output('{"cmd":"intercept","stderr":"x","err":"connector.CreateIntercept: Intercept with '
                             'name \\"fresh-app\\" already exists"}')
    assert out.error == 'connector.CreateIntercept: Intercept with name "fresh-app" already exists'
    assert out.stderr == "x"


def test_bare_status_object():
    data = {"user_daemon": {}, "root_daemon": {}, "traffic_manager": {"name": "", "traffic_agent": "", "version": ""}}
    out = decode_json_output(json.dumps(data))
    assert (out.shape, out.data) == ("bare", data)


def test_bare_intercept_detailed_output():
    out = decode_json_output('{"id":"abc:fresh-app","name":"fresh-app","disposition":"ACTIVE"}')
    assert out.shape == "bare" and out.data["disposition"] == "ACTIVE"


def test_format_json_error_object_229():
    out = decode_json_output('{"error":"traffic manager not found"}')
    assert (out.shape, out.error, out.data) == ("format", "traffic manager not found", None)


def test_format_json_bare_array_229():
    out = decode_json_output('[{"name":"fresh-app"}]')  # 2.29+ list --format json, no trailing newline
    assert (out.shape, out.data) == ("bare", [{"name": "fresh-app"}])


def test_empty_output_is_a_shape_not_an_error():
    assert decode_json_output("").shape == "empty"
    assert decode_json_output("  \n").shape == "empty"


def test_malformed_output_names_the_problem():
    with pytest.raises(TelepresenceError) as info:
        decode_json_output('{"cmd":"list","stdout":[{"na', argv=["tp", "list"])
    assert "not JSON" in info.value.msg and info.value.argv == ["tp", "list"]


def test_object_with_cmd_and_other_keys_is_bare():
    out = decode_json_output('{"cmd":"x","name":"y"}')
    assert out.shape == "bare"


# --- failure messages (facts section 11) --------------------------------------------------------

def test_failure_message_prefers_json_err():
    msg = failure_message(["intercept", "x"], '{"cmd":"intercept","err":"workload \\"x.app\\" not found"}', "", 1)
    assert msg == 'telepresence intercept failed: workload "x.app" not found'


def test_failure_message_strips_cobra_prefix_and_warnings():
    stderr = ('Warning: You are executing the "leave" command without a preceding "telepresence connect"...\n'
              'telepresence leave: error: Intercept named "x" not found\n')
    assert failure_message(["leave", "x"], "", stderr, 1) == 'telepresence leave failed: Intercept named "x" not found'


def test_failure_message_format_error():
    assert failure_message(["connect"], '{"error":"boom"}', "", 1) == "telepresence connect failed: boom"


def test_failure_message_quiet_progress_exit_1_without_output():
    assert failure_message(["intercept"], "", "", 1) == "telepresence intercept failed: exit code 1 with no output"


@pytest.mark.parametrize("args, name", [
    (["helm", "install", "--manager-namespace", "x"], "helm install"),
    (["status", "--output", "json"], "status"),
    (["quit", "-s"], "quit"),
    (["intercept", "fresh-app", "--port", "8000:http"], "intercept"),
    ([], "(no command)"),
])
def test_command_name(args, name):
    assert command_name(args) == name


# --- the runner ---------------------------------------------------------------------------------

def test_runner_argv_env_and_commands(tmp_path):
    binary = fake_binary(tmp_path, "print(json.dumps({'cmd': 'list', 'stdout': []}))\n")
    runner = TelepresenceCli(FakeModule(), binary, timeout=10, kubeconfig="/k/config", context="sandbox")
    assert runner.run_json(["list"] + runner.kube_flags()) == []
    expected = [binary, "list", "--kubeconfig", "/k/config", "--context", "sandbox", "--output", "json"]
    assert runner.commands == [expected]
    call = recorded_calls(tmp_path)[0]
    assert call["argv"] == expected[1:] and call["lc_all"] == "C"


def test_kubeconfig_list_goes_through_environment(tmp_path):
    binary = fake_binary(tmp_path, "")
    runner = TelepresenceCli(FakeModule(), binary, kubeconfig="/a/one:/b/two")
    assert runner.kube_flags() == []
    runner.run(["status"])
    assert recorded_calls(tmp_path)[0]["kubeconfig"] == "/a/one:/b/two"


def test_runner_raises_typed_error_with_details(tmp_path):
    binary = fake_binary(tmp_path, "sys.stderr.write('telepresence connect: error: boom\\n'); sys.exit(1)\n")
    runner = TelepresenceCli(FakeModule(), binary)
    with pytest.raises(TelepresenceError) as info:
        runner.run(["connect"])
    error = info.value
    assert error.msg == "telepresence connect failed: boom"
    assert error.details() == {"command": [binary, "connect"], "rc": 1, "stdout": "",
                               "stderr": "telepresence connect: error: boom\n"}


def test_run_json_reports_envelope_err_even_with_rc_0(tmp_path):
    binary = fake_binary(tmp_path, "print(json.dumps({'cmd': 'x', 'err': 'bad thing'}))\n")
    with pytest.raises(TelepresenceError) as info:
        TelepresenceCli(FakeModule(), binary).run_json(["x"])
    assert info.value.msg == "bad thing" and info.value.rc == 0


def test_run_json_plain_text_error_on_flag_parse(tmp_path):
    binary = fake_binary(tmp_path, "sys.stderr.write('telepresence intercept: error: unknown flag: --http-header\\n');"
                                   " sys.exit(1)\n")
    with pytest.raises(TelepresenceError) as info:
        TelepresenceCli(FakeModule(), binary).run_json(["intercept", "x", "--http-header", "a=b"])
    assert info.value.msg == "telepresence intercept failed: unknown flag: --http-header"


def test_run_json_malformed_success_output(tmp_path):
    binary = fake_binary(tmp_path, "print('{\"user_daemon\": {')\n")
    with pytest.raises(TelepresenceError) as info:
        TelepresenceCli(FakeModule(), binary).run_json(["status"])
    assert "not JSON" in info.value.msg and info.value.rc == 0


def test_hanging_command_is_killed_and_reported(tmp_path):
    binary = fake_binary(tmp_path, "import subprocess\nsubprocess.Popen(['sleep', '60'])\ntime.sleep(60)\n")
    runner = TelepresenceCli(FakeModule(), binary, timeout=1)
    started = time.monotonic()
    with pytest.raises(TelepresenceError) as info:
        runner.run(["connect"])
    assert time.monotonic() - started < 5
    assert info.value.timed_out and "did not finish within 1 s" in info.value.msg
    assert info.value.details()["timed_out"] is True


def test_daemon_holding_the_pipes_does_not_block(tmp_path):
    # A launched daemon that inherits stdout must not keep the task waiting once the command returned.
    binary = fake_binary(tmp_path, "import subprocess\nsubprocess.Popen(['sleep', '30'], start_new_session=True)\n"
                                   "print('Connected')\n")
    started = time.monotonic()
    result = TelepresenceCli(FakeModule(), binary, timeout=20).run(["connect"])
    assert result.rc == 0 and "Connected" in result.stdout
    assert time.monotonic() - started < 5


def test_client_version_is_cached(tmp_path):
    binary = fake_binary(tmp_path, "print('OSS Client : v2.25.0')\n")
    runner = TelepresenceCli(FakeModule(), binary)
    assert runner.client_version() == "2.25.0"
    assert runner.capabilities().has("http_filters")
    assert len(recorded_calls(tmp_path)) == 1


def test_missing_binary_is_reported(tmp_path):
    runner = TelepresenceCli(FakeModule(), str(tmp_path / "nope"))
    with pytest.raises(TelepresenceError) as info:
        runner.run(["version"])
    assert "cannot run" in info.value.msg


def test_find_binary_prefers_binary_path_and_checks_it(tmp_path):
    binary = fake_binary(tmp_path, "")
    assert cli.find_binary(FakeModule(), binary) == binary
    with pytest.raises(AssertionError, match="binary_path .* is not an executable"):
        cli.find_binary(FakeModule(), str(tmp_path / "missing"))


def test_find_binary_on_path_or_a_clear_failure(tmp_path):
    module = FakeModule()
    with pytest.raises(AssertionError, match="no telepresence executable found on PATH"):
        cli.find_binary(module)
    module.bin_path = "/usr/local/bin/telepresence"
    assert cli.find_binary(module) == "/usr/local/bin/telepresence"


def test_from_params_uses_common_options(tmp_path):
    binary = fake_binary(tmp_path, "")
    module = FakeModule(binary_path=binary, timeout=7, kubeconfig="~/kc", context="c1")
    runner = TelepresenceCli.from_params(module)
    assert (runner.binary, runner.timeout, runner.context) == (binary, 7, "c1")
    assert runner.kube_flags() == ["--kubeconfig", os.path.expanduser("~/kc"), "--context", "c1"]
