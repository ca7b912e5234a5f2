"""r31 — out-of-fold predictions of every trained first-level model, and their scores.

Reads   models/<model>/config.json + fold<k>.* (r21), metadata/folds.csv, input/train_labels.csv,
        the model's inputs (r12 features or r10 frames)
Writes  predictions/level1/<model>_oof.csv   every train video exactly once, predicted by the
                                             fold model that did not see it
        predictions/level1/<model>_train_by_fold.npz   fold, filename, classes: each fold
                                             model on every train video (r48 uses these so a
                                             video's neighbour features never use its fold)
        predictions/level1/<model>_oof.json  stamp (model config hash + TTA settings), loss
        reports/scores.csv                   + one row per fold and one for the whole OOF
Cost    seconds per model (inference only).

    python r31_validate.py                      # every trained model
    python r31_validate.py --model gru_effnet_lite0 --time_augmentation 4
    python r31_validate.py --model cnn3d_micro --flip_augmentation false

Test-time augmentation (TTA) averages the prediction over the sequence, its reversal and
centred temporal windows, and for models on raw clips (3D CNN) over their mirror images too.
Its defaults are a03_models' TIME_AUGMENTATION and FLIP_AUGMENTATION, which r40 uses too, so
OOF and test predictions are made the same way (r40 warns when they were not). The fold
models predict through a03_models.prediction_tables, as in r40 and r80.
"""
from __future__ import annotations

import numpy as np

import a03_models
from a00_common import (append_scores, level1_dir, load_folds, load_train_labels, logger,
                        models_dir, parse_config, run_main)
from a00_metric import mean_log_loss, prediction_frame
from a00_io import (log_outcome, outdated_reason, write_csv, write_fold_table, write_json,
                    write_stamp)
from a03_models import (get_spec, models_to_predict, prediction_stamp, prediction_tables,
                        trained_config)

TIME_AUGMENTATION = a03_models.TIME_AUGMENTATION   # temporal views averaged (1 = none)
FLIP_AUGMENTATION = a03_models.FLIP_AUGMENTATION   # also mirrored clips (3D CNN)


def validate_model(name: str, force: bool, time_augmentation: int,
                   flip_augmentation: bool) -> None:
    output = level1_dir() / f"{name}_oof.csv"
    labels_table, classes = load_train_labels()
    folds = load_folds(labels_table["filename"])
    fold_numbers = sorted(int(k) for k in folds["fold"].unique())
    config = trained_config(name, fold_numbers, "r31")
    stamp = prediction_stamp(config["config_hash"], time_augmentation, flip_augmentation)
    # the trained state covers the train rows' inputs, labels and folds
    outputs = [output, level1_dir() / f"{name}_train_by_fold.npz", output.with_suffix(".json")]
    made_from = {"predictions": stamp}
    reason = outdated_reason(outputs, made_from, force)
    log_outcome(f"r31 {name}", reason)
    if reason is None:
        return
    by_fold, _ = prediction_tables(get_spec(name), labels_table["filename"], models_dir(name),
                                   fold_numbers, classes, config["settings"], time_augmentation,
                                   flip_augmentation)
    labels = labels_table[classes].to_numpy(np.float64)
    predictions = np.full(labels.shape, np.nan)
    scores = []
    for fold in fold_numbers:
        rows = np.flatnonzero(folds["fold"].to_numpy() == fold)
        predictions[rows] = by_fold.loc[by_fold["fold"] == fold, classes].to_numpy()[rows]
        scores.append({"stage": "r31_level1", "model": name, "fold": str(fold),
                       "log_loss": mean_log_loss(labels[rows], predictions[rows]),
                       "rows": len(rows), "config_hash": stamp})
    if np.isnan(predictions).any():
        raise SystemExit(f"r31 {name}: some train videos got no OOF prediction (folds changed?)")
    loss = mean_log_loss(labels, predictions)
    scores.append({"stage": "r31_level1", "model": name, "fold": "all", "log_loss": loss,
                   "rows": len(labels), "config_hash": stamp})
    write_fold_table(by_fold, level1_dir() / f"{name}_train_by_fold.npz")
    write_csv(prediction_frame(labels_table["filename"], classes, predictions), output)
    write_json({"stamp": stamp, "log_loss": loss}, output.with_suffix(".json"))
    write_stamp(outputs, made_from)
    append_scores(scores)
    logger.info("r31 %s: OOF log loss %.5f over %d videos -> %s", name, loss, len(labels), output)


def main() -> None:
    args = parse_config(globals(), __doc__)
    for name in models_to_predict("r31", args.model):
        validate_model(name, args.force, args.config["TIME_AUGMENTATION"],
                       args.config["FLIP_AUGMENTATION"])


if __name__ == "__main__":
    run_main(main)
