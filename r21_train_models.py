"""r21 — train the first-level models, one (model, fold) job at a time.

Reads   metadata/folds.csv, metadata/metadata.csv, input/train_labels.csv,
        features/<extractor>/… (r12) or cache/preprocess_index.csv + frames (r10), as each
        model's inputs say (a03_models.MODELS); input/submission_format.csv when
        pseudo-labelling
Writes  models/<model>/fold<k>.weights.h5 (Keras) or fold<k>.lightgbm.json (LightGBM boosters
        as text), models/<model>/fold<k>_history.csv (per epoch: losses, validation log loss,
        learning rate, phase), models/<model>/fold<k>.json (config hash, best validation loss,
        epochs, seconds, pseudo-labelled test videos, git commit), models/<model>/config.json
        (the resolved settings, input and fold hashes, classes, git commit)
Cost    on 2 CPU cores and the demo set, 5 folds of training (2 jobs at a time):
        gru_effnet_lite0 ~60 s, attention (full frames or crops) ~45 s, tcn ~55 s,
        gru_hashes ~50 s, audio_cnn ~105 s, lgbm_tabular ~10 s; a separate process per
        (model, fold) job adds ~5 s of TensorFlow start-up.

    python r21_train_models.py                                  # every model in MODELS, every fold
    python r21_train_models.py --model gru_effnet_lite0 --fold 3 --gpu 1   # one job
    python r21_train_models.py --model cnn3d_micro --epochs 30 --clip_size 96
    python r21_train_models.py --model attention_effnet_lite0 --pseudo_label_epochs 4
    python r21_train_models.py --list_jobs                      # the jobs, for run_all.py

A model trains with this block's values (a LightGBM setting is the GBM_ one: GBM_LEARNING_RATE
is LightGBM's learning_rate), except where its ModelSpec in a03_models sets its own (e.g.
cnn3d_micro's batch size), and a value given on the command line beats both.

Each fold trains a Keras model on all its training rows for the fixed schedule (EPOCHS,
cosine decay to the end; with EARLY_STOPPING_FRACTION > 0 it holds out that share of its
training visits and keeps the best epoch on them instead); a LightGBM fold finds each class's
rounds on GBM_EARLY_STOPPING_FRACTION of its training visits and refits on all its training
rows. The fold's own validation rows steer nothing, so its OOF predictions are what unseen
clips get. A fold job is skipped ("[up to date]") only when its model was trained from the
same config: every setting it trained with, the seed and held-out share, the content digests
of the train rows' inputs, their labels and the folds (test rows only with pseudo-labels);
otherwise the log says what changed ("[redo] ... (changed: labels)"). Jobs of different
models or folds may run at the same time: they write different files, and config.json, which
every fold job of a model writes, has the same content in each (written atomically).
Training is deterministic (seeded, TensorFlow op determinism), so a job gives the same weights
alone, after another or beside it.
"""
from __future__ import annotations

import time

import numpy as np

from a00_common import (SEED, config_hash, git_commit, inner_split, load_folds,
                        load_submission_format, load_train_labels, logger, models_dir, parse_config,
                        print_jobs, release_freed_memory, run_main)
from a00_metric import prior_probabilities
from a00_io import TableRows, digest_text, log_outcome, read_json, write_csv, write_json

# a plain run trains these (cnn3d_micro, trained on r10's frames, is in the registry but not
# here: with no epoch picked on its own fold it does no better than the class prior on the
# demo, bench/results/level1_selection.csv; the attention head over motion crops is the best
# single model, bench/results/backbone_and_crop_ablation.csv)
MODELS = ("gru_effnet_lite0", "attention_effnet_lite0", "tcn_effnet_lite0",
          "attention_effnet_lite0_crop", "gru_hashes", "audio_cnn", "lgbm_tabular")
