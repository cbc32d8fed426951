# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a Telepresence client of a given version can do.

Modules ask ``caps.has("http_filters")`` instead of comparing versions inline, so every version rule
lives here, next to the fact-sheet section it comes from.
"""

from __future__ import annotations

import re

RELEASE_VERSION_RE = re.compile(r"^v?([0-9]+)\.([0-9]+)\.([0-9]+)\Z")
_LOOSE_VERSION_RE = re.compile(r"^v?([0-9]+)\.([0-9]+)\.([0-9]+)(?:[-+.].*)?\Z")

# feature -> (first version that has it, what it is). Sources: facts sheet, release notes table.
FEATURES = {
    "helm_create_namespace": ((2, 19, 1), "helm install --create-namespace"),
    "helm_version_flag": ((2, 21, 0), "helm install/upgrade --version"),
    "uninstall_positional": ((2, 21, 0), "uninstall <workloads...> (--agent became the default)"),
    "ingest": ((2, 21, 0), "the ingest command"),
    "replace": ((2, 22, 0), "the replace command"),
    "list_intercept_info": ((2, 22, 0), "list JSON key intercept_info (intercept_infos before)"),
    "wiretap": ((2, 23, 0), "the wiretap command"),
    "silent_json_progress": ((2, 23, 0), "--output json silences progress: intercept needs --detailed-output"),
    "http_filters": ((2, 25, 0), "intercept --http-header/--http-path-* filters"),
    "min_manager_2_21": ((2, 25, 0), "client requires a traffic manager >= 2.21.0"),
    "tcp_ipc": ((2, 26, 0), "daemons reached over TCP/IP instead of Unix sockets"),
    "auto_quit_on_upgrade": ((2, 27, 0), "the CLI quits daemons of another major.minor by itself"),
    "intercept_namespace": ((2, 28, 0), "intercept/replace/wiretap --namespace"),
    "format_flag": ((2, 29, 0), "global --format json|yaml (--output deprecated)"),
    "leave_namespace": ((2, 29, 0), "leave --namespace"),
    "ingest_namespace": ((2, 29, 0), "ingest --namespace"),
    "detach": ((2, 30, 0), "detach replaces leave (leave stays as a hidden alias)"),
}

# Minimum traffic-manager version a client needs (facts sheet section 0, 2.25.0).
MIN_MANAGER_FOR_CLIENT = (((2, 25, 0), (2, 21, 0)),)

# Integer dispositions of list's intercept_info (facts sheet section 3).
DISPOSITIONS = {
    0: "UNSPECIFIED", 1: "ACTIVE", 2: "WAITING", 3: "NO_CLIENT", 4: "NO_AGENT", 5: "NO_MECHANISM",
    6: "NO_PORTS", 7: "AGENT_ERROR", 8: "BAD_ARGS", 9: "REMOVED",
}

# Text of leave/detach when the intercept does not exist, all versions (facts sheet section 6).
LEAVE_NOT_FOUND_RE = re.compile(r"not found|Found no", re.IGNORECASE)


def parse_version(text):
    """``(major, minor, patch)`` from ``2.24.0``, ``v2.24.0`` or ``2.24.0-rc.1``; None when not a version."""
    match = _LOOSE_VERSION_RE.match(str(text or "").strip())
    if not match:
        return None
    return tuple(int(part) for part in match.groups())


def parse_release_version(text):
    """``(major, minor, patch)`` for an exact release version (``v`` optional); None otherwise."""
    match = RELEASE_VERSION_RE.match(str(text or "").strip())
    return tuple(int(part) for part in match.groups()) if match else None


def version_string(version):
    return "%d.%d.%d" % tuple(version)


class Capabilities:
    """The feature set of one client version."""

    def __init__(self, version):
        parsed = parse_version(version) if isinstance(version, str) else tuple(version)
        if not parsed:
            raise ValueError("not a Telepresence version: %r" % (version,))
        self.version = parsed
        self.version_string = version_string(parsed)

    def has(self, feature):
        return self.version >= FEATURES[feature][0]

    def list_intercepts_key(self):
        return "intercept_info" if self.has("list_intercept_info") else "intercept_infos"

    def leave_command(self):
        return "detach" if self.has("detach") else "leave"

    def min_manager_version(self):
        """The oldest traffic manager this client works with, or None when the facts name no limit."""
        for since, minimum in MIN_MANAGER_FOR_CLIENT:
            if self.version >= since:
                return minimum
        return None

    def manager_compatible(self, manager_version):
        """None when this client can work with ``manager_version``, else the reason it cannot."""
        minimum = self.min_manager_version()
        manager = parse_version(manager_version)
        if minimum and manager and manager < minimum:
            return ("client %s requires a traffic manager >= %s, but %s is installed; upgrade the traffic "
                    "manager (tp_manager version) or use a client older than 2.25"
                    % (self.version_string, version_string(minimum), version_string(manager)))
        return None

    def __repr__(self):
        return "Capabilities(%s)" % self.version_string
