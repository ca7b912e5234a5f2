"""The report page (a04_report.build_report, a04_figures) and the prediction videos
(r70_create_videos.py).

Tiny hand-made data folders in tmp_path: no model is trained and no TensorFlow is imported.
The report must be one offline page with every section, survive missing optional inputs,
and escape class names. r70 must copy a real ffmpeg-made clip frame for frame with the
overlay drawn, and skip a broken, a missing and an unknown video with a message.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import a04_figures  # noqa: E402
from a00_io import write_frames  # noqa: E402
import a04_report  # noqa: E402
import a04_report_data  # noqa: E402
import r70_create_videos  # noqa: E402

R70_SCRIPT = PROJECT_ROOT / "r70_create_videos.py"
CLASSES = ["bird", "blank", "other (primate)", "small cat", "cat & <dog>"]
SECTION_HEADINGS = ["Headline numbers", "Model comparison", "Per-class losses",
                    "Calibration of the ensemble", "Blank vs animal",
                    "Stacker feature importances", "Ensemble weights and clipping",
                    "Scores by fold",
                    "Adversarial validation: do test rows look like train rows?", "Data set",
                    "Cameras", "Failures", "Run settings"]
ROWS = 48
FOLDS = 4

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None
                                  or shutil.which("ffprobe") is None,
                                  reason="needs ffmpeg and ffprobe")


# ----------------------------------------------------------------------------- fake run

def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_table(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def make_labels(root: Path, classes: list[str]) -> pd.DataFrame:
    generator = np.random.default_rng(0)
    labels = pd.DataFrame({"filename": [f"video_{i:03d}.mp4" for i in range(ROWS)]})
    rates = {"bird": 0.2, "blank": 0.35, "other (primate)": 0.25, "small cat": 0.0,
             "cat & <dog>": 0.1}
    for name in classes:
        labels[name] = (generator.random(ROWS) < rates.get(name, 0.2)).astype(int)
    write_table(labels, root / "input" / "train_labels.csv")
    return labels


def noisy_predictions(labels: pd.DataFrame, classes: list[str], noise: float,
                      seed: int) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    truth = labels[classes].to_numpy(np.float64)
    values = np.clip(0.1 + 0.8 * truth + generator.normal(0, noise, truth.shape), 0.01, 0.99)
    frame = pd.DataFrame(values, columns=classes)
    frame.insert(0, "filename", labels["filename"])
    return frame


def make_full_run(root: Path) -> tuple[pd.DataFrame, dict, pd.DataFrame, pd.DataFrame]:
    """Every input the report reads; returns (labels, ensemble_info, weights, ensemble OOF)."""
    labels = make_labels(root, CLASSES)
    write_table(pd.DataFrame({"filename": labels["filename"], "fold": np.arange(ROWS) % FOLDS}),
                root / "metadata" / "folds.csv")
    predictions = root / "predictions"
    for folder, name, noise, seed in (("level1", "alpha", 0.30, 1), ("level1", "beta", 0.35, 2),
                                      ("level2", "stack", 0.25, 3)):
        write_table(noisy_predictions(labels, CLASSES, noise, seed),
                    predictions / folder / f"{name}_oof.csv")
    ensemble = noisy_predictions(labels, CLASSES, 0.3, 4)
    write_table(ensemble, predictions / "ensemble_oof.csv")
    write(root / "models" / "alpha" / "config.json",
          json.dumps({"model": "alpha", "classes": CLASSES, "settings": {"epochs": 3}}))
    write(root / "models" / "level2" / "stack" / "config.json",
          json.dumps({"base": "lgbm", "settings": {"num_leaves": 7}}))
    write_table(pd.DataFrame({"feature": ["nb:gap_previous", "blend:other (primate)",
                                          "meta:fps", "l1:alpha:bird"],
                              "importance": [40.0, 30.0, 20.0, 10.0]}),
                root / "models" / "level2" / "stack" / "importance.csv")
    write_table(pd.DataFrame({"feature": ["meta:fps"], "importance": [0.0]}),
                root / "models" / "level2" / "silent" / "importance.csv")
    scores = [{"time": "t", "stage": "r31_level1", "model": model, "fold": str(fold),
               "log_loss": 0.2 + 0.01 * fold, "rows": 12, "config_hash": "h", "commit": "c"}
              for model in ("alpha", "beta") for fold in range(FOLDS)]
    scores.append({"time": "t", "stage": "r31_level1", "model": "alpha", "fold": "all",
                   "log_loss": 0.21, "rows": ROWS, "config_hash": "h", "commit": "c"})
    write_table(pd.DataFrame(scores), root / "reports" / "scores.csv")
    write_table(pd.DataFrame([
        {"group": "metadata and statistics", "inputs": 12, "auc": 0.48, "standard_error": 0.05,
         "null_draw": "visits", "null_auc": 0.52, "null_standard_error": 0.06,
         "mismatch": False},
        {"group": "neighbours", "inputs": 30, "auc": 0.91, "standard_error": 0.03,
         "null_draw": "visits", "null_auc": 0.55, "null_standard_error": 0.06,
         "mismatch": True}]), root / "reports" / "adversarial_validation.csv")
    write_table(pd.DataFrame([{"input": "nb:neighbor_log_gap_next", "group": "neighbours",
                               "auc": 0.88}]), root / "reports" / "adversarial_inputs.csv")
    write_table(pd.DataFrame([{"filename": "broken_clip.mp4", "stage": "r10",
                               "error": "probe: moov atom not found"}]),
                root / "cache" / "failures.csv")
    write_table(pd.DataFrame({"filename": labels["filename"], "split": "train",
                              "width": 320, "height": 240, "fps": 15.0, "duration": 5.0,
                              "has_audio": True, "readable": True,
                              "capture_time": "2016-06-01 10:00:00+00:00",
                              "capture_time_source": ["video_metadata"] * (ROWS - 3)
                              + ["none"] * 3}),
                root / "metadata" / "metadata.csv")
    weights = pd.DataFrame([[0.7, 0.3]] * len(CLASSES), index=CLASSES, columns=["stack", "alpha"])
    weights.loc["blank"] = [1.0, 0.0]
    info = {"members": ["stack", "alpha"], "level": "level2", "per_class": True,
            "weights": {c: dict(zip(weights.columns, weights.loc[c], strict=True))
                        for c in CLASSES},
            "clip": 1e-4, "oof_log_loss": 0.12, "nested_oof_log_loss": 0.13,
            "nested_global_log_loss": 0.14, "nested_per_class_log_loss": 0.13,
            "settings": {"WEIGHTS_MODE": "auto", "ENSEMBLE_LEVEL": "level2"}}
    return labels, info, weights, ensemble


def make_summary(with_models: bool = True, with_test: bool = True) -> pd.DataFrame:
    rows = [("baseline", "class prior", 0.40, 0.41)]
    if with_models:
        rows += [("level1", "alpha", 0.25, 0.26), ("level1", "beta", 0.28, 0.27),
                 ("level2", "stack", 0.20, 0.22), ("ensemble", "ensemble of 2 level2", 0.18, 0.19),
                 ("ensemble", "ensemble, nested-CV estimate", 0.19, np.nan)]
    summary = pd.DataFrame(rows, columns=["level", "model", "oof_log_loss", "test_log_loss"])
    if not with_test:
        summary["test_log_loss"] = np.nan
    return summary


# ----------------------------------------------------------------------------- report

def test_report_is_one_offline_page_with_every_section(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    labels, info, weights, ensemble = make_full_run(tmp_path)

    path = a04_report.build_report(make_summary(), info, weights)

    assert path == tmp_path / "reports" / "report.html"
    page = path.read_text(encoding="utf-8")
    for heading in SECTION_HEADINGS:
        assert f">{heading}</h2>" in page, heading
    assert page.count("data:image/png;base64,") >= 4   # models, calibration, importance, weights
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert "could not be built" not in page
    assert not list(path.parent.glob(".tmp-*")), "the page is written atomically"


def test_report_escapes_class_names_and_marks_classes_without_positives(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    labels, info, weights, _ = make_full_run(tmp_path)

    page = a04_report.build_report(make_summary(), info, weights).read_text(encoding="utf-8")

    assert "other (primate)" in page
    assert "cat &amp; &lt;dog&gt;" in page and "cat & <dog>" not in page
    assert re.search(r"small cat<span class=\"badge\">no positives</span>", page)


def test_report_numbers_follow_the_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    labels, info, weights, ensemble = make_full_run(tmp_path)

    page = a04_report.build_report(make_summary(), info, weights).read_text(encoding="utf-8")

    headline = page[page.index('id="headline"'):page.index('id="models"')]
    assert "0.4000" in headline and "0.2500" in headline and "0.1800" in headline
    assert "test (hidden labels): 0.1900" in headline
    true_blank = labels["blank"].to_numpy() == 1
    predicted_blank = ensemble["blank"].to_numpy() >= 0.5
    assert f'<td class="hit">{int(np.sum(true_blank & predicted_blank))}</td>' in page
    assert f'<td class="miss">{int(np.sum(true_blank & ~predicted_blank))}</td>' in page
    assert f"video_metadata {ROWS - 3}, none 3 (file modification times not used)" in page
    assert "broken_clip.mp4" in page and "moov atom not found" in page
    assert "silent: every importance is zero" in page
    assert "[0.0001, 1 − 0.0001]" in page                            # chosen clipping
    adversarial = page[page.index('id="adversarial"'):page.index('id="data"')]
    assert '<tr class="warn"><td>neighbours</td><td class="number">30</td>' \
        '<td class="number">0.910 ± 0.030</td><td class="number">0.550 ± 0.060</td>' \
        in adversarial and "AUC, train vs train (whole visits)" in adversarial
    assert "differs for test rows" in adversarial and "nb:neighbor_log_gap_next" in adversarial
    assert '<tr><td>metadata and statistics</td>' in adversarial
    settings = page[page.index('id="settings"'):]
    assert "<details>" in settings and "num_leaves" in settings and "WEIGHTS_MODE" in settings


def test_report_without_optional_inputs_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    make_labels(tmp_path, ["bird", "other (primate)"])   # no blank class, nothing else on disk

    path = a04_report.build_report(make_summary(with_models=False, with_test=False), {}, None)

    page = path.read_text(encoding="utf-8")
    for heading in SECTION_HEADINGS:
        assert f">{heading}</h2>" in page, heading
    assert "could not be built" not in page
    assert "has no &#x27;blank&#x27; column" in page
    assert "failures.csv is missing" in page
    assert "scores.csv is missing" in page
    assert "No ensemble information" in page
    assert "adversarial_validation.csv is missing" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_the_page_template_holds_only_the_placeholders_the_report_fills():
    # a stray '$' in the CSS would stop string.Template from filling the page
    page = Template(a04_report.PAGE_TEMPLATE.read_text(encoding="utf-8"))

    assert page.is_valid()
    assert set(page.get_identifiers()) == {"stamp", "navigation", "sections"}


def test_reliability_bins_are_quantiles_that_merge_ties():
    predicted = np.r_[np.zeros(30), np.linspace(0.1, 0.9, 30)]
    observed = (predicted > 0.5).astype(float)

    bins = a04_figures.reliability_bins(predicted, observed, bins=6)

    assert bins["count"].sum() == 60
    assert bins["count"].iloc[0] == 30          # 30 tied zeros share one bin
    assert np.all(np.diff(bins["mean_predicted"]) > 0)
    assert ((bins["lower"] <= bins["observed"]) & (bins["observed"] <= bins["upper"])).all()


# ----------------------------------------------------------------------------- r70 videos

def test_automatic_pick_takes_most_wrong_most_confident_and_random_test():
    train = ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    losses = np.array([0.9, 0.01, 0.5, 0.02])

    chosen = r70_create_videos.choose_videos(train, losses, ["t1.mp4", "t2.mp4"], count=6,
                                             split="both", seed=0)

    picks = {(c["filename"], c["pick"]) for c in chosen}
    assert ("a.mp4", "most wrong") in picks and ("c.mp4", "most wrong") in picks
    assert ("b.mp4", "most confident") in picks and ("d.mp4", "most confident") in picks
    assert {c["filename"] for c in chosen if c["split"] == "test"} == {"t1.mp4", "t2.mp4"}
    only_test = r70_create_videos.choose_videos(train, losses, ["t1.mp4"], count=3,
                                                split="test", seed=0)
    assert [c["filename"] for c in only_test] == ["t1.mp4"]
    with pytest.raises(ValueError, match="--split"):
        r70_create_videos.choose_videos(train, losses, [], count=1, split="all", seed=0)


def make_video_run(root: Path) -> None:
    """good.mp4 (8 frames, audio), bad.mp4 (not a video), gone.mp4 (listed, no file)."""
    videos = root / "input" / "videos"
    videos.mkdir(parents=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=8",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000", "-t", "1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
                    str(videos / "good.mp4")], check=True, capture_output=True, timeout=60)
    (videos / "bad.mp4").write_text("this is not a video")
    classes = ["blank", "other (primate)", "bird", "hog"]
    train = pd.DataFrame({"filename": ["good.mp4", "bad.mp4"], "blank": [0, 1],
                          "other (primate)": [1, 0], "bird": [0, 0], "hog": [0, 0]})
    write_table(train, root / "input" / "train_labels.csv")
    test = pd.DataFrame({"filename": ["gone.mp4"], **{c: [0.0] for c in classes}})
    write_table(test, root / "input" / "submission_format.csv")
    oof = pd.DataFrame({"filename": ["good.mp4", "bad.mp4"], "blank": [0.1, 0.8],
                        "other (primate)": [0.7, 0.1], "bird": [0.2, 0.05], "hog": [0.01, 0.02]})
    write_table(oof, root / "predictions" / "ensemble_oof.csv")
    test_predictions = pd.DataFrame({"filename": ["gone.mp4"], "blank": [0.5],
                                     "other (primate)": [0.3], "bird": [0.1], "hog": [0.1]})
    write_table(test_predictions, root / "predictions" / "ensemble_test.csv")


def run_r70(root: Path, *options: str) -> subprocess.CompletedProcess:
    # run from another folder: the script must not depend on the working directory
    return subprocess.run([sys.executable, str(R70_SCRIPT), "--data", str(root), *options],
                          cwd=root.parent, capture_output=True, text=True, timeout=120)


def read_frames(path: Path, width: int = 96, height: int = 64) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "pipe:1"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def probe_stream(path: Path, kind: str) -> dict:
    output = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", kind,
                             "-show_streams", "-print_format", "json", str(path)],
                            capture_output=True, text=True, check=True).stdout
    streams = json.loads(output)["streams"]
    return streams[0] if streams else {}


@needs_ffmpeg
def test_r70_draws_on_every_frame_and_skips_bad_videos(tmp_path):
    root = tmp_path / "data"
    make_video_run(root)

    result = run_r70(root, "--videos", "good.mp4,bad.mp4,gone.mp4,unknown.mp4")

    assert result.returncode == 0, result.stderr
    written = root / "reports" / "videos" / "good.mp4"
    video = probe_stream(written, "v:0")
    assert (video["width"], video["height"]) == (96, 64)
    assert video["r_frame_rate"] == "8/1"
    assert int(video["nb_read_frames"]) == 8 == int(probe_stream(
        root / "input" / "videos" / "good.mp4", "v:0")["nb_read_frames"])
    assert probe_stream(written, "a:0").get("codec_name") == "aac"   # audio copied
    source, copy = read_frames(root / "input" / "videos" / "good.mp4"), read_frames(written)
    box = (slice(None), slice(2, 20), slice(2, 40))
    box_difference = np.abs(copy[box].astype(int) - source[box]).mean(axis=(1, 2, 3))
    assert (box_difference > 10).all(), "the overlay is on every frame"
    for name, reason in (("bad.mp4", "skipped bad.mp4: "), ("gone.mp4", "skipped gone.mp4: "),
                         ("unknown.mp4", "skipped unknown.mp4: not in ensemble_oof.csv")):
        assert reason in result.stderr, name
        assert not (root / "reports" / "videos" / name).exists()
    assert "1 written" in result.stderr
    assert not list((root / "reports" / "videos").glob(".tmp-*"))


@needs_ffmpeg
def test_r70_keeps_existing_videos_unless_forced(tmp_path):
    root = tmp_path / "data"
    make_video_run(root)
    assert run_r70(root, "--videos", "good.mp4").returncode == 0
    written = root / "reports" / "videos" / "good.mp4"
    first_time = written.stat().st_mtime_ns

    again = run_r70(root, "--videos", "good.mp4")
    assert "0 written, 1 up to date" in again.stderr
    assert written.stat().st_mtime_ns == first_time
    forced = run_r70(root, "--videos", "good.mp4", "--force")
    assert "1 written" in forced.stderr


def test_r70_without_predictions_stops_with_one_line(tmp_path):
    make_labels(tmp_path, ["bird", "blank"])
    write_table(pd.DataFrame({"filename": ["t.mp4"], "bird": [0.0], "blank": [0.0]}),
                tmp_path / "input" / "submission_format.csv")

    result = run_r70(tmp_path)

    assert result.returncode != 0
    assert "r70: no ensemble predictions" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cameras_section_shows_each_camera_its_view_and_whether_it_was_named(tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    frames[..., 0] = 200
    (tmp_path / "cache" / "frames").mkdir(parents=True)
    write_frames(frames, tmp_path / "cache" / "frames" / "a.jpg", quality=90)
    pd.DataFrame({"filename": ["a.mp4", "b.mp4", "c.mp4"],
                  "frames_path": ["frames/a.jpg", "", ""]}) \
        .to_csv(tmp_path / "cache" / "preprocess_index.csv", index=False)
    inputs = a04_report.ReportInputs()
    inputs.metadata = pd.DataFrame({
        "filename": ["a.mp4", "b.mp4", "c.mp4"], "split": ["train", "train", "test"],
        "camera": ["inferred-0a1b2c", "inferred-0a1b2c", "north ridge"],
        "camera_source": ["inferred", "inferred", "given"], "width": [640, 640, 320],
        "height": [360, 360, 240], "fps": [15.0, 15.0, 10.0], "codec": ["h264"] * 3})
    inputs.labels_table = pd.DataFrame({"filename": ["a.mp4", "b.mp4"], "blank": [1, 0],
                                        "duiker": [0, 1]})
    inputs.classes = ["blank", "duiker"]
    html = a04_report_data.cameras_section(inputs)
    rows = re.findall(r"<tr>(.*?)</tr>", html)[1:]
    assert len(rows) == 2
    inferred, named = rows
    assert "inferred-0a1b2c" in inferred and ">inferred<" in inferred and "2 / 0" in inferred
    assert "640×360 @ 15 fps, h264" in inferred and "blank 50%, duiker 50%" in inferred
    assert inferred.count("<img") == 1          # the view of its one decoded clip
    assert "north ridge" in named and ">given<" in named and "0 / 1" in named
    assert "no decoded clip" in named
    assert "1 named in video_metadata.csv, 2 inferred" in html
