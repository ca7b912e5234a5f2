"""Model zoo module: the first-level models by name, their inputs, and prediction.

A model is a `ModelSpec`: which inputs it reads (a frame-feature set, hash bits, the audio
log-mel, the tabular table, or r10's cached frames as small clips) and how it is built — a
Keras 3 functional model (a03_networks) or a LightGBM one-vs-rest set. r21 trains a
(model, fold) job with a03_training.train_fold; r31/r40 predict with `predict_fold`,
averaging test-time views (`tta_views`).

Inputs are read from r10/r11/r12 outputs (`cache/preprocess_index.csv` + frames,
`metadata/metadata.csv`, `features/<extractor>/…`) by `load_inputs`, aligned to any list of
filenames; videos without frames or audio are flagged (`missing` = 1), never dropped. The
digests here (`input_digest`, `prediction_stamp`) are what r21, r31 and r40 decide "up to
date" by.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from a00_common import cache_dir, features_dir, metadata_dir, models_dir
from a00_io import digest_text, read_frames, read_json
from a03_networks import LOGMEL_FLOOR_DB, SEQUENCE_HEADS, batches, build_keras_model, main_input


# ----------------------------------------------------------------------------- inputs

TABULAR_METADATA_COLUMNS = [
    "width", "height", "fps", "n_frames", "duration", "bit_rate", "size_bytes", "rotation",
    "has_audio", "audio_seconds", "audio_rms_mean", "audio_rms_std", "audio_rms_max",
    "audio_peak", "audio_silent", "audio_zero_crossing_rate", "readable", "frames_decoded",
]
DIGEST_CHUNK_ROWS = 5000          # CSV rows read at a time for a digest
PREDICT_CHUNK = 8192               # videos whose test-time views are in memory at once


def feature_index_path(extractor: str) -> Path:
    """r12's index.csv of an extractor, or a message saying what to run."""
    index_path = features_dir(extractor) / "index.csv"
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} is missing: run r12_extract_features.py "
                                f"--extractor {extractor} first")
    return index_path


