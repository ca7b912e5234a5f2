"""Model zoo room: the first-level models by name, their inputs, training and prediction.

A model is a `ModelSpec`: which inputs it reads (a frame-feature set, hash bits, the audio
log-mel, the tabular table) and how it is built — a Keras 3 functional model (only `keras`
and `keras.ops`, so it also runs with KERAS_BACKEND=torch) or a LightGBM one-vs-rest set.
r21 trains a (model, fold) job with `train_fold`; r31/r40 predict with `predict_fold`.

Inputs are read from r11/r12 outputs (`metadata/metadata.csv`, `features/<extractor>/…`) by
`load_inputs`, aligned to any list of filenames; missing videos are flagged, never dropped.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from a00_common import (atomic_path, features_dir, mean_log_loss, metadata_dir, read_json,
                        set_seeds, write_json)


# ----------------------------------------------------------------------------- inputs

TABULAR_METADATA_COLUMNS = [
    "width", "height", "fps", "n_frames", "duration", "bit_rate", "size_bytes", "rotation",
    "has_audio", "audio_seconds", "audio_rms_mean", "audio_rms_std", "audio_rms_max",
    "audio_peak", "audio_silent", "audio_zero_crossing_rate", "readable", "frames_decoded",
]


def load_feature_set(extractor: str, filenames) -> dict:
    """Per-step features, per-video statistics and the missing flag of `filenames`, in order."""
    folder = features_dir(extractor)
    index_path = folder / "index.csv"
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} is missing: run r12_extract_features.py "
                                f"--extractor {extractor} first")
    index = pd.read_csv(index_path, dtype={"filename": str}, keep_default_na=False)
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
    cameras = metadata["camera"].fillna("").astype(str)
    camera_code = pd.Categorical(cameras).codes.astype(np.float64)
    camera_code[cameras.eq("").to_numpy()] = np.nan
    columns["camera_code"] = camera_code
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


def load_inputs(spec: "ModelSpec", filenames) -> dict:
    """The arrays a model reads, keyed by its Keras input names."""
    inputs = {}
    for source in spec.inputs:
        if source == "tabular":
            inputs["tabular"] = load_tabular(filenames).to_numpy(np.float32)
        elif source.startswith("steps:"):
            extractor = source.split(":", 1)[1]
            feature_set = load_feature_set(extractor, filenames)
            inputs["steps"] = feature_set["steps"].astype(np.float32)
            inputs["missing"] = feature_set["missing"][:, None]
        else:
            raise ValueError(f"unknown model input {source!r}")
    return inputs


def required_extractors(spec: "ModelSpec") -> list[str]:
    """The r12 feature sets a model reads (run_all.py waits for exactly these)."""
    extractors = []
    for source in spec.inputs:
        if source == "tabular":
            extractors += ["hashes", "audio_logmel"]
        elif source.startswith("steps:"):
            extractors.append(source.split(":", 1)[1])
    return list(dict.fromkeys(extractors))


def input_hash(spec: "ModelSpec") -> str:
    """Hashes of the feature sets a model reads, so new features retrain the model."""
    parts = []
    for source in spec.inputs:
        extractors = ["hashes", "audio_logmel"] if source == "tabular" else [source.split(":")[1]]
        for extractor in extractors:
            parts.append((read_json(features_dir(extractor) / "config.json") or {}).get("hash", ""))
    return "-".join(parts)


# ----------------------------------------------------------------------------- specs

@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str                      # "keras" or "lightgbm"
    inputs: tuple                  # "tabular", "steps:<extractor>"
    head: str = ""                 # keras head over a step sequence: gru, lstm, attention, tcn, conv2d
    settings: tuple = ()           # (key, value) overrides of the training defaults

    def setting(self, key, default):
        return dict(self.settings).get(key, default)


def _sequence_models(extractor: str, suffix: str = "") -> dict:
    tag = extractor + suffix
    return {
        f"gru_{tag}": ModelSpec(f"gru_{tag}", "keras", (f"steps:{extractor}",), "gru"),
        f"attention_{tag}": ModelSpec(f"attention_{tag}", "keras", (f"steps:{extractor}",),
                                      "attention"),
        f"lstm_{tag}": ModelSpec(f"lstm_{tag}", "keras", (f"steps:{extractor}",), "lstm"),
        f"tcn_{tag}": ModelSpec(f"tcn_{tag}", "keras", (f"steps:{extractor}",), "tcn"),
    }


MODELS: dict[str, ModelSpec] = {
    "lgbm_tabular": ModelSpec("lgbm_tabular", "lightgbm", ("tabular",)),
    **_sequence_models("effnet_lite0"),
    **_sequence_models("effnet_lite0_skip"),
    **_sequence_models("random_lite0"),
    "gru_hashes": ModelSpec("gru_hashes", "keras", ("steps:hashes",), "gru"),
    "audio_cnn": ModelSpec("audio_cnn", "keras", ("steps:audio_logmel",), "conv2d"),
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


# ----------------------------------------------------------------------------- keras models

def _logit(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, 1e-4, 1 - 1e-4)
    return np.log(clipped / (1 - clipped))


def build_keras_model(spec: ModelSpec, input_shapes: dict, n_classes: int, prior: np.ndarray,
                      settings: dict):
    """Functional model: a head over the step sequence, the missing flag, sigmoid outputs.

    The output bias starts at the logit of the class priors, so training starts from the
    prior baseline instead of spending epochs learning that most classes are rare.
    """
    import keras
    from keras import layers
    width = settings["hidden_units"]
    dropout = settings["dropout"]
    steps_input = keras.Input(shape=input_shapes["steps"], name="steps")
    missing_input = keras.Input(shape=(1,), name="missing")
    x = steps_input
    if spec.head == "conv2d":
        x = layers.Reshape(input_shapes["steps"] + (1,), name="spectrogram")(x)
        # log-mel in dB, floored at -100: map the usual -100..+20 range to about 0..3
        x = layers.Rescaling(1 / 40.0, offset=2.5, name="scale_db")(x)
        for block, filters in enumerate((16, 32, 64)):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{block}")(x)
            x = layers.BatchNormalization(name=f"bn{block}")(x)
            x = layers.Activation("relu", name=f"relu{block}")(x)
            x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
        pooled = layers.Concatenate(name="pool")([layers.GlobalAveragePooling2D()(x),
                                                 layers.GlobalMaxPooling2D()(x)])
    else:
        x = layers.LayerNormalization(name="normalize_steps")(x)
        x = layers.Dropout(dropout, name="input_dropout")(x)
        x = layers.Dense(width, activation="gelu", name="project")(x)
        if spec.head == "gru":
            x = layers.Bidirectional(layers.GRU(width // 2, return_sequences=True), name="gru")(x)
            pooled = layers.Concatenate(name="pool")([layers.GlobalMaxPooling1D()(x),
                                                     layers.GlobalAveragePooling1D()(x)])
        elif spec.head == "lstm":
            x = layers.Bidirectional(layers.LSTM(width // 2, return_sequences=True), name="lstm")(x)
            pooled = layers.Concatenate(name="pool")([layers.GlobalMaxPooling1D()(x),
                                                     layers.GlobalAveragePooling1D()(x)])
        elif spec.head == "attention":
            scores = layers.Dense(1, name="attention_score")(x)
            weights = layers.Softmax(axis=1, name="attention_weights")(scores)
            attended = layers.Dot(axes=1, name="attention_pool")([weights, x])
            attended = layers.Flatten(name="attended")(attended)
            # max and min over time: an animal in a few frames shows up in the extremes
            maximum = layers.GlobalMaxPooling1D(name="max_pool")(x)
            minimum = layers.Lambda(lambda t: -keras.ops.max(-t, axis=1), name="min_pool")(x)
            pooled = layers.Concatenate(name="pool")([attended, maximum, minimum])
        elif spec.head == "tcn":
            for block, rate in enumerate((1, 2, 4)):
                residual = x
                x = layers.Conv1D(width, 3, padding="same", dilation_rate=rate,
                                  activation="gelu", name=f"tcn{block}")(x)
                x = layers.Add(name=f"tcn_residual{block}")([x, residual])
            pooled = layers.Concatenate(name="pool")([layers.GlobalMaxPooling1D()(x),
                                                     layers.GlobalAveragePooling1D()(x)])
        else:
            raise ValueError(f"{spec.name}: unknown head {spec.head!r}")
    x = layers.Concatenate(name="with_missing")([pooled, missing_input])
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(width, activation="gelu", name="hidden")(x)
    outputs = layers.Dense(n_classes, activation="sigmoid", name="probabilities",
                           bias_initializer=keras.initializers.Constant(_logit(prior)))(x)
    return keras.Model([steps_input, missing_input], outputs, name=spec.name)


def _batches(inputs: dict, labels, batch_size: int, shuffle: bool, augment: bool, seed: int):
    """A keras.utils.PyDataset over in-memory arrays, with sequence augmentation."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.random = np.random.default_rng(seed)
            self.order = np.arange(len(inputs["missing"]))
            self.on_epoch_end()

        def __len__(self):
            return math.ceil(len(self.order) / batch_size)

        def on_epoch_end(self):
            if shuffle:
                self.random.shuffle(self.order)

        def __getitem__(self, position):
            rows = self.order[position * batch_size:(position + 1) * batch_size]
            steps = inputs["steps"][rows].copy()
            if augment:
                steps = augment_steps(steps, self.random)
            batch = {"steps": steps, "missing": inputs["missing"][rows]}
            return (batch, labels[rows]) if labels is not None else (batch,)

    return Batches()