TRAIN_SEED = SEED              # fold k uses TRAIN_SEED + k
# --- Keras models
EPOCHS = 30                    # the schedule's length (cosine decay to its end)
# share of a fold's training visits held out to pick the best epoch (and to keep a
# pseudo-label round only if it helps); 0 = the fixed schedule on every training row. Either
# way the fold's own rows, which it predicts out of fold, choose nothing
EARLY_STOPPING_FRACTION = 0.0
BATCH_SIZE = 32
LEARNING_RATE = 1e-3           # peak of the warm-up + cosine schedule (AdamW)
WEIGHT_DECAY = 1e-2
WARMUP_EPOCHS = 2
PATIENCE = 6                   # early stopping on the held-out visits (if any); best kept
HIDDEN_UNITS = 128
DROPOUT = 0.3
CONV_FILTERS = 16              # first conv layer's filters (audio CNN, 3D CNN); doubles per block
# class imbalance: the output bias starts at the class prior's logit; weighting positive
# cells on top of that hurt the nets on the demo but helped LightGBM, where rare classes get
# splits at all (bench/results/setting_experiments.csv: class_weighting)
CLASS_WEIGHTING = "none"       # Keras models: none or sqrt_inverse_frequency
# --- pseudo-labels (Keras models): 0 epochs = off
PSEUDO_LABEL_EPOCHS = 0        # extra epochs on train + confident test videos (soft targets)
PSEUDO_LABEL_MAX_UNCERTAINTY = 0.1   # a test video joins if every class has min(p, 1-p) <= this
PSEUDO_LABEL_LEARNING_RATE = 1e-4    # constant rate of the extra epochs
# --- 3D CNN on raw frames
CLIP_FRAMES = 8                # frames of r10's cache used per clip (evenly spaced)
CLIP_SIZE = 64                 # clip side in pixels (the competition's "micro" size)
# --- LightGBM (GBM_<NAME> is LightGBM's <name>)
GBM_N_ESTIMATORS = 400         # upper bound; early stopping picks the number
# share of a fold's training visits held out to find each class's rounds; the boosters are
# then refitted on every training row with that many (0 = GBM_N_ESTIMATORS rounds)
GBM_EARLY_STOPPING_FRACTION = 0.2
GBM_EARLY_STOPPING_ROUNDS = 30
GBM_LEARNING_RATE = 0.05
GBM_NUM_LEAVES = 15
GBM_MIN_CHILD_SAMPLES = 5
GBM_SUBSAMPLE = 0.8
GBM_SUBSAMPLE_FREQ = 1
GBM_COLSAMPLE_BYTREE = 0.5
GBM_REG_LAMBDA = 1.0
# rows a LightGBM dataset's bins are found from (LightGBM's default: 200000). While the bins
# are made, the sample costs 16 bytes a value (lgbm_tabular: 20 MB); 1,000 to 40,000 rows
# gave the same held-out loss (bench/results/bin_sample.csv)
GBM_BIN_CONSTRUCT_SAMPLE_CNT = 5000
GBM_CLASS_WEIGHTING = "sqrt_inverse_frequency"   # none or sqrt_inverse_frequency
# 0 = one thread below a03_training.LIGHTGBM_THREADED_ROWS training rows, where LightGBM's
# threading costs more than it saves (setting_experiments.csv: lightgbm_threads), else a00's
# default_threads() (run_all gives each parallel job its share of the cores)
GBM_N_JOBS = 0


def setting_values(values: dict, kind: str) -> dict:
    """This block's values (all of them, or those given on the command line) under the
    setting names of a model kind (a03_models.setting_names): a Keras model's `epochs` is
    EPOCHS, a LightGBM model's `learning_rate` is GBM_LEARNING_RATE."""
    if kind == "lightgbm":
        return {key[len("GBM_"):].lower(): value for key, value in values.items()
                if key.startswith("GBM_")}
    return {key.lower(): value for key, value in values.items() if not key.startswith("GBM_")}


