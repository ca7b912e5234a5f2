"""r00 — make a synthetic camera-trap data set in the contract layout (the demo's input).

Reads   nothing (everything is drawn from SEED)
Writes  <out>/videos/*.mp4                  H.264 clips, mono AAC audio (most), creation_time tag
        <out>/train_labels.csv             filename + the 24 Pri-matrix class columns (0/1)
        <out>/submission_format.csv        test filenames + the same columns (all 0.0)
        <out>/video_metadata.csv           filename, capture_time (camera clock, ISO-8601), site
        <out>/../demo_truth/test_labels.csv   the hidden test labels, for evaluation only
        <out>/../demo_truth/videos.csv        what was drawn in each video (species, camera,
                                              visit, night, calls, audio) for error analysis
        <out>/../demo_truth/class_counts.csv  train/test/total positives per class
        <out>/../demo_truth/settings.json     the tunables that made this folder
        <out>/../demo_truth/summary.json      clip count, time, size, blank/night/no-audio shares
Cost    about 1 minute for the default 280 clips on 2 cores (~17 MB); --workers 2 is no
        faster there (one process already keeps two clips in flight).

    python r00_make_demo_data.py                          # data/demo/input (skips if complete)
    python r00_make_demo_data.py --workers 2 --force      # rebuild it
    python r00_make_demo_data.py --n_train 24 --n_test 8 --out /tmp/tiny/input --seed 1

What makes it like the real task: ~35 % blank clips with moving vegetation, sun flecks,
flicker, falling leaves and moths; strongly imbalanced species (chimpanzee ~15 % of clips
down to porcupine ~1 %, 11 of the 24 classes absent); ~5 % clips with two species; day
colour and infrared-night looks; six cameras with their own scenery, resolution and frame
rate; species differ in shape, size, colour, texture, gait and call; animals may be small,
far, partly out of frame or in frame for under a second. Capture times cluster: a visit
triggers the same camera 2-5 times within minutes. The test clips are whole visits (so the
demo's test score checks the OOF estimate); --test_split clip draws them one by one, as
Pri-matrix drew its test set, so that test clips sit between labelled clips of their visit.

Every video is drawn from its own generator seeded by (SEED, index), so the result does
not depend on --workers. The test labels go outside input/ so the pipeline never reads them.

This script plans the clips (who, where, when, which split), encodes them and writes the
tables; the pictures come from a08_demo_scenes (scenery, paths, frames) drawing the animals
of a08_demo_animals (species table, bodies), the sound from a08_demo_sounds.
"""
from __future__ import annotations

import concurrent.futures
import datetime
import string
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import ffmpy
import numpy as np
import pandas as pd
import soundfile

import a00_common  # its PRIMATRIX_CLASSES is read through the module, so it is no tunable here
import a08_demo_animals  # likewise its SPECIES table
from a00_common import PROJECT_ROOT, logger, parse_config, progress, run_main, set_seeds, tool_path
from a00_io import atomic_path, read_json, write_csv, write_json
from a08_demo_scenes import render_frames
from a08_demo_sounds import make_audio

# --- size
N_TRAIN = 200                  # labelled clips (train_labels.csv)
N_TEST = 80                    # unlabelled clips (submission_format.csv); drawn by visit,
                               # as many as whole visits allow (80 on the demo), never more
