"""Change the inputs, rerun, and get exactly the from-scratch answer.

Each test takes the finished tiny chain (`reference`), changes its input/ the way a user's
folder changes (clips added, removed or replaced, a label corrected, a site table added, a
cache file lost), reruns, and compares with a run from scratch on the changed folder: the
stages the change reaches give the same outputs, and only the work whose inputs changed is
redone. "Test clips added" goes end to end through run_all; the others compare the stages
the change reaches, so the suite stays fast.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from a00_common import safe_cache_name
from tiny_chain import (PROJECT_ROOT, TINY_DATA, assert_same_predictions, copy_through, run_all,
                        run_script, stage_arguments)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

# the cheap feature sets: enough to show per-row keys without a backbone's start-up
CHEAP_EXTRACTORS = ("hashes", "audio_logmel")


@pytest.fixture(scope="module")
def extra(tmp_path_factory) -> Path:
    """Clips from another seed of the same generator, to add to the tiny set."""
    root = tmp_path_factory.mktemp("extra")
    settings = {**dict(zip(TINY_DATA[::2], TINY_DATA[1::2])),
                "--n_train": "2", "--n_test": "3", "--seed": "5"}
    made = subprocess.run([sys.executable, str(PROJECT_ROOT / "r00_make_demo_data.py"),
                           *[part for item in settings.items() for part in item],
                           "--out", str(root / "input")], capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stderr
    return root / "input"


def add_clips(data: Path, extra: Path, table: str) -> list[str]:
    """Copies the extra set's clips of one table (train_labels / submission_format) into
    data, with their rows and their video_metadata rows; returns their names."""
    rows = pd.read_csv(extra / f"{table}.csv")
    for name in rows["filename"]:
        shutil.copy2(extra / "videos" / name, data / "input" / "videos" / name)
    ours = pd.read_csv(data / "input" / f"{table}.csv")
    pd.concat([ours, rows]).to_csv(data / "input" / f"{table}.csv", index=False)
    metadata_path = data / "input" / "video_metadata.csv"
    if metadata_path.exists():
        sites = pd.read_csv(extra / "video_metadata.csv")
        pd.concat([pd.read_csv(metadata_path), sites[sites["filename"].isin(rows["filename"])]]
                  ).to_csv(metadata_path, index=False)
    return rows["filename"].tolist()


def rerun_and_from_scratch(reference: Path, tmp_path: Path, change) -> tuple[Path, Path]:
    """(the finished run with `change` applied, a fresh folder holding only its input)."""
    rerun = tmp_path / "rerun"
    shutil.copytree(reference, rerun)
    change(rerun)
    scratch = tmp_path / "scratch"
    shutil.copytree(rerun / "input", scratch / "input")
    return rerun, scratch


def run_stage(script: str, data: Path, *arguments: str) -> str:
    """Runs one script with the tiny chain's settings; returns its log."""
    result = run_script(script, data, *stage_arguments(script[:3]), *arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def side_by_side(work, rerun: Path, scratch: Path) -> tuple:
    """work(rerun) and work(scratch) at the same time (their scripts are separate processes
    on separate folders); both results."""
    with ThreadPoolExecutor(2) as pool:
        both = pool.submit(work, rerun), pool.submit(work, scratch)
        return both[0].result(), both[1].result()


def preprocess_and_features(data: Path) -> dict[str, str]:
    """r10, r11 and the cheap r12 extractors; their logs by stage."""
    logs = {"r10": run_stage("r10_preprocess_data.py", data),
            "r11": run_stage("r11_get_metadata_table.py", data)}
    for extractor in CHEAP_EXTRACTORS:
        logs[extractor] = run_stage("r12_extract_features.py", data, "--extractor", extractor)
    return logs


def assert_same_tables(first: Path, second: Path, names: list[str]) -> None:
    for name in names:
        left = pd.read_csv(first / name, keep_default_na=False)
        right = pd.read_csv(second / name, keep_default_na=False)
        pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=0, atol=1e-9,
                                      obj=name)


