"""Tests of the model zoo (a03_models, a03_networks, a03_training) and the scripts that train
and apply it (r21, r31, r40).

Every test builds a tiny data folder in the contract layout directly with numpy — features of
each extractor, r10's frame cache, metadata, folds — so no video is decoded. Every model
family trains for an epoch or two at toy sizes on the CPU and predicts. The slowest test runs
two folds of one model as two processes at the same time and checks they write what a
sequential run writes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import a03_models as models  # noqa: E402
from a00_io import read_fold_table, write_frames  # noqa: E402
import a03_networks as networks  # noqa: E402
import a03_training as training  # noqa: E402
from a00_metric import mean_log_loss, prior_probabilities  # noqa: E402

CLASSES = ["blank", "chimpanzee", "duiker", "pangolin"]   # pangolin: no positive anywhere
TRAIN_VIDEOS = 24
TEST_VIDEOS = 8
FOLDS = 2
STEPS = 4
CLIP_FRAMES = 4
FRAME_SIZE = 24
TINY_KERAS = {"epochs": 2, "batch_size": 8, "hidden_units": 8, "conv_filters": 4,
              "warmup_epochs": 1, "patience": 2, "clip_frames": CLIP_FRAMES, "clip_size": 16}
TINY_LIGHTGBM = {"n_estimators": 5, "early_stopping_rounds": 2}
FAMILIES = ["gru_effnet_lite0", "lstm_effnet_lite0", "attention_effnet_lite0",
            "tcn_effnet_lite0", "gru_hashes", "audio_cnn", "cnn3d_micro", "lgbm_tabular"]


# ----------------------------------------------------------------------------- tiny data folder

def _write_feature_set(folder: Path, extractor: str, names: list[str], steps: np.ndarray,
                       statistics: np.ndarray, missing: np.ndarray,
                       statistic_names=None) -> None:
    target = folder / "features" / extractor
    target.mkdir(parents=True)
    np.save(target / "features.npy", steps)
    np.save(target / "statistics.npy", statistics.astype(np.float32))
    pd.DataFrame({"filename": names, "split": ["train"] * TRAIN_VIDEOS + ["test"] * TEST_VIDEOS,
                  "row": np.arange(len(names)), "missing": missing.astype(int)}).to_csv(
        target / "index.csv", index=False)
    (target / "config.json").write_text(json.dumps(
        {"extractor": extractor, "hash": f"{extractor}-tiny", "statistic_names": statistic_names}))


def write_tiny_data(folder: Path) -> Path:
    """A data folder with labels, folds, metadata, r12 features and r10 frames for 32 videos.

    Chimpanzee videos carry a clear offset in their frame features and a bright patch in
    their frames, so a model that learns anything beats the prior. The last train video has
    no frames and no audio (missing = 1 everywhere).
    """
    random = np.random.default_rng(0)
    train_names = [f"train_{i:02d}.mp4" for i in range(TRAIN_VIDEOS)]
    test_names = [f"test_{i:02d}.mp4" for i in range(TEST_VIDEOS)]
    names = train_names + test_names
    count = len(names)
    labels = np.zeros((count, len(CLASSES)), np.int8)
    labels[:, 0] = np.arange(count) % 3 == 0                       # blank
    labels[:, 1] = np.arange(count) % 3 == 1                       # chimpanzee
    labels[:, 2] = np.arange(count) % 3 == 2                       # duiker
    (folder / "input" / "videos").mkdir(parents=True)
    train = pd.DataFrame(labels[:TRAIN_VIDEOS], columns=CLASSES)
    train.insert(0, "filename", train_names)
    train.to_csv(folder / "input" / "train_labels.csv", index=False)
    test = pd.DataFrame(np.zeros((TEST_VIDEOS, len(CLASSES))), columns=CLASSES)
    test.insert(0, "filename", test_names)
    test.to_csv(folder / "input" / "submission_format.csv", index=False)

    (folder / "metadata").mkdir()
    pd.DataFrame({"filename": train_names, "fold": np.arange(TRAIN_VIDEOS) % FOLDS}).to_csv(
        folder / "metadata" / "folds.csv", index=False)
    metadata = pd.DataFrame({"filename": names, "width": 64, "height": 48, "fps": 10.0,
                             "duration": random.uniform(3, 6, count), "has_audio": True,
                             "capture_time": "2016-06-01T12:00:00", "camera": "a",
                             "camera_code": 1.0})
    metadata.to_csv(folder / "metadata" / "metadata.csv", index=False)

    missing = np.zeros(count, bool)
    missing[TRAIN_VIDEOS - 1] = True
    chimpanzee = labels[:, 1].astype(bool)
    effnet = random.normal(size=(count, STEPS, 8)).astype(np.float32)
    effnet[chimpanzee, :, :4] += 2.0       # on half the dimensions: layer norm keeps it
    effnet[missing] = 0
    _write_feature_set(folder, "effnet_lite0", names, effnet.astype(np.float16),
                       np.concatenate([effnet.mean(1), effnet.max(1)], 1), missing)
    bits = (random.random((count, STEPS, 128)) < 0.5).astype(np.uint8)
    hash_names = [f"hash_statistic_{i}" for i in range(5)]
    _write_feature_set(folder, "hashes", names, bits, random.normal(size=(count, 5)), missing,
                       hash_names)
    logmel = random.uniform(-100, 10, (count, 16, 8)).astype(np.float16)
    logmel[missing] = 0
    _write_feature_set(folder, "audio_logmel", names, logmel,
                       random.normal(size=(count, 3 * 8 + 3)), missing)

    frames_folder = folder / "cache" / "frames" / "tiny"
    frames_folder.mkdir(parents=True)
    rows = []
    for position, name in enumerate(names):
        if missing[position]:
            rows.append({"filename": name, "frames_path": "", "frames_config": "tiny"})
            continue
        frames = random.integers(0, 120, (6, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        if chimpanzee[position]:
            frames[:, 4:10, 4:10] = 250
        write_frames(frames, frames_folder / f"{name}.jpg", quality=95)
        rows.append({"filename": name, "frames_path": f"frames/tiny/{name}.jpg",
                     "frames_config": "tiny"})
    pd.DataFrame(rows).to_csv(folder / "cache" / "preprocess_index.csv", index=False)
    return folder


@pytest.fixture()
def tiny_data(tmp_path, monkeypatch) -> Path:
    folder = write_tiny_data(tmp_path / "data")
    monkeypatch.setenv("TRAPSTACK_DATA", str(folder))
    return folder


def r21_block(**values) -> dict:
    """r21's tunables block as its main() gets it, these values replaced."""
    import r21_train_models as r21
    from a00_common import script_tunables
    return {**script_tunables(vars(r21)), **values}