class StoredRows:
    """Rows of a stored feature array (a memory map of features.npy), read when indexed.

    A training or prediction job then holds the batch it reads, not every row of its fold:
    the file's pages are the operating system's cache, shared and given back under pressure,
    so a job's own memory does not grow with the number of videos. Indexing returns a copy;
    the rows of `blank` (videos without input) read as `fill` when one is given, and the
    file is never written.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray, blank: np.ndarray | None = None,
                 fill: float | None = None):
        self.array, self.rows, self.fill = array, np.asarray(rows), fill
        self.blank = None if fill is None else np.asarray(blank, dtype=bool)
        self.shape = (len(self.rows), *array.shape[1:])
        self.dtype, self.ndim = array.dtype, array.ndim

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, tuple):   # rows, then within them
            return self[index[0]][(slice(None), *index[1:])] \
                if np.ndim(self.rows[index[0]]) else self[index[0]][index[1:]]
        values = np.array(self.array[self.rows[index]])
        if self.fill is not None:
            blank = self.blank[index]
            if np.ndim(blank):
                values[blank] = self.fill
            elif blank:
                values[...] = self.fill
        return values

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype)


def load_feature_set(extractor: str, filenames, fill_missing: float | None = None) -> dict:
    """Per-step features (as StoredRows: read batch by batch; the rows of videos without
    input read as `fill_missing` when given), per-video statistics (StoredRows too: a
    sequence head never reads them, and for Lite0 they are 10 KB a video) and the missing
    flag of `filenames`, in order."""
    folder = features_dir(extractor)
    index_path = feature_index_path(extractor)
    # three columns, as numbers: a str object a cell would cost ~60 bytes a video each
    index = pd.read_csv(index_path, usecols=["filename", "row", "missing"],
                        dtype={"filename": str, "row": np.int64, "missing": np.int64},
                        keep_default_na=False)
    names = list(filenames)
    positions = pd.Index(index["filename"]).get_indexer(names)
    if (positions < 0).any():
        raise ValueError(f"{index_path}: {int((positions < 0).sum())} video(s) have no "
                         f"features, e.g. {names[int(np.flatnonzero(positions < 0)[0])]!r}; "
                         f"rerun r12 (the video list changed)")
    selected = index["row"].to_numpy()[positions]
    features = np.load(folder / "features.npy", mmap_mode="r", allow_pickle=False)
    statistics = np.load(folder / "statistics.npy", mmap_mode="r", allow_pickle=False)
    config = read_json(folder / "config.json") or {}
    missing = index["missing"].to_numpy()[positions].astype(np.float32)
    return {"steps": StoredRows(features, selected, missing > 0, fill_missing),
            "statistics": StoredRows(statistics, selected),
            "missing": missing,
            "statistic_names": config.get("statistic_names"),
            "hash": config.get("hash", "")}


def _metadata_columns(filenames) -> dict:
    """The tabular table's metadata columns (float64) of `filenames`, in order."""
    wanted = set(TABULAR_METADATA_COLUMNS) | {"filename", "capture_time", "camera_code"}
    metadata = pd.read_csv(metadata_dir() / "metadata.csv", dtype={"filename": str},
                           keep_default_na=False, na_values=[""],
                           usecols=lambda column: column in wanted)
    metadata = metadata.set_index("filename").loc[list(filenames)]
    columns = {}
    for column in TABULAR_METADATA_COLUMNS:
        values = metadata[column] if column in metadata.columns else np.nan
        columns[column] = pd.to_numeric(pd.Series(values, index=metadata.index).replace(
            {"True": 1, "False": 0, True: 1, False: 0}), errors="coerce").to_numpy(np.float64)
    capture = pd.to_datetime(metadata["capture_time"], errors="coerce", utc=True)
    hour = (capture.dt.hour + capture.dt.minute / 60).to_numpy(np.float64)
    columns["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    columns["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    # r11 codes each camera once for all rows, from its name alone, so a code means the
    # same camera in train and test rows whichever rows are loaded together
    columns["camera_code"] = pd.to_numeric(metadata["camera_code"], errors="coerce") \
        .to_numpy(np.float64)
    return columns


def _tabular_parts(filenames) -> list[tuple[list[str], object]]:
    """(column names, rows) of each part of the tabular table, in its column order: the
    metadata (float64, in memory), then the hash and audio statistics (StoredRows, read from
    r12's files on demand) each followed by its missing flag."""
    metadata = _metadata_columns(filenames)
    hashes = load_feature_set("hashes", filenames)
    audio = load_feature_set("audio_logmel", filenames)
    hash_names = hashes["statistic_names"] or \
        [f"hash_{i}" for i in range(hashes["statistics"].shape[1])]
    return [(list(metadata), np.column_stack(list(metadata.values()))),
            (list(hash_names), hashes["statistics"]),
            (["frames_missing"], hashes["missing"][:, None]),
            ([f"logmel_{i}" for i in range(audio["statistics"].shape[1])], audio["statistics"]),
            (["audio_missing"], audio["missing"][:, None])]


def load_tabular(filenames) -> pd.DataFrame:
    """Metadata + hash/motion statistics + audio statistics + missing flags, one row per video.

    Label-free by construction, so stackers and neighbour features can use it anywhere.
    """
    columns = {}
    for names, rows in _tabular_parts(filenames):
        values = np.asarray(rows)
        for position, name in enumerate(names):
            columns[name] = values[:, position]
    return pd.DataFrame(columns, index=pd.Index(list(filenames), name="filename"))


class TabularRows:
    """`load_tabular`'s table as float32 rows read on demand (what lgbm_tabular trains and
    predicts on): only the metadata columns are held (~90 bytes a video); the hash and audio
    statistics are read from r12's files for the rows asked for, so a job never holds the
    whole table (1 KB a video) besides LightGBM's own binned copy of it."""

    def __init__(self, filenames):
        parts = _tabular_parts(filenames)
        self.columns = [name for names, _ in parts for name in names]
        self.parts = [np.asarray(rows, np.float32) if isinstance(rows, np.ndarray) else rows
                      for _, rows in parts]
        self.shape = (len(filenames), len(self.columns))
        self.dtype, self.ndim = np.dtype(np.float32), 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        """Rows by position (an integer gives one row, a slice or positions several)."""
        first = np.asarray(self.parts[0][index], np.float32)
        values = np.empty((*first.shape[:-1], self.shape[1]), np.float32)
        start = 0
        for part in self.parts:
            block = first if start == 0 else part[index]
            values[..., start:start + block.shape[-1]] = block
            start += block.shape[-1]
        return values

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype)


