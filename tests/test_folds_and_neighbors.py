"""Folds (r11) and neighbour features (r48) against hand-made examples."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import r11_get_metadata_table as r11
import a05_stacking as stacking
from a00_io import write_fold_table
import r48_neighbor_features as r48


# ----------------------------------------------------------------------------- folds

def _labels(count: int, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    classes = ["bird", "blank", "small cat", "other (primate)"]
    table = pd.DataFrame({"filename": [f"v{i:03d}.mp4" for i in range(count)]})
    blank = rng.random(count) < 0.4
    table["blank"] = blank.astype(int)
    table["bird"] = (~blank & (rng.random(count) < 0.5)).astype(int)
    table["small cat"] = (~blank & (table["bird"] == 0)).astype(int)
    table["other (primate)"] = (~blank & (rng.random(count) < 0.1)).astype(int)
    return table[["filename"] + classes], classes


def test_every_video_is_in_exactly_one_fold_and_classes_are_spread():
    labels, classes = _labels(200)
    sequences = pd.Series("video:" + labels["filename"])
    folds = r11.make_folds(labels, classes, sequences)
    assert folds["filename"].tolist() == labels["filename"].tolist()
    assert sorted(folds["fold"].unique()) == list(range(r11.N_FOLDS))
    merged = labels.merge(folds, on="filename")
    for name in classes:
        per_fold = merged.groupby("fold")[name].sum()
        total = merged[name].sum()
        # stratified: each fold holds about a fifth of every class (±2 videos)
        assert (abs(per_fold - total / r11.N_FOLDS) <= 2).all(), (name, per_fold.tolist())


def test_videos_of_one_visit_share_a_fold_and_the_split_is_seeded():
    labels, classes = _labels(120, seed=1)
    sequences = pd.Series([f"visit{i // 3}" for i in range(len(labels))])
    first = r11.make_folds(labels, classes, sequences)
    assert (first.groupby("sequence")["fold"].nunique() == 1).all()
    again = r11.make_folds(labels, classes, sequences)
    assert first["fold"].tolist() == again["fold"].tolist()


def test_too_few_visits_for_the_folds_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    labels, classes = _labels(6)
    with pytest.raises(r11.InputError, match="independent visit"):
        r11.make_folds(labels, classes, pd.Series(["a", "a", "b", "b", "c", "c"]))


def test_visits_are_same_camera_clips_closer_than_the_gap():
    minute = pd.Timedelta(minutes=1)
    start = pd.Timestamp("2017-01-01T10:00:00Z")
    table = pd.DataFrame({
        "filename": ["a", "b", "c", "d", "e"],
        "capture_time": [start, start + 2 * minute, start + 60 * minute, start + minute,
                         start + 3 * minute],
        "capture_time_source": ["video_metadata"] * 4 + ["file_mtime"],
        "camera": ["north", "north", "north", "south", "south"],
    })
    sequences = r11.assign_sequences(table)
    assert sequences[0] == sequences[1]           # 2 minutes apart, same camera
    assert sequences[2] != sequences[1]           # an hour later: a new visit
    assert sequences[3] != sequences[0]           # another camera
    assert sequences[4] == "video:e"              # a file time is no trusted clock


# ----------------------------------------------------------------------------- neighbour features

def test_neighbour_means_on_six_hand_made_videos():
    # camera A at t = 0, 10, 20, 30 with predictions .1 .2 .3 .4; camera B at t = 5, 100
    # with .9 .5 — given in shuffled order; one video has no capture time.
    order = [2, 4, 0, 6, 3, 1, 5]
    seconds = np.array([0, 5, 10, 20, 30, 100, np.nan])[order]
    groups = np.array(["A", "B", "A", "A", "A", "B", "A"])[order]
    values = np.array([[0.1], [0.9], [0.2], [0.3], [0.4], [0.5], [0.7]])[order]
    table = stacking.neighbor_features(seconds, groups, values, (1, 2), "n_", ["bird"])
    by_time = {t: row for t, row in zip(seconds, table.to_dict("records")) if not np.isnan(t)}
    expected_k1 = {0: 0.2, 10: 0.2, 20: 0.3, 30: 0.3, 5: 0.5, 100: 0.9}
    expected_k2 = {0: 0.25, 10: (0.1 + 0.3 + 0.4) / 3, 20: (0.1 + 0.2 + 0.4) / 3, 30: 0.25,
                   5: 0.5, 100: 0.9}
    for time, row in by_time.items():
        assert row["n_mean1_bird"] == pytest.approx(expected_k1[time])
        assert row["n_mean2_bird"] == pytest.approx(expected_k2[time])
    assert np.isnan(by_time[0]["n_previous_bird"]) and by_time[0]["n_next_bird"] == 0.2
    assert by_time[100]["n_previous_bird"] == 0.9 and np.isnan(by_time[100]["n_next_bird"])
    assert by_time[5]["n_log_gap_next"] == pytest.approx(np.log1p(95))
    assert by_time[20]["n_group_size"] == 4 and by_time[5]["n_group_size"] == 2
    unknown = table.iloc[list(order).index(6)]
    assert np.isnan(unknown["n_mean1_bird"]) and unknown["n_group_size"] == 0


def _write_level1(folder, model, train, test, fold_of_train, classes, in_sample_labels, rng):
    """By-fold prediction tables where every fold model memorised its training rows."""
    train_rows, test_rows = [], []
    for fold in sorted(set(fold_of_train)):
        predictions = rng.uniform(0.05, 0.95, (len(train), len(classes)))
        seen = fold_of_train != fold
        predictions[seen] = in_sample_labels[seen]  # in-sample: the labels themselves
        frame = pd.DataFrame(predictions, columns=classes)
        frame.insert(0, "filename", train)
        frame.insert(0, "fold", fold)
        train_rows.append(frame)
        test_frame = pd.DataFrame(rng.uniform(0.05, 0.95, (len(test), len(classes))),
                                  columns=classes)
        test_frame.insert(0, "filename", test)
        test_frame.insert(0, "fold", fold)
        test_rows.append(test_frame)
    write_fold_table(pd.concat(train_rows), folder / f"{model}_train_by_fold.npz")
    write_fold_table(pd.concat(test_rows), folder / f"{model}_test_by_fold.npz")


def test_no_label_of_a_videos_own_fold_reaches_its_neighbour_features(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    level1 = tmp_path / "predictions" / "level1"
    level1.mkdir(parents=True)
    classes = ["bird", "blank"]
    train = [f"t{i}.mp4" for i in range(30)]
    test = [f"x{i}.mp4" for i in range(10)]
    fold_of_train = np.arange(30) % 3
    start = pd.Timestamp("2017-01-01T00:00:00Z")
    metadata = pd.DataFrame({
        "filename": train + test,
        "capture_time": [str(start + pd.Timedelta(seconds=30 * i)) for i in range(40)],
        "camera": ["north"] * 20 + ["south"] * 20})
    folds = pd.DataFrame({"filename": train, "fold": fold_of_train})

    def features(labels):
        rng = np.random.default_rng(0)  # the same random (out-of-fold) predictions each time
        _write_level1(level1, "model", train, test, fold_of_train, classes, labels, rng)
        return stacking.build_features(train, test, classes, folds, metadata, ["model"],
                                       r48.NEIGHBOR_K, per_model=False)[0]

    labels = (np.random.default_rng(1).random((30, 2)) < 0.5).astype(float)
    before = features(labels)
    changed = labels.copy()
    changed[fold_of_train == 0] = 1 - changed[fold_of_train == 0]   # flip fold 0's labels
    after = features(changed)
    # the memorised (in-sample) predictions are never read: no row's features move, neither
    # those of fold 0 nor those of the folds whose models memorised fold 0's labels
    pd.testing.assert_frame_equal(before, after)


def test_each_video_reads_its_neighbours_through_one_fold_view(tmp_path, monkeypatch):
    """Six train clips a minute apart on one camera (folds 0, 1, 0, 1, 0, 1) and two test
    clips. A value names the model and the clip: fold g's model says 100 g + i of train clip
    i and 100 g + 50 + j of test clip j. A train clip of fold g sees only fold g's clips and
    the test clips, through the fold-g model; a test clip reads the view of its nearest
    train clip (the earlier one on a tie)."""
    classes = ["bird"]
    train = [f"t{i}.mp4" for i in range(6)]
    test = ["x0.mp4", "x1.mp4"]
    fold_of_train = np.array([0, 1, 0, 1, 0, 1])
    start = pd.Timestamp("2017-01-01T00:00:00Z")
    minutes = list(range(6)) + [2.5, 10]
    metadata = pd.DataFrame({"filename": train + test, "camera": "north",
                             "capture_time": [str(start + pd.Timedelta(minutes=m))
                                              for m in minutes]})
    folds = pd.DataFrame({"filename": train, "fold": fold_of_train})
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    level1 = tmp_path / "predictions" / "level1"
    level1.mkdir(parents=True)
    write_fold_table(pd.DataFrame([{"fold": g, "filename": name, "bird": 100 * g + i}
                                   for g in (0, 1) for i, name in enumerate(train)]),
                     level1 / "model_train_by_fold.npz")
    write_fold_table(pd.DataFrame([{"fold": g, "filename": name, "bird": 100 * g + 50 + j}
                                   for g in (0, 1) for j, name in enumerate(test)]),
                     level1 / "model_test_by_fold.npz")
    train_table, test_table = stacking.build_features(
        train, test, classes, folds, metadata, ["model"], (1,), per_model=False)
    # view 0, in time: t0 (0), t2 (2), x0 (50), t4 (4), x1 (51)
    # view 1, in time: t1 (101), x0 (150), t3 (103), t5 (105), x1 (151)
    train_table = train_table.set_index("filename")
    assert np.isnan(train_table.loc["t0.mp4", "neighbor_previous_bird"])
    assert train_table.loc["t0.mp4", "neighbor_next_bird"] == 2
    assert train_table.loc["t2.mp4", "neighbor_next_bird"] == 50
    assert train_table.loc["t4.mp4", "neighbor_mean1_bird"] == (50 + 51) / 2
    assert train_table.loc["t3.mp4", "neighbor_previous_bird"] == 150
    assert train_table.loc["t5.mp4", "neighbor_next_bird"] == 151
    assert train_table.loc["t1.mp4", "neighbor_group_size"] == 5
    test_table = test_table.set_index("filename")
    # x0 (minute 2.5) is as near to t2 (fold 0) as to t3 (fold 1): the earlier wins, view 0
    assert test_table.loc["x0.mp4", "view"] == 0
    assert test_table.loc["x0.mp4", "neighbor_previous_bird"] == 2
    assert test_table.loc["x0.mp4", "neighbor_next_bird"] == 4
    # x1 (minute 10) is nearest to t5 (fold 1): view 1
    assert test_table.loc["x1.mp4", "view"] == 1
    assert test_table.loc["x1.mp4", "neighbor_previous_bird"] == 105
    assert np.isnan(test_table.loc["x1.mp4", "neighbor_next_bird"])
