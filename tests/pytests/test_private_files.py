# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files the collection writes for the user (issue 13; docs/SECURITY.md "Files written for the user").

A file planted by another user (``nobody``; the tests run as root) at the env-file path and at the summary path
is refused, naming its owner, before anything changes (for the env file: before the intercept is created), and
is left as it was. Under become (SUDO_UID/SUDO_GID set while running as root) the env file is owned by the
invoking user.
"""

from __future__ import annotations

import os
import pwd
import stat

import pytest

from tp_harness import collections_path, mutating, runner, sandbox  # noqa: F401  pylint: disable=unused-import

NOBODY = pwd.getpwnam("nobody")
PLANTED = "LD_PRELOAD=/tmp/evil.so\n"


def plant(path):
    path.write_text(PLANTED)
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    path.chmod(0o644)


def intercept_task(binary, env_file, name="intercept"):
    return {"name": name, "devloop.telepresence.tp_intercept": dict(
        binary_path=binary, name="secret-app", namespace="app", port=18001, verify_local="off",
        env_file=str(env_file)), "ignore_errors": True}


def connected_tasks(binary):
    return [{"name": "manager", "devloop.telepresence.tp_manager": dict(binary_path=binary, wait_timeout=30)},
            {"name": "connect", "devloop.telepresence.tp_connection": dict(binary_path=binary, namespace="app")}]


def cleanup_tasks(binary):
    return [{"name": "leave", "devloop.telepresence.tp_intercept": dict(
             binary_path=binary, name="secret-app", namespace="app", state="absent")},
            {"name": "quit", "devloop.telepresence.tp_connection": dict(binary_path=binary, state="stopped")}]


@pytest.fixture(scope="module")
def planted_env_file(sandbox, runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared")
    folder.chmod(0o1777)  # like /tmp
    env_file = folder / "fresh-app.env"
    plant(env_file)
    binary = sandbox.binary("2.24.0")
    sandbox.clear_faults()
    sandbox.reset_session()
    tasks = connected_tasks(binary) + [intercept_task(binary, env_file)] + cleanup_tasks(binary)
    mark = sandbox.mark()
    play = runner.play(tasks)
    return {"play": play, "env_file": env_file, "calls": sandbox.calls_since(mark), "folder": folder}


def test_planted_env_file_fails_naming_its_owner(planted_env_file):
    task = planted_env_file["play"].task("intercept")
    result = task["result"]
    assert task["status"] == "failed", result
    assert str(planted_env_file["env_file"]) in result["msg"]
    assert "belongs to nobody (uid %d)" % NOBODY.pw_uid in result["msg"], result["msg"]
    assert "Traceback" not in planted_env_file["play"].output


def test_planted_env_file_fails_before_the_intercept_is_created(planted_env_file):
    commands = [call.get("cmd", "").split(" ")[0] for call in mutating(planted_env_file["calls"])]
    assert "intercept" not in commands, commands
    assert "connect" in commands  # the control: the play did reach the cluster


def test_planted_env_file_is_left_as_it_was(planted_env_file):
    env_file = planted_env_file["env_file"]
    info = env_file.lstat()
    assert env_file.read_text() == PLANTED and info.st_uid == NOBODY.pw_uid
    assert sorted(p.name for p in planted_env_file["folder"].iterdir()) == ["fresh-app.env"]


def test_planted_symlink_at_the_env_file_path_is_not_followed(sandbox, runner, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    link = tmp_path / "fresh-app.env"
    link.symlink_to(victim)
    os.lchown(link, NOBODY.pw_uid, NOBODY.pw_gid)
    play = runner.play([intercept_task(sandbox.binary("2.24.0"), link)])
    task = play.task("intercept")
    assert task["status"] == "failed" and "is a symbolic link owned by nobody" in task["result"]["msg"], task
    assert victim.read_text() == "keep\n" and link.is_symlink()


@pytest.fixture(scope="module")
def become_env_file(sandbox, runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("home")
    env_file = folder / "app.env"
    binary = sandbox.binary("2.24.0")
    sandbox.clear_faults()
    sandbox.reset_session()
    tasks = connected_tasks(binary) + [intercept_task(binary, env_file)] + cleanup_tasks(binary)
    # What sudo sets for the module under become: the invoking user's ids (here nobody's).
    play = runner.play(tasks, env={"SUDO_UID": str(NOBODY.pw_uid), "SUDO_GID": str(NOBODY.pw_gid)})
    return {"play": play, "env_file": env_file}


def test_under_become_the_env_file_is_owned_by_the_invoking_user(become_env_file, sandbox):
    task = become_env_file["play"].task("intercept")
    assert task["status"] != "failed" and task["result"].get("changed") is True, task
    info = become_env_file["env_file"].lstat()
    assert (info.st_uid, info.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert stat.S_IMODE(info.st_mode) == 0o600 and stat.S_ISREG(info.st_mode)
    assert sandbox.secret in become_env_file["env_file"].read_text()


def summary_play(runner, path, env=None):
    tasks = [{"name": "summary", "ansible.builtin.include_role": {"name": "devloop.telepresence.telepresence_summary"},
              "vars": {"telepresence_summary_path": str(path), "telepresence_summary_print": False},
              "ignore_errors": True}]
    return runner.play(tasks, env=env)


def test_planted_summary_file_is_refused_naming_its_owner(runner, tmp_path):
    tmp_path.chmod(0o1777)
    summary = tmp_path / "summary.json"
    plant(summary)
    play = summary_play(runner, summary)
    failed = [item for item in play.tasks if item["status"] == "failed"]
    assert failed, play.output[-3000:]
    message = failed[0]["result"]["msg"]
    assert str(summary) in message and "belongs to nobody (uid %d)" % NOBODY.pw_uid in message, message
    assert summary.read_text() == PLANTED and summary.stat().st_uid == NOBODY.pw_uid


def test_summary_file_is_0600_and_owned_by_the_invoking_user(runner, tmp_path):
    summary = tmp_path / "summary.json"
    play = summary_play(runner, summary, env={"SUDO_UID": str(NOBODY.pw_uid), "SUDO_GID": str(NOBODY.pw_gid)})
    assert not [item for item in play.tasks if item["status"] == "failed"], play.output[-3000:]
    info = summary.lstat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (NOBODY.pw_uid, 0o600)
    assert summary.read_text().startswith("{")


def write_status(play):
    """How the summary role's write task ended: ok, skipped or failed."""
    found = [item["status"] for item in play.tasks if item["task"].endswith("Write the summary to telepresence_summary_path")]
    assert len(found) == 1, play.output[-3000:]
    return found[0]


def test_summary_file_that_holds_the_summary_is_left_and_any_other_rewritten(runner, tmp_path):
    summary = tmp_path / "summary.json"
    assert write_status(summary_play(runner, summary)) == "ok"
    written, inode = summary.read_text(), summary.stat().st_ino
    # The same summary again: the file is not replaced, and no module runs for it.
    assert write_status(summary_play(runner, summary)) == "skipped"
    assert summary.stat().st_ino == inode and summary.read_text() == written
    # Readable by others, or other text: the module writes it again, private.
    summary.chmod(0o644)
    assert write_status(summary_play(runner, summary)) == "ok"
    assert stat.S_IMODE(summary.stat().st_mode) == 0o600 and summary.read_text() == written
    summary.write_text("{\"from\": \"an earlier run\"}\n")
    assert write_status(summary_play(runner, summary)) == "ok"
    assert summary.read_text() == written
