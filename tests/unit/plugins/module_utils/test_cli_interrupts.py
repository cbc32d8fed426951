# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An interrupted module stops the CLI call it started (issue 12): real processes, stopped by their own pids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils import cli


def alive(pid):
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid, seconds=5.0):
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def sleeper_with_child(tmp_path):
    """argv of a shell that starts a grandchild in its group, writes both pids, then waits."""
    pids = tmp_path / "pids"
    script = "sleep 60 & echo $$ $! > %s; wait" % pids
    return ["/bin/sh", "-c", script], pids


def read_pids(path, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().split()) == 2:
            return [int(value) for value in path.read_text().split()]
        time.sleep(0.02)
    raise AssertionError("the child never wrote its pids")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_wait_kills_the_group_and_raises(tmp_path, signum):
    argv, pids = sleeper_with_child(tmp_path)
    before = signal.getsignal(signum)
    seen = {}

    def interrupt():
        seen["pids"] = read_pids(pids)
        os.kill(os.getpid(), signum)

    timer = threading.Thread(target=interrupt)
    timer.start()
    with pytest.raises(cli.Interrupted, match=signal.Signals(signum).name):
        cli.run_process(argv, 30)
    timer.join()
    for pid in seen["pids"]:
        assert wait_gone(pid), "pid %d of the interrupted call still runs" % pid
    assert signal.getsignal(signum) == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_child_starts_is_held_then_kills_the_group(tmp_path, monkeypatch, signum):
    # The signal lands inside Popen, after the fork: before the handlers were set first, it ended the process at
    # once and the child's group ran on.
    argv, pids = sleeper_with_child(tmp_path)
    real_popen = subprocess.Popen
    before = signal.getsignal(signum)

    def popen_interrupted_on_the_way(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        read_pids(pids)
        os.kill(os.getpid(), signum)
        return proc

    monkeypatch.setattr(cli.subprocess, "Popen", popen_interrupted_on_the_way)
    with pytest.raises(cli.Interrupted, match=signal.Signals(signum).name):
        cli.run_process(argv, 30)
    for pid in read_pids(pids):
        assert wait_gone(pid), "pid %d of the interrupted call still runs" % pid
    assert signal.getsignal(signum) == before


def test_a_signal_held_while_a_child_fails_to_start_still_interrupts(monkeypatch):
    before = signal.getsignal(signal.SIGTERM)

    def popen_interrupted_then_failing(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(cli.subprocess, "Popen", popen_interrupted_then_failing)
    with pytest.raises(cli.Interrupted, match="SIGTERM"):
        cli.run_process(["/nonexistent/telepresence", "version"], 30)
    assert signal.getsignal(signal.SIGTERM) == before


def test_handlers_are_restored_after_a_normal_call():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    rc, out, _err, timed_out = cli.run_process(["/bin/sh", "-c", "echo ok"], 10)
    assert (rc, out, timed_out) == (0, "ok\n", False)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_timeout_still_kills_the_whole_group(tmp_path):
    argv, pids = sleeper_with_child(tmp_path)
    rc, _out, _err, timed_out = cli.run_process(argv, 1)
    assert timed_out and rc == -signal.SIGKILL
    for pid in read_pids(pids):
        assert wait_gone(pid)


def test_a_finished_call_leaves_what_it_detached_alone(tmp_path):
    """A daemon started in its own session (as ``connect`` does) is not part of the call's group."""
    marker = tmp_path / "daemon"
    argv = [sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys
        proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
        open(sys.argv[1], "w").write(str(proc.pid))
        """), str(marker)]
    rc, _out, _err, _timed_out = cli.run_process(argv, 10)
    daemon = int(marker.read_text())
    try:
        assert rc == 0
        assert alive(daemon)
    finally:
        os.kill(daemon, signal.SIGKILL)


def test_controller_gone_reads_the_pipe():
    read_end, write_end = os.pipe()
    try:
        assert not cli.controller_gone(write_end)
        os.close(read_end)
        read_end = None
        assert cli.controller_gone(write_end)
    finally:
        os.close(write_end)
        if read_end is not None:
            os.close(read_end)


def test_controller_gone_is_false_for_files_and_ttys(tmp_path):
    with open(tmp_path / "out", "w") as handle:
        assert not cli.controller_gone(handle.fileno())


def test_the_wait_ends_when_the_controller_stops_reading(tmp_path, monkeypatch):
    argv, pids = sleeper_with_child(tmp_path)
    state = {"gone": False}
    monkeypatch.setattr(cli, "controller_gone", lambda fd=1: state["gone"])

    def lose_controller():
        state["pids"] = read_pids(pids)
        state["gone"] = True

    thread = threading.Thread(target=lose_controller)
    thread.start()
    started = time.monotonic()
    with pytest.raises(cli.Interrupted, match="controller"):
        cli.run_process(argv, 30)
    thread.join()
    assert time.monotonic() - started < 5
    for pid in state["pids"]:
        assert wait_gone(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_sigkill_of_the_module_process_ends_the_cli(tmp_path):
    """The module process (here a Python child) dies by SIGKILL: no handler runs, the kernel ends the CLI."""
    pid_file = tmp_path / "cli.pid"
    module = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from ansible_collections.devloop.telepresence.plugins.module_utils import cli
        cli.run_process(["/bin/sh", "-c", "echo $$ > %s; exec sleep 60"], 60)
        """ % pid_file)], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        child = int(pid_file.read_text())
        assert alive(child)
        module.kill()
        module.wait()
        assert wait_gone(child), "the CLI outlived the SIGKILLed module"
    finally:
        if module.poll() is None:
            module.kill()
            module.wait()


def test_no_death_signal_off_linux(monkeypatch):
    monkeypatch.setattr(cli.sys, "platform", "darwin")
    assert cli._die_with_parent() is None  # pylint: disable=protected-access


# --- how the wait learns that the call ended ------------------------------------------------------------------------

@pytest.mark.parametrize("with_pidfd", [True, False])
def test_the_wait_sees_the_exit_with_and_without_a_pidfd(monkeypatch, with_pidfd):
    if not with_pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    elif not hasattr(os, "pidfd_open"):
        pytest.skip("this Python has no os.pidfd_open: the other case covers it")
    assert cli.run_process(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], 10) == (3, "out\n", "err\n", False)


def test_a_pidfd_reports_a_running_call_as_not_ended_and_an_ended_one_as_ended():
    if not hasattr(os, "pidfd_open"):
        pytest.skip("this Python has no os.pidfd_open")
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    exit_fd = cli._exit_fd(proc)  # pylint: disable=protected-access
    try:
        assert exit_fd is not None
        assert not cli._exited(proc, exit_fd, 0.05)  # pylint: disable=protected-access
        proc.stdin.close()
        assert cli._exited(proc, exit_fd, 10)  # pylint: disable=protected-access
        assert proc.wait() == 0
    finally:
        os.close(exit_fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_timeout_still_ends_a_call_that_outlives_it_with_a_pidfd(tmp_path):
    argv, pids = sleeper_with_child(tmp_path)
    rc, _out, _err, timed_out = cli.run_process(argv, 0.5)
    assert timed_out and rc is not None
    for pid in read_pids(pids):
        assert wait_gone(pid)
