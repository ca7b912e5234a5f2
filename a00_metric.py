"""The competition's metric (mean binary log loss over every row × class cell), the class
prior, blend weights that minimise it, and the prediction tables it is computed on (exactly
the expected rows, the class columns, probabilities in [0, 1])."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# probabilities are clipped to [PROBABILITY_CLIP, 1 - PROBABILITY_CLIP] before the log
PROBABILITY_CLIP = 1e-15


def mean_log_loss(labels, probabilities) -> float:
    """Mean binary log loss over every (row, class) cell, as scored by Pri-matrix.

    Equals sklearn.metrics.log_loss(y.ravel(), p.ravel(), labels=[0, 1]); sklearn on the
    2-D matrix would treat rows as one multi-class distribution instead (sklearn #10157).
    """
    labels = np.asarray(labels, dtype=np.float64)
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64),
                            PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    if labels.shape != probabilities.shape:
        raise ValueError(f"labels {labels.shape} and predictions {probabilities.shape} differ")
    if labels.size == 0:
        raise ValueError("mean_log_loss of an empty table")
    return float(-np.mean(labels * np.log(probabilities)
                          + (1 - labels) * np.log(1 - probabilities)))


def per_class_log_loss(labels, probabilities) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float64)
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64),
                            PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return -np.mean(labels * np.log(probabilities)
                    + (1 - labels) * np.log(1 - probabilities), axis=0)


def prior_probabilities(labels: np.ndarray, smoothing: float = 0.5) -> np.ndarray:
    """Class frequencies with add-half smoothing, so an absent class is not predicted 0."""
    labels = np.asarray(labels, dtype=np.float64)
    return (labels.sum(axis=0) + smoothing) / (len(labels) + 2 * smoothing)


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def fit_blend_weights(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one that minimise the log loss of the weighted mean.

    `predictions` is (models, rows, classes). Optimised over a softmax parametrisation with
    L-BFGS from equal weights; the loss is convex in the weights, so this is the optimum.
    """
    from scipy.optimize import minimize
    count = predictions.shape[0]
    if count == 1:
        return np.ones(1)
    clipped = np.clip(predictions, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    labels = labels.astype(np.float64)

    def loss_and_gradient(parameters):
        weights = _softmax(parameters)
        blend = np.clip(np.tensordot(weights, clipped, axes=1), PROBABILITY_CLIP,
                        1 - PROBABILITY_CLIP)
        loss = -np.mean(labels * np.log(blend) + (1 - labels) * np.log(1 - blend))
        derivative = (-(labels / blend) + (1 - labels) / (1 - blend)) / labels.size
        gradient_weights = np.array([np.sum(derivative * clipped[m]) for m in range(count)])
        # chain rule through the softmax
        gradient = weights * (gradient_weights - np.dot(weights, gradient_weights))
        return loss, gradient

    result = minimize(loss_and_gradient, np.zeros(count), jac=True, method="L-BFGS-B",
                      options={"maxiter": 500, "gtol": 1e-10})
    weights = _softmax(result.x)
    weights[weights < 1e-6] = 0.0
    return weights / weights.sum()


# ----------------------------------------------------------------------------- predictions

def read_prediction_table(path: Path, filenames, classes: list[str]) -> pd.DataFrame:
    """Reads a prediction table and checks it has exactly these rows and columns."""
    table = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False, na_values=[""])
    check_prediction_table(table, filenames, classes, str(path))
    return table


def check_prediction_table(table: pd.DataFrame, filenames, classes: list[str],
                           where: str) -> None:
    """Same rows in the same order, the class columns, finite probabilities in [0, 1]."""
    expected = list(filenames)
    if list(table.columns) != ["filename"] + list(classes):
        raise ValueError(f"{where}: columns must be filename + the {len(classes)} classes "
                         f"in the labels' order")
    if table["filename"].tolist() != expected:
        present = set(table["filename"])
        missing = [name for name in expected if name not in present]
        wanted = set(expected)
        extra = [name for name in table["filename"] if name not in wanted]
        first = f"first missing row {missing[0]!r}" if missing else \
            f"first row not asked for {extra[0]!r}" if extra else "the rows are in another order"
        raise ValueError(f"{where}: rows differ from the expected {len(expected)} videos "
                         f"({len(table)} rows, {len(missing)} missing, {len(extra)} extra; "
                         f"{first})")
    values = table[classes].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{where}: NaN or infinite probabilities")
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(f"{where}: probabilities outside [0, 1]")


def prediction_frame(filenames, classes: list[str], probabilities) -> pd.DataFrame:
    frame = pd.DataFrame(np.asarray(probabilities, dtype=np.float64), columns=list(classes))
    frame.insert(0, "filename", list(filenames))
    return frame
