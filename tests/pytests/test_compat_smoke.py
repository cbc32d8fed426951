# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The seed workflow on whatever ansible-core runs this file: dev_setup, a no-op re-run, leave, quit.

The compatibility phase (tests/tools/run-phases compat) runs it with the Python of each pinned controller venv
(ansible-core 2.16 and 2.21), so ansible-playbook, the modules' interpreter and the collection copy are that venv's.
"""

from __future__ import annotations

from workflow_support import BIN, ROOT, read_summary, recap, run


def playbook(name, env):
    result = run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "sandbox"),
                  str(ROOT / "playbooks" / ("%s.yml" % name))], env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    return recap(result.stdout)["localhost"]


def test_dev_setup_rerun_leave_quit(sandbox):
    version = run([str(BIN / "ansible"), "--version"], env=sandbox).stdout.splitlines()[0]
    assert playbook("dev_setup", sandbox)["changed"] > 0, version
    summary = read_summary(sandbox)
    assert summary["intercept"]["intercept"]["disposition"] == "ACTIVE", version
    assert playbook("dev_setup", sandbox)["changed"] == 0, "%s: the re-run changed something" % version
    assert playbook("leave", sandbox)["changed"] > 0, version
    assert playbook("quit", sandbox)["changed"] > 0, version
    assert read_summary(sandbox)["quit"]["status"]["connected"] is False, version
