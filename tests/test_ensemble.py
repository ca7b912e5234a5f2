"""r60 ensemble weights and clipping, and r50's pure helpers, on hand-made cases."""
from __future__ import annotations

import numpy as np
import pytest

import a00_common as common
import r50_second_level as r50
import r60_ensemble as r60


def _two_models(rows_positive: int, rows_negative: int) -> tuple[np.ndarray, np.ndarray]:
    """Model A always says 0.9, model B always 0.1: the blend is 0.1 + 0.8 w_A."""
    count = rows_positive + rows_negative
    labels = np.array([1] * rows_positive + [0] * rows_negative, dtype=float)[:, None]
    predictions = np.stack([np.full((count, 1), 0.9), np.full((count, 1), 0.1)])
    return predictions, labels


def test_weights_reach_the_known_optimum():
    # 3 positives, 1 negative: the best constant is 0.75, so w_A = (0.75 - 0.1) / 0.8
    predictions, labels = _two_models(3, 1)
    weights = common.fit_blend_weights(predictions, labels)
    assert weights == pytest.approx([0.8125, 0.1875], abs=1e-4)
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()


def test_a_useless_model_gets_no_weight():
    labels = np.array([[1.0], [0.0], [1.0], [0.0]])
    good = np.array([[0.9], [0.1], [0.8], [0.2]])
    useless = np.full((4, 1), 0.5)
    weights = common.fit_blend_weights(np.stack([good, useless]), labels)
    assert weights == pytest.approx([1.0, 0.0], abs=1e-4)


def test_per_class_weights_differ_where_classes_need_it_and_global_ones_compromise():
    first, labels_first = _two_models(3, 1)     # optimum w_A = 0.8125
    second, labels_second = _two_models(1, 3)   # optimum w_A = 0.1875
    predictions = np.concatenate([first, second], axis=2)
    labels = np.concatenate([labels_first, labels_second], axis=1)
    per_class = r60.fit_class_weights(predictions, labels, per_class=True)
    assert per_class[:, 0] == pytest.approx([0.8125, 0.1875], abs=1e-4)
    shared = r60.fit_class_weights(predictions, labels, per_class=False)
    assert shared[:, 0] == pytest.approx([0.5, 0.5], abs=1e-4)
    blended = r60.blend(predictions, per_class)
    assert blended[:, 0] == pytest.approx(0.75) and blended[:, 1] == pytest.approx(0.25)


def test_nested_estimate_never_uses_a_folds_own_rows():
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 3)) < 0.3).astype(float)
    predictions = rng.uniform(0.05, 0.95, (2, 40, 3))
    folds = np.arange(40) % 4
    loss, nested = r60.nested_estimate(predictions, labels, folds, per_class=False)
    for fold in range(4):
        inside = folds != fold
        weights = r60.fit_class_weights(predictions[:, inside], labels[inside], False)
        expected = r60.blend(predictions[:, ~inside], weights)
        assert nested[~inside] == pytest.approx(expected)
    assert loss == pytest.approx(r60.mean_log_loss(labels, nested))


def test_clipping_is_chosen_on_the_oof_losses():
    labels = np.array([[1.0], [0.0], [0.0], [0.0]])
    confident_and_once_wrong = np.array([[0.0], [0.0], [0.0], [0.0]])
    clip, loss = r60.choose_clip(confident_and_once_wrong, labels)
    assert clip == max(r60.CLIP_CANDIDATES)
    calibrated = np.array([[0.999999], [1e-6], [1e-6], [1e-6]])
    assert r60.choose_clip(calibrated, labels)[0] <= 1e-6


def test_fold_prior_baseline_is_out_of_fold():
    labels = np.array([[1.0], [1.0], [0.0], [0.0]])
    folds = np.array([0, 0, 1, 1])
    prior = r60.fold_prior_oof(labels, folds)
    # fold 0 sees only fold 1's two negatives: (0 + 0.5) / (2 + 1)
    assert prior[:, 0] == pytest.approx([0.5 / 3, 0.5 / 3, 2.5 / 3, 2.5 / 3])


def test_inner_split_keeps_visits_whole_and_is_seeded():
    sequences = np.repeat([f"visit{i}" for i in range(20)], 3)
    fit, stop = r50.inner_split(sequences, 0.2, seed=3)
    assert not set(sequences[fit]) & set(sequences[stop])
    assert len(set(sequences[stop])) == 4
    assert np.array_equal(stop, r50.inner_split(sequences, 0.2, seed=3)[1])


def test_neighbour_columns_belong_to_the_longest_matching_class():
    classes = ["cat", "small cat", "other (primate)"]
    assert r50._owner("neighbor_mean5_small cat", classes) == "small cat"
    assert r50._owner("neighbor_previous_other (primate)", classes) == "other (primate)"
    assert r50._owner("neighbor_log_gap_next", classes) is None


def test_standardizer_fills_gaps_with_training_medians():
    train = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0]])
    standardize = r50.Standardizer(train)
    output = standardize(np.array([[np.nan, 20.0]]))
    assert output[0, 0] == pytest.approx(0.0)   # median 3 = the mean 3
    assert np.isfinite(output).all()


def test_stacker_names_and_ablations():
    assert r50.parse_stacker("xgb") == ("xgb", True)
    assert r50.parse_stacker("mlp_no_neighbors") == ("mlp", False)
    with pytest.raises(SystemExit, match="unknown stacker"):
        r50.parse_stacker("catboost")
