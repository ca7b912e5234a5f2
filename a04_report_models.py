"""Report sections about the models (a04_report): each builder returns its section's HTML.

    from a04_report_models import headline_section
    html = headline_section(summary, inputs)     # inputs: a04_report.ReportInputs

Headline numbers, model comparison, per-class losses, calibration, blank vs animal, stacker
importances, ensemble weights, scores by fold and adversarial validation. They read the run's
summary and r60's ensemble information, the labels and OOF tables that a04_report read once,
and what r31, r50 and r60 left in models/ and reports/; figures come from a04_figures.
"""
from __future__ import annotations

import base64
from string import Template
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from a00_common import load_folds, logger, models_dir, reports_dir
from a00_metric import per_class_log_loss, prior_probabilities
from a04_figures import (GROUP_COLOURS, LEVEL_COLOURS, RELIABILITY_BINS, display_width,
                         importance_figure, model_comparison_figure, png_bytes,
                         reliability_figure, weights_heatmap)
from a04_html import (Html, escaped, fill, html_table, key_value_table, missing, note,
                      relative_path, scroll)

if TYPE_CHECKING:
    from a04_report import ReportInputs

RELIABILITY_CLASSES = 6        # calibration curves for this many most frequent classes
MIN_POSITIVES_FOR_CURVE = 2    # a curve of a class with fewer positives says nothing
BLANK_CLASS = "blank"
BLANK_THRESHOLD = 0.5

# Pieces of these sections. fill escapes every value but Html (HTML built here).
HEADLINE = Template('<div class="cards">$cards</div>\n<p class="note">$facts</p>')
CARD = Template('<div class="card $kind"><div class="label">$label</div>'
                '<div class="value">$value</div><div class="detail">$detail</div></div>')
FIGURE = Template('<img class="figure" width="$width" alt="$alt" '
                  'src="data:image/png;base64,$png">')
BLANK_VS_ANIMAL = Template("""<table class="confusion">
<tr><th></th><th>predicted blank</th><th>predicted animal</th><th>total</th></tr>
<tr><th>true blank</th><td class="hit">$blank_as_blank</td>
<td class="miss">$blank_as_animal</td><td>$blank</td></tr>
<tr><th>true animal</th><td class="miss">$animal_as_blank</td>
<td class="hit">$animal_as_animal</td><td>$animal</td></tr>
<tr><th>total</th><td>$as_blank</td><td>$as_animal</td>
<td>$total</td></tr>
</table>""" '<p class="note">Ensemble OOF probability of <b>$blank_class</b> at threshold '
    '$threshold. Accuracy $accuracy · blank recall $blank_recall · blank precision '
    '$blank_precision · animal recall $animal_recall. "Animal" is any video not labelled '
    'blank (humans included).</p>')
WEIGHTS_BY_CLASS = Template('<div class="two-columns"><div>\n$heatmap\n</div><div>'
                            '<h3>Mean weight per member</h3>\n$means\n</div></div>')


# ----------------------------------------------------------------------------- sections

def headline_section(summary: pd.DataFrame, inputs: ReportInputs) -> str:
    has_test = summary["test_log_loss"].notna().any()
    prior = _rows(summary, "baseline")
    prior_oof = float(prior["oof_log_loss"].iloc[0]) if len(prior) else float("nan")
    cards = []

    def card(kind: str, label: str, row: pd.Series | None, detail: str = "") -> None:
        if row is None:
            cards.append(fill(CARD, kind=kind, label=label, value="–",
                              detail="none in this run"))
            return
        lines = [detail] if detail else []
        if np.isfinite(row["test_log_loss"]):
            lines.append(f"test (hidden labels): {row['test_log_loss']:.4f}")
        if kind != "baseline" and np.isfinite(prior_oof) and prior_oof > 0:
            change = (row["oof_log_loss"] - prior_oof) / prior_oof
            lines.append(f"{change:+.0%} vs prior")
        cards.append(fill(CARD, kind=kind, label=label, value=f"{row['oof_log_loss']:.4f}",
                          detail=Html("<br>".join(escaped(line) for line in lines))))

    card("baseline", "Class prior (OOF)", _best(prior), "predicts each class's frequency")
    for level, label in (("level1", "Best level-1 (OOF)"), ("level2", "Best level-2 (OOF)")):
        best = _best(_rows(summary, level))
        card(level, label, best, best["model"] if best is not None else "")
    ensemble_row, nested_row = _ensemble_rows(summary)
    card("ensemble", "Ensemble (OOF)", ensemble_row,
         f"nested-CV estimate {nested_row['oof_log_loss']:.4f}" if nested_row is not None
         else "")
    facts = []
    if inputs.labels is not None:
        facts.append(f"{len(inputs.labels)} train videos, {len(inputs.classes)} classes")
    if inputs.metadata is not None and "split" in inputs.metadata.columns:
        facts.append(f"{int((inputs.metadata['split'] == 'test').sum())} test videos")
    facts.append("Mean binary log loss over every (video, class) cell; lower is better. OOF = "
                 "out-of-fold on the train videos.")
    if not has_test:
        facts.append("No hidden test labels in this data folder, so no test losses.")
    return fill(HEADLINE, cards=Html("".join(cards)), facts=" · ".join(facts))


