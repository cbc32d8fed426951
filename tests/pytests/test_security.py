# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Security defaults (issue 8, Security; docs/SECURITY.md).

Downloads are verified (checksum > checksum_url > the built-in table of published digests; a known digest is always
enforced); plain http is refused unless allowed; env files are 0600; no secret value (the sandbox's
``TP_SANDBOX_SECRET`` in secret-app's pod environment, the kubeconfig's token) appears in any result, log or ``-vvv``
output; nothing in plugins/, roles/ or playbooks/ runs a shell.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import pwd
import re
import stat

import pytest

from tp_harness import ROOT, collections_path, runner, sandbox  # noqa: F401  pylint: disable=unused-import

SHELL_PATTERNS = [r"shell\s*=\s*True", r"use_unsafe_shell", r"/bin/(ba)?sh\b", r"\bos\.system\(", r"\bos\.popen\(",
                  r"\bgetstatusoutput\(", r"\bgetoutput\("]
SHELL_MODULES = re.compile(r"^\s*-?\s*(ansible\.builtin\.)?(shell|raw|script)\s*:", re.MULTILINE)


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def linux_amd64():
    return platform.system() == "Linux" and platform.machine().lower() in ("x86_64", "amd64")


# ---------------------------------------------------------------------------------------------------------------
# no shell anywhere (static)
# ---------------------------------------------------------------------------------------------------------------

def test_no_shell_in_plugins():
    sources = sorted((ROOT / "plugins").rglob("*.py"))
    assert len(sources) >= 10
    found = []
    for path in sources:
        text = path.read_text()
        for pattern in SHELL_PATTERNS:
            for match in re.finditer(pattern, text):
                line = text[:match.start()].count("\n") + 1
                found.append("%s:%d: %s" % (path.relative_to(ROOT), line, match.group(0)))
    assert found == []


def test_no_shell_module_in_roles_and_playbooks():
    files = sorted(list((ROOT / "roles").rglob("*.yml")) + list((ROOT / "playbooks").rglob("*.yml")))
    assert files
    found = ["%s: %s" % (path.relative_to(ROOT), match.group(0).strip())
             for path in files for match in SHELL_MODULES.finditer(path.read_text())]
    assert found == []


def test_no_sandbox_switch_in_plugins_or_roles():
    """docs/SECURITY.md: modules and roles never know they run against the sandbox (no TP_SANDBOX_* reads)."""
    files = sorted(list((ROOT / "plugins").rglob("*.py")) + list((ROOT / "roles").rglob("*.yml")))
    assert len(files) >= 10
    assert [str(path.relative_to(ROOT)) for path in files if "TP_SANDBOX" in path.read_text()] == []


def test_roles_do_not_become():
    """docs/SECURITY.md, Privileges: whether to use become is the user's choice, never a role's."""
    files = sorted((ROOT / "roles").rglob("*.yml"))
    assert files
    become = re.compile(r"^\s*-?\s*become(_user|_method)?\s*:", re.MULTILINE)
    assert [str(path.relative_to(ROOT)) for path in files if become.search(path.read_text())] == []


def test_every_cli_call_is_an_argv_list():
    """The one process runner passes a list and no shell; nothing else in plugins/ starts processes but sudo -n."""
    cli = (ROOT / "plugins" / "module_utils" / "cli.py").read_text()
    assert "subprocess.Popen(argv, stdin=subprocess.DEVNULL" in cli
    starters = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for match in re.finditer(r"subprocess\.(Popen|run|call|check_call|check_output)\(([^,)]*)", path.read_text()):
            starters.append((path.name, match.group(2).strip()))
    assert all(arg in ("argv",) for _name, arg in starters), starters