def block_values(spec) -> dict:
    """r21's block under the setting names of this model's kind."""
    import r21_train_models as r21
    return r21.setting_values(r21_block(), spec.kind)


def tiny_settings(spec) -> dict:
    tiny = TINY_LIGHTGBM if spec.kind == "lightgbm" else TINY_KERAS
    return models.resolved_settings(spec, block_values(spec), tiny)


def train_labels(folder: Path) -> tuple[list[str], np.ndarray]:
    table = pd.read_csv(folder / "input" / "train_labels.csv")
    return table["filename"].tolist(), table[CLASSES].to_numpy(np.float32)


def submission_names(folder: Path) -> list[str]:
    return pd.read_csv(folder / "input" / "submission_format.csv")["filename"].tolist()


# ----------------------------------------------------------------------------- registry

def test_registry_has_every_family_and_says_what_each_reads():
    heads = {spec.head for spec in models.MODELS.values()}
    assert {"gru", "lstm", "attention", "tcn", "conv2d", "cnn3d"} <= heads
    for backbone in ("effnet_lite0", "random_lite0"):
        for head in ("gru", "lstm", "attention", "tcn"):
            assert models.get_spec(f"{head}_{backbone}").inputs == (f"steps:{backbone}",)
    assert models.required_extractors(models.get_spec("lgbm_tabular")) == ["hashes",
                                                                           "audio_logmel"]
    assert models.required_extractors(models.get_spec("gru_hashes")) == ["hashes"]
    # the 3D CNN reads r10's frame cache, which exists before any r12 extractor runs
    assert models.required_extractors(models.get_spec("cnn3d_micro")) == []
    assert all(spec.description for spec in models.MODELS.values())
    with pytest.raises(ValueError, match="unknown model 'gru_nothing'"):
        models.get_spec("gru_nothing")


def test_settings_precedence_block_spec_command_line():
    spec = models.get_spec("cnn3d_micro")   # its spec sets batch_size 16
    block = block_values(spec)
    assert block["batch_size"] == 32
    assert models.resolved_settings(spec, block)["batch_size"] == 16
    assert models.resolved_settings(spec, {**block, "batch_size": 64})["batch_size"] == 16
    assert models.resolved_settings(spec, {**block, "batch_size": 64},
                                    {"batch_size": 4})["batch_size"] == 4
    assert models.resolved_settings(spec, {**block, "epochs": 7})["epochs"] == 7
    # keys a model does not use are ignored: the clip size is no setting of a sequence model
    sequence_model = models.get_spec("gru_effnet_lite0")
    assert "clip_size" not in models.resolved_settings(
        sequence_model, {**block_values(sequence_model), "clip_size": 96})
    with pytest.raises(ValueError, match="class_weighting 'balanced' is not one of"):
        models.resolved_settings(spec, block, {"class_weighting": "balanced"})
    # a setting without a value is an error, never a silent default
    with pytest.raises(ValueError, match="no value for the setting.*epochs"):
        models.resolved_settings(spec, {key: value for key, value in block.items()
                                        if key != "epochs"})


