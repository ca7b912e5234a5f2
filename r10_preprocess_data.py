"""r10 — probe every video, decode only its sampled frames, extract its audio as mono wav.

Reads   input/train_labels.csv, input/submission_format.csv, input/videos/*
Writes  cache/probe/<video>.json            ffprobe summary (or the error) per video
        cache/frames/<hash>/<video>.npy     uint8 (FRAMES_PER_VIDEO, FRAME_SIZE, FRAME_SIZE, 3)
        cache/audio/<hash>/<video>.wav      mono 16-bit wav (videos with an audio stream)
        cache/preprocess_index.csv          one row per video: paths, frames decoded, status
        cache/failures/r10.csv → cache/failures.csv   (filename, stage, error)
Cost    about one decode of each short clip: ~0.1–0.3 s per 5 s video per core.

    python r10_preprocess_data.py                 # demo data, all videos not yet done
    python r10_preprocess_data.py --workers 2 --frame_size 160 --force
    python r10_preprocess_data.py --part 0/4       # every 4th video from the first: one of 4
                                                   # parallel jobs; a plain run then writes the index

A video that cannot be probed or decoded gets a failure row and no frames; later stages
mark it missing and still predict it. Per-video outputs that exist are skipped.
"""
from __future__ import annotations

import concurrent.futures

import pandas as pd

from a00_common import (cache_dir, config_hash, load_video_table, logger, parse_config,
                        parse_part, probe_cache_path,
                        progress, read_json, safe_cache_name, short_error, up_to_date,
                        video_path, write_array, write_csv, write_json, write_stage_failures)
from a01_video_io import VideoError, decode_sampled_frames, extract_audio, probe_video, \
    summarize_probe

# --- frames
FRAMES_PER_VIDEO = 16          # evenly spaced over the clip (slice centres)
FRAME_SIZE = 224               # frames are resized (squashed) to FRAME_SIZE × FRAME_SIZE
SEEK_ABOVE_SECONDS = 60.0      # longer videos are read by seeking, not one full pass
# --- audio
AUDIO_SAMPLE_RATE = 16000      # Hz, mono
MAX_AUDIO_SECONDS = 30.0       # audio beyond this is not extracted
# --- robustness
TIMEOUT_SECONDS = 120.0        # per ffmpeg/ffprobe call; a hung decode becomes a failure row


def frames_config() -> dict:
    return {"frames_per_video": FRAMES_PER_VIDEO, "frame_size": FRAME_SIZE}


def audio_config() -> dict:
    return {"sample_rate": AUDIO_SAMPLE_RATE, "max_seconds": MAX_AUDIO_SECONDS}


def output_paths(filename: str) -> dict:
    stem = safe_cache_name(filename)
    return {
        "probe": probe_cache_path(filename),
        "frames": cache_dir() / "frames" / config_hash(frames_config()) / f"{stem}.npy",
        "audio": cache_dir() / "audio" / config_hash(audio_config()) / f"{stem}.wav",
        "record": cache_dir() / "preprocess" / config_hash(
            {**frames_config(), **audio_config()}) / f"{stem}.json",
    }


def preprocess_video(filename: str, force: bool) -> dict:
    """Probe, frames and audio of one video; returns its record (also saved to disk)."""
    paths = output_paths(filename)
    if up_to_date(paths["record"], force):
        record = read_json(paths["record"])
        if record is not None:
            return record
    record = {"filename": filename, "frames_path": "", "frames_decoded": 0,
              "audio_path": "", "errors": []}
    path = video_path(filename)
    try:
        probe = probe_video(path, TIMEOUT_SECONDS)
        summary = summarize_probe(probe)
        write_json({"summary": summary, "probe": probe}, paths["probe"])
    except VideoError as error:
        write_json({"error": short_error(error)}, paths["probe"])
        record["errors"].append(f"probe: {short_error(error)}")
        write_json(record, paths["record"])
        return record
    try:
        frames, decoded = decode_sampled_frames(path, summary, FRAMES_PER_VIDEO, FRAME_SIZE,
                                                TIMEOUT_SECONDS, SEEK_ABOVE_SECONDS)
        write_array(frames, paths["frames"])
        record["frames_path"] = str(paths["frames"].relative_to(cache_dir()))
        record["frames_decoded"] = int(decoded)
    except VideoError as error:
        record["errors"].append(f"frames: {short_error(error)}")
    if summary["has_audio"]:
        try:
            extract_audio(path, paths["audio"], AUDIO_SAMPLE_RATE, MAX_AUDIO_SECONDS,
                          TIMEOUT_SECONDS)
            record["audio_path"] = str(paths["audio"].relative_to(cache_dir()))
        except VideoError as error:
            record["errors"].append(f"audio: {short_error(error)}")
    write_json(record, paths["record"])
    return record


def preprocess_safely(filename: str, force: bool) -> dict:
    """A bug or an OS error on one video becomes its failure row, never a lost run."""
    try:
        return preprocess_video(filename, force)
    except Exception as error:  # noqa: BLE001 - one bad video must not sink the run
        return {"filename": filename, "frames_path": "", "frames_decoded": 0,
                "audio_path": "", "errors": [f"unexpected: {short_error(error)}"]}


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "part": (None, "I/N: process videos I, I+N, I+2N, ... only (a parallel job); the index "
                       "and failures.csv are written by a run without --part")})
    try:
        part, parts = parse_part(args.part)
    except ValueError as error:
        raise SystemExit(f"r10: {error}") from None
    videos, _ = load_video_table()
    names = videos["filename"].tolist()[part::parts]
    index_path = cache_dir() / "preprocess_index.csv"
    records = []
    description = "r10 videos" if parts == 1 else f"r10 videos (part {part}/{parts})"
    if args.workers > 1:
        with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
            futures = [pool.submit(preprocess_safely, name, args.force) for name in names]
            for future in progress(futures, desc=description, unit="video"):
                records.append(future.result())
    else:
        for name in progress(names, desc=description, unit="video"):
            records.append(preprocess_safely(name, args.force))
    if parts > 1:
        logger.info("r10 part %d/%d: %d videos done", part, parts, len(records))
        return

    index = pd.DataFrame({
        "filename": [r["filename"] for r in records],
        "split": videos["split"].to_numpy(),
        "frames_path": [r["frames_path"] for r in records],
        "frames_decoded": [r["frames_decoded"] for r in records],
        "audio_path": [r["audio_path"] for r in records],
        "errors": ["; ".join(r["errors"]) for r in records],
    })
    index["frames_config"] = config_hash(frames_config())
    if index_path.exists() and not args.force:
        previous = pd.read_csv(index_path, dtype=str, keep_default_na=False)
        if previous.equals(index.astype(str)):
            logger.info("r10: up to date (%d videos)", len(index))
            return
    write_csv(index, index_path)
    failures = [{"filename": r["filename"], "error": error}
                for r in records for error in r["errors"]]
    write_stage_failures("r10", failures)
    logger.info("r10: %d videos, %d with frames, %d with audio, %d failure(s) -> %s",
                len(index), (index["frames_path"] != "").sum(),
                (index["audio_path"] != "").sum(), len(failures), index_path)


if __name__ == "__main__":
    main()
