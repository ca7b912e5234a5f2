"""Every script answers --help with its tunables and refuses an unknown option in one line.
(The wording rules, a docstring saying what a script reads, writes and costs and no script
importing another, are lint rules: .ci/house_rules.py, run by `make lint`.)"""
from __future__ import annotations

import subprocess
import sys

import pytest

from tiny_chain import PROJECT_ROOT

SCRIPTS = sorted(p.name for p in PROJECT_ROOT.glob("r[0-9][0-9]_*.py")) + ["run_all.py"]


def test_the_chain_has_every_stage():
    stages = {name[:3] for name in SCRIPTS if name.startswith("r")}
    assert {"r00", "r10", "r11", "r12", "r21", "r31", "r40", "r48", "r50", "r60"} <= stages


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_works_and_an_unknown_option_is_refused(script, tmp_path):
    def run(*arguments):
        return subprocess.run([sys.executable, str(PROJECT_ROOT / script), *arguments],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
    shown = run("--help")
    assert shown.returncode == 0, shown.stderr
    assert "usage:" in shown.stdout and "--force" in shown.stdout
    refused = run("--no_such_option", "1")
    assert refused.returncode == 2
    assert "no_such_option" in refused.stderr
    assert "Traceback" not in refused.stderr
