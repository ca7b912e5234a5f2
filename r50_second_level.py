"""r50 — second-level stackers over every first-level model, the metadata and the neighbours.

Reads   predictions/level1/<model>_oof.csv and _test_by_fold.npz (r31, r40),
        neighbors_{oof,test}.csv (r48), metadata/metadata.csv (r11),
        features/{hashes,audio_logmel}/ statistics (r12), metadata/folds.csv,
        input/train_labels.csv, input/submission_format.csv
Writes  predictions/level2/<stacker>_oof.csv    every train video once, by the stacker of the
                                                outer fold that did not see it
        predictions/level2/<stacker>_test.csv   every submission row: mean over fold stackers,
                                                each on the test rows through its own fold's
                                                level-1 models (as its validation rows)
        models/level2/<stacker>/fold<k>.*        the fitted stackers (LightGBM/XGBoost text or
                                                JSON, Keras .weights.h5)
        models/level2/<stacker>/importance.csv   feature importances (gain), for the report
        models/level2/<stacker>/config.json      settings, inputs, commit
        reports/scores.csv                      + one row per fold and one for the whole OOF
Cost    demo set (200 × ~600 features, 24 classes, 5 folds): LightGBM ~10 s, XGBoost ~40 s,
        MLP ~20 s on 2 cores. Grows about linearly with rows × features × rounds.

    python r50_second_level.py                       # every stacker in STACKERS
    python r50_second_level.py --stacker xgb         # one job (parallel-safe)
    python r50_second_level.py --stacker lgbm_no_neighbors   # ablation: without r48 features

Stackers: `lgbm` (one binary LightGBM per class), `xgb` (XGBoost with one binary logistic
output per class in one multi-output model: true multi-label, never softmax over classes),
`mlp` (Keras MLP with sigmoid outputs). A `_no_neighbors` suffix leaves out the r48
features, to measure what they are worth.

Every stacker starts from the level-1 blend (non-negative weights summing to one, fitted on
the outer fold's training rows) and learns a correction. Validation is the level-1 outer
folds: the stacker of fold k is fitted on the other folds' rows (their level-1 OOF
predictions as features) and predicts fold k. Early stopping uses an inner split of the
training rows (whole visits, never split); the GBMs are then refitted on all training rows
with the number of rounds found.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from a00_common import (SEED, append_scores, config_hash, data_dir, default_threads, git_commit,
                        inner_split, level1_dir, level2_dir, load_folds, load_submission_format,
                        load_train_labels, logger, metadata_dir, models_dir, parse_config,
                        predictions_dir, print_jobs, progress, run_main, set_seeds)
from a00_metric import fit_blend_weights, mean_log_loss, prediction_frame, prior_probabilities
from a00_io import (TableRows, atomic_path, digest_text, log_outcome, outdated_reason, read_stamp,
                    write_csv, write_json, write_stamp)
from a05_stacking import (FeatureTable, Standardizer, apply_stacker_fold, build_feature_table,
                          build_mlp, load_stacker_fold, models_with_tables, site_counts,
                          site_features)

STACKERS = ("lgbm", "xgb", "mlp")   # a plain run fits these
STACKER_SEED = SEED
INNER_VALIDATION_FRACTION = 0.2     # share of training visits used for early stopping
LEVEL1_MODELS = ("all",)            # first-level models used as features; "all" = every one
# --- LightGBM
LGBM_ROUNDS = 600                   # upper bound; early stopping picks the number
LGBM_LEARNING_RATE = 0.03
LGBM_NUM_LEAVES = 7
LGBM_MIN_CHILD_SAMPLES = 8
LGBM_FEATURE_FRACTION = 0.3
LGBM_LAMBDA_L2 = 10.0               # strong: with few positives a leaf must earn its weight
# --- XGBoost
XGB_ROUNDS = 600
XGB_LEARNING_RATE = 0.03
XGB_MAX_DEPTH = 3
XGB_COLSAMPLE = 0.3
# --- GBMs
EARLY_STOPPING_ROUNDS = 50
# --- site features: per camera, its class frequencies among the train clips outside a row's
# own fold (and the outer fold), smoothed toward the prior; a `_no_site` stacker leaves them out
SITE_FEATURES = True
SITE_SMOOTHING = 10.0               # clips' worth of prior mixed into a camera's frequencies
THREADS = 0                         # per job; 0 = TRAPSTACK_THREADS (run_all.py: cores/workers)
                                    # or every core
# --- MLP
MLP_HIDDEN_UNITS = 256
MLP_DROPOUT = 0.3
MLP_EPOCHS = 150
MLP_PATIENCE = 15
MLP_LEARNING_RATE = 1e-3
MLP_WEIGHT_DECAY = 1e-2
MLP_BATCH_SIZE = 64

_BASE_STACKERS = ("lgbm", "xgb", "mlp")
_NO_NEIGHBORS_SUFFIX = "_no_neighbors"
_NO_SITE_SUFFIX = "_no_site"


def parse_stacker(name: str) -> tuple[str, bool, bool]:
    """'xgb_no_neighbors' -> ('xgb', False, True): base, neighbour features, site features
    (each ablation a suffix, in any order); unknown names stop with the known ones."""
    base, use_neighbors, use_site = name, True, True
    while base.endswith((_NO_NEIGHBORS_SUFFIX, _NO_SITE_SUFFIX)):
        if base.endswith(_NO_SITE_SUFFIX):
            base, use_site = base[:-len(_NO_SITE_SUFFIX)], False
        else:
            base, use_neighbors = base[:-len(_NO_NEIGHBORS_SUFFIX)], False
    if base not in _BASE_STACKERS:
        raise SystemExit(f"r50: unknown stacker {name!r}; known: "
                         f"{', '.join(_BASE_STACKERS)} (each also with {_NO_NEIGHBORS_SUFFIX} "
                         f"and/or {_NO_SITE_SUFFIX})")
    return base, use_neighbors, use_site


def stacker_settings(base: str) -> dict:
    common = {"seed": STACKER_SEED, "inner_validation_fraction": INNER_VALIDATION_FRACTION}
    if base == "lgbm":
        return {**common, "rounds": LGBM_ROUNDS, "learning_rate": LGBM_LEARNING_RATE,
                "num_leaves": LGBM_NUM_LEAVES, "min_child_samples": LGBM_MIN_CHILD_SAMPLES,
                "feature_fraction": LGBM_FEATURE_FRACTION, "lambda_l2": LGBM_LAMBDA_L2,
                "early_stopping_rounds": EARLY_STOPPING_ROUNDS}
    if base == "xgb":
        return {**common, "rounds": XGB_ROUNDS, "learning_rate": XGB_LEARNING_RATE,
                "max_depth": XGB_MAX_DEPTH, "colsample": XGB_COLSAMPLE,
                "early_stopping_rounds": EARLY_STOPPING_ROUNDS}
    return {**common, "hidden_units": MLP_HIDDEN_UNITS, "dropout": MLP_DROPOUT,
            "epochs": MLP_EPOCHS, "patience": MLP_PATIENCE, "learning_rate": MLP_LEARNING_RATE,
            "weight_decay": MLP_WEIGHT_DECAY, "batch_size": MLP_BATCH_SIZE}


# ----------------------------------------------------------------------------- features

def level1_models() -> list[str]:
    found = models_with_tables(level1_dir(), "oof")
    if "all" in LEVEL1_MODELS:
        return found
    missing = [m for m in LEVEL1_MODELS if m not in found]
    if missing:
        raise SystemExit(f"r50: no level-1 predictions for {missing}: run r31 and r40 for them")
    return list(LEVEL1_MODELS)


# ----------------------------------------------------------------------------- stackers

def fit_lightgbm(table: FeatureTable, rows, labels, fit_rows, stop_rows, settings, prior,
                 classes):
    """Per class, a binary booster on its own columns that corrects the base logit: best
    round on the inner split, then a refit on all training rows with that many rounds."""
    import lightgbm
    parameters = {"objective": "binary", "learning_rate": settings["learning_rate"],
                  "num_leaves": settings["num_leaves"],
                  "min_data_in_leaf": settings["min_child_samples"],
                  "feature_fraction": settings["feature_fraction"], "bagging_fraction": 0.8,
                  "bagging_freq": 1, "lambda_l2": settings["lambda_l2"], "verbose": -1,
                  "num_threads": settings["threads"], "seed": settings["seed"],
                  "deterministic": True, "force_row_wise": True}
    matrix, base = table.matrix()[rows], table.base_logits[rows]
    all_rows = np.concatenate([fit_rows, stop_rows])
    models = []
    for column, class_name in enumerate(classes):
        target = labels[:, column]
        columns = table.class_columns(class_name)
        if target[all_rows].min() == target[all_rows].max():
            models.append({"constant": float(prior[column]), "columns": columns.tolist()})
            continue
        features = matrix[:, columns]
        train_set = lightgbm.Dataset(features[fit_rows], target[fit_rows],
                                     init_score=base[fit_rows, column])
        stop_set = lightgbm.Dataset(features[stop_rows], target[stop_rows],
                                    init_score=base[stop_rows, column], reference=train_set)
        booster = lightgbm.train(parameters, train_set, settings["rounds"],
                                 valid_sets=[stop_set],
                                 callbacks=[lightgbm.early_stopping(
                                     settings["early_stopping_rounds"], verbose=False)])
        rounds = max(booster.best_iteration or settings["rounds"], 1)
        refit = lightgbm.train(parameters, lightgbm.Dataset(
            features[all_rows], target[all_rows], init_score=base[all_rows, column]), rounds)
        models.append({"booster": refit.model_to_string(), "rounds": rounds,
                       "columns": columns.tolist()})
    return models


def importance_lightgbm(models, count: int) -> np.ndarray:
    import lightgbm
    total = np.zeros(count)
    for entry in models:
        if "booster" in entry:
            gains = lightgbm.Booster(model_str=entry["booster"]).feature_importance("gain")
            np.add.at(total, entry["columns"], gains)
    return total


def fit_xgboost(table: FeatureTable, rows, labels, fit_rows, stop_rows, settings) -> tuple:
    """One multi-output XGBoost: a binary logistic output per class (true multi-label),
    boosted from the base logits. Returns (model, rounds per class).

    Each class keeps its own number of rounds, the best on the inner split (0 = the base
    alone): one early stop on the mean loss lets an easy class run on while a class with
    nothing to learn overfits. Training stops once every class has gone
    `early_stopping_rounds` without a new best; the model is then refitted on all training
    rows.
    """
    import xgboost
    matrix, base = table.matrix()[rows], table.base_logits[rows]
    parameters = dict(objective="binary:logistic", tree_method="hist",
                      learning_rate=settings["learning_rate"], max_depth=settings["max_depth"],
                      subsample=0.8, colsample_bytree=settings["colsample"], min_child_weight=1,
                      reg_lambda=1.0, n_jobs=settings["threads"], random_state=settings["seed"])
    scanner = RoundScanner(matrix[stop_rows], base[stop_rows], labels[stop_rows],
                           settings["early_stopping_rounds"])

    class PerClassEarlyStopping(xgboost.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log) -> bool:
            return scanner.add_round(model, epoch)

    model = xgboost.XGBClassifier(n_estimators=settings["rounds"],
                                  callbacks=[PerClassEarlyStopping()], **parameters)
    model.fit(matrix[fit_rows], labels[fit_rows], base_margin=base[fit_rows], verbose=False)
    all_rows = np.concatenate([fit_rows, stop_rows])
    refit = xgboost.XGBClassifier(n_estimators=max(int(scanner.best_rounds.max()), 1),
                                  **parameters)
    refit.fit(matrix[all_rows], labels[all_rows], base_margin=base[all_rows], verbose=False)
    return refit, scanner.best_rounds


class RoundScanner:
    """Follows the log loss of every class on held-out rows as boosting rounds are added,
    one round's trees at a time (linear cost), and keeps each class's best round count."""

    def __init__(self, features, base, labels, patience: int):
        import xgboost
        # with a base margin given, XGBoost ignores base_score: each slice adds only its trees
        self.matrix = xgboost.DMatrix(features, base_margin=np.zeros_like(base))
        self.labels, self.patience = labels, patience
        self.margin = base.astype(np.float64).copy()
        self.best_loss = _column_log_loss(labels, self.margin)
        self.best_rounds = np.zeros(labels.shape[1], dtype=int)

    def add_round(self, booster, round_index: int) -> bool:
        """Adds round `round_index`'s trees; True once no class has improved for `patience`."""
        self.margin += booster[round_index:round_index + 1].predict(
            self.matrix, output_margin=True).reshape(self.margin.shape)
        loss = _column_log_loss(self.labels, self.margin)
        better = loss < self.best_loss - 1e-12
        self.best_loss[better], self.best_rounds[better] = loss[better], round_index + 1
        return bool((round_index + 1 - self.best_rounds >= self.patience).all())