# "visit": the test clips are whole visits, so no test clip has a labelled clip of its own
# visit and the demo's test score checks the OOF estimate (the folds keep visits whole too);
# "clip": clips drawn one by one, as Pri-matrix drew its test set (test clips then sit
# between labelled clips of their visit, and score better than OOF)
TEST_SPLIT = "visit"
MIN_SECONDS = 3.0              # clip length is uniform in [MIN_SECONDS, MAX_SECONDS]
MAX_SECONDS = 6.0
SEED = 0                       # everything (plan, scenery, every frame and sound) follows it
# --- label mix
BLANK_FRACTION = 0.35          # clips with no animal (wind, light, insects triggered them)
TWO_SPECIES_FRACTION = 0.05    # clips that show a second species as well
CALL_FRACTION = 0.5            # animal clips in which the animal calls (if its species calls)
OFFSCREEN_CALL_FRACTION = 0.08  # daytime clips with an unseen bird singing (not labelled bird)
NO_AUDIO_FRACTION = 0.10       # clips written with no audio stream at all
# --- capture times
START_DATE = "2016-06-01"      # first day of the deployment
DAYS = 45                      # capture times spread over this many days
MIN_CLIPS_PER_VISIT = 2        # an animal visit re-triggers its camera this many times...
MAX_CLIPS_PER_VISIT = 5        # ...up to this many
RETRIGGER_SECONDS = (3.0, 90.0)  # gap between clips of one visit (min, max)
LEFT_VISIT_BLANK_FRACTION = 0.25  # visits whose last trigger finds the animal gone (blank)
# --- cameras: WIDTHxHEIGHT@FPS, one per site; each site also gets its own scenery
CAMERAS = ("640x360@15", "640x360@10", "480x270@12", "480x270@15", "320x240@12", "320x240@10")
BANNER_CAMERAS = 2             # the last N cameras burn a date/time banner into the picture
# --- appearance
MIN_VISIBLE_SECONDS = 0.4      # an animal is at least this long at least a quarter in view
# --- encoding
CRF = 28                       # x264 quality (higher: smaller files, more blocky)
PRESET = "veryfast"            # x264 speed preset
AUDIO_SAMPLE_RATE = 16000      # Hz, mono

FFMPEG_TIMEOUT_SECONDS = 120   # a hung encoder becomes an error, not a hang
# (Names with a leading underscore below are fixed tables, not command-line tunables.)
_FILENAME_ALPHABET = string.ascii_letters + string.digits


# ----------------------------------------------------------------------------- plan

def parse_camera(text: str) -> tuple[int, int, int]:
    """'640x360@15' -> (640, 360, 15); a malformed entry is an error naming it."""
    try:
        size, fps = text.split("@")
        width, height = (int(part) for part in size.lower().split("x"))
        fps = int(fps)
    except ValueError:
        raise ValueError(f"--cameras: {text!r} is not WIDTHxHEIGHT@FPS (e.g. 640x360@15)") \
            from None
    if width < 64 or height < 64 or width % 2 or height % 2 or not 1 <= fps <= 60:
        raise ValueError(f"--cameras: {text!r}: width and height must be even and >= 64, "
                         f"fps 1-60")
    return width, height, fps


def check_settings() -> None:
    if N_TRAIN < 1 or N_TEST < 0:
        raise ValueError("--n_train must be >= 1 and --n_test >= 0")
    if TEST_SPLIT not in ("visit", "clip"):
        raise ValueError(f"--test_split must be visit or clip, got {TEST_SPLIT!r}")
    if not 0.5 <= MIN_SECONDS <= MAX_SECONDS:
        raise ValueError("need 0.5 <= --min_seconds <= --max_seconds")
    for name in ("BLANK_FRACTION", "TWO_SPECIES_FRACTION", "CALL_FRACTION",
                 "OFFSCREEN_CALL_FRACTION", "NO_AUDIO_FRACTION", "LEFT_VISIT_BLANK_FRACTION"):
        if not 0.0 <= globals()[name] <= 1.0:
            raise ValueError(f"--{name.lower()} must be between 0 and 1")
    if not 1 <= MIN_CLIPS_PER_VISIT <= MAX_CLIPS_PER_VISIT:
        raise ValueError("need 1 <= --min_clips_per_visit <= --max_clips_per_visit")
    if len(RETRIGGER_SECONDS) != 2 or not 0 <= RETRIGGER_SECONDS[0] <= RETRIGGER_SECONDS[1]:
        raise ValueError("--retrigger_seconds needs two numbers MIN,MAX")
    if not CAMERAS:
        raise ValueError("--cameras needs at least one WIDTHxHEIGHT@FPS")
    for camera in CAMERAS:
        parse_camera(camera)


