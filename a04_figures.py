"""Figures of the report page (a04_report): matplotlib figures drawn from the run's numbers.

    from a04_figures import figure_style, model_comparison_figure, png_bytes
    with figure_style():
        png = png_bytes(model_comparison_figure(model_rows, prior_oof))

Each figure function takes numbers and tables already read by a04_report and returns a
matplotlib Figure on its own Agg canvas; png_bytes renders it for inlining. A camera's view
(camera_view_png) is a picture of its frames, made with OpenCV. The page's colours live
here too, so that its tables' swatches match the figures.
"""
from __future__ import annotations

import io
import math
import struct

import numpy as np
import pandas as pd

TOP_FEATURES = 20              # bars per stacker in the importance chart
RELIABILITY_BINS = 8           # quantile bins per calibration curve
FIGURE_DPI = 150               # PNG resolution; pages show figures at 100 px per inch
DISPLAY_PIXELS_PER_INCH = 100
CAMERA_VIEW_WIDTH = 120        # page pixels of a camera's picture in the cameras table

LEVEL_COLOURS = {"baseline": "#9d9d9d", "level1": "#4c78a8", "level2": "#f58518",
                 "ensemble": "#54a24b"}
LEVEL_NAMES = {"baseline": "baseline", "level1": "level 1", "level2": "level 2 (stackers)",
               "ensemble": "ensemble"}
GROUP_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2",
                 "#ff9da6", "#9d755d", "#bab0ac", "#eeca3b")

MATPLOTLIB_STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "legend.fontsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "axes.edgecolor": "#888888", "axes.grid": True,
    "grid.color": "#e6e6e6", "grid.linewidth": 0.6, "axes.axisbelow": True,
    "figure.facecolor": "white", "savefig.facecolor": "white",
}


# ----------------------------------------------------------------------------- canvas

def figure_style():
    """The page's matplotlib style, as a context to draw every figure in."""
    import matplotlib
    return matplotlib.rc_context(MATPLOTLIB_STYLE)


def new_figure(width: float, height: float):
    # Figure + the Agg canvas directly: no pyplot, so no global state and no GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), layout=None)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", pad_inches=0.08)
    return buffer.getvalue()


def display_width(png: bytes) -> int:
    """The width in page pixels at which a PNG from png_bytes shows at its drawn size."""
    pixel_width = struct.unpack(">I", png[16:20])[0]   # PNG IHDR width
    return round(pixel_width * DISPLAY_PIXELS_PER_INCH / FIGURE_DPI)


def plain(text: str) -> str:
    """Text for matplotlib: a '$' would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def shorten(text: str, length: int) -> str:
    return text if len(text) <= length else text[:length - 1] + "…"


# ----------------------------------------------------------------------------- figures

def model_comparison_figure(rows: pd.DataFrame, prior_oof: float):
    """One bar per model (rows: level, model, oof_log_loss, test_log_loss, best first), the
    class prior as a dashed line and test losses as diamonds where there are any."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    has_test = rows["test_log_loss"].notna().any()
    figure = new_figure(9.0, 0.42 * len(rows) + 1.3)
    axis = figure.add_subplot()
    positions = np.arange(len(rows))[::-1]
    colours = [LEVEL_COLOURS.get(level, "#bab0ac") for level in rows["level"]]
    axis.barh(positions, rows["oof_log_loss"], color=colours, height=0.68)
    axis.set_yticks(positions, [plain(name) for name in rows["model"]])
    axis.grid(axis="y", visible=False)
    reach = np.nanmax([rows["oof_log_loss"].max(), rows["test_log_loss"].max(), prior_oof])
    for position, value in zip(positions, rows["oof_log_loss"], strict=True):
        axis.text(value + reach * 0.01, position, f"{value:.4f}", va="center", fontsize=8)
    handles = [Patch(color=LEVEL_COLOURS[level], label=LEVEL_NAMES[level])
               for level in ("level1", "level2", "ensemble") if (rows["level"] == level).any()]
    if np.isfinite(prior_oof):
        axis.axvline(prior_oof, color="#444444", linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color="#444444", linestyle="--",
                              label=f"class prior {prior_oof:.4f}"))
    if has_test:
        axis.scatter(rows["test_log_loss"], positions, marker="D", s=18, color="#222222",
                     zorder=3)
        handles.append(Line2D([], [], marker="D", linestyle="", color="#222222", markersize=4,
                              label="test loss (hidden labels)"))
    axis.set_xlim(0, reach * 1.14)
    axis.set_xlabel("OOF mean log loss (lower is better)")
    axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return figure


