"""Offline stand-in for get-pip.py, used by ansible-test when it bootstraps pip into a venv.

ansible-test runs this file with the venv's interpreter and passes the pip requirement
(e.g. ``pip==24.2``) as arguments. ensurepip gives a working pip without the network;
the requested version is then installed from the package index this machine can reach.
"""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
wanted = [arg for arg in sys.argv[1:] if not arg.startswith("-")] or ["pip"]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet"] + wanted)