def visit_split(clips: list[dict], count: int, rng: np.random.Generator) -> set[int]:
    """Indices of `count` test clips made of whole visits (drawn in random order, a visit
    skipped when it would overshoot; visits that sum to `count` exactly when that falls
    short); a species whose every clip fell in test gives one of its visits back to
    training, and blank visits fill the gap as far as whole visits can."""
    visits: dict[int, list[int]] = {}
    for index, clip in enumerate(clips):
        visits.setdefault(clip["visit"], []).append(index)
    order = [int(visit) for visit in rng.permutation(sorted(visits))]
    chosen: list[int] = []
    size = 0
    for visit in order:
        if size + len(visits[visit]) <= count:
            chosen.append(visit)
            size += len(visits[visit])
    if size < count:   # the greedy draw fell short: whole visits that sum to `count` exactly
        chosen = exact_visits(order, {v: len(visits[v]) for v in order}, count) or chosen
        size = sum(len(visits[v]) for v in chosen)
    at_risk = [{i for i, clip in enumerate(clips) if species.name in clip["species"]}
               for species in a08_demo_animals.SPECIES]
    for showing in at_risk:
        test = {i for visit in chosen for i in visits[visit]}
        if showing and showing <= test:
            smallest = min((v for v in chosen if showing & set(visits[v])),
                           key=lambda v: len(visits[v]))
            chosen.remove(smallest)
            size -= len(visits[smallest])
            for visit in order:   # refill with visits that show no species (blank clips)
                if visit not in chosen and visit != smallest and \
                        size + len(visits[visit]) <= count and \
                        not any(showing & set(visits[visit]) for showing in at_risk):
                    chosen.append(visit)
                    size += len(visits[visit])
    return {i for visit in chosen for i in visits[visit]}


def exact_visits(order: list[int], sizes: dict, count: int) -> list[int] | None:
    """Visits (taken in `order`'s preference) whose sizes sum to `count`, or None."""
    parent: dict[int, tuple[int, int]] = {0: (-1, -1)}
    for visit in order:
        for total in sorted(parent, reverse=True):
            reached = total + sizes[visit]
            if reached <= count and reached not in parent:
                parent[reached] = (total, visit)
    if count not in parent:
        return None
    chosen, total = [], count
    while total:
        total, visit = parent[total]
        chosen.append(visit)
    return chosen


