"""r12 — per-video features: image hashes + motion statistics, audio log-mel, CNN frame features.

Reads   cache/preprocess_index.csv, cache/frames/…/*.npy, cache/audio/…/*.wav (from r10)
Writes  features/<extractor>/<hash>/shard_NNNNN.npz   resumable work units (SHARD_SIZE videos)
        features/<extractor>/features.npy     (videos, steps, dims) per-step features, row order
                                              = index.csv; float16 for CNN and log-mel
        features/<extractor>/statistics.npy   (videos, dims) float32 per-video statistics
        features/<extractor>/index.csv        filename, split, row, missing (1 = no usable input)
        features/<extractor>/config.json      the settings and their hash
        cache/failures/r12_<extractor>.csv → cache/failures.csv
Cost    hashes ~5 ms/video; audio_logmel ~20 ms/video; effnet_lite0 at 224 px ≈ 55 frames/s on
        2 CPU cores (16 frames/video → ~0.3 s/video); a GPU does thousands of frames/s.

    python r12_extract_features.py                          # every extractor in EXTRACTORS
    python r12_extract_features.py --extractor hashes       # one extractor (parallel-safe)
    python r12_extract_features.py --extractor effnet_lite0 --gpu 0 --batch_size 64
    python r12_extract_features.py --extractor hashes --part 1/4   # shards 1, 5, 9, ...: one of
                                                # 4 parallel jobs; a run without --part joins them

Extractors: `hashes`, `audio_logmel`, and any backbone of a02_backbones (`effnet_lite0`,
`random_lite0`, `resnet50`, …); a `_skip` suffix pools several depths (multi-depth features).
A video without frames (or without audio, for audio_logmel) gets zeros and `missing = 1`.
"""
from __future__ import annotations

import concurrent.futures

import numpy as np
import pandas as pd

from a00_common import (atomic_path, cache_dir, config_hash, features_dir, logger, parse_config,
                        parse_part, print_jobs, progress, read_array, read_arrays, read_json, short_error, up_to_date,
                        write_arrays, write_csv, write_json, write_stage_failures)

EXTRACTORS = ("hashes", "audio_logmel", "effnet_lite0")   # what a plain run extracts
SHARD_SIZE = 64                # videos per resumable work unit
# --- CNN backbones
IMAGE_SIZE = 224               # backbone input; frames are resized if r10 used another size
BATCH_SIZE = 32                # frames per forward pass (batches span videos)
# --- image hashes and motion statistics
HASH_SIZE = 8                  # phash/dhash of HASH_SIZE² bits per frame
MOTION_SIZE = 32               # grey thumbnails for frame-difference statistics
# --- audio
N_MELS = 64                    # mel bands
HOP_LENGTH = 256               # samples between spectrogram columns (16 ms at 16 kHz)
AUDIO_STEPS = 256              # spectrogram columns kept (≈4 s), zero-padded when shorter


def extractor_config(extractor: str, frames_config: str) -> dict:
    base = {"extractor": extractor, "frames_config": frames_config}
    if extractor == "hashes":
        return {**base, "hash_size": HASH_SIZE, "motion_size": MOTION_SIZE}
    if extractor == "audio_logmel":
        return {**base, "n_mels": N_MELS, "hop_length": HOP_LENGTH, "audio_steps": AUDIO_STEPS}
    return {**base, "image_size": IMAGE_SIZE}


# ----------------------------------------------------------------------------- extractors

def hamming_statistics(bits: np.ndarray) -> list[float]:
    """Distances between per-frame hashes: consecutive pairs and all pairs."""
    distances = (bits[:, None, :] != bits[None, :, :]).sum(-1).astype(np.float32)
    consecutive = np.diagonal(distances, offset=1)
    pairs = distances[np.triu_indices(len(bits), k=1)]
    if len(pairs) == 0:
        return [0.0] * 7
    return [consecutive.mean(), consecutive.std(), consecutive.max(), consecutive.min(),
            pairs.mean(), pairs.std(), pairs.max()]


