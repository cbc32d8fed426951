# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options every devloop.telepresence module shares (module_utils/common.py COMMON_ARGUMENT_SPEC)."""

    DOCUMENTATION = r"""
options:
  binary_path:
    description:
      - Path of the C(telepresence) executable.
      - When not set, the first C(telepresence) on E(PATH) is used.
    type: path
    version_added: 0.1.0
  kubeconfig:
    description:
      - Kubeconfig file for the cluster, passed to the CLI as C(--kubeconfig) and to the Kubernetes client.
      - A list of files separated by C(:) is passed to the CLI through E(KUBECONFIG), as kubectl reads it.
      - When not set, E(K8S_AUTH_KUBECONFIG), then E(KUBECONFIG), then C(~/.kube/config).
    type: path
    version_added: 0.1.0
  context:
    description:
      - Kubeconfig context to use, passed as C(--context).
      - When not set, E(K8S_AUTH_CONTEXT), then the kubeconfig's current context.
    type: str
    version_added: 0.1.0
  manager_namespace:
    description:
      - Namespace of the Telepresence traffic manager, always passed explicitly as C(--manager-namespace).
      - When not set, E(TELEPRESENCE_MANAGER_NAMESPACE), then V(ambassador).
      - Must be a DNS-1123 label.
    type: str
    default: ambassador
    version_added: 0.1.0
  timeout:
    description:
      - Seconds one Telepresence CLI call or Kubernetes API call may take before it is stopped and the task fails.
      - Must be positive.
    type: int
    default: 60
    version_added: 0.1.0
requirements:
  - The C(telepresence) client, installed by M(devloop.telepresence.tp_binary) or on E(PATH).
notes:
  - Every CLI call runs with E(LC_ALL=C), without standard input and in its own process group, which is killed when
    O(timeout) expires, so a task never waits on a password prompt or a hung command.
  - Windows hosts are not supported by these Python modules.
"""

    KUBERNETES = r"""
options: {}
requirements:
  - The C(kubernetes) Python library on the host that runs the task (C(pip install kubernetes)).
"""
