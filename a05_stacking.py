"""Level-2 module: what the stackers and the ensemble read and how a fitted one is applied.

Shared by r48 (neighbour features), r50 (fits the stackers), r60 (the ensemble) and r80
(applies a trained stack to new clips), so that new clips go through exactly the code the
chain's own test rows went through:

- neighbour features of videos from their capture-time neighbours' level-1 predictions;
- a stacker's feature table (metadata and statistics, level-1 logits, their blend, the
  neighbour features) and the base logits it corrects;
- a saved stacker fold (LightGBM per class, XGBoost multi-output, Keras MLP) applied to it;
- the ensemble's class weights applied to level-2 (or level-1) predictions.

Adversarial validation of these inputs is in a05_adversarial.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from a00_common import level1_dir, predictions_dir
from a00_io import read_fold_table, read_json
from a03_networks import logit

STACKER_KINDS = ("lgbm", "xgb", "mlp")
# level-1 probabilities enter the stackers as logits of the probabilities clipped to
# [LEVEL1_LOGIT_CLIP, 1 - LEVEL1_LOGIT_CLIP]: a 0 or 1 from a model stays finite
LEVEL1_LOGIT_CLIP = 1e-5


# ----------------------------------------------------------------------------- tables on disk

# the test-row table that goes with a table of train rows, and their files' extension, by
# file suffix
TEST_TABLE_SUFFIX = {"oof": "test", "train_by_fold": "test_by_fold"}
TABLE_EXTENSION = {"oof": ".csv", "train_by_fold": ".npz"}


def models_with_tables(folder: Path, suffix: str) -> list[str]:
    """Sorted names of the models (or stackers) with both a `<name>_<suffix>` table of train
    rows in `folder` (`.csv`, or `.npz` for the by-fold tables) and its test-row table (`oof`
    goes with `test`, `train_by_fold` with `test_by_fold`): the ones whose predictions a
    later stage can read."""
    test_suffix, extension = TEST_TABLE_SUFFIX[suffix], TABLE_EXTENSION[suffix]
    ending = f"_{suffix}{extension}"
    return sorted(path.name[:-len(ending)] for path in Path(folder).glob(f"*{ending}")
                  if (Path(folder) / f"{path.name[:-len(ending)]}_{test_suffix}{extension}")
                  .exists())


# ----------------------------------------------------------------------------- neighbours

def group_rows(groups: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """The rows where `mask` holds, split by group, each in row order: one hashing pass over
    the rows, not one mask per group (with thousands of cameras that would be quadratic)."""
    rows = np.flatnonzero(mask)
    positions = pd.Series(rows).groupby(np.asarray(groups)[rows], sort=False).indices
    return [rows[np.sort(indices)] for indices in positions.values()]


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
    for members in group_rows(groups, ~np.isnan(capture_seconds)):
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


def fold_views(model: str, train_names, test_names, train_folds, classes,
               folds: list[int]) -> dict:
    """{fold g: values of every video in view g (train rows, then test rows)}: a train video
    of fold g through its OOF prediction (the fold-g model), a test video through the fold-g
    model's test prediction; rows of other folds are NaN (they are not in view g)."""
    train = read_fold_table(level1_dir() / f"{model}_train_by_fold.npz")
    test = read_fold_table(level1_dir() / f"{model}_test_by_fold.npz")
    if train is None or test is None:
        raise SystemExit(f"{model}'s by-fold tables are missing or unreadable: rerun r31/r40")
    views = {}
    for fold in folds:
        inside = np.asarray(train_folds) == fold
        train_part = train[train["fold"] == fold].set_index("filename").reindex(
            [name for name, own in zip(train_names, inside) if own])
        test_part = test[test["fold"] == fold].set_index("filename").reindex(list(test_names))
        if train_part[classes].isna().any().any():
            raise SystemExit(f"{model}_train_by_fold.npz lacks fold {fold}'s own rows; rerun r31")
        if test_part[classes].isna().any().any():
            raise SystemExit(f"{model}_test_by_fold.npz lacks fold {fold}; rerun r40")
        values = np.full((len(train_names) + len(test_names), len(classes)), np.nan)
        values[np.flatnonzero(inside)] = train_part[classes].to_numpy(float)
        values[len(train_names):] = test_part[classes].to_numpy(float)
        views[fold] = values
    return views


def test_views(train_seconds, train_groups, train_folds, test_seconds, test_groups,
               test_names, folds: list[int]) -> np.ndarray:
    """The fold view each test video reads: the fold of the train video nearest in time on
    its camera (earlier on a tie); without one (no capture time, or no train video on its
    camera), a fold drawn from a digest of its name, so the choice never depends on order."""
    import hashlib
    views = np.array([folds[int(hashlib.blake2b(name.encode(), digest_size=8).hexdigest(), 16)
                            % len(folds)] for name in test_names], dtype=int)
    test_groups, train_groups = np.asarray(test_groups), np.asarray(train_groups)
    train_of_group = {train_groups[rows[0]]: rows
                      for rows in group_rows(train_groups, ~np.isnan(train_seconds))}
    for members in group_rows(test_groups, ~np.isnan(test_seconds)):
        candidates = train_of_group.get(test_groups[members[0]])
        if candidates is None:
            continue
        candidates = candidates[np.argsort(train_seconds[candidates], kind="stable")]
        times = train_seconds[candidates]
        after = np.searchsorted(times, test_seconds[members], side="left")
        before = np.clip(after - 1, 0, len(times) - 1)
        after = np.clip(after, 0, len(times) - 1)
        nearer = np.where(np.abs(times[after] - test_seconds[members])
                          < np.abs(test_seconds[members] - times[before]), after, before)
        views[members] = np.asarray(train_folds)[candidates[nearer]]
    return views