def hash_features(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame phash+dhash bits and video statistics (hash distances, motion, colour)."""
    import cv2
    import imagehash
    from PIL import Image
    bits = []
    for frame in frames:
        image = Image.fromarray(frame)
        phash = imagehash.phash(image, hash_size=HASH_SIZE).hash.ravel()
        dhash = imagehash.dhash(image, hash_size=HASH_SIZE).hash.ravel()
        bits.append(np.concatenate([phash, dhash]))
    bits = np.asarray(bits, dtype=np.uint8)
    half = HASH_SIZE * HASH_SIZE
    grey = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (MOTION_SIZE, MOTION_SIZE),
                                interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    differences = np.abs(np.diff(grey, axis=0)).reshape(len(grey) - 1, -1) \
        if len(grey) > 1 else np.zeros((1, MOTION_SIZE * MOTION_SIZE), np.float32)
    motion_per_step = differences.mean(axis=1)
    # pixels that change a lot between frames: a moving animal, not global light drift
    moving_fraction = (differences > 25).mean(axis=1)
    median_frame = np.median(grey, axis=0)
    deviation_from_median = np.abs(grey - median_frame).reshape(len(grey), -1)
    hsv = cv2.cvtColor(frames.reshape(-1, frames.shape[2], 3), cv2.COLOR_RGB2HSV)
    statistics = (
        hamming_statistics(bits[:, :half]) + hamming_statistics(bits[:, half:])
        + [motion_per_step.mean(), motion_per_step.std(), motion_per_step.max(),
           moving_fraction.mean(), moving_fraction.max(),
           deviation_from_median.mean(), deviation_from_median.max(axis=1).mean(),
           (deviation_from_median > 25).mean(axis=1).max(),
           grey.mean(), grey.std(), hsv[..., 1].mean(), hsv[..., 1].std(),
           float(hsv[..., 1].mean() < 8)]  # near-zero saturation: an IR night clip
    )
    return bits, np.asarray(statistics, dtype=np.float32)


_HASH_STATISTIC_NAMES = (
    [f"phash_{n}" for n in ("consecutive_mean", "consecutive_std", "consecutive_max",
                            "consecutive_min", "pairs_mean", "pairs_std", "pairs_max")]
    + [f"dhash_{n}" for n in ("consecutive_mean", "consecutive_std", "consecutive_max",
                              "consecutive_min", "pairs_mean", "pairs_std", "pairs_max")]
    + ["motion_mean", "motion_std", "motion_max", "moving_fraction_mean", "moving_fraction_max",
       "median_deviation_mean", "median_deviation_peak_mean", "median_deviation_area_max",
       "brightness_mean", "brightness_std", "saturation_mean", "saturation_std", "is_grey"])


def logmel_features(wav_path) -> tuple[np.ndarray, np.ndarray]:
    """(AUDIO_STEPS, N_MELS) log-mel spectrogram and per-band mean/std/max statistics."""
    import librosa
    import soundfile
    samples, sample_rate = soundfile.read(wav_path, dtype="float32", always_2d=False)
    if samples.size < HOP_LENGTH:
        raise ValueError("audio shorter than one spectrogram hop")
    mel = librosa.feature.melspectrogram(y=samples, sr=sample_rate, n_fft=4 * HOP_LENGTH,
                                         hop_length=HOP_LENGTH, n_mels=N_MELS)
    log_mel = librosa.power_to_db(mel, ref=1.0, top_db=None).T.astype(np.float32)  # (time, mel)
    log_mel = np.maximum(log_mel, -100.0)
    statistics = np.concatenate([log_mel.mean(0), log_mel.std(0), log_mel.max(0),
                                 [log_mel.mean(), log_mel.std(), log_mel.max()]])
    steps = np.full((AUDIO_STEPS, N_MELS), -100.0, np.float32)
    steps[:min(AUDIO_STEPS, len(log_mel))] = log_mel[:AUDIO_STEPS]
    return steps, statistics.astype(np.float32)


class BackboneRunner:
    """Batches frames across videos through one backbone; built once per process."""

    def __init__(self, extractor: str):
        from a02_backbones import build_frame_encoder
        name, depths = (extractor[:-5], "skip") if extractor.endswith("_skip") else (extractor, "final")
        self.model = build_frame_encoder(name, IMAGE_SIZE, depths=depths)
        self.dimension = int(self.model.output_shape[-1])

    def __call__(self, frame_stacks: list[np.ndarray]) -> list[np.ndarray]:
        import cv2
        images = np.concatenate(frame_stacks).astype(np.float32)
        if images.shape[1] != IMAGE_SIZE:
            images = np.stack([cv2.resize(i, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
                               for i in images])
        outputs = [np.asarray(self.model.predict_on_batch(images[start:start + BATCH_SIZE]))
                   for start in range(0, len(images), BATCH_SIZE)]
        outputs = np.concatenate(outputs).astype(np.float16)
        boundaries = np.cumsum([len(stack) for stack in frame_stacks])[:-1]
        return np.split(outputs, boundaries)


# ----------------------------------------------------------------------------- shards

def extract_shard(extractor: str, shard: pd.DataFrame, frames_per_video: int) -> dict:
    """Features of one shard of videos; failures are returned, never raised."""
    rows, statistics, missing, failures = [], [], [], []
    if extractor == "audio_logmel":
        for record in shard.itertuples():
            steps, stats, is_missing = np.zeros((AUDIO_STEPS, N_MELS), np.float32), \
                np.zeros(3 * N_MELS + 3, np.float32), True
            if record.audio_path:
                try:
                    steps, stats = logmel_features(cache_dir() / record.audio_path)
                    is_missing = False
                except Exception as error:  # noqa: BLE001 - a bad wav is that video's failure
                    failures.append({"filename": record.filename, "error": short_error(error)})
            rows.append(steps.astype(np.float16))
            statistics.append(stats)
            missing.append(is_missing)
        return {"features": np.stack(rows), "statistics": np.stack(statistics),
                "missing": np.array(missing), "filenames": shard["filename"].to_numpy(str),
                "failures": failures}

    frame_stacks = []
    for record in shard.itertuples():
        frames = read_array(cache_dir() / record.frames_path) if record.frames_path else None
        frame_stacks.append(frames)
        missing.append(frames is None)
    if extractor == "hashes":
        bits_length = 2 * HASH_SIZE * HASH_SIZE
        for frames, record in zip(frame_stacks, shard.itertuples()):
            if frames is None:
                rows.append(np.zeros((frames_per_video, bits_length), np.uint8))
                statistics.append(np.zeros(len(_HASH_STATISTIC_NAMES), np.float32))
                continue
            bits, stats = hash_features(frames)
            rows.append(bits)
            statistics.append(stats)
        return {"features": np.stack(rows), "statistics": np.stack(statistics),
                "missing": np.array(missing), "filenames": shard["filename"].to_numpy(str),
                "failures": failures}

    runner = _backbone(extractor)
    present = [stack for stack in frame_stacks if stack is not None]
    encoded = iter(runner(present) if present else [])
    for frames in frame_stacks:
        rows.append(next(encoded) if frames is not None
                    else np.zeros((frames_per_video, runner.dimension), np.float16))
    features = np.stack(rows)
    return {"features": features,
            "statistics": np.concatenate([features.mean(1), features.max(1)], axis=1)
                              .astype(np.float32),
            "missing": np.array(missing), "filenames": shard["filename"].to_numpy(str),
            "failures": failures}


_RUNNERS: dict = {}


def _backbone(extractor: str) -> BackboneRunner:
    if extractor not in _RUNNERS:
        _RUNNERS[extractor] = BackboneRunner(extractor)
    return _RUNNERS[extractor]


def shard_path(extractor: str, hash_text: str, shard_number: int):
    return features_dir(extractor) / hash_text / f"shard_{shard_number:05d}.npz"


def run_shard(extractor: str, hash_text: str, shard_number: int, shard: pd.DataFrame,
              frames_per_video: int, force: bool) -> list[dict]:
    """Extracts one shard unless a valid file for exactly these videos exists."""
    path = shard_path(extractor, hash_text, shard_number)
    if up_to_date(path, force):
        existing = read_arrays(path)
        if existing is not None and existing["filenames"].tolist() == shard["filename"].tolist():
            return [{"filename": f, "error": e} for f, e in
                    zip(existing["failure_filenames"], existing["failure_errors"])]
    result = extract_shard(extractor, shard, frames_per_video)
    failures = result.pop("failures")
    result["failure_filenames"] = np.array([f["filename"] for f in failures], dtype=str)
    result["failure_errors"] = np.array([f["error"] for f in failures], dtype=str)
    write_arrays(result, path)
    return failures


def consolidate(extractor: str, hash_text: str, index: pd.DataFrame, shard_count: int,
                config: dict) -> None:
    """Joins the shards into one memory-mappable array without holding them all in memory."""
    first = read_arrays(shard_path(extractor, hash_text, 0))
    folder = features_dir(extractor)
    features_path, statistics_path = folder / "features.npy", folder / "statistics.npy"
    missing = []
    with atomic_path(features_path) as features_temporary, \
            atomic_path(statistics_path) as statistics_temporary:
        features = np.lib.format.open_memmap(
            features_temporary, mode="w+", dtype=first["features"].dtype,
            shape=(len(index),) + first["features"].shape[1:])
        statistics = np.lib.format.open_memmap(
            statistics_temporary, mode="w+", dtype=np.float32,
            shape=(len(index), first["statistics"].shape[1]))
        row = 0
        for shard_number in range(shard_count):
            part = first if shard_number == 0 else read_arrays(
                shard_path(extractor, hash_text, shard_number))
            count = len(part["filenames"])
            features[row:row + count] = part["features"]
            statistics[row:row + count] = part["statistics"]
            missing.extend(part["missing"].astype(int).tolist())
            row += count
        features.flush()
        statistics.flush()
        del features, statistics
    table = index[["filename", "split"]].copy()
    table["row"] = np.arange(len(table))
    table["missing"] = missing
    write_csv(table, folder / "index.csv")
    write_json({**config, "hash": hash_text,
                "statistic_names": _HASH_STATISTIC_NAMES if extractor == "hashes" else None},
               folder / "config.json")


def run_extractor(extractor: str, index: pd.DataFrame, workers: int, force: bool,
                  part: int = 0, parts: int = 1) -> None:
    frames_config = str(index["frames_config"].iloc[0]) if len(index) else "none"
    config = extractor_config(extractor, frames_config)
    hash_text = config_hash(config)
    folder = features_dir(extractor)
    outputs = [folder / "features.npy", folder / "index.csv", folder / "config.json"]
    if up_to_date(outputs, force):
        existing = pd.read_csv(folder / "index.csv", dtype={"filename": str},
                               keep_default_na=False)
        joined_at = (folder / "features.npy").stat().st_mtime
        # shards rewritten by `--part ... --force` jobs after the join must be joined again
        newer_shards = any(p.stat().st_mtime > joined_at
                           for p in (folder / hash_text).glob("shard_*.npz"))
        if existing["filename"].tolist() == index["filename"].tolist() and not newer_shards \
                and (read_json(folder / "config.json") or {}).get("hash") == hash_text:
            logger.info("r12 %s: up to date", extractor)
            return
    frames_per_video = _frames_per_video(index)
    shards = [index.iloc[start:start + SHARD_SIZE] for start in range(0, len(index), SHARD_SIZE)]
    numbers = list(range(len(shards)))[part::parts]
    failures = []
    description = f"r12 {extractor} shards" + (f" (part {part}/{parts})" if parts > 1 else "")
    if workers > 1:
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(run_shard, extractor, hash_text, number, shards[number],
                                   frames_per_video, force) for number in numbers]
            for future in progress(futures, desc=description, unit="shard"):
                failures.extend(future.result())
    else:
        for number in progress(numbers, desc=description, unit="shard"):
            failures.extend(run_shard(extractor, hash_text, number, shards[number],
                                      frames_per_video, force))
    if parts > 1:
        logger.info("r12 %s part %d/%d: %d shard(s) done", extractor, part, parts, len(numbers))
        return
    consolidate(extractor, hash_text, index, len(shards), config)
    write_stage_failures(f"r12_{extractor}", failures)
    logger.info("r12 %s: %d videos -> %s", extractor, len(index), folder / "features.npy")


def _frames_per_video(index: pd.DataFrame) -> int:
    for path in index["frames_path"]:
        if path:
            frames = read_array(cache_dir() / path)
            if frames is not None:
                return int(frames.shape[0])
    return 1


def is_backbone(extractor: str) -> bool:
    return extractor not in ("hashes", "audio_logmel")


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "extractor": (None, "run one extractor (default: every one in EXTRACTORS)"),
        "part": (None, "I/N: extract shards I, I+N, ... only (a parallel job, needs "
                       "--extractor); a run without --part joins the shards"),
        "list_jobs": (False, "print the extractors a plain run would do (for run_all.py)")})
    extractors = [args.extractor] if args.extractor else list(EXTRACTORS)
    if args.list_jobs:
        print_jobs([{"extractor": name, "gpu": is_backbone(name)} for name in extractors])
        return
    try:
        part, parts = parse_part(args.part)
    except ValueError as error:
        raise SystemExit(f"r12: {error}") from None
    if parts > 1 and not args.extractor:
        raise SystemExit("r12: --part needs --extractor (each job does one extractor's shards)")
    index_path = cache_dir() / "preprocess_index.csv"
    if not index_path.exists():
        raise SystemExit(f"{index_path} is missing: run r10_preprocess_data.py first")
    index = pd.read_csv(index_path, dtype=str, keep_default_na=False)
    for extractor in extractors:
        run_extractor(extractor, index, args.workers, args.force, part, parts)


if __name__ == "__main__":
    main()
