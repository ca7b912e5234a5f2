"""Training of one (model, fold) job: the Keras loop (warm-up + cosine AdamW, optional
early stopping and pseudo-labels) and the LightGBM per-class boosters.

r21 calls `train_fold`; the model's inputs come from a03_models.load_inputs and its network
from a03_networks. Every choice a fold makes (epochs, rounds, a pseudo-label round) is made
on held-out training rows, never on the fold's own validation rows. keras, tensorflow and
lightgbm are imported inside the functions.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from a00_common import default_threads, release_freed_memory, set_seeds
from a00_io import atomic_path, write_json
from a03_models import CLASS_WEIGHTINGS
from a03_networks import batches, build_keras_model, main_input

# ----------------------------------------------------------------------------- class weights

LIGHTGBM_THREADED_ROWS = 10_000
# r21's LightGBM settings that shape a dataset's bins rather than a booster
LIGHTGBM_DATASET_SETTINGS = ("bin_construct_sample_cnt",)
MAX_POSITIVE_WEIGHT = 10.0         # a class with 2 positives must not dominate the loss


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


# ----------------------------------------------------------------------------- keras training

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
        # deterministic cuBLAS needs a fixed workspace, read at its first call on the GPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
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


# ----------------------------------------------------------------------------- lightgbm

def lightgbm_dataset(features, rows: np.ndarray, parameters: dict, seed: int,
                     reference=None):
    """A constructed lightgbm.Dataset of these rows of `features` (a03_models.TabularRows or
    an array), labels left to set. Its bins are `reference`'s, or found from at most
    parameters["bin_construct_sample_cnt"] of the rows, drawn with `seed`: held as a float32
    matrix, 4 bytes a value, where LightGBM's own sampling of a Sequence holds 28. The rows
    are then read a batch at a time (a lightgbm.Sequence), so only LightGBM's binned copy
    (a byte a value) is kept, never the float table."""
    import lightgbm

    class Rows(lightgbm.Sequence):
        batch_size = 4096

        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, index) -> np.ndarray:   # LightGBM takes float64 rows
            return np.asarray(features[rows[index]], np.float64)

    if reference is None:
        sample_size = parameters["bin_construct_sample_cnt"]
        sample = rows if len(rows) <= sample_size else np.sort(
            np.random.default_rng(seed).choice(rows, sample_size, replace=False))
        reference = lightgbm.Dataset(np.asarray(features[sample], np.float32),
                                     params=parameters)
        reference.construct()
    dataset = lightgbm.Dataset(Rows(), label=np.zeros(len(rows)), reference=reference,
                               params=parameters).construct()
    # the sample's float copy and LightGBM's own, freed by now, are not kept while boosting
    release_freed_memory()
    return dataset


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
                  if key not in ("early_stopping_rounds", "class_weighting", "n_estimators",
                                 "n_jobs", *LIGHTGBM_DATASET_SETTINGS)}
    threads = settings["n_jobs"] or \
        (1 if len(train_rows) < LIGHTGBM_THREADED_ROWS else default_threads())
    # the bins are found once per set of rows, from at most bin_construct_sample_cnt of them,
    # and shared by the classes, which differ only in their labels
    dataset_parameters = {"verbose": -1, "num_threads": threads, "data_random_seed": seed,
                          "min_child_samples": settings["min_child_samples"],
                          **{key: settings[key] for key in LIGHTGBM_DATASET_SETTINGS}}

    def dataset(rows: np.ndarray, reference=None):
        return lightgbm_dataset(features, rows, dataset_parameters, seed, reference)

    def boost(training, column: int, rounds: int, validation=None, callbacks=None):
        return lightgbm.train(
            {**parameters, "objective": "binary", "verbose": -1, "num_threads": threads,
             "seed": seed + column, "scale_pos_weight": float(positive_weights[column])},
            training, num_boost_round=rounds, callbacks=callbacks,
            valid_sets=[validation] if validation is not None else None)

    # pass 1: each class's best number of rounds on the held-out visits
    found, stop_losses, booster = {}, {}, None
    fit_set = dataset(fit_rows) if len(stop_rows) else None
    stop_set = dataset(stop_rows, reference=fit_set.reference) if len(stop_rows) else None
    for column in range(labels.shape[1]):
        fit_labels = labels[fit_rows, column]
        if not len(stop_rows) or fit_labels.min() == fit_labels.max() or \
                labels[train_rows, column].min() == labels[train_rows, column].max():
            continue
        fit_set.set_label(fit_labels)
        stop_set.set_label(labels[stop_rows, column])
        booster = boost(fit_set, column, settings["n_estimators"], stop_set,
                        [lightgbm.early_stopping(settings["early_stopping_rounds"],
                                                 verbose=False)])
        found[column] = booster.best_iteration or settings["n_estimators"]
        stop_losses[column] = booster.best_score["valid_0"]["binary_logloss"]
    # a booster holds its datasets: the last one goes too, before the refit's is made
    del fit_set, stop_set, booster
    # a class whose positives are all held out has no count of its own: the classes' median
    typical = int(np.median(list(found.values()))) if found else \
        settings["n_estimators"] if not len(stop_rows) else settings["early_stopping_rounds"]
    # pass 2: refit on every training row with that many rounds
    models, history_rows = {}, []
    train_set = dataset(train_rows)
    for column in range(labels.shape[1]):
        train_labels = labels[train_rows, column]
        if train_labels.min() == train_labels.max():
            models[str(column)] = {"constant": float(prior[column])}
            continue
        rounds = found.get(column, typical)
        train_set.set_label(train_labels)
        models[str(column)] = {"booster": boost(train_set, column, rounds).model_to_string()}
        history_rows.append({"class_index": column, "rounds": rounds,
                             "rounds_from": "own" if column in found else "median",
                             "early_stopping_loss": stop_losses.get(column, np.nan)})
    write_json(models, fold_dir / f"fold{fold}.lightgbm.json")
    return {"history": pd.DataFrame(history_rows),
            # the best held-out loss of the classes that had one (mean over classes)
            "early_stopping_loss": float(np.mean(list(stop_losses.values())))
            if stop_losses else float("nan"),
            "pseudo_labelled_rows": np.zeros(0, dtype=int)}


# ----------------------------------------------------------------------------- entry point

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

