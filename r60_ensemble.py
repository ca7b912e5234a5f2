"""r60 — the final ensemble, the submission, the score table and the report.

Reads   predictions/level2/<stacker>_{oof,test}.csv (r50) — or the level-1 tables when no
        stacker ran — predictions/level1/*_oof.csv, metadata/folds.csv,
        input/train_labels.csv, input/submission_format.csv,
        demo_truth/test_labels.csv (only if present: the demo's hidden test labels)
Writes  submissions/submission.csv     same rows, order and columns as submission_format.csv
        predictions/ensemble_oof.csv   the ensemble's OOF with the same weights and clipping
        predictions/ensemble_test.csv  the ensemble's test predictions (= the submission)
        reports/ensemble.json          weights, clipping, nested-CV estimate
        reports/summary.csv            the printed table: prior, every model, the ensemble
        reports/adversarial_validation.csv  per group of stacker inputs (metadata, each
                                       level-1 model, their blend, the neighbours): the AUC
                                       of a classifier telling test rows from train rows
        reports/adversarial_inputs.csv the five single inputs that tell them apart best
        reports/scores.csv             + the ensemble's rows
        reports/report.html            one self-contained page (a04_report)
Cost    seconds.

    python r60_ensemble.py
    python r60_ensemble.py --weights_mode per_class --force

Weights are non-negative and sum to one (per class as an option), fitted on the OOF tables
by minimising the mean log loss of the weighted mean probability. "auto" fits global and
per-class weights inside the folds (fit on K-1 folds, score the held-out fold) and keeps
per-class weights only if that nested estimate is better, so per-class weights must earn
their extra parameters. The probability clipping is the best on that nested blend.

The nested-CV estimate repeats all of it (weights, the per-class choice, the clipping)
without each fold in turn and scores the fold: no choice it reports on saw the rows it is
scored on.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from a00_common import (SEED, append_scores, data_dir, default_threads, input_dir, level1_dir,
                        level2_dir, load_folds, load_submission_format, load_train_labels, logger,
                        metadata_dir, parse_config, predictions_dir, reports_dir, run_main,
                        submissions_dir)
from a00_metric import (check_prediction_table, fit_blend_weights, mean_log_loss, prediction_frame,
                        prior_probabilities)
from a00_io import (file_digest, log_outcome, optional_file_digest, outdated_reason, stamp_of,
                    write_csv, write_json, write_stamp)
from a05_stacking import blend, models_with_tables

ENSEMBLE_LEVEL = "level2"      # which tables are blended: "level2" (stackers) or "level1"
WEIGHTS_MODE = "auto"          # "global", "per_class", or "auto" (per class only if it wins
                               # in the nested folds)
CLIP_CANDIDATES = (1e-15, 1e-6, 1e-5, 1e-4, 1e-3, 3e-3, 1e-2)   # chosen on OOF
EXCLUDE_MODELS = ("*_no_neighbors", "*_no_site")   # ablations are scored but not blended
REPORT = True                  # rebuild reports/report.html
ADVERSARIAL_VALIDATION = True  # tell train rows from test rows on the stackers' inputs
ADVERSARIAL_MAX_ROWS = 20000   # rows of each split the adversarial classifiers see (sampled)
ADVERSARIAL_ROUNDS = 100       # boosting rounds of each adversarial classifier


# ----------------------------------------------------------------------------- weights

def fit_class_weights(predictions: np.ndarray, labels: np.ndarray, per_class: bool) -> np.ndarray:
    """(classes, models) weights: one row repeated, or one fit per class."""
    classes = labels.shape[1]
    if not per_class:
        return np.tile(fit_blend_weights(predictions, labels), (classes, 1))
    return np.stack([fit_blend_weights(predictions[:, :, [c]], labels[:, [c]])
                     for c in range(classes)])


def nested_estimate(predictions, labels, fold_of_row, per_class: bool) -> tuple:
    """Out-of-fold predictions of the weighting itself: fit on K-1 folds, apply to the rest."""
    output = np.zeros(labels.shape)
    for fold in np.unique(fold_of_row):
        inside, outside = fold_of_row != fold, fold_of_row == fold
        weights = fit_class_weights(predictions[:, inside], labels[inside], per_class)
        output[outside] = blend(predictions[:, outside], weights)
    return mean_log_loss(labels, output), output


def choose_clip(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    losses = [mean_log_loss(labels, np.clip(probabilities, c, 1 - c)) for c in CLIP_CANDIDATES]
    best = int(np.argmin(losses))
    return float(CLIP_CANDIDATES[best]), float(losses[best])


def choose_ensemble(predictions, labels, fold_of_row, mode: str) -> dict:
    """Every choice of the ensemble, from these rows alone: global or per-class weights (with
    "auto", per class only if its nested loss over these rows' folds is lower), the clipping
    (best on the nested blend, so it is chosen on predictions the weights did not see), and
    the weights refitted on all these rows."""
    choice = {"nested_global_log_loss": np.nan, "nested_per_class_log_loss": np.nan}
    if len(np.unique(fold_of_row)) < 2:   # nothing to nest in: in-sample choices
        per_class = mode == "per_class"
        weights = fit_class_weights(predictions, labels, per_class)
        clip, _ = choose_clip(blend(predictions, weights), labels)
        return {**choice, "per_class": per_class, "weights": weights, "clip": clip}
    nested = {}
    for per_class in {"global": [False], "per_class": [True], "auto": [False, True]}[mode]:
        loss, nested[per_class] = nested_estimate(predictions, labels, fold_of_row, per_class)
        choice["nested_per_class_log_loss" if per_class else "nested_global_log_loss"] = loss
    per_class = mode == "per_class" or (mode == "auto" and choice["nested_per_class_log_loss"]
                                        < choice["nested_global_log_loss"])
    clip, _ = choose_clip(nested[per_class], labels)
    return {**choice, "per_class": per_class, "clip": clip,
            "weights": fit_class_weights(predictions, labels, per_class)}


def nested_ensemble_estimate(predictions, labels, fold_of_row, mode: str) -> tuple:
    """The honest estimate of the whole ensemble step: for each fold k, every choice of
    `choose_ensemble` (weights, per class or global, clipping) is made without fold k's rows
    and applied to them. Returns (loss, out-of-fold predictions)."""
    output = np.zeros(labels.shape)
    for fold in np.unique(fold_of_row):
        inside, outside = fold_of_row != fold, fold_of_row == fold
        choice = choose_ensemble(predictions[:, inside], labels[inside], fold_of_row[inside],
                                 mode)
        output[outside] = np.clip(blend(predictions[:, outside], choice["weights"]),
                                  choice["clip"], 1 - choice["clip"])
    return mean_log_loss(labels, output), output


# ----------------------------------------------------------------------------- inputs

def tabular_stamp(filenames) -> str | None:
    """The digest of the metadata and statistics rows the adversarial classifiers read; None
    when a row is missing upstream (the prediction tables' check below then names it)."""
    from a03_models import tabular_digest
    try:
        return tabular_digest(filenames)
    except ValueError:
        return None


def test_drawn_by_visit(train_names, test_names) -> bool:
    """Whether the test clips look drawn by whole visits: fewer than half of them share a
    visit (metadata.csv's `sequence`, over all videos) with a train clip."""
    metadata = pd.read_csv(metadata_dir() / "metadata.csv", dtype=str, keep_default_na=False)
    if "sequence" not in metadata.columns:
        return True
    sequence = metadata.set_index("filename")["sequence"]
    train_visits = set(sequence.reindex(list(train_names)).dropna())
    shared = sequence.reindex(list(test_names)).isin(train_visits)
    return bool(shared.mean() < 0.5)


def adversarial_tables(train_names, test_names, classes) -> tuple:
    """The stackers' inputs (every level-1 model, the neighbour features when r48 ran) of
    train and test rows, judged by `a05_adversarial.adversarial_validation`."""
    from a05_adversarial import adversarial_validation
    from a05_stacking import build_feature_table
    models = models_with_tables(level1_dir(), "oof")
    use_neighbors = (predictions_dir() / "neighbors_oof.csv").exists() and \
        (predictions_dir() / "neighbors_test.csv").exists()
    train = build_feature_table("train", train_names, classes, models, use_neighbors)
    # each test row through one fold's view, drawn at random: a stacker of outer fold k
    # sees the test rows through view k, as it sees its validation rows
    fold_numbers = sorted(int(k) for k in np.unique(load_folds(train_names)["fold"]))
    views = {fold: build_feature_table("test", test_names, classes, models, use_neighbors,
                                       fold=fold).frame for fold in fold_numbers}
    drawn = np.random.default_rng(SEED).choice(fold_numbers, len(test_names))
    test = views[fold_numbers[0]].copy()
    for fold in fold_numbers[1:]:
        test.loc[drawn == fold] = views[fold].loc[drawn == fold].to_numpy()
    metadata = pd.read_csv(metadata_dir() / "metadata.csv", dtype=str,
                           keep_default_na=False).set_index("filename")

    def visits(names) -> np.ndarray:
        """Each clip's visit; a clip without one is a visit of its own."""
        names = list(names)
        known = metadata["sequence"].reindex(names).fillna("").to_numpy() \
            if "sequence" in metadata.columns else np.full(len(names), "")
        return np.where(known == "", np.array(names, dtype=object), known)

    return adversarial_validation(train.frame, test, visits(train_names), visits(test_names),
                                  test_drawn_by_visit(train_names, test_names), seed=SEED,
                                  max_rows=ADVERSARIAL_MAX_ROWS, rounds=ADVERSARIAL_ROUNDS,
                                  threads=default_threads())


def _excluded(name: str) -> bool:
    import fnmatch
    return any(fnmatch.fnmatch(name, pattern) for pattern in EXCLUDE_MODELS)


def read_predictions(folder, name, filenames, classes, suffix) -> np.ndarray:
    path = folder / f"{name}_{suffix}.csv"
    table = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False, na_values=[""])
    check_prediction_table(table, filenames, classes, str(path))
    return table[classes].to_numpy(np.float64)


def hidden_test_labels(filenames, classes) -> np.ndarray | None:
    """The demo's hidden test labels (r00 writes them outside input/), when present."""
    path = data_dir() / "demo_truth" / "test_labels.csv"
    if not path.exists() or len(filenames) == 0:
        return None
    truth = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False)
    if set(filenames) - set(truth["filename"]) or not set(classes) <= set(truth.columns):
        return None
    return truth.set_index("filename").loc[list(filenames), classes].to_numpy(np.float64)


