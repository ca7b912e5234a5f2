"""r10 — probe every video, decode only its sampled frames, measure its audio track.

Reads   input/train_labels.csv, input/submission_format.csv, input/videos/*
Writes  cache/probe/<video>.json            probe (ffprobe's JSON layout) + summary, or the error
        cache/frames/<hash>/<video>-<digest>.jpg   the FRAMES_PER_VIDEO frames (FRAME_SIZE²
                                            RGB) as one JPEG strip, top to bottom, at
                                            FRAME_QUALITY; <digest>: the video's content
        cache/preprocess_index.csv          one row per video: paths, content digests,
                                            frames decoded, audio statistics, errors,
                                            partial (the audio itself is not kept: r12
                                            decodes it again for its log-mel)
        cache/preprocess_settings.json      the settings of the run that wrote the index
        cache/preprocess_plan.csv           written first on every run: each video's record
                                            path, so that r12 --follow can start alongside;
        cache/preprocess_plan.done          written last: every video is recorded
        cache/failures/r10.csv → cache/failures.csv   (filename, stage, error)
Cost    per 5 s demo clip and core: frames ~20 ms, probe + audio ~15 ms, all in-process (no
        ffmpeg/ffprobe process per video).
Disk    per video: the frames, ~100 KB on the demo, ~180 KB for detailed natural scenes at
        quality 85 (raw uint8 would be 2.3 MB; bench/results/frame_cache.csv).

    python r10_preprocess_data.py                 # demo data, all videos not yet done
    python r10_preprocess_data.py --workers 2 --frame_size 160 --force
    python r10_preprocess_data.py --part 0/4       # every 4th video from the first: one of
                                                   # 4 parallel jobs; a plain run then writes
                                                   # the index

Videos are processed in `--workers` worker processes (at least one, even for --workers 1):
the probe, the audio and the frames are read by PyAV (libavformat, libavcodec, swscale;
videos over SEEK_ABOVE_SECONDS by seeking), in-process, and a decoder that crashes on
a hostile file then takes down one worker, not the run; that video gets a failure row.
Frames that are neither sampled nor referred to by other frames are not decoded
(SKIP_UNREFERENCED_FRAMES); the sampled frames are a full decode's, bit for bit.
A video that cannot be probed or decoded gets a failure row and no frames; later stages
mark it missing and still predict it. A clip whose stream ends before its header says
(a truncated file) keeps the frames that decoded and gets a "partial:" failure row naming
them. A worker stuck inside libav for longer than the three timeouts together is killed
by an alarm, and its video becomes a failure row ("hung").

Rerun: a video is redone only when its record is not current: other settings (a new record
folder), other bytes (size and content digest; the digest is recomputed only when size or
mtime moved), a deleted or damaged frames/audio/probe file, or --force. One new clip costs one
clip. The index carries each video's content digests (source, frames, audio), which are
what later stages key their own work on.
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

import pandas as pd

from a00_common import (cache_dir, config_hash, data_dir, load_video_table, logger, parse_config,
                        parse_part, preprocess_done_path, preprocess_plan_path, probe_cache_path,
                        progress, run_main, safe_cache_name, short_error, video_path,
                        write_stage_failures)
from a00_io import (array_digest, file_digest, file_identity, log_outcome, looks_like_jpeg,
                    read_json, write_csv, write_frames, write_json, write_text_if_changed)
from a01_video_io import VideoError, decode_audio, decode_sampled_frames, probe_video, \
    summarize_probe
from a02_hash_audio import AUDIO_STATISTIC_NAMES, audio_statistics

# --- frames
FRAMES_PER_VIDEO = 16          # evenly spaced over the clip (slice centres)
FRAME_SIZE = 224               # frames are resized (squashed) to FRAME_SIZE × FRAME_SIZE
SEEK_ABOVE_SECONDS = 60.0      # longer videos are read by seeking, not one full pass
DECODER_THREADS = 1            # per worker; parallelism comes from --workers (less CPU per frame)
SKIP_UNREFERENCED_FRAMES = True  # skip unsampled frames nothing refers to (x264 B-frames)
# frames are stored as JPEG: quality against disk and the backbones' feature drift in
# bench/results/frame_cache.csv
FRAME_QUALITY = 85
# --- audio
EXTRACT_AUDIO = True           # False: no audio (audio_logmel features are then all missing)
AUDIO_SAMPLE_RATE = 16000      # Hz, mono
MAX_AUDIO_SECONDS = 30.0       # audio beyond this is not extracted
# --- robustness
TIMEOUT_SECONDS = 120.0        # per probe, audio and frame decode of a video: then a failure row

# Bumped when the decoder changes the pixels it produces, so old frame caches are not reused
# (3: long videos are seeked by PyAV and scaled by swscale, as short ones, not by OpenCV).
FRAME_DECODER = "pyav-swscale-area-3"


def frames_config(tunables: dict) -> dict:
    return {"frames_per_video": tunables["FRAMES_PER_VIDEO"],
            "frame_size": tunables["FRAME_SIZE"], "decoder": FRAME_DECODER,
            "skip_unreferenced_frames": tunables["SKIP_UNREFERENCED_FRAMES"],
            "format": "jpeg-strip", "quality": tunables["FRAME_QUALITY"]}


def audio_config(tunables: dict) -> dict:
    return {"sample_rate": tunables["AUDIO_SAMPLE_RATE"],
            "max_seconds": tunables["MAX_AUDIO_SECONDS"],
            "extract_audio": tunables["EXTRACT_AUDIO"]}


def output_paths(filename: str, tunables: dict, source_digest: str = "") -> dict:
    """Where one video's record, probe and frames go. The frames are named by the video's
    content digest too, so a record never points at the frames of
    other bytes once stored under the same name (several record folders share them)."""
    stem = safe_cache_name(filename)
    record = cache_dir() / "preprocess" / config_hash(
        {**frames_config(tunables), **audio_config(tunables)}) / f"{stem}.json"
    content = f"{stem}-{source_digest[:12] or 'absent'}"
    return {
        "probe": probe_cache_path(filename),
        "frames": cache_dir() / "frames" / config_hash(frames_config(tunables)) / f"{content}.jpg",
        "record": record,
        # present while a worker is on this video: a worker that died leaves it behind
        "started": record.with_suffix(".started"),
    }


def probe_and_measure_audio(filename: str, paths: dict,
                            tunables: dict) -> tuple[dict | None, list[str], dict]:
    """(probe summary or None, errors, the audio's digest and statistics or {})."""
    path = video_path(filename)
    try:
        probe = probe_video(path, tunables["TIMEOUT_SECONDS"])
        summary = summarize_probe(probe)
        write_json({"summary": summary, "probe": probe}, paths["probe"])
    except VideoError as error:
        write_json({"error": short_error(error)}, paths["probe"])
        return None, [f"probe: {short_error(error)}"], {}
    if not (tunables["EXTRACT_AUDIO"] and summary["has_audio"]):
        return summary, [], {}
    try:
        samples = decode_audio(path, tunables["AUDIO_SAMPLE_RATE"],
                               tunables["MAX_AUDIO_SECONDS"], tunables["TIMEOUT_SECONDS"])
    except VideoError as error:
        return summary, [f"audio: {short_error(error)}"], {}
    # r12 checks the samples it decodes again against this digest
    return summary, [], {"audio_digest": array_digest(samples),
                         **audio_statistics(samples, tunables["AUDIO_SAMPLE_RATE"])}


def outputs_intact(record: dict) -> bool:
    """The record's probe and frames files exist, the frames with the size they were written
    with, and the frames file begins and ends as a JPEG (no decoding): a deleted, truncated
    or damaged cache file makes the video be processed again."""
    try:
        if not probe_cache_path(record["filename"]).is_file():
            return False
        if record.get("frames_path"):
            path = cache_dir() / record["frames_path"]
            if path.stat().st_size != record.get("frames_bytes"):
                return False
            if not looks_like_jpeg(path):
                return False
    except (OSError, ValueError, EOFError, KeyError):
        return False
    return True


def current_record(filename: str, force: bool,
                   tunables: dict) -> tuple[dict | None, str, dict | None]:
    """(the video's record if it is current, else None; why it is not; the video's identity
    when it was read, so that redoing the video does not hash it twice).

    Current means: made with these settings (the record's folder is named by their hash),
    from a video with the same content (size and digest; an unchanged size and mtime spare
    the digest), with every cache file intact.
    """
    if force:
        return None, "--force", None
    record_path = output_paths(filename, tunables)["record"]
    record = read_json(record_path)
    if record is None or "source" not in record:
        return None, "new", None
    if record.get("retry"):
        return None, "it failed unexpectedly last time", None
    if record["errors"] and record.get("timeout_seconds") != tunables["TIMEOUT_SECONDS"]:
        # whether it failed may depend on the time it was given
        return None, "its failure was under another timeout", None
    known = record["source"]
    source = file_identity(video_path(filename), known)
    if (source or {}).get("digest") != (known or {}).get("digest"):
        return None, ("the video changed" if source and known else
                      "the video appeared" if source else "the video is gone"), source
    if not outputs_intact(record):
        return None, "its cache files are damaged or gone", source
    if source != known:  # touched, same bytes: remember the new mtime, keep the work
        record["source"] = source
        write_json(record, record_path)
    return record, "", source


def preprocess_video(filename: str, force: bool, tunables: dict) -> dict:
    """Probe, frames and audio of one video; returns its record (also saved to disk)."""
    record, _, source = current_record(filename, force, tunables)
    if record is not None:
        return record
    source = source or file_identity(video_path(filename))
    paths = output_paths(filename, tunables, (source or {}).get("digest", ""))
    record = {"filename": filename, "source": source, "frames_path": "", "frames_decoded": 0,
              "audio": {}, "errors": [], "partial": "",
              "timeout_seconds": tunables["TIMEOUT_SECONDS"]}
    summary, record["errors"], record["audio"] = probe_and_measure_audio(filename, paths,
                                                                         tunables)
    if summary is not None:  # a file the probe rejects gets no frames at all
        try:
            sampled = decode_sampled_frames(
                video_path(filename), tunables["FRAMES_PER_VIDEO"], tunables["FRAME_SIZE"],
                tunables["TIMEOUT_SECONDS"], tunables["SEEK_ABOVE_SECONDS"],
                tunables["DECODER_THREADS"], tunables["SKIP_UNREFERENCED_FRAMES"])
            write_frames(sampled.frames, paths["frames"], tunables["FRAME_QUALITY"])
            record["frames_path"] = str(paths["frames"].relative_to(cache_dir()))
            record["frames_bytes"] = paths["frames"].stat().st_size
            # of the stored JPEG: what every later stage reads
            record["frames_digest"] = file_digest(paths["frames"])
            record["frames_decoded"] = sampled.decoded
            record["frame_numbers"] = sampled.indices.tolist()
            record["partial"] = sampled.partial
        except VideoError as error:
            record["errors"].insert(0, f"frames: {short_error(error)}")
    write_json(record, paths["record"])
    return record


def preprocess_safely(filename: str, force: bool, settings: dict) -> dict:
    """A bug or an OS error on one video becomes its failure row, never a lost run.

    `settings` carries the parent's tunables and data folder as values: a worker process
    imports this module afresh (and may have been forked before the parent's environment
    changed), so command-line overrides reach it only this way.
    """
    tunables = settings["tunables"]
    os.environ["TRAPSTACK_DATA"] = settings["data"]
    started = output_paths(filename, tunables)["started"]
    started.parent.mkdir(parents=True, exist_ok=True)
    started.touch()  # before anything that may hang: the parent must know whom to suspect
    # PyAV's timeouts are checked between calls into libav; a call that never returns (a
    # stalled read, a decoder loop) is ended by the alarm's default action, which kills this
    # worker: the parent then treats the video as one that took its worker down
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(hang_seconds(tunables))
    try:
        record = preprocess_video(filename, force, tunables)
    except Exception as error:  # noqa: BLE001 - one bad video must not sink the run
        # kept so that a follower (r12 --follow) sees it, and tried again on the next run
        record = {**failed_record(filename, f"unexpected: {short_error(error)}", tunables),
                  "retry": True}
        write_json(record, output_paths(filename, tunables)["record"])
    finally:
        signal.alarm(0)
    started.unlink(missing_ok=True)
    return record


def hang_seconds(tunables: dict) -> int:
    """A worker busy with one video for longer than its probe, audio and frame timeouts
    together is stuck inside libav."""
    return int(3 * tunables["TIMEOUT_SECONDS"]) + 2


def failed_record(filename: str, error: str, tunables: dict) -> dict:
    return {"filename": filename, "source": file_identity(video_path(filename)),
            "frames_path": "", "frames_decoded": 0, "audio": {}, "errors": [error],
            "partial": "", "timeout_seconds": tunables["TIMEOUT_SECONDS"]}


def _worker_context():
    # forkserver: workers start from a clean process (no inherited threads or locks), and
    # replacing a crashed one is a cheap fork
    return multiprocessing.get_context("forkserver")


def preprocess_in_workers(names: list[str], workers: int, force: bool, settings: dict,
                          description: str) -> list[dict]:
    """Records of `names`, in order. A video whose worker dies (a decoder crash) is tried
    once more alone; if that worker dies too, the video gets a failure record."""
    records: dict[str, dict] = {}
    reasons: dict[str, int] = {}
    # current videos are read here, so an up-to-date run starts no worker
    for name in names:
        record, reason, _ = current_record(name, force, settings["tunables"])
        if record is not None:
            records[name] = record
        else:
            reasons[reason] = reasons.get(reason, 0) + 1
    pending = [name for name in names if name not in records]
    for reason, count in sorted(reasons.items()):
        log_outcome(f"r10: {count} video(s)", reason)
    if not pending:
        log_outcome(f"r10: {len(names)} video(s)", None)
    bar = progress(None, total=len(names), initial=len(records), desc=description,
                   unit="video")
    while pending:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=_worker_context()) \
                as pool:
            futures = {pool.submit(preprocess_safely, name, force, settings): name
                       for name in pending}
            for future in concurrent.futures.as_completed(futures):
                try:
                    records[futures[future]] = future.result()
                    bar.update()
                except BrokenProcessPool:
                    pass
        pending = [name for name in pending if name not in records]
        suspects = [name for name in pending
                    if output_paths(name, settings["tunables"])["started"].exists()]
        if pending and not suspects:  # a worker died before it could say on which video
            suspects = list(pending)
        if pending:
            logger.warning("r10: a worker died; trying the %d video(s) it may have been on "
                           "alone", len(suspects))
        for name in suspects:
            records[name] = preprocess_alone(name, force, settings)
            bar.update()
        pending = [name for name in pending if name not in records]
    bar.close()
    return [records[name] for name in names]


