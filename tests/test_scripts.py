"""Every script keeps the house rules: a docstring saying what it reads, writes and costs,
a working --help that lists its tunables, unknown options refused, and no script importing
another (shared code lives in a0N_*.py)."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tiny_chain import PROJECT_ROOT

SCRIPTS = sorted(p.name for p in PROJECT_ROOT.glob("r[0-9][0-9]_*.py")) + ["run_all.py"]


def test_the_chain_has_every_stage():
    stages = {name[:3] for name in SCRIPTS if name.startswith("r")}
    assert {"r00", "r10", "r11", "r12", "r21", "r31", "r40", "r48", "r50", "r60"} <= stages


@pytest.mark.parametrize("script", SCRIPTS)
def test_docstring_says_what_it_reads_writes_and_costs(script):
    docstring = ast.get_docstring(ast.parse((PROJECT_ROOT / script).read_text()))
    assert docstring, f"{script} has no docstring"
    for word in ("Reads", "Writes", "Cost"):
        assert word in docstring, f"{script}'s docstring does not say what it {word.lower()}"


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


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_import_only_shared_modules(script):
    tree = ast.parse((PROJECT_ROOT / script).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | \
        {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
         for alias in node.names}
    others = {name for name in imported if name and name.split(".")[0] in
              {s[:-3] for s in SCRIPTS}}
    assert not others, f"{script} imports another script: {others}"
