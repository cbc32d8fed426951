"""Mirror the checkout into .build/collections/ansible_collections/devloop/telepresence for ansible-test.

ansible-test needs the collection at a real .../ansible_collections/<namespace>/<name> path. The copy keeps
its own tests/output (ansible-test's caches and results) across runs and drops everything else that is gone.
"""
import os
import shutil
import sys

SKIP_TOP = {".venv", ".build", ".git", ".sandbox", ".ansible", ".pytest_cache"}
SKIP_ANY = {"__pycache__"}
KEEP_IN_COPY = {".git", os.path.join("tests", "output"), os.path.join("tests", "integration", "inventory")}


def wanted(relative):
    parts = relative.split(os.sep)
    return parts[0] not in SKIP_TOP and not SKIP_ANY.intersection(parts) and relative not in KEEP_IN_COPY


def sync(source, dest):
    os.makedirs(dest, exist_ok=True)
    for directory, subdirs, files in os.walk(dest, topdown=True):
        rel_dir = os.path.relpath(directory, dest)
        subdirs[:] = [d for d in subdirs if os.path.normpath(os.path.join(rel_dir, d)) not in KEEP_IN_COPY]
        for name in subdirs + files:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if not os.path.lexists(os.path.join(source, rel)) or not wanted(rel):
                target = os.path.join(dest, rel)
                shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.remove(target)
    for directory, subdirs, files in os.walk(source, topdown=True):
        rel_dir = os.path.relpath(directory, source)
        subdirs[:] = [d for d in subdirs if wanted(os.path.normpath(os.path.join(rel_dir, d)))]
        os.makedirs(os.path.join(dest, rel_dir), exist_ok=True)
        for name in files:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            src, dst = os.path.join(source, rel), os.path.join(dest, rel)
            if wanted(rel) and not _same(src, dst):
                shutil.copy2(src, dst, follow_symlinks=False)


def _same(src, dst):
    try:
        a, b = os.lstat(src), os.lstat(dst)
    except OSError:
        return False
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime) and a.st_mode == b.st_mode


if __name__ == "__main__":
    sync(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
