"""Model zoo room: the first-level models by name, their inputs, training and prediction.

A model is a `ModelSpec`: which inputs it reads (a frame-feature set, hash bits, the audio
log-mel, the tabular table, or r10's cached frames as small clips) and how it is built — a
Keras 3 functional model (only `keras` and `keras.ops`, so it also runs with
KERAS_BACKEND=torch) or a LightGBM one-vs-rest set. r21 trains a (model, fold) job with
`train_fold`; r31/r40 predict with `predict_fold`, averaging test-time views (`tta_views`).

Inputs are read from r10/r11/r12 outputs (`cache/preprocess_index.csv` + frames,
`metadata/metadata.csv`, `features/<extractor>/…`) by `load_inputs`, aligned to any list of
filenames; videos without frames or audio are flagged (`missing` = 1), never dropped.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from a00_common import (atomic_path, cache_dir, default_threads, digest_text, features_dir,
                        metadata_dir, models_dir, read_json, set_seeds,
                        write_json)


# ----------------------------------------------------------------------------- inputs

TABULAR_METADATA_COLUMNS = [
    "width", "height", "fps", "n_frames", "duration", "bit_rate", "size_bytes", "rotation",
    "has_audio", "audio_seconds", "audio_rms_mean", "audio_rms_std", "audio_rms_max",
    "audio_peak", "audio_silent", "audio_zero_crossing_rate", "readable", "frames_decoded",
]
# r12 floors the log-mel at -100 dB and pads short clips with it: the value of silence
LOGMEL_FLOOR_DB = -100.0
PREDICT_CHUNK = 8192               # videos whose test-time views are in memory at once


def read_feature_index(extractor: str) -> pd.DataFrame:
    """r12's index.csv of an extractor (text columns), or a message saying what to run."""
    index_path = features_dir(extractor) / "index.csv"
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} is missing: run r12_extract_features.py "
                                f"--extractor {extractor} first")
    return pd.read_csv(index_path, dtype=str, keep_default_na=False)


def load_feature_set(extractor: str, filenames) -> dict:
    """Per-step features, per-video statistics and the missing flag of `filenames`, in order."""
    folder = features_dir(extractor)
    index_path = folder / "index.csv"
    index = read_feature_index(extractor)
    index["row"] = index["row"].astype(int)
    index["missing"] = index["missing"].astype(int)
    rows = pd.Series(index["row"].to_numpy(), index=index["filename"])
    absent = [name for name in filenames if name not in rows.index]
    if absent:
        raise ValueError(f"{index_path}: {len(absent)} video(s) have no features, e.g. "
                         f"{absent[0]!r}; rerun r12 (the video list changed)")
    selected = rows.loc[list(filenames)].to_numpy()
    features = np.load(folder / "features.npy", mmap_mode="r", allow_pickle=False)
    statistics = np.load(folder / "statistics.npy", mmap_mode="r", allow_pickle=False)
    config = read_json(folder / "config.json") or {}
    return {"steps": np.asarray(features[selected]),
            "statistics": np.asarray(statistics[selected], dtype=np.float32),
            "missing": index["missing"].to_numpy()[selected].astype(np.float32),
            "statistic_names": config.get("statistic_names"),
            "hash": config.get("hash", "")}


def load_tabular(filenames) -> pd.DataFrame:
    """Metadata + hash/motion statistics + audio statistics + missing flags, one row per video.

    Label-free by construction, so stackers and neighbour features can use it anywhere.
    """
    metadata = pd.read_csv(metadata_dir() / "metadata.csv", dtype={"filename": str},
                           keep_default_na=False, na_values=[""])
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
    hashes = load_feature_set("hashes", filenames)
    names = hashes["statistic_names"] or [f"hash_{i}" for i in range(hashes["statistics"].shape[1])]
    for position, name in enumerate(names):
        columns[name] = hashes["statistics"][:, position]
    columns["frames_missing"] = hashes["missing"]
    audio = load_feature_set("audio_logmel", filenames)
    for position in range(audio["statistics"].shape[1]):
        columns[f"logmel_{position}"] = audio["statistics"][:, position]
    columns["audio_missing"] = audio["missing"]
    table = pd.DataFrame(columns, index=metadata.index)
    table.index.name = "filename"
    return table


def read_preprocess_index() -> pd.DataFrame:
    path = cache_dir() / "preprocess_index.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run r10_preprocess_data.py first")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


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
    index = read_preprocess_index().set_index("filename")
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
        try:
            frames = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"{path}: unreadable frames ({error}); rerun "
                             f"r10_preprocess_data.py --force") from None
        clips[row] = downsample_clip(frames, clip_frames, clip_size)
        missing[row] = 0.0
    return {"clip": clips, "missing": missing[:, None]}


