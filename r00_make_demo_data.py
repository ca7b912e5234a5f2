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
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import functools
import math
import string
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import soundfile

import a00_common  # its PRIMATRIX_CLASSES is read through the module, so it is no tunable here
from a00_common import (PROJECT_ROOT, atomic_path, logger, parse_config, progress, read_json,
                        run_main, set_seeds, tool_path, write_csv, write_json)

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


# ----------------------------------------------------------------------------- species

@dataclasses.dataclass(frozen=True)
class Species:
    """How one class looks, moves and sounds. Lengths are in units of its body height."""
    name: str                  # class column it is labelled as
    weight: float              # relative frequency among animal clips
    night_share: float         # fraction of its visits at night (infrared)
    body_plan: str             # "four_legged", "upright" (human) or "bird"
    height: float              # standing height / frame height when nearest the camera
    speed: float               # frame widths per second when nearest the camera
    colour: tuple              # main coat colour (RGB)
    accent: tuple              # face, markings, belly (RGB)
    length: float = 1.6        # body length
    leg: float = 0.8           # leg length
    leg_width: float = 0.14    # leg thickness
    head: float = 0.45         # head size
    head_rise: float = 0.35    # head centre above the shoulder (negative: carried low)
    tail: float = 0.4          # tail length (0: none)
    tail_angle: float = -40.0  # degrees above horizontal where the tail leaves the body
    tail_curl: float = 0.0     # degrees the tail bends over its length
    back_slope: float = 0.0    # degrees; positive lifts the shoulders (apes), negative the rump
    pattern: str = ""          # "spots", "stripes", "quills", "rings", "dots"
    features: tuple = ()       # extras: "trunk", "big_ear", "tusks", "horns", "primate"
    group: tuple = (1, 1)      # individuals per clip (min, max)
    pauses: bool = True        # stops now and then (to look around, feed)
    call: str = ""             # call synthesiser ("" = silent species)


_SPECIES = (
    Species("chimpanzee", 0.14, 0.0, "four_legged", 0.60, 0.16, (38, 32, 30), (150, 118, 98),
            length=1.3, leg=0.9, leg_width=0.2, head=0.5, head_rise=0.1, tail=0.0,
            back_slope=30, features=("primate",), group=(1, 3), call="pant_hoot"),
    Species("duiker", 0.12, 0.35, "four_legged", 0.32, 0.35, (150, 68, 35), (70, 45, 30),
            length=1.5, leg=0.75, leg_width=0.1, head=0.38, head_rise=0.1, tail=0.18,
            tail_angle=25, back_slope=-12, features=("horns",), call="whistle"),
    Species("small antelope", 0.06, 0.3, "four_legged", 0.40, 0.25, (165, 108, 58),
            (235, 230, 220), length=1.6, leg=1.1, leg_width=0.1, head=0.38, head_rise=0.45,
            tail=0.22, tail_angle=-20, pattern="stripes", call="bark"),
    Species("other (primate)", 0.06, 0.0, "four_legged", 0.28, 0.30, (112, 100, 84),
            (225, 212, 190), length=1.5, leg=0.7, leg_width=0.13, head=0.5, head_rise=0.15,
            tail=1.4, tail_angle=50, tail_curl=-110, back_slope=5, features=("primate",),
            group=(1, 3), call="pyow"),
    Species("elephant", 0.05, 0.45, "four_legged", 1.15, 0.07, (108, 104, 100),
            (92, 88, 84), length=1.4, leg=0.9, leg_width=0.32, head=0.75, head_rise=-0.05,
            tail=0.4, tail_angle=-70, features=("trunk", "big_ear", "tusks"), pauses=False,
            call="rumble"),
    Species("bird", 0.05, 0.05, "bird", 0.12, 0.30, (48, 48, 58), (215, 215, 225),
            pattern="dots", group=(1, 3), call="chirps"),
    Species("human", 0.04, 0.1, "upright", 0.85, 0.22, (95, 64, 45), (200, 40, 40),
            group=(1, 2), pauses=False, call="speech"),
    Species("hog", 0.03, 0.5, "four_legged", 0.30, 0.22, (172, 76, 36), (235, 235, 228),
            length=1.7, leg=0.45, leg_width=0.16, head=0.6, head_rise=-0.2, tail=0.3,
            tail_angle=-65, group=(1, 4), call="grunt"),
    Species("rodent", 0.03, 0.85, "four_legged", 0.09, 0.35, (98, 82, 66), (175, 150, 130),
            length=1.8, leg=0.3, leg_width=0.12, head=0.5, head_rise=0.0, tail=1.6,
            tail_angle=-8, call="squeak"),
    Species("leopard", 0.02, 0.7, "four_legged", 0.45, 0.15, (205, 160, 85), (38, 28, 20),
            length=2.0, leg=0.85, leg_width=0.16, head=0.45, head_rise=0.15, tail=1.7,
            tail_angle=-30, tail_curl=90, pattern="spots", pauses=False, call="sawing"),
    Species("other (non-primate)", 0.02, 0.8, "four_legged", 0.16, 0.25, (158, 146, 122),
            (40, 35, 30), length=2.2, leg=0.55, leg_width=0.1, head=0.4, head_rise=0.1,
            tail=1.8, tail_angle=-10, tail_curl=15, pattern="rings", call="chatter"),
    Species("porcupine", 0.01, 0.9, "four_legged", 0.16, 0.10, (58, 47, 42), (225, 218, 205),
            length=1.5, leg=0.35, leg_width=0.14, head=0.35, head_rise=-0.1, tail=0.2,
            tail_angle=-30, pattern="quills", call="rattle"),
)
_SPECIES_BY_NAME = {species.name: species for species in _SPECIES}

_SHIRT_COLOURS = [(200, 40, 40), (40, 70, 190), (220, 190, 40), (230, 230, 225),
                  (230, 120, 30), (110, 120, 70), (30, 30, 32), (60, 140, 70)]
_TROUSER_COLOURS = [(40, 40, 45), (140, 125, 90), (60, 70, 110), (70, 80, 50)]


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
               for species in _SPECIES]
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
    weights = np.array([species.weight for species in _SPECIES])
    animal_counts = split_by_weight(n_animal, weights)
    # Each species prefers some sites (habitat), so the site column carries a little signal.
    site_preference = {species.name: rng.dirichlet(np.full(len(cameras), 1.2))
                       for species in _SPECIES}

    def clip_seconds(camera: int) -> float:
        fps = cameras[camera][2]
        return max(1, round(rng.uniform(MIN_SECONDS, MAX_SECONDS) * fps)) / fps

    clips: list[dict] = []
    visit = 0
    for species, count in zip(_SPECIES, animal_counts):
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
        others = [s for s in _SPECIES if s.name != first]
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
    for species in _SPECIES:
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
                 if _SPECIES_BY_NAME[name].call and rng.random() < CALL_FRACTION]
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


# ----------------------------------------------------------------------------- scenery

def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Value noise in [0, 1] with features about `cell` pixels wide."""
    grid = rng.random((max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)))
    return cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)


def fractal_noise(rng: np.random.Generator, height: int, width: int, largest: float,
                  octaves: int = 4) -> np.ndarray:
    total = np.zeros((height, width), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        total += amplitude * smooth_noise(rng, height, width, max(1.5, largest / 2 ** octave))
        norm += amplitude
        amplitude *= 0.5
    return np.clip(total / norm, 0, 1)


@dataclasses.dataclass
class Scene:
    """One camera's fixed view: scenery, near-lens leaves, light patterns, infrared falloff."""
    width: int
    height: int
    fps: int
    horizon: int               # y where the ground meets the forest
    background: np.ndarray     # float32 (H, W, 3), daylight colours
    leaves: np.ndarray         # float32 (h, w, 3) near-lens foliage in its box
    leaves_alpha: np.ndarray   # float32 (h, w) its opacity
    leaves_box: tuple          # (y0, y1, x0, x1) of the foliage in the frame
    flecks: np.ndarray         # float32 low-resolution sun-fleck pattern, larger than the frame
    infrared_gain: np.ndarray  # float32 (H, W): flash falloff, bright centre
    noise_level: float         # sensor noise sigma (grey levels) by day


