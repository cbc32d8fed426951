# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.devloop.telepresence.plugins.module_utils.capabilities import (
    Capabilities,
    parse_release_version,
    parse_version,
)

# (version, features it has, features it lacks), from the facts sheet's version table.
TABLE = [
    ("2.17.0", [], ["helm_create_namespace", "helm_version_flag", "replace", "http_filters", "format_flag"]),
    ("2.20.2", ["helm_create_namespace"], ["helm_version_flag", "uninstall_positional", "list_intercept_info"]),
    ("2.21.0", ["helm_version_flag", "uninstall_positional", "ingest"], ["replace", "list_intercept_info"]),
    ("2.22.0", ["replace", "list_intercept_info"], ["wiretap", "silent_json_progress"]),
    ("2.24.0", ["wiretap", "silent_json_progress", "replace"], ["http_filters", "intercept_namespace", "detach"]),
    ("2.25.0", ["http_filters", "min_manager_2_21"], ["tcp_ipc", "intercept_namespace", "format_flag"]),
    ("2.28.0", ["intercept_namespace", "auto_quit_on_upgrade", "tcp_ipc"], ["format_flag", "leave_namespace"]),
    ("2.29.0", ["format_flag", "leave_namespace"], ["detach"]),
    ("2.30.0", ["detach", "format_flag"], []),
    ("2.31.2", ["detach", "http_filters", "intercept_namespace"], []),
]


@pytest.mark.parametrize("version, has, lacks", TABLE)
def test_capability_table(version, has, lacks):
    caps = Capabilities(version)
    assert [f for f in has if not caps.has(f)] == []
    assert [f for f in lacks if caps.has(f)] == []


@pytest.mark.parametrize("version, key", [("2.20.2", "intercept_infos"), ("2.21.0", "intercept_infos"),
                                          ("2.24.0", "intercept_info"), ("2.30.0", "intercept_info")])
def test_list_key(version, key):
    assert Capabilities(version).list_intercepts_key() == key


@pytest.mark.parametrize("version, command", [("2.24.0", "leave"), ("2.29.0", "leave"), ("2.30.0", "detach")])
def test_leave_command(version, command):
    assert Capabilities(version).leave_command() == command


def test_manager_compatibility():
    assert Capabilities("2.24.0").manager_compatible("2.20.2") is None
    assert Capabilities("2.25.0").manager_compatible("2.21.0") is None
    reason = Capabilities("2.25.0").manager_compatible("2.20.2")
    assert "requires a traffic manager >= 2.21.0" in reason and "2.20.2 is installed" in reason


@pytest.mark.parametrize("text, expected", [("2.24.0", (2, 24, 0)), ("v2.24.0", (2, 24, 0)),
                                            ("2.25.0-rc.1", (2, 25, 0)), ("2.24", None), ("latest", None), ("", None)])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["2.24", "latest", "v2.24.0; rm -rf /", "2.24.0-rc.1", "vv2.24.0", " 2.24.0x"])
def test_release_version_rejects_non_releases(text):
    assert parse_release_version(text) is None


def test_release_version_accepts_both_spellings():
    assert parse_release_version("2.24.0") == parse_release_version("v2.24.0") == (2, 24, 0)


def test_capabilities_reject_garbage():
    with pytest.raises(ValueError):
        Capabilities("next")