# ---------------------------------------------------------------------------------------------------------------
# downloads
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def download_run(sandbox, runner, tmp_path_factory):
    """Every download case in one playbook, each into its own folder."""
    base = tmp_path_factory.mktemp("security-downloads")
    mirror = sandbox.env["TP_SANDBOX_MIRROR"]
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    artifact = "telepresence-%s-%s" % (platform.system().lower(), arch)
    mirror_digest = {version: sha256(sandbox.dir / "mirror" / ("v%s" % version) / artifact)
                     for version in ("2.24.0", "2.25.0")}
    other = hashlib.sha256(b"not the artifact").hexdigest()
    cases = {
        "wrong explicit digest": dict(version="2.25.0", checksum="sha256:%s" % other),
        "built-in digest enforced": dict(version="2.24.0"),
        "explicit checksum wins over the table": dict(version="2.24.0", checksum=mirror_digest["2.24.0"]),
        "checksum_url wins over the table": dict(version="2.24.0", checksum_url="%s/v2.24.0/sha256sums.txt" % mirror),
        "explicit checksum wins over checksum_url": dict(version="2.25.0", checksum="sha256:%s" % other,
                                                         checksum_url="%s/v2.25.0/sha256sums.txt" % mirror),
        "require policy without a digest": dict(version="2.25.0", checksum_policy="require"),
        "verified by checksum_url": dict(version="2.25.0", checksum_url="%s/v2.25.0/sha256sums.txt" % mirror),
        # a version no other case fetches, so the mirror's log shows whether the refused case made a request
        "plain http refused": dict(version="2.29.0", allow_insecure_http=False),
    }
    tasks, folders = [], {}
    for name, options in cases.items():
        folder = base / name.replace(" ", "-")
        folder.mkdir()
        folders[name] = folder
        args = dict(dest=str(folder / "telepresence"), base_url=mirror, allow_insecure_http=True, prefer_system=False,
                    retries=0)
        args.update(options)
        tasks.append({"name": name, "devloop.telepresence.tp_binary": args, "ignore_errors": True})
    sandbox.clear_faults()
    mirror_log = sandbox.dir / "logs" / "mirror.log"
    log_before = mirror_log.read_text() if mirror_log.exists() else ""
    play = runner.play(tasks)
    log_after = mirror_log.read_text() if mirror_log.exists() else ""
    return {"play": play, "folders": folders, "digest": mirror_digest, "artifact": artifact,
            "mirror_requests": log_after[len(log_before):]}


def installed(run, name):
    return sorted(os.listdir(run["folders"][name]))


def test_wrong_digest_refused(download_run):
    task = download_run["play"].task("wrong explicit digest")
    assert task["status"] == "failed"
    assert re.search(r"checksum mismatch .* the checksum option says [0-9a-f]{64}; nothing was installed",
                     task["result"]["msg"])
    assert installed(download_run, "wrong explicit digest") == []


@pytest.mark.skipif(not linux_amd64(), reason="the built-in table has linux-amd64 digests; this host is another")
def test_builtin_digest_enforced_for_a_mirror_whose_artifact_differs(download_run):
    """The sandbox's v2.24.0 artifact is not the published binary: the table's digest must refuse it."""
    assert download_run["digest"]["2.24.0"] != "356f075ee670af4b5a85fc58f548809b6fc683062cf798efc01fcf67b8df2eeb"
    task = download_run["play"].task("built-in digest enforced")
    assert task["status"] == "failed"
    assert "the published digest (built-in table) says 356f075ee670af4b5a85fc58f548809b6fc683062cf798efc01fcf67b8df2eeb" \
        in task["result"]["msg"]
    assert installed(download_run, "built-in digest enforced") == []


@pytest.mark.parametrize("name,origin", [("explicit checksum wins over the table", "the checksum option"),
                                         ("checksum_url wins over the table", "checksum_url")])
def test_precedence_over_the_builtin_table(download_run, name, origin):
    """An explicit digest (checksum, then checksum_url) is what is enforced, with a warning that it differs."""
    task = download_run["play"].task(name)
    result = task["result"]
    assert task["status"] == "changed", result
    assert result["checksum_verified"] is True and result["sha256"] == download_run["digest"]["2.24.0"]
    assert any("differs from the published digest" in warning and origin in warning
               for warning in result.get("warnings", [])), result.get("warnings")


def test_explicit_checksum_wins_over_checksum_url(download_run):
    task = download_run["play"].task("explicit checksum wins over checksum_url")
    assert task["status"] == "failed"
    assert "the checksum option says" in task["result"]["msg"]
    assert installed(download_run, "explicit checksum wins over checksum_url") == []