def preprocess_index_path() -> Path:
    """r10's preprocess_index.csv, or a message saying what to run."""
    path = cache_dir() / "preprocess_index.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run r10_preprocess_data.py first")
    return path



def downsample_clip(frames: np.ndarray, clip_frames: int, clip_size: int) -> np.ndarray:
    """r10's frames as a small clip: `clip_frames` evenly spaced frames, area-resized square."""
    import cv2
    positions = np.linspace(0, len(frames) - 1, clip_frames).round().astype(int)
    return np.stack([cv2.resize(frames[position], (clip_size, clip_size),
                                interpolation=cv2.INTER_AREA) for position in positions])


def load_clips(filenames, clip_frames: int, clip_size: int) -> dict:
    """uint8 (videos, clip_frames, clip_size, clip_size, 3) clips and the missing flag.

    A video whose frames r10 could not decode gets a black clip and missing = 1; the model
    masks its clip embedding with the flag, so the black clip carries no signal.
    """
    from a00_common import progress
    index = pd.read_csv(preprocess_index_path(), dtype=str, keep_default_na=False) \
        .set_index("filename")
    absent = [name for name in filenames if name not in index.index]
    if absent:
        raise ValueError(f"{cache_dir() / 'preprocess_index.csv'}: {len(absent)} video(s) are "
                         f"not listed, e.g. {absent[0]!r}; rerun r10 (the video list changed)")
    clips = np.zeros((len(filenames), clip_frames, clip_size, clip_size, 3), np.uint8)
    missing = np.ones(len(filenames), np.float32)
    for row, name in enumerate(progress(list(filenames), desc="clips", unit="video",
                                        leave=False)):
        relative = index.at[name, "frames_path"]
        if not relative:
            continue
        path = cache_dir() / relative
        frames = read_frames(path)
        if frames is None:
            raise ValueError(f"{path}: missing or unreadable frames; rerun "
                             f"r10_preprocess_data.py")
        clips[row] = downsample_clip(frames, clip_frames, clip_size)
        missing[row] = 0.0
    return {"clip": clips, "missing": missing[:, None]}


def load_inputs(spec: "ModelSpec", filenames, settings: dict | None = None) -> dict:
    """The arrays a model reads, keyed by its Keras input names (or "tabular"). `settings`
    (the model's resolved settings) are needed by models on raw frames, for the clip size."""
    inputs = {}
    for source in spec.inputs:
        if source == "tabular":
            inputs["tabular"] = TabularRows(filenames)
        elif source == "frames":
            if settings is None:
                raise ValueError(f"{spec.name} reads clips of r10's frames: load_inputs needs "
                                 f"its settings (clip_frames, clip_size)")
            inputs.update(load_clips(filenames, settings["clip_frames"], settings["clip_size"]))
        elif source.startswith("steps:"):
            extractor = source.split(":", 1)[1]
            # r12 writes zeros (0 dB, a loud signal) for videos without audio; silence keeps
            # batch-norm statistics clean, and the flag masks the embedding anyway
            feature_set = load_feature_set(
                extractor, filenames,
                fill_missing=LOGMEL_FLOOR_DB if extractor == "audio_logmel" else None)
            # read from the file batch by batch, as stored (float16 features, uint8 hash
            # bits): `batches` casts each batch
            inputs["steps"] = feature_set["steps"]
            inputs["missing"] = feature_set["missing"][:, None]
        else:
            raise ValueError(f"unknown model input {source!r}")
    return inputs


def _source_extractors(source: str) -> list[str]:
    if source == "tabular":
        return ["hashes", "audio_logmel"]
    if source.startswith("steps:"):
        return [source.split(":", 1)[1]]
    return []


def required_extractors(spec: "ModelSpec") -> list[str]:
    """The r12 feature sets a model reads (run_all.py waits for exactly these).

    Models on raw frames read r10's cache, which always exists before r21 runs: [].
    """
    return list(dict.fromkeys(extractor for source in spec.inputs
                              for extractor in _source_extractors(source)))


