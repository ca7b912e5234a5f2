"""r40 — test predictions of every trained first-level model: the mean over its fold models.

Reads   models/<model>/config.json + fold<k>.* (r21), metadata/folds.csv,
        input/submission_format.csv, the model's inputs (r12 features or r10 frames)
Writes  predictions/level1/<model>_test.csv   every submission row, in submission order
        predictions/level1/<model>_test_by_fold.npz   fold, filename, classes: each fold
                                               model's own test predictions (for r48)
        predictions/level1/<model>_test.json  stamp: model config hash + TTA settings
Cost    seconds per model (inference only; K fold models × TTA views).

    python r40_process_test.py
    python r40_process_test.py --model lgbm_tabular --force

Test-time augmentation: a03_models' TIME_AUGMENTATION and FLIP_AUGMENTATION by default, as in
r31, so test and OOF predictions are made the same way; a mismatch with the OOF table's stamp
is warned. The fold models predict through a03_models.prediction_tables, as in r31 and r80.
"""
from __future__ import annotations

import a03_models
from a00_common import (level1_dir, load_folds, load_submission_format, load_train_labels, logger,
                        models_dir, parse_config, run_main)
from a00_io import (digest_text, log_outcome, outdated_reason, read_json, write_csv,
                    write_fold_table, write_json, write_stamp)
from a03_models import (get_spec, input_digest, models_to_predict, prediction_stamp,
                        prediction_tables, trained_config)

TIME_AUGMENTATION = a03_models.TIME_AUGMENTATION   # temporal views averaged (1 = none)
FLIP_AUGMENTATION = a03_models.FLIP_AUGMENTATION   # also mirrored clips (3D CNN)


def process_model(name: str, force: bool, time_augmentation: int,
                  flip_augmentation: bool) -> None:
    output = level1_dir() / f"{name}_test.csv"
    labels_table, classes = load_train_labels()
    # the folds of folds.csv, as in r31: a fold that is missing is an error, not a silent
    # mean over fewer models
    folds = sorted(int(k) for k in load_folds(labels_table["filename"])["fold"].unique())
    config = trained_config(name, folds, "r40")
    stamp = prediction_stamp(config["config_hash"], time_augmentation, flip_augmentation)
    spec = get_spec(name)
    submission = load_submission_format(classes)
    test_names = submission["filename"].tolist()
    outputs = [output, level1_dir() / f"{name}_test_by_fold.npz", output.with_suffix(".json")]
    # the trained state, and the test rows with the content digests of their inputs
    made_from = {"predictions": stamp, "test_rows": digest_text(test_names),
                 "test_inputs": input_digest(spec, test_names) if test_names else ""}
    reason = outdated_reason(outputs, made_from, force)
    log_outcome(f"r40 {name}", reason)
    if reason is None:
        return
    by_fold, predictions = prediction_tables(spec, test_names, models_dir(name), folds, classes,
                                             config["settings"], time_augmentation,
                                             flip_augmentation)
    write_fold_table(by_fold, level1_dir() / f"{name}_test_by_fold.npz")
    write_csv(predictions, output)
    # the test-time views too: a stack exported by r80 predicts new clips the same way
    write_json({"stamp": stamp, "folds": folds,
                "settings": {"time_augmentation": time_augmentation,
                             "flip_augmentation": flip_augmentation}}, output.with_suffix(".json"))
    write_stamp(outputs, made_from)
    logger.info("r40 %s: %d test videos, mean of %d fold models -> %s", name,
                len(submission), len(folds), output)
    oof_stamp = (read_json(level1_dir() / f"{name}_oof.json") or {}).get("stamp")
    if oof_stamp is not None and oof_stamp != stamp:
        logger.warning("r40 %s: the OOF table was made as %s, the test table as %s; run r31 "
                       "and r40 with the same model and TTA settings", name, oof_stamp, stamp)


def main() -> None:
    args = parse_config(globals(), __doc__)
    for name in models_to_predict("r40", args.model):
        process_model(name, args.force, args.config["TIME_AUGMENTATION"],
                      args.config["FLIP_AUGMENTATION"])


if __name__ == "__main__":
    run_main(main)
