"""Adversarial validation of the stackers' inputs (r60): how well each group of them
(metadata, each level-1 model, the blend, the neighbours) tells train rows from test rows.
A group that does is one whose meaning differs between them. Folds keep visits whole, and
each AUC is set against the same classifier on train rows drawn as the test rows were.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def input_group(column: str) -> str | None:
    """The group of a stacker input, by its prefix (None: not judged, e.g. per-fold site
    columns, which exist only inside r50's outer folds)."""
    if column.startswith("meta:"):
        return "metadata and statistics"
    if column.startswith("l1:"):
        return "level 1: " + column.split(":")[1]
    if column.startswith("blend:"):
        return "level-1 blend"
    if column.startswith("nb:"):
        return "neighbours"
    return None


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUC."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc)
                + (negatives - 1) * (q2 - auc * auc)) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def _group_aucs(matrix: np.ndarray, target: np.ndarray, visits: np.ndarray, groups: dict,
                seed: int, folds: int, rounds: int, threads: int) -> dict:
    """{group: cross-validated AUC} of a small LightGBM telling target 1 from 0 on each group
    of columns. Its folds keep visits whole: clips of one visit look alike, and a classifier
    that saw some of them would recognise the rest, not the split."""
    import lightgbm
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    parameters = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 7,
                  "min_data_in_leaf": 10, "feature_fraction": 0.5, "lambda_l2": 1.0,
                  "verbose": -1, "num_threads": threads, "seed": seed, "deterministic": True,
                  "force_row_wise": True}
    # an integer seed gives the same splits on every call: made once for all the groups
    splits = list(splitter.split(matrix, target, visits))
    aucs = {}
    for group, indices in groups.items():
        scores = np.zeros(len(target))
        for fit, held in splits:
            booster = lightgbm.train(parameters, lightgbm.Dataset(
                matrix[np.ix_(fit, indices)], target[fit]), rounds)
            scores[held] = booster.predict(matrix[np.ix_(held, indices)])
        aucs[group] = float(roc_auc_score(target, scores))
    return aucs


def adversarial_validation(train: pd.DataFrame, test: pd.DataFrame, train_visits,
                           test_visits, by_visit: bool, seed: int, max_rows: int = 20000,
                           folds: int = 5, top: int = 5, rounds: int = 100,
                           threads: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per group of stacker inputs, the cross-validated AUC of a classifier that tells test
    rows (1) from train rows (0); and the `top` single inputs that tell them apart best.

    Test clips may differ from train clips in what they show (drawn by visit, a test set
    holds a few visits' species): a classifier finds that too. So each group also gets the
    AUC of the same classifier telling apart train rows drawn as the test rows were (whole
    visits with `by_visit`, else single clips), as many as the test rows, from the other
    train rows: what the draw alone gives, since both sides are train rows. A group whose
    test AUC exceeds that (and 0.5) by more than twice their combined standard error means
    something else for test rows than for the train rows the stackers learn from. Each
    split is subsampled to `max_rows` rows (seeded); each classifier boosts `rounds`
    rounds."""
    from sklearn.metrics import roc_auc_score
    random = np.random.default_rng(seed)
    columns = [c for c in train.columns if input_group(c) is not None]
    empty = (pd.DataFrame(columns=["group", "inputs", "auc", "standard_error", "null_draw",
                                   "null_auc", "null_standard_error", "mismatch"]),
             pd.DataFrame(columns=["input", "group", "auc"]))
    train_visits = np.char.add("train:", np.asarray(train_visits).astype(str))
    test_visits = np.char.add("test:", np.asarray(test_visits).astype(str))
    # rows drawn before the tables are converted: the copies stay max_rows long
    train_keep, test_keep = np.arange(len(train)), np.arange(len(test))
    if len(train) > max_rows:
        train_keep = np.sort(random.choice(len(train), max_rows, replace=False))
    if len(test) > max_rows:
        test_keep = np.sort(random.choice(len(test), max_rows, replace=False))
    train_values = train[columns].iloc[train_keep].to_numpy(np.float32)
    test_values = test[columns].iloc[test_keep].to_numpy(np.float32)
    train_visits, test_visits = train_visits[train_keep], test_visits[test_keep]
    folds = min(folds, len(np.unique(train_visits)), len(np.unique(test_visits)))
    if folds < 2:
        return empty
    groups = {}
    for index, column in enumerate(columns):
        groups.setdefault(input_group(column), []).append(index)
    groups["all inputs"] = list(range(len(columns)))
    matrix = np.vstack([train_values, test_values])
    target = np.r_[np.zeros(len(train_values)), np.ones(len(test_values))]
    aucs = _group_aucs(matrix, target, np.r_[train_visits, test_visits], groups, seed, folds,
                       rounds, threads)
    # the null: train rows drawn as the test rows were, as many (at most a third of train)
    visits = train_visits if by_visit else np.arange(len(train_values)).astype(str)
    wanted = min(len(test_values), len(train_values) // 3)
    held = np.zeros(len(visits), dtype=bool)
    for visit in random.permutation(np.unique(visits)):
        if held.sum() >= wanted:
            break
        held |= visits == visit
    null_folds = min(folds, len(np.unique(train_visits[held])),
                     len(np.unique(train_visits[~held])))
    null_aucs = _group_aucs(train_values, held.astype(float), train_visits, groups, seed,
                            null_folds, rounds, threads) if null_folds >= 2 else {}
    rows = []
    for group, indices in groups.items():
        auc = aucs[group]
        error = auc_standard_error(auc, len(test_values), len(train_values))
        null = null_aucs.get(group, 0.5)
        null_error = auc_standard_error(null, int(held.sum()), int((~held).sum())) \
            if group in null_aucs else 0.0
        rows.append({"group": group, "inputs": len(indices), "auc": auc,
                     "standard_error": error, "null_draw": "visits" if by_visit else "clips",
                     "null_auc": null,
                     "null_standard_error": null_error,
                     "mismatch": bool(auc - max(null, 0.5)
                                      > 2 * np.hypot(error, null_error))})
    # single inputs: a missing value ranks below every value (missingness can give it away)
    single = []
    for index, column in enumerate(columns):
        values = matrix[:, index].astype(np.float64)
        if np.all(np.isnan(values)) or np.nanmin(values) == np.nanmax(values):
            continue
        values = np.where(np.isnan(values), np.nanmin(values) - 1.0, values)
        single.append({"input": column, "group": input_group(column),
                       "auc": float(roc_auc_score(target, values))})
    single_table = pd.DataFrame(single, columns=["input", "group", "auc"])
    if len(single_table):
        distance = (single_table["auc"] - 0.5).abs()
        single_table = single_table.loc[distance.sort_values(ascending=False,
                                                             kind="stable").index[:top]]
    return pd.DataFrame(rows), single_table.reset_index(drop=True)
