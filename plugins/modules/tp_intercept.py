#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tp_intercept
short_description: Route a workload's Service traffic to a local port with an idempotent Telepresence intercept
version_added: 0.1.0
description:
  - With O(mode), the same engagement can instead be a C(replace) (the container is replaced, Telepresence 2.22+), a
    C(wiretap) (a read-only copy of the traffic, 2.23+) or an C(ingest) (the workload's environment and volumes, no
    traffic, 2.21+). A mode the client does not have fails before any change, naming the version that has it.
  - Makes sure an intercept named O(name) routes the traffic of a workload's Service port to a port on this host
    (C(telepresence intercept)), or that there is no such intercept (C(telepresence leave), C(detach) on 2.30+).
  - Before touching Telepresence, checks with the Kubernetes API that the namespace, the workload (Deployment,
    StatefulSet or ReplicaSet), a Service selecting it and the Service port exist; each failure names what exists.
  - An intercept of this client with that name and the same workload, namespace, service port and local port that is
    C(ACTIVE) is left alone, so a re-run makes only the C(status) and C(list) calls and reports no change.
    The same name with another mapping is left and created again.
  - Never causes an implicit connect. Before C(list), C(intercept) or C(leave) there is a session the module checked;
    when there is none, it connects (C(connect --namespace <namespace>)). Clients older than 2.28 have no
    C(intercept --namespace), so a session scoped to another namespace is quit and connected again in O(namespace);
    on 2.28 and newer, C(--namespace) is passed to C(intercept) and any session namespace is fine.
  - Returns the names of the workload's environment variables, never their values.
author:
  - devloop.telepresence maintainers (@devloop)
requirements:
  - The C(kubernetes) Python library on the host that runs the task (C(pip install kubernetes)), for the pre-flight.
extends_documentation_fragment:
  - devloop.telepresence.common
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs the pre-flight and the read-only C(status), C(version) and C(list) calls, and reports the action
      that would be taken (RV(action)) without connecting, creating or leaving anything.
  diff_mode:
    support: full
    details: Shows whether the intercept is present, and its workload, service port and local port, before and after.
  platform:
    platforms: posix
