"""bench_features — the frame-feature stage against its two unavoidable costs.

A benchmark, not a test: timings depend on the machine and on what else runs on it. On the
videos of a data folder (`--limit N`: the first N, train and test in proportion) it runs
every measurement REPEATS times, interleaved so that all of them share the machine's load,
and reports medians:

  chain        run_all.py --until r12 with r12 EXTRACTOR only (--workers, from an empty cache):
               the stage as the chain runs it, r10 in parts with r12 beside it (--follow),
               plus r11 and the chain's job overhead
  stage        r10 (probe, sampled frames, audio) then r12 EXTRACTOR, one after the other
  frame stage  the same without the audio extraction (r10 --extract_audio false)
  pipelined    r10 and r12 EXTRACTOR --follow started together: the backbone runs on each
               video's frames as soon as r10 has them (from an empty cache)
  (a) decode   the sampled frames alone (a01.decode_sampled_frames in --workers processes)
  (b) forward  the backbone's forward pass alone, on frames decoded beforehand, in a fresh
               process each repeat like r12's (TensorFlow's start-up and tracing excluded)
  ffmpeg pipe  the sampled frames through an ffmpeg select filter, one ffmpeg per video
  every frame  cv2.VideoCapture.read() of every frame, then sampling: in one process (the
               usual loop) and in --workers processes

and the ratios chain, stage and pipelined / ((a) + (b)) (target ≤ 1.3) and every-frame /
(a) (target ≥ 3), plus the bytes stored per video for every backbone. It works in a
temporary copy of the input (videos hard-linked where possible); the data folder itself
only gets the report.

Writes  <data>/reports/bench_features.csv   one row per measurement and repeat, then the
                                            medians and ratios (appended run after run)

    python bench/bench_features.py --data data/demo --workers 2 --limit 60
    python bench/bench_features.py --workers 2 --repeats 5       # the whole demo set
"""
from __future__ import annotations

import concurrent.futures
import datetime
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from a00_common import (data_dir, git_commit, input_dir, parse_config,  # noqa: E402
                        reports_dir, tool_path)
from a00_io import read_array, write_csv  # noqa: E402
from a01_video_io import decode_sampled_frames, sample_frame_indices  # noqa: E402

LIMIT = 0                      # the first LIMIT videos of the data folder (0 = all)
REPEATS = 3                    # each measurement is taken this many times; medians are shown
EXTRACTOR = "effnet_lite0"     # the backbone of the stage and of (b)
# --- as the chain runs (passed on to r10 and r12)
FRAMES_PER_VIDEO = 16
FRAME_SIZE = 224
BATCH_SIZE = 32
SEEK_ABOVE_SECONDS = 60.0
KEEP = False                   # keep the temporary data folder (its path is printed)

RATIO_TARGET = 1.3             # stage / ((a) + (b)), from the issue
SPEED_UP_TARGET = 3.0          # every frame with cv2 / (a), from the issue


# ----------------------------------------------------------------------------- data

def make_work_folder(limit: int) -> tuple[Path, list[Path]]:
    """A data folder with the first `limit` videos (train and test in proportion)."""
    source = input_dir()
    labels = pd.read_csv(source / "train_labels.csv", dtype={"filename": str})
    submission = pd.read_csv(source / "submission_format.csv", dtype={"filename": str})
    total = len(labels) + len(submission)
    if limit and limit < total:
        train_count = max(1, round(limit * len(labels) / total))
        labels, submission = labels.head(train_count), submission.head(limit - train_count)
    work = Path(tempfile.mkdtemp(prefix="bench_features_"))
    (work / "input" / "videos").mkdir(parents=True)
    labels.to_csv(work / "input" / "train_labels.csv", index=False)
    submission.to_csv(work / "input" / "submission_format.csv", index=False)
    videos = []
    for name in list(labels["filename"]) + list(submission["filename"]):
        original = (source / "videos" / name).resolve()
        if original.is_file():
            copy = work / "input" / "videos" / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            try:  # a hard link costs nothing; a symbolic one would leave videos/ (refused)
                os.link(original, copy)
            except OSError:
                shutil.copy2(original, copy)
            videos.append(copy)
    return work, videos


# ----------------------------------------------------------------------------- measurements

def run_script(script: str, work: Path, *options: str) -> float:
    """Wall seconds of one pipeline script on the work folder; its failure stops the bench."""
    command = [sys.executable, str(PROJECT_ROOT / script), "--data", str(work), *options]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise SystemExit(f"bench: {script} failed: {lines[-1] if lines else result.returncode}")
    return seconds