def test_r21s_block_is_the_one_source_of_every_models_settings():
    """Every registered model gets each setting it trains with from r21's block (a LightGBM
    setting from GBM_<NAME>), and the command line is read the same way."""
    import r21_train_models as r21
    block = r21_block()
    for spec in models.MODELS.values():
        settings = r21.model_settings(spec, block, {})
        assert set(settings) == set(models.setting_names(spec))
    lightgbm = r21.model_settings(models.get_spec("lgbm_tabular"), block,
                                  {"GBM_LEARNING_RATE": 0.1})
    assert lightgbm["learning_rate"] == 0.1 and lightgbm["n_estimators"] == 400
    keras_settings = r21.model_settings(models.get_spec("gru_effnet_lite0"), block, {})
    assert keras_settings["learning_rate"] == 1e-3
    assert keras_settings["class_weighting"] == "none"
    assert lightgbm["class_weighting"] == "sqrt_inverse_frequency"
    # the command line beats a model's own settings; the block does not
    audio = models.get_spec("audio_cnn")
    assert r21.model_settings(audio, {**block, "LEARNING_RATE": 5e-3}, {})["learning_rate"] \
        == 2e-3
    assert r21.model_settings(audio, block, {"LEARNING_RATE": 5e-3})["learning_rate"] == 5e-3


# ----------------------------------------------------------------------------- every family

@pytest.mark.parametrize("name", FAMILIES)
def test_every_model_family_trains_and_predicts_on_cpu(tiny_data, tmp_path, name):
    spec = models.get_spec(name)
    settings = tiny_settings(spec)
    filenames, labels = train_labels(tiny_data)
    inputs = models.load_inputs(spec, filenames, settings)
    folds = np.arange(len(filenames)) % FOLDS
    train_rows, validation_rows = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    folder = tmp_path / "model"
    result = training.train_fold(spec, inputs, labels, train_rows, validation_rows, folder, 0,
                                 1, settings, prior_probabilities(labels[train_rows]))
    assert models.fold_output(spec, folder, 0).exists()
    assert len(result["history"]) >= 1
    assert np.isfinite(result["early_stopping_loss"])
    test_inputs = models.load_inputs(spec, submission_names(tiny_data), settings)
    predictions = models.predict_fold(spec, test_inputs, folder, 0, len(CLASSES), settings,
                                      time_augmentation=2, flip_augmentation=True)
    assert predictions.shape == (TEST_VIDEOS, len(CLASSES))
    assert np.isfinite(predictions).all() and predictions.min() >= 0 and predictions.max() <= 1
    if spec.kind == "lightgbm":
        # pangolin has no positive in the fold: no booster, its prior is the prediction
        prior = prior_probabilities(labels[train_rows])
        np.testing.assert_allclose(predictions[:, CLASSES.index("pangolin")],
                                   prior[CLASSES.index("pangolin")])


def test_a_sequence_model_learns_a_clear_signal(tiny_data, tmp_path):
    spec = models.get_spec("attention_effnet_lite0")
    settings = models.resolved_settings(spec, block_values(spec),
                                        {**TINY_KERAS, "epochs": 25, "patience": 25,
                                         "hidden_units": 16, "learning_rate": 3e-3})
    filenames, labels = train_labels(tiny_data)
    inputs = models.load_inputs(spec, filenames, settings)
    folds = np.arange(len(filenames)) % FOLDS
    train_rows, validation_rows = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    prior = prior_probabilities(labels[train_rows])
    result = training.train_fold(spec, inputs, labels, train_rows, validation_rows,
                                 tmp_path / "model", 0, 1, settings, prior)
    prior_loss = mean_log_loss(labels[validation_rows],
                               np.tile(prior, (len(validation_rows), 1)))
    assert result["early_stopping_loss"] < prior_loss - 0.02
    history = result["history"]
    assert {"epoch", "phase", "loss", "val_loss", "val_log_loss"} <= set(history.columns)


