"""bench_seeds — how far the demo's scores move with the seeds alone (folds, training, stackers).

A benchmark, not a test. Differences between two settings on the demo mean something only
beyond this spread. For each seed it copies a finished data folder (the demo's: its input,
r10's cache and r12's features, hard-linked, so nothing is decoded again), runs the chain
from r11 with that seed for the folds (r11 --fold_seed), the level-1 models
(r21 --train_seed) and the stackers (r50 --stacker_seed), and reads its score table. The
folder itself is the row of its own seeds (42, the default). Its last lines: per model, the
mean and the standard deviation over seeds of the OOF and hidden-test losses, and of the
ensemble's test − OOF and test − nested gaps.

With --vary data it makes new demo data sets instead (r00 --seed: other clips, another
by-visit test split) and runs the whole chain on each: its spread includes what the test
draw itself moves, which the training seeds cannot show.

Writes  bench/results/seed_spread.csv (or data_seed_spread.csv) one row per (seed, model),
        then the spread per model
Cost    about 5 minutes per training seed, 9 per data seed, on 2 cores (the demo).

    python bench/bench_seeds.py                       # the demo, seeds 1 and 2
    python bench/bench_seeds.py --vary data           # demo data sets 1 and 2 (and 0, the demo)
    python bench/bench_seeds.py --seeds 1,2,3 --workers 4   # run_all's jobs (at least 2)
    python bench/bench_seeds.py --data data/frames32 --pass "r10:--frames_per_video 32" \
        --results_file bench/results/seed_spread_32_frames.csv   # a variant's own spread
"""
from __future__ import annotations

import datetime
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

import pandas as pd  # noqa: E402

from a00_common import SEED, data_dir, git_commit, parse_config  # noqa: E402
from a00_io import write_csv  # noqa: E402

SEEDS = (1, 2)                 # besides the folder's own (the default seeds)
# "training": the folder's clips with other fold, training and stacker seeds; "data": other
# demo data sets (r00 --seed: other clips, another by-visit test split), the whole chain on
# each, so the spread includes what the test draw itself moves
VARY = "training"
RESULTS = {"training": PROJECT_ROOT / "bench" / "results" / "seed_spread.csv",
           "data": PROJECT_ROOT / "bench" / "results" / "data_seed_spread.csv"}
RESULTS_FILE = ""              # another results file (e.g. a variant's spread); "": by --vary
# run_all --pass arguments of the variant the folder was made with, ";"-separated, e.g.
# "r10:--frames_per_video 32": every seed's chain must keep them, or r10 redoes the frames
PASS = ""
SHARED = ("input", "cache", "features", "demo_truth")   # made before any seed matters


def linked_copy(source: Path, destination: Path) -> None:
    """The folder's seed-independent parts, hard-linked (every stage replaces files, never
    writes into them, so the original stays as it was)."""
    for name in SHARED:
        if (source / name).exists():
            shutil.copytree(source / name, destination / name, copy_function=os.link)


def run_chain(folder: Path, workers: int, passed: list[str], what: str) -> pd.DataFrame:
    """run_all on `folder` with these --pass arguments and the variant's (PASS); its score
    table, with the run's seed added by the caller."""
    command = [sys.executable, str(PROJECT_ROOT / "run_all.py"), "--data", str(folder),
               "--workers", str(workers)]
    for extra in passed + [part.strip() for part in PASS.split(";") if part.strip()]:
        command += ["--pass", extra]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bench_seeds: the chain failed for {what}: "
                         f"{result.stderr.strip().splitlines()[-1:]}")
    return pd.read_csv(folder / "reports" / "summary.csv")


def run_seed(source: Path, seed: int, workers: int, scratch: Path) -> pd.DataFrame:
    folder = scratch / f"seed{seed}"
    linked_copy(source, folder)
    passed = [f"r11:--fold_seed {seed}", f"r21:--train_seed {seed}",
              f"r50:--stacker_seed {seed}"]
    return run_chain(folder, workers, passed, f"seed {seed}").assign(seed=seed)


def run_data_seed(seed: int, workers: int, scratch: Path) -> pd.DataFrame:
    """A new demo data set from r00's seed, and the whole chain on it."""
    folder = scratch / f"data{seed}"
    made = subprocess.run([sys.executable, str(PROJECT_ROOT / "r00_make_demo_data.py"),
                           "--seed", str(seed), "--out", str(folder / "input")],
                          capture_output=True, text=True)
    if made.returncode != 0:
        raise SystemExit(f"bench_seeds: r00 failed for seed {seed}: "
                         f"{made.stderr.strip().splitlines()[-1:]}")
    return run_chain(folder, workers, [], f"data seed {seed}").assign(seed=seed)


def spread(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds, per model; and the ensemble's gaps."""
    rows = []
    for (level, model), group in table.groupby(["level", "model"], sort=False):
        rows.append({"level": level, "model": model, "seeds": len(group),
                     "oof_mean": group["oof_log_loss"].mean(),
                     "oof_std": group["oof_log_loss"].std(ddof=1),
                     "test_mean": group["test_log_loss"].mean(),
                     "test_std": group["test_log_loss"].std(ddof=1)})
    ensemble = table[table["model"].str.startswith("ensemble of")].set_index("seed")
    nested = table[table["model"] == "ensemble, nested-CV estimate"].set_index("seed")
    gaps = {"test - OOF": ensemble["test_log_loss"] - ensemble["oof_log_loss"],
            "test - nested": ensemble["test_log_loss"] - nested["oof_log_loss"]}
    for name, gap in gaps.items():
        rows.append({"level": "gap", "model": f"ensemble: {name}", "seeds": len(gap),
                     "oof_mean": gap.mean(), "oof_std": gap.std(ddof=1)})
    return pd.DataFrame(rows)


def main() -> None:
    args = parse_config(globals(), __doc__)
    source = data_dir()
    if not (source / "reports" / "summary.csv").exists():
        raise SystemExit(f"bench_seeds: {source} has no reports/summary.csv: run the chain "
                         f"first (make demo)")
    if VARY not in RESULTS:
        raise SystemExit(f"bench_seeds: --vary must be training or data, got {VARY!r}")
    # the folder's own row: the default seeds (r00's SEED 0 for the demo's data)
    tables = [pd.read_csv(source / "reports" / "summary.csv").assign(
        seed=SEED if VARY == "training" else 0)]
    timings = []
    with tempfile.TemporaryDirectory(prefix="bench_seeds_") as scratch:
        for seed in SEEDS:
            print(f"bench_seeds: {VARY} seed {seed} ...", flush=True)
            started = time.perf_counter()
            tables.append(run_seed(source, seed, max(2, args.workers), Path(scratch))
                          if VARY == "training" else
                          run_data_seed(seed, max(2, args.workers), Path(scratch)))
            timings.append(time.perf_counter() - started)
    table = pd.concat(tables, ignore_index=True)
    summary = spread(table)
    stamp = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
             "commit": git_commit(), "data": str(source)}
    stamp["seconds_per_seed"] = ",".join(f"{seconds:.0f}" for seconds in timings)
    results = Path(RESULTS_FILE) if RESULTS_FILE else RESULTS[VARY]
    write_csv(pd.concat([table.assign(kind="run"), summary.assign(kind="spread")],
                        ignore_index=True).assign(**stamp), results)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary.to_string(index=False, float_format=lambda x: f"{x:.5f}"))
    print(f"bench_seeds: {results} ({args.config}); seconds per seed: "
          f"{stamp['seconds_per_seed']}")


if __name__ == "__main__":
    main()