def model_comparison_section(summary: pd.DataFrame) -> str:
    rows = summary[summary["level"] != "baseline"].dropna(subset=["oof_log_loss"])
    if rows.empty:
        return missing("The summary holds no model rows.")
    rows = rows.sort_values("oof_log_loss", ascending=True)
    prior = _rows(summary, "baseline")
    prior_oof = float(prior["oof_log_loss"].iloc[0]) if len(prior) else float("nan")
    has_test = rows["test_log_loss"].notna().any()

    parts = [_figure_html(model_comparison_figure(rows, prior_oof),
                          "OOF log loss of every model")]

    header = ["level", "model", "OOF log loss", "vs prior"] + (["test log loss"] if has_test
                                                               else [])
    body = []
    for row in summary.itertuples():
        change = (row.oof_log_loss - prior_oof) / prior_oof \
            if row.level != "baseline" and np.isfinite(prior_oof) and prior_oof > 0 else None
        cells = [_swatch(LEVEL_COLOURS.get(row.level, "#bab0ac")) + escaped(row.level),
                 escaped(row.model), _number(row.oof_log_loss),
                 f"{change:+.1%}" if change is not None and np.isfinite(change) else ""]
        if has_test:
            cells.append(_number(row.test_log_loss))
        body.append(cells)
    parts.append(html_table(header, body, numeric={2, 3, 4}, escape=False))
    return "\n".join(parts)


def per_class_section(summary: pd.DataFrame, inputs: ReportInputs) -> str:
    if inputs.labels is None:
        return missing(inputs.problems.get("labels", "No train labels."))
    labels, classes = inputs.labels, inputs.classes
    positives = labels.sum(axis=0).astype(int)
    prior_oof, prior_note = _prior_oof(labels, inputs.labels_table["filename"])
    prior_losses = per_class_log_loss(labels, prior_oof)
    columns = [("prior", prior_losses)]
    for level, title in (("level1", "best level-1"), ("level2", "best level-2")):
        best = _best(_rows(summary, level))
        if best is not None and (level, best["model"]) in inputs.model_oof:
            oof = inputs.model_oof[(level, best["model"])]
            columns.append((f"{title}: {best['model']}", per_class_log_loss(labels, oof)))
    notes = [prior_note]
    ensemble_losses = None
    if inputs.ensemble_oof is not None:
        ensemble_losses = per_class_log_loss(labels, inputs.ensemble_oof)
        columns.append(("ensemble", ensemble_losses))
    else:
        notes.append(f"No ensemble column: {inputs.problems.get('ensemble', 'not available')}.")

    header = ["class", "train positives", "share"] + [f"{name} OOF loss" for name, _ in columns]
    numeric = set(range(1, len(header)))
    if ensemble_losses is not None:
        header.append("ensemble / prior")
    # bars share one scale up to twice the prior's loss; worse ratios fill the cell
    widest = min(2.0, max(1.0, float(np.nanmax(ensemble_losses / np.maximum(prior_losses,
                                                                            1e-12))))) \
        if ensemble_losses is not None else 1.0
    body, row_classes = [], []
    for index, name in enumerate(classes):
        label = escaped(name)
        if positives[index] == 0:
            label += _badge("no positives")
        cells = [label, str(positives[index]), f"{positives[index] / len(labels):.1%}"]
        cells += [f"{losses[index]:.4f}" for _, losses in columns]
        if ensemble_losses is not None:
            ratio = ensemble_losses[index] / max(prior_losses[index], 1e-12)
            cells.append(_ratio_bar(ratio, widest))
        body.append(cells)
        row_classes.append("muted" if positives[index] == 0 else "")
    total = ["all classes (mean)", str(int(positives.sum())), ""]
    total += [f"{float(np.mean(losses)):.4f}" for _, losses in columns]
    if ensemble_losses is not None:
        total.append(_ratio_bar(float(np.mean(ensemble_losses)) / max(float(np.mean(
            prior_losses)), 1e-12), widest))
    body.append(total)
    row_classes.append("total")
    absent = int((positives == 0).sum())
    if absent:
        notes.append(f"{absent} class(es) have no positive train video (marked); their loss is "
                     f"the cost of predicting a small probability for every video.")
    if ensemble_losses is not None:
        notes.append("'ensemble / prior': the ensemble's loss as a share of the prior's; green "
                     "bars are better than the prior, red bars worse.")
    table = html_table(header, body, numeric=numeric, row_classes=row_classes, escape=False,
                       table_class="per-class")
    return scroll(table) + note(" ".join(notes))


