"""Shared test set-up: the project root on sys.path, and quiet TensorFlow in subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
SLOW_MODULES = {"test_chain", "test_rerun", "test_robustness", "test_predict",
                "test_backbones", "test_features"}
SLOW_FIXTURES = {"tiny", "reference", "tiny_data", "demo_without_site_table"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__ in SLOW_MODULES or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """The tiny data set, made once per session: one train video truncated, one test
    video deleted."""
    root = tmp_path_factory.mktemp("tiny")
    made = subprocess.run([sys.executable, str(PROJECT_ROOT / "r00_make_demo_data.py"),
                           *TINY_DATA, "--out", str(root / "input")],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    labels = pd.read_csv(root / "input" / "train_labels.csv")
    submission = pd.read_csv(root / "input" / "submission_format.csv")
    truncated = root / "input" / "videos" / labels["filename"].iloc[4]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    (root / "input" / "videos" / submission["filename"].iloc[2]).unlink()
    return root


@pytest.fixture(scope="session")
def reference(tiny, tmp_path_factory) -> Path:
    data = copy_input(tiny, tmp_path_factory.mktemp("sequential"))
    result = run_all(data, workers=1)
    assert result.returncode == 0, result.stderr[-3000:]
    return data
