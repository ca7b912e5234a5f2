"""Cameras found when nobody lists them (a07_cameras, r11).

Hand-made clips check the signature's two promises: a camera whose clips alternate between
day and infrared night stays one camera, and two places stay apart even at the same frame
size, while one photo at two frame sizes is two cameras. The demo without its site table
checks the whole path: r11 infers cameras that agree with the true sites (night clips of a
day camera included), forms visits along them, and a camera the user names wins.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import a07_cameras as cameras
from tiny_chain import PROJECT_ROOT, run_script

DISTANCE = 0.7   # r11's CAMERA_DISTANCE


def scene(name: str, size: int = 96) -> np.ndarray:
    import cv2
    import skimage.data
    image = getattr(skimage.data, name)()
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def clip(background: np.ndarray, night: bool, seed: int, frames: int = 8) -> np.ndarray:
    """Frames of a fixed view with a small animal crossing; at night: grey, the flash's
    bright centre and dark edges, another gain, twice the noise."""
    random = np.random.default_rng(seed)
    size = background.shape[0]
    view = background.copy()
    if night:
        grey = view @ np.array([0.2, 0.55, 0.25], np.float32)
        radius = np.hypot(*np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size)))
        falloff = 1.45 * np.exp(-1.3 * radius ** 2) + 0.12
        view = np.repeat((grey * falloff * random.uniform(0.6, 0.9))[..., None], 3, axis=2)
    output = []
    for index in range(frames):
        frame = view + random.normal(0, 10 if night else 5, view.shape)
        x = int(index * size / frames)
        frame[size // 2:size // 2 + 12, x:x + 12] = 40 + 150 * (not night)
        output.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(output)


def table(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """(filename, split, width) rows of clips without a named camera."""
    return pd.DataFrame([{"filename": name, "split": split, "camera": "", "width": width,
                          "height": width * 3 // 4, "fps": 10.0, "codec": "h264"}
                         for name, split, width in rows])


def test_a_camera_alternating_day_and_infrared_night_stays_one_camera_and_another_place_apart():
    day_and_night = {f"cat_{i}.mp4": clip(scene("chelsea"), night=i % 2 == 1, seed=i)
                     for i in range(6)}
    elsewhere = {f"coffee_{i}.mp4": clip(scene("coffee"), night=i % 2 == 1, seed=10 + i)
                 for i in range(4)}
    clips = {**day_and_night, **elsewhere}
    signatures = {name: cameras.signature(frames) for name, frames in clips.items()}
    found = cameras.infer_cameras(table([(name, "train", 160) for name in clips]), signatures,
                                  DISTANCE)
    found.index = list(clips)
    assert found.loc[list(day_and_night), "camera"].nunique() == 1
    assert found.loc[list(elsewhere), "camera"].nunique() == 1
    assert found.loc["cat_0.mp4", "camera"] != found.loc["coffee_0.mp4", "camera"]
    assert (found["camera_source"] == "inferred").all()


def test_one_background_at_two_frame_sizes_is_two_cameras():
    frames = clip(scene("chelsea"), night=False, seed=1)
    signatures = {"small.mp4": cameras.signature(frames), "large.mp4": cameras.signature(frames)}
    found = cameras.infer_cameras(table([("small.mp4", "train", 160), ("large.mp4", "train", 320)]),
                                  signatures, DISTANCE)
    assert found["camera"].nunique() == 2


def test_test_clips_join_train_cameras_and_never_move_them():
    train = {f"train_{i}.mp4": clip(scene("chelsea"), night=False, seed=i) for i in range(4)}
    test = {f"test_{i}.mp4": clip(scene("chelsea"), night=True, seed=20 + i) for i in range(2)}
    new_place = {"test_new.mp4": clip(scene("coffee"), night=False, seed=30)}
    clips = {**train, **test, **new_place}
    signatures = {name: cameras.signature(frames) for name, frames in clips.items()}
    rows = [(name, "train", 160) for name in train] + \
        [(name, "test", 160) for name in [*test, *new_place]]
    found = cameras.infer_cameras(table(rows), signatures, DISTANCE)
    alone = cameras.infer_cameras(table(rows[:len(train)]), signatures, DISTANCE)
    assert found["camera"][:len(train)].tolist() == alone["camera"].tolist()
    assert found["camera"].nunique() == 2


def test_a_large_group_is_clustered_in_samples_with_the_same_result(monkeypatch):
    random = np.random.default_rng(1)
    centres = random.normal(size=(5, 256))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    clips = np.repeat(centres, 60, axis=0) + random.normal(scale=0.03, size=(300, 256))
    clips /= np.linalg.norm(clips, axis=1, keepdims=True)
    whole = cameras.cluster(clips, DISTANCE)
    monkeypatch.setattr(cameras, "MAX_CLUSTERED", 50)
    sampled = cameras.cluster(clips, DISTANCE)
    truth = np.repeat(np.arange(5), 60)
    assert cameras.adjusted_rand_index(truth, whole) == 1.0
    assert cameras.adjusted_rand_index(truth, sampled) == 1.0


@pytest.fixture(scope="module")
def demo_without_site_table(tmp_path_factory):
    """A smaller demo data set (its six sites, day and night, a third of its clips, shorter),
    decoded, with its video_metadata.csv taken away."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    root = tmp_path_factory.mktemp("no site table")
    made = subprocess.run([sys.executable, str(PROJECT_ROOT / "r00_make_demo_data.py"),
                           "--n_train", "70", "--n_test", "26", "--min_seconds", "2",
                           "--max_seconds", "3", "--out", str(root / "input")],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    (root / "input" / "video_metadata.csv").rename(root / "site_table.csv")
    result = run_script("r10_preprocess_data.py", root, "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    return root


def test_without_a_site_table_the_inferred_cameras_are_the_demos_sites(demo_without_site_table):
    data = demo_without_site_table
    result = run_script("r11_get_metadata_table.py", data)
    assert result.returncode == 0, result.stderr[-2000:]
    metadata = pd.read_csv(data / "metadata" / "metadata.csv", keep_default_na=False) \
        .set_index("filename")
    truth = pd.read_csv(data / "demo_truth" / "videos.csv").set_index("filename") \
        .loc[metadata.index]
    assert cameras.adjusted_rand_index(truth["site"], metadata["camera"]) >= 0.9
    assert (metadata["camera_source"] == "inferred").all()
    # the night clips of each site sit in the camera of its day clips
    sites_with_night_clips = 0
    for site, clips in truth.groupby("site"):
        day_camera = metadata.loc[clips.index[~clips["night"]], "camera"].mode()[0]
        night = metadata.loc[clips.index[clips["night"]], "camera"]
        if len(night):
            sites_with_night_clips += 1
            assert (night == day_camera).mean() >= 0.9, site
    assert sites_with_night_clips >= 3
    # visits follow the inferred cameras, and a visit never spans two folds
    folds = pd.read_csv(data / "metadata" / "folds.csv", keep_default_na=False)
    assert folds["sequence"].str.startswith("inferred-").all()
    assert folds["sequence"].nunique() < 0.7 * len(folds)
    assert (folds.groupby("sequence")["fold"].nunique() == 1).all()


def test_a_camera_the_user_names_wins_and_the_rest_join_it(demo_without_site_table, tmp_path):
    data = tmp_path / "some named"
    shutil.copytree(demo_without_site_table / "input", data / "input")
    shutil.copytree(demo_without_site_table / "cache", data / "cache")
    shutil.copytree(demo_without_site_table / "demo_truth", data / "demo_truth")
    site_table = pd.read_csv(demo_without_site_table / "site_table.csv")
    named = site_table[site_table["site"] == "site_03"].head(5)[["filename", "site"]]
    named.assign(site="Kibale north ridge").to_csv(data / "input" / "video_metadata.csv",
                                                    index=False)
    result = run_script("r11_get_metadata_table.py", data)
    assert result.returncode == 0, result.stderr[-2000:]
    metadata = pd.read_csv(data / "metadata" / "metadata.csv", keep_default_na=False) \
        .set_index("filename")
    assert (metadata.loc[named["filename"], "camera"] == "Kibale north ridge").all()
    assert (metadata.loc[named["filename"], "camera_source"] == "given").all()
    others = site_table[(site_table["site"] == "site_03")
                        & ~site_table["filename"].isin(named["filename"])]["filename"]
    joined = metadata.loc[others]
    assert (joined["camera"] == "Kibale north ridge").mean() >= 0.9
    assert set(joined["camera_source"]) == {"inferred"}