def test_require_policy_refuses_an_unknown_digest(download_run):
    task = download_run["play"].task("require policy without a digest")
    assert task["status"] == "failed"
    assert "checksum_policy is require" in task["result"]["msg"]
    assert installed(download_run, "require policy without a digest") == []


def test_verified_install_is_0755_and_reports_its_digest(download_run):
    task = download_run["play"].task("verified by checksum_url")
    result = task["result"]
    assert task["status"] == "changed", result
    assert result["checksum_verified"] is True and result["sha256"] == download_run["digest"]["2.25.0"]
    dest = download_run["folders"]["verified by checksum_url"] / "telepresence"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert installed(download_run, "verified by checksum_url") == ["telepresence"]


def test_plain_http_refused_unless_allowed(download_run):
    task = download_run["play"].task("plain http refused")
    assert task["status"] == "failed"
    assert re.search(r"base_url 'http://127\.0\.0\.1:\d+' uses plain http://.*allow_insecure_http: true",
                     task["result"]["msg"])
    assert installed(download_run, "plain http refused") == []


def test_refused_http_made_no_request(download_run):
    """The refusal happens before any network access: the mirror saw requests for the other cases only."""
    requests = download_run["mirror_requests"]
    assert "GET /v2.25.0/" in requests and "GET /v2.24.0/" in requests
    assert "/v2.29.0/" not in requests


# ---------------------------------------------------------------------------------------------------------------
# secrets: env files 0600, nothing in results, logs or -vvv output
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secret_workflow(sandbox, runner, tmp_path_factory):
    """The intercept workflow on secret-app with env_file/env_json, run with -vvv --diff and a log file.

    secret-app's pod holds the sandbox secret and, beside it, values that are common words and paths (`false`, `root`,
    `ACTIVE`, `/root`; tests/sandbox/CONTRACT.md, "Seeded cluster"), which the modules' own fields also contain.
    """
    folder = tmp_path_factory.mktemp("secret-env")
    log = folder / "ansible.log"
    binary = sandbox.binary("2.24.0")
    env_file, env_json = folder / "secret-app.env", folder / "secret-app.json"
    common = dict(binary_path=binary)
    tasks = [
        {"name": "manager", "devloop.telepresence.tp_manager": dict(common, wait_timeout=30)},
        {"name": "connect", "devloop.telepresence.tp_connection": dict(common, namespace="app")},
        {"name": "intercept", "devloop.telepresence.tp_intercept": dict(
            common, name="secret-app", namespace="app", port=18001, verify_local="off", env_file=str(env_file),
            env_json=str(env_json)), "register": "intercept"},
        {"name": "intercept again", "devloop.telepresence.tp_intercept": dict(
            common, name="secret-app", namespace="app", port=18001, verify_local="off", env_file=str(env_file),
            env_json=str(env_json))},
        {"name": "info", "devloop.telepresence.tp_info": dict(
            common, gather=["client", "status", "intercepts", "workloads", "manager"])},
        {"name": "show the registered result", "ansible.builtin.debug": {"var": "intercept"}},
        {"name": "leave", "devloop.telepresence.tp_intercept": dict(
            common, name="secret-app", namespace="app", state="absent")},
        {"name": "quit", "devloop.telepresence.tp_connection": dict(common, state="stopped")},
    ]
    sandbox.clear_faults()
    sandbox.reset_session()
    verbose = runner.play(tasks, args=["-vvv", "--diff"], callback="default", env={"ANSIBLE_LOG_PATH": str(log)})
    results = runner.play(tasks)
    return {"verbose": verbose, "results": results, "log": log, "env_file": env_file, "env_json": env_json}


def test_workflow_ran(secret_workflow):
    verbose, results = secret_workflow["verbose"], secret_workflow["results"]
    assert verbose.rc == 0, verbose.output[-3000:]
    assert results.rc == 0, results.output[-3000:]
    intercept = results.result("intercept")
    assert intercept["intercept"]["name"] == "secret-app"
    assert "API_TOKEN" in json.dumps(intercept["intercept"])  # names are returned...