options:
  name:
    description:
      - Name of the intercept. Must be a DNS-1123 label.
    type: str
    required: true
    version_added: 0.1.0
  workload:
    description:
      - The Deployment, StatefulSet or ReplicaSet to intercept. Defaults to O(name). Must be a DNS-1123 label.
    type: str
    version_added: 0.1.0
  service:
    description:
      - The Service whose port is intercepted (C(--service)). It must select the workload.
      - When not set, the one Service in O(namespace) that selects the workload; when several do, this must be set.
      - Must be a DNS-1123 label.
    type: str
    version_added: 0.1.0
  namespace:
    description:
      - Namespace of the workload. Must be a DNS-1123 label.
    type: str
    default: default
    version_added: 0.1.0
  port:
    description:
      - Local port (1-65535) the intercepted traffic is sent to. Required with O(state=present), except with
        O(mode=ingest), which sends no traffic.
    type: int
    version_added: 0.1.0
  service_port:
    description:
      - The Service port to intercept, by name (for example V(http)) or number (for example V(80)).
      - Passed as C(--port <port>:<service_port>).
    type: str
    default: http
    version_added: 0.1.0
  env_file:
    description:
      - Absolute path of a file that receives the workload's environment (C(--env-file), docker syntax).
      - Written with mode C(0600) from creation, and only as a whole file (a temporary file next to it, created
        exclusively without following symbolic links, renamed into place after the intercept succeeded).
      - Owned by O(owner); without it, under C(become) (running as root with C(SUDO_UID) set) by the user who
        invoked sudo, else by the user the module runs as.
      - If the path exists and is a symbolic link, not a regular file, or a file of another user, the module fails
        naming the path and its owner before it changes anything; the file is never replaced or followed.
      - Written when the intercept is created; a missing file makes the module create the intercept again.
    type: path
    version_added: 0.1.0
  env_json:
    description:
      - Absolute path of a file that receives the workload's environment as a JSON object (C(--env-json)).
      - Same handling as O(env_file).
    type: path
    version_added: 0.1.0
  owner:
    description:
      - User (name or uid) who owns O(env_file) and O(env_json). Changing the owner needs root (C(become)).
      - Default, the user who invoked sudo under C(become) (C(SUDO_UID)/C(SUDO_GID)), else the user the module runs as.
    type: str
    version_added: 0.1.0
  mount:
    description:
      - Mount the workload's volumes locally (C(--mount=true), needs sshfs/FUSE). The default passes C(--mount=false).
    type: bool
    default: false
    version_added: 0.1.0
  http_headers:
    description:
      - Intercept only requests carrying these HTTP headers (C(--http-header name=value), one per header).
      - A dict of header names to values, or a list of V(name=value) strings.
      - Only clients 2.25 and newer have C(--http-header). With older clients the headers are ignored with a warning
        (as the seed workflow does), or the task fails when O(strict=true).
    type: raw
    version_added: 0.1.0
  preview_url:
    description:
      - Ask for a preview URL. No open-source Telepresence 2.x client has C(--preview-url) (it belonged to the
        Ambassador Cloud client), so V(true) is ignored with a warning, or fails when O(strict=true).
    type: bool
    default: false
    version_added: 0.1.0
  strict:
    description:
      - Fail instead of warning when O(http_headers) or O(preview_url) cannot be honoured by the client.
    type: bool
    default: false
    version_added: 0.1.0
  verify_local:
    description:
      - Whether to check that something listens on C(127.0.0.1:<port>) with O(state=present).
      - V(warn) adds a warning when nothing does, V(fail) fails the task before any intercept is made, V(off) skips
        the check.
    type: str
    choices: [warn, fail, 'off']
    default: warn
    version_added: 0.1.0
  wait_timeout:
    description:
      - Seconds to wait, after creating the intercept, until C(telepresence list) shows it C(ACTIVE). Must be positive.
      - When it does not become active in time, the intercept is removed again and the task fails.
    type: int
    default: 30
    version_added: 0.1.0
  docker:
    description:
      - When the module has to connect, connect in docker mode (C(connect --docker)), which needs no root daemon.
      - Must match the mode of an existing session (as set with M(devloop.telepresence.tp_connection)), or that
        session is quit and connected again.
    type: bool
    default: false
    version_added: 0.1.0
  session:
    description:
      - The session to make sure of first, as M(devloop.telepresence.tp_connection) with O(state=connected) does
        (the same connect flags in the same order, the same rule for reusing a session), from the one
        C(telepresence status) the module reads anyway. RV(session) is then what tp_connection returns.
      - The telepresence_intercept role passes its telepresence_connection_* variables here instead of running
        tp_connection first, so a re-run reads the status once.
      - Only with O(state=present); ignored with O(preflight_only=true).
    type: dict
    version_added: 0.1.0
    suboptions:
      namespace:
        description:
          - Namespace the session is scoped to (C(connect --namespace)); when not set, any connected namespace is
            accepted. Must be a DNS-1123 label.
        type: str
      also_proxy:
        description: Extra subnets (CIDR notation) to route through the cluster (C(--also-proxy)).
        type: list
        elements: str
        default: []
      never_proxy:
        description: Subnets (CIDR notation) never to route through the cluster (C(--never-proxy)).
        type: list
        elements: str
        default: []
      mapped_namespaces:
        description: Namespaces whose names the session resolves in DNS (C(--mapped-namespaces)).
        type: list
        elements: str
        default: []
      reconnect:
        description:
          - Quit and connect again when the session has other settings; when false, such a session fails the task.
        type: bool
        default: true
  mode:
    description:
      - What the engagement does (facts sheet section 5).
      - V(intercept) (C(telepresence intercept <name> --workload --service --port <port>:<service_port>)) sends the
        Service port's traffic to O(port).
      - V(replace) (C(telepresence replace <workload> --port <port>:<service_port>), client 2.22+) replaces the
        workload's container, and its traffic reaches O(port). O(service_port) names a B(container) port here (name or
        number), not a Service port, and no Service is needed; O(name) must equal O(workload) (the engagement is
        named after the workload).
      - V(wiretap) (C(telepresence wiretap <name> --workload --service --port ...), client 2.23+) leaves the traffic
        to the cluster and sends a read-only copy to O(port).
      - V(ingest) (C(telepresence ingest <workload>), client 2.21+) changes no traffic; it gives the workload's
        environment (O(env_file), O(env_json)) and volumes; O(port) and O(service_port) are not used, and O(name)
        must equal O(workload). C(--namespace) is passed to C(ingest) from 2.29 (2.28 for the other modes).
      - The same name engaged in another mode is left and engaged again in this one. How 2.24 reports the mode in
        C(status) and C(list) is not verified; the module reads the C(replace)/C(wiretap) markers of C(list) and
        the C(replacements)/C(wiretaps) lists of C(status) when they are there, and otherwise tells the modes apart
        by the C(list) filters (C(--intercepts), C(--replacements), C(--wiretaps), C(--ingests)).
      - O(http_headers) and O(preview_url) apply to V(intercept) only.
    type: str
    choices: [intercept, replace, wiretap, ingest]
    default: intercept
    version_added: 0.1.0
  preflight_only:
    description:
      - Only run the pre-flight of O(state=present) (the namespace, the workload, the Service selecting it and the
        Service port exist; something listens on the local port, as O(verify_local) says) and return RV(target).
      - Needs no Telepresence client and calls none; never changes anything. Roles run it before their first change,
        so a typo fails before a client is installed or a session is connected.
    type: bool
    default: false
    version_added: 0.1.0
  target:
    description:
      - The RV(target) of a O(preflight_only=true) task for the same engagement earlier in the same run. The task
        then uses it instead of reading the namespace, workload, Service and Service port from the Kubernetes API
        again (the local listener is still checked, as O(verify_local) says), so it neither loads the Kubernetes
        client nor calls the API. The telepresence_intercept role passes it after its pre-flight.
      - Only with O(state=present); ignored with O(preflight_only=true). Without it the pre-flight runs in this task.
    type: dict
    version_added: 0.1.0
  state:
    description:
      - V(present) makes sure the intercept exists with this mapping and is active.
      - V(absent) makes sure it does not exist. When there is no session, there can be no intercept of this client,
        so nothing is done and the module does not connect.
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
notes:
  - The environment variable values of the workload are cluster secrets. The module returns only their names and
    never the raw output of C(intercept) or C(list). Before it exits or fails it registers the values as no-log values
    (Ansible then masks them in messages, warnings and logs), except values its own argv, parameters and structured
    result fields show anyway and common words and numbers (V(false), V(true), port-like numbers, values shorter than
    4 characters), so C(--mount=false), the client and the disposition stay readable. M(devloop.telepresence.tp_info)
    follows the same policy.
  - A mapping is the workload, namespace, service port and local port. Changing only O(http_headers), O(mount) or the
    env file options does not re-create an existing active intercept.
  - On clients older than 2.28, reconnecting to another namespace ends the session's other intercepts; the module
    warns when that happens.
  - The re-run without changes makes the C(status) and C(list) calls only (plus C(version) when O(http_headers) is
    set, to decide whether they are honoured).
  - When another run of this client creates the same intercept at the same moment, C(intercept) answers that it
    already exists. The module then reads C(status) and C(list) again and, when the intercept there is this client's
    with the same mapping (and any env file asked for exists), waits until it is C(ACTIVE) and returns it with
    RV(action=none); otherwise it fails explaining the name clash.
  - With O(state=absent), C(list) is read again after C(leave) (C(detach)); when the intercept is still there the task
    fails instead of reporting it removed.
