"""r00_make_demo_data.py on a tiny set: layout, labels, real videos, determinism, skipping."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
from a00_common import PRIMATRIX_CLASSES  # noqa: E402

SCRIPT = PROJECT_ROOT / "r00_make_demo_data.py"
TINY = ["--n_train", "6", "--n_test", "3", "--min_seconds", "1", "--max_seconds", "1.5",
        "--cameras", "160x120@8,128x96@6", "--test_split", "clip"]

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs ffmpeg and ffprobe")


def make(out: Path, *extra: str) -> subprocess.CompletedProcess:
    # Run from another folder: the script must not depend on the working directory.
    return subprocess.run([sys.executable, str(SCRIPT), *TINY, "--out", str(out), *extra],
                          cwd=out.parent.parent, capture_output=True, text=True, timeout=300)


def digests(folder: Path) -> dict:
    return {path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "input"
    result = make(out)
    assert result.returncode == 0, result.stderr
    return out


def test_tables_follow_the_contract(tiny):
    labels = pd.read_csv(tiny / "train_labels.csv")
    submission = pd.read_csv(tiny / "submission_format.csv")
    metadata = pd.read_csv(tiny / "video_metadata.csv")
    truth = pd.read_csv(tiny.parent / "demo_truth" / "test_labels.csv")
    assert list(labels.columns) == ["filename"] + PRIMATRIX_CLASSES
    assert list(submission.columns) == ["filename"] + PRIMATRIX_CLASSES
    assert (len(labels), len(submission)) == (6, 3)
    assert set(labels[PRIMATRIX_CLASSES].stack().unique()) <= {0, 1}
    positives = labels[PRIMATRIX_CLASSES].sum(axis=1)
    assert (positives >= 1).all()
    assert (positives[labels["blank"] == 1] == 1).all(), "blank excludes every species"
    assert (submission[PRIMATRIX_CLASSES] == 0.0).all().all()
    assert truth["filename"].tolist() == submission["filename"].tolist()
    assert set(metadata["filename"]) == set(labels["filename"]) | set(submission["filename"])
    assert not set(labels["filename"]) & set(submission["filename"])
    assert all(re.fullmatch(r"[A-Za-z0-9]{10}\.mp4", name) for name in metadata["filename"])
    assert set(metadata["site"]) <= {"site_01", "site_02"}
    pd.to_datetime(metadata["capture_time"], format="%Y-%m-%dT%H:%M:%S")  # ISO-8601


def test_videos_are_real_clips_with_the_planned_streams(tiny):
    plan = pd.read_csv(tiny.parent / "demo_truth" / "videos.csv").set_index("filename")
    metadata = pd.read_csv(tiny / "video_metadata.csv").set_index("filename")
    audio_seen = []
    for name, row in plan.iterrows():
        probe = json.loads(subprocess.run(
            ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
             str(tiny / "videos" / name)], capture_output=True, text=True, check=True).stdout)
        video = [s for s in probe["streams"] if s["codec_type"] == "video"]
        audio = [s for s in probe["streams"] if s["codec_type"] == "audio"]
        assert video[0]["codec_name"] == "h264" and video[0]["pix_fmt"] == "yuv420p"
        assert (video[0]["width"], video[0]["height"]) == (row["width"], row["height"])
        assert video[0]["r_frame_rate"] == f"{row['fps']}/1"
        assert bool(audio) == bool(row["has_audio"])
        if audio:
            assert (audio[0]["codec_name"], audio[0]["channels"]) == ("aac", 1)
            assert audio[0]["sample_rate"] == "16000"
        created = probe["format"]["tags"]["creation_time"]
        assert created.startswith(metadata.loc[name, "capture_time"])
        audio_seen.append(bool(audio))
    assert any(audio_seen) and not all(audio_seen), "~10 % of clips have no audio stream"
    assert not list((tiny / "videos").glob(".tmp-*")), "no temp files left behind"


def test_same_seed_same_bytes_whatever_the_worker_count(tiny, tmp_path):
    other = tmp_path / "input"
    result = make(other, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert digests(other) == digests(tiny)


def test_second_run_is_up_to_date_and_new_settings_need_force(tiny):
    before = digests(tiny)
    again = make(tiny)
    assert again.returncode == 0 and "up to date" in again.stdout
    changed = make(tiny, "--seed", "1")
    assert changed.returncode == 0 and "--force" in changed.stderr
    assert digests(tiny) == before


def test_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path):
    out = tmp_path / "real" / "input"
    out.mkdir(parents=True)
    (out / "train_labels.csv").write_text("filename,bird\na.mp4,1\n")
    result = make(out, "--force")
    assert result.returncode != 0 and "refusing" in result.stderr
    assert (out / "train_labels.csv").read_text() == "filename,bird\na.mp4,1\n"


def test_out_may_name_the_data_folder_itself(tmp_path):
    data = tmp_path / "somewhere"
    data.mkdir()
    (tmp_path / "cwd").mkdir()
    result = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--n_train", "3",
                             "--n_test", "1", "--out", str(data)], cwd=tmp_path / "cwd",
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (data / "input" / "train_labels.csv").exists()
    assert len(list((data / "input" / "videos").glob("*.mp4"))) == 4
    assert (data / "demo_truth" / "test_labels.csv").exists()


def test_the_test_split_takes_whole_visits_and_leaves_every_species_in_training():
    import numpy as np
    import r00_make_demo_data as r00
    # visits 0-3 show a duiker (only visit 1: two clips), visits 4-9 are blank false triggers
    clips = [{"visit": 0, "species": ["chimpanzee"]}, {"visit": 0, "species": ["chimpanzee"]},
             {"visit": 1, "species": ["duiker"]}, {"visit": 1, "species": ["duiker"]},
             {"visit": 2, "species": ["chimpanzee"]}, {"visit": 3, "species": ["bird"]},
             {"visit": 3, "species": ["bird"]}] + \
        [{"visit": v, "species": []} for v in range(4, 10)]
    for seed in range(20):
        test = r00.visit_split(clips, 4, np.random.default_rng(seed))
        assert len(test) <= 4
        for visit in range(10):
            members = {i for i, clip in enumerate(clips) if clip["visit"] == visit}
            assert members <= test or not members & test, "a visit is split"
        for name in ("chimpanzee", "duiker", "bird"):
            showing = {i for i, clip in enumerate(clips) if name in clip["species"]}
            assert showing - test, f"every {name} clip went to test"
    # whole visits fill the count exactly where they can: 13 clips, 4 wanted
    assert sum(len(r00.visit_split(clips, 4, np.random.default_rng(s))) == 4
               for s in range(20)) >= 15


def test_the_default_plan_draws_test_clips_by_whole_visits(monkeypatch):
    """The default demo's plan (no video encoded): 80 test clips, no visit on both sides,
    and every species of the test clips among the train clips."""
    import numpy as np
    import r00_make_demo_data as r00
    monkeypatch.setattr(r00, "TEST_SPLIT", "visit")
    clips = r00.plan_clips(np.random.default_rng([r00.SEED, 0]))
    test = [clip for clip in clips if clip["split"] == "test"]
    assert len(test) == r00.N_TEST and len(clips) == r00.N_TRAIN + r00.N_TEST
    split_of_visit = {}
    for clip in clips:
        assert split_of_visit.setdefault(clip["visit"], clip["split"]) == clip["split"]
    train_species = {name for clip in clips if clip["split"] == "train"
                     for name in clip["species"]}
    assert {name for clip in test for name in clip["species"]} <= train_species
