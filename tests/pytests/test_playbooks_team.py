# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a team sharing one cluster relies on, run by path from the checkout against a sandbox with a manager namespace
other than the default (tp-system): the shared traffic manager is never downgraded by one developer's older client."""

from __future__ import annotations

from workflow_support import BIN, ROOT, read_summary, run

MANAGER_NAMESPACE = "tp-system"


def setup(env, *extra):
    return run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "sandbox"),
                str(ROOT / "playbooks" / "setup.yml"), "-e", "telepresence_manager_namespace=%s" % MANAGER_NAMESPACE]
               + list(extra), env=env)


def test_downgrade_refused_then_allowed(sandbox):
    first = setup(sandbox, "-e", "telepresence_version=v2.25.0")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr
    assert read_summary(sandbox)["manager"]["version"] == "2.25.0"

    # An older TELEPRESENCE_VERSION in one developer's shell: the client follows it, the shared manager must not.
    refused = setup(dict(sandbox, TELEPRESENCE_VERSION="v2.24.0"))
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "refusing to downgrade the traffic manager from 2.25.0 (installed) to 2.24.0 (wanted)" in output, output[-4000:]
    assert "telepresence_manager_allow_downgrade" in output

    allowed = setup(dict(sandbox, TELEPRESENCE_VERSION="v2.24.0"), "-e", "telepresence_manager_allow_downgrade=true")
    assert allowed.returncode == 0, allowed.stdout[-4000:] + allowed.stderr
    manager = read_summary(sandbox)["manager"]
    assert (manager["action"], manager["version"], manager["namespace"]) == ("downgraded", "2.24.0", MANAGER_NAMESPACE)


GROUP_PLAYBOOK = """
- name: Every member of the action group under one module_defaults
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/devloop.telepresence.telepresence:
      kubeconfig: "{{ lookup('ansible.builtin.env', 'KUBECONFIG') }}"
      context: sandbox
      manager_namespace: tp-system
      binary_path: &bin "{{ lookup('ansible.builtin.env', 'TP_SANDBOX_DIR') }}/workstation/bin/telepresence"
  tasks:
    - name: Client
      devloop.telepresence.tp_binary:
        dest: *bin
        version: v2.24.0
        prefer_system: false
        base_url: "{{ lookup('ansible.builtin.env', 'TP_SANDBOX_MIRROR') }}"
        checksum_url: "{{ lookup('ansible.builtin.env', 'TP_SANDBOX_MIRROR') }}/v2.24.0/sha256sums.txt"
        allow_insecure_http: true
    - name: Manager
      devloop.telepresence.tp_manager:
      register: manager
    - name: Connection
      devloop.telepresence.tp_connection:
        namespace: app
      register: session
    - name: No intercept named cart
      devloop.telepresence.tp_intercept:
        name: cart
        namespace: app
        state: absent
    - name: Info
      devloop.telepresence.tp_info:
      register: info
    - name: What the defaults reached
      ansible.builtin.assert:
        that:
          - manager.namespace == 'tp-system'
          - session.status.manager_namespace == 'tp-system'
    - name: Quit
      devloop.telepresence.tp_connection:
        state: stopped
"""


def test_action_group_module_defaults_reach_every_member(sandbox, tmp_path):
    play = tmp_path / "group.yml"
    play.write_text(GROUP_PLAYBOOK)
    result = run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "sandbox"), str(play)], env=sandbox)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert "Unsupported parameters" not in result.stdout


def team_inventory(tmp_path, groups=None):
    """Hosts on this machine with the sandbox's variables, by group: two workstations unless ``groups`` says
    otherwise (a team inventory that --limit can cut)."""
    groups = groups or {"workstations": ["dana-dev", "erin-dev"]}
    inventory = tmp_path / "team"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(ROOT / "inventories" / "sandbox" / "group_vars")
    (inventory / "hosts.yml").write_text("all:\n  children:\n" + "".join(
        "    %s:\n      hosts:\n" % group
        + "".join("        %s:\n          ansible_connection: local\n"
                  "          ansible_python_interpreter: '{{ ansible_playbook_python }}'\n" % host for host in hosts)
        for group, hosts in groups.items()))
    return inventory


def test_limit_still_prints_the_summary(sandbox, tmp_path):
    result = run([str(BIN / "ansible-playbook"), "-i", str(team_inventory(tmp_path)), "--limit", "dana-dev",
                  str(ROOT / "playbooks" / "setup.yml")], env=sandbox)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert '"telepresence_summary_report": {' in result.stdout
    assert "erin-dev" not in result.stdout
    assert sorted(read_summary(sandbox)) == ["client"]


