"""Report room: one self-contained HTML page that sums up a run (reports/report.html).

    from a04_report import build_report
    path = build_report(summary, ensemble_info, weights_table)   # r60 calls this

The page opens offline in any browser: figures are PNGs drawn by a04_figures (matplotlib,
Agg) inlined as base64, the CSS is inline, and there is no JavaScript and no external
address. The page itself (CSS, header, footer) is a04_report_template.html, a
string.Template that this module fills with the sections it builds. Besides the three
arguments it reads what earlier stages left in the data folder (labels, OOF tables, stacker
importances, model configs, scores, failures, metadata). Every optional input may be
missing: its section then says so. A section that fails for another reason shows the error
and logs a warning, so a report problem never costs the run that produced the submission.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

from a00_common import (atomic_path, cache_dir, data_dir, git_commit, level1_dir, level2_dir,
                        load_folds, load_train_labels, logger, metadata_dir,
                        models_dir, per_class_log_loss, predictions_dir, prior_probabilities,
                        reports_dir)
from a04_figures import (CAMERA_VIEW_WIDTH, GROUP_COLOURS, LEVEL_COLOURS, RELIABILITY_BINS,
                         camera_view_png, display_width, figure_style, importance_figure,
                         model_comparison_figure, png_bytes, reliability_figure,
                         weights_heatmap)

RELIABILITY_CLASSES = 6        # calibration curves for this many most frequent classes
MIN_POSITIVES_FOR_CURVE = 2    # a curve of a class with fewer positives says nothing
BLANK_CLASS = "blank"
BLANK_THRESHOLD = 0.5
FAILURE_ROWS = 20              # rows of cache/failures.csv shown

SUMMARY_COLUMNS = ("level", "model", "oof_log_loss", "test_log_loss")

# The page: its CSS, header and footer, with $stamp, $navigation and $sections.
PAGE_TEMPLATE = Path(__file__).with_name("a04_report_template.html")

# Pieces the page repeats. _fill escapes every value but Html (HTML this module built).
SECTION = Template('<section id="$anchor">\n<h2>$title</h2>\n$content\n</section>')
NAV_LINK = Template('<a href="#$anchor">$title</a>')
HEADLINE = Template('<div class="cards">$cards</div>\n<p class="note">$facts</p>')
CARD = Template('<div class="card $kind"><div class="label">$label</div>'
                '<div class="value">$value</div><div class="detail">$detail</div></div>')
FIGURE = Template('<img class="figure" width="$width" alt="$alt" '
                  'src="data:image/png;base64,$png">')
CAMERA_VIEW = Template('<img width="$width" alt="$alt" src="data:image/png;base64,$png">')
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
FAILURES_COUNT = Template("<p><b>$count</b> failure row(s) in $path$details.</p>")
SETTINGS = Template('<details><summary>Settings of the ensemble and of $count model(s) '
                    '(click to open)</summary>\n$blocks\n</details>'
                    '<p class="note">Git commit $commit; model configs from '
                    '$models/*/config.json.</p>')
SETTINGS_BLOCK = Template("<h3>$title</h3><pre>$settings</pre>")


# ----------------------------------------------------------------------------- entry point

def build_report(summary: pd.DataFrame, ensemble_info: dict | None,
                 weights_table: pd.DataFrame | None) -> Path:
    """Writes reports/report.html (atomically) and returns its path.

    `summary`: columns level, model, oof_log_loss, test_log_loss (NaN without hidden test
    labels). `ensemble_info`: the dict r60 writes to reports/ensemble.json. `weights_table`:
    index = classes, columns = ensemble members.
    """
    if not isinstance(summary, pd.DataFrame):
        raise ValueError(f"build_report: summary must be a DataFrame, got {type(summary).__name__}")
    missing_columns = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing_columns:
        raise ValueError(f"build_report: summary lacks column(s) {missing_columns}; expected "
                         f"{list(SUMMARY_COLUMNS)}")
    summary = summary.copy()
    summary["oof_log_loss"] = pd.to_numeric(summary["oof_log_loss"], errors="coerce")
    summary["test_log_loss"] = pd.to_numeric(summary["test_log_loss"], errors="coerce")
    ensemble_info = dict(ensemble_info or {})
    inputs = ReportInputs.load()
    built_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    commit = git_commit()

    with figure_style():
        sections = [
            ("headline", "Headline numbers", lambda: headline_section(summary, inputs)),
            ("models", "Model comparison", lambda: model_comparison_section(summary)),
            ("classes", "Per-class losses", lambda: per_class_section(summary, inputs)),
            ("calibration", "Calibration of the ensemble",
             lambda: calibration_section(inputs)),
            ("blank", "Blank vs animal", lambda: blank_section(inputs)),
            ("importance", "Stacker feature importances",
             lambda: importance_section(ensemble_info)),
            ("weights", "Ensemble weights and clipping",
             lambda: weights_section(ensemble_info, weights_table)),
            ("folds", "Scores by fold", fold_scores_section),
            ("adversarial", "Adversarial validation: do test rows look like train rows?",
             adversarial_section),
            ("data", "Data set", lambda: data_set_section(inputs)),
            ("cameras", "Cameras", lambda: cameras_section(inputs)),
            ("failures", "Failures", failures_section),
            ("settings", "Run settings", lambda: settings_section(ensemble_info)),
        ]
        rendered = [(anchor, title, _safe_section(title, builder))
                    for anchor, title, builder in sections]

    page = render_page(rendered, built_at, commit)
    path = reports_dir() / "report.html"
    with atomic_path(path) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return path


def _safe_section(title: str, builder) -> str:
    try:
        return builder()
    except Exception as error:  # noqa: BLE001 - one broken section must not lose the page
        logger.warning("report: section %r could not be built: %s: %s", title,
                       type(error).__name__, error)
        return _error(f"This section could not be built: {type(error).__name__}: {error}")


def render_page(sections: list[tuple[str, str, str]], built_at: str, commit: str) -> str:
    """The page template filled with the sections (anchor, title, content HTML)."""
    navigation = "".join(_fill(NAV_LINK, anchor=anchor, title=title)
                         for anchor, title, _ in sections)
    body = "\n".join(_fill(SECTION, anchor=anchor, title=title, content=Html(content))
                     for anchor, title, content in sections)
    stamp = f"commit {commit} · built {built_at} · data {data_dir()}"
    page = Template(PAGE_TEMPLATE.read_text(encoding="utf-8"))
    return _fill(page, stamp=stamp, navigation=Html(navigation), sections=Html(body))


# ----------------------------------------------------------------------------- inputs

class ReportInputs:
    """Labels and OOF tables, read once and aligned on the labels' rows.

    Anything that cannot be read leaves its attribute None and a one-line reason in
    `problems`, which the sections that need it show instead of their content.
    """

    def __init__(self):
        self.labels_table: pd.DataFrame | None = None
        self.classes: list[str] = []
        self.labels: np.ndarray | None = None
        self.ensemble_oof: np.ndarray | None = None
        self.model_oof: dict[tuple[str, str], np.ndarray] = {}
        self.metadata: pd.DataFrame | None = None
        self.problems: dict[str, str] = {}

    @classmethod
    def load(cls) -> "ReportInputs":
        inputs = cls()
        try:
            inputs.labels_table, inputs.classes = load_train_labels()
            inputs.labels = inputs.labels_table[inputs.classes].to_numpy(np.float64)
        except (OSError, ValueError) as error:
            inputs.problems["labels"] = f"input/train_labels.csv is unusable: {error}"
            return inputs
        path = predictions_dir() / "ensemble_oof.csv"
        inputs.ensemble_oof, problem = inputs.read_oof(path)
        if problem:
            inputs.problems["ensemble"] = problem
        for level, folder in (("level1", level1_dir()), ("level2", level2_dir())):
            for oof_path in sorted(folder.glob("*_oof.csv")) if folder.is_dir() else []:
                values, problem = inputs.read_oof(oof_path)
                if values is None:
                    logger.warning("report: %s", problem)
                    continue
                inputs.model_oof[(level, oof_path.name[:-len("_oof.csv")])] = values
        metadata_path = metadata_dir() / "metadata.csv"
        if metadata_path.exists():
            try:
                inputs.metadata = pd.read_csv(metadata_path, dtype={"filename": str})
            except (OSError, ValueError) as error:
                inputs.problems["metadata"] = f"{_relative(metadata_path)} is unreadable: {error}"
        else:
            inputs.problems["metadata"] = (f"{_relative(metadata_path)} is missing "
                                           f"(r11_get_metadata_table.py writes it)")
        return inputs

    def read_oof(self, path: Path) -> tuple[np.ndarray | None, str]:
        """An OOF table as an array in the labels' row order, or (None, why not)."""
        if not path.exists():
            return None, f"{_relative(path)} is missing"
        try:
            table = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False,
                                na_values=[""])
        except (OSError, ValueError) as error:
            return None, f"{_relative(path)} is unreadable: {error}"
        absent = [c for c in ["filename"] + self.classes if c not in table.columns]
        if absent:
            return None, f"{_relative(path)} lacks column(s) {absent[:3]}"
        table = table.drop_duplicates("filename").set_index("filename")
        names = self.labels_table["filename"]
        missing = int((~names.isin(table.index)).sum())
        if missing:
            return None, f"{_relative(path)} has no row for {missing} train video(s)"
        values = table.loc[names, self.classes].to_numpy(np.float64)
        if not np.isfinite(values).all():
            return None, f"{_relative(path)} holds NaN or infinite probabilities"
        return values, ""


