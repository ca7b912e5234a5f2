"""Report module: one self-contained HTML page that sums up a run (reports/report.html).

    from a04_report import build_report
    path = build_report(summary, ensemble_info, weights_table)   # r60 calls this

The page opens offline in any browser: figures are PNGs drawn by a04_figures (matplotlib,
Agg) inlined as base64, the CSS is inline, and there is no JavaScript and no external
address. The page itself (CSS, header, footer) is a04_report_template.html, a
string.Template that this module fills with the sections built by a04_report_models (scores,
calibration, importances, weights) and a04_report_data (data set, cameras, failures,
settings); a04_html holds the HTML pieces they share. Besides the three arguments the page
reads what earlier stages left in the data folder (labels, OOF tables, stacker importances,
model configs, scores, failures, metadata): this module reads the labels, OOF tables and
metadata once (ReportInputs), the sections read the rest. Every optional input may be
missing: its section then says so. A section that fails for another reason shows the error
and logs a warning, so a report problem never costs the run that produced the submission.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

from a00_common import (data_dir, git_commit, level1_dir, level2_dir, load_train_labels, logger,
                        metadata_dir, predictions_dir, reports_dir)
from a00_io import atomic_path
from a04_figures import figure_style
from a04_html import Html, escaped, fill, relative_path
from a04_report_data import cameras_section, data_set_section, failures_section, settings_section
from a04_report_models import (adversarial_section, blank_section, calibration_section,
                               fold_scores_section, headline_section, importance_section,
                               model_comparison_section, per_class_section, weights_section)

SUMMARY_COLUMNS = ("level", "model", "oof_log_loss", "test_log_loss")

# The page: its CSS, header and footer, with $stamp, $navigation and $sections.
PAGE_TEMPLATE = Path(__file__).with_name("a04_report_template.html")

# The pieces around each section. fill escapes every value but Html (HTML already built).
SECTION = Template('<section id="$anchor">\n<h2>$title</h2>\n$content\n</section>')
NAV_LINK = Template('<a href="#$anchor">$title</a>')


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


def _error(message: str) -> str:
    return f'<p class="error">{escaped(message)}</p>'


def render_page(sections: list[tuple[str, str, str]], built_at: str, commit: str) -> str:
    """The page template filled with the sections (anchor, title, content HTML)."""
    navigation = "".join(fill(NAV_LINK, anchor=anchor, title=title)
                         for anchor, title, _ in sections)
    body = "\n".join(fill(SECTION, anchor=anchor, title=title, content=Html(content))
                     for anchor, title, content in sections)
    stamp = f"commit {commit} · built {built_at} · data {data_dir()}"
    page = Template(PAGE_TEMPLATE.read_text(encoding="utf-8"))
    return fill(page, stamp=stamp, navigation=Html(navigation), sections=Html(body))


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
                inputs.problems["metadata"] = (f"{relative_path(metadata_path)} is unreadable: "
                                               f"{error}")
        else:
            inputs.problems["metadata"] = (f"{relative_path(metadata_path)} is missing "
                                           f"(r11_get_metadata_table.py writes it)")
        return inputs

    def read_oof(self, path: Path) -> tuple[np.ndarray | None, str]:
        """An OOF table as an array in the labels' row order, or (None, why not)."""
        if not path.exists():
            return None, f"{relative_path(path)} is missing"
        try:
            table = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False,
                                na_values=[""])
        except (OSError, ValueError) as error:
            return None, f"{relative_path(path)} is unreadable: {error}"
        absent = [c for c in ["filename"] + self.classes if c not in table.columns]
        if absent:
            return None, f"{relative_path(path)} lacks column(s) {absent[:3]}"
        table = table.drop_duplicates("filename").set_index("filename")
        names = self.labels_table["filename"]
        missing = int((~names.isin(table.index)).sum())
        if missing:
            return None, f"{relative_path(path)} has no row for {missing} train video(s)"
        values = table.loc[names, self.classes].to_numpy(np.float64)
        if not np.isfinite(values).all():
            return None, f"{relative_path(path)} holds NaN or infinite probabilities"
        return values, ""