def succeeded(env, path, *extra, inventory=ROOT / "inventories" / "sandbox"):
    """ansible-playbook on ``inventory`` (the sandbox's), of PATH (a pathlib path) or of this collection's playbook
    of that name (a str); its stdout, after asserting that it succeeded."""
    if isinstance(path, str):
        path = ROOT / "playbooks" / ("%s.yml" % path)
    result = run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(path)] + list(extra), env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    return result.stdout


def test_bare_leave_reports_the_other_intercept(sandbox):
    succeeded(sandbox, "dev_setup", "-e", "telepresence_intercept_name=cart-dev")
    succeeded(sandbox, "status")
    intercept, = read_summary(sandbox)["status"]["intercepts"]
    assert intercept["name"] == "cart-dev" and intercept["ports"] == ["%s:http" % intercept["local_port"]]
    output = succeeded(sandbox, "leave")
    leave = read_summary(sandbox)["leave"]
    assert leave["action"] == "none"
    assert [item["name"] for item in leave["other_intercepts"]] == ["cart-dev"]
    assert "No intercept named fresh-app (telepresence_intercept_name) in this session, which has cart-dev" in output
    assert leave["message"].startswith("No intercept named fresh-app")
    succeeded(sandbox, "leave", "-e", "telepresence_intercept_name=cart-dev")
    left = read_summary(sandbox)["leave"]
    assert (left["action"], left["intercept"]["name"]) == ("removed", "cart-dev")


TWO_LEAVES = """
- name: A leave that finds nothing, then one that removes cart-dev, in one run
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Leave fresh-app, which the session does not have
      ansible.builtin.include_role:
        name: devloop.telepresence.telepresence_intercept
      vars:
        telepresence_intercept_state: absent
    - name: Leave cart-dev
      ansible.builtin.include_role:
        name: devloop.telepresence.telepresence_intercept
      vars:
        telepresence_intercept_state: absent
        telepresence_intercept_name: cart-dev
    - name: The summary
      ansible.builtin.include_role:
        name: devloop.telepresence.telepresence_summary
"""


def test_a_later_leave_does_not_report_what_an_earlier_one_read(sandbox, tmp_path):
    succeeded(sandbox, "dev_setup", "-e", "telepresence_intercept_name=cart-dev")
    playbook = tmp_path / "two-leaves.yml"
    playbook.write_text(TWO_LEAVES)
    output = succeeded(sandbox, playbook)
    assert "No intercept named fresh-app (telepresence_intercept_name) in this session, which has cart-dev" in output
    leave = read_summary(sandbox)["leave"]
    assert (leave["action"], leave["intercept"]["name"]) == ("removed", "cart-dev")
    assert "other_intercepts" not in leave and "message" not in leave, leave


def test_dev_setup_with_a_control_host_takes_the_quick_way_only_when_both_hosts_have_nothing_to_do(sandbox, tmp_path):
    """A workstation and a separate control host: each plans its own tasks (client and intercept; client and
    manager), the quick way skips the plays only when both have nothing to do, and reports what the plays would."""
    inventory = team_inventory(tmp_path, {"workstations": ["dana-dev"], "cluster_control": ["ops"]})
    first = succeeded(sandbox, "dev_setup", inventory=inventory)
    assert "skipping: no hosts matched" not in first
    quick = succeeded(sandbox, "dev_setup", inventory=inventory)
    assert quick.count("skipping: no hosts matched") == 4
    assert sorted(read_summary(sandbox)["hosts"]["dana-dev"]) == ["client", "connection", "intercept", "intercepts"]
    assert sorted(read_summary(sandbox)["hosts"]["ops"]) == ["client", "manager"]
    quick_summary = read_summary(sandbox)
    succeeded(sandbox, "dev_setup", "-e", "telepresence_dev_setup_plan=false", inventory=inventory)
    assert read_summary(sandbox) == quick_summary
    # Something to do on the control host only (new chart values): every play runs, on both hosts.
    values = succeeded(sandbox, "dev_setup", "-e", '{"telepresence_manager_values": {"agent": {"logLevel": "debug"}}}',
                       inventory=inventory)
    assert "skipping: no hosts matched" not in values
    assert read_summary(sandbox)["hosts"]["ops"]["manager"]["changed"] is True
    assert read_summary(sandbox)["hosts"]["dana-dev"]["intercept"]["changed"] is False