seealso:
  - module: devloop.telepresence.tp_connection
  - module: devloop.telepresence.tp_info
  - module: devloop.telepresence.tp_manager
  - name: Telepresence intercept reference
    description: The C(telepresence intercept) command and its flags.
    link: https://telepresence.io/docs/reference/cli/telepresence_intercept
"""

EXAMPLES = r"""
- name: Route fresh-app's http port to the dev server on port 8000 (the seed workflow's tp:intercept)
  devloop.telepresence.tp_intercept:
    name: fresh-app
    namespace: app
    port: 8000
    service_port: http

- name: Intercept a multi-port Service's grpc port and keep the workload's environment in a 0600 file
  devloop.telepresence.tp_intercept:
    name: multi-port-grpc
    workload: multi-port
    service: multi-port
    namespace: app
    port: 9090
    service_port: grpc
    env_file: "{{ playbook_dir }}/.env.multi-port"
    verify_local: fail

- name: Intercept only requests with a header (honoured by 2.25+ clients, refused on older ones)
  devloop.telepresence.tp_intercept:
    name: fresh-app
    namespace: app
    port: 8000
    http_headers:
      x-dev-user: alice
    strict: true

- name: Replace fresh-app's container; its container port http (8080) traffic reaches local port 8000 (2.22+)
  devloop.telepresence.tp_intercept:
    name: fresh-app
    namespace: app
    mode: replace
    port: 8000
    service_port: http