def split_by_weight(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer counts summing to `total` in proportion to weights (largest remainder)."""
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[index] += 1
    return counts


def random_hour(rng: np.random.Generator, night: bool) -> float:
    """Hour of the day (camera clock); the camera switches to infrared 18:00-06:00."""
    if night:
        return (rng.uniform(18.3, 29.7)) % 24.0
    return rng.uniform(6.3, 17.7)


def is_night(hour: float) -> bool:
    return hour < 6.0 or hour >= 18.0


def plan_clips(rng: np.random.Generator) -> list[dict]:
    """Who is in each clip, where and when; no pixels yet."""
    cameras = [parse_camera(text) for text in CAMERAS]
    n_total = N_TRAIN + N_TEST
    n_blank = int(round(BLANK_FRACTION * n_total))
    n_animal = n_total - n_blank
    start = datetime.datetime.fromisoformat(START_DATE)
    weights = np.array([species.weight for species in a08_demo_animals.SPECIES])
    animal_counts = split_by_weight(n_animal, weights)
    # Each species prefers some sites (habitat), so the site column carries a little signal.
    site_preference = {species.name: rng.dirichlet(np.full(len(cameras), 1.2))
                       for species in a08_demo_animals.SPECIES}

    def clip_seconds(camera: int) -> float:
        fps = cameras[camera][2]
        return max(1, round(rng.uniform(MIN_SECONDS, MAX_SECONDS) * fps)) / fps

    clips: list[dict] = []
    visit = 0
    for species, count in zip(a08_demo_animals.SPECIES, animal_counts, strict=True):
        remaining = int(count)
        while remaining > 0:
            size = min(remaining, int(rng.integers(MIN_CLIPS_PER_VISIT, MAX_CLIPS_PER_VISIT + 1)))
            remaining -= size
            camera = int(rng.choice(len(cameras), p=site_preference[species.name]))
            day = int(rng.integers(0, DAYS))
            moment = start + datetime.timedelta(
                days=day, hours=random_hour(rng, rng.random() < species.night_share))
            for _ in range(size):
                seconds = clip_seconds(camera)
                clips.append({"camera": camera, "time": moment, "seconds": seconds,
                              "species": [species.name], "visit": visit, "cause": "animal"})
                moment += datetime.timedelta(seconds=seconds + rng.uniform(*RETRIGGER_SECONDS))
            visit += 1

    # The last trigger of some visits finds the animal gone: blank clips next to animal ones.
    n_visits = visit
    n_trailing = min(int(round(LEFT_VISIT_BLANK_FRACTION * n_visits)), n_blank // 3)
    for chosen_visit in rng.choice(n_visits, n_trailing, replace=False) if n_visits else []:
        last = max((c for c in clips if c["visit"] == chosen_visit), key=lambda c: c["time"])
        seconds = clip_seconds(last["camera"])
        clips.append({"camera": last["camera"], "seconds": seconds, "species": [],
                      "visit": int(chosen_visit), "cause": "animal left",
                      "time": last["time"] + datetime.timedelta(
                          seconds=last["seconds"] + rng.uniform(*RETRIGGER_SECONDS))})

    # The other blanks are scattered false triggers, mostly by day (wind, sun flecks).
    windiness = rng.dirichlet(np.full(len(cameras), 2.0))
    for _ in range(n_blank - n_trailing):
        camera = int(rng.choice(len(cameras), p=windiness))
        moment = start + datetime.timedelta(days=int(rng.integers(0, DAYS)),
                                            hours=random_hour(rng, rng.random() < 0.3))
        clips.append({"camera": camera, "time": moment, "seconds": clip_seconds(camera),
                      "species": [], "visit": visit, "cause": "false trigger"})
        visit += 1

    # A few clips show a second species too (a bird beside a hog, monkeys with chimps).
    animal_indices = [i for i, clip in enumerate(clips) if clip["species"]]
    n_two = min(int(round(TWO_SPECIES_FRACTION * n_total)), len(animal_indices))
    for index in rng.choice(animal_indices, n_two, replace=False) if n_two else []:
        first = clips[index]["species"][0]
        others = [s for s in a08_demo_animals.SPECIES if s.name != first]
        other_weights = np.array([s.weight for s in others])
        second = others[int(rng.choice(len(others), p=other_weights / other_weights.sum()))]
        clips[index]["species"] = [first, second.name]

    # One camera records one clip at a time: push overlapping triggers later.
    clips.sort(key=lambda clip: (clip["time"], clip["camera"]))
    busy_until: dict[int, datetime.datetime] = {}
    for clip in clips:
        free = busy_until.get(clip["camera"])
        if free is not None and clip["time"] < free:
            clip["time"] = free + datetime.timedelta(seconds=rng.uniform(*RETRIGGER_SECONDS))
        busy_until[clip["camera"]] = clip["time"] + datetime.timedelta(seconds=clip["seconds"])
    clips.sort(key=lambda clip: (clip["time"], clip["camera"]))

    # Sounds, audio presence, split and names.
    test_indices = set(rng.choice(len(clips), N_TEST, replace=False).tolist()) if N_TEST else set()
    # As in the real split, every species seen in test was also seen in training: a species
    # whose clips all fell in test trades one of them for a blank training clip.
    for species in a08_demo_animals.SPECIES:
        showing = sorted(i for i, clip in enumerate(clips) if species.name in clip["species"])
        blank_train = sorted(i for i, clip in enumerate(clips)
                             if not clip["species"] and i not in test_indices)
        if showing and set(showing) <= test_indices and blank_train:
            test_indices.remove(int(rng.choice(showing)))
            test_indices.add(int(rng.choice(blank_train)))
    if TEST_SPLIT == "visit":
        # its own generator: the clips, their names and sounds are the same for both splits
        test_indices = visit_split(clips, N_TEST, np.random.default_rng([SEED, 7]))
    no_audio = set(rng.choice(len(clips), int(round(NO_AUDIO_FRACTION * len(clips))),
                              replace=False).tolist())
    names: set[str] = set()
    for index, clip in enumerate(clips):
        width, height, fps = cameras[clip["camera"]]
        hour = clip["time"].hour + clip["time"].minute / 60
        calls = [name for name in clip["species"]
                 if a08_demo_animals.SPECIES_BY_NAME[name].call and rng.random() < CALL_FRACTION]
        if not is_night(hour) and "bird" not in clip["species"] \
                and rng.random() < OFFSCREEN_CALL_FRACTION:
            calls.append("bird (off-screen)")
        name = ""
        while not name or name in names:
            name = "".join(rng.choice(list(_FILENAME_ALPHABET), 10)) + ".mp4"
        names.add(name)
        clip.update({
            "index": index, "filename": name, "split": "test" if index in test_indices else "train",
            "site": f"site_{clip['camera'] + 1:02d}", "width": width, "height": height,
            "fps": fps, "n_frames": int(round(clip["seconds"] * fps)), "night": is_night(hour),
            "hour": round(hour, 3), "capture_time": clip["time"].isoformat(timespec="seconds"),
            "has_audio": index not in no_audio, "calls": calls,
            "banner": clip["camera"] >= len(cameras) - BANNER_CAMERAS,
        })
        del clip["time"]
    return clips


# ----------------------------------------------------------------------------- encoding

def encode_video(frames, clip: dict, audio_path: Path | None, destination: Path,
                 x264_threads: int) -> None:
    """Pipes the frames into ffmpeg (H.264) and muxes the wav as mono AAC.

    Frames go in as yuv420p (converted here by OpenCV, BT.601 limited range like ffmpeg's
    own default): half the bytes of RGB, and the encoder process does no colour conversion.
    """
    inputs = {"pipe:0": ["-f", "rawvideo", "-pix_fmt", "yuv420p",
                         "-s", f"{clip['width']}x{clip['height']}", "-framerate", str(clip["fps"])]}
    if audio_path is not None:
        inputs[str(audio_path)] = None
        output_options = ["-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "32k",
                          "-ac", "1", "-ar", str(AUDIO_SAMPLE_RATE)]
    else:
        output_options = ["-an"]
    output_options += ["-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF),
                       "-pix_fmt", "yuv420p", "-threads", str(x264_threads),
                       "-metadata", f"creation_time={clip['capture_time']}.000000Z",
                       "-movflags", "+faststart"]
    built = ffmpy.FFmpeg(executable=tool_path("ffmpeg"),
                         global_options=["-hide_banner", "-nostdin", "-loglevel", "error", "-y"],
                         inputs=inputs, outputs={str(destination): output_options})
    # ffmpy's run() has no timeout and wants the input whole, so Popen streams the frames; its
    # .cmd is Windows-quoted (shlex fails on an apostrophe in a path): the list it joined is exact
    command = list(built._cmd)
    with tempfile.TemporaryFile() as error_log:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=error_log)
        try:
            for frame in frames:
                process.stdin.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg died; its own message is reported below
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            if not process.stdin.closed:
                try:
                    process.stdin.close()
                except BrokenPipeError:
                    pass
        try:
            code = process.wait(timeout=FFMPEG_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(f"ffmpeg did not finish {clip['filename']} within "
                               f"{FFMPEG_TIMEOUT_SECONDS} s") from None
        if code != 0:
            error_log.seek(0)
            tail = "\n".join(error_log.read().decode("utf-8", "replace").strip().splitlines()[-15:])
            raise RuntimeError(f"ffmpeg failed (exit code {code}) writing {clip['filename']}:\n"
                               f"{' '.join(command)}\n{tail}")


def make_video(clip: dict, seed: int, videos_folder: str, x264_threads: int) -> dict:
    """Renders, encodes and atomically places one clip; returns its timing and size."""
    started = time.perf_counter()
    destination = Path(videos_folder) / clip["filename"]
    with atomic_path(destination) as temporary_video:
        audio_path = None
        try:
            if clip["has_audio"]:
                audio_path = temporary_video.with_name(temporary_video.stem + ".wav")
                soundfile.write(str(audio_path), make_audio(clip, seed, AUDIO_SAMPLE_RATE),
                                AUDIO_SAMPLE_RATE, subtype="PCM_16")
            frames = render_frames(clip, seed, MIN_VISIBLE_SECONDS)
            encode_video(frames, clip, audio_path, temporary_video, x264_threads)
        finally:
            if audio_path is not None:
                audio_path.unlink(missing_ok=True)
    return {"filename": clip["filename"], "seconds": time.perf_counter() - started,
            "bytes": destination.stat().st_size}


# ----------------------------------------------------------------------------- tables

def label_table(clips: list[dict]) -> pd.DataFrame:
    """filename + one 0/1 column per Pri-matrix class, sorted by filename."""
    rows = []
    for clip in clips:
        row = dict.fromkeys(a00_common.PRIMATRIX_CLASSES, 0)
        for name in clip["species"] or ["blank"]:
            row[name] = 1
        rows.append({"filename": clip["filename"], **row})
    return pd.DataFrame(rows, columns=["filename"] + a00_common.PRIMATRIX_CLASSES).sort_values(
        "filename", ignore_index=True)


def truth_table(clips: list[dict]) -> pd.DataFrame:
    columns = ["filename", "split", "capture_time", "site", "width", "height", "fps",
               "n_frames", "night", "visit", "cause", "species", "calls", "has_audio", "banner"]
    frame = pd.DataFrame(clips)
    frame["species"] = frame["species"].map(lambda names: ";".join(names) or "blank")
    frame["calls"] = frame["calls"].map(";".join)
    return frame[columns]


def class_counts(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    counts = pd.DataFrame({"class": a00_common.PRIMATRIX_CLASSES,
                           "train": train[a00_common.PRIMATRIX_CLASSES].sum().to_numpy(),
                           "test": test[a00_common.PRIMATRIX_CLASSES].sum().to_numpy()})
    counts["total"] = counts["train"] + counts["test"]
    counts["share"] = (counts["total"] / max(1, len(train) + len(test))).round(4)
    return counts


def output_folder(args) -> Path:
    if args.out:
        # a data folder or its input/ folder: either way the tables land in .../input
        out = Path(args.out).expanduser().resolve()
        return out if out.name == "input" else out / "input"
    if args.data:
        return Path(args.data).expanduser().resolve() / "input"
    return PROJECT_ROOT / "data" / "demo" / "input"


def existing_is_complete(out: Path) -> bool:
    tables = [out / "train_labels.csv", out / "submission_format.csv", out / "video_metadata.csv"]
    if not all(path.exists() for path in tables):
        return False
    try:
        names = pd.concat([pd.read_csv(path, usecols=["filename"], dtype=str)["filename"]
                           for path in tables[:2]])
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return False
    return all((out / "videos" / name).is_file() for name in names)


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "out": (None, "data folder to write (its input/ folder, or the data folder itself; "
                       "default: data/demo/input under the project root)")})
    check_settings()
    set_seeds(SEED)
    out = output_folder(args)
    truth = out.parent / "demo_truth"
    settings_path = truth / "settings.json"
    settings = json_round_trip({key.lower(): value for key, value in args.config.items()})
    previous = read_json(settings_path)

    if existing_is_complete(out) and not args.force:
        if previous == settings:
            print(f"up to date: {out} (--force rebuilds it)")
        else:
            logger.warning("%s is complete but was made with other settings (or is not a demo "
                           "folder); nothing done. Run with --force to rebuild it", out)
        return
    if (out / "train_labels.csv").exists() and previous is None:
        raise SystemExit(f"{out} holds a train_labels.csv that this script did not write (no "
                         f"{settings_path}); refusing to overwrite what may be real data")

    started = time.perf_counter()
    clips = plan_clips(np.random.default_rng([SEED, 0]))
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    if previous is not None:  # our own folder
        # Not complete until this run ends; clips of other settings (or all, with --force) go.
        (out / "train_labels.csv").unlink(missing_ok=True)
        keep = {clip["filename"] for clip in clips} if previous == settings and not args.force \
            else set()
        for stale in videos.glob("*.mp4"):
            if stale.name not in keep:
                stale.unlink()
    write_json(settings, settings_path)

    todo = [clip for clip in clips if not (videos / clip["filename"]).is_file()]
    logger.info("making %d of %d clips in %s (%d workers)", len(todo), len(clips), videos,
                args.workers)
    if args.workers > 1:
        pool = concurrent.futures.ProcessPoolExecutor(args.workers)
    else:
        # One process, two clips in flight: drawing one overlaps ffmpeg starting up and
        # flushing the other (numpy, OpenCV and pipe writes release the GIL); see
        # bench/results/setting_experiments.csv: demo_writer_threads
        pool = concurrent.futures.ThreadPoolExecutor(2)
    with pool:
        # x264 on one thread: the clips in flight already fill the cores, and one thread
        # makes the bytes independent of how many there are.
        futures = [pool.submit(make_video, clip, SEED, str(videos), 1) for clip in todo]
        try:
            for future in progress(concurrent.futures.as_completed(futures),
                                   total=len(futures), desc="videos"):
                future.result()
        except BaseException:  # stop at the first failure instead of finishing the rest
            pool.shutdown(wait=True, cancel_futures=True)
            raise

    labels = label_table(clips)
    test_names = {clip["filename"] for clip in clips if clip["split"] == "test"}
    train = labels[~labels["filename"].isin(test_names)].reset_index(drop=True)
    test = labels[labels["filename"].isin(test_names)].reset_index(drop=True)
    submission = test.copy()
    submission[a00_common.PRIMATRIX_CLASSES] = 0.0
    metadata = pd.DataFrame({"filename": [c["filename"] for c in clips],
                             "capture_time": [c["capture_time"] for c in clips],
                             "site": [c["site"] for c in clips]}).sort_values("filename")
    counts = class_counts(train, test)
    write_csv(test, truth / "test_labels.csv")
    write_csv(truth_table(clips), truth / "videos.csv")
    write_csv(counts, truth / "class_counts.csv")
    write_csv(metadata, out / "video_metadata.csv")
    write_csv(submission, out / "submission_format.csv")
    write_csv(train, out / "train_labels.csv")  # last: its presence marks the folder complete

    summary = {
        "clips": len(clips), "train": len(train), "test": len(test),
        "seconds": round(time.perf_counter() - started, 1),
        "megabytes": round(sum((videos / c["filename"]).stat().st_size for c in clips) / 1e6, 1),
        "blank_share": round(float(labels["blank"].mean()), 3),
        "night_share": round(float(np.mean([c["night"] for c in clips])), 3),
        "no_audio_share": round(float(np.mean([not c["has_audio"] for c in clips])), 3),
        "two_species_share": round(float(np.mean([len(c["species"]) == 2 for c in clips])), 3),
    }
    write_json(summary, truth / "summary.json")
    logger.info("%d clips (%d train, %d test) in %.0f s, %.1f MB; blank %.1f %%, night %.1f %%, "
                "no audio %.1f %%, two species %.1f %%", summary["clips"], summary["train"],
                summary["test"], summary["seconds"], summary["megabytes"],
                100 * summary["blank_share"], 100 * summary["night_share"],
                100 * summary["no_audio_share"], 100 * summary["two_species_share"])
    present = counts[counts["total"] > 0]
    logger.info("class counts (train/test): %s", ", ".join(
        f"{row['class']} {row['train']}/{row['test']}" for _, row in present.iterrows()))
    logger.info("truth and counts in %s", truth)


def json_round_trip(settings: dict) -> dict:
    """Settings as they read back from settings.json (tuples become lists)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in settings.items()}


if __name__ == "__main__":
    run_main(main)
