"""A tiny chain killed in the middle and resumed: on Ray, then on this machine's process
pool. Finished work is not redone, and every table it shares with the sequential reference
(tests/conftest.py, checked by test_chain.py) is equal to it. A module of its own, so that
with two test processes it runs in one while the other builds or uses the reference.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny_chain import CHAIN, PROJECT_ROOT, assert_same_predictions, copy_input, run_all

# The executor, not the models, is under test: the chain's jobs without a network (the
# reference trains and checks those), so that no job waits on TensorFlow's start-up
WITHOUT_NETWORKS = ["--pass", "r12:--extractors hashes,audio_logmel",
                    "--pass", "r21:--models lgbm_tabular", "--pass", "r50:--stackers lgbm"]

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def test_a_ray_run_killed_and_resumed_without_ray_redoes_nothing_and_matches(
        tiny, tmp_path, request):
    """A run on a local Ray instance (r10 and r12 split into parts and joined, r11, the first
    folds) is killed once a model is trained; the same folder then finishes with `--workers
    2` on this machine's process pool. Finished work is not redone; the features and the
    level-1 tables, by fold too, equal the sequential reference's. One chain without its
    networks, two executors, one kill."""
    pytest.importorskip("ray")
    data = copy_input(tiny, tmp_path / "resumed")
    command = [sys.executable, str(PROJECT_ROOT / "run_all.py"), "--data", str(data), *CHAIN,
               *WITHOUT_NETWORKS, "--ray", "--workers", "2"]
    ray_log = tmp_path / "ray.log"
    with ray_log.open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log,
                                   start_new_session=True)
        first_fold = data / "models" / "lgbm_tabular" / "fold0.json"
        deadline = time.time() + 300
        while not first_fold.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert first_fold.exists(), "the run was killed before any model was trained"
    assert "Ray cluster with 2 CPU(s)" in ray_log.read_text()
    candidates = [data / "cache" / "preprocess_index.csv", data / "metadata" / "folds.csv",
                  first_fold] + sorted((data / "features").glob("*/features.npy")) + \
        sorted((data / "models").glob("*/fold*.json"))
    finished = {p: p.stat().st_mtime_ns for p in candidates if p.exists()}
    result = run_all(data, *WITHOUT_NETWORKS, "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in finished} == finished, "finished work was redone"
    table = pd.read_csv(data / "logs" / "run_all.csv")
    assert (table["status"] == "done").all()
    assert len(pd.read_csv(data / "submissions" / "submission.csv")) == \
        len(pd.read_csv(data / "input" / "submission_format.csv"))
    # the reference is asked for only now: another test process may still be building it
    reference = request.getfixturevalue("reference")
    for extractor in ("hashes", "audio_logmel"):
        folder = Path("features") / extractor
        for name in ("features.npy", "index.csv"):
            assert (data / folder / name).read_bytes() == \
                (reference / folder / name).read_bytes(), folder / name
        # the log-mel statistics' last bits follow the BLAS threads a job had (two in the
        # reference's one-at-a-time run, one here)
        np.testing.assert_allclose(np.load(data / folder / "statistics.npy"),
                                   np.load(reference / folder / "statistics.npy"),
                                   rtol=1e-5, atol=1e-5)
    assert_same_predictions(reference, data, by_fold=True, under="predictions/level1/lgbm_tabular")