# ----------------------------------------------------------------------------- sections

def headline_section(summary: pd.DataFrame, inputs: ReportInputs) -> str:
    has_test = summary["test_log_loss"].notna().any()
    prior = _rows(summary, "baseline")
    prior_oof = float(prior["oof_log_loss"].iloc[0]) if len(prior) else float("nan")
    cards = []

    def card(kind: str, label: str, row: pd.Series | None, detail: str = "") -> None:
        if row is None:
            cards.append(_fill(CARD, kind=kind, label=label, value="–",
                               detail="none in this run"))
            return
        lines = [detail] if detail else []
        if np.isfinite(row["test_log_loss"]):
            lines.append(f"test (hidden labels): {row['test_log_loss']:.4f}")
        if kind != "baseline" and np.isfinite(prior_oof) and prior_oof > 0:
            change = (row["oof_log_loss"] - prior_oof) / prior_oof
            lines.append(f"{change:+.0%} vs prior")
        cards.append(_fill(CARD, kind=kind, label=label, value=f"{row['oof_log_loss']:.4f}",
                           detail=Html("<br>".join(_text(line) for line in lines))))

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
    return _fill(HEADLINE, cards=Html("".join(cards)), facts=" · ".join(facts))


def model_comparison_section(summary: pd.DataFrame) -> str:
    rows = summary[summary["level"] != "baseline"].dropna(subset=["oof_log_loss"])
    if rows.empty:
        return _missing("The summary holds no model rows.")
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
        cells = [_swatch(LEVEL_COLOURS.get(row.level, "#bab0ac")) + _text(row.level),
                 _text(row.model), _number(row.oof_log_loss),
                 f"{change:+.1%}" if change is not None and np.isfinite(change) else ""]
        if has_test:
            cells.append(_number(row.test_log_loss))
        body.append(cells)
    parts.append(_table(header, body, numeric={2, 3, 4}, escape=False))
    return "\n".join(parts)


