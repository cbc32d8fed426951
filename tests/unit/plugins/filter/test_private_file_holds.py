# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""private_file_holds: true exactly when tp_private_file would find nothing to write."""

from __future__ import annotations

import os
import pwd

from ansible_collections.devloop.telepresence.plugins.filter.private_file_holds import private_file_holds

ME = pwd.getpwuid(os.geteuid()).pw_name
TEXT = '{\n    "client": {}\n}\n'


def private(path, text=TEXT, mode=0o600):
    path.write_text(text)
    os.chmod(str(path), mode)
    return str(path)


def test_the_users_private_file_with_the_same_text_holds_it(tmp_path):
    path = private(tmp_path / "summary.json")
    assert private_file_holds(path, TEXT) is True
    assert private_file_holds(path, TEXT, ME) is True
    assert private_file_holds(path, TEXT, str(os.geteuid())) is True


def test_other_text_a_missing_newline_or_a_missing_file_do_not(tmp_path):
    path = private(tmp_path / "summary.json")
    assert private_file_holds(path, TEXT.replace("client", "manager")) is False
    assert private_file_holds(path, TEXT.rstrip("\n")) is False
    assert private_file_holds(str(tmp_path / "absent.json"), TEXT) is False


def test_a_file_others_can_read_does_not_so_the_module_makes_it_private(tmp_path):
    assert private_file_holds(private(tmp_path / "summary.json", mode=0o644), TEXT) is False


def test_a_symbolic_link_to_the_same_text_does_not(tmp_path):
    target = private(tmp_path / "real.json")
    os.symlink(target, str(tmp_path / "link.json"))
    assert private_file_holds(str(tmp_path / "link.json"), TEXT) is False


def test_a_file_for_another_owner_or_an_unknown_owner_does_not(tmp_path):
    path = private(tmp_path / "summary.json")
    assert private_file_holds(path, TEXT, "nobody") is False
    assert private_file_holds(path, TEXT, "no-such-user-tp") is False


def test_a_relative_path_does_not_the_module_refuses_it(tmp_path, monkeypatch):
    private(tmp_path / "summary.json")
    monkeypatch.chdir(tmp_path)
    assert private_file_holds("summary.json", TEXT) is False


def test_the_path_is_expanded_as_an_option_of_type_path(tmp_path, monkeypatch):
    private(tmp_path / "summary.json")
    monkeypatch.setenv("TP_FILTER_TEST_DIR", str(tmp_path))
    assert private_file_holds("$TP_FILTER_TEST_DIR/summary.json", TEXT) is True