def assert_same_stages(rerun: Path, scratch: Path) -> None:
    """r10's index, r11's tables and the cheap features agree, row for row."""
    assert_same_tables(rerun, scratch, ["cache/preprocess_index.csv", "metadata/metadata.csv",
                                        "metadata/folds.csv"])
    for extractor in CHEAP_EXTRACTORS:
        folder = Path("features") / extractor
        assert_same_tables(rerun, scratch, [str(folder / "index.csv")])
        for array in ("features.npy", "statistics.npy"):
            np.testing.assert_array_equal(np.load(rerun / folder / array),
                                          np.load(scratch / folder / array))


def redo_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "[redo]" in line]


# ----------------------------------------------------------------------------- end to end

def hide_clips(data: Path, names: list[str]) -> None:
    """Takes clips out of a finished run's folder as if it had never seen them: their
    submission rows, their videos and every cache file r10 wrote for them (probe, record,
    frames, audio), so that getting them back means decoding them anew."""
    submission = pd.read_csv(data / "input" / "submission_format.csv")
    submission[~submission["filename"].isin(names)].to_csv(
        data / "input" / "submission_format.csv", index=False)
    for name in names:
        (data / "input" / "videos" / name).unlink()
        stem = safe_cache_name(name)
        for path in (data / "cache").rglob(stem + "*"):
            path.unlink()


