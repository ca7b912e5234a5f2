"""r40 — test predictions of every trained first-level model: the mean over its fold models.

Reads   models/<model>/config.json + fold<k>.* (r21), input/submission_format.csv, the model's
        input features (r12)
Writes  predictions/level1/<model>_test.csv   every submission row, in submission order
        predictions/level1/<model>_test_by_fold.csv   fold, filename, classes: each fold
                                               model's own test predictions (for r48)
Cost    seconds per model (inference only; K fold models × TTA views).

    python r40_process_test.py
    python r40_process_test.py --model lgbm_tabular --force

Uses the same TIME_AUGMENTATION as r31 (keep them equal) so test and OOF predictions are
produced the same way.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from a00_common import (level1_dir, load_submission_format, load_train_labels, logger,
                        models_dir, parse_config, prediction_frame, read_json, up_to_date,
                        write_csv, write_json)

TIME_AUGMENTATION = 4          # temporal views averaged per prediction (1 = none); as in r31


def trained_models() -> list[str]:
    root = models_dir("x").parent
    return sorted(p.parent.name for p in root.glob("*/config.json")) if root.is_dir() else []


def process_model(name: str, force: bool) -> None:
    from a03_models import get_spec, load_inputs, predict_fold
    output = level1_dir() / f"{name}_test.csv"
    config = read_json(models_dir(name) / "config.json")
    if config is None:
        raise SystemExit(f"{models_dir(name)}/config.json is missing: train {name} with r21 first")
    stamp = f"{config['config_hash']}-tta{TIME_AUGMENTATION}"
    if up_to_date(output, force) and (read_json(output.with_suffix(".json")) or {}).get(
            "stamp") == stamp:
        logger.info("r40 %s: up to date", name)
        return
    spec = get_spec(name)
    _, classes = load_train_labels()
    submission = load_submission_format(classes)
    folds = sorted(int(p.stem.split(".")[0][4:]) for p in models_dir(name).glob("fold*.json")
                   if p.stem[4:].isdigit())
    for fold in folds:
        if (read_json(models_dir(name) / f"fold{fold}.json") or {}).get("config_hash") != \
                config["config_hash"]:
            raise SystemExit(f"r40 {name}: fold {fold} was trained with other settings; "
                             f"rerun r21_train_models.py --model {name}")
    if not folds:
        raise SystemExit(f"r40 {name}: no trained fold under {models_dir(name)}")
    inputs = load_inputs(spec, submission["filename"]) if len(submission) else None
    by_fold = []
    for fold in folds:
        fold_predictions = predict_fold(spec, inputs, models_dir(name), fold, len(classes),
                                        config["settings"], TIME_AUGMENTATION) \
            if inputs is not None else np.zeros((0, len(classes)))
        table = prediction_frame(submission["filename"], classes, fold_predictions)
        table.insert(0, "fold", fold)
        by_fold.append(table)
    predictions = np.mean([table[classes].to_numpy() for table in by_fold], axis=0)
    write_csv(pd.concat(by_fold, ignore_index=True), level1_dir() / f"{name}_test_by_fold.csv")
    write_csv(prediction_frame(submission["filename"], classes, predictions), output)
    write_json({"stamp": stamp, "folds": folds}, output.with_suffix(".json"))
    logger.info("r40 %s: %d test videos, mean of %d fold models -> %s", name,
                len(submission), len(folds), output)


def main() -> None:
    args = parse_config(globals(), __doc__)
    names = [args.model] if args.model else trained_models()
    if not names:
        raise SystemExit("r40: no trained models under models/: run r21_train_models.py first")
    for name in names:
        process_model(name, args.force)


if __name__ == "__main__":
    main()