def calibration_section(inputs: ReportInputs) -> str:
    if inputs.labels is None:
        return missing(inputs.problems.get("labels", "No train labels."))
    if inputs.ensemble_oof is None:
        return missing(f"No ensemble OOF predictions: {inputs.problems.get('ensemble')}.")
    positives = inputs.labels.sum(axis=0)
    order = [int(i) for i in np.argsort(-positives, kind="stable")
             if positives[i] >= MIN_POSITIVES_FOR_CURVE][:RELIABILITY_CLASSES]
    if not order:
        return missing(f"No class has {MIN_POSITIVES_FOR_CURVE} or more positives.")
    figure = reliability_figure(inputs.labels, inputs.ensemble_oof, inputs.classes, order)
    return (_figure_html(figure, "Reliability curves of the ensemble OOF")
            + note(f"The {len(order)} classes with most positives. Each point is a quantile "
                   f"bin of the OOF probabilities (bins of about equal size: one per three "
                   f"positives, between 3 and {RELIABILITY_BINS}; tied probabilities merge "
                   f"bins, whose sizes are then marked); the bar is a 95% Wilson interval of "
                   f"the observed frequency. Square-root axes. Points on the dashed diagonal "
                   f"are calibrated; below it the ensemble is over-confident."))


def blank_section(inputs: ReportInputs) -> str:
    if inputs.labels is None:
        return missing(inputs.problems.get("labels", "No train labels."))
    if BLANK_CLASS not in inputs.classes:
        return missing(f"The class list has no '{BLANK_CLASS}' column, so there is no "
                       f"blank-vs-animal view.")
    if inputs.ensemble_oof is None:
        return missing(f"No ensemble OOF predictions: {inputs.problems.get('ensemble')}.")
    column = inputs.classes.index(BLANK_CLASS)
    true_blank = inputs.labels[:, column] == 1
    predicted_blank = inputs.ensemble_oof[:, column] >= BLANK_THRESHOLD
    counts = {(truth, prediction): int(np.sum((true_blank == truth)
                                              & (predicted_blank == prediction)))
              for truth in (True, False) for prediction in (True, False)}
    total = len(true_blank)
    correct = counts[(True, True)] + counts[(False, False)]
    blank_recall = counts[(True, True)] / max(int(true_blank.sum()), 1)
    animal_recall = counts[(False, False)] / max(int((~true_blank).sum()), 1)
    blank_precision = counts[(True, True)] / max(int(predicted_blank.sum()), 1)
    return fill(BLANK_VS_ANIMAL, blank_as_blank=counts[(True, True)],
                blank_as_animal=counts[(True, False)], blank=int(true_blank.sum()),
                animal_as_blank=counts[(False, True)], animal_as_animal=counts[(False, False)],
                animal=int((~true_blank).sum()), as_blank=int(predicted_blank.sum()),
                as_animal=int((~predicted_blank).sum()), total=total, blank_class=BLANK_CLASS,
                threshold=f"{BLANK_THRESHOLD:g}", accuracy=f"{correct / max(total, 1):.1%}",
                blank_recall=f"{blank_recall:.1%}", blank_precision=f"{blank_precision:.1%}",
                animal_recall=f"{animal_recall:.1%}")


