# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""README "Try it on your own app", run as written: its YAML block becomes ~/shop/app.yaml and its bash blocks run
in order, in one bash, from the checkout (names not the seed's: cart in shop, port web, local 9090).

Checks that the request through traffic-url reaches the local dev server during the intercept and the cluster after
leave. The sandbox lives in a temporary TP_SANDBOX_DIR; `make sandbox-down` and the dev server stop run again in a
finally block, whatever the section did.
"""

from __future__ import annotations

import os
import re
import subprocess

from workflow_support import ROOT

SECTION = "## Try it on your own app"


def section_blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    body = text[start:end]
    blocks = re.findall(r"^```(\w+)\n(.*?)^```$", body, re.MULTILINE | re.DOTALL)
    return [code for lang, code in blocks if lang == "yaml"], [code for lang, code in blocks if lang == "bash"]


def test_readme_section_has_two_commands_to_start_and_one_to_stop():
    _yaml, bash = section_blocks()
    commands = [[line for line in block.splitlines() if line.strip()] for block in bash]
    assert commands[0] == ['eval "$(make -s sandbox-up)"', "kubectl apply --validate=false -f ~/shop/app.yaml"]
    assert commands[-1] == ["make sandbox-down"]


def test_try_it_on_your_own_app_as_the_readme_says(tmp_path):
    (manifests,), bash = section_blocks()
    home = tmp_path / "home"
    (home / "shop").mkdir(parents=True)
    (home / "shop" / "app.yaml").write_text(manifests, encoding="utf-8")
    sandbox = tmp_path / "sandbox"
    env = {key: value for key, value in os.environ.items()
           if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "TELEPRESENCE_VERSION", "KUBECONFIG", "VIRTUAL_ENV")}
    env.update(HOME=str(home), TP_SANDBOX_DIR=str(sandbox), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               PATH="/usr/local/bin:/usr/bin:/bin")
    script = "set -euo pipefail\n" + "\n".join(bash)
    try:
        result = subprocess.run(["bash", "-c", script], cwd=str(ROOT), env=env, capture_output=True, text=True,
                                timeout=600, check=False)
    finally:
        subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "tests" / "tools" / "dev_server.py"),
                        "stop", "--dir", str(sandbox)], env=env, capture_output=True, timeout=60, check=False)
        subprocess.run(["make", "-s", "sandbox-down"], cwd=str(ROOT), env=env, capture_output=True, timeout=60,
                       check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    local = output.find("local: my cart")
    cluster = output.find("cluster: cart.shop")
    assert local >= 0, "the request during the intercept did not reach the local dev server:\n" + output[-4000:]
    assert cluster > local, "after leave the request did not reach the cluster:\n" + output[-4000:]
    assert "failed=0" in output and "failed=1" not in output