def per_class_section(summary: pd.DataFrame, inputs: ReportInputs) -> str:
    if inputs.labels is None:
        return _missing(inputs.problems.get("labels", "No train labels."))
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
        label = _text(name)
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
    table = _table(header, body, numeric=numeric, row_classes=row_classes, escape=False,
                   table_class="per-class")
    return _scroll(table) + _note(" ".join(notes))


def calibration_section(inputs: ReportInputs) -> str:
    if inputs.labels is None:
        return _missing(inputs.problems.get("labels", "No train labels."))
    if inputs.ensemble_oof is None:
        return _missing(f"No ensemble OOF predictions: {inputs.problems.get('ensemble')}.")
    positives = inputs.labels.sum(axis=0)
    order = [int(i) for i in np.argsort(-positives, kind="stable")
             if positives[i] >= MIN_POSITIVES_FOR_CURVE][:RELIABILITY_CLASSES]
    if not order:
        return _missing(f"No class has {MIN_POSITIVES_FOR_CURVE} or more positives.")
    figure = reliability_figure(inputs.labels, inputs.ensemble_oof, inputs.classes, order)
    return (_figure_html(figure, "Reliability curves of the ensemble OOF")
            + _note(f"The {len(order)} classes with most positives. Each point is a quantile "
                    f"bin of the OOF probabilities (bins of about equal size: one per three "
                    f"positives, between 3 and {RELIABILITY_BINS}; tied probabilities merge "
                    f"bins, whose sizes are then marked); the bar is a 95% Wilson interval of "
                    f"the observed frequency. Square-root axes. Points on the dashed diagonal "
                    f"are calibrated; below it the ensemble is over-confident."))