def test_env_files_are_0600_and_hold_the_secret(secret_workflow, sandbox):
    for path in (secret_workflow["env_file"], secret_workflow["env_json"]):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert sandbox.secret in path.read_text(), path  # ...values only in the 0600 files
    assert json.loads(secret_workflow["env_json"].read_text())["API_TOKEN"] == sandbox.secret
    assert sorted(p.name for p in secret_workflow["env_file"].parent.iterdir()) == [
        "ansible.log", "secret-app.env", "secret-app.json"]


def test_secret_value_nowhere_in_output_results_or_log(secret_workflow, sandbox):
    secret = sandbox.secret
    assert secret and len(secret) > 10
    assert secret not in secret_workflow["verbose"].output
    assert secret not in secret_workflow["results"].output
    assert secret not in secret_workflow["log"].read_text()
    assert "Traceback" not in secret_workflow["verbose"].output


# The values beside the secret in secret-app's pod (tests/sandbox/clusterkit/seed.py COMMON_ENV): text that the
# modules' own fields hold too, so masking them would garble argv, the client and the disposition (issue 13).
COMMON_ENV = {"DEBUG": "false", "RUN_AS": "root", "STATE": "ACTIVE", "DATA_HOME": "/root"}
MASKS = ("********", "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER")


def test_the_pod_environment_holds_common_values_beside_the_secret(secret_workflow, sandbox):
    """The precondition of the next tests: the workload's environment really carries them (the env file says so)."""
    values = json.loads(secret_workflow["env_json"].read_text())
    assert {key: values.get(key) for key in COMMON_ENV} == COMMON_ENV
    assert values["API_TOKEN"] == sandbox.secret
    assert os.geteuid() != 0 or secret_workflow["results"].result("intercept")["intercept"]["client"].startswith(
        "root@")  # as root, the client's own name is one of the common values


def test_common_env_values_leave_argv_client_and_disposition_readable(secret_workflow):
    """tp_intercept and tp_info share one censoring policy: only the secret is masked, never the modules' fields."""
    results = secret_workflow["results"]
    intercept = results.result("intercept")
    assert "--mount=false" in intercept["command"]
    assert intercept["intercept"]["disposition"] == "ACTIVE" and intercept["intercept"]["mount"] is False
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert re.fullmatch(r"%s@[^@*\s]+" % re.escape(user), intercept["intercept"]["client"])
    assert set(COMMON_ENV) <= set(intercept["intercept"]["environment_names"])
    info = results.result("info")
    (listed,) = [item for item in info["intercepts"] if item["name"] == "secret-app"]
    assert listed["disposition"] == "ACTIVE" and listed["client"] == intercept["intercept"]["client"]
    assert set(COMMON_ENV) <= set(listed["environment_names"])
    for result in (intercept, results.result("intercept again"), info):
        text = json.dumps(result)
        assert not [mask for mask in MASKS if mask in text], text[:2000]


def test_common_env_values_unmasked_in_verbose_diff_output_and_log(secret_workflow, sandbox):
    """With -vvv --diff and ANSIBLE_LOG_PATH the argv is printed as run, and nothing of the modules is masked."""
    output, log = secret_workflow["verbose"].output, secret_workflow["log"].read_text()
    for text in (output, log):
        assert "--mount=false" in text and "--mount=********" not in text
        assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" not in text
        assert '"disposition": "ACTIVE"' in text
        assert sandbox.secret not in text


def test_kubeconfig_token_nowhere_in_output_results_or_log(secret_workflow, sandbox):
    token = sandbox.token
    assert token.startswith("sandbox-token-")
    assert token not in secret_workflow["verbose"].output
    assert token not in secret_workflow["results"].output
    assert token not in secret_workflow["log"].read_text()


def test_verbose_output_is_really_verbose(secret_workflow):
    """The control: -vvv printed the module invocations, so the absence of the secret means something."""
    output = secret_workflow["verbose"].output
    assert "module_args" in output or "invocation" in output
    assert "secret-app" in output
    assert secret_workflow["log"].stat().st_size > 1000