def load_inputs(spec: "ModelSpec", filenames, settings: dict | None = None) -> dict:
    """The arrays a model reads, keyed by its Keras input names (or "tabular")."""
    settings = settings if settings is not None else resolved_settings(spec)
    inputs = {}
    for source in spec.inputs:
        if source == "tabular":
            inputs["tabular"] = load_tabular(filenames).to_numpy(np.float32)
        elif source == "frames":
            inputs.update(load_clips(filenames, settings["clip_frames"], settings["clip_size"]))
        elif source.startswith("steps:"):
            extractor = source.split(":", 1)[1]
            feature_set = load_feature_set(extractor, filenames)
            # kept as stored (float16 features, uint8 hash bits): `batches` casts each batch,
            # so a job holds half (or a quarter) of the float32 memory
            steps = feature_set["steps"]
            if extractor == "audio_logmel":
                # r12 writes zeros (0 dB, a loud signal) for videos without audio; silence
                # keeps batch-norm statistics clean, and the flag masks the embedding anyway
                steps[feature_set["missing"] > 0] = LOGMEL_FLOOR_DB
            inputs["steps"] = steps
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


def rows_digest(table: pd.DataFrame, filenames, columns: list[str], where: str) -> str:
    """Digest of these columns of these rows (by filename, in the given order)."""
    indexed = table.set_index("filename")
    absent = [name for name in filenames if name not in indexed.index]
    if absent:
        raise ValueError(f"{where}: {len(absent)} video(s) are not listed, e.g. {absent[0]!r}; "
                         f"rerun the stage that makes it (the video list changed)")
    present = [column for column in columns if column in indexed.columns]
    selected = indexed.loc[list(filenames), present].astype(str)
    return digest_text([present, list(filenames), selected.to_numpy().tolist()])


def feature_rows_digest(extractor: str, filenames) -> str:
    """The extractor's settings and the content digests of these videos' feature rows."""
    folder = features_dir(extractor)
    config = (read_json(folder / "config.json") or {}).get("hash", "")
    return digest_text([config, rows_digest(read_feature_index(extractor), filenames,
                                            ["digest", "missing"], str(folder / "index.csv"))])


