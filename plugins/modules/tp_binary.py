#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tp_binary
short_description: Install a pinned, checksum-verified Telepresence client
version_added: 0.1.0
description:
  - Makes sure the Telepresence client of a pinned release is available, the way the seed workflow's C(tp:setup)
    did, but verified, atomic and idempotent.
  - When O(dest) already holds the pinned version (and matches the known digest, when one is known), nothing
    happens and exactly one C(telepresence version) call is made.
  - Otherwise, with O(prefer_system), a C(telepresence) found on E(PATH) that reports the pinned version is used
    as is and nothing is downloaded.
  - Otherwise the release artifact C(<base_url>/v<X.Y.Z>/telepresence-<os>-<arch>) is streamed into a temporary
    file in the folder of O(dest), hashed while it streams, verified against the known digest, made executable
    (C(0755)), run with C(version) to check it reports the pin, and only then renamed over O(dest) atomically.
    On any failure the previous O(dest) is untouched and no temporary file is left behind.
  - Before a binary is replaced, C(telepresence status) tells which daemons run and from which executable. Daemons
    started from the O(dest) being replaced (real paths compared; or, when the status names no executable, of its
    version) are stopped with C(telepresence quit -s) when their version differs from the new one, because the
    next C(connect) would otherwise fail with a version mismatch. Daemons of another executable (another
    client's install) are never stopped, and nothing is stopped when O(dest) did not exist; when such daemons
    run another version, a warning says how to stop them.
  - "Checksum precedence: the O(checksum) option, then the digest listed for the artifact in O(checksum_url),
    then the built-in table of published digests. Whichever is known is always enforced. An explicit digest that
    differs from the published one wins (for example an internal rebuild) and a warning says so."
  - Several runs at once on the same O(dest) (or the same folder) are serialised by a lock on the folder itself,
    which leaves no file behind; each run succeeds and one valid binary remains.
author:
  - devloop.telepresence maintainers (@devloop)
options:
  version:
    description:
      - Release to install, V(X.Y.Z) or V(vX.Y.Z), for example V(v2.24.0).
      - Partial versions (V(2.24)), V(latest) and anything else that is not an exact release are refused so the
        pin stays reproducible.
      - When not set, E(TELEPRESENCE_VERSION), then V(v2.24.0).
    type: str
    default: v2.24.0
    version_added: 0.1.0
  dest:
    description:
      - Path of the client executable to manage.
      - Must be absolute after C(~) expansion, and must not be an existing folder. Missing parent folders are
        created (mode C(0755)).
    type: path
    default: ~/.local/bin/telepresence
    version_added: 0.1.0
  state:
    description:
      - V(present) installs or validates the client.
      - V(absent) removes O(dest); daemons started from it are stopped first (C(quit -s)), and only when some
        run. An O(dest) that does not exist is left alone (C(changed=false)).
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
  prefer_system:
    description:
      - Use the first C(telepresence) on E(PATH) (other than O(dest)) when it reports the pinned version; nothing
        is downloaded then and RV(source=system).
      - O(dest) is inspected first; when it already holds the pin it is used and E(PATH) is not searched.
      - A system binary is accepted on its version alone (distribution packages build their own binaries);
        RV(checksum_verified) says whether it matches a digest known without a download.
    type: bool
    default: true
    version_added: 0.1.0
  base_url:
    description:
      - Base URL of the release downloads, in GitHub's layout C(<base_url>/v<X.Y.Z>/telepresence-<os>-<arch>).
      - An air-gapped mirror is just another base URL.
      - Must be C(https://), or C(http://) with O(allow_insecure_http=true).
    type: str
    default: https://github.com/telepresenceio/telepresence/releases/download
    version_added: 0.1.0
  checksum:
    description:
      - Expected SHA-256 digest of the artifact, V(sha256:<64 hex digits>) or the 64 hex digits alone.
      - Takes precedence over O(checksum_url) and over the built-in table.
    type: str
    version_added: 0.1.0
  checksum_url:
    description:
      - URL of a checksum file with C(<hex>  <name>) lines (C(sha256sum) output), or holding a single digest.
        Binary-mode lines C(<hex> *<name>) and BSD-style lines (C(SHA256), the name in parentheses, C(=), the
        digest) are accepted too.
      - The line for C(telepresence-<os>-<arch>) is used. When the file lists no such line, a warning is given and
        the built-in table is consulted.
      - Fetched (with the same O(timeout), O(retries) and O(validate_certs)) only outside check mode.
      - Must be C(https://), or C(http://) with O(allow_insecure_http=true).
    type: str
    version_added: 0.1.0
  checksum_policy:
    description:
      - What to do when no digest is known for the artifact (no O(checksum), nothing in O(checksum_url), not in
        the built-in table).
      - V(warn) installs it, warns, and returns its digest in RV(sha256) so it can be pinned with O(checksum).
      - V(require) refuses to download it. An existing O(dest) that already reports the pin is still accepted.
    type: str
    choices: [warn, require]
    default: warn
    version_added: 0.1.0
  allow_insecure_http:
    description:
      - Allow plain C(http://) in O(base_url) and O(checksum_url), and redirects from C(https://) to C(http://).
      - Only for a trusted internal mirror; anyone on the network path could replace the binary.
    type: bool
    default: false
    version_added: 0.1.0
  verify_in_check_mode:
    description:
      - In check mode, fetch O(checksum_url) too and check an existing O(dest) against its digest, as a run that is
        not in check mode does. Without it, check mode reads only local state and an existing O(dest) that reports
        the pinned version counts as up to date.
      - M(devloop.telepresence.tp_plan) sets it, so that its check decides as the task itself would.
    type: bool
    default: false
    version_added: 0.1.0
  force:
    description:
      - Download and replace O(dest) even when it, or a system binary, already reports the pinned version.
    type: bool
    default: false
    version_added: 0.1.0
  validate_certs:
    description:
      - Verify TLS certificates of O(base_url) and O(checksum_url). Set to V(false) only for a mirror you trust.
    type: bool
    default: true
    version_added: 0.1.0
  timeout:
    description:
      - Seconds one download attempt may take, from the request to the last byte (a stalled or trickling
        download is stopped, then retried).
      - Each Telepresence CLI call is limited to the smaller of this value and 60 seconds.
      - Must be positive.
    type: int
    default: 300
    version_added: 0.1.0
  retries:
    description:
      - How many more download attempts follow a failure that may be transient (HTTP 5xx, 408 or 429, refused or
        reset connections, timeouts, a body cut short), waiting 1, 2, 4... seconds (at most 30) in between.
      - A 404 (no such release or platform), other 4xx answers, certificate errors and digest mismatches are never
        retried.
      - Must be 0 or more.
    type: int
    default: 3
    version_added: 0.1.0
  kubeconfig:
    description:
      - Accepted and ignored, so that O(kubeconfig), O(context), O(manager_namespace) and O(binary_path) set for the
        whole C(group/devloop.telepresence.telepresence) in C(module_defaults) reach this member too; installing the
        client needs no cluster.
    type: path
    version_added: 0.1.0
  context:
    description:
      - Accepted and ignored (see O(kubeconfig)).
    type: str
    version_added: 0.1.0
  manager_namespace:
    description:
      - Accepted and ignored (see O(kubeconfig)).
    type: str
    version_added: 0.1.0
  binary_path:
    description:
      - Accepted and ignored (see O(kubeconfig)); where the client goes is O(dest).
    type: path
    version_added: 0.1.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Decides from local state only (the file, its digest, one C(version) call of an existing binary); never
        downloads (not even O(checksum_url)) and never writes.
  diff_mode:
    support: full
    details:
      - Shows the binary path and version before and after.
  platform:
    platforms: posix
    support: full
    details:
      - Linux and macOS (Darwin) on amd64 and arm64. Windows hosts are out of scope for these Python modules.
requirements:
  - Linux or macOS on an x86_64/amd64 or aarch64/arm64 CPU.
notes:
  - The built-in digests come from the official Homebrew tap and cover v2.24.0 and v2.24.1 for linux-amd64,
    darwin-amd64 and darwin-arm64. For other versions or platforms give O(checksum) or O(checksum_url), or
    pin the digest returned in RV(sha256) after a first install.
  - Release downloads from GitHub publish no checksum file, so O(checksum_url) is mostly useful with a mirror.
  - In check mode O(checksum_url) is not fetched, so an existing O(dest) that reports the pin is assumed valid
    when only O(checksum_url) could tell its digest.
  - Temporary files are named C(.telepresence-*.download) in the folder of O(dest); leftovers of a run that was
    killed are removed by the next run that installs into that folder.
  - Windows is not supported; install the client there with the official C(.zip) or setup executable.
  - As for every module that returns a C(path), ansible-core adds the file's C(uid), C(gid), C(owner), C(group),
    C(mode), C(state) and C(size) to the result.
seealso:
  - module: devloop.telepresence.tp_connection
  - module: devloop.telepresence.tp_manager
  - name: Telepresence client installation
    description: Official installation instructions and release artifacts.
    link: https://telepresence.io/docs/install/client
"""

EXAMPLES = r"""
- name: Install the pinned client into ~/.local/bin (or use a matching system telepresence)
  devloop.telepresence.tp_binary:
    version: v2.24.0
  register: tp_client

- name: Use the installed client in the other modules
  devloop.telepresence.tp_connection:
    binary_path: "{{ tp_client.path }}"
    namespace: app

- name: Upgrade to a release the built-in table does not know, pinning its digest
  devloop.telepresence.tp_binary:
    version: 2.25.0
    checksum: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

- name: Install from an internal mirror that publishes sha256sums.txt next to the artifacts
  devloop.telepresence.tp_binary:
    version: v2.24.1
    base_url: https://mirror.example.internal/telepresence/releases
    checksum_url: https://mirror.example.internal/telepresence/releases/v2.24.1/sha256sums.txt
    checksum_policy: require
    dest: /opt/telepresence/bin/telepresence

- name: Always download into a project folder, ignoring a telepresence on PATH
  devloop.telepresence.tp_binary:
    dest: "{{ playbook_dir }}/.bin/telepresence"
    prefer_system: false
    timeout: 120
    retries: 5

- name: Remove the client, stopping its daemons first
  devloop.telepresence.tp_binary:
    state: absent
"""

RETURN = r"""
path:
  description:
    - The client to use; O(dest), or the system binary when RV(source=system).
  returned: always
  type: str
  sample: /home/dev/.local/bin/telepresence
version:
  description:
    - Version the client at RV(path) reports (after the change), without C(v); null after O(state=absent).
  returned: always
  type: str
  sample: 2.24.0
source:
  description:
    - Where the client comes from; null after O(state=absent).
    - V(system) a C(telepresence) on E(PATH), V(existing) O(dest) as it was, V(downloaded) freshly installed (in
      check mode, would be downloaded).
  returned: always
  type: str
  sample: downloaded
sha256:
  description:
    - SHA-256 of the file at RV(path); null when there is none (check mode before a download, O(state=absent)).
  returned: always
  type: str
  sample: 356f075ee670af4b5a85fc58f548809b6fc683062cf798efc01fcf67b8df2eeb
checksum_verified:
  description:
    - Whether RV(sha256) matched a known digest (O(checksum), O(checksum_url) or the built-in table).
  returned: always
  type: bool
  sample: true
url:
  description:
    - The artifact URL that was (in check mode, would be) downloaded; null when nothing is downloaded.
  returned: always
  type: str
  sample: https://github.com/telepresenceio/telepresence/releases/download/v2.24.0/telepresence-linux-amd64
platform:
  description:
    - Detected C(<os>-<arch>) of the host, as used in artifact names.
  returned: always
  type: str
  sample: linux-amd64
daemons_stopped:
  description:
    - Whether Telepresence daemons were stopped with C(quit -s). Only daemons started from the O(dest) this task
      replaces (when their version differs from the new one) or removes are stopped; daemons of another executable
      never are.
  returned: always
  type: bool
  sample: false
command:
  description:
    - The acting CLI call (C(quit -s)) as an argv list, or null when none ran.
  returned: always
  type: list
  elements: str
  sample: [/home/dev/.local/bin/telepresence, quit, -s]
commands:
  description:
    - Every CLI call the module made, in order, as argv lists (also on failure).
  returned: always
  type: list
  elements: list
  sample: [[/home/dev/.local/bin/telepresence, version]]
"""

from ansible_collections.devloop.telepresence.plugins.module_utils.binary_module import main


if __name__ == "__main__":
    main()