def test_test_clips_added_retrain_nothing_and_equal_a_run_from_scratch(reference, tmp_path):
    """The reference is the run from scratch on the whole tiny set. A folder whose run never
    saw three of its test clips (the reference with them hidden, rerun) gets them back and
    is rerun: it must decode and extract them, retrain nothing, and equal the reference
    table by table to 1e-9. Both reruns go one job at a time, as the reference did."""
    submission = pd.read_csv(reference / "input" / "submission_format.csv")
    present = [name for name in submission["filename"]
               if (reference / "input" / "videos" / name).exists()]
    added = present[::3][:3]
    data = tmp_path / "rerun"
    shutil.copytree(reference, data)
    hide_clips(data, added)
    result = run_all(data, workers=1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert pd.read_csv(data / "submissions" / "submission.csv")["filename"].tolist() == \
        [name for name in submission["filename"] if name not in added]

    shutil.copy2(reference / "input" / "submission_format.csv", data / "input")
    for name in added:
        shutil.copy2(reference / "input" / "videos" / name, data / "input" / "videos" / name)
    result = run_all(data, workers=1)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = pd.read_csv(data / "logs" / "run_all.csv", keep_default_na=False).set_index("job")
    trained = jobs[jobs.index.str.startswith(("r21:", "r31:"))]
    assert len(trained) == 6 and (trained["outcome"] == "up to date").all(), trained
    for job in ("r10", "r11", "r12:effnet_lite0", "r40:lgbm_tabular", "r48", "r60"):
        assert jobs.loc[job, "outcome"] == "redone", job
    decoded = (data / "logs" / "r10.log").read_text()
    assert "[redo] r10: 3 video(s) (new)" in decoded, decoded[-2000:]
    assert_same_predictions(data, reference, tolerance=1e-9, by_fold=True)


# ----------------------------------------------------------------------------- stage by stage

def test_a_test_clip_removed_is_dropped_everywhere_without_retraining(reference, tmp_path):
    submission = pd.read_csv(reference / "input" / "submission_format.csv")
    removed = submission["filename"].iloc[5]

    def remove(data: Path) -> None:
        submission.drop(index=5).to_csv(data / "input" / "submission_format.csv", index=False)
        (data / "input" / "videos" / removed).unlink()

    rerun, scratch = rerun_and_from_scratch(reference, tmp_path, remove)
    logs, _ = side_by_side(preprocess_and_features, rerun, scratch)
    assert_same_stages(rerun, scratch)
    assert not redo_lines(logs["r10"])  # nothing left to decode
    trained = run_stage("r21_train_models.py", rerun, "--model", "lgbm_tabular")
    assert not redo_lines(trained) and trained.count("[up to date]") == 2
    tested = run_stage("r40_process_test.py", rerun, "--model", "lgbm_tabular")
    assert "changed: test_inputs, test_rows" in tested
    table = pd.read_csv(rerun / "predictions" / "level1" / "lgbm_tabular_test.csv")
    before = pd.read_csv(reference / "predictions" / "level1" / "lgbm_tabular_test.csv")
    # the other clips' level-1 predictions do not depend on the removed one
    pd.testing.assert_frame_equal(table, before[before["filename"] != removed]
                                  .reset_index(drop=True), rtol=0, atol=1e-12)


def test_a_changed_label_moves_folds_as_from_scratch_and_retrains(reference, tmp_path):
    labels = pd.read_csv(reference / "input" / "train_labels.csv")
    classes = labels.columns[1:]

    def relabel(data: Path) -> None:
        changed = labels.copy()
        changed.loc[7, classes] = 0
        changed.loc[7, "hog"] = 1
        changed.to_csv(data / "input" / "train_labels.csv", index=False)

    rerun, scratch = rerun_and_from_scratch(reference, tmp_path, relabel)
    logs, _ = side_by_side(preprocess_and_features, rerun, scratch)
    assert_same_stages(rerun, scratch)
    assert not redo_lines(logs["r10"]) and not redo_lines(logs["hashes"])
    assert redo_lines(logs["r11"])
    trained = run_stage("r21_train_models.py", rerun, "--model", "lgbm_tabular")
    assert len(redo_lines(trained)) == 2 and "labels" in redo_lines(trained)[0]


def test_a_train_clip_added_costs_one_clip_and_equals_from_scratch(reference, extra, tmp_path):
    added = []
    rerun, scratch = rerun_and_from_scratch(
        reference, tmp_path,
        lambda data: added.extend(add_clips(data, extra, "train_labels")[:1]))
    labels = pd.read_csv(rerun / "input" / "train_labels.csv")
    labels.iloc[:-1].to_csv(rerun / "input" / "train_labels.csv", index=False)
    labels.iloc[:-1].to_csv(scratch / "input" / "train_labels.csv", index=False)
    logs, _ = side_by_side(preprocess_and_features, rerun, scratch)
    assert_same_stages(rerun, scratch)
    assert redo_lines(logs["r10"]) == [line for line in logs["r10"].splitlines()
                                       if "[redo] r10: 1 video(s) (new)" in line]
    folds = pd.read_csv(rerun / "metadata" / "folds.csv")
    assert folds["filename"].tolist()[-1] == added[0]


def test_a_video_replaced_by_other_bytes_is_redone_alone(reference, extra, tmp_path):
    submission = pd.read_csv(reference / "input" / "submission_format.csv")
    replaced = submission["filename"].iloc[0]
    donor = sorted((extra / "videos").iterdir())[0]
    rerun, scratch = rerun_and_from_scratch(
        reference, tmp_path,
        lambda data: shutil.copyfile(donor, data / "input" / "videos" / replaced))
    logs, _ = side_by_side(preprocess_and_features, rerun, scratch)
    assert_same_stages(rerun, scratch)
    assert [line.split("] ", 1)[1] for line in redo_lines(logs["r10"])] == \
        ["r10: 1 video(s) (the video changed)"]
    index = pd.read_csv(rerun / "features" / "hashes" / "index.csv").set_index("filename")
    before = pd.read_csv(reference / "features" / "hashes" / "index.csv").set_index("filename")
    changed = index.index[index["digest"] != before.loc[index.index, "digest"]].tolist()
    assert changed == [replaced]


def test_a_site_table_removed_or_added_gives_the_from_scratch_metadata(reference, tmp_path):
    rerun, scratch = rerun_and_from_scratch(
        reference, tmp_path, lambda data: (data / "input" / "video_metadata.csv").unlink())
    logs, _ = side_by_side(preprocess_and_features, rerun, scratch)
    assert_same_stages(rerun, scratch)
    assert "changed: video_metadata" in logs["r11"]
    metadata = pd.read_csv(rerun / "metadata" / "metadata.csv", keep_default_na=False)
    # no file modification time is taken for a capture time unless the user says so
    assert "file_mtime" not in set(metadata["capture_time_source"])
    # without the site table every decoded clip gets an inferred camera, the rest none
    readable = metadata["readable"].astype(str) == "True"
    assert (metadata.loc[readable, "camera_source"] == "inferred").all()
    assert (metadata.loc[~readable, "camera"] == "").all()
    shutil.copy2(reference / "input" / "video_metadata.csv", rerun / "input")
    run_stage("r11_get_metadata_table.py", rerun)
    assert_same_tables(rerun, reference, ["metadata/metadata.csv", "metadata/folds.csv"])


def test_a_deleted_or_truncated_cache_file_redoes_that_video_only(reference, tmp_path):
    data = copy_through(reference, tmp_path / "damaged", ["cache"])
    index = pd.read_csv(data / "cache" / "preprocess_index.csv", keep_default_na=False)
    with_frames = index[index["frames_path"] != ""]
    deleted = data / "cache" / with_frames["frames_path"].iloc[0]
    truncated = data / "cache" / with_frames["frames_path"].iloc[1]
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[:200])
    log = run_stage("r10_preprocess_data.py", data)
    assert [line.split("] ", 1)[1] for line in redo_lines(log)] == \
        ["r10: 2 video(s) (its cache files are damaged or gone)"]
    for path in (deleted, truncated):
        assert path.read_bytes() == (reference / path.relative_to(data)).read_bytes()
    assert (data / "cache" / "preprocess_index.csv").read_bytes() == \
        (reference / "cache" / "preprocess_index.csv").read_bytes()