def test_a_video_without_input_is_predicted_from_its_flag_alone():
    """Two videos without audio get the same prediction whatever stands in for their input."""
    import keras
    for name, shape in (("audio_cnn", (16, 8)), ("cnn3d_micro", (4, 16, 16, 3)),
                        ("gru_effnet_lite0", (4, 8))):
        spec = models.get_spec(name)
        keras.utils.set_random_seed(0)
        model = networks.build_keras_model(spec, {networks.main_input(spec): shape}, 3,
                                           np.array([0.2, 0.3, 0.4]),
                                           models.resolved_settings(spec, block_values(spec),
                                                                    TINY_KERAS))
        # conv heads start with a zero output kernel (exactly the prior): give it weights,
        # as training would, so the video input can show through
        output_layer = model.get_layer("probabilities")
        kernel, bias = output_layer.get_weights()
        output_layer.set_weights([np.random.default_rng(1).normal(size=kernel.shape), bias])
        video = np.random.default_rng(0).uniform(0, 200, (2,) + shape).astype(np.float32)
        missing = model.predict({networks.main_input(spec): video,
                                 "missing": np.ones((2, 1), np.float32)}, verbose=0)
        present = model.predict({networks.main_input(spec): video,
                                 "missing": np.zeros((2, 1), np.float32)}, verbose=0)
        np.testing.assert_allclose(missing[0], missing[1], atol=1e-6, err_msg=name)
        assert np.abs(present[0] - present[1]).max() > 1e-6, name


def test_audio_of_videos_without_audio_is_silence_not_zeros(tiny_data):
    spec = models.get_spec("audio_cnn")
    filenames, _ = train_labels(tiny_data)
    inputs = models.load_inputs(spec, filenames)
    assert inputs["missing"][-1, 0] == 1
    assert (inputs["steps"][-1] == networks.LOGMEL_FLOOR_DB).all()
    assert (inputs["missing"][:-1] == 0).all()
    # the file keeps what r12 wrote: the silence is put in as rows are read
    stored = np.load(tiny_data / "features" / "audio_logmel" / "features.npy")
    assert (stored[TRAIN_VIDEOS - 1] == 0).all()


def test_a_feature_set_is_read_from_its_file_as_rows_are_asked_for(tiny_data):
    """A job's memory holds the batch it reads, not a copy of every row: the steps stay a
    memory map of features.npy, and any rows asked for equal the stored ones."""
    spec = models.get_spec("gru_effnet_lite0")
    filenames, _ = train_labels(tiny_data)
    reversed_names = filenames[::-1]
    steps = models.load_inputs(spec, reversed_names)["steps"]
    assert isinstance(steps.array, np.memmap)
    stored = np.load(tiny_data / "features" / "effnet_lite0" / "features.npy")
    rows = np.arange(TRAIN_VIDEOS)[::-1]
    assert steps.shape == (TRAIN_VIDEOS, *stored.shape[1:]) and steps.dtype == stored.dtype
    np.testing.assert_array_equal(steps[np.array([3, 0, 7])], stored[rows[[3, 0, 7]]])
    np.testing.assert_array_equal(steps[2:5], stored[rows[2:5]])
    np.testing.assert_array_equal(np.asarray(steps), stored[rows])


def test_clips_come_from_the_frame_cache_with_missing_videos_flagged(tiny_data):
    clips = models.load_clips(submission_names(tiny_data)[:2] + [train_labels(tiny_data)[0][-1]],
                              clip_frames=3, clip_size=12)
    assert clips["clip"].shape == (3, 3, 12, 12, 3) and clips["clip"].dtype == np.uint8
    assert clips["missing"][:, 0].tolist() == [0.0, 0.0, 1.0]
    assert clips["clip"][2].max() == 0
    with pytest.raises(ValueError, match="not listed"):
        models.load_clips(["nowhere.mp4"], 3, 12)


def test_tabular_rows_are_load_tabulars_table_read_as_rows_are_asked_for(tiny_data):
    """lgbm_tabular's input: load_tabular's columns and values (as float32), in the order of
    the filenames asked for; the statistics stay in r12's files until rows are read."""
    filenames = train_labels(tiny_data)[0][::-1]
    table = models.load_tabular(filenames)
    rows = models.TabularRows(filenames)
    assert rows.columns == table.columns.tolist() and rows.shape == table.shape
    expected = table.to_numpy(np.float32)
    np.testing.assert_array_equal(np.asarray(rows), expected)
    np.testing.assert_array_equal(rows[3], expected[3])
    np.testing.assert_array_equal(rows[2:5], expected[2:5])
    np.testing.assert_array_equal(rows[np.array([7, 0, 7])], expected[[7, 0, 7]])
    assert "hash_statistic_0" in rows.columns and "frames_missing" in rows.columns
    without_frames = filenames.index(f"train_{TRAIN_VIDEOS - 1:02d}.mp4")
    assert rows[without_frames][rows.columns.index("frames_missing")] == 1