def fold_prior_oof(labels: np.ndarray, fold_of_row: np.ndarray) -> np.ndarray:
    """The class-prior baseline, out of fold: each fold gets the other folds' frequencies."""
    output = np.zeros(labels.shape)
    for fold in np.unique(fold_of_row):
        inside = fold_of_row != fold
        output[~inside] = prior_probabilities(labels[inside])
    return output


# ----------------------------------------------------------------------------- table

def score_table(labels, test_labels, fold_of_row, classes, train_names, test_names) -> list:
    """Rows of the summary: the prior baseline and every level-1 and level-2 model."""
    rows = [{"level": "baseline", "model": "class prior",
             "oof_log_loss": mean_log_loss(labels, fold_prior_oof(labels, fold_of_row)),
             "test_log_loss": mean_log_loss(test_labels, np.tile(prior_probabilities(labels),
                                                                 (len(test_labels), 1)))
             if test_labels is not None else np.nan}]
    for level, folder in (("level1", level1_dir()), ("level2", level2_dir())):
        for name in models_with_tables(folder, "oof"):
            oof = read_predictions(folder, name, train_names, classes, "oof")
            test = read_predictions(folder, name, test_names, classes, "test")
            rows.append({"level": level, "model": name,
                         "oof_log_loss": mean_log_loss(labels, oof),
                         "test_log_loss": mean_log_loss(test_labels, test)
                         if test_labels is not None else np.nan})
    return rows