def augment_steps(steps: np.ndarray, random: np.random.Generator) -> np.ndarray:
    """Time reversal, a random temporal crop stretched back, and step dropout.

    Animals cross the frame either way and enter at any moment, so these keep the label.
    """
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


KERAS_DEFAULTS = {
    "epochs": 40, "batch_size": 32, "learning_rate": 1e-3, "weight_decay": 1e-2,
    "warmup_epochs": 2, "patience": 8, "hidden_units": 128, "dropout": 0.3,
}


def train_keras_fold(spec, inputs, labels, train_rows, validation_rows, fold_dir: Path,
                     fold: int, seed: int, settings: dict, prior: np.ndarray):
    import keras
    from tqdm import tqdm
    keras.backend.clear_session()  # fresh graph per fold: no retracing, no memory growth
    keras.utils.set_random_seed(seed)
    shapes = {"steps": inputs["steps"].shape[1:]}
    model = build_keras_model(spec, shapes, labels.shape[1], prior, settings)
    train_inputs = {key: value[train_rows] for key, value in inputs.items()}
    validation_inputs = {key: value[validation_rows] for key, value in inputs.items()}
    train_data = _batches(train_inputs, labels[train_rows].astype(np.float32),
                          settings["batch_size"], shuffle=True, augment=True, seed=seed)
    validation_data = _batches(validation_inputs, labels[validation_rows].astype(np.float32),
                               256, shuffle=False, augment=False, seed=seed)
    steps_per_epoch = len(train_data)
    total_steps = steps_per_epoch * settings["epochs"]
    warmup_steps = steps_per_epoch * settings["warmup_epochs"]
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(total_steps - warmup_steps, 1), alpha=0.01,
        warmup_target=settings["learning_rate"], warmup_steps=warmup_steps)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=settings["weight_decay"]),
                  loss=keras.losses.BinaryCrossentropy())
    bar = tqdm(total=settings["epochs"], desc=f"{spec.name} fold {fold}", unit="epoch",
               disable=None, dynamic_ncols=True, leave=False)

    class ProgressBar(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", val_loss=f"{logs['val_loss']:.4f}")

    weights_path = fold_dir / f"fold{fold}.weights.h5"
    history = model.fit(train_data, validation_data=validation_data, epochs=settings["epochs"],
                        verbose=0, callbacks=[
                            keras.callbacks.EarlyStopping(patience=settings["patience"],
                                                          restore_best_weights=True),
                            ProgressBar()])
    bar.close()
    with atomic_path(weights_path) as temporary:  # the temp name also ends in .weights.h5
        model.save_weights(str(temporary))
    table = pd.DataFrame(history.history)
    table.insert(0, "epoch", np.arange(1, len(table) + 1))
    return table, float(np.min(history.history["val_loss"]))


def predict_keras(spec, inputs: dict, fold_dir: Path, fold: int, n_classes: int,
                  settings: dict, time_augmentation: int = 1) -> np.ndarray:
    """Fold model's probabilities; with time_augmentation > 1, averaged over temporal views."""
    import keras
    keras.backend.clear_session()
    shapes = {"steps": inputs["steps"].shape[1:]}
    model = build_keras_model(spec, shapes, n_classes, np.full(n_classes, 0.5), settings)
    model.load_weights(str(fold_dir / f"fold{fold}.weights.h5"))
    views = temporal_views(inputs["steps"], time_augmentation) if spec.head != "conv2d" \
        else [inputs["steps"]]
    predictions = [model.predict({"steps": view, "missing": inputs["missing"]}, batch_size=256,
                                 verbose=0) for view in views]
    return np.mean(predictions, axis=0).astype(np.float64)


def temporal_views(steps: np.ndarray, count: int) -> list[np.ndarray]:
    """The sequence itself, reversed, and centred windows stretched back (deterministic TTA)."""
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


# ----------------------------------------------------------------------------- lightgbm

LIGHTGBM_DEFAULTS = {
    "n_estimators": 400, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 5,
    "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.5, "reg_lambda": 1.0,
    "early_stopping_rounds": 30,
}


def train_lightgbm_fold(inputs, labels, train_rows, validation_rows, fold_dir: Path, fold: int,
                        seed: int, settings: dict, prior: np.ndarray):
    """One binary LightGBM per class; a class with no positives in the fold keeps its prior."""
    import lightgbm
    features = inputs["tabular"]
    models, history_rows = {}, []
    for column in range(labels.shape[1]):
        train_labels = labels[train_rows, column]
        if train_labels.min() == train_labels.max():
            models[str(column)] = {"constant": float(prior[column])}
            continue
        parameters = {key: value for key, value in settings.items()
                      if key != "early_stopping_rounds"}
        model = lightgbm.LGBMClassifier(**parameters, random_state=seed + column, verbose=-1,
                                        n_jobs=2)
        model.fit(features[train_rows], train_labels,
                  eval_X=(features[validation_rows],), eval_y=(labels[validation_rows, column],),
                  callbacks=[lightgbm.early_stopping(settings["early_stopping_rounds"],
                                                     verbose=False)])
        models[str(column)] = {"booster": model.booster_.model_to_string(
            num_iteration=model.best_iteration_ or -1)}
        history_rows.append({"class_index": column, "best_iteration": model.best_iteration_,
                             "validation_loss": model.best_score_["valid_0"]["binary_logloss"]})
    write_json(models, fold_dir / f"fold{fold}.lightgbm.json")
    validation = predict_lightgbm({"tabular": features[validation_rows]}, fold_dir, fold,
                                  labels.shape[1])
    return pd.DataFrame(history_rows), mean_log_loss(labels[validation_rows], validation)


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

def resolved_settings(spec: ModelSpec, overrides: dict) -> dict:
    defaults = LIGHTGBM_DEFAULTS if spec.kind == "lightgbm" else KERAS_DEFAULTS
    settings = {**defaults, **dict(spec.settings)}
    settings.update({key: value for key, value in overrides.items() if key in defaults})
    return settings


def fold_output(spec: ModelSpec, fold_dir: Path, fold: int) -> Path:
    suffix = "lightgbm.json" if spec.kind == "lightgbm" else "weights.h5"
    return fold_dir / f"fold{fold}.{suffix}"


def train_fold(spec, inputs, labels, train_rows, validation_rows, fold_dir, fold, seed,
               settings, prior):
    set_seeds(seed)
    if spec.kind == "lightgbm":
        return train_lightgbm_fold(inputs, labels, train_rows, validation_rows, fold_dir, fold,
                                   seed, settings, prior)
    return train_keras_fold(spec, inputs, labels, train_rows, validation_rows, fold_dir, fold,
                            seed, settings, prior)


def predict_fold(spec, inputs, fold_dir, fold, n_classes, settings, time_augmentation=1):
    if spec.kind == "lightgbm":
        return predict_lightgbm(inputs, fold_dir, fold, n_classes)
    return predict_keras(spec, inputs, fold_dir, fold, n_classes, settings, time_augmentation)