def test_a_lightgbm_dataset_read_in_batches_trains_what_the_whole_matrix_trains():
    """Rows streamed to LightGBM a batch at a time, with bins from every row, give the booster
    that the whole float matrix gives; with fewer sampled rows than rows it still trains."""
    import lightgbm
    random = np.random.default_rng(3)
    features = random.normal(size=(500, 6)).astype(np.float32)
    labels = (features[:, 0] + 0.5 * random.normal(size=500) > 0).astype(np.float64)
    rows = np.arange(40, 500)
    parameters = {"verbose": -1, "num_threads": 1, "data_random_seed": 1,
                  "min_child_samples": 5, "bin_construct_sample_cnt": 1000}
    booster_parameters = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 1,
                          "num_leaves": 7, "min_child_samples": 5}
    streamed = training.lightgbm_dataset(features, rows, parameters, seed=1)
    streamed.set_label(labels[rows])
    whole = lightgbm.Dataset(features[rows], label=labels[rows], params=parameters)
    from_stream = lightgbm.train(booster_parameters, streamed, num_boost_round=10)
    from_whole = lightgbm.train(booster_parameters, whole, num_boost_round=10)
    np.testing.assert_array_equal(from_stream.predict(features), from_whole.predict(features))
    sampled = training.lightgbm_dataset(features, rows, {**parameters,
                                                         "bin_construct_sample_cnt": 50}, seed=1)
    sampled.set_label(labels[rows])
    predictions = lightgbm.train(booster_parameters, sampled, num_boost_round=10).predict(
        features)
    assert np.mean((predictions > 0.5) == labels) > 0.8


def test_rows_digest_follows_the_digested_values_of_the_rows_asked_for(tmp_path):
    """What r21 decides "retrain" by: the digest changes with a digested value of a listed row
    or the order of the rows asked for, not with other columns, other rows or the CSV's row
    order; a row that is not in the CSV is an error naming it."""
    table = pd.DataFrame({"filename": ["a.mp4", "b.mp4", "c.mp4"], "digest": ["1", "2", "3"],
                          "note": ["x", "y", "z"]})
    path = tmp_path / "index.csv"

    def digest(frame, names=("a.mp4", "b.mp4")):
        frame.to_csv(path, index=False)
        return models.rows_digest(path, list(names), ["digest", "absent column"], str(path))

    reference = digest(table)
    assert digest(table.iloc[::-1]) == reference
    assert digest(table.assign(note=["q", "q", "q"])) == reference
    assert digest(table.assign(digest=["1", "2", "9"])) == reference
    assert digest(table.assign(digest=["1", "5", "3"])) != reference
    assert digest(table, ("b.mp4", "a.mp4")) != reference
    with pytest.raises(ValueError, match="'d.mp4'"):
        digest(table, ("a.mp4", "d.mp4"))


# ----------------------------------------------------------------------------- pure functions

def test_temporal_views_are_the_sequence_its_reversal_and_stretched_windows():
    steps = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)
    assert len(models.temporal_views(steps, 1)) == 1
    views = models.temporal_views(steps, 4)
    assert len(views) == 4
    np.testing.assert_array_equal(views[0], steps)
    np.testing.assert_array_equal(views[1], steps[:, ::-1])
    for view in views:
        assert view.shape == steps.shape
        # every step of a window is a step of the sequence, in time order
        assert np.isin(view, steps).all()
        assert (np.diff(view[0, :, 0]) >= 0).all() or (np.diff(view[0, :, 0]) <= 0).all()
    assert not np.array_equal(views[2], steps) and not np.array_equal(views[3], steps)


def test_tta_views_mirror_clips_only():
    clips = np.random.default_rng(0).integers(0, 255, (2, 4, 6, 6, 3)).astype(np.uint8)
    spec_3d = models.get_spec("cnn3d_micro")
    views = models.tta_views(spec_3d, clips, 2, flip_augmentation=True)
    assert len(views) == 4
    np.testing.assert_array_equal(views[2], clips[:, :, :, ::-1])
    np.testing.assert_array_equal(views[3], clips[:, ::-1, :, ::-1])
    assert len(models.tta_views(spec_3d, clips, 2, flip_augmentation=False)) == 2
    steps = np.zeros((2, 5, 3), np.float32)
    assert len(models.tta_views(models.get_spec("gru_effnet_lite0"), steps, 3, True)) == 3
    assert len(models.tta_views(models.get_spec("audio_cnn"), steps, 3, True)) == 1
    with pytest.raises(ValueError, match="time_augmentation must be >= 1"):
        models.tta_views(spec_3d, clips, 0, True)


def test_augmentations_keep_shapes_and_value_ranges_and_leave_the_input_alone():
    random = np.random.default_rng(0)
    clips = random.integers(0, 256, (3, 4, 16, 16, 3)).astype(np.uint8)
    before = clips.copy()
    augmented = networks.augment_clip(clips, np.random.default_rng(1))
    assert augmented.shape == clips.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0 and augmented.max() <= 255
    np.testing.assert_array_equal(clips, before)
    np.testing.assert_array_equal(augmented, networks.augment_clip(clips, np.random.default_rng(1)))

    spectrogram = random.uniform(-100, 20, (3, 32, 8)).astype(np.float32)
    before = spectrogram.copy()
    augmented = networks.augment_spectrogram(spectrogram, np.random.default_rng(1))
    assert augmented.shape == spectrogram.shape
    assert augmented.min() >= networks.LOGMEL_FLOOR_DB
    np.testing.assert_array_equal(spectrogram, before)

    steps = random.normal(size=(3, 8, 5)).astype(np.float32)
    before = steps.copy()
    assert networks.augment_steps(steps, np.random.default_rng(1)).shape == steps.shape
    np.testing.assert_array_equal(steps, before)


