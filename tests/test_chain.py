"""The whole chain on a tiny generated data set, through run_all.py.

One sequential run is the reference: every contract file must have the right rows, a bad
video (truncated) and a missing one must get failure rows and predictions, and a second
run must do no work (test_chain_resume.py: a run killed in the middle and resumed must
then produce the same predictions).
"""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from tiny_chain import (MODELS, STACKERS, copy_input, run_all)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def test_every_contract_file_has_the_right_rows(reference):
    labels = pd.read_csv(reference / "input" / "train_labels.csv")
    submission_format = pd.read_csv(reference / "input" / "submission_format.csv")
    classes = labels.columns[1:].tolist()
    train, test = labels["filename"].tolist(), submission_format["filename"].tolist()

    metadata = pd.read_csv(reference / "metadata" / "metadata.csv")
    assert metadata["filename"].tolist() == train + test
    folds = pd.read_csv(reference / "metadata" / "folds.csv")
    assert folds["filename"].tolist() == train and sorted(folds["fold"].unique()) == [0, 1]
    for extractor in ("hashes", "audio_logmel", "effnet_lite0"):
        index = pd.read_csv(reference / "features" / extractor / "index.csv")
        assert index["filename"].tolist() == train + test
        stored = np.load(reference / "features" / extractor / "features.npy", mmap_mode="r")
        assert stored.shape[0] == len(index)
    for model in MODELS:
        oof = pd.read_csv(reference / "predictions" / "level1" / f"{model}_oof.csv")
        assert oof.columns.tolist() == ["filename"] + classes and oof["filename"].tolist() == train
        tested = pd.read_csv(reference / "predictions" / "level1" / f"{model}_test.csv")
        assert tested["filename"].tolist() == test
        for fold in range(2):
            assert (reference / "models" / model / f"fold{fold}.json").exists()
        assert (reference / "models" / model / "config.json").exists()
    neighbors = pd.read_csv(reference / "predictions" / "neighbors_oof.csv")
    assert neighbors["filename"].tolist() == train
    for stacker in STACKERS:
        oof = pd.read_csv(reference / "predictions" / "level2" / f"{stacker}_oof.csv")
        assert oof["filename"].tolist() == train
    submission = pd.read_csv(reference / "submissions" / "submission.csv")
    assert submission.columns.tolist() == submission_format.columns.tolist()
    assert submission["filename"].tolist() == test
    values = submission[classes].to_numpy(float)
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
    ensemble = pd.read_csv(reference / "predictions" / "ensemble_oof.csv")
    assert ensemble["filename"].tolist() == train
    scores = pd.read_csv(reference / "reports" / "scores.csv")
    assert {"r31_level1", "r50_level2", "r60_ensemble"} <= set(scores["stage"])
    summary = pd.read_csv(reference / "reports" / "summary.csv")
    assert {"baseline", "level1", "level2", "ensemble"} <= set(summary["level"])
    assert (reference / "reports" / "report.html").stat().st_size > 10_000


def test_a_truncated_and_a_missing_video_are_named_and_still_predicted(reference):
    labels = pd.read_csv(reference / "input" / "train_labels.csv")
    submission_format = pd.read_csv(reference / "input" / "submission_format.csv")
    truncated, missing = labels["filename"].iloc[4], submission_format["filename"].iloc[2]
    failures = pd.read_csv(reference / "cache" / "failures.csv")
    assert missing in set(failures["filename"])
    assert "not found" in " ".join(failures.loc[failures["filename"] == missing, "error"])
    assert truncated in set(failures["filename"])
    submission = pd.read_csv(reference / "submissions" / "submission.csv")
    assert missing in set(submission["filename"])
    metadata = pd.read_csv(reference / "metadata" / "metadata.csv").set_index("filename")
    assert not metadata.loc[missing, "readable"]


def test_a_second_run_does_no_work(reference, tmp_path):
    data = tmp_path / "again"
    shutil.copytree(reference, data)   # copy2 keeps every file's mtime

    def snapshot():
        # r10's plan and its "done" marker are how run_all's backbone job follows r10:
        # remade on every run
        return {p: p.stat().st_mtime_ns for p in data.rglob("*")
                if p.is_file() and "logs" not in p.parts
                and not p.name.startswith("preprocess_plan.")}
    before = snapshot()
    result = run_all(data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert snapshot() == before
    logs = [p for p in (data / "logs").glob("*.log")]
    assert logs and all("up to date" in p.read_text() for p in logs), \
        [p.name for p in logs if "up to date" not in p.read_text()]
    jobs = pd.read_csv(data / "logs" / "run_all.csv", keep_default_na=False)
    assert (jobs.loc[~jobs["job"].str.startswith("expand"), "outcome"] == "up to date").all()


def test_a_failed_job_stops_its_dependants_and_names_its_log(tiny, tmp_path):
    data = copy_input(tiny, tmp_path / "failing")
    # Lite0 needs images of at least 32 px: its feature job fails, the others do not
    result = run_all(data, "--until", "r31", "--pass", "r12:--image_size 8")
    assert result.returncode == 1
    table = pd.read_csv(data / "logs" / "run_all.csv").set_index("job")
    assert table.loc["r12:effnet_lite0", "status"] == "failed"
    blocked = table.loc["r21:gru_effnet_lite0:fold0"]
    assert blocked["status"] == "blocked"
    assert "r12:effnet_lite0" in blocked["reason"] and "r12_effnet_lite0.log" in blocked["reason"]
    assert "FAILED" in result.stderr and "r12_effnet_lite0.log" in result.stderr
    # independent work still finished
    assert table.loc["r21:lgbm_tabular:fold1", "status"] == "done"
    assert table.loc["r31:lgbm_tabular", "status"] == "done"
    assert table.loc["r31:gru_effnet_lite0", "status"] == "blocked"


def test_one_model_by_name_extracts_the_features_it_needs(reference, tmp_path):
    data = tmp_path / "one_model"
    shutil.copytree(reference, data)
    # random_lite0 is not in r12's EXTRACTORS: run_all must add its feature job
    result = run_all(data, "--model", "gru_random_lite0", "--fold", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(data / "logs" / "run_all.csv").set_index("job")
    assert table.loc["r12:random_lite0", "status"] == "done"
    assert table.loc["r21:gru_random_lite0:fold1", "status"] == "done"
    assert not any(key.startswith(("r21:gru_effnet_lite0", "r31", "r48")) for key in table.index)
    assert (data / "features" / "random_lite0" / "features.npy").exists()
    assert sorted(p.name for p in (data / "models" / "gru_random_lite0").glob("fold*.weights.h5")) \
        == ["fold1.weights.h5"]
