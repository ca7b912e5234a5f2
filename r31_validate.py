"""r31 — out-of-fold predictions of every trained first-level model, and their scores.

Reads   models/<model>/config.json + fold<k>.* (r21), metadata/folds.csv, input/train_labels.csv,
        the model's inputs (r12 features or r10 frames)
Writes  predictions/level1/<model>_oof.csv   every train video exactly once, predicted by the
                                             fold model that did not see it
        predictions/level1/<model>_train_by_fold.csv   fold, filename, classes: each fold
                                             model on every train video (r48 uses these so a
                                             video's neighbour features never use its fold)
        predictions/level1/<model>_oof.json  stamp (model config hash + TTA settings), loss
        reports/scores.csv                   + one row per fold and one for the whole OOF
Cost    seconds per model (inference only).

    python r31_validate.py                      # every trained model
    python r31_validate.py --model gru_effnet_lite0 --time_augmentation 4
    python r31_validate.py --model cnn3d_micro --flip_augmentation false

Test-time augmentation (TTA) averages the prediction over the sequence, its reversal and
centred temporal windows, and for models on raw clips (3D CNN) over their mirror images too;
r40 has the same two settings with the same defaults, so OOF and test predictions are made
the same way (r40 warns when they were not).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from a00_common import (append_scores, level1_dir, load_folds, load_train_labels, log_outcome,
                        logger, mean_log_loss, models_dir, outdated_reason, parse_config,
                        prediction_frame, run_main, write_csv, write_json, write_stamp)

# two views: the reversal is free, the stretched windows (views 3+) cost on the demo
# (bench/results/setting_experiments.csv: tta_views, tta_flip)
TIME_AUGMENTATION = 2          # temporal views averaged per prediction (1 = none); as in r40
FLIP_AUGMENTATION = True       # also average left-right mirrored clips (3D CNN); as in r40


def validate_model(name: str, force: bool) -> None:
    from a03_models import get_spec, load_inputs, predict_fold, prediction_stamp, trained_config
    output = level1_dir() / f"{name}_oof.csv"
    labels_table, classes = load_train_labels()
    folds = load_folds(labels_table["filename"])
    fold_numbers = sorted(int(k) for k in folds["fold"].unique())
    config = trained_config(name, fold_numbers, "r31")
    stamp = prediction_stamp(config["config_hash"], TIME_AUGMENTATION, FLIP_AUGMENTATION)
    # the trained state covers the train rows' inputs, labels and folds
    outputs = [output, level1_dir() / f"{name}_train_by_fold.csv", output.with_suffix(".json")]
    made_from = {"predictions": stamp}
    reason = outdated_reason(outputs, made_from, force)
    log_outcome(f"r31 {name}", reason)
    if reason is None:
        return
    spec = get_spec(name)
    inputs = load_inputs(spec, labels_table["filename"], config["settings"])
    labels = labels_table[classes].to_numpy(np.float64)
    predictions = np.full(labels.shape, np.nan)
    by_fold, scores = [], []
    for fold in fold_numbers:
        rows = np.flatnonzero(folds["fold"].to_numpy() == fold)
        fold_predictions = predict_fold(spec, inputs, models_dir(name), fold, len(classes),
                                        config["settings"], TIME_AUGMENTATION,
                                        FLIP_AUGMENTATION)
        predictions[rows] = fold_predictions[rows]
        table = prediction_frame(labels_table["filename"], classes, fold_predictions)
        table.insert(0, "fold", fold)
        by_fold.append(table)
        scores.append({"stage": "r31_level1", "model": name, "fold": str(fold),
                       "log_loss": mean_log_loss(labels[rows], predictions[rows]),
                       "rows": len(rows), "config_hash": stamp})
    if np.isnan(predictions).any():
        raise SystemExit(f"r31 {name}: some train videos got no OOF prediction (folds changed?)")
    loss = mean_log_loss(labels, predictions)
    scores.append({"stage": "r31_level1", "model": name, "fold": "all", "log_loss": loss,
                   "rows": len(labels), "config_hash": stamp})
    write_csv(pd.concat(by_fold, ignore_index=True), level1_dir() / f"{name}_train_by_fold.csv")
    write_csv(prediction_frame(labels_table["filename"], classes, predictions), output)
    write_json({"stamp": stamp, "log_loss": loss}, output.with_suffix(".json"))
    write_stamp(outputs, made_from)
    append_scores(scores)
    logger.info("r31 %s: OOF log loss %.5f over %d videos -> %s", name, loss, len(labels), output)


def main() -> None:
    args = parse_config(globals(), __doc__)
    from a03_models import trained_models
    names = [args.model] if args.model else trained_models()
    if not names:
        raise SystemExit("r31: no trained models under models/: run r21_train_models.py first")
    for name in names:
        validate_model(name, args.force)


if __name__ == "__main__":
    run_main(main)
