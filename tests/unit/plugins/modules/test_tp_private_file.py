# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tp_private_file in check mode: the summary path's pre-flight finds what the write would refuse, writing nothing."""

from __future__ import annotations

import os

import pytest

from ansible_collections.devloop.telepresence.plugins.modules import tp_private_file
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.harness import Exited, Failed, capture_exits
from ansible_collections.devloop.telepresence.tests.unit.plugins.modules.module_args import patch_module_args


@pytest.fixture(autouse=True)
def exits(monkeypatch):
    capture_exits(monkeypatch)


def run(path, check=True):
    args = {"path": str(path), "content": "{}\n"}
    if check:
        args["_ansible_check_mode"] = True
    with patch_module_args(args):
        with pytest.raises(Exited) as exited:
            tp_private_file.main()
    return exited.value


def test_check_mode_would_write_and_writes_nothing(tmp_path):
    done = run(tmp_path / "summary.json")
    assert not isinstance(done, Failed)
    assert done.result["changed"] is True
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize("make,message", [
    (lambda p: p.parent.joinpath("missing", "s.json"), "the directory %s does not exist"),
    (lambda p: (p.mkdir(), p)[1], "exists and is not a regular file"),
    (lambda p: (p.symlink_to("/etc/passwd"), p)[1], "is a symbolic link"),
])
def test_check_mode_refuses_what_the_write_would(tmp_path, make, message):
    path = make(tmp_path / "summary.json")
    done = run(path)
    assert isinstance(done, Failed)
    expected = message % path.parent if "%s" in message else message
    assert expected in done.result["msg"]


def test_check_mode_refuses_a_folder_it_cannot_write(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # the check is files.check_writable's
    done = run(tmp_path / "summary.json")
    assert isinstance(done, Failed)
    assert done.result["msg"] == ("path %s cannot be written: the directory %s is not writable for this user; choose "
                                  "another path" % (tmp_path / "summary.json", tmp_path))