- name: Get a copy of web-only's traffic on local port 8001, the cluster still answers (2.23+)
  devloop.telepresence.tp_intercept:
    name: web-only-tap
    workload: web-only
    namespace: app
    mode: wiretap
    port: 8001
    service_port: web

- name: Only the workload's environment, written to a 0600 file; no traffic changes (2.21+)
  devloop.telepresence.tp_intercept:
    name: secret-app
    namespace: app
    mode: ingest
    env_file: "{{ playbook_dir }}/.env.secret-app"

- name: Remove the intercept (the seed workflow's tp:leave)
  devloop.telepresence.tp_intercept:
    name: fresh-app
    namespace: app
    state: absent
"""

RETURN = r"""
changed:
  description: Whether an intercept or the connection was created, removed or replaced.
  returned: always
  type: bool
  sample: true
action:
  description: What was done (or, in check mode, would be done) to the intercept.
  returned: always
  type: str
  choices: [created, recreated, removed, none]
  sample: created
intercept:
  description:
    - The intercept after the task (in check mode, before it), or null when there is none.
    - With O(state=absent), the intercept that was removed (or, in check mode, would be), so the result says what was
      left; null when there was none.
  returned: always
  type: dict
  sample:
    id: 4f7c0c58-3a0e-4c5e-9a43-1b0c2b7e1a11:fresh-app
    name: fresh-app
    mode: intercept
    disposition: ACTIVE
    message: null
    client: dev@laptop
    workload: fresh-app
    workload_kind: Deployment
    namespace: app
    service: fresh-app
    service_port: http
    local_port: 8000
    target_host: 127.0.0.1
    ports: ["8000:http"]
    mount: false
    environment_names: [API_TOKEN, TELEPRESENCE_CONTAINER, TELEPRESENCE_INTERCEPT_ID]
  contains:
    id:
      description: The intercept's ID.
      type: str
    name:
      description: The intercept's name (for V(replace) and V(ingest), the workload's).
      type: str
    mode:
      description:
        - V(intercept), V(replace), V(wiretap) or V(ingest).
        - V(unknown) for an engagement of this name that C(list) shows only under another mode's filter and that
          neither C(list) nor C(status) names the mode of (it is then left and engaged again).
      type: str
      version_added: 0.1.0
    disposition:
      description: Its state as the traffic manager reports it, for example V(ACTIVE) or V(WAITING).
      type: str
    message:
      description: The traffic manager's message about the disposition, if any.
      type: str
    client:
      description: The client (C(user@host)) that owns the intercept, when reported.
      type: str
    workload:
      description: The intercepted workload.
      type: str
    workload_kind:
      description: Its kind, for example V(Deployment).
      type: str
    namespace:
      description: The workload's namespace.
      type: str
    service:
      description: The intercepted Service, when reported.
      type: str
    service_port:
      description: The intercepted Service port, by name or number.
      type: str
    local_port:
      description: The local port traffic is sent to.
      type: int
    target_host:
      description: The local address traffic is sent to.
      type: str
    ports:
      description: The port mappings as C(<local port>:<service port>).
      type: list
      elements: str
    mount:
      description:
        - V(false) when nothing is mounted, else the mount's C(local_dir), C(remote_dir) and C(error).
        - For an intercept this task created with O(mount=false), always V(false), also on 2.20-2.22 clients whose
          output carries the agent's mount point even with C(--mount=false).
      type: raw
    environment_names:
      description: The names of the workload's environment variables. Their values are never returned.
      type: list
      elements: str
