# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""censor.py: the environment policy tp_intercept and tp_info share (issue 13)."""
from __future__ import annotations

from ansible_collections.devloop.telepresence.plugins.module_utils import censor

SECRET = "sbx-secret-0123456789abcdef"


class FakeModule:
    def __init__(self):
        self.no_log_values = set()


def test_common_words_numbers_and_short_values_are_not_registered():
    values = [SECRET, "false", "TRUE", "yes", "8080", "abc", "null"]
    assert censor.hidden_values(values) == [SECRET]


def test_values_the_module_shows_itself_are_not_registered():
    argv = [["/usr/bin/telepresence", "intercept", "fresh-app", "--mount=false"]]
    result = {"intercept": {"disposition": "ACTIVE", "client": "root@host", "workload": "fresh-app"}}
    values = [SECRET, "ACTIVE", "root", "fresh-app", "/root"]
    assert censor.hidden_values(values, argv, result) == ["/root", SECRET]


def test_cli_free_text_never_makes_a_value_public():
    result = {"msg": "failed: token %s" % SECRET, "stderr": SECRET, "intercept": {"message": SECRET}}
    assert censor.hidden_values([SECRET], result) == [SECRET]


def test_remember_then_protect_registers_on_the_module():
    module = FakeModule()
    censor.remember(module, [SECRET, None, "", "ACTIVE"])
    censor.protect(module, {"disposition": "ACTIVE"})
    assert module.no_log_values == {SECRET}
