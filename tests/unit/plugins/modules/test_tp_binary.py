# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tp_binary: every decision branch, with the exact argv of every CLI call and every download made.

The process boundary (cli.run_process) and the network (open_url) are replaced by fakes; files are real, in
tmp_path, so "nothing written" and "no temporary file left" are checked on disk.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import stat
import urllib.error

import pytest

from ansible.module_utils import basic
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.devloop.telepresence.plugins.module_utils import binary, cli
from ansible_collections.devloop.telepresence.plugins.module_utils import binary_module as tp_binary

PUBLISHED_2240 = "356f075ee670af4b5a85fc58f548809b6fc683062cf798efc01fcf67b8df2eeb"
ARTIFACTS = {version: ("#!/bin/sh\n# fake telepresence %s\n" % version).encode() * 50
             for version in ("2.20.2", "2.24.0", "2.24.1", "2.25.0", "2.29.0", "2.30.0", "9.9.9")}
DIGESTS = {version: hashlib.sha256(body).hexdigest() for version, body in ARTIFACTS.items()}
MIRROR = "https://mirror.example/releases"


def url_of(version, platform_name="linux-amd64"):
    return "%s/v%s/telepresence-%s" % (MIRROR, version, platform_name)


def sums_url(version):
    return "%s/v%s/sha256sums.txt" % (MIRROR, version)


class Exit(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs.get("msg"))
        self.result = kwargs


class Fail(Exit):
    pass


# --- the fake telepresence -------------------------------------------------------------------------

class FakeTelepresence:
    """Answers version/status/quit like the facts sheet says, for binaries of known versions.

    ``versions`` maps a path to the version it reports; a temporary download (``.telepresence-*.download``)
    reports ``artifact_version``. ``daemons`` is None or ``{"version", "executable"}`` of running daemons.
    """

    def __init__(self, versions=None, artifact_version="2.24.0", daemons=None, broken=()):
        self.versions = dict(versions or {})
        self.artifact_version = artifact_version
        self.daemons = daemons
        self.broken = set(broken)
        self.failing = set()
        self.calls = []

    def __call__(self, argv, timeout, env=None):
        self.calls.append(list(argv))
        assert timeout <= 60 and env["LC_ALL"] == "C"
        binary_path, args = argv[0], argv[1:]
        if binary_path in self.broken:
            return 2, "", "exec format error", False
        version = self.versions.get(binary_path)
        if version is None and os.path.basename(binary_path).startswith(".telepresence-"):
            version = self.artifact_version
        assert version, "unexpected binary %s" % binary_path
        if args[0] in self.failing:
            return 1, "", "telepresence %s: error: boom" % args[0], False
        if args == ["version"]:
            return 0, "OSS Client         : v%s\nRoot Daemon        : not running\nUser Daemon        : not running\n" \
                % version, "", False
        if args == ["status", "--output", "json"]:
            return 0, json.dumps(self.status()) + "\n", "", False
        if args == ["quit", "-s"]:
            self.daemons = None
            return 0, "", "", False
        raise AssertionError("unexpected call %s" % argv)

    def status(self):
        if not self.daemons:
            return {"root_daemon": {}, "traffic_manager": {"name": "", "traffic_agent": "", "version": ""},
                    "user_daemon": {}}
        version = self.daemons["version"]
        # user_daemon.version has no leading v since 2.19 (facts sheet section 2)
        user_version = version if tuple(int(p) for p in version.split(".")) >= (2, 19, 0) else "v" + version
        return {"root_daemon": {"running": True, "name": "OSS Root Daemon", "version": "v" + version},
                "traffic_manager": {"name": "", "traffic_agent": "", "version": ""},
                "user_daemon": {"running": True, "version": user_version, "status": "Not connected",
                                "executable": self.daemons["executable"]}}


# --- the fake network -------------------------------------------------------------------------------

class FakeResponse:
    def __init__(self, body, length=None):
        self.stream = io.BytesIO(body)
        self.headers = {"Content-Length": str(len(body) if length is None else length)}

    def read1(self, size):
        return self.stream.read(min(size, 4096))

    def geturl(self):
        return None

    def close(self):
        pass


class FakeMirror:
    """open_url stand-in: per URL a list of outcomes (bytes, an HTTP status code, or ('truncate', bytes))."""

    def __init__(self, routes=None):
        self.routes = {url: list(outcomes) for url, outcomes in (routes or {}).items()}
        self.requests = []

    def __call__(self, url, **kwargs):
        self.requests.append(url)
        outcomes = self.routes.get(url)
        outcome = outcomes.pop(0) if outcomes and len(outcomes) > 1 else (outcomes[0] if outcomes else 404)
        if isinstance(outcome, int):
            raise urllib.error.HTTPError(url, outcome, "status %d" % outcome, {}, None)
        if isinstance(outcome, tuple):
            return FakeResponse(outcome[1][:100], length=len(outcome[1]))
        return FakeResponse(outcome)


