# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which kubeconfig values are censored (issue 13): the credentials of the user the task's context uses, in every
form kubectl accepts."""
from __future__ import annotations

import json

from ansible_collections.devloop.telepresence.plugins.module_utils import common

KUBECONFIG = """apiVersion: v1
current-context: dev
contexts:
- name: dev
  context: {cluster: c, user: dev}
- name: other
  context: {cluster: c, user: other}
- name: files
  context: {cluster: c, user: from-file}
- name: plugin
  context: {cluster: c, user: plugin}
- name: oidc
  context: {cluster: c, user: oidc}
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1", certificate-authority-data: Q0EtREFUQS1OT1QtU0VDUkVU}
users:
- name: dev
  user:
    token: |
      block-scalar-token-1234
    client-certificate-data: Q0VSVC1EQVRBLTEyMzQ=
    client-key-data: S0VZLURBVEEtMTIzNA==
    username: admin
    password: hunter2-long
- name: other
  user: {token: other-users-token-9876}
- name: from-file
  user: {tokenFile: token.txt}
- name: plugin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: get-token
      env: [{name: SSO_SECRET, value: exec-env-secret-4321}]
- name: oidc
  user:
    auth-provider:
      name: oidc
      config: {client-id: kubernetes, client-secret: oidc-client-secret, id-token: oidc-id-token-5555,
               refresh-token: oidc-refresh-6666, idp-issuer-url: "https://sso.example"}
"""


def write(tmp_path):
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    (tmp_path / "token.txt").write_text("echoed-token-file-7777\n")
    return str(path)


def test_only_the_current_contexts_user_in_every_form(tmp_path):
    found = common.kubeconfig_secrets(write(tmp_path))
    assert found == {"block-scalar-token-1234\n", "block-scalar-token-1234", "Q0VSVC1EQVRBLTEyMzQ=",
                     "S0VZLURBVEEtMTIzNA==", "hunter2-long"}
    assert "admin" not in found and "Q0EtREFUQS1OT1QtU0VDUkVU" not in found


def test_token_file_relative_to_the_kubeconfig_trimmed_and_raw(tmp_path):
    found = common.kubeconfig_secrets(write(tmp_path), "files")
    assert found == {"echoed-token-file-7777\n", "echoed-token-file-7777"}


def test_exec_env_values_and_auth_provider_secrets(tmp_path):
    path = write(tmp_path)
    assert common.kubeconfig_secrets(path, "plugin") == {"exec-env-secret-4321"}
    assert common.kubeconfig_secrets(path, "oidc") == {"oidc-client-secret", "oidc-id-token-5555",
                                                       "oidc-refresh-6666"}


def test_unknown_context_censors_every_user(tmp_path):
    found = common.kubeconfig_secrets(write(tmp_path), "nope")
    assert {"other-users-token-9876", "hunter2-long", "exec-env-secret-4321", "echoed-token-file-7777"} <= found


def test_merged_files_first_definition_wins(tmp_path, monkeypatch):
    first = tmp_path / "a.json"
    first.write_text(json.dumps({"current-context": "x", "contexts": [{"name": "x", "context": {"user": "u"}}],
                                 "users": [{"name": "u", "user": {"token": "first-file-token"}}]}))
    second = tmp_path / "b.json"
    second.write_text(json.dumps({"users": [{"name": "u", "user": {"token": "shadowed-token"}}]}))
    monkeypatch.setenv("KUBECONFIG", "%s:%s" % (first, second))
    assert common.kubeconfig_secrets() == {"first-file-token"}
    assert common.kubeconfig_user()["file"] == str(first)


def test_protect_never_fails_and_uses_the_context_option(tmp_path):
    class Module:
        params = {"kubeconfig": write(tmp_path), "context": "other"}
        no_log_values = set()
    common.protect_kubeconfig_secrets(Module)
    assert Module.no_log_values == {"other-users-token-9876"}
    Module.params = {"kubeconfig": str(tmp_path / "missing"), "context": None}
    common.protect_kubeconfig_secrets(Module)
