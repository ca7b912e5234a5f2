"""bench_fold_memory — a Keras fold job's own memory against the number of videos.

r21 reads a model's per-step features through a memory map of features.npy, batch by batch
(a03_models.StoredRows), where it used to copy every train row into memory first. This
measures what that changes: for each size in SIZES it writes a synthetic feature set of
r12's real shape (videos × STEPS × 1280 Lite0 features, float16) and trains one fold of
HEAD for one epoch in a fresh process, once as r21 does now and once with the rows copied
in as before. Each run's peak anonymous memory (RssAnon, sampled every 50 ms: the pages the
job itself owns; the file's pages are the operating system's cache, shared and given back
under pressure) and its wall time are recorded.

Writes  bench/results/bench_fold_memory.csv   one row per size and way of reading (appended)
Cost    about 3 minutes on 2 CPU cores with the default sizes.

    python bench/bench_fold_memory.py
    python bench/bench_fold_memory.py --sizes 4000,16000,64000
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from a00_common import append_results, parse_config  # noqa: E402

SIZES = (4000, 16000)          # videos (all train rows of the fold's model)
HEAD = "gru_effnet_lite0"       # the Keras head whose fold is trained
STEPS = 16                     # r10's FRAMES_PER_VIDEO
CLASSES = 24
RESULTS = PROJECT_ROOT / "bench" / "results" / "bench_fold_memory.csv"

# the job, run in a fresh process: load the inputs as r21 does, optionally copy the steps
# in as r21 did before, train fold 0 for one epoch
_JOB = """
import sys, json, time
import numpy as np
sys.path.insert(0, {root!r})
from a03_models import get_spec, load_inputs, resolved_settings
from a03_training import train_fold
from a00_metric import prior_probabilities
spec = get_spec({model!r})
names = json.load(open({names!r}))
labels = np.load({labels!r})
settings = resolved_settings(spec, {settings!r})
inputs = load_inputs(spec, names, settings)
if {copied!r}:
    inputs["steps"] = np.asarray(inputs["steps"])
rows = np.arange(len(names))
fit = rows[rows % 5 != 0]
started = time.perf_counter()
train_fold(spec, inputs, labels, fit, fit[:0], __import__("pathlib").Path({folder!r}), 0, 1,
           settings, prior_probabilities(labels[fit]))
print(json.dumps({{"train_seconds": time.perf_counter() - started}}))
"""


def write_feature_set(root: Path, count: int) -> list[str]:
    """A feature set of r12's layout with `count` train videos; their names."""
    random = np.random.default_rng(count)
    names = [f"clip{i:06d}.mp4" for i in range(count)]
    folder = root / "features" / "effnet_lite0"
    folder.mkdir(parents=True)
    steps = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np.float16,
                                      shape=(count, STEPS, 1280))
    for start in range(0, count, 2000):    # written in chunks: the writer stays small too
        stop = min(start + 2000, count)
        steps[start:stop] = random.standard_normal((stop - start, STEPS, 1280))
    steps.flush()
    del steps
    np.save(folder / "statistics.npy", np.zeros((count, 4), np.float32))
    pd.DataFrame({"filename": names, "split": "train", "row": np.arange(count),
                  "missing": 0}).to_csv(folder / "index.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"extractor": "effnet_lite0",
                                                    "hash": "synthetic"}))
    return names


def peak_anonymous_mib(process: subprocess.Popen) -> float:
    """The largest RssAnon of `process` while it runs, in MiB (sampled every 50 ms)."""
    peak = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            break
        time.sleep(0.05)
    return peak / 1024


def run_job(root: Path, names: list[str], copied: bool) -> dict:
    labels = (np.random.default_rng(1).random((len(names), CLASSES)) < 0.06).astype(np.float32)
    np.save(root / "labels.npy", labels)
    (root / "names.json").write_text(json.dumps(names))
    settings = {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3, "weight_decay": 1e-2,
                "warmup_epochs": 0, "patience": 6, "hidden_units": 128, "dropout": 0.3,
                "conv_filters": 16, "class_weighting": "none", "pseudo_label_epochs": 0,
                "pseudo_label_max_uncertainty": 0.1, "pseudo_label_learning_rate": 1e-4}
    code = _JOB.format(root=str(PROJECT_ROOT), model=HEAD, names=str(root / "names.json"),
                      labels=str(root / "labels.npy"), settings=settings, copied=copied,
                      folder=str(root / "model"))
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TRAPSTACK_DATA": str(root),
                                    "TF_CPP_MIN_LOG_LEVEL": "2"})
    peak = {}
    watcher = threading.Thread(target=lambda: peak.update(mib=peak_anonymous_mib(process)))
    watcher.start()
    output, errors = process.communicate()
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"bench_fold_memory: the job failed: {errors.strip()[-2000:]}")
    return {"peak_anonymous_mib": round(peak["mib"], 1),
            "wall_seconds": round(time.perf_counter() - started, 1),
            **json.loads(output.strip().splitlines()[-1])}


def main() -> None:
    parse_config(globals(), __doc__)
    rows = []
    for count in SIZES:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            names = write_feature_set(root, count)
            features_mib = (root / "features" / "effnet_lite0" / "features.npy").stat().st_size \
                / 2**20
            for copied in (False, True):
                result = run_job(root, names, copied)
                row = {"videos": count, "reading": "copied in (before)" if copied
                       else "memory map (r21 now)", "features_mib": round(features_mib, 1),
                       **result}
                print(row, flush=True)
                rows.append(row)
    table = pd.DataFrame(rows)
    for reading, part in table.groupby("reading"):
        ordered = part.sort_values("videos")
        ratio = ordered["peak_anonymous_mib"].iloc[-1] / ordered["peak_anonymous_mib"].iloc[0]
        print(f"{reading}: peak anonymous memory ×{ratio:.2f} from {ordered['videos'].iloc[0]} "
              f"to {ordered['videos'].iloc[-1]} videos")
    append_results(table, RESULTS)


if __name__ == "__main__":
    main()
