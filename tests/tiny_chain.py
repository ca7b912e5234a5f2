"""The tiny chain the tests share: its data set, its settings, and how to run it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# test clips drawn one by one (as Pri-matrix drew them): they sit between labelled clips of
# their visit, which the neighbour views must handle, and the counts are exact
TINY_DATA = ["--n_train", "30", "--n_test", "10", "--min_seconds", "1", "--max_seconds", "2",
             "--cameras", "160x120@8,128x96@6", "--seed", "3", "--test_split", "clip"]
# small and fast settings for every stage; the same for every run so results compare; r12
# extracts what the two models read (the crop extractor is tested in test_features); two
# folds, the fewest that give every clip an out-of-fold prediction
CHAIN = ["--pass", "r10:--frames_per_video 8 --frame_size 64",
         "--pass", "r11:--n_folds 2",
         "--pass", "r12:--image_size 64 --extractors hashes,audio_logmel,effnet_lite0",
         "--pass", "r21:--epochs 3 --models gru_effnet_lite0,lgbm_tabular",
         "--pass", "r50:--lgbm_rounds 40 --xgb_rounds 40 --mlp_epochs 5",
         "--pass", "r60:--adversarial_rounds 20"]
MODELS = ["gru_effnet_lite0", "lgbm_tabular"]
STACKERS = ["lgbm", "xgb", "mlp"]


def run_all(data: Path, *extra: str, timeout: float = 600,
            workers: int = 2) -> subprocess.CompletedProcess:
    """The tiny chain on `data`, `workers` jobs at a time (the reference runs one at a time,
    so that every parallel run is checked against a sequential one)."""
    if "--workers" not in extra:
        extra = (*extra, "--workers", str(workers))
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "run_all.py"), "--data",
                             str(data), *CHAIN, *extra], capture_output=True, text=True,
                            timeout=timeout, cwd=data)
    return result


def copy_input(source: Path, destination: Path) -> Path:
    shutil.copytree(source / "input", destination / "input")
    shutil.copytree(source / "demo_truth", destination / "demo_truth")
    return destination


def run_script(script: str, data: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / script), "--data", str(data),
                           *arguments], capture_output=True, text=True, timeout=300)


def copy_through(reference: Path, destination: Path, folders: list[str]) -> Path:
    for folder in ["input", *folders]:
        shutil.copytree(reference / folder, destination / folder)
    return destination


def stage_arguments(script: str) -> list[str]:
    """The tiny chain's settings for one script (as run_all passes them)."""
    passed = [CHAIN[i + 1] for i in range(0, len(CHAIN), 2)]
    return [part for entry in passed if entry.startswith(script + ":")
            for part in entry.split(":", 1)[1].split()]


def prediction_tables(data: Path, by_fold: bool = False,
                      under: str = "") -> dict[str, pd.DataFrame]:
    """Every prediction table of a finished chain and the submission, by relative path
    (only those whose path starts with `under`, when given)."""
    from a00_io import read_fold_table
    paths = sorted([*(data / "predictions").rglob("*.csv"),
                    *(data / "predictions").rglob("*_by_fold.npz")]) + \
        [data / "submissions" / "submission.csv"]
    return {str(p.relative_to(data)): read_fold_table(p) if p.suffix == ".npz" else pd.read_csv(p)
            for p in paths
            if (by_fold or "by_fold" not in p.name) and str(p.relative_to(data)).startswith(under)}


def assert_same_predictions(first: Path, second: Path, tolerance: float = 1e-5,
                            by_fold: bool = False, under: str = "") -> None:
    """The same tables, rows and columns, with numbers equal to `tolerance` (only the
    tables whose path starts with `under`, e.g. "predictions/level1", when given)."""
    left = prediction_tables(first, by_fold, under)
    right = prediction_tables(second, by_fold, under)
    assert left, f"no table under {under!r}"
    assert sorted(left) == sorted(right)
    for name, table in left.items():
        other = right[name]
        assert table.columns.tolist() == other.columns.tolist(), name
        assert table["filename"].tolist() == other["filename"].tolist(), name
        numbers = table.select_dtypes("number").columns
        np.testing.assert_allclose(table[numbers].to_numpy(float),
                                   other[numbers].to_numpy(float), rtol=0, atol=tolerance,
                                   err_msg=name)