planned:
  description:
    - In check mode, the mapping the task would leave (C(present), C(workload), C(service_port), C(local_port)), while
      RV(intercept) is the intercept as it is now.
  returned: in check mode, when RV(action) is not V(none)
  type: dict
  sample: {present: true, workload: fresh-app, service_port: http, local_port: 8000}
target:
  description:
    - What the pre-flight found in the cluster for O(state=present), the workload's kind, the Service, and the Service
      port's name, number and target port (the container port the Service sends it to, a number or a port name).
  returned: with O(state=present) when the pre-flight passed
  type: dict
  sample: {workload_kind: Deployment, service: fresh-app, port_name: http, port_number: 80, target_port: 8080}
connection:
  description:
    - What was done (or would be done) to the Telepresence session before the intercept was handled, O(session)
      included.
  returned: always
  type: str
  choices: [none, connected, reconnected]
  sample: none
session:
  description:
    - What M(devloop.telepresence.tp_connection) with O(state=connected) returns for O(session) (C(changed),
      C(action), C(connected), C(status), C(command), C(commands), and C(planned) in check mode; C(diff) in diff
      mode), also when the engagement then fails.
  returned: when O(session) is set and the session step ran
  type: dict
  sample:
    changed: false
    action: none
    connected: true
    command: null
    commands: [[/usr/local/bin/telepresence, status, --output, json]]
    status: {connected: true, namespace: app, manager_namespace: ambassador, context: sandbox}
command:
  description:
    - The argv of the acting CLI call (C(intercept), C(replace), C(wiretap) or C(ingest), or C(leave)/C(detach) for
      O(state=absent)), or null.
  returned: always
  type: list
  elements: str
  sample: [/usr/local/bin/telepresence, intercept, fresh-app, --workload, fresh-app, --port, "8000:http", --mount=false,
           --detailed-output, --output, json]
commands:
  description: Every CLI argv the module ran, in order.
  returned: always
  type: list
  elements: list
  sample: [[/usr/local/bin/telepresence, status, --output, json]]
reasons:
  description: Why an existing intercept is re-created (how its mapping or state differs from the wanted one).
  returned: when RV(action) is V(recreated) because of an existing intercept of this namespace
  type: list
  elements: str
  sample: ["local port 8000, wanted 8001"]
diff:
  description:
    - The intercept's presence and mapping before and after, when diff mode is on.
    - A C(mode) key is there for the modes other than V(intercept).
  returned: when diff mode is on
  type: dict
  sample:
    before: {present: false, workload: null, service_port: null, local_port: null}
    after: {present: true, workload: fresh-app, service_port: http, local_port: 8000}
"""

from ansible_collections.devloop.telepresence.plugins.module_utils.intercept_module import main


if __name__ == "__main__":
    main()
