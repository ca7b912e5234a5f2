"""A tiny chain killed in the middle and resumed: on Ray, then on this machine's process
pool. Finished work is not redone, and every table equals the sequential reference
(tests/conftest.py) that test_chain.py checks. A module of its own, so that with two test
processes it runs while the other builds the reference.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tiny_chain import CHAIN, PROJECT_ROOT, assert_same_predictions, copy_input, run_all

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def test_a_ray_run_killed_and_resumed_without_ray_redoes_nothing_and_matches(
        tiny, tmp_path, request):
    """A run on a local Ray instance (r10 and r12 split into parts and joined, r11, the first
    folds) is killed once a model is trained; the same folder then finishes with `--workers
    2` on this machine's process pool. Finished work is not redone, and every table, by fold
    too, equals the sequential reference. The tiny chain's slowest test (about 1.5 minutes):
    one chain, two executors, one kill."""
    pytest.importorskip("ray")
    data = copy_input(tiny, tmp_path / "resumed")
    command = [sys.executable, str(PROJECT_ROOT / "run_all.py"), "--data", str(data), *CHAIN,
               "--ray", "--workers", "2"]
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
    result = run_all(data, "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in finished} == finished, "finished work was redone"
    table = pd.read_csv(data / "logs" / "run_all.csv")
    assert (table["status"] == "done").all()
    # the reference is asked for only now: another test process may still be building it
    assert_same_predictions(request.getfixturevalue("reference"), data, by_fold=True)
