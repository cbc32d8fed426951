# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""files.py: private files for the user, never another user's file or a followed link (issue 13)."""
from __future__ import annotations

import os
import pwd
import re
import stat

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils import files, tempfiles

NOBODY = pwd.getpwnam("nobody")
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="planting another user's file needs root")  # the suite runs as root


def test_write_private_creates_0600_whole_and_leaves_no_temp(tmp_path):
    path = tmp_path / "app.env"
    old_umask = os.umask(0)
    try:
        files.write_private(str(path), b"A=1\n", os.geteuid(), os.getegid())
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"A=1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["app.env"]


def test_write_private_replaces_the_users_own_file(tmp_path):
    path = tmp_path / "app.env"
    path.write_text("old\n")
    path.chmod(0o644)
    files.write_private(str(path), b"new\n", os.geteuid(), os.getegid())
    assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_symbolic_link_is_refused_and_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    link = tmp_path / "app.env"
    link.symlink_to(victim)
    with pytest.raises(files.FileRefused, match="app.env is a symbolic link owned by .*it is not followed"):
        files.write_private(str(link), b"A=1\n", os.geteuid(), os.getegid())
    assert victim.read_text() == "keep\n" and link.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["app.env", "victim"]


def test_a_directory_is_refused(tmp_path):
    assert "is not a regular file" in files.target_problem(str(tmp_path), os.geteuid())


@needs_root
def test_another_users_file_is_refused_naming_its_owner(tmp_path):
    path = tmp_path / "app.env"
    path.write_text("LD_PRELOAD=/tmp/evil.so\n")
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(files.FileRefused) as refused:
        files.write_private(str(path), b"A=1\n", 0, 0)
    assert "belongs to nobody (uid %d)" % NOBODY.pw_uid in refused.value.msg and str(path) in refused.value.msg
    assert path.read_text() == "LD_PRELOAD=/tmp/evil.so\n" and path.stat().st_uid == NOBODY.pw_uid
    assert os.listdir(tmp_path) == ["app.env"]


@needs_root
def test_written_for_another_user_is_owned_by_them(tmp_path):
    path = tmp_path / "app.env"
    files.write_private(str(path), b"A=1\n", NOBODY.pw_uid, NOBODY.pw_gid)
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o600)


@needs_root
def test_target_owner_under_sudo_is_the_invoking_user():
    assert files.target_owner(environ={"SUDO_UID": str(NOBODY.pw_uid), "SUDO_GID": "4242"}) == (NOBODY.pw_uid, 4242)
    assert files.target_owner(environ={}) == (0, os.getegid())


def test_target_owner_explicit():
    assert files.target_owner("nobody", environ={"SUDO_UID": "0"}) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert files.target_owner(str(NOBODY.pw_uid)) == (NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(files.FileRefused, match="owner no-such-user-x is not a user of this host"):
        files.target_owner("no-such-user-x")


def test_read_nofollow_refuses_links(tmp_path):
    target = tmp_path / "t"
    target.write_text("x")
    (tmp_path / "l").symlink_to(target)
    assert files.read_nofollow(str(target)) == b"x"
    with pytest.raises(OSError):
        files.read_nofollow(str(tmp_path / "l"))


def _crashed_writer_leftover(directory):
    """A child process creates write_private's temporary file and dies before renaming it (as a killed run would)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(reader)
        _fd, path = tempfiles.locked_file(files.TEMP_PREFIX, str(directory))
        os.write(writer, path.encode())
        os._exit(0)  # no cleanup: the kernel drops the lock, the file stays
    os.close(writer)
    path = os.read(reader, 4096).decode()
    os.close(reader)
    os.waitpid(pid, 0)
    return path


def test_the_temporary_file_uses_the_owner_lock_naming(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(source, destination):
        name = os.path.basename(source)
        seen.append(name)
        # while it exists, the running write holds its lock: a sweep by another run keeps it
        assert tempfiles.remove_leftovers(str(tmp_path), files.TEMP_PREFIX) == []
        real_replace(source, destination)

    monkeypatch.setattr(files.os, "replace", spy)
    files.write_private(str(tmp_path / "app.env"), b"A=1\n", os.geteuid(), os.getegid())
    assert len(seen) == 1 and re.fullmatch(r"\.tp-private-%d-[A-Za-z0-9_]+" % os.getpid(), seen[0])
    assert os.listdir(tmp_path) == ["app.env"]


def test_a_crashed_runs_temporary_file_is_swept_by_the_next_write(tmp_path):
    leftover = _crashed_writer_leftover(tmp_path)
    assert os.path.exists(leftover) and os.path.basename(leftover).startswith(files.TEMP_PREFIX)
    files.write_private(str(tmp_path / "app.env"), b"A=1\n", os.geteuid(), os.getegid())
    assert os.listdir(tmp_path) == ["app.env"]


def test_a_live_runs_temporary_file_is_kept(tmp_path):
    descriptor, path = tempfiles.locked_file(files.TEMP_PREFIX, str(tmp_path))
    try:
        files.write_private(str(tmp_path / "app.env"), b"A=1\n", os.geteuid(), os.getegid())
        assert sorted(os.listdir(tmp_path)) == sorted(["app.env", os.path.basename(path)])
    finally:
        os.close(descriptor)
        os.unlink(path)
