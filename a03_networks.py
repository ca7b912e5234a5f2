"""The Keras side of the first-level models: the heads, the functional model around them,
training-time augmentation and the batches both training and prediction read.

A head turns a model's video input into one embedding: a sequence head (`SEQUENCE_HEADS`)
over frame features or hash bits, a 2-D CNN over the log-mel spectrogram, or a small 3-D CNN
over r10's frames. Only `keras` and `keras.ops` are used (imported inside the functions), so
a model also runs with KERAS_BACKEND=torch. The registry (which model reads what) is
a03_models; the training loop is a03_training.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from a03_models import ModelSpec

SEQUENCE_HEADS = ("gru", "lstm", "attention", "tcn")
# r12 floors the log-mel at -100 dB and pads short clips with it: the value of silence
LOGMEL_FLOOR_DB = -100.0


def main_input(spec: ModelSpec) -> str:
    """Name of the Keras input that carries the video (augmented and viewed for TTA)."""
    return "clip" if "frames" in spec.inputs else "steps"


# ----------------------------------------------------------------------------- heads

def logit(probabilities: np.ndarray, clip: float) -> np.ndarray:
    """log(p / (1 − p)) of the probabilities clipped to [clip, 1 − clip] (a class that never
    occurs stays finite). The heads start their output bias at it; the stackers (a05) correct
    the level-1 blend's."""
    clipped = np.clip(probabilities, clip, 1 - clip)
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
    sits in tells the species (EXPERIMENTS.md, "Audio head").
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

    Pooling before each 3x3x3 convolution (not after) makes the convolutions several times
    cheaper than at full resolution; max pooling keeps the small, bright evidence an animal
    leaves at 64 x 64.
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
    # a class without positives among the training rows starts at logit(1e-4), not at -inf
    prior_logits = logit(prior, clip=1e-4)
    outputs = layers.Dense(n_classes, activation="sigmoid", name="probabilities",
                           kernel_initializer="zeros" if starts_at_prior else "glorot_uniform",
                           bias_initializer=keras.initializers.Constant(prior_logits))(x)
    return keras.Model([video_input, missing_input], outputs, name=spec.name)


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


# ----------------------------------------------------------------------------- batches

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