def reliability_figure(labels: np.ndarray, probabilities: np.ndarray, classes: list[str],
                       class_indices: list[int]):
    """A reliability curve per chosen class: quantile bins of the predicted probabilities
    against the observed frequency, with Wilson intervals, on square-root axes."""
    positives = labels.sum(axis=0)
    columns = 3 if len(class_indices) > 2 else len(class_indices)
    rows_of_plots = math.ceil(len(class_indices) / columns)
    figure = new_figure(3.4 * columns, 3.25 * rows_of_plots)
    for plot_index, class_index in enumerate(class_indices):
        axis = figure.add_subplot(rows_of_plots, columns, plot_index + 1)
        predicted = probabilities[:, class_index]
        observed = labels[:, class_index]
        bin_count = int(np.clip(positives[class_index] // 3, 3, RELIABILITY_BINS))
        bins = reliability_bins(predicted, observed, bin_count)
        upper = min(1.0, max(0.05, bins["mean_predicted"].max(), bins["upper"].max()) * 1.1)
        # square-root axes: most probabilities of a rare class are tiny, and a linear axis
        # would pile their bins on top of each other at the origin
        for set_scale in (axis.set_xscale, axis.set_yscale):
            set_scale("function", functions=(_square_root, np.square))
        ticks = _square_root_ticks(upper)
        axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
        axis.set_yticks(ticks, [f"{t:g}" for t in ticks])
        axis.plot([0, upper], [0, upper], linestyle="--", color="#999999", linewidth=1)
        axis.errorbar(bins["mean_predicted"], bins["observed"],
                      yerr=[bins["observed"] - bins["lower"], bins["upper"] - bins["observed"]],
                      color=LEVEL_COLOURS["ensemble"], marker="o", markersize=4, linewidth=1.3,
                      elinewidth=0.8, capsize=2, clip_on=False)
        # near-equal bins get their size once in the title: labels at every point would
        # pile up where most probabilities are tiny
        equal_bins = bins["count"].max() - bins["count"].min() <= 2
        if not equal_bins:
            for row in bins.itertuples():
                axis.annotate(str(row.count), (row.mean_predicted, row.observed),
                              textcoords="offset points", xytext=(4, -9), fontsize=6.5,
                              color="#555555")
        sizes = (f"{bins['count'].min()}" if bins["count"].min() == bins["count"].max()
                 else f"{bins['count'].min()}–{bins['count'].max()}")
        bin_text = (f"{len(bins)} bins of {sizes} videos" if equal_bins
                    else f"{len(bins)} bins, videos per bin marked")
        axis.set_xlim(0, upper)
        axis.set_ylim(0, upper)
        axis.set_aspect("equal")
        axis.set_title(f"{plain(classes[class_index])} ({int(positives[class_index])} "
                       f"positives)\n{bin_text}", fontsize=9)
        axis.set_xlabel("mean predicted probability")
        if plot_index % columns == 0:
            axis.set_ylabel("observed frequency")
    figure.tight_layout()
    return figure


def reliability_bins(predicted: np.ndarray, observed: np.ndarray, bins: int) -> pd.DataFrame:
    """Quantile bins: mean prediction, observed frequency with a Wilson interval, count."""
    edges = np.unique(np.quantile(predicted, np.linspace(0, 1, bins + 1)))
    bin_of_row = np.searchsorted(edges[1:-1], predicted, side="right")
    rows = []
    for index in np.unique(bin_of_row):
        inside = bin_of_row == index
        count = int(inside.sum())
        frequency = float(observed[inside].mean())
        lower, upper = wilson_interval(frequency, count)
        rows.append({"mean_predicted": float(predicted[inside].mean()), "observed": frequency,
                     "lower": lower, "upper": upper, "count": count})
    return pd.DataFrame(rows)


def _square_root(values):
    return np.sqrt(np.clip(values, 0, None))


def _square_root_ticks(upper: float) -> list[float]:
    """Round ticks up to `upper`, thinned so that none crowd on the square-root axis."""
    ticks, spacing = [], 0.13 * math.sqrt(upper)
    for tick in (0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0):
        if tick <= upper and (not ticks or math.sqrt(tick) - math.sqrt(ticks[-1]) >= spacing):
            ticks.append(tick)
    return ticks


def wilson_interval(frequency: float, count: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a binomial frequency that stays sensible for 0/n and n/n."""
    if count == 0:
        return 0.0, 1.0
    denominator = 1 + z * z / count
    centre = (frequency + z * z / (2 * count)) / denominator
    half = z * math.sqrt(frequency * (1 - frequency) / count + z * z / (4 * count * count)) \
        / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def importance_figure(tables: dict, colour_of: dict, members: set):
    """The top features of each stacker (tables: name -> feature, share, group, largest
    share first), coloured by feature group; members of the ensemble are marked."""
    from matplotlib.patches import Patch
    columns = min(2, len(tables))
    rows_of_plots = math.ceil(len(tables) / columns)
    longest = max(min(len(t), TOP_FEATURES) for t in tables.values())
    figure = new_figure(5.6 * columns, (0.2 * longest + 0.9) * rows_of_plots + 0.5)
    for plot_index, (name, table) in enumerate(tables.items()):
        axis = figure.add_subplot(rows_of_plots, columns, plot_index + 1)
        top = table.head(TOP_FEATURES)
        positions = np.arange(len(top))[::-1]
        axis.barh(positions, top["share"] * 100, color=[colour_of[g] for g in top["group"]],
                  height=0.72)
        axis.set_yticks(positions, [plain(shorten(f, 34)) for f in top["feature"].astype(str)],
                        fontsize=7)
        axis.grid(axis="y", visible=False)
        axis.set_xlabel("share of importance (%)")
        axis.set_title(f"{plain(name)}" + (" (in ensemble)" if name in members else ""))
    figure.legend(handles=[Patch(color=colour, label=plain(group))
                           for group, colour in colour_of.items()],
                  loc="lower center", ncols=min(len(colour_of), 6), frameon=False)
    figure.tight_layout(rect=(0, 0.06 if rows_of_plots == 1 else 0.035, 1, 1))
    return figure


def weights_heatmap(weights_table: pd.DataFrame):
    """The ensemble's weight of each member (columns) for each class (rows)."""
    classes, members = list(weights_table.index), list(weights_table.columns)
    figure = new_figure(2.4 + 1.05 * len(members), 0.26 * len(classes) + 1.1)
    axis = figure.add_subplot()
    values = weights_table.to_numpy()
    image = axis.imshow(values, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    axis.xaxis.tick_top()   # a tall table reads best with its column names on top
    axis.set_xticks(range(len(members)), [plain(m) for m in members], rotation=30, ha="left")
    axis.set_yticks(range(len(classes)), [plain(str(c)) for c in classes], fontsize=7.5)
    axis.grid(False)
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            if values[row, column] >= 0.005:
                axis.text(column, row, f"{values[row, column]:.2f}", ha="center", va="center",
                          fontsize=6.5, color="white" if values[row, column] > 0.6 else "#222222")
    figure.colorbar(image, ax=axis, fraction=0.06, pad=0.03, label="weight")
    axis.set_title("weight of each member per class")
    figure.tight_layout()
    return figure


def camera_view_png(frames: np.ndarray, width: float, height: float) -> bytes | None:
    """A camera's view as PNG: the median of one clip's frames, CAMERA_VIEW_WIDTH wide and
    back at the clip's aspect ratio (width × height, its true pixels); None if unencodable."""
    import cv2

    from a07_cameras import background
    view = background(frames)
    shown = (CAMERA_VIEW_WIDTH, max(int(round(CAMERA_VIEW_WIDTH * height / max(width, 1))), 1))
    view = cv2.resize(view, shown, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".png", cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
    return data.tobytes() if ok else None