def best_rounds_per_class(booster, features, base, labels, patience: int) -> np.ndarray:
    """Per class, the number of rounds of a trained booster with the lowest log loss on
    (features, labels); 0 when no round beats the base."""
    scanner = RoundScanner(features, base, labels, patience)
    for round_index in range(booster.num_boosted_rounds()):
        if scanner.add_round(booster, round_index):
            break
    return scanner.best_rounds


def _column_log_loss(labels: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Mean binary log loss per column, from logits (stable for large margins)."""
    return (np.logaddexp(0.0, margin) - labels * margin).mean(axis=0)


def fit_mlp(features, base, labels, fit_rows, stop_rows, settings, weights_path):
    """Trains the MLP with early stopping on the inner split; the best epoch's weights kept."""
    import keras
    keras.backend.clear_session()
    keras.utils.set_random_seed(settings["seed"])
    model = build_mlp(features.shape[1], labels.shape[1], settings)
    steps = max(int(np.ceil(len(fit_rows) / settings["batch_size"])), 1) * settings["epochs"]
    schedule = keras.optimizers.schedules.CosineDecay(settings["learning_rate"], steps,
                                                      alpha=0.05)
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=settings["weight_decay"]),
                  loss="binary_crossentropy")
    model.fit({"features": features[fit_rows], "base_logits": base[fit_rows]}, labels[fit_rows],
              batch_size=settings["batch_size"], epochs=settings["epochs"], verbose=0,
              shuffle=True,
              validation_data=({"features": features[stop_rows],
                                "base_logits": base[stop_rows]}, labels[stop_rows]),
              callbacks=[keras.callbacks.EarlyStopping(patience=settings["patience"],
                                                       restore_best_weights=True)])
    with atomic_path(weights_path) as temporary:
        model.save_weights(str(temporary))
    return model


