"""Helpers shared by the workflow suites (importable by name; conftest.py holds only fixtures).

A module of its own because several test folders have a conftest.py: importing names from "conftest" picks
whichever was loaded first.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


BIN = Path(sys.executable).parent


RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def run(argv, env=None, timeout=300, cwd=None):
    """Run argv; return the CompletedProcess (text, both streams)."""
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def recap(output):
    """{host: {"ok", "changed", "unreachable", "failed"}} from ansible-playbook's PLAY RECAP."""
    return {host: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, counts)))
            for host, *counts in RECAP_RE.findall(output)}


def read_summary(env):
    with open(os.path.join(env["TP_SANDBOX_DIR"], "summary.json")) as handle:
        return json.load(handle)
