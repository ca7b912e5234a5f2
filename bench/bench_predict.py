"""bench_predict — what predicting new clips with a trained stack costs per clip (r80).

A benchmark, not a test: timings depend on the machine and on what else runs on it. On the
test clips of a trained data folder (the demo's) it runs r80 on folders of the first 20 and
of all 80 clips, REPEATS times each, every run from an empty output folder (so every clip
is decoded and goes through the backbone), and measures separately the backbone's forward
pass alone on the same clips' frames (fixed batches as r12 feeds it, after one warm-up
batch: TensorFlow's start-up and tracing excluded). From the medians it reports, per stage
(r10 decode, r11, r12 per extractor, the fold models and stackers), the cost per clip (the
slope between the two sizes) and the fixed cost per run, and the share of the cost per
clip that is the forward pass. It also checks that the 80 clips' predictions equal the
folder's submission.

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

from a00_common import data_dir, git_commit, input_dir, parse_config  # noqa: E402
from a00_io import write_csv  # noqa: E402

REPEATS = 3                    # r80 runs per size (and forward-pass measurements); medians
CLIP_COUNTS = (20, 80)         # folder sizes: the slope between them is the cost per clip
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
        raise SystemExit(f"bench_predict: r80 failed: "
                         f"{result.stderr.strip().splitlines()[-1]}")
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
    # as r12 feeds it: fixed batches (the last one padded), one call each
    batches = [frames[start:start + BATCH_SIZE] for start in range(0, len(frames), BATCH_SIZE)]
    batches = [np.concatenate([batch, np.zeros((BATCH_SIZE - len(batch),) + batch.shape[1:],
                                               batch.dtype)]) for batch in batches]
    encoder.predict_on_batch(batches[0].astype(np.float32))
    started = time.perf_counter()
    for batch in batches:
        encoder.predict_on_batch(batch.astype(np.float32))
    return time.perf_counter() - started, len(frames)


def main() -> None:
    args = parse_config(globals(), __doc__)
    submission = pd.read_csv(input_dir() / "submission_format.csv", dtype={"filename": str})
    names = [name for name in submission["filename"]
             if (input_dir() / "videos" / name).exists()]
    sizes = sorted({min(size, len(names)) for size in CLIP_COUNTS})
    rows, difference = [], np.nan
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as temporary:
        for repeat in range(REPEATS):
            for size in sizes:  # interleaved, so that both sizes share the machine's load
                clips = Path(temporary) / f"clips_{size}"
                if not clips.exists():  # the first test clips alone, as a folder of footage
                    clips.mkdir()
                    for name in names[:size]:
                        os.symlink(input_dir() / "videos" / name, clips / name)
                out = Path(temporary) / f"out_{size}"
                timing = run_predict(clips, out, max(1, args.workers))
                manifest = json.loads((out / "stack" / "manifest.json").read_text())
                timing["forward pass"], frame_count = forward_seconds(
                    out / "work", names[:size], manifest["extractors"][EXTRACTOR]["image_size"])
                rows += [{"clips": size, "repeat": repeat, "measurement": stage,
                          "seconds": value} for stage, value in timing.items()]
                print(f"repeat {repeat}, {size} clips: r80 {timing['wall']:.1f} s, forward pass "
                      f"alone {timing['forward pass']:.1f} s ({frame_count} frames)", flush=True)
                if size == len(names):
                    predictions = pd.read_csv(out / "predictions.csv")
                    reference = pd.read_csv(data_dir() / "submissions" / "submission.csv")
                    classes = list(reference.columns[1:])
                    reference = reference.set_index("filename").loc[predictions["filename"]]
                    difference = float(np.abs(predictions[classes].to_numpy()
                                              - reference[classes].to_numpy()).max())
    table = pd.DataFrame(rows)
    medians = table.groupby(["measurement", "clips"], sort=False)["seconds"].median().unstack()
    small, large = sizes[0], sizes[-1]
    medians["per_clip"] = (medians[large] - medians[small]) / (large - small)
    medians["fixed"] = medians[large] - large * medians["per_clip"]
    print(f"\nmedians of {REPEATS} (seconds); per_clip = the slope between {small} and {large} "
          f"clips, fixed = the rest:")
    print(medians.to_string(float_format=lambda value: f"{value:.3f}"))
    forward_share = medians.at["forward pass", "per_clip"] / medians.at["wall", "per_clip"]
    print(f"per clip: {medians.at['wall', 'per_clip']:.3f} s, of which the backbone's forward "
          f"pass {medians.at['forward pass', 'per_clip']:.3f} s ({forward_share:.0%}); fixed "
          f"cost per run {medians.at['wall', 'fixed']:.1f} s; max |r80 - submission| over "
          f"{len(names)} clips = {difference:.2e}")
    summary = medians.reset_index().melt(id_vars="measurement", var_name="clips",
                                         value_name="seconds").assign(repeat="median")
    output = pd.concat([table, summary], ignore_index=True)
    output.insert(0, "time", datetime.datetime.now().isoformat(timespec="seconds"))
    output.insert(1, "commit", git_commit())
    output["max_difference_to_submission"] = difference
    if RESULTS.exists():
        output = pd.concat([pd.read_csv(RESULTS), output], ignore_index=True)
    write_csv(output, RESULTS)
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
