"""Every script answers --help with its tunables and refuses an unknown option in one line
(an unexpected exception would fail the test instead of exiting).
(The wording rules, a docstring saying what a script reads, writes and costs and no script
importing another, are lint rules: .ci/house_rules.py, run by `make lint`.)"""
from __future__ import annotations

import gc
import runpy
import sys

import pytest

from tiny_chain import PROJECT_ROOT

SCRIPTS = sorted(p.name for p in PROJECT_ROOT.glob("r[0-9][0-9]_*.py")) + ["run_all.py"]


def test_the_chain_has_every_stage():
    stages = {name[:3] for name in SCRIPTS if name.startswith("r")}
    assert {"r00", "r10", "r11", "r12", "r21", "r31", "r40", "r48", "r50", "r60"} <= stages


def run_script_in_process(script: str, arguments: list[str], monkeypatch, capsys):
    """(exit code, stdout, stderr) of `python script arguments`, run in this process: the
    scripts import only cheap modules at the top, so this costs no interpreter start-up."""
    monkeypatch.setattr(sys, "argv", [str(PROJECT_ROOT / script), *arguments])
    try:
        with pytest.raises(SystemExit) as ended:
            runpy.run_path(str(PROJECT_ROOT / script), run_name="__main__")
    finally:
        gc.unfreeze()   # run_main freezes the collector where TensorFlow is loaded
    captured = capsys.readouterr()
    return ended.value.code, captured.out, captured.err


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_works_and_an_unknown_option_is_refused(script, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, shown, _ = run_script_in_process(script, ["--help"], monkeypatch, capsys)
    assert code == 0
    assert "usage:" in shown and "--force" in shown
    code, _, refused = run_script_in_process(script, ["--no_such_option", "1"], monkeypatch,
                                             capsys)
    assert code == 2
    assert "no_such_option" in refused