# ----------------------------------------------------------------------------- one stacker

def run_stacker(name: str, force: bool) -> None:
    base, use_neighbors, use_site = parse_stacker(name)
    settings = {**stacker_settings(base), "site_features": SITE_FEATURES and use_site,
                "site_smoothing": SITE_SMOOTHING}
    labels_table, classes = load_train_labels()
    submission = load_submission_format(classes)
    folds = load_folds(labels_table["filename"])
    models = level1_models()
    if not models:
        raise SystemExit("r50: no level-1 predictions: run r31 and r40 first")
    from a03_models import tabular_digest
    train_names = labels_table["filename"].tolist()
    test_names = submission["filename"].tolist()
    # every input: the level-1 and neighbour tables (their stamps), the labels, the folds,
    # the metadata and statistics rows of every video, the test rows, the settings
    config = {"stacker": name, "base": base, "use_neighbors": use_neighbors,
              "settings": settings,
              "level1": {m: [read_stamp(level1_dir() / f"{m}_{part}.csv")
                             for part in ("oof", "test")] for m in models},
              "neighbors": read_stamp(predictions_dir() / "neighbors_oof.csv")
              if use_neighbors else None,
              "labels": digest_text([train_names, classes,
                                     TableRows(labels_table[classes].to_numpy())]),
              "folds": digest_text(TableRows(folds, as_text=True)),
              "test_rows": digest_text(test_names),
              "tabular": tabular_digest(train_names + test_names)}
    stamp = config_hash(config)
    oof_path, test_path = level2_dir() / f"{name}_oof.csv", level2_dir() / f"{name}_test.csv"
    outputs = [oof_path, test_path, oof_path.with_suffix(".json")]
    reason = outdated_reason(outputs, config, force)
    log_outcome(f"r50 {name}", reason)
    if reason is None:
        return
    set_seeds(STACKER_SEED)
    # threads change speed, not results, so they stay out of the stamp
    settings = {**settings, "threads": THREADS or default_threads()}
    train_table = build_feature_table("train", labels_table["filename"], classes, models,
                                      use_neighbors, settings["site_features"])
    fold_numbers = sorted(int(k) for k in np.unique(folds["fold"]))
    # test rows through each outer fold's view, as that fold's validation rows (a05)
    test_tables = {fold: build_feature_table("test", submission["filename"], classes, models,
                                             use_neighbors, settings["site_features"], fold)
                   for fold in fold_numbers}
    feature_names = train_table.names
    labels = labels_table[classes].to_numpy(np.float32)
    fold_of_row = folds["fold"].to_numpy()
    sequences = folds["sequence"].astype(str).to_numpy() if "sequence" in folds.columns \
        else labels_table["filename"].to_numpy()
    folder = models_dir("level2") / name
    if settings["site_features"]:
        metadata = pd.read_csv(metadata_dir() / "metadata.csv", dtype=str,
                               keep_default_na=False).set_index("filename")
        train_cameras = metadata.loc[train_names, "camera"].to_numpy()
        test_cameras = metadata.loc[test_names, "camera"].to_numpy()
        counts = site_counts(train_cameras, fold_of_row, labels, classes)
        # what r80 needs for new clips' site columns: counts per camera and fold
        write_csv(counts, folder / "site_counts.csv")
    oof = np.full(labels.shape, np.nan)
    test_predictions, importance, scores = [], np.zeros(len(feature_names)), []
    base_weights = []
    test_rows = np.arange(len(submission))
    for fold in progress(fold_numbers, desc=f"r50 {name} folds", unit="fold"):
        train_rows = np.flatnonzero(fold_of_row != fold)
        validation_rows = np.flatnonzero(fold_of_row == fold)
        fit_local, stop_local = inner_split(sequences[train_rows],
                                            settings["inner_validation_fraction"],
                                            STACKER_SEED + fold)
        prior = prior_probabilities(labels[train_rows])
        # the base every stacker corrects: the level-1 blend whose weights are fitted on
        # this outer fold's training rows only, so weak models do not dilute it
        blend_weights = fit_blend_weights(train_table.level1[:, train_rows], labels[train_rows])
        test_table = test_tables[fold]
        train_table.set_base(blend_weights)
        test_table.set_base(blend_weights)
        base_weights.append([fold, blend_weights.tolist()])
        if settings["site_features"]:
            # made of labels, so per outer fold: a train row sees the train clips outside its
            # own fold and this one; validation and test rows, those outside this fold
            train_table.set_site(site_features(
                train_cameras, [{int(own), fold} for own in fold_of_row], counts, classes,
                SITE_SMOOTHING))
            test_table.set_site(site_features(test_cameras, [{fold}] * len(test_cameras),
                                              counts, classes, SITE_SMOOTHING))
        if base == "lgbm":
            fitted = fit_lightgbm(train_table, train_rows, labels[train_rows], fit_local,
                                  stop_local, settings, prior, classes)
            write_json(fitted, folder / f"fold{fold}.lightgbm.json")
            importance += importance_lightgbm(fitted, len(feature_names))
        elif base == "xgb":
            fitted = fit_xgboost(train_table, train_rows, labels[train_rows], fit_local,
                                 stop_local, settings)
            with atomic_path(folder / f"fold{fold}.xgboost.json") as temporary:
                fitted[0].save_model(str(temporary))  # the temp name keeps the .json ending
            write_json(dict(zip(classes, fitted[1].tolist())),
                       folder / f"fold{fold}.xgboost_rounds.json")
            gains = fitted[0].get_booster().get_score(importance_type="total_gain")
            importance += np.array([gains.get(f"f{i}", 0.0) for i in range(len(feature_names))])
        else:
            standardize = Standardizer(train_table.matrix()[train_rows])
            write_json(standardize.as_dict(), folder / f"fold{fold}.standardizer.json")
            fit_mlp(standardize(train_table.matrix()[train_rows]),
                    train_table.base_logits[train_rows].astype(np.float32),
                    labels[train_rows], fit_local, stop_local, settings,
                    folder / f"fold{fold}.weights.h5")
        # predictions come from the saved files, as r80 makes them for new clips from a
        # stack: what the chain scores is what a stack reproduces
        saved = load_stacker_fold(base, folder, fold, classes, len(feature_names), settings)
        oof[validation_rows] = apply_stacker_fold(base, saved, train_table, validation_rows)
        if len(test_rows):
            test_predictions.append(apply_stacker_fold(base, saved, test_table, test_rows))
        scores.append({"stage": "r50_level2", "model": name, "fold": str(fold),
                       "log_loss": mean_log_loss(labels[validation_rows], oof[validation_rows]),
                       "rows": len(validation_rows), "config_hash": stamp})
    if np.isnan(oof).any():
        raise SystemExit(f"r50 {name}: some train videos got no prediction (folds changed?)")
    oof = np.clip(oof, 0.0, 1.0)
    test = np.clip(np.mean(test_predictions, axis=0), 0.0, 1.0) if test_predictions \
        else np.zeros((0, len(classes)))
    loss = mean_log_loss(labels, oof)
    scores.append({"stage": "r50_level2", "model": name, "fold": "all", "log_loss": loss,
                   "rows": len(labels), "config_hash": stamp})
    if base != "mlp":  # the MLP has no cheap, honest importance; the report says so
        importance_table = pd.DataFrame({"feature": feature_names,
                                         "importance": importance / max(len(fold_numbers), 1)})
        importance_table = importance_table.sort_values("importance", ascending=False)
        write_csv(importance_table, folder / "importance.csv")
    write_json({**config, "stamp": stamp, "features": len(feature_names),
                # what r80 needs to apply the stacker to new clips: the level-1 models in
                # column order, the feature names, each fold's exact blend weights
                "level1_models": models, "feature_names": feature_names,
                "fold_base_weights": base_weights,
                "commit": git_commit()}, folder / "config.json")
    write_csv(prediction_frame(labels_table["filename"], classes, oof), oof_path)
    write_csv(prediction_frame(submission["filename"], classes, test), test_path)
    write_json({"stamp": stamp, "log_loss": loss}, oof_path.with_suffix(".json"))
    write_stamp(outputs, config)
    append_scores(scores)
    logger.info("r50 %s: OOF log loss %.5f with %d features from %d level-1 model(s)%s -> %s",
                name, loss, len(feature_names), len(models),
                ("" if use_neighbors else " (no neighbour features)")
                + ("" if settings["site_features"] else " (no site features)"), oof_path)


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "stacker": (None, "fit one stacker (default: every one in STACKERS)"),
        "list_jobs": (False, "print the jobs a plain run would do (for run_all.py) and exit")})
    names = [args.stacker or args.model] if (args.stacker or args.model) else list(STACKERS)
    for name in names:
        parse_stacker(name)
    if args.list_jobs:
        print_jobs([{"stacker": name, "gpu": parse_stacker(name)[0] == "mlp"} for name in names])
        return
    logger.info("r50: data folder %s", data_dir())
    for name in names:
        run_stacker(name, args.force)


if __name__ == "__main__":
    run_main(main)
