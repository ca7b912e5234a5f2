"""r21 — train the first-level models, one (model, fold) job at a time.

Reads   metadata/folds.csv, metadata/metadata.csv, input/train_labels.csv,
        features/<extractor>/… (r12), as each model's inputs say (a03_models.MODELS)
Writes  models/<model>/fold<k>.weights.h5 (Keras) or fold<k>.lightgbm.json (LightGBM boosters
        as text), models/<model>/fold<k>_history.csv, models/<model>/fold<k>.json (config,
        hash, best validation loss, git commit), models/<model>/config.json
Cost    on 2 CPU cores and the demo set: a sequence model ~10–30 s per fold, LightGBM over 24
        classes ~5–15 s per fold.

    python r21_train_models.py                                  # every model in MODELS, every fold
    python r21_train_models.py --model gru_effnet_lite0 --fold 3 --gpu 1   # one job
    python r21_train_models.py --models gru_effnet_lite0,lgbm_tabular --epochs 60

Each fold keeps the weights of its best epoch by the fold's validation loss. A job whose
output exists with the same settings, inputs and folds is skipped ("up to date"). Jobs of
different models or folds may run at the same time: they write different files.
"""
from __future__ import annotations

import hashlib

import numpy as np

from a00_common import (SEED, config_hash, git_commit, load_folds, load_train_labels, logger,
                        metadata_dir, models_dir, parse_config, print_jobs, prior_probabilities,
                        read_json, write_csv, write_json)

MODELS = ("gru_effnet_lite0", "attention_effnet_lite0", "lgbm_tabular")   # a plain run trains these
TRAIN_SEED = SEED              # fold k uses TRAIN_SEED + k
# --- Keras models
EPOCHS = 40
BATCH_SIZE = 32
LEARNING_RATE = 1e-3           # peak of the warm-up + cosine schedule (AdamW)
WEIGHT_DECAY = 1e-2
WARMUP_EPOCHS = 2
PATIENCE = 8                   # early stopping on the fold's validation loss; best weights kept
HIDDEN_UNITS = 128
DROPOUT = 0.3
# --- LightGBM
N_ESTIMATORS = 400             # upper bound; early stopping picks the number
GBM_LEARNING_RATE = 0.05
NUM_LEAVES = 15


def overrides() -> dict:
    return {"epochs": EPOCHS, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE,
            "weight_decay": WEIGHT_DECAY, "warmup_epochs": WARMUP_EPOCHS, "patience": PATIENCE,
            "hidden_units": HIDDEN_UNITS, "dropout": DROPOUT, "n_estimators": N_ESTIMATORS,
            "num_leaves": NUM_LEAVES}


def job_config(spec, settings: dict) -> dict:
    from a03_models import input_hash
    folds_text = (metadata_dir() / "folds.csv").read_bytes()
    settings = dict(settings)
    if spec.kind == "lightgbm":
        settings["learning_rate"] = GBM_LEARNING_RATE
    return {"model": spec.name, "kind": spec.kind, "inputs": list(spec.inputs), "head": spec.head,
            "settings": settings, "seed": TRAIN_SEED, "input_hash": input_hash(spec),
            "folds_hash": hashlib.sha1(folds_text).hexdigest()[:8]}


def train_model(name: str, only_fold: int | None, force: bool) -> None:
    from a03_models import fold_output, get_spec, load_inputs, resolved_settings, train_fold
    spec = get_spec(name)
    labels_table, classes = load_train_labels()
    folds = load_folds(labels_table["filename"])
    config = job_config(spec, resolved_settings(spec, overrides()))
    hash_text = config_hash(config)
    folder = models_dir(name)
    fold_numbers = sorted(int(k) for k in folds["fold"].unique()) if only_fold is None \
        else [only_fold]
    pending = [fold for fold in fold_numbers
               if force or not fold_output(spec, folder, fold).exists()
               or (read_json(folder / f"fold{fold}.json") or {}).get("config_hash") != hash_text]
    if not pending:
        logger.info("r21 %s: up to date (folds %s)", name, fold_numbers)
        return
    write_json({**config, "config_hash": hash_text, "classes": classes}, folder / "config.json")
    inputs = load_inputs(spec, labels_table["filename"])
    labels = labels_table[classes].to_numpy(np.float32)
    for fold in pending:
        train_rows = np.flatnonzero(folds["fold"].to_numpy() != fold)
        validation_rows = np.flatnonzero(folds["fold"].to_numpy() == fold)
        prior = prior_probabilities(labels[train_rows])
        history, best_loss = train_fold(spec, inputs, labels, train_rows, validation_rows,
                                        folder, fold, TRAIN_SEED + fold, config["settings"], prior)
        write_csv(history, folder / f"fold{fold}_history.csv")
        write_json({"model": name, "fold": int(fold), "config_hash": hash_text,
                    "best_validation_loss": best_loss, "epochs_run": len(history),
                    "train_rows": len(train_rows), "validation_rows": len(validation_rows),
                    "commit": git_commit()}, folder / f"fold{fold}.json")
        logger.info("r21 %s fold %d: trained on %d videos, best validation loss %.4f",
                    name, fold, len(train_rows), best_loss)


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "list_jobs": (False, "print the (model, fold) jobs a plain run would do (for "
                             "run_all.py) and exit")})
    from a03_models import get_spec, required_extractors
    names = [args.model] if args.model else list(MODELS)
    for name in names:
        get_spec(name)  # unknown names stop before any training starts
    if args.list_jobs:
        labels_table, _ = load_train_labels()
        folds = load_folds(labels_table["filename"])
        fold_numbers = sorted(int(k) for k in folds["fold"].unique()) if args.fold is None \
            else [args.fold]
        print_jobs([{"model": name, "fold": fold,
                     "extractors": required_extractors(get_spec(name)),
                     "gpu": get_spec(name).kind == "keras"}
                    for name in names for fold in fold_numbers])
        return
    for name in names:
        train_model(name, args.fold, args.force)


if __name__ == "__main__":
    main()