def tabular_digest(filenames) -> str:
    """What `load_tabular` reads for these videos: their metadata rows and the hash and
    audio features' rows."""
    metadata = pd.read_csv(metadata_dir() / "metadata.csv", dtype=str, keep_default_na=False)
    columns = TABULAR_METADATA_COLUMNS + ["capture_time", "camera_code"]
    return digest_text([rows_digest(metadata, filenames, columns,
                                    str(metadata_dir() / "metadata.csv")),
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
            index = read_preprocess_index()
            parts.append(rows_digest(index, filenames, ["frames_config", "frames_digest"],
                                     str(cache_dir() / "preprocess_index.csv")))
        else:
            parts += [feature_rows_digest(extractor, filenames)
                      for extractor in _source_extractors(source)]
    return digest_text(parts)


def main_input(spec: "ModelSpec") -> str:
    """Name of the Keras input that carries the video (augmented and viewed for TTA)."""
    return "clip" if "frames" in spec.inputs else "steps"


# ----------------------------------------------------------------------------- specs

@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str                      # "keras" or "lightgbm"
    inputs: tuple                  # "tabular", "steps:<extractor>", "frames"
    head: str = ""                 # gru, lstm, attention, tcn (sequences), conv2d (log-mel), cnn3d
    settings: tuple = ()           # (key, value): this model's own training defaults
    description: str = ""          # one line for the README's model table


SEQUENCE_HEADS = ("gru", "lstm", "attention", "tcn")


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

KERAS_DEFAULTS = {
    "epochs": 30, "batch_size": 32, "learning_rate": 1e-3, "weight_decay": 1e-2,
    "warmup_epochs": 2, "patience": 6, "hidden_units": 128, "dropout": 0.3,
    "conv_filters": 16,
    "class_weighting": "none",
    "pseudo_label_epochs": 0, "pseudo_label_max_uncertainty": 0.1,
    "pseudo_label_learning_rate": 1e-4,
}
# only for models on raw frames, so changing the clip size retrains nothing else
CLIP_DEFAULTS = {"clip_frames": 8, "clip_size": 64}
LIGHTGBM_DEFAULTS = {
    "n_estimators": 400, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 5,
    "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.5, "reg_lambda": 1.0,
    "early_stopping_rounds": 30, "class_weighting": "sqrt_inverse_frequency",
    # 0 = one thread below LIGHTGBM_THREADED_ROWS training rows, where LightGBM's threading
    # costs more than it saves (setting_experiments.csv: lightgbm_threads), else a00's
    # default_threads() (run_all gives each parallel job its share of the cores)
    "n_jobs": 0,
}
LIGHTGBM_THREADED_ROWS = 10_000
CLASS_WEIGHTINGS = ("none", "sqrt_inverse_frequency")
MAX_POSITIVE_WEIGHT = 10.0         # a class with 2 positives must not dominate the loss


def default_settings(spec: ModelSpec) -> dict:
    if spec.kind == "lightgbm":
        return dict(LIGHTGBM_DEFAULTS)
    defaults = dict(KERAS_DEFAULTS)
    if "frames" in spec.inputs:
        defaults.update(CLIP_DEFAULTS)
    return defaults


def resolved_settings(spec: ModelSpec, block: dict | None = None,
                      explicit: dict | None = None) -> dict:
    """Training settings of a model, later sources winning:

    this room's defaults < `block` (r21's tunables block) < the spec's own settings <
    `explicit` (values given on r21's command line). Keys a model does not use are ignored.
    """
    defaults = default_settings(spec)
    settings = dict(defaults)
    for source in (block or {}, dict(spec.settings), explicit or {}):
        settings.update({key: value for key, value in source.items() if key in defaults})
    if settings["class_weighting"] not in CLASS_WEIGHTINGS:
        raise ValueError(f"class_weighting {settings['class_weighting']!r} is not one of "
                         f"{', '.join(CLASS_WEIGHTINGS)}")
    return settings


def positive_class_weights(labels: np.ndarray, method: str) -> np.ndarray:
    """Loss weight of a positive cell per class; negatives weigh 1.

    "sqrt_inverse_frequency": sqrt(negatives / positives), clipped to [1, MAX_POSITIVE_WEIGHT]
    — softer than full inverse frequency, which on log loss overpredicts rare classes badly.
    A class without positives gets 1 (there is nothing to weight).
    """
    labels = np.asarray(labels, dtype=np.float64)
    if method == "none":
        return np.ones(labels.shape[1], np.float32)
    if method != "sqrt_inverse_frequency":
        raise ValueError(f"class_weighting {method!r} is not one of {', '.join(CLASS_WEIGHTINGS)}")
    positives = labels.sum(axis=0)
    negatives = len(labels) - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return np.clip(np.sqrt(ratio), 1.0, MAX_POSITIVE_WEIGHT).astype(np.float32)


# ----------------------------------------------------------------------------- keras models

def _logit(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, 1e-4, 1 - 1e-4)
    return np.log(clipped / (1 - clipped))


def _sequence_head(spec: ModelSpec, steps, settings: dict):
    import keras
    from keras import layers
    width = settings["hidden_units"]
    x = layers.LayerNormalization(name="normalize_steps")(steps)
    x = layers.Dropout(settings["dropout"], name="input_dropout")(x)
    x = layers.Dense(width, activation="gelu", name="project")(x)
    if spec.head == "gru":
        x = layers.Bidirectional(layers.GRU(width // 2, return_sequences=True), name="gru")(x)
    elif spec.head == "lstm":
        x = layers.Bidirectional(layers.LSTM(width // 2, return_sequences=True), name="lstm")(x)
    elif spec.head == "attention":
        scores = layers.Dense(1, name="attention_score")(x)
        weights = layers.Softmax(axis=1, name="attention_weights")(scores)
        attended = layers.Flatten(name="attended")(layers.Dot(axes=1, name="attention_pool")(
            [weights, x]))
        # max and min over time: an animal in a few frames shows up in the extremes
        maximum = layers.GlobalMaxPooling1D(name="max_pool")(x)
        minimum = layers.Lambda(lambda t: -keras.ops.max(-t, axis=1), name="min_pool")(x)
        return layers.Concatenate(name="pool")([attended, maximum, minimum])
    elif spec.head == "tcn":
        for block, rate in enumerate((1, 2, 4)):
            residual = x
            x = layers.Conv1D(width, 3, padding="same", dilation_rate=rate,
                              activation="gelu", name=f"tcn{block}")(x)
            x = layers.Add(name=f"tcn_residual{block}")([x, residual])
    else:
        raise ValueError(f"{spec.name}: unknown head {spec.head!r}")
    return layers.Concatenate(name="pool")([layers.GlobalMaxPooling1D(name="max_pool")(x),
                                            layers.GlobalAveragePooling1D(name="mean_pool")(x)])


def _spectrogram_head(steps, input_shape, settings: dict):
    """Level and per-band deviation channels, three conv blocks, max+mean over time.

    The second channel is each band minus its mean over the clip: a camera's steady hum,
    wind or insect bed cancels and a call stands out. Frequency is kept to the end
    (flattened with the channels per time step) rather than pooled away: which band a call
    sits in tells the species. Demo OOF (seeds 42 / 142): global 2-D pooling of the level
    alone 0.1353; keeping frequency 0.1336 / 0.1344; adding the deviation 0.1191 / 0.1151.
    """
    import keras
    from keras import layers
    x = layers.Reshape(tuple(input_shape) + (1,), name="spectrogram")(steps)
    # log-mel in dB, floored at -100: map the usual -100..+20 range to about 0..3
    x = layers.Rescaling(1 / 40.0, offset=2.5, name="scale_db")(x)
    band_mean = layers.Lambda(lambda t: keras.ops.mean(t, axis=1, keepdims=True),
                              name="band_mean")(x)
    deviation = layers.Subtract(name="band_deviation")([x, band_mean])
    x = layers.Concatenate(name="level_and_deviation")([x, deviation])
    filters = settings["conv_filters"]
    for block in range(3):
        x = layers.Conv2D(filters * 2 ** block, 3, padding="same", use_bias=False,
                          name=f"conv{block}")(x)
        x = layers.BatchNormalization(name=f"bn{block}")(x)
        x = layers.Activation("relu", name=f"relu{block}")(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"pool{block}")(x)
    _, time_steps, bands, channels = x.shape
    x = layers.Reshape((time_steps, bands * channels), name="time_major")(x)
    x = layers.Dense(settings["hidden_units"], activation="relu", name="moment_embedding")(x)
    return layers.Concatenate(name="pool")([layers.GlobalAveragePooling1D(name="mean_pool")(x),
                                            layers.GlobalMaxPooling1D(name="max_pool")(x)])


def _clip_head(clip, settings: dict):
    """A small 3-D CNN: a strided spatial stem, then pool-then-convolve 3x3x3 blocks.

    Pooling before each 3x3x3 convolution (not after) keeps an epoch of the demo under ~1 s
    on 2 CPU cores (4x cheaper than convolving at 32 x 32); max pooling keeps the small,
    bright evidence an animal leaves at 64 x 64.
    """
    from keras import layers
    filters = settings["conv_filters"]
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_pixels")(clip)
    x = layers.Conv3D(filters, (1, 3, 3), strides=(1, 2, 2), padding="same", use_bias=False,
                      name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for block in range(3):
        # keep all frames through the first block: motion lives in neighbouring frames
        pool = (1, 2, 2) if block == 0 else (2, 2, 2)
        x = layers.MaxPooling3D(pool, padding="same", name=f"pool{block}")(x)
        x = layers.Conv3D(filters * 2 ** (block + 1), 3, padding="same", use_bias=False,
                          name=f"conv{block}")(x)
        x = layers.BatchNormalization(name=f"bn{block}")(x)
        x = layers.Activation("relu", name=f"relu{block}")(x)
    return layers.Concatenate(name="pool")([layers.GlobalAveragePooling3D(name="mean_pool")(x),
                                            layers.GlobalMaxPooling3D(name="max_pool")(x)])


def build_keras_model(spec: ModelSpec, input_shapes: dict, n_classes: int, prior: np.ndarray,
                      settings: dict):
    """Functional model: a head over the video input, the missing flag, sigmoid outputs.

    The video's embedding is multiplied by (1 - missing), so a video without frames or audio
    is predicted from its flag alone, never from the zeros that stand in for its input. The
    output bias starts at the logit of the class priors, so training starts from the prior
    baseline instead of spending epochs learning that most classes are rare.
    """
    import keras
    from keras import layers
    name = main_input(spec)
    video_input = keras.Input(shape=tuple(input_shapes[name]), name=name)
    missing_input = keras.Input(shape=(1,), name="missing")
    if spec.head in SEQUENCE_HEADS:
        pooled = _sequence_head(spec, video_input, settings)
    elif spec.head == "conv2d":
        pooled = _spectrogram_head(video_input, input_shapes[name], settings)
    elif spec.head == "cnn3d":
        pooled = _clip_head(video_input, settings)
    else:
        raise ValueError(f"{spec.name}: unknown head {spec.head!r}")
    present = layers.Lambda(lambda flag: 1.0 - flag, name="present")(missing_input)
    pooled = layers.Multiply(name="mask_missing")([pooled, present])
    x = layers.Concatenate(name="with_missing")([pooled, missing_input])
    x = layers.Dropout(settings["dropout"], name="head_dropout")(x)
    x = layers.Dense(settings["hidden_units"], activation="gelu", name="hidden")(x)
    # the conv heads' unnormalised embeddings made the first epochs' outputs far from the
    # prior; a zero output kernel starts them exactly at the prior. The layer-normed sequence
    # heads do not need it (bench/results/setting_experiments.csv: zero_output_kernel)
    starts_at_prior = spec.head in ("conv2d", "cnn3d")
    outputs = layers.Dense(n_classes, activation="sigmoid", name="probabilities",
                           kernel_initializer="zeros" if starts_at_prior else "glorot_uniform",
                           bias_initializer=keras.initializers.Constant(_logit(prior)))(x)
    return keras.Model([video_input, missing_input], outputs, name=spec.name)


def weighted_binary_crossentropy(positive_weights: np.ndarray):
    """Mean binary cross-entropy with positive cells of class c weighted by positive_weights[c].

    Works with soft targets (pseudo-labels): target t counts t·w·log p + (1 − t)·log(1 − p).
    """
    import keras
    weights = keras.ops.convert_to_tensor(np.asarray(positive_weights, np.float32))

    def loss(targets, probabilities):
        probabilities = keras.ops.clip(probabilities, 1e-7, 1 - 1e-7)
        targets = keras.ops.cast(targets, probabilities.dtype)
        cells = weights * targets * keras.ops.log(probabilities) \
            + (1 - targets) * keras.ops.log(1 - probabilities)
        return -keras.ops.mean(cells, axis=-1)

    return loss


# ----------------------------------------------------------------------------- augmentation

def augment_steps(steps: np.ndarray, random: np.random.Generator) -> np.ndarray:
    """Time reversal, a random temporal crop stretched back, and step dropout.

    Animals cross the frame either way and enter at any moment, so these keep the label.
    """
    steps = steps.copy()
    batch, length = steps.shape[:2]
    for row in range(batch):
        if random.random() < 0.5:
            steps[row] = steps[row, ::-1]
        if random.random() < 0.5 and length >= 4:
            window = random.integers(length // 2, length + 1)
            start = random.integers(0, length - window + 1)
            positions = np.linspace(start, start + window - 1, length).round().astype(int)
            steps[row] = steps[row, positions]
        if random.random() < 0.3 and length >= 4:
            dropped = random.random(length) < 0.15
            steps[row, dropped] = 0
    return steps


def augment_spectrogram(spectrogram: np.ndarray, random: np.random.Generator) -> np.ndarray:
    """Circular time shift, a loudness change, one time mask and one frequency mask.

    A call can start at any moment and the animal can be near or far; masks are filled with
    silence (the log-mel floor), never zeros, which would be a loud 0 dB band. Time is not
    reversed: a reversed call is a different sound.
    """
    spectrogram = spectrogram.copy()
    batch, length, bands = spectrogram.shape
    for row in range(batch):
        spectrogram[row] = np.roll(spectrogram[row], random.integers(0, length), axis=0)
        if random.random() < 0.5:
            gain = random.uniform(-6.0, 6.0)
            spectrogram[row] = np.maximum(spectrogram[row] + gain, LOGMEL_FLOOR_DB)
        width = random.integers(0, max(length // 8, 1) + 1)
        start = random.integers(0, length - width + 1)
        spectrogram[row, start:start + width] = LOGMEL_FLOOR_DB
        height = random.integers(0, max(bands // 8, 1) + 1)
        start = random.integers(0, bands - height + 1)
        spectrogram[row, :, start:start + height] = LOGMEL_FLOOR_DB
    return spectrogram


def augment_clip(clips: np.ndarray, random: np.random.Generator) -> np.ndarray:
    """Horizontal flip, time reversal, a random crop resized back, brightness/contrast jitter.

    Input uint8 (batch, frames, size, size, 3); output float32 pixels in [0, 255] of the
    same shape. The crop keeps 80–100 % of each side (nearest-neighbour resize back by index
    arithmetic: cheap, and it never blurs the few pixels a distant animal covers).
    """
    batch, frames, height, width, _ = clips.shape
    output = np.empty(clips.shape, np.float32)
    for row in range(batch):
        clip = clips[row]
        if random.random() < 0.5:
            clip = clip[:, :, ::-1]
        if random.random() < 0.5:
            clip = clip[::-1]
        scale = random.uniform(0.8, 1.0)
        crop_height = max(int(round(height * scale)), 1)
        crop_width = max(int(round(width * scale)), 1)
        top = random.integers(0, height - crop_height + 1)
        left = random.integers(0, width - crop_width + 1)
        rows = top + (np.arange(height) * crop_height // height)
        columns = left + (np.arange(width) * crop_width // width)
        clip = clip[:, rows][:, :, columns].astype(np.float32)
        contrast = random.uniform(0.75, 1.25)
        brightness = random.uniform(-25.0, 25.0)
        mean = clip.mean()
        output[row] = np.clip((clip - mean) * contrast + mean + brightness, 0.0, 255.0)
    return output


def augment(spec: ModelSpec, array: np.ndarray, random: np.random.Generator) -> np.ndarray:
    if spec.head == "cnn3d":
        return augment_clip(array, random)
    if spec.head == "conv2d":
        return augment_spectrogram(array, random)
    return augment_steps(array, random)


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


# ----------------------------------------------------------------------------- keras training

def batches(spec: ModelSpec, inputs: dict, targets, batch_size: int, shuffle: bool,
            augment_batches: bool, seed: int, rows=None):
    """A keras.utils.PyDataset over in-memory arrays: the `rows` of `inputs` (default all),
    read batch by batch so that a fold's rows are never copied out as a whole.

    `targets`, when given, has one row per entry of `rows`. Each batch is a pure function of
    (seed, epoch, batch position): the order and the random augmentation come from a
    generator seeded by those three numbers, so prefetching, the batches Keras reads ahead
    to infer shapes, or worker threads cannot change the result.
    """
    import keras
    name = main_input(spec)
    rows = np.arange(len(inputs["missing"])) if rows is None else np.asarray(rows)
    count = len(rows)

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0

        def __len__(self):
            return math.ceil(count / batch_size)

        def on_epoch_end(self):
            self.epoch += 1

        def order(self) -> np.ndarray:
            if not shuffle:
                return np.arange(count)
            return np.random.default_rng([seed, self.epoch]).permutation(count)

        def __getitem__(self, position):
            positions = self.order()[position * batch_size:(position + 1) * batch_size]
            selected = rows[positions]
            video = inputs[name][selected]
            if name == "steps":  # stored float16 (or uint8 bits); clips stay uint8 for their
                video = video.astype(np.float32)  # augmentation, which works on bytes
            if augment_batches:
                video = augment(spec, video, np.random.default_rng([seed, self.epoch, position]))
            batch = {name: video.astype(np.float32, copy=False),
                     "missing": inputs["missing"][selected]}
            return (batch, targets[positions]) if targets is not None else (batch,)

    return Batches()


def make_deterministic(seed: int) -> None:
    """Same seed, same weights: across runs, and across jobs that run at the same time.

    On CPU the seeds and `batches` (a pure function of seed, epoch and position) already
    suffice: two folds trained side by side matched a sequential run bit for bit with or
    without op determinism. It is switched on for GPUs, where cuDNN and atomic-add kernels
    otherwise sum in a different order every run (and XLA is then left off by Keras).
    """
    import keras
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()
    elif keras.backend.backend() == "torch":
        import torch
        torch.use_deterministic_algorithms(True)


def _take(inputs: dict, rows) -> dict:
    return {key: value[rows] for key, value in inputs.items()}


def _concatenate(first: dict, second: dict) -> dict:
    return {key: np.concatenate([first[key], second[key]]) for key in first}


def select_pseudo_labels(probabilities: np.ndarray, max_uncertainty: float) -> np.ndarray:
    """Rows (of the test predictions given) confident in every class: max_c min(p, 1−p) ≤ bound.

    A row unsure about any class is left out whole: its soft target would teach mostly noise.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"expected (videos, classes) probabilities, got shape "
                         f"{probabilities.shape}")
    uncertainty = np.minimum(probabilities, 1 - probabilities).max(axis=1)
    return np.flatnonzero(uncertainty <= max_uncertainty)


def _history_table(history, phase: str, first_epoch: int) -> pd.DataFrame:
    table = pd.DataFrame(history.history)
    table.insert(0, "epoch", np.arange(first_epoch, first_epoch + len(table)))
    table.insert(1, "phase", phase)
    return table


def train_keras_fold(spec, inputs, labels, fit_rows, stop_rows, fold_dir: Path,
                     fold: int, seed: int, settings: dict, prior: np.ndarray,
                     test_inputs: dict | None = None) -> dict:
    """Trains one fold on `fit_rows`; returns history, early-stopping loss, pseudo-labelled
    test rows. `stop_rows` (held-out training visits) make every choice: the fold's own
    validation rows are never read, so its OOF predictions are honest.

    Round 1: AdamW, linear warm-up then cosine decay, early stopping on the log loss of
    `stop_rows` with the best epoch's weights kept. With pseudo_label_epochs > 0, round 2 adds
    the test videos that this fold's own round-1 model predicts confidently, as soft targets,
    for a few epochs at a small constant rate; its weights are kept only if the loss on
    `stop_rows` improves. Test predictions of other folds' models are never used: they saw
    this fold's labels, which would leak into the validation (and OOF) score.
    """
    import keras
    from tqdm import tqdm
    keras.backend.clear_session()  # fresh graph per fold: no retracing, no memory growth
    make_deterministic(seed)
    name = main_input(spec)
    model = build_keras_model(spec, {name: inputs[name].shape[1:]}, labels.shape[1], prior,
                              settings)
    positive_weights = positive_class_weights(labels[fit_rows], settings["class_weighting"])
    loss = (keras.losses.BinaryCrossentropy() if settings["class_weighting"] == "none"
            else weighted_binary_crossentropy(positive_weights))
    # no held-out rows: a fixed schedule, every epoch run and the last one kept
    validation_data = batches(spec, inputs, labels[stop_rows].astype(np.float32), 256,
                              shuffle=False, augment_batches=False, seed=seed,
                              rows=stop_rows) if len(stop_rows) else None
    train_data = batches(spec, inputs, labels[fit_rows].astype(np.float32),
                         settings["batch_size"], shuffle=True, augment_batches=True, seed=seed,
                         rows=fit_rows)
    steps_per_epoch = len(train_data)
    total_steps = steps_per_epoch * settings["epochs"]
    warmup_steps = steps_per_epoch * settings["warmup_epochs"]
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(total_steps - warmup_steps, 1), alpha=0.01,
        warmup_target=settings["learning_rate"], warmup_steps=warmup_steps)
    # the monitored number is always the plain log loss (the metric), whatever the loss
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=settings["weight_decay"]),
                  loss=loss, metrics=[keras.metrics.BinaryCrossentropy(name="log_loss")])
    bar = tqdm(total=settings["epochs"] + settings["pseudo_label_epochs"],
               desc=f"{spec.name} fold {fold}", unit="epoch", disable=None,
               dynamic_ncols=True, leave=False)

    class ProgressBar(keras.callbacks.Callback):
        """Advances the epoch bar; adds the epoch's learning rate to the history."""

        def on_epoch_end(self, epoch, logs=None):
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}",
                            val_log_loss=f"{logs.get('val_log_loss', float('nan')):.4f}")

    def callbacks():
        stopping = [keras.callbacks.EarlyStopping(monitor="val_log_loss", mode="min",
                                                  patience=settings["patience"],
                                                  restore_best_weights=True)] \
            if validation_data is not None else []
        return stopping + [ProgressBar()]

    history = model.fit(train_data, validation_data=validation_data, epochs=settings["epochs"],
                        verbose=0, callbacks=callbacks())
    table = _history_table(history, "train", 1)
    best_loss = float(np.min(history.history["val_log_loss"])) \
        if validation_data is not None else float("nan")
    pseudo_rows = np.zeros(0, dtype=int)
    if settings["pseudo_label_epochs"] > 0 and test_inputs is not None \
            and len(test_inputs["missing"]):
        probabilities = model.predict(
            batches(spec, test_inputs, None, 256, shuffle=False, augment_batches=False,
                    seed=seed), verbose=0)
        pseudo_rows = select_pseudo_labels(probabilities, settings["pseudo_label_max_uncertainty"])
        if len(pseudo_rows):
            first_round_weights = model.get_weights()
            combined_inputs = _concatenate(_take(inputs, fit_rows),
                                           _take(test_inputs, pseudo_rows))
            combined_targets = np.concatenate([labels[fit_rows],
                                               probabilities[pseudo_rows]]).astype(np.float32)
            model.compile(optimizer=keras.optimizers.AdamW(
                              settings["pseudo_label_learning_rate"],
                              weight_decay=settings["weight_decay"]),
                          loss=loss, metrics=[keras.metrics.BinaryCrossentropy(name="log_loss")])
            second = model.fit(
                batches(spec, combined_inputs, combined_targets, settings["batch_size"],
                        shuffle=True, augment_batches=True, seed=seed + 1_000_003),
                validation_data=validation_data, epochs=settings["pseudo_label_epochs"],
                verbose=0, callbacks=callbacks())
            table = pd.concat([table, _history_table(second, "pseudo_labels", len(table) + 1)],
                              ignore_index=True)
            second_best = float(np.min(second.history["val_log_loss"])) \
                if validation_data is not None else float("nan")
            # without held-out rows there is nothing to choose on: the round is kept
            if validation_data is None or second_best < best_loss:
                best_loss = second_best
            else:
                model.set_weights(first_round_weights)
    bar.close()
    with atomic_path(fold_dir / f"fold{fold}.weights.h5") as temporary:  # temp ends .weights.h5
        model.save_weights(str(temporary))
    return {"history": table, "early_stopping_loss": best_loss,
            "pseudo_labelled_rows": pseudo_rows}


def predict_keras(spec, inputs: dict, fold_dir: Path, fold: int, n_classes: int,
                  settings: dict, time_augmentation: int = 1,
                  flip_augmentation: bool = False) -> np.ndarray:
    """Fold model's probabilities, averaged over the test-time views (`tta_views`)."""
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


# ----------------------------------------------------------------------------- lightgbm

def train_lightgbm_fold(inputs, labels, fit_rows, stop_rows, fold_dir: Path, fold: int,
                        seed: int, settings: dict, prior: np.ndarray) -> dict:
    """One binary LightGBM per class: its number of rounds is the best on `stop_rows` (held-out
    training visits) for a booster fitted on `fit_rows`; the kept booster is refitted on both
    with that many rounds. The fold's validation rows are never read. A class with no
    positives among the training rows keeps its prior."""
    import lightgbm
    features = inputs["tabular"]
    train_rows = np.sort(np.concatenate([fit_rows, stop_rows]))
    positive_weights = positive_class_weights(labels[train_rows], settings["class_weighting"])
    parameters = {key: value for key, value in settings.items()
                  if key not in ("early_stopping_rounds", "class_weighting")}
    if parameters["n_jobs"] == 0:
        parameters["n_jobs"] = 1 if len(train_rows) < LIGHTGBM_THREADED_ROWS \
            else default_threads()

    def classifier(column: int, rounds: int):
        return lightgbm.LGBMClassifier(**{**parameters, "n_estimators": rounds},
                                       random_state=seed + column, verbose=-1,
                                       scale_pos_weight=float(positive_weights[column]))

    # pass 1: each class's best number of rounds on the held-out visits
    found, stop_losses = {}, {}
    for column in range(labels.shape[1]):
        fit_labels = labels[fit_rows, column]
        if not len(stop_rows) or fit_labels.min() == fit_labels.max() or \
                labels[train_rows, column].min() == labels[train_rows, column].max():
            continue
        model = classifier(column, settings["n_estimators"])
        model.fit(features[fit_rows], fit_labels, eval_X=(features[stop_rows],),
                  eval_y=(labels[stop_rows, column],),
                  callbacks=[lightgbm.early_stopping(settings["early_stopping_rounds"],
                                                     verbose=False)])
        found[column] = model.best_iteration_ or settings["n_estimators"]
        stop_losses[column] = model.best_score_["valid_0"]["binary_logloss"]
    # a class whose positives are all held out has no count of its own: the classes' median
    typical = int(np.median(list(found.values()))) if found else \
        settings["n_estimators"] if not len(stop_rows) else settings["early_stopping_rounds"]
    # pass 2: refit on every training row with that many rounds
    models, history_rows = {}, []
    for column in range(labels.shape[1]):
        train_labels = labels[train_rows, column]
        if train_labels.min() == train_labels.max():
            models[str(column)] = {"constant": float(prior[column])}
            continue
        rounds = found.get(column, typical)
        model = classifier(column, rounds)
        model.fit(features[train_rows], train_labels)
        models[str(column)] = {"booster": model.booster_.model_to_string()}
        history_rows.append({"class_index": column, "rounds": rounds,
                             "rounds_from": "own" if column in found else "median",
                             "early_stopping_loss": stop_losses.get(column, np.nan)})
    write_json(models, fold_dir / f"fold{fold}.lightgbm.json")
    return {"history": pd.DataFrame(history_rows),
            # the best held-out loss of the classes that had one (mean over classes)
            "early_stopping_loss": float(np.mean(list(stop_losses.values())))
            if stop_losses else float("nan"),
            "pseudo_labelled_rows": np.zeros(0, dtype=int)}


def predict_lightgbm(inputs: dict, fold_dir: Path, fold: int, n_classes: int) -> np.ndarray:
    import lightgbm
    models = json.loads((fold_dir / f"fold{fold}.lightgbm.json").read_text())
    features = inputs["tabular"]
    output = np.zeros((len(features), n_classes))
    for column in range(n_classes):
        entry = models[str(column)]
        if "constant" in entry:
            output[:, column] = entry["constant"]
        else:
            booster = lightgbm.Booster(model_str=entry["booster"])
            output[:, column] = booster.predict(features)
    return output


# ----------------------------------------------------------------------------- entry points

def fold_output(spec: ModelSpec, fold_dir: Path, fold: int) -> Path:
    suffix = "lightgbm.json" if spec.kind == "lightgbm" else "weights.h5"
    return fold_dir / f"fold{fold}.{suffix}"


def train_fold(spec, inputs, labels, fit_rows, stop_rows, fold_dir, fold, seed,
               settings, prior, test_inputs=None) -> dict:
    """Trains one (model, fold) job; returns {history, early_stopping_loss,
    pseudo_labelled_rows}. `fit_rows` and `stop_rows` split the fold's training rows
    (a00_common.inner_split): every choice is made on `stop_rows`, and the fold's own
    validation rows are not an argument, so they cannot steer it.

    `test_inputs` (the submission videos' inputs) are only read for pseudo-labelling.
    """
    set_seeds(seed)
    if spec.kind == "lightgbm":
        return train_lightgbm_fold(inputs, labels, fit_rows, stop_rows, fold_dir, fold,
                                   seed, settings, prior)
    return train_keras_fold(spec, inputs, labels, fit_rows, stop_rows, fold_dir, fold,
                            seed, settings, prior, test_inputs)


def predict_fold(spec, inputs, fold_dir, fold, n_classes, settings, time_augmentation=1,
                 flip_augmentation=False) -> np.ndarray:
    if spec.kind == "lightgbm":
        return predict_lightgbm(inputs, fold_dir, fold, n_classes)
    return predict_keras(spec, inputs, fold_dir, fold, n_classes, settings, time_augmentation,
                         flip_augmentation)


# ----------------------------------------------------------------------------- trained models
# r31 (OOF) and r40 (test) read trained models the same way: these keep them in step.

def trained_models() -> list[str]:
    """Names of the models r21 has trained (a models/<name>/config.json exists)."""
    root = models_dir("x").parent
    return sorted(p.parent.name for p in root.glob("*/config.json")) if root.is_dir() else []


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
    """(by-fold table, fold-mean table) of a trained model on these videos: r40 on the test
    rows, r80 on new clips, so both are made the same way."""
    from a00_common import prediction_frame
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