def importance_section(ensemble_info: dict) -> str:
    folder = models_dir("level2")
    stacker_folders = sorted(p for p in folder.iterdir() if p.is_dir()) \
        if folder.is_dir() else []
    if not stacker_folders:
        return missing(f"No stackers in {relative_path(folder)} (r50_second_level.py writes them).")
    members = set(ensemble_info.get("members", [])) \
        if ensemble_info.get("level") == "level2" else set()
    tables, notes = {}, []
    for stacker_folder in stacker_folders:
        path = stacker_folder / "importance.csv"
        name = stacker_folder.name
        if not path.exists():
            notes.append(f"{name}: no importance.csv")
            continue
        try:
            table = pd.read_csv(path, keep_default_na=False)
        except (OSError, ValueError) as error:
            notes.append(f"{name}: importance.csv is unreadable ({error})")
            continue
        if not {"feature", "importance"} <= set(table.columns):
            notes.append(f"{name}: importance.csv lacks the feature/importance columns")
            continue
        table["importance"] = pd.to_numeric(table["importance"], errors="coerce").fillna(0.0)
        total = float(table["importance"].clip(lower=0).sum())
        if total <= 0:
            notes.append(f"{name}: every importance is zero (this stacker records none)")
            continue
        table["share"] = table["importance"].clip(lower=0) / total
        table["group"] = [_feature_group(feature) for feature in table["feature"].astype(str)]
        tables[name] = table.sort_values("share", ascending=False)
    parts = []
    if tables:
        groups = sorted({group for table in tables.values() for group in table["group"]})
        colour_of = {group: GROUP_COLOURS[i % len(GROUP_COLOURS)] for i, group in enumerate(groups)}
        parts.append(_figure_html(importance_figure(tables, colour_of, members),
                                  "Top feature importances per stacker"))
        header = ["stacker"] + [f"{_swatch(colour_of[group])}{escaped(group)}" for group in groups]
        body = [[escaped(name) + (_badge("in ensemble") if name in members else "")]
                + [f"{table.loc[table['group'] == group, 'share'].sum():.1%}" for group in groups]
                for name, table in tables.items()]
        parts.append(_subheading("Share of importance by feature group"))
        parts.append(html_table(header, body, numeric=set(range(1, len(header))), escape=False,
                                header_escaped=True))
        parts.append('<p class="note">Importance is each stacker\'s own measure (LightGBM '
                     'gain, XGBoost total gain), shown as a share of its total so stackers '
                     'compare. The group is the feature name\'s prefix before ":".</p>')
    else:
        parts.append(missing("No stacker has usable feature importances."))
    if notes:
        parts.append(note("; ".join(notes) + "."))
    return "\n".join(parts)


def weights_section(ensemble_info: dict, weights_table: pd.DataFrame | None) -> str:
    if not ensemble_info and (weights_table is None or weights_table.empty):
        return missing("No ensemble information was passed to the report.")
    per_class = bool(ensemble_info.get("per_class", False))
    facts = [
        ("blended tables", ensemble_info.get("level", "unknown")),
        ("members", ", ".join(map(str, ensemble_info.get("members", []))) or "unknown"),
        ("weights", "one set per class" if per_class else "one global set"),
        ("clipping chosen on OOF", _format_clip(ensemble_info.get("clip"))),
        ("OOF log loss after clipping", _number(ensemble_info.get("oof_log_loss"))),
        ("nested-CV estimate, global weights",
         _number(ensemble_info.get("nested_global_log_loss"))),
        ("nested-CV estimate, per-class weights",
         _number(ensemble_info.get("nested_per_class_log_loss"))),
        ("nested-CV estimate of the chosen ensemble",
         _number(ensemble_info.get("nested_oof_log_loss"))),
    ]
    mode = (ensemble_info.get("settings") or {}).get("WEIGHTS_MODE")
    if mode:
        facts.insert(3, ("weights mode setting", mode))
    parts = [key_value_table(facts)]
    if weights_table is None or weights_table.empty:
        weights_table = _weights_from_info(ensemble_info)
    if weights_table is None or weights_table.empty:
        parts.append(missing("No weights table."))
        return "\n".join(parts)
    weights_table = weights_table.astype(float)
    varies = per_class and len(weights_table) > 1 and \
        not np.allclose(weights_table.to_numpy(), weights_table.to_numpy()[0])
    if varies:
        heatmap = _figure_html(weights_heatmap(weights_table), "Per-class ensemble weights")
        mean = weights_table.mean(axis=0)
        means = html_table(["member", "mean weight over classes", "classes led"],
                           [[escaped(m), f"{mean[m]:.3f}",
                             str(int((weights_table.idxmax(axis=1) == m).sum()))]
                            for m in weights_table.columns], numeric={1, 2}, escape=False)
        parts.append(fill(WEIGHTS_BY_CLASS, heatmap=Html(heatmap), means=Html(means)))
    else:
        row = weights_table.iloc[0]
        parts.append(_subheading("Weights (the same for every class)"))
        parts.append(html_table(["member", "weight"], [[escaped(m), f"{row[m]:.3f}"]
                                                       for m in weights_table.columns],
                                numeric={1}, escape=False))
    return "\n".join(parts)