# --- harness -------------------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path, monkeypatch):
    """Linux/amd64 host, an empty PATH folder, no sleeping, and captured exit/fail/warn."""
    monkeypatch.setattr(tp_binary.platform, "system", lambda: "Linux")
    monkeypatch.setattr(tp_binary.platform, "machine", lambda: "x86_64")
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    monkeypatch.setenv("PATH", str(path_dir))
    monkeypatch.delenv("TELEPRESENCE_VERSION", raising=False)
    sleeps = []
    monkeypatch.setattr(binary.time, "sleep", sleeps.append)
    warnings = []

    def exit_json(self, **kwargs):
        raise Exit(kwargs)

    def fail_json(self, **kwargs):
        raise Fail(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: warnings.append(msg))
    folder = tmp_path / "bin"
    folder.mkdir()

    class Env:
        pass
    e = Env()
    e.tmp = tmp_path
    e.path_dir = path_dir
    e.folder = folder
    e.dest = str(folder / "telepresence")
    e.sleeps = sleeps
    e.warnings = warnings
    e.monkeypatch = monkeypatch
    e.cli = FakeTelepresence()
    e.net = FakeMirror()

    def run(check=False, diff=False, **args):
        monkeypatch.setattr(cli, "run_process", e.cli)
        monkeypatch.setattr(tp_binary, "open_url", e.net)
        params = dict(dest=e.dest, base_url=MIRROR)
        params.update(args)
        params = {key: value for key, value in params.items() if value is not None}
        if check:
            params["_ansible_check_mode"] = True
        if diff:
            params["_ansible_diff"] = True
        with patch_module_args(params):
            with pytest.raises(Exit) as caught:
                tp_binary.main()
        return caught.value
    e.run = run
    return e


def install_file(path, version, mode=0o755, body=None):
    with open(path, "wb") as handle:
        handle.write(ARTIFACTS[version] if body is None else body)
    os.chmod(path, mode)


def listing(folder):
    return sorted(os.listdir(str(folder)))


def succeeded(outcome):
    assert not isinstance(outcome, Fail), outcome.result.get("msg")
    return outcome.result


def failed(outcome):
    assert isinstance(outcome, Fail), "expected a failure, got %s" % outcome.result
    assert "Traceback" not in outcome.result["msg"]
    return outcome.result


def temp_call(argv, folder, args):
    """Whether argv is ``<folder>/.telepresence-XXXXXXXX.download <args>``."""
    name = os.path.basename(argv[0])
    return (os.path.dirname(argv[0]) == str(folder) and binary.TEMP_NAME_RE.match(name) is not None
            and argv[1:] == args)


def pin_sums(env, version="2.24.0", body=None):
    """Route the artifact and a checksum file listing its digest."""
    data = ARTIFACTS[version] if body is None else body
    env.net.routes[url_of(version)] = [data]
    env.net.routes[sums_url(version)] = [("%s  telepresence-linux-amd64\n%s  telepresence-darwin-arm64\n" % (
        hashlib.sha256(data).hexdigest(), "00" * 32)).encode()]
    return sums_url(version)


# --- fresh install ---------------------------------------------------------------------------------

def test_fresh_install_downloads_verifies_test_runs_and_renames(env):
    checksum_url = pin_sums(env)
    result = succeeded(env.run(checksum_url=checksum_url))
    assert result["changed"] is True and result["source"] == "downloaded"
    assert result["path"] == env.dest and result["version"] == "2.24.0"
    assert result["sha256"] == DIGESTS["2.24.0"] and result["checksum_verified"] is True
    assert result["url"] == url_of("2.24.0") and result["platform"] == "linux-amd64"
    assert result["daemons_stopped"] is False and result["command"] is None
    assert env.net.requests == [sums_url("2.24.0"), url_of("2.24.0")]
    calls = result["commands"]
    assert calls == env.cli.calls and len(calls) == 2
    assert temp_call(calls[0], env.folder, ["version"])
    assert temp_call(calls[1], env.folder, ["status", "--output", "json"])
    assert listing(env.folder) == ["telepresence"]
    with open(env.dest, "rb") as handle:
        assert handle.read() == ARTIFACTS["2.24.0"]
    assert stat.S_IMODE(os.stat(env.dest).st_mode) == 0o755
    # checksum_url's digest differs from the published one: it wins, with a warning
    assert any("differs from the published digest" in w and PUBLISHED_2240 in w for w in env.warnings)


def test_fresh_install_creates_missing_folders(env):
    dest = str(env.tmp / "new" / "deeper" / "telepresence")
    pin_sums(env, "2.25.0")
    env.cli.artifact_version = "2.25.0"
    result = succeeded(env.run(dest=dest, version="2.25.0", checksum="sha256:" + DIGESTS["2.25.0"]))
    assert result["changed"] and os.path.isfile(dest)
    assert stat.S_IMODE(os.stat(os.path.dirname(dest)).st_mode) & 0o755 == 0o755
    assert listing(os.path.dirname(dest)) == ["telepresence"]
    assert env.net.requests == [url_of("2.25.0")]  # an explicit checksum needs no checksum_url


def test_fresh_install_with_the_default_github_url(env):
    env.cli.artifact_version = "2.25.0"
    github = "https://github.com/telepresenceio/telepresence/releases/download/v2.25.0/telepresence-linux-amd64"
    env.net.routes[github] = [ARTIFACTS["2.25.0"]]
    result = succeeded(env.run(base_url=None, version="v2.25.0", checksum=DIGESTS["2.25.0"]))
    assert result["url"] == github and env.net.requests == [github]


