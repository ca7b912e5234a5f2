"""Shared test set-up: the project root on sys.path, and quiet TensorFlow in subprocesses."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from tiny_chain import TINY_DATA, copy_input, run_all  # noqa: E402

# The unit tier (`make test-fast`, `pytest -m "not slow"`) leaves out every test that runs the
# tiny chain or a script, decodes or encodes videos, or trains a network: the modules below
# as a whole, and elsewhere the tests that use one of these fixtures or are marked slow.
SLOW_MODULES = {"test_chain", "test_chain_resume", "test_rerun", "test_robustness", "test_predict",
                "test_backbones", "test_features"}
SLOW_FIXTURES = {"tiny", "reference", "tiny_data", "demo_without_site_table"}


# `make test` runs two test processes (pytest-xdist, `--dist loadscope
# --no-loadscope-reorder`): each takes a whole module at a time, so a module's fixtures are
# built once, and the next module in this order when it runs out. The longest go first, so
# that neither process is left with a long one at the end. test_models needs no reference
# chain, so its process works while the other builds it; the resumed run, which ends by
# comparing with the reference, comes after it rather than waiting for it.
LONGEST_FIRST = ["test_chain", "test_models", "test_chain_resume", "test_robustness",
                 "test_rerun", "test_predict", "test_cameras", "test_features",
                 "test_backbones"]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__ in SLOW_MODULES or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)

    def rank(item) -> int:
        name = item.module.__name__
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)   # stable: each module's tests keep their order


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder every test process of the session shares, built by `build` once.

    With pytest-xdist (`make test` runs two test processes) the first process that asks
    builds it while the others wait on a lock; a build that failed is tried again by the
    next asker, so each sees the same error. Tests read these folders and copy them before
    changing anything. Without xdist the folder is this session's own."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    from filelock import FileLock
    shared = tmp_path_factory.getbasetemp().parent / name
    built = shared.with_name(name + ".built")
    with FileLock(str(shared) + ".lock"):
        if not built.exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            build(shared)
            built.touch()
    return shared


def make_tiny(root: Path) -> None:
    """The tiny data set: one train video truncated, one test video deleted."""
    made = subprocess.run([sys.executable, str(PROJECT_ROOT / "r00_make_demo_data.py"),
                           *TINY_DATA, "--out", str(root / "input")],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    labels = pd.read_csv(root / "input" / "train_labels.csv")
    submission = pd.read_csv(root / "input" / "submission_format.csv")
    truncated = root / "input" / "videos" / labels["filename"].iloc[4]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    (root / "input" / "videos" / submission["filename"].iloc[2]).unlink()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """The tiny data set (make_tiny), made once per session."""
    return built_once(tmp_path_factory, "tiny", make_tiny)


@pytest.fixture(scope="session")
def reference(tiny, tmp_path_factory) -> Path:
    """The tiny chain run one job at a time on the tiny set, once per session."""
    def build(data: Path) -> None:
        copy_input(tiny, data)
        result = run_all(data, workers=1)
        assert result.returncode == 0, result.stderr[-3000:]
    return built_once(tmp_path_factory, "reference", build)