def rows_digest(path: Path, filenames, columns: list[str], where: str) -> str:
    """Digest of these columns (those the CSV has) of these rows (by filename, in the given
    order) of a CSV written by the chain. It is read DIGEST_CHUNK_ROWS rows at a time, and
    each row and its file name are hashed as they come (pandas' hash_pandas_object): a job
    holds 16 bytes a row of the CSV, not its names or text. Rows are matched on their
    names' 64-bit hashes (a chance collision among 200k names: about 1 in 10^9)."""
    wanted = set(columns) | {"filename"}
    present, name_parts, row_parts = [column for column in columns
                                      if column in _csv_header(path)], [], []
    for chunk in pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=DIGEST_CHUNK_ROWS,
                             usecols=lambda column: column in wanted):
        row_parts.append(pd.util.hash_pandas_object(chunk[present], index=False).to_numpy()
                         if present else np.zeros(len(chunk), np.uint64))
        name_parts.append(pd.util.hash_pandas_object(chunk["filename"], index=False).to_numpy())
    listed = pd.Index(np.concatenate(name_parts) if name_parts else np.zeros(0, np.uint64))
    row_hashes = np.concatenate(row_parts) if row_parts else np.zeros(0, np.uint64)
    first = ~listed.duplicated()
    listed, row_hashes = listed[first], row_hashes[first]
    names = list(filenames)
    name_hashes = pd.util.hash_pandas_object(pd.Series(names, dtype=object),
                                             index=False).to_numpy()
    positions = listed.get_indexer(name_hashes)
    if (positions < 0).any():
        absent = names[int(np.flatnonzero(positions < 0)[0])]
        raise ValueError(f"{where}: {int((positions < 0).sum())} video(s) are not listed, e.g. "
                         f"{absent!r}; rerun the stage that makes it (the video list changed)")
    return digest_text([present, hashlib.blake2b(
        name_hashes.tobytes() + row_hashes[positions].tobytes(), digest_size=16).hexdigest()])


def _csv_header(path: Path) -> list[str]:
    return pd.read_csv(path, nrows=0).columns.tolist()


def feature_rows_digest(extractor: str, filenames) -> str:
    """The extractor's settings and the content digests of these videos' feature rows."""
    folder, index_path = features_dir(extractor), feature_index_path(extractor)
    config = (read_json(folder / "config.json") or {}).get("hash", "")
    return digest_text([config, rows_digest(index_path, filenames, ["digest", "missing"],
                                            str(index_path))])


def tabular_digest(filenames) -> str:
    """What `load_tabular` reads for these videos: their metadata rows and the hash and
    audio features' rows."""
    path = metadata_dir() / "metadata.csv"
    columns = TABULAR_METADATA_COLUMNS + ["capture_time", "camera_code"]
    return digest_text([rows_digest(path, filenames, columns, str(path)),
                        feature_rows_digest("hashes", filenames),
                        feature_rows_digest("audio_logmel", filenames)])


def input_digest(spec: "ModelSpec", filenames) -> str:
    """Content digest of everything a model reads for these videos (and nothing about other
    videos): a model is retrained exactly when its training rows' inputs change."""
    parts = []
    for source in spec.inputs:
        if source == "tabular":
            parts.append(tabular_digest(filenames))
        elif source == "frames":
            path = preprocess_index_path()
            parts.append(rows_digest(path, filenames, ["frames_config", "frames_digest"],
                                     str(path)))
        else:
            parts += [feature_rows_digest(extractor, filenames)
                      for extractor in _source_extractors(source)]
    return digest_text(parts)


# ----------------------------------------------------------------------------- specs

@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str                      # "keras" or "lightgbm"
    inputs: tuple                  # "tabular", "steps:<extractor>", "frames"
    head: str = ""                 # gru, lstm, attention, tcn (sequences), conv2d (log-mel), cnn3d
    settings: tuple = ()           # (key, value): this model's own training defaults
    description: str = ""          # one line for the README's model table


def _sequence_models(extractor: str) -> dict:
    descriptions = {
        "gru": "bidirectional GRU, max+mean pooled",
        "lstm": "bidirectional LSTM, max+mean pooled",
        "attention": "attention + max + min pooling over frames",
        "tcn": "dilated temporal convolutions (1, 2, 4), max+mean pooled",
    }
    return {f"{head}_{extractor}": ModelSpec(
                f"{head}_{extractor}", "keras", (f"steps:{extractor}",), head,
                description=f"{descriptions[head]} over {extractor} frame features")
            for head in SEQUENCE_HEADS}