def preprocess_alone(filename: str, force: bool, settings: dict) -> dict:
    started = time.monotonic()
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=_worker_context()) as pool:
        try:
            return pool.submit(preprocess_safely, filename, force, settings).result()
        except BrokenProcessPool:
            paths = output_paths(filename, settings["tunables"])
            paths["started"].unlink(missing_ok=True)
            if time.monotonic() - started >= hang_seconds(settings["tunables"]):
                error = f"decode: the decoder hung on this file (no result within " \
                        f"{hang_seconds(settings['tunables'])} s)"
            else:
                error = "decode: the decoder crashed on this file (its worker process died)"
            # kept like any other record: the same bytes are not tried again on every rerun
            # (other bytes, other settings, another TIMEOUT_SECONDS or --force try again)
            record = failed_record(filename, error, settings["tunables"])
            if not paths["probe"].exists():
                write_json({"error": error}, paths["probe"])
            write_json(record, paths["record"])
            return record


def write_plan(videos: pd.DataFrame, tunables: dict) -> None:
    """cache/preprocess_plan.csv: where each video's record will be, written before any
    work, so that `r12 --follow` can run the backbone on frames while this run makes them."""
    plan = pd.DataFrame({"filename": videos["filename"], "split": videos["split"]})
    plan["record_path"] = [str(output_paths(name, tunables)["record"].relative_to(cache_dir()))
                           for name in plan["filename"]]
    plan["frames_config"] = config_hash(frames_config(tunables))
    plan["frames_per_video"] = tunables["FRAMES_PER_VIDEO"]
    # written on every run, even unchanged: its time marks this run's start for a follower
    # (r12 --follow takes r10's index only when it is newer than the plan), and the "done"
    # marker of the previous run goes
    preprocess_done_path().unlink(missing_ok=True)
    write_csv(plan, preprocess_plan_path())


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "part": (None, "I/N: process videos I, I+N, I+2N, ... only (a parallel job); the index "
                       "and failures.csv are written by a run without --part")})
    try:
        part, parts = parse_part(args.part)
    except ValueError as error:
        raise SystemExit(f"r10: {error}") from None
    if not 1 <= FRAME_QUALITY <= 100:
        raise SystemExit(f"r10: --frame_quality must be a JPEG quality from 1 to 100, got "
                         f"{FRAME_QUALITY}")
    videos, _ = load_video_table()
    names = videos["filename"].tolist()[part::parts]
    index_path = cache_dir() / "preprocess_index.csv"
    write_plan(videos, args.config)
    description = "r10 videos" if parts == 1 else f"r10 videos (part {part}/{parts})"
    settings = {"tunables": args.config, "data": str(data_dir())}
    records = preprocess_in_workers(names, max(1, args.workers), args.force, settings,
                                    description)
    if parts > 1:
        logger.info("r10 part %d/%d: %d videos done", part, parts, len(records))
        return

    index = pd.DataFrame({
        "filename": [r["filename"] for r in records],
        "split": videos["split"].to_numpy(),
        # content digests: what the later stages' stamps are made of
        "source_digest": [(r.get("source") or {}).get("digest", "absent") for r in records],
        "frames_path": [r["frames_path"] for r in records],
        "frames_digest": [r.get("frames_digest", "") for r in records],
        "frames_decoded": [r["frames_decoded"] for r in records],
        "audio_digest": [(r.get("audio") or {}).get("audio_digest", "") for r in records],
        **{name: [(r.get("audio") or {}).get(name, "") for r in records]
           for name in AUDIO_STATISTIC_NAMES},
        "errors": ["; ".join(r["errors"]) for r in records],
        "partial": [r.get("partial", "") for r in records],
    })
    index["frames_config"] = config_hash(frames_config(args.config))
    failures = [{"filename": r["filename"], "error": error}
                for r in records for error in r["errors"]] + \
        [{"filename": r["filename"], "error": f"partial: {r['partial']}"}
         for r in records if r.get("partial")]
    # the settings the frames and audio were made with: r80 exports them with a stack, so new
    # clips are prepared the same way
    write_text_if_changed(json.dumps({"settings": args.config,
                                      "frames_config": config_hash(frames_config(args.config))},
                                     indent=2, sort_keys=True),
                          cache_dir() / "preprocess_settings.json")
    if index_path.exists() and not args.force:
        previous = pd.read_csv(index_path, dtype=str, keep_default_na=False)
        stage_failures = cache_dir() / "failures" / "r10.csv"
        if previous.equals(index.astype(str)) and stage_failures.exists():
            logger.info("r10: up to date (%d videos)", len(index))
            preprocess_done_path().touch()
            return
    write_csv(index, index_path)
    write_stage_failures("r10", failures)
    preprocess_done_path().touch()  # a follower need wait for no record any more
    logger.info("r10: %d videos, %d with frames, %d with audio, %d failure(s) -> %s",
                len(index), (index["frames_path"] != "").sum(),
                (index["audio_digest"] != "").sum(), len(failures), index_path)


if __name__ == "__main__":
    run_main(main)