def test_batches_depend_only_on_seed_epoch_and_position():
    spec = models.get_spec("gru_effnet_lite0")
    inputs = {"steps": np.arange(10 * 4 * 2, dtype=np.float32).reshape(10, 4, 2),
              "missing": np.zeros((10, 1), np.float32)}
    targets = np.arange(10, dtype=np.float32)[:, None]
    first = networks.batches(spec, inputs, targets, 4, shuffle=True, augment_batches=True, seed=3)
    second = networks.batches(spec, inputs, targets, 4, shuffle=True, augment_batches=True, seed=3)
    second[1]  # reading ahead (as Keras does to infer shapes) changes nothing
    for position in range(len(first)):
        np.testing.assert_array_equal(first[position][0]["steps"], second[position][0]["steps"])
    epoch_rows = np.concatenate([first[position][1][:, 0] for position in range(len(first))])
    assert sorted(epoch_rows) == list(range(10))        # every row once per epoch
    first.on_epoch_end()
    next_rows = np.concatenate([first[position][1][:, 0] for position in range(len(first))])
    assert sorted(next_rows) == list(range(10)) and not np.array_equal(epoch_rows, next_rows)


def test_class_weights_and_weighted_loss():
    labels = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]], np.float32)
    np.testing.assert_array_equal(training.positive_class_weights(labels, "none"), [1, 1, 1])
    weights = training.positive_class_weights(labels, "sqrt_inverse_frequency")
    # 1 positive in 4: sqrt(3); no positive: 1; 3 in 4: below 1, so clipped up to 1
    np.testing.assert_allclose(weights, [np.sqrt(3), 1, 1], rtol=1e-6)
    many = np.zeros((1000, 1), np.float32)
    many[0] = 1
    assert training.positive_class_weights(many, "sqrt_inverse_frequency")[0] == \
        training.MAX_POSITIVE_WEIGHT

    import keras
    probabilities = np.array([[0.9, 0.2, 0.6], [0.3, 0.1, 0.8]], np.float32)
    targets = np.array([[1, 0, 0.5], [0, 0, 1]], np.float32)   # soft targets are allowed
    plain = keras.ops.convert_to_numpy(
        training.weighted_binary_crossentropy(np.ones(3))(targets, probabilities))
    expected = -np.mean(targets * np.log(probabilities)
                        + (1 - targets) * np.log(1 - probabilities), axis=1)
    np.testing.assert_allclose(plain, expected, rtol=1e-5)
    weighted = keras.ops.convert_to_numpy(
        training.weighted_binary_crossentropy(np.array([2, 1, 1]))(targets, probabilities))
    np.testing.assert_allclose(weighted[0] - plain[0], -np.log(0.9) / 3, rtol=1e-5)
    np.testing.assert_allclose(weighted[1], plain[1], rtol=1e-6)


def test_pseudo_label_selection_keeps_rows_confident_in_every_class():
    probabilities = np.array([[0.02, 0.97, 0.01],    # confident everywhere
                              [0.02, 0.60, 0.01],    # unsure about one class
                              [0.08, 0.05, 0.93]])   # confident at the 0.1 bound
    assert training.select_pseudo_labels(probabilities, 0.1).tolist() == [0, 2]
    assert training.select_pseudo_labels(probabilities, 0.05).tolist() == [0]
    assert training.select_pseudo_labels(probabilities, 0.5).tolist() == [0, 1, 2]


# ----------------------------------------------------------------------------- r21 / r31 / r40

def run_script(script: str, data: Path, *options: str, wait: bool = True):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TRAPSTACK_DATA": str(data)}
    command = [sys.executable, str(PROJECT_ROOT / script), "--data", str(data), *options]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return finish(process) if wait else process