MODELS: dict[str, ModelSpec] = {
    "lgbm_tabular": ModelSpec(
        "lgbm_tabular", "lightgbm", ("tabular",),
        description="LightGBM per class on metadata + hash/motion + audio statistics"),
    **_sequence_models("effnet_lite0"),
    **_sequence_models("effnet_lite0_skip"),
    **_sequence_models("effnet_lite0_crop"),
    **_sequence_models("effnet_lite1"),
    **_sequence_models("effnet_lite2"),
    **_sequence_models("random_lite0"),
    "gru_hashes": ModelSpec(
        "gru_hashes", "keras", ("steps:hashes",), "gru",
        description="bidirectional GRU over per-frame phash+dhash bits"),
    "audio_cnn": ModelSpec(
        "audio_cnn", "keras", ("steps:audio_logmel",), "conv2d",
        # a higher rate, and half the filters at half the time (setting_experiments.csv:
        # audio_cnn_settings)
        settings=(("learning_rate", 2e-3), ("conv_filters", 8)),
        description="2-D CNN on the log-mel spectrogram; no audio = a flag, embedding masked"),
    "cnn3d_micro": ModelSpec(
        "cnn3d_micro", "keras", ("frames",), "cnn3d",
        # chosen on demo folds 0-1 (setting_experiments.csv: cnn3d_settings)
        settings=(("learning_rate", 2e-3), ("batch_size", 16)),
        description="3-D CNN from scratch on 8 x 64 x 64 clips of r10's frames"),
}


def get_spec(name: str) -> ModelSpec:
    """A registered model, or a sequence head over any backbone r12 can extract:
    `<head>_<backbone>[_skip][_crop]`, e.g. `gru_resnet50_skip` or `tcn_effnet_lite2_crop`."""
    if name in MODELS:
        return MODELS[name]
    from a02_backbones import BACKBONES, parse_extractor
    for head in SEQUENCE_HEADS:
        extractor = name[len(head) + 1:] if name.startswith(head + "_") else ""
        if extractor and parse_extractor(extractor) is not None:
            return _sequence_models(extractor)[name]
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}, "
                     f"or <{'|'.join(SEQUENCE_HEADS)}>_<backbone>[_skip][_crop] for a "
                     f"backbone in {', '.join(BACKBONES)}")


# ----------------------------------------------------------------------------- settings

# The settings each kind of model trains with, by name. Their values are r21's (its block, a
# LightGBM setting there as GBM_<NAME>), a model's own in its spec, or r21's command line.
KERAS_SETTINGS = (
    "epochs", "batch_size", "learning_rate", "weight_decay", "warmup_epochs", "patience",
    "hidden_units", "dropout", "conv_filters", "class_weighting", "pseudo_label_epochs",
    "pseudo_label_max_uncertainty", "pseudo_label_learning_rate",
)
# only for models on raw frames, so changing the clip size retrains nothing else
CLIP_SETTINGS = ("clip_frames", "clip_size")
LIGHTGBM_SETTINGS = (
    "n_estimators", "learning_rate", "num_leaves", "min_child_samples", "subsample",
    "subsample_freq", "colsample_bytree", "reg_lambda", "early_stopping_rounds",
    "class_weighting", "n_jobs", "bin_construct_sample_cnt",
)
CLASS_WEIGHTINGS = ("none", "sqrt_inverse_frequency")


def setting_names(spec: ModelSpec) -> tuple[str, ...]:
    """The names of the settings this model trains with (and its config records)."""
    if spec.kind == "lightgbm":
        return LIGHTGBM_SETTINGS
    return KERAS_SETTINGS + (CLIP_SETTINGS if "frames" in spec.inputs else ())