def blank_section(inputs: ReportInputs) -> str:
    if inputs.labels is None:
        return _missing(inputs.problems.get("labels", "No train labels."))
    if BLANK_CLASS not in inputs.classes:
        return _missing(f"The class list has no '{BLANK_CLASS}' column, so there is no "
                        f"blank-vs-animal view.")
    if inputs.ensemble_oof is None:
        return _missing(f"No ensemble OOF predictions: {inputs.problems.get('ensemble')}.")
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
    return _fill(BLANK_VS_ANIMAL, blank_as_blank=counts[(True, True)],
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
        return _missing(f"No stackers in {_relative(folder)} (r50_second_level.py writes them).")
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
        header = ["stacker"] + [f"{_swatch(colour_of[group])}{_text(group)}" for group in groups]
        body = [[_text(name) + (_badge("in ensemble") if name in members else "")]
                + [f"{table.loc[table['group'] == group, 'share'].sum():.1%}" for group in groups]
                for name, table in tables.items()]
        parts.append(_subheading("Share of importance by feature group"))
        parts.append(_table(header, body, numeric=set(range(1, len(header))), escape=False,
                            header_escaped=True))
        parts.append('<p class="note">Importance is each stacker\'s own measure (LightGBM '
                     'gain, XGBoost total gain), shown as a share of its total so stackers '
                     'compare. The group is the feature name\'s prefix before ":".</p>')
    else:
        parts.append(_missing("No stacker has usable feature importances."))
    if notes:
        parts.append(_note("; ".join(notes) + "."))
    return "\n".join(parts)


def weights_section(ensemble_info: dict, weights_table: pd.DataFrame | None) -> str:
    if not ensemble_info and (weights_table is None or weights_table.empty):
        return _missing("No ensemble information was passed to the report.")
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
    parts = [_key_value_table(facts)]
    if weights_table is None or weights_table.empty:
        weights_table = _weights_from_info(ensemble_info)
    if weights_table is None or weights_table.empty:
        parts.append(_missing("No weights table."))
        return "\n".join(parts)
    weights_table = weights_table.astype(float)
    varies = per_class and len(weights_table) > 1 and \
        not np.allclose(weights_table.to_numpy(), weights_table.to_numpy()[0])
    if varies:
        heatmap = _figure_html(weights_heatmap(weights_table), "Per-class ensemble weights")
        mean = weights_table.mean(axis=0)
        means = _table(["member", "mean weight over classes", "classes led"],
                       [[_text(m), f"{mean[m]:.3f}",
                         str(int((weights_table.idxmax(axis=1) == m).sum()))]
                        for m in weights_table.columns], numeric={1, 2}, escape=False)
        parts.append(_fill(WEIGHTS_BY_CLASS, heatmap=Html(heatmap), means=Html(means)))
    else:
        row = weights_table.iloc[0]
        parts.append(_subheading("Weights (the same for every class)"))
        parts.append(_table(["member", "weight"], [[_text(m), f"{row[m]:.3f}"]
                                                   for m in weights_table.columns],
                            numeric={1}, escape=False))
    return "\n".join(parts)


def fold_scores_section() -> str:
    path = reports_dir() / "scores.csv"
    if not path.exists():
        return _missing(f"{_relative(path)} is missing (r31, r50 and r60 append to it).")
    scores = pd.read_csv(path, dtype=str, keep_default_na=False)
    needed = {"stage", "model", "fold", "log_loss"}
    if not needed <= set(scores.columns):
        absent = sorted(needed - set(scores.columns))
        return _missing(f"{_relative(path)} lacks column(s) {absent}.")
    scores["log_loss"] = pd.to_numeric(scores["log_loss"], errors="coerce")
    # scores.csv is append-only, so the last row of each (stage, model, fold) is the current one
    latest = scores.drop_duplicates(["stage", "model", "fold"], keep="last")
    by_fold = latest[latest["fold"] != "all"]
    if by_fold.empty:
        return _missing(f"{_relative(path)} has no per-fold rows yet.")
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
        body.append([_text(stage), _text(model)] + [_number(v) for v in values]
                    + [_number(overall.get((stage, model), float("nan"))),
                       _number(finite.mean() if len(finite) else float("nan")),
                       _number(finite.std(ddof=1) if len(finite) > 1 else float("nan"))])
    table = _table(header, body, numeric=set(range(2, len(header))), escape=False)
    return _scroll(table) + _note(f"The latest row of each (stage, model, fold) in "
                                  f"{_relative(path)}. A large spread across folds means the "
                                  f"OOF total hides unstable folds.")


def adversarial_section() -> str:
    """r60's adversarial validation: per group of stacker inputs, how well a classifier tells
    test rows from train rows, against what the way the test rows were drawn gives alone."""
    groups_path = reports_dir() / "adversarial_validation.csv"
    inputs_path = reports_dir() / "adversarial_inputs.csv"
    if not groups_path.exists():
        return _missing(f"{_relative(groups_path)} is missing (r60 writes it with "
                        f"--adversarial_validation true).")
    try:
        groups = pd.read_csv(groups_path)
    except pd.errors.EmptyDataError:
        groups = pd.DataFrame()
    if groups.empty:
        return _missing("No adversarial validation: the data set has no test rows (or too few "
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
    html_text = _table(["inputs of the stackers", "columns", "AUC, train vs test",
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
                _table(["input", "group", "AUC alone"],
                       [[row.input, row.group, _number(row.auc, 3)]
                        for row in single.itertuples()], numeric={2})
    note = ("A LightGBM classifier learns to tell test rows (1) from train rows (0) on each group "
            "of the stackers' inputs, in 5-fold cross-validation whose folds keep visits whole "
            "(a classifier that saw some clips of a visit would recognise the rest, not the "
            "split). Test rows are read as the stackers read them: one fold's level-1 models "
            "(a fold drawn per row) and r48's neighbour view. Test clips may also differ in what "
            f"they show, so the same classifier tells apart train rows drawn as the test rows "
            f"were ({draw}): what the draw alone gives. A group more than two standard errors "
            "above both that and 0.5 means something else for test rows than for the train rows "
            "the stackers learn from, and their OOF score will not carry over. An AUC below 0.5 "
            "is nothing the classifier could carry to unseen visits.")
    return html_text + _note(note)


def data_set_section(inputs: ReportInputs) -> str:
    if inputs.metadata is None:
        return _missing(inputs.problems.get("metadata", "No metadata table."))
    metadata = inputs.metadata
    facts = [("videos in metadata", str(len(metadata)))]
    if "split" in metadata.columns:
        counts = metadata["split"].value_counts()
        facts.append(("train / test", f"{counts.get('train', 0)} / {counts.get('test', 0)}"))
    if "readable" in metadata.columns:
        unreadable = int((~metadata["readable"].astype(str).str.lower().isin(
            ["true", "1", "1.0"])).sum())
        facts.append(("unreadable", str(unreadable)))
    if "duration" in metadata.columns:
        duration = pd.to_numeric(metadata["duration"], errors="coerce").dropna()
        if len(duration):
            facts.append(("duration (s)", f"median {duration.median():.1f}, range "
                                          f"{duration.min():.1f}–{duration.max():.1f}, total "
                                          f"{duration.sum() / 60:.1f} min"))
    if {"width", "height"} <= set(metadata.columns):
        sizes = (metadata["width"].astype(str).str.replace(".0", "", regex=False) + "×"
                 + metadata["height"].astype(str).str.replace(".0", "", regex=False))
        facts.append(("frame sizes", ", ".join(f"{size} ({count})" for size, count
                                               in sizes.value_counts().head(5).items())))
    if "fps" in metadata.columns:
        fps = pd.to_numeric(metadata["fps"], errors="coerce").dropna().round(2)
        facts.append(("frame rates", ", ".join(f"{rate:g} ({count})" for rate, count
                                               in fps.value_counts().head(5).items())))
    if "has_audio" in metadata.columns:
        with_audio = int(metadata["has_audio"].astype(str).str.lower().isin(["true", "1"]).sum())
        facts.append(("with audio", f"{with_audio} ({with_audio / max(len(metadata), 1):.0%})"))
    for column in ("camera", "site"):
        if column in metadata.columns:
            facts.append((f"{column}s", str(metadata[column].nunique())))
            break
    if "capture_time" in metadata.columns:
        times = pd.to_datetime(metadata["capture_time"], errors="coerce", utc=True).dropna()
        if len(times):
            facts.append(("capture times", f"{times.min():%Y-%m-%d} to {times.max():%Y-%m-%d} "
                                           f"({len(times)} known)"))
    if "capture_time_source" in metadata.columns:
        # which clock each clip's time came from: a file's modification time is a capture
        # time only when the user said so (r11 --trust_file_mtime true)
        sources = metadata["capture_time_source"].fillna("none").astype(str) \
            .replace("", "none").value_counts()
        text = ", ".join(f"{name} {count}" for name, count in sources.items())
        if "file_mtime" not in sources.index:
            text += " (file modification times not used)"
        facts.append(("capture time sources", text))
    source = _relative(metadata_dir() / "metadata.csv")
    return _key_value_table(facts) + _note(f"From {source}.")


CAMERAS_SHOWN = 40              # the cameras with most clips; the rest are counted


def cameras_section(inputs: ReportInputs) -> str:
    """One row per camera: its background, how its id was found, its clips and their split,
    its format and its most frequent classes among its train clips."""
    if inputs.metadata is None or "camera" not in inputs.metadata.columns:
        return _missing(inputs.problems.get("metadata", "No camera column in the metadata."))
    metadata = inputs.metadata.copy()
    metadata["camera"] = metadata["camera"].fillna("").astype(str)
    source = metadata.get("camera_source", pd.Series("given", index=metadata.index))
    metadata["camera_source"] = source.fillna("none").astype(str)
    known = metadata[metadata["camera"] != ""]
    if known.empty:
        return _missing("No clip has a camera: none was named and none could be inferred.")
    labels = inputs.labels_table.set_index("filename")[inputs.classes] \
        if inputs.labels_table is not None else None
    frames_paths = {}
    index_path = cache_dir() / "preprocess_index.csv"
    if index_path.exists():
        index = pd.read_csv(index_path, dtype=str, keep_default_na=False)
        frames_paths = dict(zip(index["filename"], index["frames_path"], strict=True))
    groups = sorted(known.groupby("camera"), key=lambda item: (-len(item[1]), item[0]))
    rows = []
    for camera, clips in groups[:CAMERAS_SHOWN]:
        sources = sorted(set(clips["camera_source"]))
        split = clips["split"].value_counts() if "split" in clips.columns else pd.Series()
        first = clips.iloc[0]
        width, height, fps = pd.to_numeric(pd.Series([first.get("width"), first.get("height"),
                                                      first.get("fps")]), errors="coerce")
        size = f"{width:.0f}×{height:.0f}" if np.isfinite(width) and np.isfinite(height) \
            else "size unknown"
        layout = f"{size} @ {fps:g} fps, {first.get('codec', '')}" if np.isfinite(fps) else size
        top = ""
        if labels is not None:
            train = [name for name in clips["filename"] if name in labels.index]
            if train:
                shares = labels.loc[train].mean(axis=0).sort_values(ascending=False).head(3)
                top = ", ".join(f"{name} {share:.0%}" for name, share in shares.items() if share)
        thumbnail = _camera_thumbnail(clips, frames_paths)
        rows.append([thumbnail, _text(camera), _text(" + ".join(sources)), str(len(clips)),
                     f"{split.get('train', 0)} / {split.get('test', 0)}", _text(layout),
                     _text(top)])
    note = (f"{len(known)} of {len(metadata)} clips have a camera: "
            f"{(metadata['camera_source'] == 'given').sum()} named in video_metadata.csv, "
            f"{(metadata['camera_source'] == 'inferred').sum()} inferred from their background "
            f"and format (r11, a07_cameras). The picture is the median of one clip's frames.")
    if len(groups) > CAMERAS_SHOWN:
        note += f" {len(groups) - CAMERAS_SHOWN} more cameras with fewer clips are not shown."
    return _table(["background", "camera", "id", "clips", "train / test", "format",
                   "top classes (train)"], rows, numeric={3}, escape=False) + \
        _note(note)


def _camera_thumbnail(clips: pd.DataFrame, frames_paths: dict) -> str:
    """A small picture of a camera's view, from its first decoded clip."""
    for _, clip in clips.iterrows():
        path = frames_paths.get(clip["filename"], "")
        if not path or not (cache_dir() / path).exists():
            continue
        width, height = pd.to_numeric(pd.Series([clip.get("width"), clip.get("height")]),
                                      errors="coerce").fillna(1).to_numpy()
        data = camera_view_png(np.load(cache_dir() / path, allow_pickle=False), width, height)
        if data is not None:
            encoded = base64.b64encode(data).decode("ascii")
            return _fill(CAMERA_VIEW, width=CAMERA_VIEW_WIDTH, alt=clip["camera"], png=encoded)
    return _text("no decoded clip")


def failures_section() -> str:
    path = cache_dir() / "failures.csv"
    if not path.exists():
        return _missing(f"{_relative(path)} is missing: r10_preprocess_data.py has not run in "
                        f"this data folder.")
    try:
        failures = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        failures = pd.DataFrame(columns=["filename", "stage", "error"])
    if failures.empty:
        return '<p>No failures recorded: every video was probed and decoded.</p>'
    details = ""
    if "filename" in failures.columns:
        details += f", {failures['filename'].nunique()} distinct video(s)"
    if "stage" in failures.columns:
        details += " — by stage: " + ", ".join(
            f"{stage} {count}" for stage, count in failures["stage"].value_counts().items())
    shown = failures.head(FAILURE_ROWS)
    parts = [_fill(FAILURES_COUNT, count=len(failures), path=_relative(path), details=details),
             _scroll(_table(list(shown.columns), shown.values.tolist()))]
    if len(failures) > FAILURE_ROWS:
        parts.append(_note(f"First {FAILURE_ROWS} of {len(failures)} rows."))
    return "\n".join(parts)


def settings_section(ensemble_info: dict) -> str:
    blocks = []
    if ensemble_info:
        shown = {key: value for key, value in ensemble_info.items() if key != "weights"}
        blocks.append(("ensemble (r60)", shown))
    config_paths = []
    for folder in (data_dir() / "models", models_dir("level2")):
        if folder.is_dir():
            config_paths += sorted(p / "config.json" for p in folder.iterdir()
                                   if (p / "config.json").is_file())
    for path in config_paths:
        try:
            blocks.append((path.parent.relative_to(data_dir() / "models").as_posix(),
                           json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as error:
            blocks.append((path.parent.name, {"error": f"unreadable config.json: {error}"}))
    if not blocks:
        return _missing("No ensemble settings and no models/*/config.json.")
    inner = "\n".join(_fill(SETTINGS_BLOCK, title=title, settings=compact_json(payload))
                      for title, payload in blocks)
    count = len(blocks) - (1 if ensemble_info else 0)
    return _fill(SETTINGS, count=count, blocks=Html(inner), commit=git_commit(),
                 models=_relative(data_dir() / "models"))


def compact_json(value, indent: int = 0) -> str:
    """JSON with nested objects indented but short lists kept on one line (class lists)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f'{pad}  {json.dumps(str(key))}: {compact_json(item, indent + 1)}'
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)):
        if all(not isinstance(item, (dict, list, tuple)) for item in value):
            return json.dumps(list(value), default=str)
        items = [f"{pad}  {compact_json(item, indent + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    return json.dumps(value, default=str)


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

class Html(str):
    """HTML this module built: _fill puts it into a template as it is."""


def _fill(template: Template, **values) -> str:
    """The template with its placeholders filled: text is escaped, Html goes in as it is."""
    return template.substitute({name: value if isinstance(value, Html) else _text(value)
                                for name, value in values.items()})


def _text(value) -> str:
    return html.escape(str(value), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_text(text)}</p>'


def _subheading(text: str) -> str:
    return f"<h3>{_text(text)}</h3>"


def _badge(text: str) -> str:
    return f'<span class="badge">{_text(text)}</span>'


def _scroll(table_html: str) -> str:
    """A wide table in a box that scrolls sideways on a narrow page."""
    return f'<div class="scroll">{table_html}</div>'


def _missing(message: str) -> str:
    return f'<p class="missing">{_text(message)}</p>'


def _error(message: str) -> str:
    return f'<p class="error">{_text(message)}</p>'


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


def _table(header: list[str], rows: list[list], numeric: set[int] = frozenset(),
           row_classes: list[str] | None = None, escape: bool = True,
           header_escaped: bool = False, table_class: str = "") -> str:
    """An HTML table; cells are escaped unless the caller built them as HTML already."""
    def cell(tag: str, index: int, value, already_html: bool) -> str:
        content = str(value) if already_html else _text(value)
        css = ' class="number"' if index in numeric else ""
        return f"<{tag}{css}>{content}</{tag}>"

    head = "".join(cell("th", i, h, header_escaped) for i, h in enumerate(header))
    lines = []
    for row_index, row in enumerate(rows):
        css = row_classes[row_index] if row_classes else ""
        attribute = f' class="{css}"' if css else ""
        cells = "".join(cell("td", i, v, not escape) for i, v in enumerate(row))
        lines.append(f"<tr{attribute}>{cells}</tr>")
    opening = f'<table class="{table_class}">' if table_class else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _key_value_table(facts: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_text(key)}</th><td>{_text(value)}</td></tr>"
                   for key, value in facts)
    return f"<table>{rows}</table>"


def _relative(path: Path) -> str:
    try:
        return Path(path).relative_to(data_dir()).as_posix()
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- figures

def _figure_html(figure, alt: str) -> str:
    data = png_bytes(figure)
    encoded = base64.b64encode(data).decode("ascii")
    return _fill(FIGURE, width=display_width(data), alt=alt, png=encoded)
