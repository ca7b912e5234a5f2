"""r60 ensemble weights and clipping, and r50's pure helpers, on hand-made cases."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import a00_metric as metric
import a05_adversarial as adversarial
import a05_stacking as stacking
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
    weights = metric.fit_blend_weights(predictions, labels)
    assert weights == pytest.approx([0.8125, 0.1875], abs=1e-4)
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()


def test_a_useless_model_gets_no_weight():
    labels = np.array([[1.0], [0.0], [1.0], [0.0]])
    good = np.array([[0.9], [0.1], [0.8], [0.2]])
    useless = np.full((4, 1), 0.5)
    weights = metric.fit_blend_weights(np.stack([good, useless]), labels)
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
    blended = stacking.blend(predictions, per_class)
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
        expected = stacking.blend(predictions[:, ~inside], weights)
        assert nested[~inside] == pytest.approx(expected)
    assert loss == pytest.approx(r60.mean_log_loss(labels, nested))


def test_the_nested_ensemble_estimate_chooses_weights_mode_and_clipping_without_the_fold():
    """Flipping every label of fold 0 leaves fold 0's nested predictions as they were: the
    weights, the per-class choice and the clipping scored on fold 0 never saw its labels.
    Flipping fold 1's labels moves them (they are chosen on fold 1, among others)."""
    rng = np.random.default_rng(1)
    labels = (rng.random((60, 3)) < 0.3).astype(float)
    # one sharp model, right but overconfident on a few rows: clipping matters
    sharp = np.where(labels == 1, 0.97, 0.03)
    wrong = rng.random(labels.shape) < 0.1
    sharp[wrong] = 1 - sharp[wrong]
    predictions = np.stack([sharp, rng.uniform(0.05, 0.95, labels.shape),
                            np.full(labels.shape, 0.3)])
    folds = np.arange(60) % 4

    def nested(flipped_fold):
        flipped = labels.copy()
        if flipped_fold is not None:
            flipped[folds == flipped_fold] = 1 - flipped[folds == flipped_fold]
        return r60.nested_ensemble_estimate(predictions, flipped, folds, "auto")[1]

    before = nested(None)
    np.testing.assert_array_equal(nested(0)[folds == 0], before[folds == 0])
    assert np.abs(nested(1)[folds == 0] - before[folds == 0]).max() > 1e-6
    # each fold's predictions are those of the choices made on the other folds
    inside = folds != 2
    choice = r60.choose_ensemble(predictions[:, inside], labels[inside], folds[inside], "auto")
    expected = np.clip(stacking.blend(predictions[:, ~inside], choice["weights"]),
                       choice["clip"], 1 - choice["clip"])
    np.testing.assert_allclose(before[~inside], expected)


def test_the_clipping_is_chosen_on_the_nested_blend():
    rng = np.random.default_rng(2)
    labels = (rng.random((40, 2)) < 0.5).astype(float)
    predictions = rng.uniform(0.01, 0.99, (2, 40, 2))
    folds = np.arange(40) % 4
    choice = r60.choose_ensemble(predictions, labels, folds, "global")
    _, nested = r60.nested_estimate(predictions, labels, folds, per_class=False)
    assert choice["clip"] == r60.choose_clip(nested, labels)[0]
    assert not choice["per_class"] and np.isnan(choice["nested_per_class_log_loss"])


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
    assert stacking._owner("neighbor_mean5_small cat", classes) == "small cat"
    assert stacking._owner("neighbor_previous_other (primate)", classes) == "other (primate)"
    assert stacking._owner("neighbor_log_gap_next", classes) is None


def test_models_with_tables_need_the_train_table_and_its_test_twin(tmp_path):
    for name in ("b_oof.csv", "b_test.csv", "a_oof.csv", "a_test.csv", "only_oof_oof.csv",
                 "a_train_by_fold.npz", "a_test_by_fold.npz", "c_train_by_fold.npz",
                 "b_train_by_fold.csv", "b_test_by_fold.csv"):
        (tmp_path / name).write_text("filename\n")
    assert stacking.models_with_tables(tmp_path, "oof") == ["a", "b"]
    assert stacking.models_with_tables(tmp_path, "train_by_fold") == ["a"]
    assert stacking.models_with_tables(tmp_path / "absent", "oof") == []


def test_standardizer_fills_gaps_with_training_medians():
    train = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0]])
    standardize = stacking.Standardizer(train)
    output = standardize(np.array([[np.nan, 20.0]]))
    assert output[0, 0] == pytest.approx(0.0)   # median 3 = the mean 3
    assert np.isfinite(output).all()