def model_settings(spec, config: dict, command_line: dict) -> dict:
    """The settings `spec` trains with, from `config` (this block, as parse_config returns
    it) and `command_line` (the part of it given there); see the docstring."""
    from a03_models import resolved_settings
    return resolved_settings(spec, setting_values(config, spec.kind),
                             setting_values(command_line, spec.kind))


def holdout_fraction(spec, config: dict) -> float:
    """The share of training visits this model's folds hold out for model selection."""
    return config["GBM_EARLY_STOPPING_FRACTION"] if spec.kind == "lightgbm" \
        else config["EARLY_STOPPING_FRACTION"]


def job_config(spec, settings: dict, seed: int, early_stopping_fraction: float, labels_table,
               classes: list[str], folds) -> dict:
    """Everything that decides a model's weights; its hash names the trained state.

    Only the train rows enter it (their features' content digests, labels and folds), so
    test clips added or removed retrain nothing; with pseudo-labels the test rows' inputs
    enter too, since they are trained on.
    """
    from a03_models import input_digest
    names = labels_table["filename"].tolist()
    config = {"model": spec.name, "kind": spec.kind, "inputs": list(spec.inputs),
              "head": spec.head, "settings": settings, "seed": seed,
              "early_stopping_fraction": early_stopping_fraction,
              "train_inputs": input_digest(spec, names),
              "labels": digest_text([names, TableRows(labels_table[classes].to_numpy()),
                                     classes]),
              "folds": digest_text([folds.columns.tolist(), TableRows(folds, as_text=True)])}
    if spec.kind == "keras" and settings["pseudo_label_epochs"] > 0:
        test_names = load_submission_format(classes)["filename"].tolist()
        config["test_inputs"] = input_digest(spec, test_names) if test_names else ""
    return config


def changed_parts(previous: dict | None, config: dict) -> str:
    """Which parts of a model's config differ from those it was trained with."""
    if not previous:
        return "not trained yet"
    changed = [key for key in config if previous.get(key) != config[key]]
    return "changed: " + (", ".join(changed) if changed else "config")


