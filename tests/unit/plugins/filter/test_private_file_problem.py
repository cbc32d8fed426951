# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""private_file_problem: tp_private_file's check-mode refusals, in the controller's process, as messages."""

from __future__ import annotations

import os
import pwd

import pytest

from ansible_collections.devloop.telepresence.plugins.filter.private_file_problem import private_file_problem

NOBODY = pwd.getpwnam("nobody")


def test_a_new_file_in_a_writable_folder_and_the_users_own_file_are_fine(tmp_path):
    assert private_file_problem(str(tmp_path / "summary.json")) == ""
    (tmp_path / "mine.json").write_text("{}")
    assert private_file_problem(str(tmp_path / "mine.json")) == ""
    assert not (tmp_path / "summary.json").exists()  # nothing is written


def test_the_path_is_expanded_as_an_option_of_type_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TP_FILTER_TEST_DIR", str(tmp_path))
    assert private_file_problem("$TP_FILTER_TEST_DIR/summary.json") == ""
    assert private_file_problem("$TP_FILTER_TEST_DIR/missing/summary.json").startswith(
        "path %s/missing/summary.json: the directory " % tmp_path)


@pytest.mark.parametrize("make,expected", [
    (lambda tmp: "relative.json", "path must be an absolute path, got relative.json"),
    (lambda tmp: str(tmp / "no-such-dir" / "s.json"), "path {tmp}/no-such-dir/s.json: the directory {tmp}/no-such-dir "
                                                      "does not exist"),
    (lambda tmp: (os.symlink("/etc/passwd", str(tmp / "link.json")), str(tmp / "link.json"))[1],
     "{tmp}/link.json is a symbolic link owned by "),
    (lambda tmp: (os.mkdir(str(tmp / "dir.json")), str(tmp / "dir.json"))[1],
     "{tmp}/dir.json exists and is not a regular file"),
])
def test_what_the_module_would_refuse_is_said_in_its_words(tmp_path, make, expected):
    assert private_file_problem(make(tmp_path)).startswith(expected.format(tmp=tmp_path))


def test_another_users_file_is_refused_naming_its_owner(tmp_path):
    planted = tmp_path / "summary.json"
    planted.write_text("theirs")
    os.chown(str(planted), NOBODY.pw_uid, NOBODY.pw_gid)
    assert "belongs to nobody (uid %d)" % NOBODY.pw_uid in private_file_problem(str(planted))


def test_an_owner_that_is_no_user_is_named():
    assert private_file_problem("/tmp/x.json", "no-such-user-tp") == (
        "owner no-such-user-tp is not a user of this host; give an existing user name or uid")