def test_stacker_names_and_ablations():
    assert r50.parse_stacker("xgb") == ("xgb", True, True)
    assert r50.parse_stacker("mlp_no_neighbors") == ("mlp", False, True)
    assert r50.parse_stacker("lgbm_no_site") == ("lgbm", True, False)
    assert r50.parse_stacker("lgbm_no_neighbors_no_site") == ("lgbm", False, False)
    with pytest.raises(SystemExit, match="unknown stacker"):
        r50.parse_stacker("catboost")


def _tiny_stacker_table(rows: int = 160, seed: int = 0):
    """Two classes. Level-1 says 0.5 for class `a` everywhere (it knows nothing) and 0.8 for
    class `b`, whose labels are constant 1. A metadata column `meta:x` decides class `a`
    (positive when x > 0); `meta:noise` is noise."""
    import pandas as pd
    random = np.random.default_rng(seed)
    x = random.normal(size=rows)
    labels = np.stack([(x > 0).astype(float), np.ones(rows)], axis=1)
    frame = pd.DataFrame({"meta:x": x, "meta:noise": random.normal(size=rows)})
    level1 = np.stack([np.tile([0.5, 0.8], (rows, 1))])
    return stacking.FeatureTable(frame, [None, None], level1), labels


def _fit_and_predict(stacker: str, table, labels, fresh_table) -> tuple:
    """Fits on `table` (the last 40 rows stop early) and predicts `fresh_table`; returns
    the stacker's probabilities and the fitted model."""
    settings = {**r50.stacker_settings(stacker), "threads": 1}
    rows = np.arange(len(labels))
    fit_rows, stop_rows = rows[:-40], rows[-40:]
    fresh_rows = np.arange(len(fresh_table.frame))
    if stacker == "lgbm":
        model = r50.fit_lightgbm(table, rows, labels, fit_rows, stop_rows, settings,
                                 labels.mean(axis=0), ["a", "b"])
        return stacking.predict_lightgbm_stacker(model, fresh_table, fresh_rows), model
    model = r50.fit_xgboost(table, rows, labels, fit_rows, stop_rows, settings)
    return stacking.predict_xgboost_stacker(model, fresh_table, fresh_rows), model


