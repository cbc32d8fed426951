# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Temporary items: private from creation, and removed by the next run only when their owner is gone (issue 12)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

from ansible_collections.devloop.telepresence.plugins.module_utils import tempfiles


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_private_dir_is_0700_named_with_the_owner_pid(tmp_path):
    directory = tempfiles.private_dir(".tp_intercept-", str(tmp_path))
    name = os.path.basename(directory)
    assert name.startswith(".tp_intercept-%d-" % os.getpid())
    assert mode(directory) == 0o700
    assert mode(os.path.join(directory, tempfiles.OWNER_LOCK)) == 0o600


def test_private_file_is_0600_and_stays_locked_after_close(tmp_path):
    descriptor, path = tempfiles.private_file(".telepresence-", ".download", str(tmp_path))
    os.close(descriptor)
    assert mode(path) == 0o600
    assert tempfiles.remove_leftovers(str(tmp_path), ".telepresence-", ".download") == []
    assert os.path.exists(path)


def test_a_private_file_can_be_executed_while_locked(tmp_path):
    """tp_binary runs the download before renaming it: the held lock must not make it busy (ETXTBSY)."""
    descriptor, path = tempfiles.private_file(".telepresence-", ".download", str(tmp_path))
    with os.fdopen(descriptor, "w") as handle:
        handle.write("#!/bin/sh\necho ran\n")
    os.chmod(path, 0o755)
    assert subprocess.run([path], capture_output=True, text=True, check=True).stdout == "ran\n"
    assert tempfiles.remove_leftovers(str(tmp_path), ".telepresence-", ".download") == []


def test_a_live_owner_keeps_its_items(tmp_path):
    directory = tempfiles.private_dir("tp_manager_", str(tmp_path))
    assert tempfiles.remove_leftovers(str(tmp_path), "tp_manager_") == []
    assert os.path.isdir(directory)


def run_and_sigkill(tmp_path, code):
    """Run ``code`` in a child Python that prints a path and then waits; SIGKILL it; return the path."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        path = child.stdout.readline().strip()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    return path


def test_leftovers_of_a_sigkilled_module_are_removed_by_the_next_run(tmp_path):
    parent = str(tmp_path)
    left_dir = run_and_sigkill(tmp_path, """
        import sys, time
        from ansible_collections.devloop.telepresence.plugins.module_utils import tempfiles
        path = tempfiles.private_dir(".tp_intercept-", %r)
        open(path + "/app.env", "w").write("API_TOKEN=secret")
        print(path, flush=True)
        time.sleep(60)
        """ % parent)
    left_file = run_and_sigkill(tmp_path, """
        import time
        from ansible_collections.devloop.telepresence.plugins.module_utils import tempfiles
        fd, path = tempfiles.private_file(".telepresence-", ".download", %r)
        print(path, flush=True)
        time.sleep(60)
        """ % parent)
    assert os.path.isdir(left_dir) and os.path.isfile(left_file)
    new = tempfiles.private_dir(".tp_intercept-", parent)   # the next run of tp_intercept
    assert not os.path.exists(left_dir)
    assert os.path.isdir(new)
    assert tempfiles.remove_leftovers(parent, ".telepresence-", ".download") == [left_file]


def test_a_folder_without_lock_file_is_judged_by_its_pid(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / (".tp_intercept-%d-abcdefgh" % dead.pid)
    stale.mkdir(mode=0o700)
    live = tmp_path / (".tp_intercept-%d-abcdefgh" % os.getpid())
    live.mkdir(mode=0o700)
    assert tempfiles.remove_leftovers(str(tmp_path), ".tp_intercept-") == [str(stale)]
    assert live.is_dir()


def test_other_names_and_symlinks_are_left_alone(tmp_path):
    (tmp_path / ".tp_intercept-notapid").mkdir()
    (tmp_path / "unrelated-123-abc").mkdir()
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(str(target), str(tmp_path / ".tp_intercept-1-abcdefgh"))
    assert tempfiles.remove_leftovers(str(tmp_path), ".tp_intercept-") == []
    assert sorted(os.listdir(str(tmp_path))) == [".tp_intercept-1-abcdefgh", ".tp_intercept-notapid", "target",
                                                 "unrelated-123-abc"]