def build_features(train_names, test_names, classes, folds_table, metadata, models,
                   k_values, per_model: bool) -> tuple:
    """Neighbour features as (train table, test table); see r48 for the views.

    View g is the timeline of the train videos of fold g and every test video, each valued
    by a fold-g model that never trained on it (OOF for the train videos, the fold-g model's
    test prediction for the test videos). A train video of fold g reads view g, so no label
    of fold g, its own included, reaches its features. A test video reads the view of its
    nearest train video in time on its camera (`test_views`): there, as for that train
    video, the clips of its own visit are on the timeline. The test table's `view` column
    says which fold's view each test row read."""
    names = list(train_names) + list(test_names)
    info = metadata.set_index("filename").loc[names]
    capture = pd.to_datetime(info["capture_time"], errors="coerce", utc=True)
    seconds = ((capture - pd.Timestamp("2000-01-01", tz="UTC")).dt.total_seconds()
               .to_numpy(float))
    cameras = info["camera"].fillna("").astype(str).to_numpy()
    groups = np.where(cameras == "", "all videos", cameras)
    fold_of_train = folds_table.set_index("filename").loc[list(train_names), "fold"] \
        .to_numpy().astype(int)
    fold_numbers = sorted(int(k) for k in np.unique(fold_of_train))
    sources = {model: fold_views(model, train_names, test_names, fold_of_train, classes,
                                 fold_numbers) for model in models}
    blocks = [("", {fold: np.mean([sources[m][fold] for m in models], axis=0)
                    for fold in fold_numbers})]
    if per_model and len(models) > 1:
        blocks += [(f"{model}_", sources[model]) for model in models]
    n_train = len(train_names)
    view_of_test = test_views(seconds[:n_train], groups[:n_train], fold_of_train,
                              seconds[n_train:], groups[n_train:], list(test_names),
                              fold_numbers)
    train_parts, test_parts = [], []
    for prefix, views in blocks:
        train_block = test_block = None
        for fold in fold_numbers:
            # videos outside the view have no place on its timeline
            in_view = np.r_[fold_of_train == fold, np.ones(len(test_names), dtype=bool)]
            features = neighbor_features(np.where(in_view, seconds, np.nan), groups,
                                         views[fold], k_values, f"neighbor_{prefix}", classes)
            if train_block is None:
                train_block = pd.DataFrame(index=range(n_train), columns=features.columns,
                                           dtype=float)
                test_block = pd.DataFrame(index=range(len(test_names)),
                                          columns=features.columns, dtype=float)
            rows = np.flatnonzero(fold_of_train == fold)
            train_block.iloc[rows] = features.iloc[rows].to_numpy()
            rows = np.flatnonzero(view_of_test == fold)
            test_block.iloc[rows] = features.iloc[n_train + rows].to_numpy()
        train_parts.append(train_block)
        test_parts.append(test_block)
    train_table = pd.concat(train_parts, axis=1)
    test_table = pd.concat(test_parts, axis=1)
    train_table.insert(0, "filename", list(train_names))
    test_table.insert(0, "filename", list(test_names))
    test_table.insert(1, "view", view_of_test)
    return train_table, test_table


# ----------------------------------------------------------------------------- stacker inputs

def read_rows(path, filenames, what: str) -> pd.DataFrame:
    if not path.exists():
        raise SystemExit(f"{path} is missing: {what}")
    table = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False, na_values=[""])
    return read_rows_of(table, path, filenames, what)


class FeatureTable:
    """A stacker's inputs: the feature matrix, each column's class (None = all classes), the
    level-1 probabilities, and the base logits that the stackers learn to correct."""

    def __init__(self, frame: pd.DataFrame, column_class: list, level1: np.ndarray):
        self.frame, self.column_class, self.level1 = frame, column_class, level1
        self._matrix = frame.to_numpy(np.float32)
        self.base_logits = logit(level1.mean(axis=0), LEVEL1_LOGIT_CLIP) if len(level1) else \
            np.zeros((len(frame), 0))

    @property
    def names(self) -> list[str]:
        return list(self.frame.columns)

    def matrix(self) -> np.ndarray:
        return self._matrix

    def set_base(self, weights: np.ndarray) -> None:
        """The base: the level-1 blend with these weights (fitted on the outer fold's rows)."""
        self.base_logits = logit(np.tensordot(weights, self.level1, axes=1), LEVEL1_LOGIT_CLIP)

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