def test_a_backbone_setting_changes_no_hash_row(reference, tmp_path):
    """The hash features are keyed on their own settings only, so another backbone image
    size must not change them (it did: the frames were resized for the backbones first)."""
    data = copy_through(reference, tmp_path / "image size", ["cache"])
    result = run_script("r12_extract_features.py", data, "--extractor", "hashes",
                        "--image_size", "96")
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("features.npy", "statistics.npy", "config.json"):
        assert (data / "features" / "hashes" / name).read_bytes() == \
            (reference / "features" / "hashes" / name).read_bytes(), name


# ------------------------------------------------------------------------ refusals and encodings

def test_r60_refuses_a_submission_with_a_missing_row(reference, tmp_path):
    data = tmp_path / "stale"
    shutil.copytree(reference, data)
    submission = pd.read_csv(data / "input" / "submission_format.csv")
    extra_row = submission.iloc[[0]].assign(filename="new clip.mp4")
    pd.concat([submission, extra_row]).to_csv(data / "input" / "submission_format.csv",
                                              index=False)
    result = run_script("r60_ensemble.py", data)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert "first missing row 'new clip.mp4'" in lines[-1] and "1 missing" in lines[-1]
    assert (data / "submissions" / "submission.csv").read_bytes() == \
        (reference / "submissions" / "submission.csv").read_bytes()


def test_camera_codes_agree_between_train_and_test_rows(reference, tmp_path, monkeypatch):
    data = copy_through(reference, tmp_path / "cameras", ["cache", "features"])
    labels = pd.read_csv(data / "input" / "train_labels.csv")["filename"].tolist()
    tests = pd.read_csv(data / "input" / "submission_format.csv")["filename"].tolist()
    sites = pd.read_csv(data / "input" / "video_metadata.csv")
    camera = {name: "shared" for name in labels + tests}
    camera[labels[0]] = "only in train"
    camera[tests[0]] = "only in test"
    sites["site"] = sites["filename"].map(camera)
    sites.to_csv(data / "input" / "video_metadata.csv", index=False)
    run_stage("r11_get_metadata_table.py", data)
    monkeypatch.setenv("TRAPSTACK_DATA", str(data))
    from a03_models import load_tabular
    train_codes = load_tabular(labels)["camera_code"]
    test_codes = load_tabular(tests)["camera_code"]
    both = load_tabular(tests + labels)["camera_code"]
    assert train_codes[labels[1]] == test_codes[tests[1]]          # the shared camera
    assert len({train_codes[labels[0]], test_codes[tests[0]], test_codes[tests[1]]}) == 3
    # whichever rows are loaded together, a video keeps its code
    pd.testing.assert_series_equal(both.loc[labels], train_codes)
    pd.testing.assert_series_equal(both.loc[tests], test_codes)