def finish(process) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def read_weights(path: Path) -> dict:
    import h5py
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_pseudo_labels_come_from_the_folds_own_first_round_model(tiny_data, tmp_path,
                                                                 monkeypatch):
    """Not from other folds' models (they saw this fold's labels): training is deterministic,
    so the first round equals a plain run of the same fold, whose test predictions must be
    exactly what the pseudo-labels are chosen from."""
    spec = models.get_spec("attention_effnet_lite0")
    plain = tiny_settings(spec)
    with_pseudo_labels = {**plain, "pseudo_label_epochs": 2, "pseudo_label_max_uncertainty": 0.5}
    filenames, labels = train_labels(tiny_data)
    inputs = models.load_inputs(spec, filenames, plain)
    test_inputs = models.load_inputs(spec, submission_names(tiny_data), plain)
    folds = np.arange(len(filenames)) % FOLDS
    train_rows, validation_rows = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    prior = prior_probabilities(labels[train_rows])
    training.train_fold(spec, inputs, labels, train_rows, validation_rows, tmp_path / "plain",
                        0, 1, plain, prior)
    expected = models.predict_fold(spec, test_inputs, tmp_path / "plain", 0, len(CLASSES), plain)
    seen = []
    select = training.select_pseudo_labels
    monkeypatch.setattr(training, "select_pseudo_labels",
                        lambda probabilities, bound: seen.append(probabilities)
                        or select(probabilities, bound))
    result = training.train_fold(spec, inputs, labels, train_rows, validation_rows,
                                 tmp_path / "pseudo", 0, 1, with_pseudo_labels, prior,
                                 test_inputs)
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], expected, atol=1e-6)
    assert result["pseudo_labelled_rows"].tolist() == list(range(TEST_VIDEOS))


@pytest.mark.parametrize("name", ["gru_effnet_lite0", "lgbm_tabular"])
def test_a_folds_own_labels_never_steer_its_out_of_fold_predictions(tiny_data, name):
    """Early stopping (epochs, rounds per class) reads held-out training visits, never the
    fold a model predicts: flipping every label of fold 0 leaves fold 0's predictions exactly
    as they were; flipping fold 1's labels (training rows of fold 0) moves them."""
    import r21_train_models as r21
    spec = models.get_spec(name)
    # Keras: early stopping on (LightGBM holds out GBM_EARLY_STOPPING_FRACTION anyway)
    block = r21_block(EARLY_STOPPING_FRACTION=0.25, **(
        {"EPOCHS": 6, "PATIENCE": 1, "BATCH_SIZE": 8, "HIDDEN_UNITS": 8, "WARMUP_EPOCHS": 1}
        if spec.kind == "keras" else {"GBM_N_ESTIMATORS": 30}))
    filenames, _ = train_labels(tiny_data)
    folds = pd.read_csv(tiny_data / "metadata" / "folds.csv")["fold"].to_numpy()
    fold_rows = [name_ for name_, fold in zip(filenames, folds, strict=True) if fold == 0]
    labels_path = tiny_data / "input" / "train_labels.csv"
    original = pd.read_csv(labels_path)

    def fold0_predictions(flipped_fold):
        table = original.copy()
        if flipped_fold is not None:
            table.loc[folds == flipped_fold, CLASSES] = 1 - table.loc[folds == flipped_fold,
                                                                      CLASSES]
        table.to_csv(labels_path, index=False)
        r21.train_model(name, 0, force=False, config=block, command_line={})
        settings = r21.model_settings(spec, block, {})
        inputs = models.load_inputs(spec, fold_rows, settings)
        return models.predict_fold(spec, inputs, tiny_data / "models" / name, 0, len(CLASSES),
                                   settings)

    before = fold0_predictions(None)
    trained = json.loads((tiny_data / "models" / name / "fold0.json").read_text())
    assert trained["early_stopping_rows"] > 0
    np.testing.assert_array_equal(fold0_predictions(0), before)
    assert np.abs(fold0_predictions(1) - before).max() > 1e-4


def test_r21_pseudo_labels_only_test_videos_and_records_them(tiny_data):
    import r21_train_models as r21
    tiny_block = {key.upper(): value for key, value in TINY_KERAS.items()}
    r21.train_model("attention_effnet_lite0", 0, force=True, config=r21_block(
        **tiny_block, PSEUDO_LABEL_EPOCHS=2, PSEUDO_LABEL_MAX_UNCERTAINTY=0.5),
        command_line={})
    folder = tiny_data / "models" / "attention_effnet_lite0"
    fold_info = json.loads((folder / "fold0.json").read_text())
    pseudo_labelled = fold_info["pseudo_labelled_videos"]
    filenames, _ = train_labels(tiny_data)
    # bound 0.5 admits every test video, and never a train video (so no fold-0 row either)
    assert sorted(pseudo_labelled) == sorted(submission_names(tiny_data))
    assert not set(pseudo_labelled) & set(filenames)
    history = pd.read_csv(folder / "fold0_history.csv")
    assert history["phase"].tolist()[-1] == "pseudo_labels"
    config = json.loads((folder / "config.json").read_text())
    assert config["settings"]["pseudo_label_epochs"] == 2 and config["commit"]


