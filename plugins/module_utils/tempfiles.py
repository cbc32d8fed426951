# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Temporary files and folders of this collection: private from creation, owned, and cleaned by the next run.

Each module uses one recognisable prefix (``.tp_intercept-`` for env-file staging folders, ``tp_manager_`` for Helm
values, ``.telepresence-`` + ``.download`` for downloads, ``.tp-private-`` for the file :mod:`files` renames over a
user's file). Names are ``<prefix><pid>-<random><suffix>``. The
creating process holds an exclusive ``flock`` on the item (a folder's ``.owner.lock``, a file itself) until it
exits; the kernel drops that lock when the process dies, however it dies. So a later run can tell a leftover
(nobody holds its lock) from a live run's item (the lock is held) without looking at ages: a module killed with
SIGKILL loses its lock at once, a slow one keeps it for as long as it runs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import tempfile

OWNER_LOCK = ".owner.lock"
# Descriptors that hold the owner locks of this process's items; the locks end with the process.
_HELD = []


def private_dir(prefix, parent=None):
    """A new folder ``<parent>/<prefix><pid>-<random>``, 0700 from creation, locked by this process.

    Leftovers of dead runs with the same prefix in ``parent`` (default: the temporary folder) are removed first.
    """
    parent = parent or tempfile.gettempdir()
    remove_leftovers(parent, prefix)
    directory = tempfile.mkdtemp(prefix=_owned_prefix(prefix), dir=parent)  # mkdtemp creates it 0700
    descriptor = os.open(os.path.join(directory, OWNER_LOCK), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    _hold(descriptor)
    return directory


def private_file(prefix, suffix, parent):
    """A new file ``<parent>/<prefix><pid>-<random><suffix>``, 0600 from creation, locked by this process.

    Returns ``(descriptor, path)`` like ``mkstemp``; the lock survives closing the descriptor. Call
    :func:`remove_leftovers` first where leftovers should go (tp_binary does it under its folder lock).
    """
    descriptor, path = tempfile.mkstemp(prefix=_owned_prefix(prefix), suffix=suffix, dir=parent)
    # The lock is held through a read-only descriptor: a writable one left open would make the file impossible to
    # execute (ETXTBSY), and tp_binary test-runs the download before renaming it.
    _hold(os.open(path, os.O_RDONLY))
    return descriptor, path


def locked_file(prefix, parent):
    """A new file ``<parent>/<prefix><pid>-<random>``, 0600, created exclusively without following links.

    Returns ``(descriptor, path)``: a writable descriptor that holds the owner lock itself, so the lock ends when the
    caller closes it (after renaming the file away) or when the process dies. For a file that lives only until one
    rename; :func:`private_file` is for items that keep their lock until the process exits.
    """
    descriptor, path = tempfile.mkstemp(prefix=_owned_prefix(prefix), dir=parent)  # O_EXCL | O_NOFOLLOW, 0600
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        os.unlink(path)
        raise
    return descriptor, path


def remove_leftovers(parent, prefix, suffix=""):
    """Remove the items named ``<prefix><pid>-...<suffix>`` in ``parent`` whose owner process is gone."""
    pattern = re.compile(r"%s(\d+)-[A-Za-z0-9_]+%s\Z" % (re.escape(prefix), re.escape(suffix)))
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        path = os.path.join(parent, name)
        if not match or os.path.islink(path) or not _owner_gone(path, int(match.group(1))):
            continue
        try:
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def _owned_prefix(prefix):
    return "%s%d-" % (prefix, os.getpid())


def _hold(descriptor):
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD.append(descriptor)


def _owner_gone(path, pid):
    """Nobody holds the item's owner lock; without a lock file (killed right after creating it), the pid is dead."""
    lock_path = os.path.join(path, OWNER_LOCK) if os.path.isdir(path) else path
    try:
        descriptor = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return os.path.isdir(path) and not _pid_alive(pid)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(descriptor)
    return True


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True
