"""r48 — neighbour features: what the camera saw just before and after each video.

Camera traps fire in bursts: the clips around a video usually show the same animal. For each
video, its neighbours are the other videos of the same camera (all videos when no camera is
known) ordered by trusted capture time (r11 leaves a clip without one when its only time is
the file's modification time; such a clip has no neighbour features); the features are the
mean level-1 prediction of the ±K nearest neighbours for several K, the previous and next
video's prediction, and the time gaps to them.

Reads   metadata/metadata.csv (capture_time, camera), metadata/folds.csv,
        predictions/level1/<model>_train_by_fold.npz and <model>_test_by_fold.npz (r31, r40)
Writes  predictions/neighbors_oof.csv    train videos: filename + features
        predictions/neighbors_test.csv   test videos: filename, view (the fold whose view it
                                         read) + features
Cost    seconds (cumulative sums over sorted videos, once per fold view).

    python r48_neighbor_features.py
    python r48_neighbor_features.py --neighbor_k 1,2,5,10,20 --neighbor_models lgbm_tabular

Views: every neighbour is seen through a model that never trained on it, and never on the
video it is a neighbour of. View g is the timeline of the train videos of fold g and all
test videos, each valued by a fold-g model: a train video by its OOF prediction, a test video
by the fold-g model's test prediction; the fold-g models never saw a label of fold g. A train
video of fold g reads view g, so no label of fold g, its own included, reaches its features.
A test video reads the view of the train video nearest to it in time on its camera (a fold
drawn from its name's digest when it has none): like that train video, it then has the
clips of its own visit on its timeline, and its neighbours are of the same kind as a train
video's, out-of-sample predictions at the same density (the train videos of one fold and all
test videos). The report's adversarial validation (r60) checks that the two look alike.
"""
from __future__ import annotations

import pandas as pd

from a00_common import (level1_dir, load_folds, load_submission_format, load_train_labels, logger,
                        metadata_dir, parse_config, predictions_dir, run_main)
from a00_io import digest_text, log_outcome, outdated_reason, read_stamp, write_csv, write_stamp
from a05_stacking import build_features, models_with_tables

NEIGHBOR_K = (1, 2, 5, 10)     # ±K neighbours averaged (K before and K after, self excluded)
NEIGHBOR_MODELS = ("all",)     # level-1 models whose predictions are averaged; "all" = every one
PER_MODEL = False              # also add features per model (more columns, more signal)


def main() -> None:
    args = parse_config(globals(), __doc__)
    oof_path = predictions_dir() / "neighbors_oof.csv"
    test_path = predictions_dir() / "neighbors_test.csv"
    models = models_with_tables(level1_dir(), "train_by_fold") if "all" in NEIGHBOR_MODELS \
        else list(NEIGHBOR_MODELS)
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
                                             classes, folds, metadata, models, NEIGHBOR_K,
                                             PER_MODEL)
    write_csv(train_table, oof_path)
    write_csv(test_table, test_path)
    write_stamp([oof_path, test_path], inputs)
    logger.info("r48: %d neighbour features from %d model(s) -> %s, %s",
                train_table.shape[1] - 1, len(models), oof_path, test_path)


if __name__ == "__main__":
    run_main(main)