def resolved_settings(spec: ModelSpec, values: dict, command_line: dict | None = None) -> dict:
    """The settings a model trains with: its spec's own value where it sets one, else the one
    in `values` (r21's block, by setting name), and one in `command_line` (given on r21's
    command line) over both. Names the model does not train with are ignored; a name it
    trains with that has no value is an error.
    """
    names = setting_names(spec)
    settings = {}
    for source in (values, dict(spec.settings), command_line or {}):
        settings.update({key: value for key, value in source.items() if key in names})
    absent = [name for name in names if name not in settings]
    if absent:
        raise ValueError(f"{spec.name}: no value for the setting(s) {', '.join(absent)}")
    if settings["class_weighting"] not in CLASS_WEIGHTINGS:
        raise ValueError(f"class_weighting {settings['class_weighting']!r} is not one of "
                         f"{', '.join(CLASS_WEIGHTINGS)}")
    return settings


# ----------------------------------------------------------------------------- test-time views

def temporal_views(steps: np.ndarray, count: int) -> list[np.ndarray]:
    """The sequence itself, reversed, and centred windows stretched back (deterministic TTA).

    Works on any array whose axis 1 is time (feature steps or clip frames).
    """
    views = [steps]
    if count >= 2:
        views.append(steps[:, ::-1])
    length = steps.shape[1]
    for view in range(2, count):
        fraction = 1 - 0.25 * (view - 1) / max(count - 2, 1)
        window = max(int(round(length * fraction)), 2)
        start = (length - window) // 2 if view % 2 else 0
        positions = np.linspace(start, start + window - 1, length).round().astype(int)
        views.append(steps[:, positions])
    return views


def tta_views(spec: ModelSpec, array: np.ndarray, time_augmentation: int,
              flip_augmentation: bool) -> list[np.ndarray]:
    """Test-time views of a model's video input; their predictions are averaged.

    Sequences: temporal views. Clips: temporal views, each also mirrored left-right when
    `flip_augmentation` (the training flips make both equally valid). Spectrograms: the
    input itself (a reversed or cropped call is a different sound).
    """
    if time_augmentation < 1:
        raise ValueError(f"time_augmentation must be >= 1, got {time_augmentation}")
    if spec.head == "conv2d":
        return [array]
    views = temporal_views(array, time_augmentation)
    if spec.head == "cnn3d" and flip_augmentation:
        views = views + [view[:, :, :, ::-1] for view in views]
    return views


# ----------------------------------------------------------------------------- prediction

def predict_keras_fold(spec, inputs: dict, fold_dir: Path, fold: int, n_classes: int,
                       settings: dict, time_augmentation: int = 1,
                       flip_augmentation: bool = False) -> np.ndarray:
    """A level-1 Keras fold model's probabilities, averaged over the test-time views
    (`tta_views`)."""
    import keras
    keras.backend.clear_session()
    name = main_input(spec)
    model = build_keras_model(spec, {name: inputs[name].shape[1:]}, n_classes,
                              np.full(n_classes, 0.5), settings)
    model.load_weights(str(fold_dir / f"fold{fold}.weights.h5"))
    count = len(inputs["missing"])
    output = np.zeros((count, n_classes))
    # the views of PREDICT_CHUNK videos at a time: memory stays bounded on any data set
    for start in range(0, count, PREDICT_CHUNK):
        chunk = slice(start, min(start + PREDICT_CHUNK, count))
        views = tta_views(spec, inputs[name][chunk], time_augmentation, flip_augmentation)
        # all views in one predict call: one traced function instead of one per view
        stacked = {name: np.concatenate(views),
                   "missing": np.concatenate([inputs["missing"][chunk]] * len(views))}
        predictions = model.predict(batches(spec, stacked, None, 64, shuffle=False,
                                            augment_batches=False, seed=0), verbose=0)
        output[chunk] = predictions.reshape(len(views), -1, n_classes).mean(axis=0)
    return output


def predict_lightgbm_fold(inputs: dict, fold_dir: Path, fold: int,
                          n_classes: int) -> np.ndarray:
    """A level-1 LightGBM fold's probabilities: its booster per class, or the class prior
    where the fold had no positives (the stackers' boosters are a05's
    predict_lightgbm_stacker)."""
    import lightgbm
    models = json.loads((fold_dir / f"fold{fold}.lightgbm.json").read_text())
    features = inputs["tabular"]
    output = np.zeros((len(features), n_classes))
    boosters = {column: lightgbm.Booster(model_str=models[str(column)]["booster"])
                for column in range(n_classes) if "booster" in models[str(column)]}
    for column in range(n_classes):
        if column not in boosters:
            output[:, column] = models[str(column)]["constant"]
    # a chunk of rows at a time: the table is read from r12's files as it goes
    for start in range(0, len(features), PREDICT_CHUNK):
        chunk = features[start:start + PREDICT_CHUNK]
        for column, booster in boosters.items():
            output[start:start + len(chunk), column] = booster.predict(chunk)
    return output