def test_r21_names_the_folds_when_asked_for_one_that_does_not_exist(tiny_data):
    import r21_train_models as r21
    with pytest.raises(SystemExit, match=r"--fold 9 is not in metadata/folds.csv \(folds: 0, 1\)"):
        r21.train_model("lgbm_tabular", 9, force=False, config=r21_block(), command_line={})


def test_r21_imports_no_framework_and_pins_the_gpu_before_parsing(tiny_data):
    probe = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
        "import r21_train_models as r21\n"
        "sys.argv = ['r21', '--gpu', '7', '--list_jobs', '--model', 'cnn3d_micro']\n"
        "r21.main()\n"
        "print('CUDA', os.environ['CUDA_VISIBLE_DEVICES'])\n"
        "print('FRAMEWORKS', sorted(m for m in ('keras', 'tensorflow', 'torch', 'lightgbm')"
        " if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, text=True,
                            capture_output=True, timeout=120,
                            env={**os.environ, "TRAPSTACK_DATA": str(tiny_data)})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    jobs = json.loads(next(line for line in lines if line.startswith("JOBS "))[5:])
    assert [(job["model"], job["fold"], job["extractors"], job["gpu"]) for job in jobs] == \
        [("cnn3d_micro", 0, [], True), ("cnn3d_micro", 1, [], True)]
    assert "CUDA 7" in lines
    assert "FRAMEWORKS []" in lines


@pytest.mark.slow
def test_two_folds_in_parallel_write_what_a_sequential_run_writes(tmp_path):
    sequential = write_tiny_data(tmp_path / "sequential")
    parallel = tmp_path / "parallel"
    shutil.copytree(sequential, parallel)
    options = ("--model", "gru_effnet_lite0", "--epochs", "2", "--hidden_units", "8",
               "--batch_size", "8", "--warmup_epochs", "1")
    # one process trains both folds in turn; beside it, one process per fold
    jobs = [run_script("r21_train_models.py", sequential, *options, wait=False)] + \
        [run_script("r21_train_models.py", parallel, *options, "--fold", str(fold), wait=False)
         for fold in range(FOLDS)]
    for job in jobs:
        finish(job)

    model = Path("models") / "gru_effnet_lite0"
    assert (sequential / model / "config.json").read_bytes() == \
        (parallel / model / "config.json").read_bytes()
    for fold in range(FOLDS):
        one, other = (read_weights(root / model / f"fold{fold}.weights.h5")
                      for root in (sequential, parallel))
        assert one.keys() == other.keys() and len(one) > 5
        for name in one:
            np.testing.assert_allclose(one[name], other[name], atol=1e-6, rtol=0, err_msg=name)
        histories = [pd.read_csv(root / model / f"fold{fold}_history.csv")
                     for root in (sequential, parallel)]
        pd.testing.assert_frame_equal(*histories, atol=1e-6)
        infos = [json.loads((root / model / f"fold{fold}.json").read_text())
                 for root in (sequential, parallel)]
        for info in infos:
            info.pop("train_seconds")       # wall time is the one thing allowed to differ
        assert infos[0] == infos[1]

    # the same weights predict the same: r31 and r40 run on the sequential folder only
    run_script("r31_validate.py", sequential, "--model", "gru_effnet_lite0")
    level1 = Path("predictions") / "level1"
    oof = pd.read_csv(sequential / level1 / "gru_effnet_lite0_oof.csv")
    filenames, labels = train_labels(sequential)
    assert oof["filename"].tolist() == filenames
    by_fold = read_fold_table(sequential / level1 / "gru_effnet_lite0_train_by_fold.npz")
    assert len(by_fold) == FOLDS * TRAIN_VIDEOS and list(by_fold.columns[:2]) == ["fold",
                                                                                "filename"]
    scores = pd.read_csv(sequential / "reports" / "scores.csv")
    assert set(scores["fold"].astype(str)) == {"0", "1", "all"}
    assert np.isclose(scores.loc[scores["fold"].astype(str) == "all", "log_loss"].iloc[0],
                      mean_log_loss(labels, oof[CLASSES].to_numpy()))

    run_script("r40_process_test.py", sequential, "--model", "gru_effnet_lite0")
    test = pd.read_csv(sequential / level1 / "gru_effnet_lite0_test.csv")
    test_by_fold = read_fold_table(sequential / level1 / "gru_effnet_lite0_test_by_fold.npz")
    assert test["filename"].tolist() == submission_names(sequential)
    fold_tables = [table[CLASSES].to_numpy() for _, table in test_by_fold.groupby("fold")]
    assert len(fold_tables) == FOLDS
    np.testing.assert_allclose(test[CLASSES].to_numpy(), np.mean(fold_tables, axis=0), atol=1e-9)
    stamps = [json.loads((sequential / level1 / f"gru_effnet_lite0_{part}.json").read_text())
              ["stamp"] for part in ("oof", "test")]
    assert stamps[0] == stamps[1]
