"""bench_predict — what predicting new clips with a trained stack costs per clip (r80).

A benchmark, not a test: timings depend on the machine and on what else runs on it. On the
test clips of a trained data folder (the demo's 80 by default) it runs r80 REPEATS times,
each from an empty work folder (so every clip is decoded and goes through the backbone),
and measures separately the backbone's forward pass alone on the same clips' frames (in
this process, after one warm-up batch: TensorFlow's start-up and tracing excluded). It
reports medians: seconds per clip for the whole run and per stage (r10 decode, r11, r12 per
extractor, the fold models and stackers), and the share of the whole that is the forward
pass. It also checks that the predictions equal the folder's submission.

Writes  bench/results/bench_predict.csv   one row per measurement and repeat, then medians

    python bench/bench_predict.py                       # the demo, 3 repeats
    python bench/bench_predict.py --data DIR --repeats 5 --workers 2
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from a00_common import data_dir, git_commit, input_dir, parse_config, write_csv  # noqa: E402

REPEATS = 3                    # r80 runs (and forward-pass measurements); medians are shown
EXTRACTOR = "effnet_lite0"     # the backbone whose forward pass is timed alone
BATCH_SIZE = 32                # frames per forward pass, as r12's default
RESULTS = PROJECT_ROOT / "bench" / "results" / "bench_predict.csv"


def run_predict(clips: Path, out: Path, workers: int) -> dict:
    """One r80 run from an empty output folder; its timing.json."""
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, str(PROJECT_ROOT / "r80_predict.py"), "--data", str(data_dir()),
               "--videos", str(clips), "--metadata", str(input_dir() / "video_metadata.csv"),
               "--out", str(out), "--workers", str(workers)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"bench_predict: r80 failed: {result.stderr.strip().splitlines()[-1]}")
    timing = json.loads((out / "timing.json").read_text())
    return {**timing["seconds"], "wall": wall}


def forward_seconds(work: Path, names: list[str], image_size: int) -> tuple[float, int]:
    """The backbone's forward pass alone over the clips' cached frames: (seconds, frames)."""
    import cv2

    from a02_backbones import build_frame_encoder
    index = pd.read_csv(work / "cache" / "preprocess_index.csv", dtype=str,
                        keep_default_na=False).set_index("filename")
    frames = [np.load(work / "cache" / index.at[name, "frames_path"])
              for name in names if index.at[name, "frames_path"]]
    frames = np.concatenate(frames)
    if frames.shape[1] != image_size:
        frames = np.stack([cv2.resize(frame, (image_size, image_size),
                                      interpolation=cv2.INTER_AREA) for frame in frames])
    encoder = build_frame_encoder(EXTRACTOR, image_size)
    encoder.predict(frames[:BATCH_SIZE].astype(np.float32), batch_size=BATCH_SIZE, verbose=0)
    started = time.perf_counter()
    encoder.predict(frames.astype(np.float32), batch_size=BATCH_SIZE, verbose=0)
    return time.perf_counter() - started, len(frames)


def main() -> None:
    args = parse_config(globals(), __doc__)
    submission = pd.read_csv(input_dir() / "submission_format.csv", dtype={"filename": str})
    names = submission["filename"].tolist()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as temporary:
        clips = Path(temporary) / "clips"
        clips.mkdir()
        for name in names:  # the test clips alone, as a user's folder of new footage
            source = input_dir() / "videos" / name
            if source.exists():
                os.symlink(source, clips / name)
        out = Path(temporary) / "out"
        for repeat in range(REPEATS):
            timing = run_predict(clips, out, max(1, args.workers))
            seconds, frame_count = forward_seconds(out / "work", names,
                                                   json.loads((out / "stack" / "manifest.json")
                                                              .read_text())["extractors"]
                                                   [EXTRACTOR]["image_size"])
            timing["forward pass"] = seconds
            for stage, value in timing.items():
                rows.append({"repeat": repeat, "measurement": stage, "seconds": value,
                             "per_clip": value / len(names)})
            print(f"repeat {repeat}: {timing['wall']:.1f} s for {len(names)} clips, forward "
                  f"pass {seconds:.1f} s ({frame_count} frames)", flush=True)
        predictions = pd.read_csv(out / "predictions.csv")
        reference = pd.read_csv(data_dir() / "submissions" / "submission.csv")
        classes = list(reference.columns[1:])
        reference = reference.set_index("filename").loc[predictions["filename"]]
        difference = float(np.abs(predictions[classes].to_numpy()
                                  - reference[classes].to_numpy()).max())
    table = pd.DataFrame(rows)
    medians = table.groupby("measurement", sort=False)[["seconds", "per_clip"]].median()
    medians["share_of_wall"] = medians["seconds"] / medians.loc["wall", "seconds"]
    print(f"\n{len(names)} clips, {REPEATS} repeats, medians (2 cores: see the machine):")
    print(medians.to_string(float_format=lambda value: f"{value:.3f}"))
    print(f"forward pass share of r80's wall time: {medians.loc['forward pass', 'share_of_wall']:.0%}"
          f"; max |r80 - submission| = {difference:.2e}")
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    medians = medians.reset_index().assign(repeat="median")
    out_table = pd.concat([table, medians], ignore_index=True)
    out_table.insert(0, "time", stamp)
    out_table.insert(1, "commit", git_commit())
    out_table["clips"] = len(names)
    out_table["max_difference_to_submission"] = difference
    if RESULTS.exists():
        out_table = pd.concat([pd.read_csv(RESULTS), out_table], ignore_index=True)
    write_csv(out_table, RESULTS)
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