def predict_fold(spec, inputs, fold_dir, fold, n_classes, settings, time_augmentation=1,
                 flip_augmentation=False) -> np.ndarray:
    """Probabilities of one trained fold of a level-1 model, whichever its kind."""
    if spec.kind == "lightgbm":
        return predict_lightgbm_fold(inputs, fold_dir, fold, n_classes)
    return predict_keras_fold(spec, inputs, fold_dir, fold, n_classes, settings,
                              time_augmentation, flip_augmentation)


def fold_output(spec: ModelSpec, fold_dir: Path, fold: int) -> Path:
    suffix = "lightgbm.json" if spec.kind == "lightgbm" else "weights.h5"
    return fold_dir / f"fold{fold}.{suffix}"


# ----------------------------------------------------------------------------- trained models
# r31 (OOF) and r40 (test) read trained models the same way: these keep them in step.

# Test-time augmentation (TTA), r31's and r40's defaults (each script takes them as its
# --time_augmentation and --flip_augmentation), so OOF and test predictions are made the same
# way. Two views: the reversal is free, the stretched windows (views 3+) cost on the demo
# (bench/results/setting_experiments.csv: tta_views, tta_flip)
TIME_AUGMENTATION = 2          # temporal views averaged per prediction (1 = none)
FLIP_AUGMENTATION = True       # also average left-right mirrored clips (3D CNN)

def trained_models() -> list[str]:
    """Names of the models r21 has trained (a models/<name>/config.json exists)."""
    root = models_dir("x").parent
    return sorted(p.parent.name for p in root.glob("*/config.json")) if root.is_dir() else []


def models_to_predict(script: str, model: str | None) -> list[str]:
    """`--model NAME`, else every trained model; none trained stops the script in one line."""
    names = [model] if model else trained_models()
    if not names:
        raise SystemExit(f"{script}: no trained models under models/: run "
                         f"r21_train_models.py first")
    return names


def trained_config(name: str, folds: list[int], stage: str, folder: Path | None = None) -> dict:
    """A trained model's config.json, after checking every fold was trained with it (in
    `folder`, default models/<name>)."""
    folder = folder or models_dir(name)
    config = read_json(folder / "config.json")
    if config is None:
        raise SystemExit(f"{folder}/config.json is missing: train {name} with r21 first")
    for fold in folds:
        if (read_json(folder / f"fold{fold}.json") or {}).get("config_hash") != \
                config["config_hash"]:
            raise SystemExit(f"{stage} {name}: fold {fold} is missing or was trained with other "
                             f"settings; run r21_train_models.py --model {name} --fold {fold}")
    return config


def prediction_tables(spec, filenames, folder: Path, folds: list[int], classes: list[str],
                      settings: dict, time_augmentation: int,
                      flip_augmentation: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(by-fold table, fold-mean table) of a trained model on these videos: every fold model
    on every video, and their mean. r31 on the train rows (it keeps each row's own fold), r40
    on the test rows and r80 on new clips, so all three are made the same way."""
    from a00_metric import prediction_frame
    filenames = list(filenames)
    inputs = load_inputs(spec, filenames, settings) if filenames else None
    by_fold = []
    for fold in folds:
        predictions = predict_fold(spec, inputs, folder, fold, len(classes), settings,
                                   time_augmentation, flip_augmentation) \
            if filenames else np.zeros((0, len(classes)))
        table = prediction_frame(filenames, classes, predictions)
        table.insert(0, "fold", fold)
        by_fold.append(table)
    mean = np.mean([table[classes].to_numpy() for table in by_fold], axis=0)
    return pd.concat(by_fold, ignore_index=True), prediction_frame(filenames, classes, mean)


def prediction_stamp(model_config_hash: str, time_augmentation: int,
                     flip_augmentation: bool) -> str:
    """Names how predictions were made: the trained state and the test-time views."""
    return f"{model_config_hash}-tta{time_augmentation}-flip{int(flip_augmentation)}"
