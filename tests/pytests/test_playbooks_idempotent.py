# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every playbook, run by path from the checkout against a sandbox: the first run acts, a second run changes nothing
(changed=0 in the recap), and each prints and writes its one JSON summary with the keys it documents."""

from __future__ import annotations

from workflow_support import BIN, ROOT, read_summary, recap, run

# In workflow order, so each playbook has something to do on its first run.
SEQUENCE = [
    ("setup", ["client", "manager"]),
    ("connect", ["client", "connection"]),
    ("intercept", ["client", "connection", "intercept", "intercepts"]),
    ("leave", ["intercepts", "leave"]),
    ("quit", ["quit"]),
    ("status", ["status"]),
    ("uninstall", ["manager"]),
    ("dev_setup", ["client", "connection", "intercept", "intercepts", "manager"]),
]
# The first run of status only reads.
READ_ONLY = {"status"}


def parts(summary):
    """Every object of the summary: its parts, and the items of a list part (intercepts: one per engagement)."""
    return [item for value in summary.values() for item in (value if isinstance(value, list) else [value])]


def playbook(name, env, *extra):
    result = run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "sandbox"),
                  str(ROOT / "playbooks" / ("%s.yml" % name))] + list(extra), env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    # ansible-core 2.19 warns when a task name's template fails, even one it shows in full (the record task's, which
    # once rendered the intercept role's warning for a leave that never ran).
    assert "template error" not in result.stdout + result.stderr, name
    return recap(result.stdout)["localhost"], result.stdout


def test_every_playbook_twice(sandbox):
    for name, keys in SEQUENCE:
        first, output = playbook(name, sandbox)
        summary = read_summary(sandbox)
        assert sorted(summary) == keys, name
        assert '"telepresence_summary_report": {' in output, name
        if name not in READ_ONLY:
            assert first["changed"] > 0, name
        if name == "leave":
            # The intercept it removed, not null.
            assert summary["leave"]["action"] == "removed" and summary["leave"]["intercept"]["name"] == "fresh-app"
        second = playbook(name, sandbox)[0]
        assert second["changed"] == 0, "%s changed something on its second run" % name
        assert sorted(read_summary(sandbox)) == keys, name
        assert not any(part.get("changed") for part in parts(read_summary(sandbox))), name
        if "connection" in keys:
            # Known on a run that changed nothing too (issue 14).
            assert read_summary(sandbox)["connection"]["status"]["client_version"] == "2.24.0", name


def test_check_mode_changes_nothing(sandbox):
    """After setup, dev_setup --check says it would connect and intercept, and does neither.

    (On a machine without the client, --check stops at the first task that needs it: the client is not there to ask.)
    """
    playbook("setup", sandbox)
    result = run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "sandbox"),
                  str(ROOT / "playbooks" / "dev_setup.yml"), "--check"], env=sandbox)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    summary = read_summary(sandbox)
    assert summary["connection"]["changed"] and summary["connection"]["action"] == "connected"
    assert summary["intercept"]["changed"] and summary["intercept"]["action"] == "created"
    assert not summary["client"]["changed"] and summary["manager"]["action"] == "none"
    playbook("status", sandbox)
    after = read_summary(sandbox)["status"]
    assert after["status"]["connected"] is False
    assert after["intercepts"] == []


def test_dev_setup_that_has_nothing_to_do_takes_the_quick_way(sandbox):
    """A re-run that tp_plan finds nothing to do for skips the four plays and reports what they would have; a run
    with something to do (the intercept was left) runs them (issue 16)."""
    playbook("dev_setup", sandbox)
    quick, output = playbook("dev_setup", sandbox)
    assert quick["changed"] == 0
    assert "TASK [Check them in one module run]" in output
    assert output.count("skipping: no hosts matched") == 4, output[-3000:]
    assert "TASK [devloop.telepresence.telepresence_client : Make sure the pinned" not in output
    quick_summary = read_summary(sandbox)
    every_play, output = playbook("dev_setup", sandbox, "-e", "telepresence_dev_setup_plan=false")
    assert every_play["changed"] == 0 and "skipping: no hosts matched" not in output
    assert read_summary(sandbox) == quick_summary
    playbook("leave", sandbox)
    again, output = playbook("dev_setup", sandbox)
    assert again["changed"] > 0 and "skipping: no hosts matched" not in output
    assert read_summary(sandbox)["intercept"]["action"] == "created"
