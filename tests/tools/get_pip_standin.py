"""Offline stand-in for get-pip.py, used by ansible-test when it bootstraps pip into a venv.

ansible-test runs this file with the venv's interpreter and passes the pip requirement
(e.g. ``pip==24.2``) as arguments. ensurepip gives a working pip without the network; it only
downloads the requested wheel from the package index this machine can reach. That wheel then installs
itself, run from the wheel file as get-pip does: an old pip upgrading itself in place fails on some
interpreters (pip 23.2 to 25.2 on Python 3.12 loses its vendored resolvelib mid-run).
"""
import glob
import os
import subprocess
import sys
import tempfile

wanted = [arg for arg in sys.argv[1:] if not arg.startswith("-")] or ["pip"]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
with tempfile.TemporaryDirectory(prefix="get-pip-standin-") as wheels:
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
                           "--no-deps", "--only-binary", ":all:", "-d", wheels] + wanted)
    pip_wheel = sorted(glob.glob(os.path.join(wheels, "pip-*.whl")))[-1]
    subprocess.check_call([sys.executable, os.path.join(pip_wheel, "pip"), "install", "--disable-pip-version-check",
                           "--quiet", "--no-index", "--find-links", wheels] + wanted)