@pytest.mark.parametrize("system, machine, platform_name", [
    ("Darwin", "arm64", "darwin-arm64"), ("Linux", "aarch64", "linux-arm64"), ("Darwin", "x86_64", "darwin-amd64"),
])
def test_artifact_follows_the_detected_platform(env, system, machine, platform_name):
    env.monkeypatch.setattr(tp_binary.platform, "system", lambda: system)
    env.monkeypatch.setattr(tp_binary.platform, "machine", lambda: machine)
    env.cli.artifact_version = "2.25.0"
    env.net.routes[url_of("2.25.0", platform_name)] = [ARTIFACTS["2.25.0"]]
    result = succeeded(env.run(version="2.25.0", checksum=DIGESTS["2.25.0"]))
    assert result["platform"] == platform_name and result["url"] == url_of("2.25.0", platform_name)


def test_unsupported_platform_fails_naming_what_was_detected(env):
    env.monkeypatch.setattr(tp_binary.platform, "machine", lambda: "riscv64")
    result = failed(env.run())
    assert "'Linux'" in result["msg"] and "'riscv64'" in result["msg"]
    assert env.cli.calls == [] and env.net.requests == [] and listing(env.folder) == []


# --- idempotence -----------------------------------------------------------------------------------

def test_existing_pinned_binary_makes_one_version_call_and_no_download(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    result = succeeded(env.run(checksum=DIGESTS["2.24.0"]))
    assert result["changed"] is False and result["source"] == "existing"
    assert result["commands"] == [[env.dest, "version"]] and result["command"] is None
    assert result["checksum_verified"] is True and result["sha256"] == DIGESTS["2.24.0"] and result["url"] is None
    assert env.net.requests == []


def test_existing_pinned_binary_with_checksum_url_fetches_only_the_checksum_file(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    result = succeeded(env.run(checksum_url=pin_sums(env)))
    assert result["changed"] is False and result["commands"] == [[env.dest, "version"]]
    assert result["checksum_verified"] is True
    assert env.net.requests == [sums_url("2.24.0")]


def test_existing_pinned_binary_without_any_digest_is_kept_unverified(env):
    install_file(env.dest, "2.25.0")
    env.cli.versions[env.dest] = "2.25.0"
    result = succeeded(env.run(version="2.25.0", checksum_policy="require"))
    assert result["changed"] is False and result["checksum_verified"] is False
    assert result["sha256"] == DIGESTS["2.25.0"] and result["commands"] == [[env.dest, "version"]]


def test_existing_pinned_binary_with_another_digest_is_replaced(env):
    tampered = b"#!/bin/sh\necho tampered\n"
    install_file(env.dest, "2.24.0", body=tampered)
    env.cli.versions[env.dest] = "2.24.0"
    result = succeeded(env.run(checksum_url=pin_sums(env)))
    assert result["changed"] is True and result["source"] == "downloaded"
    assert any("differs from checksum_url" in w for w in env.warnings)
    assert result["commands"][0] == [env.dest, "version"]
    assert result["commands"][2] == [env.dest, "status", "--output", "json"]  # the old binary reads the daemons
    with open(env.dest, "rb") as handle:
        assert handle.read() == ARTIFACTS["2.24.0"]


def test_existing_2240_is_checked_against_the_published_digest(env):
    install_file(env.dest, "2.24.0")  # not the official bytes
    env.cli.versions[env.dest] = "2.24.0"
    env.net.routes[url_of("2.24.0")] = [ARTIFACTS["2.24.0"]]
    result = failed(env.run())
    assert "checksum mismatch" in result["msg"] and PUBLISHED_2240 in result["msg"]
    assert "published digest (built-in table)" in result["msg"]
    assert listing(env.folder) == ["telepresence"]
    with open(env.dest, "rb") as handle:
        assert handle.read() == ARTIFACTS["2.24.0"]


def test_broken_existing_binary_is_replaced(env):
    install_file(env.dest, "2.24.0", body=b"\x7fELF garbage")
    env.cli.broken.add(env.dest)
    env.cli.versions[env.dest] = "2.24.0"
    result = succeeded(env.run(checksum_url=pin_sums(env)))
    assert result["changed"] is True
    calls = result["commands"]
    assert calls[0] == [env.dest, "version"]
    assert temp_call(calls[1], env.folder, ["version"])
    assert temp_call(calls[2], env.folder, ["status", "--output", "json"])  # the broken one cannot tell


def test_not_executable_existing_file_is_replaced_without_running_it(env):
    install_file(env.dest, "2.24.0", mode=0o644)
    env.cli.versions[env.dest] = "2.24.0"
    result = succeeded(env.run(checksum_url=pin_sums(env)))
    assert result["changed"] is True and [env.dest, "version"] not in result["commands"]
    assert stat.S_IMODE(os.stat(env.dest).st_mode) == 0o755


def test_force_downloads_even_when_the_pin_is_there(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    system = env.path_dir / "telepresence"
    install_file(str(system), "2.24.0")
    env.cli.versions[str(system)] = "2.24.0"
    result = succeeded(env.run(force=True, checksum_url=pin_sums(env)))
    assert result["changed"] is True and result["source"] == "downloaded"
    assert result["commands"][0] == [env.dest, "version"]
    assert [str(system), "version"] not in result["commands"]
    assert url_of("2.24.0") in env.net.requests


# --- system binary ---------------------------------------------------------------------------------

def test_system_binary_with_the_pin_is_used_and_nothing_downloaded(env):
    system = str(env.path_dir / "telepresence")
    install_file(system, "2.24.0")
    env.cli.versions[system] = "2.24.0"
    result = succeeded(env.run(diff=True))
    assert result["changed"] is False and result["source"] == "system"
    assert result["path"] == system and result["version"] == "2.24.0" and result["url"] is None
    assert result["commands"] == [[system, "version"]]
    assert result["checksum_verified"] is False  # not the official bytes
    assert env.net.requests == [] and listing(env.folder) == []
    assert result["diff"] == {"before": {"path": None, "version": None}, "after": {"path": None, "version": None}}


def test_system_binary_with_the_published_digest_is_reported_verified(env):
    system = str(env.path_dir / "telepresence")
    install_file(system, "2.24.0")
    env.cli.versions[system] = "2.24.0"
    env.monkeypatch.setitem(binary.PUBLISHED_DIGESTS, ("2.24.0", "linux-amd64"), DIGESTS["2.24.0"])
    result = succeeded(env.run())
    assert result["source"] == "system" and result["checksum_verified"] is True


def test_system_binary_of_another_version_is_not_used(env):
    system = str(env.path_dir / "telepresence")
    install_file(system, "2.20.2")
    env.cli.versions[system] = "2.20.2"
    result = succeeded(env.run(checksum_url=pin_sums(env)))
    assert result["source"] == "downloaded" and result["commands"][0] == [system, "version"]
    assert temp_call(result["commands"][1], env.folder, ["version"])


def test_prefer_system_false_ignores_the_system_binary(env):
    system = str(env.path_dir / "telepresence")
    install_file(system, "2.24.0")
    env.cli.versions[system] = "2.24.0"
    result = succeeded(env.run(prefer_system=False, checksum_url=pin_sums(env)))
    assert result["source"] == "downloaded" and [system, "version"] not in result["commands"]


def test_dest_on_path_is_not_mistaken_for_a_system_binary(env):
    env.monkeypatch.setenv("PATH", "%s:%s" % (env.folder, env.path_dir))
    install_file(env.dest, "2.20.2")
    env.cli.versions[env.dest] = "2.20.2"
    result = succeeded(env.run(checksum_url=pin_sums(env)))
    assert result["source"] == "downloaded"
    assert [call[1:] for call in result["commands"] if call[0] == env.dest] == [
        ["version"], ["status", "--output", "json"]]


def test_existing_dest_is_checked_before_the_system_binary(env):
    system = str(env.path_dir / "telepresence")
    install_file(system, "2.24.0")
    env.cli.versions[system] = "2.24.0"
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    result = succeeded(env.run(checksum=DIGESTS["2.24.0"]))
    assert result["source"] == "existing" and result["commands"] == [[env.dest, "version"]]


# --- upgrades and daemons --------------------------------------------------------------------------

@pytest.mark.parametrize("old, new", [("2.20.2", "2.24.0"), ("2.24.0", "2.25.0"), ("2.25.0", "2.29.0"),
                                      ("2.29.0", "2.30.0"), ("2.30.0", "2.24.0")])
def test_upgrade_stops_daemons_of_the_old_version_with_the_old_binary(env, old, new):
    install_file(env.dest, old)
    env.cli.versions[env.dest] = old
    env.cli.artifact_version = new
    env.cli.daemons = {"version": old, "executable": env.dest}
    result = succeeded(env.run(version=new, checksum_url=pin_sums(env, new), diff=True))
    assert result["changed"] is True and result["daemons_stopped"] is True
    assert result["command"] == [env.dest, "quit", "-s"]
    calls = result["commands"]
    assert calls[0] == [env.dest, "version"]
    assert temp_call(calls[1], env.folder, ["version"])
    assert calls[2:] == [[env.dest, "status", "--output", "json"], [env.dest, "quit", "-s"]]
    assert env.cli.daemons is None
    assert result["diff"] == {"before": {"path": env.dest, "version": old}, "after": {"path": env.dest, "version": new}}
    with open(env.dest, "rb") as handle:
        assert handle.read() == ARTIFACTS[new]
    assert listing(env.folder) == ["telepresence"]


def test_upgrade_leaves_daemons_of_the_new_version_alone(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    env.cli.artifact_version = "2.25.0"
    env.cli.daemons = {"version": "2.25.0", "executable": "/usr/local/bin/telepresence"}
    result = succeeded(env.run(version="2.25.0", checksum_url=pin_sums(env, "2.25.0")))
    assert result["daemons_stopped"] is False and result["command"] is None
    assert [env.dest, "quit", "-s"] not in result["commands"]


def test_fresh_install_leaves_daemons_of_another_client_alone_and_warns(env):
    """Issue 12: a new dest replaces nothing, so another executable's session (and its intercepts) stays."""
    env.cli.daemons = {"version": "2.20.2", "executable": "/usr/bin/telepresence"}
    result = succeeded(env.run(checksum_url=pin_sums(env)))
    assert result["changed"] is True
    assert result["daemons_stopped"] is False and result["command"] is None
    calls = result["commands"]
    assert [call[1:] for call in calls] == [["version"], ["status", "--output", "json"]]
    assert env.cli.daemons == {"version": "2.20.2", "executable": "/usr/bin/telepresence"}
    assert any("daemons of another client are running (executable /usr/bin/telepresence, version 2.20.2)" in w
               and "'/usr/bin/telepresence quit -s'" in w for w in env.warnings), env.warnings


def test_fresh_install_with_daemons_of_the_new_version_does_not_warn(env):
    env.cli.daemons = {"version": "2.24.0", "executable": "/usr/bin/telepresence"}
    result = succeeded(env.run(checksum_url=pin_sums(env)))
    assert result["daemons_stopped"] is False
    assert not any("another client" in w for w in env.warnings)


def test_upgrade_leaves_daemons_of_another_executable_of_the_old_version_alone(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    env.cli.artifact_version = "2.25.0"
    env.cli.daemons = {"version": "2.24.0", "executable": "/opt/other/telepresence"}
    result = succeeded(env.run(version="2.25.0", checksum_url=pin_sums(env, "2.25.0")))
    assert result["changed"] is True and result["daemons_stopped"] is False and result["command"] is None
    assert [env.dest, "quit", "-s"] not in result["commands"]
    assert any("another client" in w for w in env.warnings)


def test_upgrade_compares_real_paths(env):
    """dest reached through a symlinked folder is still the executable the daemons were started from."""
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    env.cli.artifact_version = "2.25.0"
    link = env.tmp / "linked-bin"
    os.symlink(env.folder, str(link))
    env.cli.daemons = {"version": "2.24.0", "executable": str(link / os.path.basename(env.dest))}
    result = succeeded(env.run(version="2.25.0", checksum_url=pin_sums(env, "2.25.0")))
    assert result["daemons_stopped"] is True and result["command"] == [env.dest, "quit", "-s"]


def test_upgrade_with_no_executable_in_status_stops_daemons_of_the_replaced_version(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    env.cli.artifact_version = "2.25.0"
    env.cli.daemons = {"version": "2.24.0", "executable": ""}
    result = succeeded(env.run(version="2.25.0", checksum_url=pin_sums(env, "2.25.0")))
    assert result["daemons_stopped"] is True


def test_unreadable_daemon_status_warns_and_still_installs(env):
    install_file(env.dest, "2.20.2")
    env.cli.versions[env.dest] = "2.20.2"
    env.cli.failing.add("status")
    result = succeeded(env.run(checksum_url=pin_sums(env)))
    assert result["changed"] is True and result["daemons_stopped"] is False
    assert result["commands"][-1] == [env.dest, "status", "--output", "json"]
    assert any("could not read the daemon status" in w and "boom" in w for w in env.warnings)


def test_failing_quit_fails_the_task_and_keeps_the_old_binary(env):
    install_file(env.dest, "2.20.2")
    env.cli.versions[env.dest] = "2.20.2"
    env.cli.daemons = {"version": "2.20.2", "executable": env.dest}
    env.cli.failing.add("quit")
    result = failed(env.run(checksum_url=pin_sums(env)))
    assert "telepresence quit failed: boom" in result["msg"]
    assert result["command"] == [env.dest, "quit", "-s"]
    assert listing(env.folder) == ["telepresence"]
    with open(env.dest, "rb") as handle:
        assert handle.read() == ARTIFACTS["2.20.2"]


# --- checksums -------------------------------------------------------------------------------------

def test_checksum_mismatch_fails_and_leaves_dest_and_folder_untouched(env):
    install_file(env.dest, "2.20.2")
    env.cli.versions[env.dest] = "2.20.2"
    env.net.routes[url_of("2.24.0")] = [ARTIFACTS["2.24.1"]]
    result = failed(env.run(checksum="sha256:" + DIGESTS["2.24.0"]))
    assert "checksum mismatch" in result["msg"] and DIGESTS["2.24.1"] in result["msg"]
    assert "the checksum option says " + DIGESTS["2.24.0"] in result["msg"]
    assert listing(env.folder) == ["telepresence"]
    with open(env.dest, "rb") as handle:
        assert handle.read() == ARTIFACTS["2.20.2"]
    assert result["commands"] == [[env.dest, "version"]]  # the bad file never ran
    assert env.net.requests == [url_of("2.24.0")]  # a mismatch is not retried


def test_explicit_checksum_wins_over_the_published_digest_with_a_warning(env):
    env.net.routes[url_of("2.24.0")] = [ARTIFACTS["2.24.0"]]
    result = succeeded(env.run(checksum=DIGESTS["2.24.0"].upper()))
    assert result["checksum_verified"] is True
    assert any("the checksum option" in w and "differs from the published digest" in w for w in env.warnings)


def test_checksum_beats_checksum_url(env):
    env.net.routes[url_of("2.25.0")] = [ARTIFACTS["2.25.0"]]
    env.cli.artifact_version = "2.25.0"
    result = succeeded(env.run(version="2.25.0", checksum=DIGESTS["2.25.0"], checksum_url=sums_url("2.25.0")))
    assert result["checksum_verified"] is True and env.net.requests == [url_of("2.25.0")]


def test_checksum_url_without_the_artifact_falls_back_to_the_table(env):
    env.net.routes[url_of("2.24.0")] = [ARTIFACTS["2.24.0"]]
    env.net.routes[sums_url("2.24.0")] = [("%s  telepresence-darwin-arm64\n" % ("00" * 32)).encode()]
    result = failed(env.run(checksum_url=sums_url("2.24.0")))
    assert any("lists no digest for telepresence-linux-amd64" in w for w in env.warnings)
    assert "published digest (built-in table) says " + PUBLISHED_2240 in result["msg"]


def test_checksum_url_404_fails_before_the_download(env):
    result = failed(env.run(version="2.25.0", checksum_url=sums_url("2.25.0")))
    assert result["msg"] == "checksum_url %s does not exist (HTTP 404)" % sums_url("2.25.0")
    assert env.net.requests == [sums_url("2.25.0")] and listing(env.folder) == []


def test_require_policy_without_a_digest_refuses_before_downloading(env):
    result = failed(env.run(version="2.25.0", checksum_policy="require"))
    assert "no known SHA-256 digest for v2.25.0 telepresence-linux-amd64" in result["msg"]
    assert "checksum_policy is require" in result["msg"]
    assert env.net.requests == [] and env.cli.calls == [] and listing(env.folder) == []


def test_require_policy_with_a_checksum_url_lacking_the_artifact_refuses(env):
    env.net.routes[sums_url("2.25.0")] = [b"# nothing here\n"]
    result = failed(env.run(version="2.25.0", checksum_policy="require", checksum_url=sums_url("2.25.0")))
    assert "checksum_policy is require" in result["msg"] and env.net.requests == [sums_url("2.25.0")]


def test_warn_policy_installs_without_a_digest_and_returns_it(env):
    env.cli.artifact_version = "2.25.0"
    env.net.routes[url_of("2.25.0")] = [ARTIFACTS["2.25.0"]]
    result = succeeded(env.run(version="2.25.0"))
    assert result["changed"] is True and result["checksum_verified"] is False
    assert result["sha256"] == DIGESTS["2.25.0"]
    assert any("installed it unverified" in w and "checksum: sha256:" + DIGESTS["2.25.0"] in w for w in env.warnings)


# --- download failures -----------------------------------------------------------------------------

def test_404_is_reported_with_version_artifact_and_url_and_not_retried(env):
    result = failed(env.run(version="v9.9.9", checksum=DIGESTS["9.9.9"]))
    assert result["msg"] == ("v9.9.9 has no artifact telepresence-linux-amd64 at %s (HTTP 404): check that the "
                             "version option names a released Telepresence client (X.Y.Z, see the releases page) and that base_url "
                             "serves <base_url>/v<X.Y.Z>/telepresence-<os>-<arch>" % url_of("9.9.9"))
    assert env.net.requests == [url_of("9.9.9")] and env.sleeps == [] and listing(env.folder) == []


def test_500_then_ok_succeeds_after_one_backoff(env):
    env.net.routes[url_of("2.24.0")] = [500, ARTIFACTS["2.24.0"]]
    result = succeeded(env.run(checksum=DIGESTS["2.24.0"]))
    assert result["changed"] is True and env.sleeps == [1.0]
    assert env.net.requests == [url_of("2.24.0")] * 2


def test_persistent_500_fails_after_retries_with_nothing_left(env):
    env.net.routes[url_of("2.24.0")] = [500]
    result = failed(env.run(checksum=DIGESTS["2.24.0"], retries=2))
    assert "gave up after 3 attempts" in result["msg"] and env.sleeps == [1.0, 2.0]
    assert listing(env.folder) == []


def test_truncated_download_fails_and_leaves_nothing(env):
    install_file(env.dest, "2.20.2")
    env.cli.versions[env.dest] = "2.20.2"
    env.net.routes[url_of("2.24.0")] = [("truncate", ARTIFACTS["2.24.0"])]
    result = failed(env.run(checksum=DIGESTS["2.24.0"], retries=1))
    assert "cut short: received 100 of the %d bytes" % len(ARTIFACTS["2.24.0"]) in result["msg"]
    assert listing(env.folder) == ["telepresence"] and env.sleeps == [1.0]


def test_downloaded_file_reporting_another_version_is_not_installed(env):
    env.cli.artifact_version = "2.25.0"
    env.net.routes[url_of("2.24.0")] = [ARTIFACTS["2.24.0"]]
    result = failed(env.run(checksum=DIGESTS["2.24.0"]))
    assert "reports version v2.25.0, not the pinned v2.24.0" in result["msg"]
    assert listing(env.folder) == [] and len(result["commands"]) == 1


def test_downloaded_file_that_does_not_run_is_not_installed(env):
    env.net.routes[url_of("2.24.0")] = [ARTIFACTS["2.24.0"]]

    def broken_temp(argv, timeout, env=None):
        return 1, "", "cannot execute binary file", False
    env.cli = broken_temp
    result = failed(env.run(checksum=DIGESTS["2.24.0"]))
    assert "does not run as a Telepresence client" in result["msg"] and listing(env.folder) == []


def test_stale_temporary_files_of_a_killed_run_are_removed(env):
    stale = env.folder / ".telepresence-abcd1234.download"
    stale.write_bytes(b"half a binary")
    keep = env.folder / "notes.txt"
    keep.write_text("mine")
    succeeded(env.run(checksum_url=pin_sums(env)))
    assert listing(env.folder) == ["notes.txt", "telepresence"]


# --- check mode and diff ---------------------------------------------------------------------------

def test_check_mode_fresh_reports_the_download_and_writes_nothing(env):
    result = succeeded(env.run(check=True, diff=True, checksum_url=sums_url("2.24.0")))
    assert result["changed"] is True and result["source"] == "downloaded" and result["url"] == url_of("2.24.0")
    assert result["sha256"] is None and result["checksum_verified"] is False
    assert result["commands"] == [] and env.net.requests == [] and listing(env.folder) == []
    assert result["diff"] == {"before": {"path": None, "version": None},
                              "after": {"path": env.dest, "version": "2.24.0"}}


def test_check_mode_in_a_missing_folder_creates_nothing(env):
    dest = str(env.tmp / "absent-folder" / "telepresence")
    result = succeeded(env.run(check=True, dest=dest))
    assert result["changed"] is True and not os.path.exists(os.path.dirname(dest))


def test_check_mode_existing_pinned_makes_one_version_call(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    result = succeeded(env.run(check=True, diff=True, checksum_url=sums_url("2.24.0")))
    assert result["changed"] is False and result["source"] == "existing"
    assert result["commands"] == [[env.dest, "version"]] and env.net.requests == []
    assert result["diff"]["before"] == result["diff"]["after"] == {"path": env.dest, "version": "2.24.0"}


def test_check_mode_upgrade_reports_the_change_without_touching_daemons(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    env.cli.daemons = {"version": "2.24.0", "executable": env.dest}
    result = succeeded(env.run(check=True, diff=True, version="2.25.0"))
    assert result["changed"] is True and result["daemons_stopped"] is False
    assert result["commands"] == [[env.dest, "version"]] and env.cli.daemons is not None
    assert result["diff"] == {"before": {"path": env.dest, "version": "2.24.0"},
                              "after": {"path": env.dest, "version": "2.25.0"}}
    with open(env.dest, "rb") as handle:
        assert handle.read() == ARTIFACTS["2.24.0"]


def test_check_mode_require_without_digest_fails_like_the_real_run(env):
    result = failed(env.run(check=True, version="2.25.0", checksum_policy="require"))
    assert "checksum_policy is require" in result["msg"]


# --- absent ----------------------------------------------------------------------------------------

def test_absent_stops_the_daemons_of_dest_then_removes_it(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    env.cli.daemons = {"version": "2.24.0", "executable": env.dest}
    result = succeeded(env.run(state="absent", diff=True))
    assert result["changed"] is True and result["daemons_stopped"] is True
    assert result["commands"] == [[env.dest, "version"], [env.dest, "status", "--output", "json"],
                                  [env.dest, "quit", "-s"]]
    assert result["command"] == [env.dest, "quit", "-s"]
    assert result["version"] is None and result["source"] is None and result["path"] == env.dest
    assert listing(env.folder) == []
    assert result["diff"] == {"before": {"path": env.dest, "version": "2.24.0"},
                              "after": {"path": None, "version": None}}


def test_absent_without_daemons_does_not_quit(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    result = succeeded(env.run(state="absent"))
    assert result["changed"] is True and result["daemons_stopped"] is False
    assert result["commands"] == [[env.dest, "version"], [env.dest, "status", "--output", "json"]]


def test_absent_leaves_daemons_of_another_binary_alone(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    env.cli.daemons = {"version": "2.24.0", "executable": "/usr/local/bin/telepresence"}
    result = succeeded(env.run(state="absent"))
    assert result["daemons_stopped"] is False and env.cli.daemons is not None


def test_absent_twice_is_unchanged_and_runs_nothing(env):
    result = succeeded(env.run(state="absent"))
    assert result["changed"] is False and result["commands"] == [] and result["daemons_stopped"] is False


def test_absent_check_mode_removes_nothing(env):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    env.cli.daemons = {"version": "2.24.0", "executable": env.dest}
    result = succeeded(env.run(state="absent", check=True))
    assert result["changed"] is True and result["commands"] == [[env.dest, "version"]]
    assert listing(env.folder) == ["telepresence"] and env.cli.daemons is not None


def test_absent_removes_a_broken_file_without_running_status(env):
    install_file(env.dest, "2.24.0", body=b"junk")
    env.cli.broken.add(env.dest)
    env.cli.versions[env.dest] = "2.24.0"
    result = succeeded(env.run(state="absent"))
    assert result["changed"] is True and result["commands"] == [[env.dest, "version"]]
    assert listing(env.folder) == []


# --- options ---------------------------------------------------------------------------------------

def test_version_falls_back_to_the_environment(env):
    env.monkeypatch.setenv("TELEPRESENCE_VERSION", "v2.25.0")
    install_file(env.dest, "2.25.0")
    env.cli.versions[env.dest] = "2.25.0"
    result = succeeded(env.run())
    assert result["version"] == "2.25.0" and result["source"] == "existing"


def test_task_version_beats_the_environment(env):
    env.monkeypatch.setenv("TELEPRESENCE_VERSION", "v2.25.0")
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    result = succeeded(env.run(version="2.24.0", checksum=DIGESTS["2.24.0"]))
    assert result["version"] == "2.24.0" and result["changed"] is False


def test_dest_tilde_is_expanded(env):
    env.monkeypatch.setenv("HOME", str(env.tmp))
    result = succeeded(env.run(dest="~/bin/telepresence", check=True))
    assert result["path"] == str(env.tmp / "bin" / "telepresence")


def test_default_dest_is_under_the_home_folder(env):
    env.monkeypatch.setenv("HOME", str(env.tmp))
    with patch_module_args({}):
        module = basic.AnsibleModule(argument_spec=tp_binary.ARGUMENT_SPEC, supports_check_mode=True)
    assert module.params["dest"] == str(env.tmp / ".local" / "bin" / "telepresence")
    assert module.params["version"] == "v2.24.0" and module.params["timeout"] == 300
    assert module.params["retries"] == 3 and module.params["checksum_policy"] == "warn"
    assert module.params["validate_certs"] is True and module.params["prefer_system"] is True


def test_download_options_reach_open_url(env, monkeypatch):
    seen = []

    def recording_open_url(url, **kwargs):
        seen.append(kwargs)
        return FakeResponse(ARTIFACTS["2.24.0"])
    env.net = recording_open_url
    succeeded(env.run(checksum=DIGESTS["2.24.0"], validate_certs=False, timeout=7))
    assert seen[0]["validate_certs"] is False and seen[0]["timeout"] == 7


BAD_INPUT = [
    (dict(version="2.24"), "version '2.24'"),
    (dict(version="latest"), "version 'latest'"),
    (dict(version="v2.24.0; rm -rf /"), "version 'v2.24.0; rm -rf /'"),
    (dict(version="2.24.0-rc.1"), "version '2.24.0-rc.1'"),
    (dict(dest="relative/telepresence"), "dest 'relative/telepresence' must be an absolute path"),
    (dict(checksum="sha512:" + "ab" * 32), "checksum 'sha512:"),
    (dict(checksum="abc123"), "checksum 'abc123' is not a SHA-256 digest"),
    (dict(checksum_policy="maybe"), "checksum_policy"),
    (dict(state="latest"), "state"),
    (dict(base_url="http://mirror.example/releases"), "base_url 'http://mirror.example/releases' uses plain http"),
    (dict(checksum_url="http://mirror.example/sums.txt"), "checksum_url 'http://mirror.example/sums.txt' uses plain"),
    (dict(base_url="https//mirror.example"), "base_url 'https//mirror.example' is not an http(s) URL"),
    (dict(base_url="ftp://mirror.example/tp"), "base_url 'ftp://mirror.example/tp' is not an http(s) URL"),
    (dict(checksum_url="not a url"), "checksum_url 'not a url' contains blanks"),
    (dict(timeout=-5), "timeout must be a positive number"),
    (dict(timeout=0), "timeout must be a positive number"),
    (dict(retries=-1), "retries must be 0 or more, got -1"),
    (dict(force="sometimes"), "force"),
]


@pytest.mark.parametrize("args, fragment", BAD_INPUT, ids=[str(case[0])[:40] for case in BAD_INPUT])
def test_bad_input_fails_naming_the_option_and_writes_nothing(env, args, fragment):
    result = failed(env.run(**args))
    assert fragment in result["msg"]
    assert env.cli.calls == [] and env.net.requests == [] and listing(env.folder) == []


def test_dest_that_is_a_folder_fails(env):
    result = failed(env.run(dest=str(env.folder)))
    assert result["msg"].startswith("dest %s is a folder" % env.folder)
    result = failed(env.run(dest=str(env.folder) + "/"))
    assert "is a folder" in result["msg"] and listing(env.folder) == []


def test_dest_under_a_file_fails(env):
    blocker = env.folder / "file"
    blocker.write_text("x")
    result = failed(env.run(dest=str(blocker / "telepresence")))
    assert "dest %s cannot be created: %s exists and is not a folder" % (blocker / "telepresence", blocker) \
        in result["msg"]


def test_read_only_folder_fails_before_downloading(env, monkeypatch):
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if str(path) == str(env.folder) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)
    monkeypatch.setattr(tp_binary.os, "access", access)
    result = failed(env.run(checksum=DIGESTS["2.24.0"]))
    assert result["msg"].startswith("dest %s cannot be written: the folder %s is not writable" % (env.dest, env.folder))
    assert result["msg"].endswith("choose another dest or run the task with become")   # docs/SECURITY.md, Privileges
    assert env.net.requests == [] and listing(env.folder) == []


def test_read_only_folder_with_the_pin_already_there_is_fine(env, monkeypatch):
    install_file(env.dest, "2.24.0")
    env.cli.versions[env.dest] = "2.24.0"
    real_access = os.access
    monkeypatch.setattr(tp_binary.os, "access", lambda path, mode, *a, **k: False if str(path) == str(env.folder)
                        else real_access(path, mode, *a, **k))
    result = succeeded(env.run(checksum=DIGESTS["2.24.0"]))
    assert result["changed"] is False


def test_failures_report_the_commands_run_so_far(env):
    install_file(env.dest, "2.20.2")
    env.cli.versions[env.dest] = "2.20.2"
    env.net.routes[url_of("2.24.0")] = [404]
    result = failed(env.run(checksum=DIGESTS["2.24.0"]))
    assert result["commands"] == [[env.dest, "version"]] and result["platform"] == "linux-amd64"
    assert result["daemons_stopped"] is False


def test_a_run_waits_for_the_folder_lock_and_gives_up_cleanly(env, monkeypatch):
    monkeypatch.setattr(tp_binary, "LOCK_GRACE_SECONDS", 0)
    now = [0.0]
    waits = []

    def fake_sleep(seconds):
        waits.append(seconds)
        now[0] += seconds
    monkeypatch.setattr(tp_binary, "DirectoryLock",
                        functools.partial(binary.DirectoryLock, sleep=fake_sleep, clock=lambda: now[0]))
    holder = binary.DirectoryLock(str(env.folder), wait_seconds=1)
    holder.acquire()
    try:
        result = failed(env.run(checksum=DIGESTS["2.24.0"], timeout=1, retries=0))
    finally:
        holder.release()
    assert result["msg"] == "another run has been installing into %s for more than 1 s; try again when it has " \
        "finished" % env.folder
    assert len(waits) == 5 and env.net.requests == [] and listing(env.folder) == []


def test_the_lock_is_released_after_a_run(env):
    env.net.routes[url_of("2.24.0")] = [ARTIFACTS["2.24.0"]]
    succeeded(env.run(checksum=DIGESTS["2.24.0"]))
    probe = binary.DirectoryLock(str(env.folder), wait_seconds=0)
    probe.acquire()
    probe.release()