@functools.lru_cache(maxsize=32)
def _by_fold_table(path: str, modified_ns: int, size: int) -> pd.DataFrame:
    """A by-fold table, parsed once for all the folds read from it (keyed on the file's
    modification time and size, so a rewritten file is read again)."""
    table = read_fold_table(path)
    if table is None:
        raise SystemExit(f"{path} is unreadable: rerun r31/r40")
    return table


def read_fold_rows(path, filenames, fold: int, what: str) -> pd.DataFrame:
    """The rows of one fold of a by-fold table (a `fold` column), for these videos."""
    if not path.exists():
        raise SystemExit(f"{path} is missing: {what}")
    status = path.stat()
    table = _by_fold_table(str(path), status.st_mtime_ns, status.st_size)
    if "fold" not in table.columns:
        raise SystemExit(f"{path} has no fold column (made by an older version): {what}")
    return read_rows_of(table[table["fold"] == fold].drop(columns="fold"), path, filenames,
                        f"{what} (fold {fold})")


def read_rows_of(table: pd.DataFrame, path, filenames, what: str) -> pd.DataFrame:
    table = table.set_index("filename")
    absent = [name for name in filenames if name not in table.index]
    if absent:
        raise SystemExit(f"{path} lacks {len(absent)} video(s), e.g. {absent[0]!r}: {what}")
    return table.loc[list(filenames)]


def build_feature_table(split: str, filenames, classes: list[str], models: list[str],
                        use_neighbors: bool, use_site: bool = False,
                        fold: int | None = None) -> FeatureTable:
    """Label-free features of `filenames`: metadata + statistics, level-1 predictions as
    logits, their mean ("blend"), the neighbour features, and with `use_site` the site
    columns (NaN until `FeatureTable.set_site` fills them per outer fold: they are made of
    labels).

    Train rows read their OOF predictions (each from its own fold's models). Test rows read
    the fold-`fold` models' predictions, one model per row as for the train rows, which is
    what the stacker of outer fold `fold` sees on its validation rows; so a level-1 input
    means the same for train and test rows. Neighbour features are r48's (one view per row,
    for train and test rows alike; see r48 and PIPELINE.md)."""
    from a03_models import load_tabular
    if split == "test" and fold is None:
        raise ValueError("build_feature_table: test rows need the fold whose view they read")
    tabular = load_tabular(filenames).reset_index(drop=True).add_prefix("meta:")
    parts, owners = [tabular], [None] * tabular.shape[1]
    probabilities = []
    for model in models:
        what = f"rerun r31/r40 for {model}"
        table = read_rows(level1_dir() / f"{model}_oof.csv", filenames, what) \
            if split == "train" else \
            read_fold_rows(level1_dir() / f"{model}_test_by_fold.npz", filenames, fold, what)
        probabilities.append(table[classes].to_numpy(np.float64))
        parts.append(pd.DataFrame(logit(probabilities[-1], LEVEL1_LOGIT_CLIP),
                                  columns=[f"l1:{model}:{c}" for c in classes]))
        owners += list(classes)
    level1 = np.stack(probabilities) if probabilities else \
        np.zeros((0, len(filenames), len(classes)))
    mean_logits = logit(level1.mean(axis=0), LEVEL1_LOGIT_CLIP) if probabilities else \
        np.zeros((len(filenames), len(classes)))
    # the blend of every class is global: "blank" or "human" likely informs every species
    parts.append(pd.DataFrame(mean_logits, columns=[f"blend:{c}" for c in classes]))
    owners += [None] * len(classes)
    if use_neighbors:
        what = "run r48_neighbor_features.py"
        table = read_rows(predictions_dir() / f"neighbors_{'oof' if split == 'train' else 'test'}"
                                               f".csv", filenames, what)
        table = table.drop(columns="view", errors="ignore").reset_index(drop=True)
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
    """Median-imputes and standardises with training statistics; clips outliers (MLP input).

    Not sklearn's SimpleImputer + StandardScaler: a fitted sklearn object is saved only by
    pickling, and a stack is loaded on other machines, where nothing is unpickled; these
    three vectors go to JSON (`as_dict`) and come back exactly (`from_dict`)."""

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


def predict_saved_stacker(base: str, folder: Path, tables: dict, rows,
                          fold_weights: dict, classes: list[str], settings: dict,
                          cameras=None) -> np.ndarray:
    """Mean over the saved fold stackers, each on its fold's view of the rows (`tables`: fold
    number -> FeatureTable) and its fold's level-1 blend, clipped to [0, 1].

    `fold_weights` maps fold number -> the blend weights r50 fitted for that fold. A stacker
    with site features reads `site_counts.csv` beside its fold files and `cameras` (one per
    row of the table): each fold's site columns come from the train clips outside it."""
    predictions = []
    counts = pd.read_csv(folder / "site_counts.csv", dtype={"camera": str},
                         keep_default_na=False) if settings.get("site_features") else None
    for fold, weights in fold_weights.items():
        table = tables[int(fold)]
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