def run_chain(work: Path, workers: int) -> float:
    """Wall seconds of run_all.py up to r12, with the one extractor, on an empty cache."""
    for folder in ("cache", "features", "metadata", "logs"):
        shutil.rmtree(work / folder, ignore_errors=True)
    passed = {"r10": f"--frames_per_video {FRAMES_PER_VIDEO} --frame_size {FRAME_SIZE} "
                     f"--seek_above_seconds {SEEK_ABOVE_SECONDS}",
              "r12": f"--extractors {EXTRACTOR} --batch_size {BATCH_SIZE} "
                     f"--image_size {FRAME_SIZE}"}
    options = [item for script, text in passed.items() for item in ("--pass", f"{script}:{text}")]
    return run_script("run_all.py", work, "--workers", str(workers), "--until", "r12", *options)


def run_pipelined(work: Path, r10_options: list[str], r12_options: list[str]) -> float:
    """Wall seconds of r10 and `r12 --follow` started together on an empty cache."""
    shutil.rmtree(work / "cache", ignore_errors=True)
    shutil.rmtree(work / "features", ignore_errors=True)
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    jobs = {script: subprocess.Popen([sys.executable, str(PROJECT_ROOT / script), "--data",
                                      str(work), *options], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=environment)
            for script, options in (("r10_preprocess_data.py", r10_options),
                                    ("r12_extract_features.py", [*r12_options, "--follow"]))}
    errors = {script: job.communicate()[1] for script, job in jobs.items()}
    seconds = time.perf_counter() - start
    for script, job in jobs.items():
        if job.returncode != 0:
            lines = errors[script].strip().splitlines()
            raise SystemExit(f"bench: {script} failed: {lines[-1] if lines else job.returncode}")
    return seconds


def decode_only(path: Path) -> int:
    """The stage's decode of one video, frames discarded (only the cost is wanted)."""
    sampled = decode_sampled_frames(path, FRAMES_PER_VIDEO, FRAME_SIZE,
                                    seek_above_seconds=SEEK_ABOVE_SECONDS, threads=1)
    return sampled.decoded


