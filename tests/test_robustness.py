"""Bad inputs and interrupted runs lose nothing.

Every kind of bad video goes through the whole chain: the run finishes, every video is
predicted, and cache/failures.csv names each unusable one with a reason. Every kind of bad
table stops with one line naming the file and what to fix. A stage killed with SIGKILL and
rerun gives what an uninterrupted run gives, and the same seed gives the same folds and
predictions.
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny_chain import (PROJECT_ROOT, copy_input, copy_through, run_all, run_script,
                        stage_arguments)

from a00_io import read_frames

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-nostdin", *arguments], check=True,
                   timeout=120)


def make_bad_videos(folder: Path, good_video: Path) -> dict[str, str]:
    """Writes every kind of awkward video; returns {filename: what is wrong with it}."""
    source = ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=8"]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    kinds = {}

    (folder / "zero bytes.mp4").write_bytes(b"")
    kinds["zero bytes.mp4"] = "empty"
    (folder / "not_a_video.mp4").write_text("this is a text file with a video's name\n")
    kinds["not_a_video.mp4"] = "not a video"
    truncated = good_video.read_bytes()
    (folder / "truncated.mp4").write_bytes(truncated[: len(truncated) // 3])
    kinds["truncated.mp4"] = "truncated"
    ffmpeg(*source, "-t", "2", *h264, str(folder / "codec_source.mp4"))
    data = (folder / "codec_source.mp4").read_bytes()
    (folder / "unknown_codec.mp4").write_bytes(data.replace(b"avc1", b"zzzz"))
    (folder / "codec_source.mp4").unlink()
    kinds["unknown_codec.mp4"] = "unsupported codec"

    ffmpeg(*source, "-frames:v", "1", *h264, str(folder / "one_frame.mp4"))
    kinds["one_frame.mp4"] = "usable"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=5", "-t", "600", *h264,
           "-g", "50", str(folder / "ten_minutes.mp4"))
    kinds["ten_minutes.mp4"] = "usable"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=16x16:rate=8", "-t", "1", *h264,
           str(folder / "tiny_16x16.mp4"))
    kinds["tiny_16x16.mp4"] = "usable"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=17x9:rate=8", "-t", "1", "-c:v", "libx264",
           "-pix_fmt", "yuv444p", str(folder / "odd_17x9.mp4"))
    kinds["odd_17x9.mp4"] = "usable"
    ffmpeg(*source, "-t", "1", *h264, str(folder / "upright.mp4"))
    ffmpeg("-i", str(folder / "upright.mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=90",
           str(folder / "rotated_phone.mp4"))
    (folder / "upright.mp4").unlink()
    kinds["rotated_phone.mp4"] = "usable"
    ffmpeg(*source, *tone, "-t", "1", *h264, "-c:a", "aac", "-shortest",
           str(folder / "with_sound.mp4"))
    kinds["with_sound.mp4"] = "usable"
    ffmpeg(*source, "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1", *h264,
           "-c:a", "aac", "-shortest", str(folder / "silent_audio.mp4"))
    kinds["silent_audio.mp4"] = "usable"
    ffmpeg(*source, "-t", "1", *h264, "-an", str(folder / "Ünïcödé clip – no audio.mp4"))
    kinds["Ünïcödé clip – no audio.mp4"] = "usable"
    return kinds


@pytest.fixture(scope="module")
def bad_run(tiny, tmp_path_factory):
    """The tiny set plus every bad video (most in the test set, two in training)."""
    data = copy_input(tiny, tmp_path_factory.mktemp("bad_videos"))
    videos = data / "input" / "videos"
    labels = pd.read_csv(data / "input" / "train_labels.csv")
    submission = pd.read_csv(data / "input" / "submission_format.csv")
    good = videos / labels["filename"].iloc[0]
    kinds = make_bad_videos(videos, good)
    (videos / "unlisted_extra.mp4").write_bytes(good.read_bytes())
    in_training = ["zero bytes.mp4", "truncated.mp4"]
    classes = labels.columns[1:]
    extra_labels = pd.DataFrame(0, index=range(len(in_training)), columns=classes)
    extra_labels["blank"] = 1
    extra_labels.insert(0, "filename", in_training)
    pd.concat([labels, extra_labels]).to_csv(data / "input" / "train_labels.csv", index=False)
    in_test = [name for name in kinds if name not in in_training]
    extra_test = pd.DataFrame(0.0, index=range(len(in_test)), columns=classes)
    extra_test.insert(0, "filename", in_test)
    pd.concat([submission, extra_test]).to_csv(data / "input" / "submission_format.csv",
                                               index=False)
    truth = pd.read_csv(data / "demo_truth" / "test_labels.csv")
    pd.concat([truth, extra_test]).to_csv(data / "demo_truth" / "test_labels.csv", index=False)
    # what is checked is each video's way through r10-r12 and its row in every table; a
    # network sees a failed video only as its missing flag, which the reference chain's
    # truncated and missing videos take through the GRU, so one model and one stacker here
    result = run_all(data, "--pass", "r21:--models lgbm_tabular", "--pass", "r50:--stackers lgbm",
                     timeout=900)
    return data, kinds, result


def test_the_run_finishes_and_every_video_is_predicted(bad_run):
    data, kinds, result = bad_run
    assert result.returncode == 0, result.stderr[-3000:]
    submission = pd.read_csv(data / "submissions" / "submission.csv")
    expected = pd.read_csv(data / "input" / "submission_format.csv")["filename"]
    assert submission["filename"].tolist() == expected.tolist()
    assert np.isfinite(submission.iloc[:, 1:].to_numpy(float)).all()
    oof = pd.read_csv(data / "predictions" / "ensemble_oof.csv")
    assert {"zero bytes.mp4", "truncated.mp4"} <= set(oof["filename"])


def test_each_unusable_video_is_named_with_a_reason(bad_run):
    data, kinds, _ = bad_run
    failures = pd.read_csv(data / "cache" / "failures.csv")
    reasons = failures.groupby("filename")["error"].apply(" | ".join)
    expected = {"zero bytes.mp4": "empty", "not_a_video.mp4": "", "truncated.mp4": "",
                "unknown_codec.mp4": ""}
    for name, fragment in expected.items():
        assert name in reasons.index, f"{name} has no failure row"
        assert fragment in reasons[name].lower()
        assert (failures.loc[failures["filename"] == name, "stage"] != "").all()
    metadata = pd.read_csv(data / "metadata" / "metadata.csv").set_index("filename")
    for name in expected:
        assert not metadata.loc[name, "readable"], name
    index = pd.read_csv(data / "features" / "effnet_lite0" / "index.csv").set_index("filename")
    assert (index.loc[list(expected), "missing"] == 1).all()


def test_awkward_but_valid_videos_are_used_not_failed(bad_run):
    data, kinds, _ = bad_run
    usable = [name for name, kind in kinds.items() if kind == "usable"]
    metadata = pd.read_csv(data / "metadata" / "metadata.csv").set_index("filename")
    assert metadata.loc[usable, "readable"].all()
    index = pd.read_csv(data / "features" / "effnet_lite0" / "index.csv").set_index("filename")
    assert (index.loc[usable, "missing"] == 0).all()
    assert metadata.loc["ten_minutes.mp4", "duration"] == pytest.approx(600, abs=1)
    assert metadata.loc["rotated_phone.mp4", "rotation"] in (90, -90, 270)
    assert not metadata.loc["Ünïcödé clip – no audio.mp4", "has_audio"]
    assert metadata.loc["silent_audio.mp4", "has_audio"]
    assert metadata.loc["silent_audio.mp4", "audio_silent"]
    assert not metadata.loc["with_sound.mp4", "audio_silent"]
    audio = pd.read_csv(data / "features" / "audio_logmel" / "index.csv").set_index("filename")
    assert audio.loc["Ünïcödé clip – no audio.mp4", "missing"] == 1
    assert audio.loc["with_sound.mp4", "missing"] == 0


def test_rotated_video_frames_are_turned_upright(bad_run):
    data, _, _ = bad_run
    index = pd.read_csv(data / "cache" / "preprocess_index.csv", keep_default_na=False)
    frames = {row.filename: read_frames(data / "cache" / row.frames_path)
              for row in index.itertuples() if row.filename in ("rotated_phone.mp4",
                                                                "odd_17x9.mp4")}
    rotated = frames["rotated_phone.mp4"][0].astype(float)
    # testsrc's colour bars run left to right; on the turned frame they run top to bottom
    assert np.abs(np.diff(rotated.mean(axis=1), axis=0)).sum() > \
        np.abs(np.diff(rotated.mean(axis=0), axis=0)).sum()
    assert frames["odd_17x9.mp4"].shape[1:] == (64, 64, 3)


def test_unlisted_videos_are_reported_and_ignored(bad_run):
    data, _, _ = bad_run
    logs = " ".join(p.read_text() for p in (data / "logs").glob("r10*.log"))
    assert "in neither CSV" in logs and "unlisted_extra.mp4" in logs
    metadata = pd.read_csv(data / "metadata" / "metadata.csv")
    assert "unlisted_extra.mp4" not in set(metadata["filename"])


# ----------------------------------------------------------------------------- bad tables

BAD_TABLES = {
    "no filename column": (
        "name,bird,blank\na.mp4,1,0\n", None, r"train_labels\.csv: no 'filename' column"),
    "duplicate filenames": (
        "filename,bird,blank\na.mp4,1,0\na.mp4,0,1\n", None,
        r"train_labels\.csv: filename 'a\.mp4' appears more than once"),
    "labels not 0/1": (
        "filename,bird,blank\na.mp4,1,0\nb.mp4,yes,0\n", None,
        r"train_labels\.csv: line 3, column 'bird': label 'yes' is not 0 or 1"),
    "a class in one table only": (
        "filename,bird,blank\na.mp4,1,0\n", "filename,bird\nc.mp4,0\n",
        r"submission_format\.csv: missing class column\(s\) \['blank'\]"),
    "a name leaving the folder": (
        "filename,bird,blank\n../escape.mp4,1,0\n", None,
        r"train_labels\.csv: '\.\./escape\.mp4': video names must stay inside"),
    "an absolute path": (
        "filename,bird,blank\n/etc/passwd,1,0\n", None, r"train_labels\.csv: .*must stay inside"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_tables_stop_with_one_line_naming_file_and_fix(tmp_path, case):
    labels, submission, message = BAD_TABLES[case]
    (tmp_path / "input" / "videos").mkdir(parents=True)
    (tmp_path / "input" / "train_labels.csv").write_text(labels)
    (tmp_path / "input" / "submission_format.csv").write_text(
        submission or "filename,bird,blank\nc.mp4,0,0\n")
    result = run_script("r10_preprocess_data.py", tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.search(message, last), last
    assert len(result.stderr.strip().splitlines()) <= 3


def test_an_empty_test_set_warns_and_the_chain_still_finishes(tiny, tmp_path):
    data = copy_input(tiny, tmp_path / "empty_test")
    submission = pd.read_csv(data / "input" / "submission_format.csv")
    submission.iloc[:0].to_csv(data / "input" / "submission_format.csv", index=False)
    result = run_all(data, "--pass", "r21:--models lgbm_tabular", "--pass",
                     "r50:--stackers lgbm", "--pass", "r12:--extractors hashes,audio_logmel")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing to predict" in (data / "logs" / "r10.log").read_text()
    written = pd.read_csv(data / "submissions" / "submission.csv")
    assert len(written) == 0 and written.columns.tolist() == submission.columns.tolist()


# ----------------------------------------------------------------------------- interruptions

def kill_when(command: list[str], ready, timeout: float = 300) -> None:
    """Starts `command`, SIGKILLs it as soon as `ready()` is true (mid-run)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + timeout
    while not ready() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the job ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_r12_killed_mid_run_then_rerun_equals_a_clean_run(reference, tmp_path):
    def r12(data: Path) -> list[str]:
        # shards of 8 videos: the kill lands after the first shard, with four to go
        return [sys.executable, str(PROJECT_ROOT / "r12_extract_features.py"), "--data",
                str(data), "--extractor", "effnet_lite0", "--shard_size", "8",
                *stage_arguments("r12")]

    # the reference's features are a clean run's: one video per forward pass, whatever
    # the shard size or the executor
    data = copy_through(reference, tmp_path / "killed", ["cache", "metadata"])
    kill_when(r12(data), lambda: any((data / "features").rglob("shard_*.npz")), timeout=300)
    assert not (data / "features" / "effnet_lite0" / "features.npy").exists()
    result = subprocess.run(r12(data), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("features.npy", "statistics.npy", "index.csv"):
        assert (data / "features" / "effnet_lite0" / name).read_bytes() == \
            (reference / "features" / "effnet_lite0" / name).read_bytes(), name
    assert not list((data / "features").rglob(".tmp-*"))


def test_r21_killed_between_folds_resumes_and_equals_a_clean_run(reference, tmp_path):
    data = copy_through(reference, tmp_path / "r21", ["cache", "metadata", "features"])
    model = "gru_effnet_lite0"
    command = [sys.executable, str(PROJECT_ROOT / "r21_train_models.py"), "--data", str(data),
               "--model", model, *stage_arguments("r21")]
    # killed while the second of the two folds trains: the resume trains that one alone
    finished = [data / "models" / model / "fold0.json"]
    kill_when(command, finished[-1].exists, timeout=300)
    trained_at = [path.stat().st_mtime_ns for path in finished]
    assert not (data / "models" / model / "fold1.json").exists()
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [path.stat().st_mtime_ns for path in finished] == trained_at, \
        "a finished fold was trained again"
    validated = run_script("r31_validate.py", data, "--model", model)
    assert validated.returncode == 0, validated.stderr[-2000:]
    ours = pd.read_csv(data / "predictions" / "level1" / f"{model}_oof.csv")
    clean = pd.read_csv(reference / "predictions" / "level1" / f"{model}_oof.csv")
    np.testing.assert_allclose(ours.iloc[:, 1:].to_numpy(float), clean.iloc[:, 1:].to_numpy(float),
                               atol=1e-6)


def test_the_same_seed_gives_the_same_folds_and_predictions(reference, tmp_path):
    data = copy_through(reference, tmp_path / "again", ["cache", "features"])
    for script, arguments in (("r11_get_metadata_table.py", []),
                              ("r21_train_models.py", ["--model", "lgbm_tabular"]),
                              ("r31_validate.py", ["--model", "lgbm_tabular"])):
        result = run_script(script, data, *stage_arguments(script[:3]), *arguments)
        assert result.returncode == 0, result.stderr[-2000:]
    assert (data / "metadata" / "folds.csv").read_bytes() == \
        (reference / "metadata" / "folds.csv").read_bytes()
    ours = pd.read_csv(data / "predictions" / "level1" / "lgbm_tabular_oof.csv")
    clean = pd.read_csv(reference / "predictions" / "level1" / "lgbm_tabular_oof.csv")
    np.testing.assert_allclose(ours.iloc[:, 1:].to_numpy(float), clean.iloc[:, 1:].to_numpy(float),
                               atol=1e-6)