@pytest.mark.parametrize("stacker", ["lgbm", "xgb"])
def test_a_stacker_learns_what_the_blend_misses_from_a_tiny_table(stacker):
    table, labels = _tiny_stacker_table(seed=0)
    fresh_table, fresh_labels = _tiny_stacker_table(seed=1)
    assert table.base_logits[:, 0] == pytest.approx(0.0)    # logit(0.5): the blend knows nothing
    predictions, model = _fit_and_predict(stacker, table, labels, fresh_table)
    blend_loss = metric.mean_log_loss(fresh_labels[:, :1], np.full((160, 1), 0.5))
    assert blend_loss == pytest.approx(np.log(2))
    assert metric.mean_log_loss(fresh_labels[:, :1], predictions[:, :1]) < 0.25 * blend_loss
    if stacker == "lgbm":   # class b is always 1: a constant, no booster
        assert model[1] == {"constant": 1.0, "columns": [0, 1]}
        assert predictions[:, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("stacker", ["lgbm", "xgb"])
def test_a_stacker_on_pure_noise_stays_close_to_the_blend(stacker):
    def noise_only(seed):
        table, labels = _tiny_stacker_table(seed=seed)
        # class a becomes a coin flip that no column explains
        labels[:, 0] = np.random.default_rng(seed + 10).integers(0, 2, len(labels))
        return stacking.FeatureTable(table.frame[["meta:noise"]], [None], table.level1), labels
    (table, labels), (fresh_table, fresh_labels) = noise_only(0), noise_only(1)
    predictions, _ = _fit_and_predict(stacker, table, labels, fresh_table)
    blend_loss = metric.mean_log_loss(fresh_labels[:, :1], np.full((160, 1), 0.5))
    # early stopping on the inner split keeps the correction small
    assert metric.mean_log_loss(fresh_labels[:, :1], predictions[:, :1]) < 1.05 * blend_loss


def test_xgboost_keeps_its_own_number_of_rounds_per_class():
    table, labels = _tiny_stacker_table(seed=0)
    labels[:, 0] = np.random.default_rng(10).integers(0, 2, len(labels))   # a: nothing to learn
    labels[:, 1] = table.frame["meta:x"].to_numpy() > 0                    # b: easy to learn
    noise_and_x = stacking.FeatureTable(table.frame, [None, None], table.level1)
    (model, class_rounds) = _fit_and_predict("xgb", noise_and_x, labels, noise_and_x)[1]
    assert class_rounds[1] > 5 * max(class_rounds[0], 1)
    # rounds summed one at a time equal XGBoost's own prediction with that many rounds
    rows = np.arange(len(labels))
    full = np.full(2, model.get_booster().num_boosted_rounds())
    assert stacking.predict_xgboost_stacker((model, full), noise_and_x, rows) == pytest.approx(
        model.predict_proba(noise_and_x.matrix(), base_margin=noise_and_x.base_logits), abs=1e-5)
    # 0 rounds is the base alone
    base_only = stacking.predict_xgboost_stacker((model, np.zeros(2, int)), noise_and_x, rows)
    assert base_only == pytest.approx(np.tile([0.5, 0.8], (len(labels), 1)), abs=1e-4)
    # the one-round-at-a-time scan picks the rounds a scan over whole models would pick
    total = int(full[0])
    by_rounds = (stacking.predict_xgboost_stacker((model, np.full(2, k)), noise_and_x, rows)
                 for k in range(total + 1))
    losses = [[metric.mean_log_loss(labels[:, c:c + 1], predictions[:, c:c + 1]) for c in (0, 1)]
              for predictions in by_rounds]
    scanned = r50.best_rounds_per_class(model.get_booster(), noise_and_x.matrix(),
                                        noise_and_x.base_logits, labels, patience=total + 1)
    assert scanned.tolist() == np.argmin(losses, axis=0).tolist()


def test_site_features_by_hand_and_never_from_the_folds_they_leave_out():
    classes = ["blank", "duiker"]
    cameras = ["A", "A", "A", "B", "B", ""]
    folds = [0, 1, 2, 0, 1, 2]
    labels = np.array([[1, 0], [0, 1], [0, 1], [1, 0], [1, 0], [0, 1]], float)
    counts = stacking.site_counts(cameras, folds, labels, classes)
    # camera A outside folds 0 and 2: row 1 alone (a duiker); the prior there: rows 1 and 4,
    # one blank and one duiker of 2 clips -> (1 + 0.5) / (2 + 1) = 0.5 each
    values = stacking.site_features(["A"], [{0, 2}], counts, classes, smoothing=2.0)
    np.testing.assert_allclose(values, [[(0 + 2 * 0.5) / 3, (1 + 2 * 0.5) / 3]])
    # no camera: the prior outside fold 0 (rows 1, 2, 4, 5: one blank, three duikers)
    values = stacking.site_features([""], [{0}], counts, classes, smoothing=2.0)
    np.testing.assert_allclose(values, [[1.5 / 5, 3.5 / 5]])
    # flipping fold 2's labels moves no feature of a row that leaves fold 2 out
    flipped = labels.copy()
    flipped[[2, 5]] = 1 - flipped[[2, 5]]
    left_out = [{fold, 2} for fold in folds]
    before = stacking.site_features(cameras, left_out, counts, classes, 2.0)
    after = stacking.site_features(cameras, left_out,
                                   stacking.site_counts(cameras, folds, flipped, classes),
                                   classes, 2.0)
    np.testing.assert_array_equal(before, after)
    assert not np.array_equal(
        before, stacking.site_features(cameras, [{fold} for fold in folds],
                                       stacking.site_counts(cameras, folds, flipped, classes),
                                       classes, 2.0))


def test_auc_standard_error_matches_hanley_and_mcneil_by_hand():
    # A = 0.5, 10 and 10 rows: q1 = q2 = 1/3, variance = (1/4 + 9/12 + 9/12) / 100
    assert adversarial.auc_standard_error(0.5, 10, 10) == pytest.approx(np.sqrt(0.0175))
    assert adversarial.auc_standard_error(1.0, 10, 10) == pytest.approx(0.0)


def test_adversarial_validation_finds_the_group_that_differs_for_test_rows():
    """Level-1 logits that are sharper for test rows (as a fold mean would not be, the other
    way round) give themselves away; metadata drawn alike for both does not."""
    rng = np.random.default_rng(0)

    def frame(count, shift):
        return pd.DataFrame({"meta:duration": rng.normal(0, 1, count),
                             "meta:width": rng.normal(0, 1, count),
                             "l1:gru:bird": rng.normal(shift, 1, count),
                             "l1:gru:blank": rng.normal(0, 1, count),
                             "site:bird": np.nan})
    visits = np.arange(300) // 3
    groups, single = adversarial.adversarial_validation(frame(300, 0.0), frame(150, 1.5), visits,
                                                     np.arange(150) // 3, by_visit=True,
                                                     seed=0)
    by_group = groups.set_index("group")
    assert set(by_group.index) == {"metadata and statistics", "level 1: gru", "all inputs"}
    assert by_group.loc["level 1: gru", "auc"] > 0.75 and by_group.loc["level 1: gru", "mismatch"]
    assert abs(by_group.loc["metadata and statistics", "auc"] - 0.5) < 0.1
    assert not by_group.loc["metadata and statistics", "mismatch"]
    assert single["input"].iloc[0] == "l1:gru:bird" and len(single) == 4
    assert single["auc"].iloc[0] > 0.75
    # train rows against train rows: nothing to find, whichever way they are drawn
    assert (groups["null_auc"] < 0.65).all() and (groups["null_draw"] == "visits").all()