def fold_scores_section() -> str:
    path = reports_dir() / "scores.csv"
    if not path.exists():
        return missing(f"{relative_path(path)} is missing (r31, r50 and r60 append to it).")
    scores = pd.read_csv(path, dtype=str, keep_default_na=False)
    needed = {"stage", "model", "fold", "log_loss"}
    if not needed <= set(scores.columns):
        absent = sorted(needed - set(scores.columns))
        return missing(f"{relative_path(path)} lacks column(s) {absent}.")
    scores["log_loss"] = pd.to_numeric(scores["log_loss"], errors="coerce")
    # scores.csv is append-only, so the last row of each (stage, model, fold) is the current one
    latest = scores.drop_duplicates(["stage", "model", "fold"], keep="last")
    by_fold = latest[latest["fold"] != "all"]
    if by_fold.empty:
        return missing(f"{relative_path(path)} has no per-fold rows yet.")
    folds = sorted(by_fold["fold"].unique(), key=lambda f: (not f.isdigit(), int(f) if f.isdigit()
                                                             else 0, f))
    table = by_fold.pivot_table(index=["stage", "model"], columns="fold", values="log_loss",
                                aggfunc="last", sort=False)
    overall = latest[latest["fold"] == "all"].set_index(["stage", "model"])["log_loss"]
    header = ["stage", "model"] + [f"fold {f}" for f in folds] + ["all", "fold mean",
                                                                   "fold std"]
    body = []
    for (stage, model), row in table.sort_index().iterrows():
        values = row.reindex(folds).to_numpy(np.float64)
        finite = values[np.isfinite(values)]
        body.append([escaped(stage), escaped(model)] + [_number(v) for v in values]
                    + [_number(overall.get((stage, model), float("nan"))),
                       _number(finite.mean() if len(finite) else float("nan")),
                       _number(finite.std(ddof=1) if len(finite) > 1 else float("nan"))])
    table = html_table(header, body, numeric=set(range(2, len(header))), escape=False)
    return scroll(table) + note(f"The latest row of each (stage, model, fold) in "
                                f"{relative_path(path)}. A large spread across folds means the "
                                f"OOF total hides unstable folds.")


def adversarial_section() -> str:
    """r60's adversarial validation: per group of stacker inputs, how well a classifier tells
    test rows from train rows, against what the way the test rows were drawn gives alone."""
    groups_path = reports_dir() / "adversarial_validation.csv"
    inputs_path = reports_dir() / "adversarial_inputs.csv"
    if not groups_path.exists():
        return missing(f"{relative_path(groups_path)} is missing (r60 writes it with "
                       f"--adversarial_validation true).")
    try:
        groups = pd.read_csv(groups_path)
    except pd.errors.EmptyDataError:
        groups = pd.DataFrame()
    if groups.empty:
        return missing("No adversarial validation: the data set has no test rows (or too few "
                       "visits of one split to cross-validate).")
    rows, row_classes = [], []
    for row in groups.itertuples():
        mismatch = str(row.mismatch).lower() == "true"
        rows.append([row.group, str(row.inputs),
                     f"{_number(row.auc, 3)} ± {_number(row.standard_error, 3)}",
                     f"{_number(row.null_auc, 3)} ± {_number(row.null_standard_error, 3)}",
                     "differs for test rows" if mismatch else "alike"])
        row_classes.append("warn" if mismatch else "")
    draw = "whole visits" if str(groups["null_draw"].iloc[0]) == "visits" else "single clips"
    html_text = html_table(["inputs of the stackers", "columns", "AUC, train vs test",
                            f"AUC, train vs train ({draw})", "train vs test"], rows,
                           numeric={1, 2, 3}, row_classes=row_classes)
    if inputs_path.exists():
        try:
            single = pd.read_csv(inputs_path)
        except pd.errors.EmptyDataError:
            single = pd.DataFrame()
        if not single.empty:
            html_text += _subheading("The five inputs that tell test rows from train rows "
                                     "best") + \
                html_table(["input", "group", "AUC alone"],
                           [[row.input, row.group, _number(row.auc, 3)]
                            for row in single.itertuples()], numeric={2})
    text = ("A LightGBM classifier learns to tell test rows (1) from train rows (0) on each group "
            "of the stackers' inputs, in 5-fold cross-validation whose folds keep visits whole "
            "(a classifier that saw some clips of a visit would recognise the rest, not the "
            "split). Test rows are read as the stackers read them: one fold's level-1 models "
            "(a fold drawn per row) and r48's neighbour view. Test clips may also differ in what "
            f"they show, so the same classifier tells apart train rows drawn as the test rows "
            f"were ({draw}): what the draw alone gives. A group more than two standard errors "
            "above both that and 0.5 means something else for test rows than for the train rows "
            "the stackers learn from, and their OOF score will not carry over. An AUC below 0.5 "
            "is nothing the classifier could carry to unseen visits.")
    return html_text + note(text)


