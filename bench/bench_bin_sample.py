"""bench_bin_sample — held-out loss of LightGBM against the rows its bins are found from.

A benchmark, not a test. r21's `lgbm_tabular` finds its feature bins from at most
GBM_BIN_CONSTRUCT_SAMPLE_CNT rows (5,000; LightGBM's own default is 200,000), because the
sample is what sets the job's memory peak. This measures what a smaller or larger sample
costs in loss, on synthetic rows shaped like `lgbm_tabular`'s table (245 columns: integer
codes, skewed durations, bounded hash statistics, heavy-tailed log-mel statistics,
zero-inflated values, a block of missing rows) and classes whose signal is thresholds at
random quantiles of a few columns — where bin edges matter most — plus smooth terms. Each
class is boosted with r21's LightGBM settings (without its class weights), its rounds
picked on held-out training rows,
and scored on rows never trained on; every sample size sees the same rows and labels. Its
last lines: per sample size, the mean held-out loss and its paired difference to the
largest sample, over classes and data seeds.

Writes  bench/results/bin_sample.csv   one row per (seed, sample size, class) (appended)
Cost    about 10 minutes on 2 cores with the defaults.

    python bench/bench_bin_sample.py
    python bench/bench_bin_sample.py --rows 80000 --seeds 0
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from a00_common import append_results, parse_config  # noqa: E402

ROWS = 40000                   # training rows (a fold of ~60k clips with 5 folds)
HELD_OUT_ROWS = 10000          # rows scored, never trained on
STOP_FRACTION = 0.2            # training rows that pick each class's rounds (r21's default)
SAMPLE_SIZES = (1000, 2500, 5000, 10000, 40000)   # bin_construct_sample_cnt values compared
PREVALENCES = (0.3, 0.1, 0.05, 0.02, 0.01, 0.005)  # one class each
SEEDS = (0, 1, 2)              # data sets (rows, labels and LightGBM's draws)
ROUNDS, PATIENCE = 400, 30     # r21's GBM_N_ESTIMATORS and GBM_EARLY_STOPPING_ROUNDS
THREADS = 2
RESULTS = PROJECT_ROOT / "bench" / "results" / "bin_sample.csv"

# r21's LightGBM settings for lgbm_tabular (its GBM_ block)
BOOSTING = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15,
            "min_child_samples": 5, "subsample": 0.8, "subsample_freq": 1,
            "colsample_bytree": 0.5, "reg_lambda": 1.0, "verbose": -1}


def synthetic_table(rows: int, random: np.random.Generator) -> np.ndarray:
    """(rows, 245) float32 with the kinds of columns lgbm_tabular reads."""
    parts = [random.integers(0, levels, size=(rows, 1)).astype(np.float32)
             for levels in (2, 3, 5, 7, 12, 24, 31, 60, 120, 200, 300, 400)]   # codes, flags
    parts.append(random.lognormal(2.0, 0.8, size=(rows, 8)))                    # durations, sizes
    parts.append(random.beta(2.0, 5.0, size=(rows, 128)))                       # hash statistics
    parts.append(random.standard_t(3, size=(rows, 64)) * 4 - 20)                # log-mel statistics
    zero = random.random((rows, 33)) < 0.4
    parts.append(np.where(zero, 0.0, random.gamma(1.5, 2.0, size=(rows, 33))))  # motion, loudness
    table = np.hstack(parts).astype(np.float32)
    missing = random.random(rows) < 0.05          # undecodable clips: statistics missing
    table[missing, 20:] = np.nan
    return table


def synthetic_labels(table: np.ndarray, prevalence: float,
                     random: np.random.Generator) -> np.ndarray:
    """0/1 labels: thresholds at random quantiles of six columns and two smooth terms, plus
    noise, cut to `prevalence`."""
    columns = random.choice(table.shape[1], 8, replace=False)
    signal = np.zeros(len(table))
    for number, column in enumerate(columns):
        values = np.nan_to_num(table[:, column], nan=np.nanmedian(table[:, column]))
        if number < 6:
            cut = np.quantile(values, random.uniform(0.05, 0.95))
            signal += random.choice([-1.5, 1.5]) * (values > cut)
        else:
            signal += np.tanh((values - values.mean()) / (values.std() + 1e-9))
    signal += random.logistic(size=len(table))
    return (signal > np.quantile(signal, 1 - prevalence)).astype(np.float32)


def held_out_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    clipped = np.clip(probabilities, 1e-15, 1 - 1e-15)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))


def one_seed(seed: int) -> list[dict]:
    import lightgbm
    random = np.random.default_rng(seed)
    table = synthetic_table(ROWS + HELD_OUT_ROWS, random)
    labels = np.column_stack([synthetic_labels(table, prevalence, random)
                              for prevalence in PREVALENCES])
    order = random.permutation(ROWS)
    stop = np.sort(order[:int(ROWS * STOP_FRACTION)])
    fit = np.sort(order[int(ROWS * STOP_FRACTION):])
    held = np.arange(ROWS, ROWS + HELD_OUT_ROWS)
    rows = []
    for sample in SAMPLE_SIZES:
        started = time.perf_counter()
        parameters = {"bin_construct_sample_cnt": sample, "data_random_seed": seed,
                      "min_child_samples": BOOSTING["min_child_samples"], "verbose": -1,
                      "num_threads": THREADS}
        fit_set = lightgbm.Dataset(table[fit], label=labels[fit, 0], params=parameters,
                                   free_raw_data=False).construct()
        stop_set = lightgbm.Dataset(table[stop], label=labels[stop, 0], reference=fit_set,
                                    params=parameters, free_raw_data=False).construct()
        for column, prevalence in enumerate(PREVALENCES):
            fit_set.set_label(labels[fit, column])
            stop_set.set_label(labels[stop, column])
            booster = lightgbm.train(
                {**BOOSTING, "seed": seed + column, "num_threads": THREADS}, fit_set, ROUNDS,
                valid_sets=[stop_set],
                callbacks=[lightgbm.early_stopping(PATIENCE, verbose=False)])
            predicted = booster.predict(table[held], num_iteration=booster.best_iteration)
            rows.append({"seed": seed, "sample": sample, "prevalence": prevalence,
                         "rounds": booster.best_iteration,
                         "held_out_loss": held_out_loss(labels[held, column], predicted)})
        print(f"seed {seed} sample {sample}: "
              f"{np.mean([r['held_out_loss'] for r in rows[-len(PREVALENCES):]]):.5f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return rows


def main() -> None:
    parse_config(globals(), __doc__)
    table = pd.DataFrame([row for seed in SEEDS for row in one_seed(seed)])
    table["rows"] = ROWS
    append_results(table, RESULTS)
    largest = max(SAMPLE_SIZES)
    paired = table.merge(table[table["sample"] == largest][["seed", "prevalence",
                                                            "held_out_loss"]],
                         on=["seed", "prevalence"], suffixes=("", "_largest"))
    paired["difference"] = paired["held_out_loss"] - paired["held_out_loss_largest"]
    summary = paired.groupby("sample").agg(
        held_out_loss=("held_out_loss", "mean"), difference=("difference", "mean"),
        worst_difference=("difference", "max"))
    summary["relative"] = summary["difference"] / summary["held_out_loss"]
    print(summary.to_string(float_format=lambda value: f"{value:.6f}"))
    print(f"{len(SEEDS)} data sets x {len(PREVALENCES)} classes, {ROWS} training rows; "
          f"difference: paired, against a sample of {largest} rows -> {RESULTS}")


if __name__ == "__main__":
    main()