def train_model(name: str, only_fold: int | None, force: bool, config: dict,
                command_line: dict) -> None:
    """Trains the folds of a model that are not up to date; `config` is this block (as
    parse_config returns it), `command_line` the part of it given on the command line."""
    from a03_models import fold_output, get_spec, load_inputs
    from a03_training import train_fold
    spec = get_spec(name)
    labels_table, classes = load_train_labels()
    folds = load_folds(labels_table["filename"])
    seed, holdout = config["TRAIN_SEED"], holdout_fraction(spec, config)
    job = job_config(spec, model_settings(spec, config, command_line), seed, holdout,
                     labels_table, classes, folds)
    hash_text = config_hash(job)
    folder = models_dir(name)
    all_folds = sorted(int(k) for k in folds["fold"].unique())
    if only_fold is not None and only_fold not in all_folds:
        raise SystemExit(f"r21: --fold {only_fold} is not in metadata/folds.csv (folds: "
                         f"{', '.join(map(str, all_folds))})")
    fold_numbers = all_folds if only_fold is None else [only_fold]
    previous = read_json(folder / "config.json")
    pending = []
    for fold in fold_numbers:
        trained = read_json(folder / f"fold{fold}.json") or {}
        if force:
            reason = "--force"
        elif not fold_output(spec, folder, fold).exists() or not trained:
            reason = "not trained yet"
        elif trained.get("config_hash") != hash_text:
            reason = changed_parts(previous if (previous or {}).get("config_hash") ==
                                   trained.get("config_hash") else None, job)
        else:
            reason = None
        log_outcome(f"r21 {name} fold {fold}", reason)
        if reason is not None:
            pending.append(fold)
    if not pending:
        return
    commit = git_commit()
    # identical in every fold job of this model, so concurrent jobs may all write it
    write_json({**job, "config_hash": hash_text, "classes": classes, "commit": commit},
               folder / "config.json")
    settings = job["settings"]
    inputs = load_inputs(spec, labels_table["filename"], settings)
    test_filenames, test_inputs = [], None
    if spec.kind == "keras" and settings["pseudo_label_epochs"] > 0:
        test_filenames = load_submission_format(classes)["filename"].tolist()
        test_inputs = load_inputs(spec, test_filenames, settings) if test_filenames else None
    labels = labels_table[classes].to_numpy(np.int8)    # 0/1: a byte a label
    row_folds = folds["fold"].to_numpy()
    # each row's visit as the rank of its name among the visits' names: inner_split draws
    # the same visits as from the names, and no Python string a row is held while training
    visit_names = folds["sequence"].astype(str).to_numpy() if "sequence" in folds.columns \
        else labels_table["filename"].to_numpy()
    visits = np.unique(visit_names, return_inverse=True)[1]
    del labels_table, folds, visit_names
    release_freed_memory()
    for fold in pending:
        train_rows = np.flatnonzero(row_folds != fold)
        validation_rows = np.flatnonzero(row_folds == fold)
        if holdout > 0:
            fit_local, stop_local = inner_split(visits[train_rows], holdout, seed + fold)
            fit_rows, stop_rows = train_rows[fit_local], train_rows[stop_local]
        else:   # a fixed schedule on every training row
            fit_rows, stop_rows = train_rows, train_rows[:0]
        prior = prior_probabilities(labels[train_rows])
        started = time.perf_counter()
        result = train_fold(spec, inputs, labels, fit_rows, stop_rows, folder, fold,
                            seed + fold, settings, prior, test_inputs)
        seconds = time.perf_counter() - started
        pseudo_labelled = [test_filenames[row] for row in result["pseudo_labelled_rows"]]
        write_csv(result["history"], folder / f"fold{fold}_history.csv")
        write_json({"model": name, "fold": int(fold), "config_hash": hash_text,
                    "early_stopping_loss": result["early_stopping_loss"],
                    "epochs_run": len(result["history"]) if spec.kind == "keras" else None,
                    "train_rows": len(train_rows), "early_stopping_rows": len(stop_rows),
                    "validation_rows": len(validation_rows),
                    "train_seconds": round(seconds, 1),
                    "pseudo_labelled_videos": pseudo_labelled, "commit": commit},
                   folder / f"fold{fold}.json")
        logger.info("r21 %s fold %d: trained on %d videos%s in %.0f s; log loss %.4f on the "
                    "%d held-out training videos that chose its epoch or rounds", name, fold,
                    len(fit_rows), f" + {len(pseudo_labelled)} pseudo-labelled"
                    if pseudo_labelled else "", seconds, result["early_stopping_loss"],
                    len(stop_rows))


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "list_jobs": (False, "print the (model, fold) jobs a plain run would do (for "
                             "run_all.py) and exit")})
    config = args.config
    # options given on the command line beat a model's own settings; the block does not
    command_line = {key: value for key, value in config.items()
                    if getattr(args, f"tunable_{key}", None) is not None}
    from a03_models import get_spec, required_extractors
    names = [args.model] if args.model else list(config["MODELS"])
    try:
        specs = [get_spec(name) for name in names]  # unknown names stop before any training
        for spec in specs:
            model_settings(spec, config, command_line)
    except ValueError as error:
        raise SystemExit(f"r21: {error}") from None
    if args.list_jobs:
        labels_table, _ = load_train_labels()
        folds = load_folds(labels_table["filename"])
        fold_numbers = sorted(int(k) for k in folds["fold"].unique()) if args.fold is None \
            else [args.fold]
        print_jobs([{"model": spec.name, "fold": fold, "extractors": required_extractors(spec),
                     "gpu": spec.kind == "keras"}
                    for spec in specs for fold in fold_numbers])
        return
    for name in names:
        train_model(name, args.fold, args.force, config, command_line)


if __name__ == "__main__":
    run_main(main)
