# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks work from the collection as users get it: built into a tarball, installed into an empty path."""

from __future__ import annotations

import os
import stat

from workflow_support import BIN, read_summary, recap, run

PLAYBOOKS = ["connect", "dev_setup", "intercept", "leave", "quit", "setup", "status", "uninstall"]
ROLES = ["telepresence", "telepresence_client", "telepresence_connection", "telepresence_intercept",
         "telepresence_manager", "telepresence_status", "telepresence_summary"]


def test_tarball_holds_every_playbook_and_role(installed_collection):
    root = installed_collection / "ansible_collections" / "devloop" / "telepresence"
    assert sorted(p.stem for p in (root / "playbooks").glob("*.yml")) == PLAYBOOKS
    assert sorted(p.name for p in (root / "roles").iterdir()) == ROLES
    assert (root / "inventories" / "example" / "hosts.yml").is_file()


def test_status_playbook_by_its_collection_name(sandbox):
    """`ansible-playbook devloop.telepresence.status`, no inventory: this machine, the sandbox's kubeconfig."""
    summary_path = os.path.join(sandbox["TP_SANDBOX_DIR"], "summary.json")
    client = os.path.join(sandbox["TP_SANDBOX_DIR"], "bin", "telepresence-2.24.0")
    argv = [str(BIN / "ansible-playbook"), "devloop.telepresence.status",
            "-e", "telepresence_binary_path=%s" % client, "-e", "telepresence_summary_path=%s" % summary_path]
    first = run(argv, env=sandbox)
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first.stdout)["localhost"]["changed"] == 0
    assert '"telepresence_summary_report": {' in first.stdout
    summary = read_summary(sandbox)
    assert list(summary) == ["status"]
    assert summary["status"]["client"] == {"path": client, "version": "2.24.0"}
    assert summary["status"]["status"]["connected"] is False
    assert summary["status"]["intercepts"] == []
    assert stat.S_IMODE(os.stat(summary_path).st_mode) == 0o600


def test_status_playbook_without_a_client_says_what_to_do(sandbox, tmp_path):
    """No client installed: the failure names the missing executable and how to install it, no traceback."""
    argv = [str(BIN / "ansible-playbook"), "devloop.telepresence.status",
            "-e", "telepresence_binary_dest=%s" % (tmp_path / "nothing" / "telepresence"),
            "-e", "telepresence_prefer_system=false"]
    result = run(argv, env=sandbox)
    assert result.returncode != 0
    assert "is not an executable file; install the client" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
