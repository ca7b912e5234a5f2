"""a00_common: the metric, config overrides, the IO layer and input-table validation."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import a00_common as common
import a00_metric as metric
import a00_io as io_layer
from a00_common import InputError, parse_config, parse_part
from a00_metric import mean_log_loss


# ----------------------------------------------------------------------------- metric

def test_log_loss_matches_a_hand_computed_value():
    labels = np.array([[1, 0], [0, 1]])
    predictions = np.array([[0.9, 0.2], [0.4, 0.7]])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.7)) / 4
    assert mean_log_loss(labels, predictions) == pytest.approx(expected, abs=1e-12)


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")
def test_log_loss_is_the_flattened_binary_loss_not_sklearns_2d_one():
    from sklearn.metrics import log_loss
    rng = np.random.default_rng(0)
    labels = (rng.random((50, 4)) < 0.3).astype(int)
    predictions = rng.uniform(0.01, 0.99, (50, 4))
    ours = mean_log_loss(labels, predictions)
    assert ours == pytest.approx(log_loss(labels.ravel(), predictions.ravel(), labels=[0, 1]))
    # the trap: sklearn on the 2-D matrix treats rows as one distribution (sklearn #10157)
    assert abs(ours - log_loss(labels, predictions)) > 1e-3


def test_log_loss_clips_certain_mistakes_to_a_finite_value():
    loss = mean_log_loss([[1, 0]], [[0.0, 1.0]])
    # both cells clipped to 1e-15 away from the wrong certainty (1 - 1e-15 rounds in float64)
    assert loss == pytest.approx(-(math.log(1e-15) + math.log(1 - (1 - 1e-15))) / 2)
    assert np.isfinite(loss)


def test_log_loss_rejects_mismatched_shapes_and_empty_tables():
    with pytest.raises(ValueError, match="differ"):
        mean_log_loss(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="empty"):
        mean_log_loss(np.zeros((0, 3)), np.zeros((0, 3)))


def test_prior_is_smoothed_so_an_absent_class_is_never_zero():
    labels = np.array([[1, 0], [1, 0], [0, 0]])
    assert metric.prior_probabilities(labels) == pytest.approx([2.5 / 4, 0.5 / 4])


# ----------------------------------------------------------------------------- config

def _namespace(tmp_path):
    script = tmp_path / "r99_example.py"
    script.write_text("EPOCHS = 3\nRATE = 0.5\nNAMES = ('a', 'b')\nUSE = True\n"
                      "from a00_common import SEED\n")
    return {"__file__": str(script), "EPOCHS": 3, "RATE": 0.5, "NAMES": ("a", "b"),
            "USE": True, "SEED": 42}


def test_overrides_are_typed_and_only_the_scripts_own(tmp_path):
    namespace = _namespace(tmp_path)
    args = parse_config(namespace, "doc", ["--epochs", "7", "--rate", "1e-3", "--names", "x,y,z",
                                           "--use", "false"])
    assert (namespace["EPOCHS"], namespace["RATE"], namespace["NAMES"], namespace["USE"]) == \
        (7, 1e-3, ("x", "y", "z"), False)
    assert set(args.config) == {"EPOCHS", "RATE", "NAMES", "USE"}  # SEED is imported, not its own


@pytest.mark.parametrize("argv, message", [
    (["--epoch", "7"], "unknown option"),
    (["--seed", "1"], "unknown option"),
    (["--epochs", "seven"], "expects an integer"),
    (["--use", "maybe"], "expects true/false"),
])
def test_unknown_keys_and_wrong_types_are_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        parse_config(_namespace(tmp_path), "doc", argv)
    assert message in capsys.readouterr().err


def test_part_selection():
    assert parse_part(None) == (0, 1)
    assert parse_part("2/4") == (2, 4)
    for bad in ("4/4", "x/2", "1/0", "3"):
        with pytest.raises(ValueError):
            parse_part(bad)


def test_config_hash_is_stable_and_order_free():
    assert common.config_hash({"a": 1, "b": 2}) == common.config_hash({"b": 2, "a": 1})
    assert common.config_hash({"a": 1}) != common.config_hash({"a": 2})


# ----------------------------------------------------------------------------- IO layer

def test_a_table_digested_a_block_at_a_time_has_the_digest_of_its_row_lists():
    import hashlib
    import json
    table = pd.DataFrame({"filename": ["Ünï cödé.mp4", "b.mp4", "c.mp4"], "fold": [0, 1, 0],
                          "weight": [0.5, float("nan"), 2.0]})
    as_lists = json.dumps([["filename", "fold"], table.astype(str).to_numpy().tolist(), 7],
                          sort_keys=True)
    expected = hashlib.blake2b(as_lists.encode(), digest_size=16).hexdigest()[:16]
    for block in (1, 2, 3, 100):
        streamed = io_layer.TableRows(table, as_text=True, block=block)
        assert io_layer.digest_text([["filename", "fold"], streamed, 7]) == expected
    labels = np.array([[0, 1], [1, 1]], np.int8)
    assert io_layer.digest_text([io_layer.TableRows(labels, block=1)]) == \
        io_layer.digest_text([[[0, 1], [1, 1]]])
    assert io_layer.digest_text([io_layer.TableRows(labels[:0])]) == io_layer.digest_text([[]])
    assert io_layer.digest_text(io_layer.TableRows(labels, block=1)) == \
        io_layer.digest_text([[0, 1], [1, 1]])


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(RuntimeError):
        with io_layer.atomic_path(target) as temporary:
            temporary.write_text("half a tab")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_unreadable_cache_is_deleted_so_it_is_recomputed(tmp_path):
    path = tmp_path / "frames.npy"
    io_layer.write_array(np.arange(10, dtype=np.uint8), path)
    assert io_layer.read_array(path).tolist() == list(range(10))
    path.write_bytes(path.read_bytes()[:20])  # a truncated file
    assert io_layer.read_array(path) is None
    assert not path.exists()


def test_an_output_is_current_only_for_the_inputs_it_was_made_from(tmp_path):
    output, second = tmp_path / "a.csv", tmp_path / "b.csv"
    inputs = {"labels": "d1", "rows": ["x.mp4", "y.mp4"], "settings": {"folds": 5}}
    output.write_text("made")
    second.write_text("made")
    # an output that exists but was never stamped is not proof of anything
    assert io_layer.outdated_reason([output, second], inputs, force=False) == "no stamp"
    io_layer.write_stamp([output, second], inputs)
    assert io_layer.up_to_date([output, second], inputs, force=False)
    assert io_layer.outdated_reason([output, second], inputs, force=True) == "--force"
    changed = {**inputs, "labels": "d2", "settings": {"folds": 3}}
    assert io_layer.outdated_reason([output, second], changed, force=False) == \
        "changed: labels, settings"
    second.write_text("made, then cut off")
    assert io_layer.outdated_reason([output, second], inputs, force=False) == \
        "b.csv changed since it was made"
    second.unlink()
    assert io_layer.outdated_reason([output, second], inputs, force=False) == "missing b.csv"
    assert io_layer.read_stamp(output) == io_layer.stamp_of(inputs)


def test_file_identity_trusts_size_and_mtime_and_keys_on_content(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"first")
    first = io_layer.file_identity(path)
    assert first["digest"] == io_layer.file_digest(path) and first["size"] == 5
    os.utime(path, ns=(first["mtime_ns"] + 10**9, first["mtime_ns"] + 10**9))
    touched = io_layer.file_identity(path, first)
    assert touched["digest"] == first["digest"] and touched["mtime_ns"] != first["mtime_ns"]
    path.write_bytes(b"other")          # same size, other bytes
    assert io_layer.file_identity(path, touched)["digest"] != first["digest"]
    assert io_layer.file_identity(tmp_path / "absent.mp4") is None


# ----------------------------------------------------------------------------- input tables

@pytest.fixture()
def data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    (tmp_path / "input" / "videos").mkdir(parents=True)
    return tmp_path / "input"


@pytest.mark.parametrize("content, message", [
    ("name,bird\na.mp4,1\n", "no 'filename' column"),
    ("filename,bird\na.mp4,1\na.mp4,0\n", "appears more than once"),
    ("filename,bird\na.mp4,2\n", "line 2, column 'bird': label '2' is not 0 or 1"),
    ("filename,bird\na.mp4,0\nb.mp4,300\n", "line 3, column 'bird': label '300' is not 0"),
    ("filename,bird\na.mp4,0\nb.mp4,\n", "line 3, column 'bird': label 'nan' is not 0"),
    ("filename,bird\n../a.mp4,1\n", "must stay inside"),
    ("filename,bird\n/etc/passwd,1\n", "must stay inside"),
])
def test_bad_label_tables_stop_with_one_line(data_folder, content, message):
    (data_folder / "train_labels.csv").write_text(content)
    with pytest.raises(InputError, match=message) as error:
        common.load_train_labels()
    assert "\n" not in str(error.value)
    assert "train_labels.csv" in str(error.value)


def test_labels_are_read_as_one_byte_each_whatever_their_spelling(data_folder):
    (data_folder / "train_labels.csv").write_text("filename,bird,blank\na.mp4,1,0\n"
                                                  "b.mp4,0,1\n")
    table, classes = common.load_train_labels()
    assert classes == ["bird", "blank"] and (table[classes].dtypes == np.int8).all()
    assert table[classes].to_numpy().tolist() == [[1, 0], [0, 1]]
    (data_folder / "train_labels.csv").write_text("filename,bird,blank\na.mp4,1.0,0\n")
    table, _ = common.load_train_labels()
    assert (table[classes].dtypes == np.int8).all() and table["bird"].tolist() == [1]


def test_class_columns_must_match_between_the_tables(data_folder):
    (data_folder / "train_labels.csv").write_text("filename,bird,blank\na.mp4,1,0\n")
    (data_folder / "submission_format.csv").write_text("filename,bird\nb.mp4,0\n")
    with pytest.raises(InputError, match=r"missing class column\(s\) \['blank'\]"):
        common.load_video_table()


def test_class_names_with_spaces_and_parentheses_survive(data_folder):
    (data_folder / "train_labels.csv").write_text(
        'filename,other (primate),small cat\n"clip one.mp4",1,0\n')
    table, classes = common.load_train_labels()
    assert classes == ["other (primate)", "small cat"]
    assert table["filename"].tolist() == ["clip one.mp4"]


# ----------------------------------------------------------------------------- prediction tables

def test_prediction_table_check_names_what_is_wrong():
    classes = ["bird", "blank"]
    good = metric.prediction_frame(["a", "b"], classes, [[0.1, 0.9], [0.5, 0.5]])
    metric.check_prediction_table(good, ["a", "b"], classes, "ok")
    cases = [
        (good.iloc[::-1], "rows differ"),
        (good[["filename", "blank", "bird"]], "columns"),
        (good.assign(bird=[np.nan, 0.1]), "NaN"),
        (good.assign(bird=[1.5, 0.1]), r"outside \[0, 1\]"),
    ]
    for table, message in cases:
        with pytest.raises(ValueError, match=message):
            metric.check_prediction_table(table.reset_index(drop=True) if message != "rows differ"
                                          else table, ["a", "b"], classes, "submission")


def test_scores_are_appended_by_concurrent_writers(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    import concurrent.futures
    rows = [{"stage": "test", "model": f"m{i}", "fold": "all", "log_loss": 0.1, "rows": 1,
             "config_hash": "x"} for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda row: common.append_scores([row]), rows))
    table = pd.read_csv(tmp_path / "reports" / "scores.csv")
    assert sorted(table["model"]) == sorted(f"m{i}" for i in range(8))
    assert not [p for p in os.listdir(tmp_path / "reports") if p.startswith(".tmp-")]


def test_a_video_that_is_a_symlink_is_allowed_but_climbing_out_is_not(data_folder, tmp_path):
    elsewhere = tmp_path / "elsewhere.mp4"
    elsewhere.write_bytes(b"x")
    (data_folder / "videos" / "linked.mp4").symlink_to(elsewhere)
    assert common.video_path("linked.mp4") == data_folder / "videos" / "linked.mp4"
    assert common.video_path("site a/clip 1.mp4").name == "clip 1.mp4"
    for name in ("../x.mp4", "a/../../x.mp4", str(elsewhere)):
        with pytest.raises(InputError, match="must stay inside"):
            common.video_path(name)


RUN_MAIN_PROBE = r"""
import atexit, sys, types
sys.path.insert(0, {root!r})
sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))  # as if a model ran
from a00_common import InputError, run_main
atexit.register(lambda: print("atexit ran", flush=True))
def main():
    print("main ran", flush=True)
    outcome = {outcome!r}
    if outcome == "input error":
        raise InputError("labels.csv: no filename column")
    if outcome == "message":
        raise SystemExit("r12: weights not found")
    if outcome == "code":
        raise SystemExit(3)
run_main(main)
print("after run_main: the interpreter went on", flush=True)
"""


@pytest.mark.parametrize("outcome, status, error_line", [
    ("success", 0, ""), ("input error", 2, "error: labels.csv: no filename column"),
    ("message", 1, "r12: weights not found"), ("code", 3, "")])
def test_a_process_that_loaded_tensorflow_ends_with_the_same_status_and_output(
        tmp_path, outcome, status, error_line):
    """Only the collection at exit is skipped: exit status, messages, the code after
    run_main and atexit handlers are those of a normal exit."""
    from a00_common import PROJECT_ROOT
    script = tmp_path / "probe.py"
    script.write_text(RUN_MAIN_PROBE.format(root=str(PROJECT_ROOT), outcome=outcome))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == status
    went_on = ["after run_main: the interpreter went on"] if outcome == "success" else []
    assert result.stdout.splitlines() == ["main ran", *went_on, "atexit ran"]
    assert result.stderr.strip() == error_line
