"""Level-2 module: what the stackers and the ensemble read and how a fitted one is applied.

Shared by r48 (neighbour features), r50 (fits the stackers), r60 (the ensemble) and r80
(applies a trained stack to new clips), so that new clips go through exactly the code the
chain's own test rows went through:

- neighbour features of videos from their capture-time neighbours' level-1 predictions;
- a stacker's feature table (metadata and statistics, level-1 logits, their blend, the
  neighbour features) and the base logits it corrects;
- a saved stacker fold (LightGBM per class, XGBoost multi-output, Keras MLP) applied to it;
- the ensemble's class weights applied to level-2 (or level-1) predictions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from a00_common import level1_dir, predictions_dir, read_json

STACKER_KINDS = ("lgbm", "xgb", "mlp")


# ----------------------------------------------------------------------------- neighbours

def neighbor_features(capture_seconds: np.ndarray, groups: np.ndarray, values: np.ndarray,
                      k_values, prefix: str, class_names) -> pd.DataFrame:
    """Neighbour means of `values` (videos × classes) within each group, ordered by time.

    For video i at position p of its group: mean of the values at positions p-K..p+K except
    p (clipped at the group's ends), the values at p-1 and p+1 (NaN at an end), the gaps in
    seconds to them, and the group size. Videos without a capture time get NaN.
    """
    count, n_classes = values.shape
    columns = {}
    means = {k: np.full((count, n_classes), np.nan) for k in k_values}
    previous_values = np.full((count, n_classes), np.nan)
    next_values = np.full((count, n_classes), np.nan)
    gap_previous = np.full(count, np.nan)
    gap_next = np.full(count, np.nan)
    group_size = np.zeros(count)
    known = ~np.isnan(capture_seconds)
    for group in pd.unique(groups[known]):
        members = np.flatnonzero(known & (groups == group))
        members = members[np.argsort(capture_seconds[members], kind="stable")]
        size = len(members)
        group_size[members] = size
        ordered = values[members]
        cumulative = np.vstack([np.zeros((1, n_classes)), np.cumsum(ordered, axis=0)])
        positions = np.arange(size)
        for k in k_values:
            low = np.maximum(positions - k, 0)
            high = np.minimum(positions + k, size - 1)
            total = cumulative[high + 1] - cumulative[low] - ordered
            neighbours = (high - low)[:, None].astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                means[k][members] = np.where(neighbours > 0, total / neighbours, np.nan)
        times = capture_seconds[members]
        previous_values[members[1:]] = ordered[:-1]
        next_values[members[:-1]] = ordered[1:]
        gap_previous[members[1:]] = np.diff(times)
        gap_next[members[:-1]] = np.diff(times)
    for k in k_values:
        for column, name in enumerate(class_names):
            columns[f"{prefix}mean{k}_{name}"] = means[k][:, column]
    for column, name in enumerate(class_names):
        columns[f"{prefix}previous_{name}"] = previous_values[:, column]
        columns[f"{prefix}next_{name}"] = next_values[:, column]
    columns[f"{prefix}log_gap_previous"] = np.log1p(gap_previous)
    columns[f"{prefix}log_gap_next"] = np.log1p(gap_next)
    columns[f"{prefix}group_size"] = group_size
    return pd.DataFrame(columns)


def fold_views(model: str, train_names, test_names, classes, folds: list[int]) -> dict:
    """{fold f: predictions of fold-f models on all videos (train, then test); 'test': mean}."""
    train = pd.read_csv(level1_dir() / f"{model}_train_by_fold.csv", dtype={"filename": str},
                        keep_default_na=False)
    test = pd.read_csv(level1_dir() / f"{model}_test_by_fold.csv", dtype={"filename": str},
                       keep_default_na=False)
    views = {}
    for fold in folds:
        train_part = train[train["fold"] == fold].set_index("filename").loc[list(train_names)]
        test_part = test[test["fold"] == fold].set_index("filename").reindex(list(test_names))
        if test_part[classes].isna().any().any():
            raise SystemExit(f"{model}_test_by_fold.csv lacks fold {fold}; rerun r40")
        views[fold] = np.vstack([train_part[classes].to_numpy(float),
                                 test_part[classes].to_numpy(float)])
    views["test"] = np.mean([views[fold] for fold in folds], axis=0)
    return views


def build_features(train_names, test_names, classes, folds_table, metadata, models,
                   k_values, per_model: bool) -> tuple:
    """Neighbour features of train videos (each fold through its own fold models) and of test
    videos (through the fold mean), as (train table, test table)."""
    names = list(train_names) + list(test_names)
    info = metadata.set_index("filename").loc[names]
    capture = pd.to_datetime(info["capture_time"], errors="coerce", utc=True)
    seconds = ((capture - pd.Timestamp("2000-01-01", tz="UTC")).dt.total_seconds()
               .to_numpy(float))
    cameras = info["camera"].fillna("").astype(str).to_numpy()
    groups = np.where(cameras == "", "all videos", cameras)
    fold_of_train = folds_table.set_index("filename").loc[list(train_names), "fold"].to_numpy()
    fold_numbers = sorted(int(k) for k in np.unique(fold_of_train))
    sources = {model: fold_views(model, train_names, test_names, classes, fold_numbers)
               for model in models}
    blocks = [("", {key: np.mean([sources[m][key] for m in models], axis=0)
                    for key in fold_numbers + ["test"]})]
    if per_model and len(models) > 1:
        blocks += [(f"{model}_", sources[model]) for model in models]
    n_train = len(train_names)
    train_parts, test_parts = [], []
    for prefix, views in blocks:
        train_block = None
        for fold in fold_numbers:
            features = neighbor_features(seconds, groups, views[fold], k_values,
                                         f"neighbor_{prefix}", classes)
            rows = np.flatnonzero(fold_of_train == fold)
            if train_block is None:
                train_block = pd.DataFrame(index=range(n_train), columns=features.columns,
                                           dtype=float)
            train_block.iloc[rows] = features.iloc[rows].to_numpy()
        test_features = neighbor_features(seconds, groups, views["test"], k_values,
                                          f"neighbor_{prefix}", classes)
        train_parts.append(train_block)
        test_parts.append(test_features.iloc[n_train:].reset_index(drop=True))
    train_table = pd.concat(train_parts, axis=1)
    test_table = pd.concat(test_parts, axis=1)
    train_table.insert(0, "filename", list(train_names))
    test_table.insert(0, "filename", list(test_names))
    return train_table, test_table



# ----------------------------------------------------------------------------- stacker inputs

def read_rows(path, filenames, what: str) -> pd.DataFrame:
    if not path.exists():
        raise SystemExit(f"{path} is missing: {what}")
    table = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False, na_values=[""])
    table = table.set_index("filename")
    absent = [name for name in filenames if name not in table.index]
    if absent:
        raise SystemExit(f"{path} lacks {len(absent)} video(s), e.g. {absent[0]!r}: {what}")
    return table.loc[list(filenames)]


class FeatureTable:
    """A stacker's inputs: the feature matrix, each column's class (None = all classes), the
    level-1 probabilities, and the base logits that the stackers learn to correct."""

    def __init__(self, frame: pd.DataFrame, column_class: list, level1: np.ndarray):
        self.frame, self.column_class, self.level1 = frame, column_class, level1
        self._matrix = frame.to_numpy(np.float32)
        self.base_logits = logits(level1.mean(axis=0)) if len(level1) else \
            np.zeros((len(frame), 0))

    @property
    def names(self) -> list[str]:
        return list(self.frame.columns)

    def matrix(self) -> np.ndarray:
        return self._matrix

    def set_base(self, weights: np.ndarray) -> None:
        """The base: the level-1 blend with these weights (fitted on the outer fold's rows)."""
        self.base_logits = logits(np.tensordot(weights, self.level1, axes=1))

    def set_site(self, values: np.ndarray) -> None:
        """The site columns' values for the current outer fold (see `site_features`)."""
        columns = [i for i, name in enumerate(self.names) if name.startswith("site:")]
        self._matrix[:, columns] = values.astype(np.float32)

    def class_columns(self, class_name: str) -> np.ndarray:
        """Columns a per-class model reads: global ones and those of its own class."""
        return np.flatnonzero([owner is None or owner == class_name
                               for owner in self.column_class])


def _owner(column: str, classes: list[str]):
    """The class a neighbour column belongs to (longest class name it ends with)."""
    matches = [c for c in classes if column.endswith("_" + c)]
    return max(matches, key=len) if matches else None


def logits(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, 1e-5, 1 - 1e-5)
    return np.log(clipped / (1 - clipped))


def build_feature_table(split: str, filenames, classes: list[str], models: list[str],
                        use_neighbors: bool, use_site: bool = False) -> FeatureTable:
    """Label-free features of `filenames`: metadata + statistics, level-1 predictions (OOF for
    train, fold-mean for test) as logits, their mean ("blend"), the neighbour features, and
    with `use_site` the site columns (NaN until `FeatureTable.set_site` fills them per outer
    fold: they are made of labels)."""
    from a03_models import load_tabular
    suffix = "oof" if split == "train" else "test"
    tabular = load_tabular(filenames).reset_index(drop=True).add_prefix("meta:")
    parts, owners = [tabular], [None] * tabular.shape[1]
    probabilities = []
    for model in models:
        table = read_rows(level1_dir() / f"{model}_{suffix}.csv", filenames,
                            f"rerun r31/r40 for {model}")
        probabilities.append(table[classes].to_numpy(np.float64))
        parts.append(pd.DataFrame(logits(probabilities[-1]),
                                  columns=[f"l1:{model}:{c}" for c in classes]))
        owners += list(classes)
    level1 = np.stack(probabilities) if probabilities else \
        np.zeros((0, len(filenames), len(classes)))
    mean_logits = logits(level1.mean(axis=0)) if probabilities else \
        np.zeros((len(filenames), len(classes)))
    # the blend of every class is global: "blank" or "human" likely informs every species
    parts.append(pd.DataFrame(mean_logits, columns=[f"blend:{c}" for c in classes]))
    owners += [None] * len(classes)
    if use_neighbors:
        table = read_rows(predictions_dir() / f"neighbors_{suffix}.csv", filenames,
                            "run r48_neighbor_features.py").reset_index(drop=True)
        owners += [_owner(column, classes) for column in table.columns]
        parts.append(table.add_prefix("nb:"))
    if use_site:
        names = site_feature_names(classes)
        parts.append(pd.DataFrame(np.nan, index=range(len(filenames)), columns=names))
        owners += list(classes)
    features = pd.concat(parts, axis=1).astype(np.float32)
    features.index = list(filenames)
    return FeatureTable(features, owners, level1)


# ----------------------------------------------------------------------------- site features

def site_feature_names(classes: list[str]) -> list[str]:
    return [f"site:{name}" for name in classes]


def site_counts(cameras, folds, labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Per (camera, fold) of the train clips: the number of clips and of positives per class
    ("" = clips without a camera: they count toward the prior only). What a stack carries
    instead of a label per clip (a camera with one clip in a fold does show its labels)."""
    frame = pd.DataFrame(labels, columns=classes)
    frame.insert(0, "camera", pd.Series(cameras).fillna("").astype(str).to_numpy())
    frame.insert(1, "fold", np.asarray(folds, dtype=int))
    frame.insert(2, "clips", 1)
    return frame.groupby(["camera", "fold"], as_index=False)[["clips"] + classes].sum()


def site_features(cameras, excluded_folds: list, counts: pd.DataFrame, classes: list[str],
                  smoothing: float) -> np.ndarray:
    """Per row: its camera's class frequencies over the train clips outside `excluded_folds`
    of that row (the row's own fold, and the outer fold a stacker is validated on),
    smoothed toward the same clips' overall frequencies by `smoothing` clips' worth of prior.
    A clip without a camera gets the prior. (No clip count: a train row sees fewer folds
    than a validation or test row, so a count would mean another thing for them.)"""
    cameras = pd.Series(cameras).fillna("").astype(str).to_numpy()
    output = np.zeros((len(cameras), len(classes)))
    columns = ["clips"] + list(classes)
    for excluded in sorted({tuple(sorted(e)) for e in excluded_folds}):
        rows = np.flatnonzero([tuple(sorted(e)) == excluded for e in excluded_folds])
        allowed = counts[~counts["fold"].isin(excluded)]
        totals = allowed[columns].sum().to_numpy(np.float64)
        prior = (totals[1:] + 0.5) / (totals[0] + 1.0)
        by_camera = allowed[allowed["camera"] != ""].groupby("camera")[columns].sum()
        for row in rows:
            camera = cameras[row]
            if camera and camera in by_camera.index:
                values = by_camera.loc[camera].to_numpy(np.float64)
                clips, positives = values[0], values[1:]
            else:
                clips, positives = 0.0, np.zeros(len(classes))
            output[row] = (positives + smoothing * prior) / (clips + smoothing)
    return output


# ----------------------------------------------------------------------------- stackers

def predict_lightgbm_stacker(models, table: FeatureTable, rows) -> np.ndarray:
    import lightgbm
    matrix, base = table.matrix()[rows], table.base_logits[rows]
    output = np.zeros((len(rows), len(models)))
    for column, entry in enumerate(models):
        if "constant" in entry:
            output[:, column] = entry["constant"]
            continue
        booster = lightgbm.Booster(model_str=entry["booster"])
        margin = base[:, column] + booster.predict(matrix[:, entry["columns"]], raw_score=True)
        output[:, column] = 1 / (1 + np.exp(-margin))
    return output


def predict_xgboost_stacker(fitted: tuple, table: FeatureTable, rows) -> np.ndarray:
    import xgboost
    model, class_rounds = fitted
    base = table.base_logits[rows]
    matrix = xgboost.DMatrix(table.matrix()[rows], base_margin=base)
    margin = np.empty(base.shape)
    for rounds in np.unique(class_rounds):
        columns = class_rounds == rounds
        margin[:, columns] = base[:, columns] if rounds == 0 else model.get_booster().predict(
            matrix, output_margin=True, iteration_range=(0, int(rounds))
        ).reshape(base.shape)[:, columns]
    return 1 / (1 + np.exp(-margin))


def build_mlp(feature_count: int, class_count: int, settings: dict):
    """Keras MLP whose sigmoid outputs correct the base logits; the correction starts at 0."""
    import keras
    from keras import layers
    features = keras.Input((feature_count,), name="features")
    base = keras.Input((class_count,), name="base_logits")
    x = layers.Dropout(0.1, name="input_dropout")(features)
    x = layers.Dense(settings["hidden_units"], activation="gelu", name="hidden1")(x)
    x = layers.Dropout(settings["dropout"], name="dropout1")(x)
    x = layers.Dense(settings["hidden_units"] // 2, activation="gelu", name="hidden2")(x)
    x = layers.Dropout(settings["dropout"], name="dropout2")(x)
    correction = layers.Dense(class_count, kernel_initializer="zeros", name="correction")(x)
    margin = layers.Add(name="margin")([base, correction])
    outputs = layers.Activation("sigmoid", name="probabilities")(margin)
    return keras.Model([features, base], outputs, name="stacker_mlp")


class Standardizer:
    """Median-imputes and standardises with training statistics; clips outliers (MLP input)."""

    def __init__(self, features: np.ndarray):
        self.median = np.nan_to_num(np.nanmedian(features, axis=0))
        filled = np.where(np.isnan(features), self.median, features)
        self.mean = filled.mean(axis=0)
        self.scale = filled.std(axis=0) + 1e-6

    def __call__(self, features: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(features), self.median, features)
        return np.clip((filled - self.mean) / self.scale, -5, 5).astype(np.float32)

    def as_dict(self) -> dict:
        return {key: getattr(self, key).tolist() for key in ("median", "mean", "scale")}

    @classmethod
    def from_dict(cls, values: dict) -> "Standardizer":
        standardizer = cls.__new__(cls)
        for key in ("median", "mean", "scale"):
            setattr(standardizer, key, np.asarray(values[key], dtype=np.float64))
        return standardizer




# ----------------------------------------------------------------------------- saved stackers

def load_stacker_fold(base: str, folder: Path, fold: int, classes: list[str], feature_count: int,
                      settings: dict):
    """A fitted stacker fold, read back from r50's files."""
    if base == "lgbm":
        return read_json(folder / f"fold{fold}.lightgbm.json")
    if base == "xgb":
        import xgboost
        model = xgboost.XGBClassifier()
        model.load_model(str(folder / f"fold{fold}.xgboost.json"))
        rounds = read_json(folder / f"fold{fold}.xgboost_rounds.json")
        return model, np.array([int(rounds[name]) for name in classes])
    model = build_mlp(feature_count, len(classes), settings)
    model.load_weights(str(folder / f"fold{fold}.weights.h5"))
    return model, Standardizer.from_dict(read_json(folder / f"fold{fold}.standardizer.json"))


def apply_stacker_fold(base: str, fitted, table: "FeatureTable", rows) -> np.ndarray:
    """Probabilities of a fitted stacker fold for these rows of the table (its base set)."""
    if base == "lgbm":
        return predict_lightgbm_stacker(fitted, table, rows)
    if base == "xgb":
        return predict_xgboost_stacker(fitted, table, rows)
    model, standardize = fitted
    inputs = {"features": standardize(table.matrix()[rows]),
              "base_logits": table.base_logits[rows].astype(np.float32)}
    return np.asarray(model.predict(inputs, batch_size=1024, verbose=0), np.float64)


def predict_saved_stacker(base: str, folder: Path, table: "FeatureTable", rows,
                          fold_weights: dict, classes: list[str], settings: dict,
                          cameras=None) -> np.ndarray:
    """Mean over the saved fold stackers, each on its fold's level-1 blend, clipped to [0, 1].

    `fold_weights` maps fold number -> the blend weights r50 fitted for that fold. A stacker
    with site features reads `site_counts.csv` beside its fold files and `cameras` (one per
    row of the table): each fold's site columns come from the train clips outside it."""
    predictions = []
    counts = pd.read_csv(folder / "site_counts.csv", dtype={"camera": str},
                         keep_default_na=False) if settings.get("site_features") else None
    for fold, weights in fold_weights.items():
        table.set_base(np.asarray(weights, dtype=np.float64))
        if counts is not None:
            table.set_site(site_features(cameras, [{int(fold)}] * len(cameras),
                                         counts, classes, settings["site_smoothing"]))
        fitted = load_stacker_fold(base, folder, int(fold), classes, len(table.names), settings)
        predictions.append(apply_stacker_fold(base, fitted, table, rows))
    return np.clip(np.mean(predictions, axis=0), 0.0, 1.0)


# ----------------------------------------------------------------------------- ensemble

def blend(predictions: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    """(models, rows, classes) × (classes, models) → (rows, classes)."""
    return np.einsum("mrc,cm->rc", predictions, class_weights)




def class_weight_matrix(ensemble: dict, classes: list[str]) -> np.ndarray:
    """(classes, members) weights of r60's ensemble.json (global or per class)."""
    members = ensemble["members"]
    if ensemble["per_class"]:
        return np.array([[ensemble["weights"][name][member] for member in members]
                         for name in classes], dtype=np.float64)
    return np.tile(np.array([ensemble["weights"][member] for member in members],
                            dtype=np.float64), (len(classes), 1))


def apply_ensemble(predictions: np.ndarray, ensemble: dict, classes: list[str]) -> np.ndarray:
    """(members, rows, classes) member predictions -> the ensemble's clipped probabilities."""
    clip = ensemble["clip"]
    return np.clip(blend(predictions, class_weight_matrix(ensemble, classes)), clip, 1 - clip)