def decode_every_frame(path: Path) -> int:
    """The usual way: read() every frame with OpenCV, then keep the sampled ones."""
    import cv2
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        return 0
    kept = [cv2.cvtColor(cv2.resize(frames[index], (FRAME_SIZE, FRAME_SIZE),
                                    interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            for index in sample_frame_indices(len(frames), FRAMES_PER_VIDEO)]
    return len(kept)


def ffmpeg_select_pipe(path: Path) -> int:
    """The sampled frames through one ffmpeg process (select filter, rawvideo pipe)."""
    import cv2
    capture = cv2.VideoCapture(str(path))
    n_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or FRAMES_PER_VIDEO
    capture.release()
    indices = sorted(set(sample_frame_indices(n_frames, FRAMES_PER_VIDEO).tolist()))
    select = "+".join(f"eq(n\\,{index})" for index in indices)
    result = subprocess.run(
        [tool_path("ffmpeg"), "-v", "error", "-nostdin", "-threads", "1", "-i", str(path),
         "-an", "-vf", f"select='{select}',scale={FRAME_SIZE}:{FRAME_SIZE}:flags=area",
         "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        capture_output=True, timeout=120)
    return len(result.stdout) // (FRAME_SIZE * FRAME_SIZE * 3)


def timed_map(function, videos: list[Path], pool) -> float:
    start = time.perf_counter()
    if pool is None:
        for video in videos:
            function(video)
    else:
        list(pool.map(function, videos, chunksize=1))
    return time.perf_counter() - start


def run_forward_pass(work: Path) -> float:
    """(b) in a fresh process, as each r12 run is one: TensorFlow on 2 cores sometimes runs
    a whole process on one core, so one process measured once would be one draw of that
    for every repeat, while the stage's runs each draw again."""
    command = [sys.executable, str(Path(__file__).resolve()), "--data", str(work),
               "--forward_pass_only", "--extractor", EXTRACTOR,
               "--frame_size", str(FRAME_SIZE), "--batch_size", str(BATCH_SIZE)]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [line for line in result.stdout.splitlines() if line.startswith("FORWARD ")]
    if result.returncode != 0 or not lines:
        errors = (result.stderr or result.stdout).strip().splitlines()
        raise SystemExit(f"bench: the forward pass failed: {errors[-1] if errors else ''}")
    return float(lines[-1].split()[1])


class ForwardPass:
    """(b): the backbone on frames decoded beforehand, in r12's batches."""

    def __init__(self, work: Path):
        from a02_backbones import build_frame_encoder
        index = pd.read_csv(work / "cache" / "preprocess_index.csv", dtype=str,
                            keep_default_na=False)
        stacks = [read_array(work / "cache" / path) for path in index["frames_path"] if path]
        self.frames = np.concatenate([stack for stack in stacks if stack is not None])
        name, depths = (EXTRACTOR[:-5], "skip") if EXTRACTOR.endswith("_skip") \
            else (EXTRACTOR, "final")
        self.model = build_frame_encoder(name, FRAME_SIZE, depths=depths)
        self.model.predict_on_batch(self.frames[:BATCH_SIZE].astype(np.float32))  # tracing

    def __call__(self) -> float:
        start = time.perf_counter()
        for first in range(0, len(self.frames), BATCH_SIZE):
            batch = self.frames[first:first + BATCH_SIZE]
            if len(batch) < BATCH_SIZE:
                batch = np.concatenate([batch, np.zeros((BATCH_SIZE - len(batch),)
                                                        + batch.shape[1:], batch.dtype)])
            self.model.predict_on_batch(batch.astype(np.float32))
        return time.perf_counter() - start


def stored_bytes_table(frames_per_video: int) -> pd.DataFrame:
    """Bytes per video of every backbone extractor: float16 steps + float32 mean and max."""
    from a02_backbones import BACKBONES
    rows = []
    for spec in BACKBONES.values():
        for suffix, dimension in (("", spec.final_dim), ("_skip", spec.skip_dim)):
            rows.append({"extractor": spec.name + suffix, "dimension": dimension,
                         "bytes_per_video": frames_per_video * dimension * 2 + 2 * dimension * 4})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- report

def load_average() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "forward_pass_only": (False, "measure (b) once on <data>/cache's frames and print "
                                     "'FORWARD <seconds>' (what each repeat runs)")})
    if args.forward_pass_only:
        print(f"FORWARD {ForwardPass(data_dir())()}", flush=True)
        return
    workers = max(1, args.workers)
    print(f"bench_features: {load_average()} at start, {os.cpu_count()} CPUs, "
          f"--workers {workers}", flush=True)
    work, videos = make_work_folder(LIMIT)
    count = len(videos)
    if count == 0:
        raise SystemExit(f"bench: no videos under {input_dir() / 'videos'}")
    print(f"bench_features: {count} videos, work folder {work}", flush=True)
    r10_options = ["--workers", str(workers), "--force", "--frames_per_video",
                   str(FRAMES_PER_VIDEO), "--frame_size", str(FRAME_SIZE),
                   "--seek_above_seconds", str(SEEK_ABOVE_SECONDS)]
    r12_options = ["--extractor", EXTRACTOR, "--workers", str(workers), "--force",
                   "--batch_size", str(BATCH_SIZE), "--image_size", str(FRAME_SIZE)]
    context = multiprocessing.get_context("forkserver")
    rows = []
    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            list(pool.map(worker_id, range(workers)))  # start the workers before any timing
            for repeat in range(REPEATS):
                load = os.getloadavg()[0]
                seconds = {
                    "chain: run_all --until r12": run_chain(work, workers),
                    "r10 without audio": run_script("r10_preprocess_data.py", work,
                                                    *r10_options, "--extract_audio", "false"),
                    "r10": run_script("r10_preprocess_data.py", work, *r10_options),
                    f"r12 {EXTRACTOR}": run_script("r12_extract_features.py", work,
                                                   *r12_options),
                    "pipelined stage: r10 with r12 --follow": run_pipelined(work, r10_options,
                                                                            r12_options),
                    "(a) decode sampled frames": timed_map(decode_only, videos, pool),
                    "ffmpeg select pipe": timed_map(ffmpeg_select_pipe, videos, pool),
                    "every frame, cv2, 1 process": timed_map(decode_every_frame, videos, None),
                    f"every frame, cv2, {workers} processes": timed_map(decode_every_frame,
                                                                        videos, pool),
                }
                seconds["(b) forward pass"] = run_forward_pass(work)
                seconds["stage: r10 + r12"] = seconds["r10"] + seconds[f"r12 {EXTRACTOR}"]
                seconds["frame stage: r10 without audio + r12"] = \
                    seconds["r10 without audio"] + seconds[f"r12 {EXTRACTOR}"]
                for name, value in seconds.items():
                    rows.append({"repeat": repeat, "measurement": name, "seconds": value,
                                 "videos_per_second": count / value, "load_1min": load})
                print(f"repeat {repeat + 1}/{REPEATS}: chain "
                      f"{seconds['chain: run_all --until r12']:.1f} s, "
                      f"stage {seconds['stage: r10 + r12']:.1f} s, "
                      f"pipelined {seconds['pipelined stage: r10 with r12 --follow']:.1f} s, "
                      f"(a) {seconds['(a) decode sampled frames']:.1f} s, "
                      f"(b) {seconds['(b) forward pass']:.1f} s; {load_average()}", flush=True)
        features = work / "features" / EXTRACTOR
        measured_bytes = ((features / "features.npy").stat().st_size
                          + (features / "statistics.npy").stat().st_size) / count
    finally:
        if KEEP:
            print(f"bench_features: work folder kept at {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(rows, count, workers, measured_bytes)


def worker_id(_: int) -> int:
    return os.getpid()


def report(rows: list[dict], count: int, workers: int, measured_bytes: float) -> None:
    table = pd.DataFrame(rows)
    median = table.groupby("measurement", sort=False)["seconds"].median()
    decode, forward = median["(a) decode sampled frames"], median["(b) forward pass"]
    derived = {
        "ratio chain / ((a) + (b))": median["chain: run_all --until r12"] / (decode + forward),
        "ratio stage / ((a) + (b))": median["stage: r10 + r12"] / (decode + forward),
        "ratio frame stage / ((a) + (b))":
            median["frame stage: r10 without audio + r12"] / (decode + forward),
        "ratio pipelined stage / ((a) + (b))":
            median["pipelined stage: r10 with r12 --follow"] / (decode + forward),
        "speed-up of (a) over every frame, cv2, 1 process":
            median["every frame, cv2, 1 process"] / decode,
        f"speed-up of (a) over every frame, cv2, {workers} processes":
            median[f"every frame, cv2, {workers} processes"] / decode,
        "speed-up of (a) over the ffmpeg select pipe": median["ffmpeg select pipe"] / decode,
        f"bytes per video, {EXTRACTOR} (measured)": measured_bytes,
    }
    lines = [f"bench_features: {count} videos, --workers {workers}, medians of "
             f"{table['repeat'].nunique()} repeats; {load_average()} at the end",
             f"{'measurement':<48}{'seconds':>9}{'videos/s':>10}{'ms/video':>10}"]
    for name, seconds in median.items():
        lines.append(f"{name:<48}{seconds:>9.2f}{count / seconds:>10.2f}"
                     f"{1000 * seconds / count:>10.1f}")
    lines.append("")
    targets = {"ratio chain / ((a) + (b))": f"target <= {RATIO_TARGET}",
               "ratio stage / ((a) + (b))": f"target <= {RATIO_TARGET}",
               "ratio pipelined stage / ((a) + (b))": f"target <= {RATIO_TARGET}",
               "speed-up of (a) over every frame, cv2, 1 process":
                   f"target >= {SPEED_UP_TARGET}"}
    for name, value in derived.items():
        shown = f"{value:,.0f}" if name.startswith("bytes") else f"{value:.2f}"
        lines.append(f"{name:<60}{shown:>10}  {targets.get(name, '')}")
    sizes = stored_bytes_table(FRAMES_PER_VIDEO)
    lines.append("")
    lines.append(f"stored bytes per video ({FRAMES_PER_VIDEO} frames: float16 steps + float32 "
                 f"mean and max)")
    lines += [f"  {row.extractor:<24}{row.dimension:>6} dims{row.bytes_per_video:>10,} B"
              for row in sizes.itertuples()]
    print("\n".join(lines))

    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    summary = [{"repeat": "median", "measurement": name, "seconds": seconds,
                "videos_per_second": count / seconds, "load_1min": os.getloadavg()[0]}
               for name, seconds in median.items()]
    summary += [{"repeat": "derived", "measurement": name, "value": value}
                for name, value in derived.items()]
    summary += [{"repeat": "stored", "measurement": f"bytes per video, {row.extractor}",
                 "value": row.bytes_per_video} for row in sizes.itertuples()]
    new = pd.concat([table, pd.DataFrame(summary)], ignore_index=True)
    new.insert(0, "time", stamp)
    new.insert(1, "commit", git_commit())
    new.insert(2, "videos", count)
    new.insert(3, "workers", workers)
    path = reports_dir() / "bench_features.csv"
    if path.exists():
        new = pd.concat([pd.read_csv(path, dtype=str), new.astype(str)], ignore_index=True)
    write_csv(new, path)
    print(f"bench_features: written to {path}")


if __name__ == "__main__":
    main()