# ----------------------------------------------------------------------------- summary helpers

def _rows(summary: pd.DataFrame, level: str) -> pd.DataFrame:
    return summary[(summary["level"] == level) & summary["oof_log_loss"].notna()]


def _best(rows: pd.DataFrame) -> pd.Series | None:
    return None if rows.empty else rows.loc[rows["oof_log_loss"].idxmin()]


def _ensemble_rows(summary: pd.DataFrame) -> tuple[pd.Series | None, pd.Series | None]:
    """(the ensemble row, its nested-CV estimate row), told apart by the word 'nested'."""
    rows = _rows(summary, "ensemble")
    nested = rows["model"].astype(str).str.contains("nested", case=False)
    ensemble = rows[~nested]
    return (ensemble.iloc[0] if len(ensemble) else None,
            rows[nested].iloc[0] if nested.any() else None)


def _prior_oof(labels: np.ndarray, names: pd.Series) -> tuple[np.ndarray, str]:
    """The class-prior baseline out of fold (as r60 scores it), in-sample without folds."""
    try:
        fold_of_row = load_folds(names)["fold"].to_numpy()
    except (OSError, KeyError, ValueError) as error:
        logger.info("report: prior per class computed in-sample (%s)", error)
        return (np.tile(prior_probabilities(labels), (len(labels), 1)),
                "Prior: each class's train frequency (no metadata/folds.csv, so in-sample).")
    output = np.zeros(labels.shape)
    for fold in np.unique(fold_of_row):
        inside = fold_of_row != fold
        output[~inside] = prior_probabilities(labels[inside])
    return output, ("Prior: each class's frequency in the other folds (out of fold, as r60 "
                    "scores it).")


def _weights_from_info(ensemble_info: dict) -> pd.DataFrame | None:
    weights = ensemble_info.get("weights")
    if not isinstance(weights, dict) or not weights:
        return None
    first = next(iter(weights.values()))
    if isinstance(first, dict):
        return pd.DataFrame(weights).T
    return pd.DataFrame([weights], index=["all classes"])


def _feature_group(feature: str) -> str:
    return feature.split(":", 1)[0] if ":" in feature else "other"


# ----------------------------------------------------------------------------- html helpers

def _subheading(text: str) -> str:
    return f"<h3>{escaped(text)}</h3>"


def _badge(text: str) -> str:
    return f'<span class="badge">{escaped(text)}</span>'


def _number(value, digits: int = 4) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return f"{number:.{digits}f}" if np.isfinite(number) else ""


def _format_clip(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "unknown"
    return f"[{number:g}, 1 − {number:g}]"


def _swatch(colour: str) -> str:
    return f'<span class="swatch" style="background:{colour}"></span>'


def _ratio_bar(ratio: float, widest: float) -> str:
    width = max(1, round(100 * min(ratio, widest) / widest))
    worse = " worse" if ratio > 1 else ""
    return f'<span class="bar{worse}" style="width:{width}px"></span> {ratio:.2f}'


def _figure_html(figure, alt: str) -> str:
    data = png_bytes(figure)
    encoded = base64.b64encode(data).decode("ascii")
    return fill(FIGURE, width=display_width(data), alt=alt, png=encoded)
