# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files the collection writes for the user (env files, the run's summary): private from creation, owned by the
user they are for, and never another user's file or a symbolic link taken over.

The destination's directory may be shared (``/tmp``): another user can create the path first, as a file of theirs
or as a symbolic link. :func:`target_problem` refuses both (run it before any change, as a pre-flight), and
:func:`write_private` writes a temporary file created exclusively (``O_EXCL | O_NOFOLLOW``, mode 0600) next to the
destination and renames it over the destination, which replaces a directory entry and never follows a link. That
file is named and locked the way :mod:`tempfiles` names its items, so a crash's leftover is swept by the next write.
"""

from __future__ import annotations

import os
import pwd
import stat

from ansible_collections.devloop.telepresence.plugins.module_utils import tempfiles

TEMP_PREFIX = ".tp-private-"


class FileRefused(Exception):
    """The destination cannot be written for the user; the message names the path, its owner and the fix."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "uid %d" % uid


def describe_owner(uid):
    name = user_name(uid)
    return name if name.startswith("uid ") else "%s (uid %d)" % (name, uid)


def target_owner(owner=None, environ=None):
    """``(uid, gid)`` the file is for: ``owner`` (a user name or uid) when given; else, when running as root
    under sudo (``become``), the invoking user from ``SUDO_UID``/``SUDO_GID``; else the effective user.

    Raises FileRefused when ``owner`` names no user.
    """
    environ = os.environ if environ is None else environ
    if owner not in (None, ""):
        text = str(owner)
        try:
            entry = pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
        except (KeyError, ValueError, OverflowError):
            raise FileRefused("owner %s is not a user of this host; give an existing user name or uid" % text)
        return entry.pw_uid, entry.pw_gid
    if os.geteuid() == 0 and str(environ.get("SUDO_UID", "")).isdigit():
        uid = int(environ["SUDO_UID"])
        gid = environ.get("SUDO_GID", "")
        return uid, int(gid) if str(gid).isdigit() else pwd.getpwuid(uid).pw_gid
    return os.geteuid(), os.getegid()


def option_target(path, owner):
    """``(path, uid)`` as tp_private_file sees its options ``path`` (type path: ``~`` and variables expanded) and
    ``owner``, for the filters that run its checks in the controller's process. Raises FileRefused as target_owner."""
    return os.path.expanduser(os.path.expandvars(str(path))), target_owner(owner or None)[0]


def target_problem(path, uid):
    """None when ``path`` may be written for user ``uid`` (absent, or a regular file ``uid`` owns), else why not."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return "%s cannot be inspected: %s" % (path, exc.strerror)
    if stat.S_ISLNK(info.st_mode):
        return ("%s is a symbolic link owned by %s; it is not followed: remove it or choose another path"
                % (path, describe_owner(info.st_uid)))
    if not stat.S_ISREG(info.st_mode):
        return "%s exists and is not a regular file (owned by %s); choose another path" % (path, describe_owner(info.st_uid))
    if info.st_uid != uid:
        return ("%s belongs to %s, not to %s, who the file is for; it is not replaced: remove it (or have its owner "
                "remove it) or choose another path" % (path, describe_owner(info.st_uid), describe_owner(uid)))
    return None


def check_target(path, uid):
    problem = target_problem(path, uid)
    if problem:
        raise FileRefused(problem)


def check_location(path):
    """``path`` is absolute and its directory exists (what tp_private_file asks before anything else)."""
    if not os.path.isabs(path):
        raise FileRefused("path must be an absolute path, got %s" % path)
    if not os.path.isdir(os.path.dirname(path)):
        raise FileRefused("path %s: the directory %s does not exist" % (path, os.path.dirname(path)))


def check_writable(path, uid):
    """What write_private would refuse or fail at for ``path``, found without writing (a pre-flight)."""
    check_location(path)
    check_target(path, uid)
    folder = os.path.dirname(path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileRefused("path %s cannot be written: the directory %s is not writable for this user; choose another "
                          "path" % (path, folder))


def write_private(path, data, uid, gid):
    """Write ``data`` (bytes) to ``path`` as a 0600 file owned by ``uid``:``gid``, whole or not at all.

    Raises FileRefused when the destination belongs to someone else or is not a regular file, OSError when
    the directory refuses the write; no temporary file is left either way.
    """
    check_target(path, uid)
    directory = os.path.dirname(os.path.abspath(path))
    # The temporary file carries tempfiles' owner-lock naming: one left by a run killed before its rename is
    # recognised (nobody holds its lock) and removed here by the next write into the same folder.
    tempfiles.remove_leftovers(directory, TEMP_PREFIX)
    try:
        fd, temp = tempfiles.locked_file(TEMP_PREFIX, directory)
    except OSError as exc:
        raise FileRefused("cannot create a temporary file in %s next to %s: %s" % (directory, path, exc.strerror))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise FileRefused("the temporary file %s is not a fresh regular file; refusing to write %s" % (temp, path))
        os.fchmod(fd, 0o600)  # whatever the umask
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        check_target(path, uid)  # again: the pre-flight may be long ago
        os.replace(temp, path)  # renames over the entry; a link planted meanwhile is replaced, not followed
        temp = None
    finally:  # the descriptor holds the owner lock: closed only once the file is renamed or removed
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
        os.close(fd)


def holds(path, data, uid):
    """True when ``path`` is already the 0600 regular file of ``uid`` holding ``data`` (bytes): nothing to write."""
    try:
        info = os.lstat(path)
        return info.st_uid == uid and info.st_mode & 0o7777 == 0o600 and read_nofollow(path) == data
    except (OSError, FileRefused):
        return False


def read_nofollow(path, limit=64 * 1024 * 1024):
    """The bytes of a regular file, refusing a symbolic link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileRefused("%s is not a regular file" % path)
        chunks = []
        size = 0
        while size < limit:
            chunk = os.read(fd, 1024 * 1024)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
