"""r48 — neighbour features: what the camera saw just before and after each video.

Camera traps fire in bursts: the clips around a video usually show the same animal. For each
video, its neighbours are the other videos of the same camera (all videos when no camera is
known) ordered by trusted capture time (r11 leaves a clip without one when its only time is
the file's modification time; such a clip has no neighbour features); the features are the mean level-1 prediction of the ±K
nearest neighbours for several K, the previous and next video's prediction, and the time
gaps to them.

Reads   metadata/metadata.csv (capture_time, camera), metadata/folds.csv,
        predictions/level1/<model>_train_by_fold.csv and <model>_test_by_fold.csv (r31, r40)
Writes  predictions/neighbors_oof.csv    train videos: filename + features
        predictions/neighbors_test.csv   test videos:  filename + features
Cost    seconds (cumulative sums over sorted videos).

    python r48_neighbor_features.py
    python r48_neighbor_features.py --neighbor_k 1,2,5,10,20 --neighbor_models lgbm_tabular

Leak safety. A train video of fold f gets its features from the *fold-f view*: every
neighbour (train or test) is predicted by the fold-f models, which never saw a label of fold
f. Its own prediction is never used. Test videos use the mean over fold models, as their
level-1 predictions do.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from a00_common import (digest_text, level1_dir, load_folds, load_submission_format,
                        load_train_labels, log_outcome, logger, metadata_dir, outdated_reason,
                        parse_config, predictions_dir, read_stamp, run_main, write_csv,
                        write_stamp)

NEIGHBOR_K = (1, 2, 5, 10)     # ±K neighbours averaged (K before and K after, self excluded)
NEIGHBOR_MODELS = ("all",)     # level-1 models whose predictions are averaged; "all" = every one
PER_MODEL = False              # also add features per model (more columns, more signal)


def neighbor_features(capture_seconds: np.ndarray, groups: np.ndarray, values: np.ndarray,
                      k_values, prefix: str, class_names) -> pd.DataFrame:
    """Neighbour means of `values` (videos × classes) within each group, ordered by time.

    For video i at position p of its group: mean of the values at positions p-K..p+K except
    p (clipped at the group's ends), the values at p-1 and p+1 (NaN at an end), the gaps in
    seconds to them, and the group size. Videos without a capture time get NaN.
    """
    count, n_classes = values.shape
    columns = {}
    means = {k: np.full((count, n_classes), np.nan) for k in k_values}
    previous_values = np.full((count, n_classes), np.nan)
    next_values = np.full((count, n_classes), np.nan)
    gap_previous = np.full(count, np.nan)
    gap_next = np.full(count, np.nan)
    group_size = np.zeros(count)
    known = ~np.isnan(capture_seconds)
    for group in pd.unique(groups[known]):
        members = np.flatnonzero(known & (groups == group))
        members = members[np.argsort(capture_seconds[members], kind="stable")]
        size = len(members)
        group_size[members] = size
        ordered = values[members]
        cumulative = np.vstack([np.zeros((1, n_classes)), np.cumsum(ordered, axis=0)])
        positions = np.arange(size)
        for k in k_values:
            low = np.maximum(positions - k, 0)
            high = np.minimum(positions + k, size - 1)
            total = cumulative[high + 1] - cumulative[low] - ordered
            neighbours = (high - low)[:, None].astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                means[k][members] = np.where(neighbours > 0, total / neighbours, np.nan)
        times = capture_seconds[members]
        previous_values[members[1:]] = ordered[:-1]
        next_values[members[:-1]] = ordered[1:]
        gap_previous[members[1:]] = np.diff(times)
        gap_next[members[:-1]] = np.diff(times)
    for k in k_values:
        for column, name in enumerate(class_names):
            columns[f"{prefix}mean{k}_{name}"] = means[k][:, column]
    for column, name in enumerate(class_names):
        columns[f"{prefix}previous_{name}"] = previous_values[:, column]
        columns[f"{prefix}next_{name}"] = next_values[:, column]
    columns[f"{prefix}log_gap_previous"] = np.log1p(gap_previous)
    columns[f"{prefix}log_gap_next"] = np.log1p(gap_next)
    columns[f"{prefix}group_size"] = group_size
    return pd.DataFrame(columns)


def available_models() -> list[str]:
    folder = level1_dir()
    return sorted(p.name[:-len("_train_by_fold.csv")] for p in folder.glob("*_train_by_fold.csv")
                  if (folder / p.name.replace("_train_by_fold", "_test_by_fold")).exists())


def fold_views(model: str, train_names, test_names, classes, folds: list[int]) -> dict:
    """{fold f: predictions of fold-f models on all videos (train, then test); 'test': mean}."""
    train = pd.read_csv(level1_dir() / f"{model}_train_by_fold.csv", dtype={"filename": str},
                        keep_default_na=False)
    test = pd.read_csv(level1_dir() / f"{model}_test_by_fold.csv", dtype={"filename": str},
                       keep_default_na=False)
    views = {}
    for fold in folds:
        train_part = train[train["fold"] == fold].set_index("filename").loc[list(train_names)]
        test_part = test[test["fold"] == fold].set_index("filename").reindex(list(test_names))
        if test_part[classes].isna().any().any():
            raise SystemExit(f"r48: {model}_test_by_fold.csv lacks fold {fold}; rerun r40")
        views[fold] = np.vstack([train_part[classes].to_numpy(float),
                                 test_part[classes].to_numpy(float)])
    views["test"] = np.mean([views[fold] for fold in folds], axis=0)
    return views


def build_features(train_names, test_names, classes, folds_table, metadata, models) -> tuple:
    names = list(train_names) + list(test_names)
    info = metadata.set_index("filename").loc[names]
    capture = pd.to_datetime(info["capture_time"], errors="coerce", utc=True)
    seconds = ((capture - pd.Timestamp("2000-01-01", tz="UTC")).dt.total_seconds()
               .to_numpy(float))
    cameras = info["camera"].fillna("").astype(str).to_numpy()
    groups = np.where(cameras == "", "all videos", cameras)
    fold_of_train = folds_table.set_index("filename").loc[list(train_names), "fold"].to_numpy()
    fold_numbers = sorted(int(k) for k in np.unique(fold_of_train))
    sources = {model: fold_views(model, train_names, test_names, classes, fold_numbers)
               for model in models}
    blocks = [("", {key: np.mean([sources[m][key] for m in models], axis=0)
                    for key in fold_numbers + ["test"]})]
    if PER_MODEL and len(models) > 1:
        blocks += [(f"{model}_", sources[model]) for model in models]
    n_train = len(train_names)
    train_parts, test_parts = [], []
    for prefix, views in blocks:
        train_block = None
        for fold in fold_numbers:
            features = neighbor_features(seconds, groups, views[fold], NEIGHBOR_K,
                                         f"neighbor_{prefix}", classes)
            rows = np.flatnonzero(fold_of_train == fold)
            if train_block is None:
                train_block = pd.DataFrame(index=range(n_train), columns=features.columns,
                                           dtype=float)
            train_block.iloc[rows] = features.iloc[rows].to_numpy()
        test_features = neighbor_features(seconds, groups, views["test"], NEIGHBOR_K,
                                          f"neighbor_{prefix}", classes)
        train_parts.append(train_block)
        test_parts.append(test_features.iloc[n_train:].reset_index(drop=True))
    train_table = pd.concat(train_parts, axis=1)
    test_table = pd.concat(test_parts, axis=1)
    train_table.insert(0, "filename", list(train_names))
    test_table.insert(0, "filename", list(test_names))
    return train_table, test_table


def main() -> None:
    args = parse_config(globals(), __doc__)
    oof_path = predictions_dir() / "neighbors_oof.csv"
    test_path = predictions_dir() / "neighbors_test.csv"
    models = available_models() if "all" in NEIGHBOR_MODELS else list(NEIGHBOR_MODELS)
    if not models:
        raise SystemExit("r48: no level-1 predictions by fold: run r31 and r40 first")
    labels, classes = load_train_labels()
    submission = load_submission_format(classes)
    folds = load_folds(labels["filename"])
    metadata = pd.read_csv(metadata_dir() / "metadata.csv", dtype={"filename": str},
                           keep_default_na=False)
    names = labels["filename"].tolist() + submission["filename"].tolist()
    # the level-1 tables by fold (their stamps), each video's camera and trusted capture
    # time, the folds, and the settings; no label enters
    inputs = {"models": {m: [read_stamp(level1_dir() / f"{m}_{part}.csv")
                             for part in ("oof", "test")] for m in models},
              "times": digest_text(metadata.set_index("filename").reindex(names)[
                  ["capture_time", "camera"]].astype(str).to_numpy().tolist() + [names]),
              "folds": digest_text(folds[["filename", "fold"]].astype(str).to_numpy().tolist()),
              "settings": args.config}
    reason = outdated_reason([oof_path, test_path], inputs, args.force)
    log_outcome("r48", reason)
    if reason is None:
        return
    train_table, test_table = build_features(labels["filename"], submission["filename"],
                                             classes, folds, metadata, models)
    write_csv(train_table, oof_path)
    write_csv(test_table, test_path)
    write_stamp([oof_path, test_path], inputs)
    logger.info("r48: %d neighbour features from %d model(s) -> %s, %s",
                train_table.shape[1] - 1, len(models), oof_path, test_path)


if __name__ == "__main__":
    run_main(main)