def print_table(summary: pd.DataFrame) -> str:
    has_test = summary["test_log_loss"].notna().any()
    header = f"{'level':<10}{'model':<34}{'OOF log loss':>14}" + \
        (f"{'test (hidden labels)':>22}" if has_test else "")
    lines = [header, "-" * len(header)]
    for row in summary.itertuples():
        line = f"{row.level:<10}{row.model:<34}{row.oof_log_loss:>14.5f}"
        if has_test:
            line += f"{row.test_log_loss:>22.5f}" if np.isfinite(row.test_log_loss) else \
                f"{'':>22}"
        lines.append(line)
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# ----------------------------------------------------------------------------- main

def main() -> None:
    args = parse_config(globals(), __doc__)
    if WEIGHTS_MODE not in ("global", "per_class", "auto"):
        raise SystemExit(f"--weights_mode must be global, per_class or auto, got {WEIGHTS_MODE!r}")
    labels_table, classes = load_train_labels()
    submission_format = load_submission_format(classes)
    train_names, test_names = labels_table["filename"], submission_format["filename"]
    folds = load_folds(train_names)
    fold_of_row = folds["fold"].to_numpy()
    labels = labels_table[classes].to_numpy(np.float64)

    folder = level2_dir() if ENSEMBLE_LEVEL == "level2" else level1_dir()
    members = [name for name in models_with_tables(folder, "oof") if not _excluded(name)]
    if not members and ENSEMBLE_LEVEL == "level2":
        logger.warning("r60: no level-2 predictions (r50 did not run): blending level-1 models")
        folder = level1_dir()
        members = [name for name in models_with_tables(folder, "oof") if not _excluded(name)]
    if not members:
        raise SystemExit("r60: no predictions to blend: run r31/r40 (and r50) first")
    # every table it reads (level 1 for the report's rows too), the labels, the folds, the
    # test rows asked for, the demo's hidden labels, the settings, the report's other inputs
    inputs = {"members": members, "settings": args.config,
              "tables": {path.name: file_digest(path) for directory in (level1_dir(), level2_dir())
                         if directory.is_dir()
                         for path in sorted([*directory.glob("*.csv"), *directory.glob("*.npz")])},
              "neighbors": {name: optional_file_digest(predictions_dir() / name)
                            for name in ("neighbors_oof.csv", "neighbors_test.csv")},
              # the metadata and statistics rows the adversarial classifiers read
              "tabular": tabular_stamp(list(train_names) + list(test_names))
              if ADVERSARIAL_VALIDATION and len(test_names) else None,
              "labels": file_digest(input_dir() / "train_labels.csv"),
              "submission_format": file_digest(input_dir() / "submission_format.csv"),
              "folds": file_digest(metadata_dir() / "folds.csv"),
              # what the report shows besides the scores
              "metadata": optional_file_digest(metadata_dir() / "metadata.csv"),
              "failures": optional_file_digest(data_dir() / "cache" / "failures.csv"),
              "hidden_labels": optional_file_digest(data_dir() / "demo_truth" /
                                                    "test_labels.csv")}
    stamp = stamp_of(inputs)
    outputs = [submissions_dir() / "submission.csv", predictions_dir() / "ensemble_oof.csv",
               predictions_dir() / "ensemble_test.csv", reports_dir() / "summary.csv",
               reports_dir() / "ensemble.json"] + \
        ([reports_dir() / "report.html"] if REPORT else []) + \
        ([reports_dir() / "adversarial_validation.csv", reports_dir() / "adversarial_inputs.csv"]
         if ADVERSARIAL_VALIDATION else [])
    reason = outdated_reason(outputs, inputs, args.force)
    log_outcome("r60", reason)
    if reason is None:
        print_table(pd.read_csv(reports_dir() / "summary.csv"))
        print(f"submission: {outputs[0]}", flush=True)
        return
    try:
        oof = np.stack([read_predictions(folder, name, train_names, classes, "oof")
                        for name in members])
        test = np.stack([read_predictions(folder, name, test_names, classes, "test")
                         for name in members])
    except ValueError as error:
        # a table made for other rows: never blend it into a submission that looks right
        raise SystemExit(f"r60: {error}; rerun the chain (run_all.py) so every stage "
                         f"covers input/") from None

    choice = choose_ensemble(oof, labels, fold_of_row, WEIGHTS_MODE)
    per_class, class_weights, clip = choice["per_class"], choice["weights"], choice["clip"]
    ensemble_oof = np.clip(blend(oof, class_weights), clip, 1 - clip)
    ensemble_test = np.clip(blend(test, class_weights), clip, 1 - clip) if len(test_names) \
        else np.zeros((0, len(classes)))
    clipped_loss = mean_log_loss(labels, ensemble_oof)
    nested_loss, _ = nested_ensemble_estimate(oof, labels, fold_of_row, WEIGHTS_MODE)

    submission = prediction_frame(test_names, classes, ensemble_test)
    try:
        check_prediction_table(submission, submission_format["filename"], classes,
                               str(input_dir() / "submission_format.csv"))
    except ValueError as error:
        raise SystemExit(f"r60: the submission does not match {error}") from None
    submission_path = submissions_dir() / "submission.csv"
    write_csv(submission, submission_path)
    write_csv(prediction_frame(train_names, classes, ensemble_oof),
              predictions_dir() / "ensemble_oof.csv")
    write_csv(submission, predictions_dir() / "ensemble_test.csv")

    test_labels = hidden_test_labels(list(test_names), classes)
    rows = score_table(labels, test_labels, fold_of_row, classes, train_names, test_names)
    rows.append({"level": "ensemble", "model": f"ensemble of {len(members)} {folder.name}",
                 "oof_log_loss": mean_log_loss(labels, ensemble_oof),
                 "test_log_loss": mean_log_loss(test_labels, ensemble_test)
                 if test_labels is not None else np.nan})
    rows.append({"level": "ensemble", "model": "ensemble, nested-CV estimate",
                 "oof_log_loss": nested_loss, "test_log_loss": np.nan})
    summary = pd.DataFrame(rows)
    write_csv(summary, reports_dir() / "summary.csv")
    settings = {key: value for key, value in args.config.items()}
    weights_table = pd.DataFrame(class_weights, index=classes, columns=members)
    ensemble_info = {
        "members": members, "level": folder.name, "per_class": bool(per_class),
        "weights": ({c: dict(zip(members, w)) for c, w in zip(classes, class_weights.tolist())}
                    if per_class else dict(zip(members, class_weights[0].tolist()))),
        "clip": clip, "oof_log_loss": clipped_loss, "nested_oof_log_loss": nested_loss,
        "nested_global_log_loss": choice["nested_global_log_loss"],
        "nested_per_class_log_loss": choice["nested_per_class_log_loss"],
        "settings": settings, "stamp": stamp}
    append_scores([
        {"stage": "r60_ensemble", "model": "ensemble", "fold": "all",
         "log_loss": mean_log_loss(labels, ensemble_oof), "rows": len(labels),
         "config_hash": stamp},
        {"stage": "r60_ensemble", "model": "ensemble_nested", "fold": "all",
         "log_loss": nested_loss, "rows": len(labels), "config_hash": stamp}])

    if ADVERSARIAL_VALIDATION:
        if len(test_names):
            groups, single = adversarial_tables(train_names, test_names, classes)
        else:
            groups = single = pd.DataFrame()
        write_csv(groups, reports_dir() / "adversarial_validation.csv")
        write_csv(single, reports_dir() / "adversarial_inputs.csv")
        for row in groups.itertuples():
            if row.mismatch:
                logger.warning("r60: adversarial validation tells test rows from train rows "
                               "by %s (AUC %.3f ± %.3f, against %.3f between train visits): "
                               "those inputs mean something else for test rows", row.group,
                               row.auc, row.standard_error, row.null_auc)
    weights_text = ", ".join(f"{m} {w:.2f}" for m, w in zip(members, class_weights.mean(0)))
    print(f"\nensemble weights ({'per class, mean shown' if per_class else 'global'}): "
          f"{weights_text}; clip {clip:g}", flush=True)
    print_table(summary)
    if REPORT:
        from a04_report import build_report
        report_path = build_report(summary, ensemble_info, weights_table)
        print(f"report: {report_path}", flush=True)
    write_json(ensemble_info, reports_dir() / "ensemble.json")
    # written last: the stamp marks the whole step as done
    write_stamp(outputs, inputs)
    print(f"submission: {submission_path} ({len(submission)} rows)", flush=True)
    logger.info("r60: ensemble OOF log loss %.5f (nested estimate %.5f) -> %s",
                mean_log_loss(labels, ensemble_oof), nested_loss, submission_path)


if __name__ == "__main__":
    run_main(main)