def draw_trunk(rng, image, x, width, top, bottom, colour):
    """A tree trunk with vertical bark streaks and cylinder shading."""
    height = bottom - top
    x0, x1 = int(max(0, x - width / 2)), int(min(image.shape[1], x + width / 2))
    if x1 <= x0 or height <= 0:
        return
    columns = x1 - x0
    bark = cv2.resize(rng.random((max(2, height // 24), max(2, columns // 3))).astype(np.float32),
                      (columns, height), interpolation=cv2.INTER_LINEAR)
    across = np.linspace(-1, 1, columns, dtype=np.float32)
    shading = 0.55 + 0.45 * np.sqrt(np.clip(1 - across ** 2, 0, 1))
    texture = (0.75 + 0.5 * bark) * shading[None, :]
    image[top:bottom, x0:x1] = np.asarray(colour, np.float32) * texture[..., None]


@functools.lru_cache(maxsize=None)
def build_scene(seed: int, camera: int, width: int, height: int, fps: int) -> Scene:
    """The view of one camera; cached per worker, identical in every process."""
    rng = np.random.default_rng([seed, 3, camera])
    horizon = int(height * rng.uniform(0.38, 0.55))
    image = np.zeros((height, width, 3), np.float32)

    # Forest wall above the horizon: dark greens, with bright canopy gaps.
    forest_palettes = [(40, 70, 35), (55, 75, 40), (35, 60, 50), (70, 80, 45)]
    forest = np.asarray(forest_palettes[rng.integers(len(forest_palettes))], np.float32)
    texture = fractal_noise(rng, height, width, width / 6)
    image[:] = forest * (0.45 + 1.0 * texture[..., None])
    gaps = np.clip((smooth_noise(rng, height, width, width / 10) - 0.78) * 6, 0, 1)
    gaps *= np.linspace(1, 0, height, dtype=np.float32)[:, None] ** 2  # gaps are high up
    image = image * (1 - gaps[..., None]) + np.float32(235) * gaps[..., None]

    # Trunks behind the ground line, wider when nearer.
    for _ in range(int(rng.integers(2, 6))):
        near = rng.random()
        trunk_width = width * (0.02 + 0.12 * near ** 2)
        base = int(horizon + (height - horizon) * 0.25 * near)
        bark_colour = np.array([95, 80, 65]) * rng.uniform(0.6, 1.2) + rng.normal(0, 8, 3)
        draw_trunk(rng, image, rng.uniform(0, width), trunk_width, 0, base, bark_colour)

    # Ground: leaf litter, finer and brighter towards the camera, with an animal trail.
    rows = height - horizon
    ground_colour = np.asarray([(110, 85, 55), (95, 80, 60), (120, 95, 60), (85, 75, 50)]
                               [rng.integers(4)], np.float32)
    litter = fractal_noise(rng, rows, width, width / 10)
    fine = smooth_noise(rng, rows, width, 3)
    depth = np.linspace(0, 1, rows, dtype=np.float32)[:, None]  # 0 at horizon, 1 at bottom
    ground = ground_colour * (0.55 + 0.5 * litter[..., None] + 0.35 * (fine[..., None] - 0.5)
                              * depth[..., None]) * (0.75 + 0.35 * depth[..., None])
    trail_centre = rng.uniform(0.2, 0.8) * width + (np.arange(rows) - rows / 2) * rng.uniform(-1, 1)
    trail_width = width * 0.05 + depth[:, 0] * width * rng.uniform(0.1, 0.3)
    columns = np.arange(width, dtype=np.float32)[None, :]
    trail = np.clip(1 - np.abs(columns - trail_centre[:, None]) / trail_width[:, None], 0, 1)
    ground *= (1 + 0.25 * trail[..., None])
    image[horizon:] = ground

    # Low bushes along the horizon.
    for _ in range(int(rng.integers(4, 10))):
        centre = (int(rng.uniform(0, width)), int(horizon + rng.uniform(-0.02, 0.06) * height))
        axes = (int(width * rng.uniform(0.03, 0.1)), int(height * rng.uniform(0.03, 0.08)))
        colour = tuple(float(c) for c in forest * rng.uniform(0.8, 1.6))
        cv2.ellipse(image, centre, axes, 0, 180, 360, colour, -1, cv2.LINE_AA)

    tint = rng.uniform(0.92, 1.08, 3).astype(np.float32)  # each camera's white balance
    background = cv2.GaussianBlur(image * tint, (0, 0), 0.8)

    # Out-of-focus leaves near the lens hanging into one top corner; they sway in the wind.
    box_height = int(height * rng.uniform(0.3, 0.55))
    box_width = int(width * rng.uniform(0.25, 0.45))
    leaves_mask = np.zeros((box_height, box_width), np.float32)
    leaves_colour = np.zeros((box_height, box_width, 3), np.float32)
    leaf_green = np.array([45, 85, 35], np.float32) * rng.uniform(0.7, 1.3)
    for _ in range(int(rng.integers(6, 14))):
        centre = (int(rng.uniform(0, box_width)), int(rng.uniform(0, box_height * 0.7)))
        axes = (int(box_width * rng.uniform(0.08, 0.2)), int(box_height * rng.uniform(0.04, 0.1)))
        angle = rng.uniform(0, 180)
        shade = tuple(float(c) for c in leaf_green * rng.uniform(0.6, 1.4))
        cv2.ellipse(leaves_mask, centre, axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
        cv2.ellipse(leaves_colour, centre, axes, angle, 0, 360, shade, -1, cv2.LINE_AA)
    leaves_mask = cv2.GaussianBlur(leaves_mask, (0, 0), max(1.0, width / 160)) * 0.95
    leaves_colour = cv2.GaussianBlur(leaves_colour, (0, 0), max(1.0, width / 160))
    if rng.random() < 0.5:  # right-hand corner: mirror the box
        leaves_mask, leaves_colour = leaves_mask[:, ::-1].copy(), leaves_colour[:, ::-1].copy()
        box = (0, box_height, width - box_width, width)
    else:
        box = (0, box_height, 0, box_width)

    flecks_low = smooth_noise(rng, height // 4 + 16, width // 4 + 16, width / 40)
    flecks = np.clip((flecks_low - 0.55) * 5, 0, 1).astype(np.float32)

    rows_grid, columns_grid = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((columns_grid - width / 2) / (width / 2),
                      (rows_grid - height * 0.6) / (height * 0.75))
    infrared_gain = (1.45 * np.exp(-1.3 * radius ** 2) + 0.12).astype(np.float32)
    return Scene(width, height, fps, horizon, background.astype(np.float32), leaves_colour,
                 leaves_mask, box, flecks, infrared_gain, float(rng.uniform(1.5, 3.5)))


# ----------------------------------------------------------------------------- animals

class Pen:
    """Draws in an animal's own frame: x forward, y up, in units of its body height."""
    SHIFT = 4  # sub-pixel bits for cv2, so slow animals glide instead of jumping pixels

    def __init__(self, image, origin_x, origin_y, unit, facing):
        self.image, self.x, self.y, self.unit, self.facing = image, origin_x, origin_y, unit, facing

    def to_image(self, x, y) -> tuple[float, float]:
        return self.x + self.facing * x * self.unit, self.y - y * self.unit

    def _fixed(self, x, y):
        image_x, image_y = self.to_image(x, y)
        scale = 1 << self.SHIFT
        return int(round(image_x * scale)), int(round(image_y * scale))

    def ellipse(self, x, y, half_length, half_height, angle, colour):
        scale = (1 << self.SHIFT) * self.unit
        axes = (max(1, int(half_length * scale)), max(1, int(half_height * scale)))
        cv2.ellipse(self.image, self._fixed(x, y), axes, -angle * self.facing, 0, 360, colour,
                    -1, cv2.LINE_AA, self.SHIFT)

    def circle(self, x, y, radius, colour):
        fixed_radius = max(1, int(radius * self.unit * (1 << self.SHIFT)))
        cv2.circle(self.image, self._fixed(x, y), fixed_radius, colour, -1, cv2.LINE_AA, self.SHIFT)

    def line(self, x1, y1, x2, y2, width, colour):
        cv2.line(self.image, self._fixed(x1, y1), self._fixed(x2, y2), colour,
                 max(1, int(round(width * self.unit))), cv2.LINE_AA, self.SHIFT)

    def polyline(self, points, width, colour):
        for (x1, y1), (x2, y2) in zip(points[:-1], points[1:]):
            self.line(x1, y1, x2, y2, width, colour)

    def polygon(self, points, colour):
        fixed = np.array([self._fixed(x, y) for x, y in points], np.int32)
        cv2.fillPoly(self.image, [fixed], colour, cv2.LINE_AA, self.SHIFT)


def shade(colour, factor: float) -> tuple:
    return tuple(float(min(255.0, c * factor)) for c in colour)


def rotate(u: float, v: float, angle: float) -> tuple[float, float]:
    cos, sin = math.cos(angle), math.sin(angle)
    return u * cos - v * sin, u * sin + v * cos


def tail_points(base_x, base_y, length, start_angle, curl, segments=8):
    """A tail that leaves backwards at start_angle (degrees above horizontal) and bends."""
    points = [(base_x, base_y)]
    for step in range(1, segments + 1):
        angle = math.radians(start_angle + curl * step / segments)
        x, y = points[-1]
        step = length / segments
        points.append((x - math.cos(angle) * step, y + math.sin(angle) * step))
    return points


def draw_four_legged(pen: Pen, species: Species, traits: dict, pose: dict) -> list:
    """Body ellipse, two-segment legs, tail, neck and head; returns eye positions."""
    colour, accent = traits["colour"], traits["accent"]
    far_colour = shade(colour, 0.72)
    length = species.length * traits["build"]
    leg = species.leg
    primate = "primate" in species.features
    slope = math.radians(65 if pose["sitting"] else species.back_slope)
    body_y = (0.6 if pose["sitting"] else leg + 0.5) + pose["bob"]
    phase = pose["phase"]
    stride = 0.0 if pose["sitting"] else 0.35 * leg * pose["moving"]

    def on_body(u, v):
        du, dv = rotate(u, v, slope)
        return du, body_y + dv

    shoulder, hip = on_body(0.3 * length, -0.2), on_body(-0.32 * length, -0.2)
    # (attachment, gait phase offset, far side): diagonal pairs move together.
    legs = [(hip, math.pi, True), (shoulder, 0.0, True), (hip, 0.0, False),
            (shoulder, math.pi, False)]
    if pose["sitting"]:  # folded hind legs, arms reaching down in front
        legs = [((hip[0] + 0.3, hip[1]), 0.0, True), (shoulder, 0.0, True),
                ((hip[0] + 0.35, hip[1]), 0.0, False), (shoulder, 0.0, False)]

    def draw_leg(attach, offset, far):
        swing = math.sin(phase + offset)
        foot_x = attach[0] + stride * swing + (0.15 if far else 0.0)
        foot_y = max(0.0, math.cos(phase + offset)) * 0.15 * leg * pose["moving"]
        hind = attach is hip or attach[0] < 0
        knee_x = (attach[0] + foot_x) / 2 + (-0.08 if hind else 0.06) * leg
        knee_y = (attach[1] + foot_y) / 2
        leg_colour = far_colour if far else colour
        width = species.leg_width * (1.15 if primate and not hind else 1.0)
        pen.line(attach[0] + (0.15 if far else 0.0), attach[1], knee_x, knee_y, width, leg_colour)
        pen.line(knee_x, knee_y, foot_x, foot_y, width * 0.8, leg_colour)

    for attach, offset, far in legs:
        if far:
            draw_leg(attach, offset, far)

    if species.tail > 0:
        base = on_body(-0.5 * length, 0.15)
        short_tail = species.tail < 0.5  # short tails flick fast, long ones sway slowly
        wag = 12 * math.sin(pose["time"] * 5.0) if short_tail else 6 * math.sin(pose["time"] * 2)
        points = tail_points(base[0], base[1], species.tail, species.tail_angle + wag,
                             species.tail_curl)
        if species.pattern == "rings":
            for number, (start, end) in enumerate(zip(points[:-1], points[1:])):
                pen.line(*start, *end, 0.14, accent if number % 2 else colour)
        else:
            pen.polyline(points, 0.12 if species.tail > 0.5 else 0.1, colour)
            if species.name == "duiker":  # white flag under the tail
                pen.circle(*points[-1], 0.06, (230, 225, 215))

    pen.ellipse(0, body_y, length / 2, 0.5, math.degrees(slope), colour)
    draw_body_pattern(pen, species, traits, length, body_y, slope)

    for attach, offset, far in legs:
        if not far:
            draw_leg(attach, offset, far)

    front_top = on_body(0.42 * length, 0.25)
    head_x = front_top[0] + 0.18 + species.head * 0.3
    head_y = front_top[1] + species.head_rise - pose["graze"]
    head = species.head
    eyes = []
    if primate:
        pen.circle(head_x - 0.05, head_y, head * 0.5, colour)
        pen.ellipse(head_x + head * 0.22, head_y - head * 0.08, head * 0.28, head * 0.3, 0, accent)
        pen.circle(head_x - head * 0.2, head_y + head * 0.1, head * 0.14, shade(colour, 1.2))  # ear
        eyes.append((head_x + head * 0.25, head_y + head * 0.08))
    else:
        pen.line(front_top[0] - 0.1, front_top[1] - 0.1, head_x - head * 0.3, head_y,
                 0.35 + 0.2 * head, colour)  # neck
        pen.ellipse(head_x, head_y, head * 0.62, head * 0.42, -25, colour)
        snout = (head_x + head * 0.55, head_y - head * 0.22)
        pen.ellipse(*snout, head * 0.3, head * 0.24, -25, shade(colour, 0.85))
        pen.ellipse(head_x - head * 0.3, head_y + head * 0.4, head * 0.12, head * 0.22, 20,
                    accent if species.name == "hog" else shade(colour, 1.1))  # ear
        if species.name == "hog":  # white face stripe
            pen.line(head_x - head * 0.1, head_y + head * 0.3, snout[0], snout[1], 0.05, accent)
        eyes.append((head_x + head * 0.1, head_y + head * 0.1))
        pen.circle(*eyes[-1], head * 0.07, (15, 12, 10))
    if "horns" in species.features:
        pen.line(head_x - head * 0.1, head_y + head * 0.35, head_x - head * 0.45,
                 head_y + head * 0.55, 0.04, (40, 32, 25))
    if "big_ear" in species.features:
        pen.ellipse(head_x - head * 0.45, head_y + head * 0.05, head * 0.38, head * 0.6, 10,
                    shade(colour, 0.85))
    if "trunk" in species.features:
        sway = 0.15 * math.sin(pose["time"] * 1.3)
        trunk = [(head_x + head * 0.45, head_y - head * 0.1),
                 (head_x + head * 0.6 + sway * 0.5, head_y - head * 0.8),
                 (head_x + head * 0.55 + sway, max(0.15, head_y - head * 1.6))]
        pen.polyline(trunk, 0.16, colour)
    if "tusks" in species.features:
        pen.polyline([(head_x + head * 0.35, head_y - head * 0.35),
                      (head_x + head * 0.75, head_y - head * 0.55),
                      (head_x + head * 0.9, head_y - head * 0.4)], 0.05, (235, 230, 215))
    return [pen.to_image(*eye) for eye in eyes] if not primate else []


def draw_body_pattern(pen: Pen, species: Species, traits: dict, length, body_y, slope):
    accent = traits["accent"]
    if species.pattern in ("spots", "dots", "rings"):
        radius = 0.04 if species.pattern != "dots" else 0.045
        for u, v in traits["marks"]:
            x, y = rotate(u * length / 2 * 0.9, v * 0.45, slope)
            pen.circle(x, body_y + y, radius, accent)
    elif species.pattern == "stripes":
        for u in np.linspace(-0.3, 0.25, 5):
            top, bottom = rotate(u * length, 0.42, slope), rotate(u * length, -0.3, slope)
            pen.line(top[0], body_y + top[1], bottom[0], body_y + bottom[1], 0.035, accent)
        for u, v in traits["marks"][:6]:
            x, y = rotate(u * length / 2 * 0.8, v * 0.3 - 0.1, slope)
            pen.circle(x, body_y + y, 0.04, accent)
    elif species.pattern == "quills":
        for number, u in enumerate(np.linspace(-0.55, 0.35, 16)):
            base = rotate(u * length, 0.3, slope)
            tip = (base[0] - 0.45 - 0.2 * (number % 3),
                   base[1] + 0.35 + 0.25 * ((number * 7) % 4) / 4)  # uneven quill lengths
            pen.line(base[0], body_y + base[1], tip[0], body_y + tip[1], 0.045,
                     accent if number % 2 else shade(species.colour, 1.4))


def draw_upright(pen: Pen, species: Species, traits: dict, pose: dict) -> list:
    """A person seen from the side; unit = standing height."""
    skin, shirt, trousers = traits["colour"], traits["shirt"], traits["trousers"]
    phase, moving, bob = pose["phase"], pose["moving"], pose["bob"]
    hip_y, shoulder_y = 0.5 + bob, 0.8 + bob
    for side, far in ((math.pi, True), (0.0, False)):
        swing = math.sin(phase + side) * 0.16 * moving
        knee = (swing * 0.6 + 0.02, 0.26 + bob * 0.5)
        colour = shade(trousers, 0.75) if far else trousers
        pen.line(0, hip_y, *knee, 0.07, colour)
        pen.line(*knee, swing, max(0.0, math.cos(phase + side)) * 0.04 * moving, 0.06, colour)
        if far:
            hand = (-swing * 0.7, 0.48 + bob)
            pen.line(0, shoulder_y, *hand, 0.05, shade(shirt, 0.75))
    if traits["backpack"]:
        pen.ellipse(-0.12, 0.7 + bob, 0.07, 0.12, 0, traits["backpack_colour"])
    pen.ellipse(0, 0.66 + bob, 0.1, 0.19, 0, shirt)
    near_swing = math.sin(phase) * 0.16 * moving
    hand = (-near_swing * 0.7, 0.48 + bob)
    pen.line(0, shoulder_y, *hand, 0.05, shirt)
    pen.circle(*hand, 0.025, skin)
    if traits["tool"]:  # machete or stick carried in the near hand
        pen.line(*hand, hand[0] + 0.22, hand[1] - 0.12, 0.015, (60, 60, 62))
    pen.circle(0.02, 0.91 + bob, 0.065, skin)
    pen.ellipse(0.0, 0.945 + bob, 0.066, 0.035, 0, traits["hair"])
    return []


def draw_bird(pen: Pen, species: Species, traits: dict, pose: dict) -> list:
    """A ground bird (guineafowl, francolin) or a small bird flying through."""
    colour, accent = traits["colour"], traits["accent"]
    flying = pose["flying"]
    body_y = (0.45 + 0.5 + pose["bob"]) if not flying else pose["altitude"]
    if not flying:
        for offset in (0.0, math.pi):
            swing = math.sin(pose["phase"] + offset) * 0.18 * pose["moving"]
            pen.line(0.05, body_y - 0.35, swing, 0.0, 0.05, (80, 65, 55))
    pen.polygon([(-0.6, body_y + 0.1), (-1.15, body_y - 0.15 + (0.2 if flying else 0)),
                 (-0.6, body_y - 0.2)], shade(colour, 0.8))  # tail
    pen.ellipse(0, body_y, 0.75, 0.5, 12, colour)
    if species.pattern == "dots" and traits["variant"] == "guineafowl":
        for u, v in traits["marks"]:
            x, y = rotate(u * 0.65, v * 0.4, math.radians(12))
            pen.circle(x, body_y + y, 0.05, accent)
    head = (0.62, body_y + 0.42 - pose["graze"] * 2.5)
    pen.line(0.45, body_y + 0.2, *head, 0.28, colour)
    pen.circle(*head, 0.25, traits["head_colour"])
    pen.polygon([(head[0] + 0.2, head[1] + 0.06), (head[0] + 0.48, head[1] - 0.05),
                 (head[0] + 0.2, head[1] - 0.08)], (200, 170, 90))  # beak
    if flying:
        flap = math.radians(55 * math.sin(pose["time"] * 28.0))
        tip = rotate(-0.2, 1.0, flap)
        pen.polygon([(-0.25, body_y + 0.1), (0.25, body_y + 0.1), (tip[0], body_y + tip[1])],
                    shade(colour, 0.85))
    pen.circle(head[0] + 0.08, head[1] + 0.06, 0.05, (10, 10, 10))
    return []  # no tapetum, no eye-shine


_DRAWERS = {"four_legged": draw_four_legged, "upright": draw_upright, "bird": draw_bird}


def individual_traits(seed: int, visit: int, slot: int, member: int, species: Species) -> dict:
    """Colour and build of one animal, the same in every clip of its visit."""
    rng = np.random.default_rng([seed, 2, visit, slot, member])
    jitter = rng.uniform(0.95, 1.05, 3) * rng.uniform(0.8, 1.15)  # mostly lighter/darker, hue kept
    traits = {
        "colour": tuple(float(min(255, c)) for c in np.asarray(species.colour) * jitter),
        "accent": tuple(float(c) for c in species.accent),
        "build": rng.uniform(0.9, 1.1), "size": rng.uniform(0.85, 1.15),
        "marks": [tuple(p) for p in _points_in_disc(rng, 30)],
    }
    if species.body_plan == "upright":
        shirt = _SHIRT_COLOURS[rng.integers(len(_SHIRT_COLOURS))]
        trousers = _TROUSER_COLOURS[rng.integers(len(_TROUSER_COLOURS))]
        traits.update(shirt=tuple(map(float, shirt)), trousers=tuple(map(float, trousers)),
                      hair=(20.0, 18.0, 16.0), backpack=bool(rng.random() < 0.4),
                      backpack_colour=tuple(map(float, rng.uniform(30, 120, 3))),
                      tool=bool(rng.random() < 0.3))
    if species.body_plan == "bird":
        variant = ["guineafowl", "francolin", "small bird"][rng.choice(3, p=[0.5, 0.3, 0.2])]
        traits["variant"] = variant
        if variant == "guineafowl":
            traits["head_colour"] = (70.0, 110.0, 170.0)
        elif variant == "francolin":
            traits["colour"] = tuple(float(c) for c in np.array([125, 100, 70]) * jitter)
            traits["head_colour"] = (150.0, 75.0, 50.0)
        else:
            traits["colour"] = tuple(float(c) for c in np.array([150, 150, 60]) * jitter)
            traits["head_colour"] = (90.0, 90.0, 40.0)
            traits["size"] *= 0.6
    return traits


_COLOUR_TRAITS = ("colour", "accent", "shirt", "trousers", "hair", "backpack_colour", "head_colour")


def infrared_traits(traits: dict) -> dict:
    """The same animal under the infrared flash: fur and cloth reflect it well, so grey and
    lighter than by day (otherwise a red duiker vanishes into the grey litter)."""
    infrared = dict(traits)
    for key in _COLOUR_TRAITS:
        if key in traits:
            red, green, blue = traits[key]
            grey = 80.0 + 0.45 * (0.2 * red + 0.55 * green + 0.25 * blue)
            infrared[key] = (grey, grey, grey)
    return infrared


def _points_in_disc(rng, count):
    radius, angle = np.sqrt(rng.random(count)), rng.uniform(0, 2 * np.pi, count)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).round(3)


# ----------------------------------------------------------------------------- motion

def ground_line(scene: Scene, depth: np.ndarray) -> np.ndarray:
    """y of the feet at a depth: 0 = at the lens (feet below the frame), 1 = at the horizon."""
    bottom = scene.height * 1.1
    return scene.horizon + (bottom - scene.horizon) * (1 - depth) ** 1.4 + 0.02 * scene.height


def perspective(depth: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + 2.5 * np.clip(depth, -0.25, None))


def unit_pixels(species: Species, traits: dict, scene: Scene, depth) -> np.ndarray:
    """Pixels per body unit at a depth, so the standing height matches species.height."""
    standing_units = 1.0 if species.body_plan == "upright" else species.leg + 1.0 + 0.3
    if species.body_plan == "bird":
        standing_units = 1.95
    return species.height * traits["size"] * scene.height * perspective(depth) / standing_units


def extent_units(species: Species) -> tuple[float, float]:
    """(half width, height) of an animal's bounding box in its body units."""
    if species.body_plan == "upright":
        return 0.25, 1.0
    if species.body_plan == "bird":
        return 1.2, 1.95
    half_width = species.length / 2 + species.head + 0.3
    return half_width, species.leg + 1.0 + max(0.3, species.head_rise + species.head)


def plan_path(rng: np.random.Generator, species: Species, traits: dict, scene: Scene,
              times: np.ndarray, lead: dict | None = None, reach: float = 1.0) -> dict:
    """Per-frame x, depth, facing, gait phase and pose of one animal through the clip.

    Modes: "cross" walks from one side to the other (the clip may catch only the start or
    the end of it), "linger" feeds or sits around one spot, "glimpse" comes close to the
    lens at an edge and backs out. A follower (`lead` given) walks the leader's path later.
    """
    n, fps = len(times), scene.fps
    duration = n / fps
    flying = (species.body_plan == "bird" and traits.get("variant") == "small bird"
              and rng.random() < 0.7)
    sitting = False
    if lead is not None:
        lead["members"] += 1
        delay = rng.uniform(0.5, 1.6) * lead["members"]
        mode = lead["mode"]
        depth = np.clip(lead["depth"] + rng.uniform(-0.12, 0.12), -0.2, 1.0)
        x = np.interp(times - delay, lead["times_ext"], lead["x_ext"])
        if mode == "linger":
            x = x + rng.uniform(-0.2, 0.2) * scene.width
            sitting = lead["sitting"] and rng.random() < 0.7
    else:
        mode = str(rng.choice(["cross", "linger", "glimpse"], p=[0.55, 0.3, 0.15]))
        if species.name == "elephant":  # too big to peek in from an edge
            mode = str(rng.choice(["cross", "linger"], p=[0.7, 0.3]))
        if flying:
            mode = "cross"
        # Small animals trigger the sensor only when close, so they are never far off.
        farthest = 0.9 * reach * float(np.clip(species.height / 0.3, 0.45, 1.0))
        depth0 = rng.uniform(-0.15, 0.2) if mode == "glimpse" else rng.uniform(0.03, farthest)
        depth = np.clip(depth0 + np.linspace(0, rng.uniform(-0.3, 0.3), n), -0.2, 1.0)
        half_width = extent_units(species)[0] * unit_pixels(species, traits, scene, depth)
        speed = species.speed * scene.width * rng.uniform(0.7, 1.4) * perspective(depth)
        if flying:
            speed = speed * 4
        direction = float(rng.choice([-1.0, 1.0]))
        if mode == "linger":
            centre = rng.uniform(0.15, 0.85) * scene.width
            amplitude = rng.uniform(0.02, 0.12) * scene.width * perspective(depth)
            sitting = "primate" in species.features and rng.random() < 0.6
            if sitting:
                amplitude = amplitude * 0.1
            period, phase = rng.uniform(3, 9), rng.uniform(0, 6.3)
            x = centre + amplitude * np.sin(2 * np.pi * times / period + phase)
        elif mode == "glimpse":
            dwell = rng.uniform(0.8, 2.5)
            inside = np.clip(1 - np.abs(times - rng.uniform(0.2, 0.8) * duration) / dwell, 0, 1)
            penetration = rng.uniform(0.15, 0.4) * scene.width
            edge = -half_width if direction > 0 else scene.width + half_width
            x = edge + direction * (penetration + half_width) * np.sin(inside * np.pi / 2)
        else:
            pace = np.ones(n)
            if species.pauses and rng.random() < 0.6:  # stops to look around or feed
                stop = rng.uniform(0, duration)
                pace[(times > stop) & (times < stop + rng.uniform(0.5, 2.5))] = 0.0
                pace = np.convolve(pace, np.ones(5) / 5, mode="same")
            step = speed * pace / fps
            distance = np.cumsum(step) - step[0]  # 0 at the first frame
            margin = float(half_width.max())
            # How far along its path from edge to edge the animal is when recording starts.
            start = rng.uniform(-distance[-1], scene.width + 2 * margin)
            along = start + distance
            x = -margin + along if direction > 0 else scene.width + margin - along
    velocity = np.gradient(x) * fps if n > 1 else np.zeros(n)
    unit = unit_pixels(species, traits, scene, depth)
    facing = np.sign(velocity)
    facing[facing == 0] = rng.choice([-1.0, 1.0])
    facing = _steady_facing(facing, np.abs(velocity) > 0.02 * scene.width)
    stride_pixels = 1.4 * max(species.leg, 0.4) * unit
    phase = np.cumsum(np.abs(velocity) / fps / stride_pixels) * 2 * np.pi + rng.uniform(0, 6.3)
    moving = np.clip(np.abs(velocity) / (0.03 * scene.width * perspective(depth) + 1e-6), 0, 1)
    graze = 0.25 * (moving < 0.3) * (1 - moving)  # heads go down when they stop
    bob = 0.04 * np.abs(np.sin(phase)) * moving
    altitude = np.zeros(n)
    if species.body_plan == "bird" and not flying:  # hops: short jumps between pecks
        bob = bob + 0.4 * (np.sin(phase / 2) > 0.85) * moving
    if flying:
        altitude = rng.uniform(4, 14) + 0.6 * np.sin(times * 9)
    path = {"x": x, "depth": depth, "unit": unit, "facing": facing, "phase": phase,
            "moving": moving, "graze": graze, "bob": bob, "sitting": sitting,
            "flying": flying, "altitude": altitude, "mode": mode}
    if lead is None:  # followers read the leader's track, extended back in time
        pad = np.arange(1, 3 * fps + 1) / fps
        start_velocity = velocity[0] if n > 1 else 0.0
        path.update(members=0, sitting=sitting,
                    times_ext=np.concatenate([times[0] - pad[::-1], times]),
                    x_ext=np.concatenate([x[0] - start_velocity * pad[::-1], x]))
    return path


def _steady_facing(facing: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Keep the last walking direction while standing still (no flicker when stopped)."""
    steady = facing.copy()
    current = facing[np.argmax(moving)] if moving.any() else facing[0]
    for index in range(len(facing)):
        if moving[index]:
            current = facing[index]
        steady[index] = current
    return steady


def visible_seconds(species: Species, path: dict, scene: Scene) -> float:
    """How long at least a quarter of the animal (or a quarter of the frame) is in view."""
    half_width_units, height_units = extent_units(species)
    half_width = half_width_units * path["unit"]
    top_offset = height_units * path["unit"]
    feet = ground_line(scene, path["depth"])
    if path["flying"]:
        feet = feet - path["altitude"] * path["unit"]
    left, right = path["x"] - half_width, path["x"] + half_width
    top, bottom = feet - top_offset, feet
    overlap = (np.clip(np.minimum(right, scene.width) - np.maximum(left, 0), 0, None)
               * np.clip(np.minimum(bottom, scene.height) - np.maximum(top, 0), 0, None))
    area = np.minimum((right - left) * (bottom - top), scene.width * scene.height)
    seen = (overlap >= 0.25 * area) & (overlap >= 12)
    return float(seen.sum()) / scene.fps


def plan_animals(rng, seed: int, clip: dict, scene: Scene, times: np.ndarray) -> list:
    """Paths for every individual of every species in the clip, far ones first."""
    animals = []
    for slot, name in enumerate(clip["species"]):
        species = _SPECIES_BY_NAME[name]
        members = int(rng.integers(species.group[0], species.group[1] + 1))
        lead = None
        for member in range(members):
            traits = individual_traits(seed, clip["visit"], slot, member, species)
            for _ in range(30):  # redraw until the animal is really seen
                path = plan_path(rng, species, traits, scene, times, lead,
                                 reach=0.7 if clip["night"] else 1.0)
                needed = MIN_VISIBLE_SECONDS if lead is None else 0.0
                clip_seconds = len(times) / scene.fps
                if visible_seconds(species, path, scene) >= min(needed, 0.8 * clip_seconds):
                    break
            else:  # the lead could not be placed in view: let it stand in the middle
                path = plan_path(np.random.default_rng([seed, 4, clip["index"], slot]),
                                 species, traits, scene, times, lead)
                path["x"] = np.full(len(times), scene.width * 0.5)
                path["depth"] = np.full(len(times), 0.5)
                path["unit"] = unit_pixels(species, traits, scene, path["depth"])
                path["flying"] = False
            if lead is None:
                lead = path
            animals.append((species, traits, path))
    animals.sort(key=lambda item: -float(np.mean(item[2]["depth"])))
    return animals


# ----------------------------------------------------------------------------- frames

def render_frames(clip: dict, seed: int):
    """Yields the clip's frames as uint8 RGB arrays (height, width, 3)."""
    scene = build_scene(seed, clip["camera"], clip["width"], clip["height"], clip["fps"])
    rng = np.random.default_rng([seed, 1, clip["index"]])
    n_frames, fps = clip["n_frames"], clip["fps"]
    times = np.arange(n_frames) / fps
    night = clip["night"]
    animals = plan_animals(rng, seed, clip, scene, times)
    if night:
        animals = [(species, infrared_traits(traits), path) for species, traits, path in animals]

    # Light: exposure follows the sun; clouds drift; the camera settles its exposure.
    hour = clip["hour"]
    daylight = float(np.clip(math.sin(math.pi * (hour - 6) / 12) * 1.6, 0.45, 1.0))
    exposure = daylight * rng.uniform(0.85, 1.12)
    cloud_amplitude, cloud_period = rng.uniform(0, 0.15), rng.uniform(2, 8)
    fleck_strength = 0.0 if night or rng.random() < 0.35 else rng.uniform(0.15, 0.6)
    settling = rng.uniform(0.2, 0.6) if rng.random() < 0.3 else 0.0
    wind = rng.choice([0.2, 0.6, 1.2, 2.5], p=[0.3, 0.35, 0.25, 0.1])
    sway_frequency, sway_phase = rng.uniform(0.3, 1.2), rng.uniform(0, 6.3)

    # Distractors that trigger cameras: a falling leaf by day, moths in the infrared flash.
    leaf = None
    if not night and rng.random() < 0.25:
        leaf = {"x": rng.uniform(0.1, 0.9) * scene.width, "start": rng.uniform(0, times[-1] + 1e-3),
                "fall": rng.uniform(0.1, 0.3) * scene.height,
                "size": rng.uniform(0.006, 0.015) * scene.width,
                "colour": tuple(float(c) for c in rng.uniform([120, 90, 30], [200, 160, 70]))}
    moths = []
    if night and rng.random() < 0.35:
        for _ in range(int(rng.integers(1, 4))):
            centre = rng.uniform([0.2, 0.2], [0.8, 0.8]) * [scene.width, scene.height]
            moths.append({"centre": centre,
                          "radius": rng.uniform(0.05, 0.2) * scene.width,
                          "speed": rng.uniform(4, 10), "phase": rng.uniform(0, 6.3)})

    noise_sigma = scene.noise_level * (2.2 if night else 1.0) * rng.uniform(0.8, 1.2)
    # A few noise frames drawn once and reused: fresh noise every frame costs more than the
    # rest of the frame, and nobody can tell the difference after x264.
    noise = rng.normal(0, noise_sigma, (4, scene.height, scene.width))
    noise_up = np.clip(noise, 0, 255).astype(np.uint8)
    noise_down = np.clip(-noise, 0, 255).astype(np.uint8)
    if not night:
        noise_up, noise_down = (np.repeat(bank[..., None], 3, axis=3)
                                for bank in (noise_up, noise_down))
    grey_weights = np.array([[0.2, 0.55, 0.25]], np.float32)  # foliage is bright in infrared
    y0, y1, x0, x1 = scene.leaves_box
    sway_pixels = wind * 0.01 * scene.width
    for frame_index, t in enumerate(times):
        brightness = 1.0 + settling * math.exp(-t / 0.4)
        if night:
            brightness *= 1.0 + rng.normal(0, 0.025)  # infrared flicker
        else:
            clouds = 1 + cloud_amplitude * math.sin(2 * math.pi * t / cloud_period)
            brightness *= exposure * clouds
        sway = math.sin(2 * math.pi * sway_frequency * t + sway_phase) \
            + 0.4 * math.sin(2 * math.pi * 2.7 * sway_frequency * t)
        if fleck_strength > 0:
            offset = int(8 + 6 * sway * min(1.0, wind))
            window = scene.flecks[offset:offset + scene.height // 4, 8:8 + scene.width // 4]
            flecks = cv2.resize(window, (scene.width, scene.height), interpolation=cv2.INTER_LINEAR)
            light = brightness * (1 + fleck_strength * flecks)
            frame = cv2.convertScaleAbs(scene.background * light[..., None])
        else:
            frame = cv2.convertScaleAbs(scene.background, alpha=brightness)

        eyes = []
        for species, traits, path in animals:
            eyes += draw_animal(frame, species, traits, path, frame_index, t, scene, night)
        if leaf is not None and t >= leaf["start"]:
            age = t - leaf["start"]
            centre = (int((leaf["x"] + 0.03 * scene.width * math.sin(age * 4)) * 16),
                      int((0.05 * scene.height + leaf["fall"] * age) * 16))
            cv2.ellipse(frame, centre, (int(leaf["size"] * 16), int(leaf["size"] * 8)),
                        age * 200, 0, 360, leaf["colour"], -1, cv2.LINE_AA, 4)

        # Near-lens leaves, shifted and turned by the wind, in front of everything.
        matrix = cv2.getRotationMatrix2D((0.0 if x0 == 0 else float(x1 - x0), 0.0),
                                         sway * wind * 1.5, 1.0)
        matrix[0, 2] += sway * sway_pixels
        matrix[1, 2] += 0.3 * sway * sway_pixels
        alpha = cv2.warpAffine(scene.leaves_alpha, matrix, (x1 - x0, y1 - y0))[..., None]
        colour = cv2.warpAffine(scene.leaves, matrix, (x1 - x0, y1 - y0))
        region = frame[y0:y1, x0:x1].astype(np.float32)
        blended = region * (1 - alpha) + colour * np.float32(brightness) * alpha
        frame[y0:y1, x0:x1] = blended.astype(np.uint8)

        if night:
            grey = cv2.transform(frame, grey_weights).reshape(frame.shape[:2])
            grey = cv2.convertScaleAbs(grey * scene.infrared_gain)
            pick = rng.integers(4)
            grey = cv2.subtract(cv2.add(grey, noise_up[pick]), noise_down[pick])
            for eye_x, eye_y, radius in eyes:  # eye-shine: the tapetum returns the flash
                centre = (int(eye_x * 16), int(eye_y * 16))
                cv2.circle(grey, centre, int(radius * 2.2 * 16), 170, -1, cv2.LINE_AA, 4)
                cv2.circle(grey, centre, int(radius * 16), 255, -1, cv2.LINE_AA, 4)
            for moth in moths:
                angle = moth["speed"] * t + moth["phase"]
                moth_x = moth["centre"][0] + moth["radius"] * math.cos(angle)
                moth_y = moth["centre"][1] + 0.6 * moth["radius"] * math.sin(1.7 * angle)
                cv2.circle(grey, (int(moth_x * 16), int(moth_y * 16)),
                           int(max(1.0, 0.006 * scene.width) * 16), 245, -1, cv2.LINE_AA, 4)
            frame = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
        else:
            pick = rng.integers(4)
            frame = cv2.subtract(cv2.add(frame, noise_up[pick]), noise_down[pick])

        if clip["banner"]:
            draw_banner(frame, clip, t)
        yield frame


def draw_animal(frame, species, traits, path, frame_index, t, scene, night) -> list:
    """Draws one animal in one frame; returns its eyes as (x, y, radius) for eye-shine."""
    unit = float(path["unit"][frame_index])
    x = float(path["x"][frame_index])
    half_width = extent_units(species)[0]
    if x + half_width * unit < -2 or x - half_width * unit > scene.width + 2:
        return []
    feet = float(ground_line(scene, path["depth"][frame_index]))
    pose = {key: float(path[key][frame_index])
            for key in ("phase", "moving", "graze", "bob", "altitude")}
    pose.update(sitting=path["sitting"], flying=path["flying"], time=t)
    if not night and not path["flying"]:  # a soft shadow on the ground
        _draw_shadow(frame, x, feet, half_width * unit, 0.12 * unit)
    pen = Pen(frame, x, feet, unit, float(path["facing"][frame_index]))
    eyes = _DRAWERS[species.body_plan](pen, species, traits, pose)
    radius = float(np.clip(0.07 * species.head * unit, 1.0, 0.008 * scene.width))
    return [(eye_x, eye_y, radius) for eye_x, eye_y in eyes]


def _draw_shadow(frame, x, y, half_width, half_height):
    x0, x1 = int(max(0, x - half_width)), int(min(frame.shape[1], x + half_width))
    y0, y1 = int(max(0, y - half_height)), int(min(frame.shape[0], y + half_height))
    if x1 - x0 < 2 or y1 - y0 < 1:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.ellipse(mask, (int(x - x0), int(y - y0)), (int(half_width), max(1, int(half_height))),
                0, 0, 360, 0.35, -1, cv2.LINE_AA)
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (region * (1 - mask[..., None])).astype(np.uint8)


def draw_banner(frame, clip: dict, t: float):
    """The date/time strip some trap models burn into every frame."""
    height, width = frame.shape[:2]
    bar = max(10, height // 18)
    frame[height - bar:] = 0
    stamp = (datetime.datetime.fromisoformat(clip["capture_time"])
             + datetime.timedelta(seconds=int(t)))
    text = f"{clip['site'].upper()}  {stamp:%Y-%m-%d %H:%M:%S}  {24 - int(clip['night']) * 5}C"
    cv2.putText(frame, text, (4, height - bar // 4), cv2.FONT_HERSHEY_SIMPLEX, bar / 30,
                (235, 235, 235), 1, cv2.LINE_AA)


# ----------------------------------------------------------------------------- sound

def shaped_noise(rng, n, rate, low, high, tilt=0.0) -> np.ndarray:
    """Noise limited to [low, high] Hz with a 1/f**tilt slope, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n, 1.0 / rate)
    in_band = (frequencies >= low) & (frequencies <= high)
    gain = in_band / np.maximum(frequencies, 1.0) ** (tilt / 2)
    samples = np.fft.irfft(spectrum * gain, n)
    return samples / (np.sqrt(np.mean(samples ** 2)) + 1e-12)


def slow_envelope(rng, n, rate, changes_per_second, depth=0.8) -> np.ndarray:
    points = max(2, int(n / rate * changes_per_second) + 2)
    knots = rng.random(points)
    return (1 - depth) + depth * np.interp(np.linspace(0, points - 1, n), np.arange(points), knots)


def fade(n, rate, attack=0.01, release=0.03) -> np.ndarray:
    """Linear fade-in and fade-out, so no sound starts or stops with a click."""
    envelope = np.ones(n)
    attack_samples = min(n, max(1, int(attack * rate)))
    release_samples = min(n, max(1, int(release * rate)))
    envelope[:attack_samples] *= np.linspace(0, 1, attack_samples)
    envelope[n - release_samples:] *= np.linspace(1, 0, release_samples)
    return envelope


def harmonic_tone(frequencies: np.ndarray, rate, amplitudes) -> np.ndarray:
    """Sum of harmonics of a pitch curve; harmonics above Nyquist are left out."""
    phase = 2 * np.pi * np.cumsum(frequencies) / rate
    sound = np.zeros(len(frequencies))
    for number, amplitude in enumerate(amplitudes, start=1):
        if amplitude and number * frequencies.max() < rate / 2 * 0.95:
            sound += amplitude * np.sin(number * phase)
    return sound


def sweep(start_hz, end_hz, seconds, rate, amplitudes=(1.0,)) -> np.ndarray:
    n = max(2, int(seconds * rate))
    return harmonic_tone(np.linspace(start_hz, end_hz, n), rate, amplitudes) * fade(n, rate)


def sequence(rng, rate, pieces, gaps) -> np.ndarray:
    """Concatenates sounds with silent gaps (seconds) between them."""
    parts = []
    for piece, gap in zip(pieces, gaps):
        parts += [piece, np.zeros(int(gap * rate))]
    return np.concatenate(parts) if parts else np.zeros(1)


def call_chirps(rng, rate):
    count = int(rng.integers(3, 9))
    high, low = rng.uniform(3500, 5000), rng.uniform(2000, 3000)
    pieces = [sweep(high, low, rng.uniform(0.05, 0.12), rate) if rng.random() < 0.7
              else sweep(low, high, rng.uniform(0.04, 0.08), rate) for _ in range(count)]
    return sequence(rng, rate, pieces, rng.uniform(0.05, 0.2, count))


def call_rumble(rng, rate):
    n = int(rng.uniform(1.2, 2.5) * rate)
    pitch = rng.uniform(45, 70) * (1 + 0.1 * np.sin(np.linspace(0, np.pi, n)))
    sound = harmonic_tone(pitch, rate, (1, 0.8, 0.6, 0.45, 0.3, 0.2, 0.1)) * fade(n, rate, 0.2, 0.4)
    if rng.random() < 0.35:  # a trumpet
        m = int(rng.uniform(0.5, 0.9) * rate)
        pitch = rng.uniform(420, 520) * (1 + 0.05 * np.sin(np.linspace(0, 20, m)))
        trumpet = harmonic_tone(pitch, rate, (1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15,
                                              0.1, 0.05))
        trumpet = (trumpet + 0.4 * shaped_noise(rng, m, rate, 400, 4000)) * fade(m, rate, 0.05, 0.2)
        sound = np.concatenate([sound, np.zeros(int(0.2 * rate)), 1.3 * trumpet])
    return sound


def call_pant_hoot(rng, rate):
    introduction = [sweep(330, 380, 0.15, rate, (1, 0.5, 0.25))
                    for _ in range(int(rng.integers(3, 6)))]
    build_count = int(rng.integers(5, 9))
    build_up = [sweep(400 + 40 * k, 450 + 40 * k, 0.09, rate, (1, 0.6, 0.3))
                for k in range(build_count)]  # hoots rise in pitch and come faster
    climax = []
    for _ in range(int(rng.integers(1, 4))):
        m = int(rng.uniform(0.3, 0.5) * rate)
        pitch = np.linspace(rng.uniform(900, 1100), rng.uniform(1100, 1350), m)
        scream = harmonic_tone(pitch, rate, (1, 0.7, 0.5, 0.3))
        scream = scream + 0.3 * shaped_noise(rng, m, rate, 800, 5000)
        climax.append(scream * fade(m, rate, 0.03, 0.1))
    pieces = introduction + build_up + climax
    gaps = [0.25] * len(introduction) + [0.08] * len(build_up) + [0.12] * len(climax)
    return sequence(rng, rate, pieces, gaps)


_VOWEL_FORMANTS = [(800, 1200), (300, 2300), (300, 800), (500, 1900), (500, 900)]


def call_speech(rng, rate):
    """Syllables of voiced harmonics shaped by vowel formants, with consonant hiss."""
    speaker_pitch = rng.uniform(100, 220)
    pieces, gaps = [], []
    for syllable in range(int(rng.integers(4, 13))):
        if rng.random() < 0.6:
            m = int(rng.uniform(0.03, 0.06) * rate)
            pieces.append(0.3 * shaped_noise(rng, m, rate, 2000, 6000) * fade(m, rate, 0.005, 0.01))
            gaps.append(0.0)
        m = int(rng.uniform(0.12, 0.25) * rate)
        pitch = speaker_pitch * np.linspace(1.05, 0.92, m) * (1 - 0.01 * syllable)
        first, second = _VOWEL_FORMANTS[rng.integers(len(_VOWEL_FORMANTS))]
        harmonics = np.arange(1, int(4000 / speaker_pitch))
        amplitudes = (np.exp(-((harmonics * speaker_pitch - first) / 150) ** 2)
                      + 0.6 * np.exp(-((harmonics * speaker_pitch - second) / 200) ** 2) + 0.02)
        pieces.append(harmonic_tone(pitch, rate, amplitudes) * fade(m, rate, 0.02, 0.04))
        gaps.append(rng.uniform(0.02, 0.3) if rng.random() < 0.8 else rng.uniform(0.3, 0.6))
    return sequence(rng, rate, pieces, gaps)


def call_whistle(rng, rate):
    count = int(rng.integers(1, 4))
    pieces = [sweep(rng.uniform(1900, 2500), rng.uniform(1500, 1800), rng.uniform(0.15, 0.3), rate)
              for _ in range(count)]
    return sequence(rng, rate, pieces, rng.uniform(0.3, 0.8, count))


def call_bark(rng, rate):
    count = int(rng.integers(1, 5))
    pieces = []
    for _ in range(count):
        m = int(0.12 * rate)
        pieces.append((harmonic_tone(np.full(m, rng.uniform(550, 700)), rate, (1, 0.7, 0.5, 0.3))
                       + 0.8 * shaped_noise(rng, m, rate, 500, 2500)) * fade(m, rate, 0.005, 0.06))
    return sequence(rng, rate, pieces, rng.uniform(0.4, 1.0, count))


def call_pyow(rng, rate):
    count = int(rng.integers(3, 8))
    pieces = [sweep(rng.uniform(1600, 1900), rng.uniform(600, 800), 0.18, rate, (1, 0.5, 0.25))
              for _ in range(count)]
    return sequence(rng, rate, pieces, rng.uniform(0.2, 0.35, count))


def call_grunt(rng, rate):
    count = int(rng.integers(4, 11))
    pieces = []
    for _ in range(count):
        m = int(rng.uniform(0.08, 0.15) * rate)
        pitch = np.full(m, rng.uniform(110, 160))
        pieces.append((harmonic_tone(pitch, rate, [1 / k for k in range(1, 11)])
                       + 0.6 * shaped_noise(rng, m, rate, 100, 1000)) * fade(m, rate, 0.01, 0.05))
    return sequence(rng, rate, pieces, rng.uniform(0.1, 0.5, count))


def call_sawing(rng, rate):
    count = int(rng.integers(6, 13))
    interval = rng.uniform(0.35, 0.45)
    pieces = []
    for number in range(count):
        m = int(0.2 * rate)
        voice = harmonic_tone(np.full(m, rng.uniform(90, 130)), rate,
                              [1 / k ** 0.7 for k in range(1, 16)])
        rasp = (voice + 1.2 * shaped_noise(rng, m, rate, 150, 2500)) * fade(m, rate, 0.02, 0.08)
        pieces.append(rasp * (1.0 if number % 2 else 0.6))
    return sequence(rng, rate, pieces, np.full(count, interval - 0.2))


def call_squeak(rng, rate):
    count = int(rng.integers(2, 7))
    pieces = [sweep(rng.uniform(6000, 7200), rng.uniform(6200, 7500), rng.uniform(0.03, 0.07), rate)
              for _ in range(count)]
    return sequence(rng, rate, pieces, rng.uniform(0.05, 0.3, count))


def _clicks(rng, rate, seconds, per_second, low, high, tone_hz=0.0):
    n = int(seconds * rate)
    sound = np.zeros(n)
    click_length = int(0.004 * rate)
    for start in np.sort(rng.uniform(0, seconds - 0.01, int(seconds * per_second))):
        index = int(start * rate)
        decay = np.exp(-np.linspace(0, 5, click_length))
        click = shaped_noise(rng, click_length, rate, low, high) * decay
        if tone_hz:
            click += np.sin(2 * np.pi * tone_hz * np.arange(click_length) / rate)
        sound[index:index + click_length] += click[: n - index]
    return sound


def call_rattle(rng, rate):
    return _clicks(rng, rate, rng.uniform(0.6, 1.2), rng.uniform(20, 35), 2000, 7000)


def call_chatter(rng, rate):
    return _clicks(rng, rate, rng.uniform(0.4, 1.0), rng.uniform(12, 18), 1500, 4000, tone_hz=2500)


_CALLS = {"chirps": call_chirps, "rumble": call_rumble, "pant_hoot": call_pant_hoot,
         "speech": call_speech, "whistle": call_whistle, "bark": call_bark, "pyow": call_pyow,
         "grunt": call_grunt, "sawing": call_sawing, "squeak": call_squeak, "rattle": call_rattle,
         "chatter": call_chatter}


def make_audio(clip: dict, seed: int, rate: int) -> np.ndarray:
    """Wind, insects and hiss, plus the calls planned for the clip; float in [-1, 1]."""
    rng = np.random.default_rng([seed, 5, clip["index"]])
    n = int(round(clip["n_frames"] / clip["fps"] * rate))
    wind = shaped_noise(rng, n, rate, 20, 500, tilt=1.5) * slow_envelope(rng, n, rate, 1.5)
    track = rng.uniform(0.01, 0.12) * wind + 0.004 * rng.standard_normal(n)
    seconds = np.arange(n) / rate
    if clip["night"]:  # crickets: pulsed tones a few times a second
        pitch, chirp_rate = rng.uniform(4000, 4800), rng.uniform(2, 4)
        gate = ((seconds * chirp_rate) % 1 < 0.25) * (np.sin(2 * np.pi * 30 * seconds) > 0)
        track += rng.uniform(0.01, 0.06) * gate * np.sin(2 * np.pi * pitch * seconds)
        if rng.random() < 0.7:  # the infrared filter clicks as recording starts
            m = int(0.01 * rate)
            track[:m] += 0.3 * rng.standard_normal(m) * np.exp(-np.linspace(0, 6, m))
    elif rng.random() < 0.5:  # cicadas: buzzing band noise
        pulsing = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(25, 50) * seconds)
        buzz = shaped_noise(rng, n, rate, 3500, 5000) * pulsing
        track += rng.uniform(0.005, 0.05) * buzz * slow_envelope(rng, n, rate, 0.5, 0.5)
    for name in clip["calls"]:
        species_name = "bird" if name == "bird (off-screen)" else name
        sound = _CALLS[_SPECIES_BY_NAME[species_name].call](rng, rate)
        sound = sound / (np.abs(sound).max() + 1e-9)
        gain = rng.uniform(0.05, 0.15) if name.endswith("(off-screen)") else rng.uniform(0.15, 0.6)
        start = int(rng.uniform(0, max(1, n - len(sound) * 0.5)))
        piece = sound[: n - start]
        track[start:start + len(piece)] += gain * piece
    peak = np.abs(track).max()
    return track * (0.9 / peak) if peak > 0.9 else track


# ----------------------------------------------------------------------------- encoding

def encode_video(frames, clip: dict, audio_path: Path | None, destination: Path,
                 x264_threads: int) -> None:
    """Pipes the frames into ffmpeg (H.264) and muxes the wav as mono AAC.

    Frames go in as yuv420p (converted here by OpenCV, BT.601 limited range like ffmpeg's
    own default): half the bytes of RGB, and the encoder process does no colour conversion.
    """
    command = [tool_path("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{clip['width']}x{clip['height']}",
               "-framerate", str(clip["fps"]), "-i", "pipe:0"]
    if audio_path is not None:
        command += ["-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac",
                    "-b:a", "32k", "-ac", "1", "-ar", str(AUDIO_SAMPLE_RATE)]
    else:
        command += ["-an"]
    command += ["-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", "yuv420p",
                "-threads", str(x264_threads),
                "-metadata", f"creation_time={clip['capture_time']}.000000Z",
                "-movflags", "+faststart", str(destination)]
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
            encode_video(render_frames(clip, seed), clip, audio_path, temporary_video, x264_threads)
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
