"""bench_scale — time and private memory of the chain's stages at 5k, 20k and 80k videos.

For each size in SIZES it synthesises, in a temporary data folder, what r10 and r12 would
have written (no video is decoded): the input tables (the 24 Pri-matrix classes, multi-label,
blank common and a long tail of rare species; clips in visits of 1-5 triggers on
CLIPS_PER_CAMERA-sized cameras, test clips drawn one by one between labelled ones), every
clip's capture time and named camera (so r11 infers none), r10's probes, index and settings,
and r12's effnet_lite0, hashes and audio_logmel feature sets in their real shapes and dtypes.
effnet_lite0's steps and every set's statistics are written in full; the hashes' and
log-mel's per-step arrays, which no stage run here reads, are sparse files of their real
size (no disk is written for them).

Then each stage runs as its own process with `--data`, as run_all would start it:
  r11        metadata and N_FOLDS folds
  r21 HEAD   one Keras head, fold 0 only, HEAD_EPOCHS epoch(s), no warm-up
  r21 lgbm   lgbm_tabular, every fold (in one process), cheapened: at most GBM_ROUNDS
             rounds, early stopping after GBM_PATIENCE (r21's defaults: 400 and 30)
  r31, r40   lgbm_tabular only (the Keras head has one fold, and r31/r40 need every fold)
  r48        neighbour features from lgbm_tabular
  r50        STACKER only, cheapened: STACKER_ROUNDS rounds at most, early stopping after
             STACKER_PATIENCE (r50's defaults are 600 and 50, and it also fits xgb and mlp)
  r60        the ensemble and its report, cheapened: adversarial validation on at most
             ADVERSARIAL_MAX_ROWS rows a split with ADVERSARIAL_ROUNDS rounds (r60's
             defaults: 20000 and 100; both caps make that part's cost flat in N)
Each stage's wall time and the peak of its process tree's private memory are measured
(sampled every SAMPLE_SECONDS from /proc): RssAnon, the pages the job itself owns, and USS
(private pages, which also counts file pages of a memory map that only this job has
touched: those are the OS's cache, not the job's, so RssAnon is the measure). Its output is
the bytes of the files it wrote. The last line gives, per stage, the RSS ratio of the two
largest sizes (goal <= 1.2 where the output does not grow) and the extrapolation to
EXTRAPOLATE_TO clips: disk (per part the larger of this run's bytes per video and the demo
chain's in bench_storage.csv, which also has r10's frames, which this run lacks),
the largest job's memory (linear in N through the two largest sizes) and hours on 2 cores:
the stages as run here (linear likewise), r10 and r12 at the speeds of bench_features.csv
and r12's docstring, and the default r21 schedule if every Keras head cost what HEAD costs.

Reads   bench/results/bench_storage.csv, bench/results/bench_features.csv (if present)
Writes  bench/results/bench_scale.csv   one row per (size, stage) (appended);
        a data folder per size under WORK_DIR (default: the system's temporary folder),
        deleted after the size is done (4 GB at 80k videos)
Cost    17 minutes on 2 quiet CPU cores (load 1.1-2.6) with the default sizes, 11 of them at
        80k; 27-30 minutes where other jobs shared the cores (load 3.5-7).

    python bench/bench_scale.py
    python bench/bench_scale.py --sizes 1000,2000,4000
"""
from __future__ import annotations

import hashlib
import json
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

from a00_common import (PRIMATRIX_CLASSES, append_results, config_hash, features_dir,  # noqa: E402
                        input_dir, parse_config, probe_cache_path)
from a00_io import npy_writer, write_csv, write_json  # noqa: E402
from a01_video_io import summarize_probe  # noqa: E402

SIZES = (5000, 20000, 80000)   # videos (train + test) per data folder
TEST_SHARE = 0.2               # share of the clips in submission_format.csv
CLIPS_PER_CAMERA = 25          # cameras = videos / this (3200 at 80k)
N_FOLDS = 2                    # r11's folds (the chain's default is 5)
HEAD = "gru_effnet_lite0"      # the Keras head whose fold 0 is trained
HEAD_EPOCHS = 1
STACKER = "lgbm"               # the one r50 stacker fitted
STACKER_ROUNDS = 40            # r50's --lgbm_rounds and --xgb_rounds
STACKER_PATIENCE = 10          # r50's --early_stopping_rounds
GBM_ROUNDS = 60                # r21's --gbm_n_estimators (lgbm_tabular)
GBM_PATIENCE = 10              # r21's --gbm_early_stopping_rounds
ADVERSARIAL_ROUNDS = 30        # r60's --adversarial_rounds
ADVERSARIAL_MAX_ROWS = 5000    # r60's --adversarial_max_rows
SAMPLE_SECONDS = 0.05          # memory sampling interval
# OpenMP threads that sleep while they wait (LightGBM in r21, r50, r60): spinning ones, the
# default, made r50 twenty times slower on 2 cores that other jobs shared; "" = the default
OMP_WAIT_POLICY = "PASSIVE"
EXTRAPOLATE_TO = 200000        # clips the last line extrapolates to
CHAIN_KERAS_HEADS = 6          # Keras models of a default r21 run (a03_models: r21 MODELS)
CHAIN_FOLDS = 5                # r11's default folds
CHAIN_EPOCHS = 30              # r21's default EPOCHS
# r12's docstring, per video on 2 cores: hashes ~5 ms, audio_logmel ~20 ms, and a `_crop`
# extractor's motion crop ~4 ms a frame on top of effnet_lite0 (16 frames)
R12_OTHER_SECONDS_PER_VIDEO = 0.089
WORK_DIR = ""                  # where the data folders go ("" = the system's temp folder)
RESULTS = PROJECT_ROOT / "bench" / "results" / "bench_scale.csv"
STORAGE = PROJECT_ROOT / "bench" / "results" / "bench_storage.csv"
FEATURE_SPEEDS = PROJECT_ROOT / "bench" / "results" / "bench_features.csv"

STEPS, LITE0_DIMENSION, N_MELS, AUDIO_STEPS, HASH_BITS = 16, 1280, 64, 256, 128
# relative frequency of each species among visits with an animal: a few common ones and a
# long tail, as in camera-trap data (not Pri-matrix's exact counts)
_SPECIES_WEIGHTS = {
    "human": 20, "duiker": 12, "other (primate)": 8, "chimpanzee": 6, "elephant": 6,
    "small antelope": 5, "bird": 5, "hog": 4, "other (non-primate)": 4, "rodent": 3,
    "forest buffalo": 2, "porcupine": 2, "large ungulate": 1.5, "gorilla": 1, "leopard": 0.5,
    "small cat": 0.5, "pangolin": 0.4, "hippopotamus": 0.3, "cattle": 0.3, "reptile": 0.3,
    "hyena": 0.2, "wild dog": 0.1, "lion": 0.05}
_BLANK_VISIT_SHARE = 0.45      # visits with no animal (wind, light)
_LEFT_BLANK_SHARE = 0.25       # animal visits whose last trigger finds it gone
_TWO_SPECIES_SHARE = 0.05
_NO_AUDIO_SHARE = 0.15
_UNREADABLE_SHARE = 0.005      # clips r10 could not decode: no frames, missing features
_FORMATS = ((1920, 1080, 30), (1280, 720, 30), (640, 360, 15))   # per camera: w, h, fps
_CHUNK = 2000                  # rows written at a time


# ----------------------------------------------------------------------------- synthesis

def short_digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def draw_clips(count: int, random: np.random.Generator) -> pd.DataFrame:
    """`count` clips in visits: filename, camera, capture_time, split, width, height, fps,
    has_audio, readable and one 0/1 column per class."""
    species = list(_SPECIES_WEIGHTS)
    weights = np.array(list(_SPECIES_WEIGHTS.values()))
    cameras = max(1, count // CLIPS_PER_CAMERA)
    start = np.datetime64("2016-01-01T00:00:00")
    rows = []
    while len(rows) < count:
        camera = int(random.integers(cameras))
        shown = [] if random.random() < _BLANK_VISIT_SHARE else \
            list(random.choice(species, 1 + (random.random() < _TWO_SPECIES_SHARE),
                               replace=False, p=weights / weights.sum()))
        time = start + np.timedelta64(int(random.integers(365 * 86400)), "s")
        triggers = int(random.integers(1, 6))
        for trigger in range(triggers):
            gone = shown and trigger == triggers - 1 and triggers > 1 and \
                random.random() < _LEFT_BLANK_SHARE
            rows.append((camera, str(time), [] if gone else shown))
            time = time + np.timedelta64(int(random.integers(20, 90)), "s")
    rows = rows[:count]
    table = pd.DataFrame({"filename": [f"clip{i:06d}.mp4" for i in range(count)],
                          "camera": [f"camera{row[0]:05d}" for row in rows],
                          "capture_time": [row[1] for row in rows]})
    for name in PRIMATRIX_CLASSES:
        table[name] = [int(name in row[2] or (name == "blank" and not row[2])) for row in rows]
    table["split"] = np.where(random.random(count) < TEST_SHARE, "test", "train")
    formats = random.integers(len(_FORMATS), size=cameras)[[row[0] for row in rows]]
    table["width"], table["height"], table["fps"] = np.array(_FORMATS)[formats].T
    table["has_audio"] = random.random(count) >= _NO_AUDIO_SHARE
    table["readable"] = random.random(count) >= _UNREADABLE_SHARE
    # train then test, as r11 and the feature sets order them
    return pd.concat([table[table["split"] == "train"], table[table["split"] == "test"]],
                     ignore_index=True)


def write_inputs(clips: pd.DataFrame) -> None:
    """input/: both tables and video_metadata.csv (no videos: nothing here decodes one)."""
    train, test = clips[clips["split"] == "train"], clips[clips["split"] == "test"]
    write_csv(train[["filename"] + PRIMATRIX_CLASSES], input_dir() / "train_labels.csv")
    submission = test[["filename"]].copy()
    submission[PRIMATRIX_CLASSES] = 0.0
    write_csv(submission, input_dir() / "submission_format.csv")
    write_csv(clips[["filename", "capture_time", "camera"]], input_dir() / "video_metadata.csv")


def probe_of(clip) -> dict:
    """A probe in ffprobe's -show_format -show_streams layout, as r10 stores it."""
    duration, bit_rate = 15.0, 2_000_000 * clip.height // 1080
    streams = [{"index": 0, "codec_type": "video", "codec_name": "h264", "width": clip.width,
                "height": clip.height, "avg_frame_rate": f"{clip.fps}/1",
                "r_frame_rate": f"{clip.fps}/1", "duration": f"{duration:.6f}",
                "nb_frames": str(int(duration * clip.fps)), "pix_fmt": "yuv420p"}]
    if clip.has_audio:
        streams.append({"index": 1, "codec_type": "audio", "codec_name": "aac",
                        "sample_rate": "44100", "channels": 1, "duration": f"{duration:.6f}"})
    return {"streams": streams,
            "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "nb_streams": len(streams),
                       "size": str(int(duration * bit_rate / 8)), "duration": f"{duration:.6f}",
                       "bit_rate": str(bit_rate), "tags": {}}}


def write_r10_outputs(clips: pd.DataFrame, random: np.random.Generator) -> str:
    """r10's probes, preprocess_index.csv (with its audio statistics) and
    preprocess_settings.json; returns the frames config hash (no frames are written: no
    stage run here reads them)."""
    from a02_hash_audio import AUDIO_STATISTIC_NAMES
    settings = {"FRAMES_PER_VIDEO": STEPS, "FRAME_SIZE": 224, "synthetic": True}
    frames_config = config_hash(settings)
    for clip in clips.itertuples():
        probe = probe_of(clip)
        path = probe_cache_path(clip.filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        # plain writes: 80k atomic renames would cost more than every stage measured here
        path.write_text(json.dumps({"summary": summarize_probe(probe), "probe": probe}))
    names, readable, audio = clips["filename"], clips["readable"], clips["has_audio"]
    index = pd.DataFrame({
        "filename": names, "split": clips["split"],
        "source_digest": [short_digest("source/" + name) for name in names],
        "frames_path": np.where(readable, "frames/" + frames_config + "/" + names + ".jpg", ""),
        "frames_digest": np.where(readable, [short_digest("frames/" + name) for name in names],
                                  ""),
        "frames_decoded": np.where(readable, STEPS, 0),
        "audio_digest": np.where(audio, [short_digest("audio/" + name) for name in names], "")})
    for name in AUDIO_STATISTIC_NAMES:   # loudness statistics, as r10 measures them
        values = random.random(len(clips)) < 0.1 if name == "audio_silent" else \
            15.0 if name == "audio_seconds" else random.random(len(clips)) * 0.3
        index[name] = np.where(audio, pd.Series(values, index=clips.index).astype(str), "")
    index["errors"] = np.where(readable, "", "frames: synthetic")
    index["partial"], index["frames_config"] = "", frames_config
    write_csv(index, probe_cache_path("x").parents[1] / "preprocess_index.csv")
    write_json({"settings": settings, "frames_config": frames_config},
               probe_cache_path("x").parents[1] / "preprocess_settings.json")
    return frames_config


def write_feature_set(extractor: str, clips: pd.DataFrame, missing: np.ndarray,
                      steps_shape: tuple, steps_dtype, statistic_names: list[str],
                      dense_steps: bool, frames_config: str,
                      random: np.random.Generator) -> None:
    """features/<extractor>/ in r12's layout (features.npy, statistics.npy, index.csv,
    config.json); the steps are random (dense_steps) or a sparse file of the real size."""
    folder = features_dir(extractor)
    count = len(clips)
    block = random.standard_normal((_CHUNK, *steps_shape)).astype(steps_dtype) \
        if dense_steps else None
    statistics_block = random.standard_normal((_CHUNK, len(statistic_names))).astype(np.float32)
    with npy_writer(folder / "features.npy", steps_dtype, (count, *steps_shape)) as steps, \
            npy_writer(folder / "statistics.npy", np.float32,
                       (count, len(statistic_names))) as statistics:
        for start in range(0, count, _CHUNK):
            stop = min(start + _CHUNK, count)
            shift = start // _CHUNK % _CHUNK   # rows of one chunk differ from the next's
            if dense_steps:
                steps[start:stop] = np.roll(block, shift, axis=0)[:stop - start]
            statistics[start:stop] = np.roll(statistics_block, shift, axis=0)[:stop - start]
        statistics[np.flatnonzero(missing)] = 0.0
    names = clips["filename"]
    config = {"extractor": extractor, "frames_config": frames_config, "synthetic": True}
    write_csv(pd.DataFrame({"filename": names, "split": clips["split"], "row": np.arange(count),
                            "missing": missing.astype(int),
                            "input_digest": [short_digest(f"input/{extractor}/{name}")
                                             for name in names],
                            "digest": [short_digest(f"{extractor}/{name}") for name in names]}),
              folder / "index.csv")
    write_json({**config, "hash": config_hash(config), "statistic_names": statistic_names},
               folder / "config.json")


def synthesise(count: int) -> None:
    """The data folder of `count` videos (TRAPSTACK_DATA) up to r12's outputs."""
    from a02_hash_audio import HASH_STATISTIC_NAMES, logmel_statistic_names
    random = np.random.default_rng(count)
    clips = draw_clips(count, random)
    write_inputs(clips)
    frames_config = write_r10_outputs(clips, random)
    no_frames = ~clips["readable"].to_numpy()
    write_feature_set("effnet_lite0", clips, no_frames, (STEPS, LITE0_DIMENSION), np.float16,
                      [f"{kind}_{i}" for kind in ("mean", "max") for i in range(LITE0_DIMENSION)],
                      True, frames_config, random)
    write_feature_set("hashes", clips, no_frames, (STEPS, HASH_BITS), np.uint8,
                      list(HASH_STATISTIC_NAMES), False, frames_config, random)
    write_feature_set("audio_logmel", clips, ~clips["has_audio"].to_numpy(),
                      (AUDIO_STEPS, N_MELS), np.float16, logmel_statistic_names(N_MELS), False,
                      frames_config, random)


# ----------------------------------------------------------------------------- measuring

def process_tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc/<pid>/task/<tid>/children."""
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    pending += [int(child) for child in handle.read().split()]
        except OSError:  # it ended meanwhile
            continue
    return found


def private_kib(pid: int) -> tuple[int, int]:
    """(RssAnon, USS) of one process in KiB; (0, 0) once it is gone."""
    anonymous = unique = 0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    anonymous = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    unique += int(line.split()[1])
    except (OSError, ValueError):
        return 0, 0
    return anonymous, unique


def written_files(data: Path) -> dict:
    """{path: (size, mtime)} of the files the stages write (cache/ and input/ left out:
    none of the stages run here writes there)."""
    files = {}
    for folder, subfolders, names in os.walk(data):
        if Path(folder) == data:
            subfolders[:] = [name for name in subfolders if name not in ("cache", "input")]
        for name in names:
            status = os.stat(os.path.join(folder, name))
            files[os.path.join(folder, name)] = (status.st_size, status.st_mtime_ns)
    return files


def stage_environment() -> dict:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if OMP_WAIT_POLICY:
        environment["OMP_WAIT_POLICY"] = OMP_WAIT_POLICY
    return environment


def run_stage(script: str, arguments: list, data: Path, log: Path) -> dict:
    """Runs one stage; its wall time, peak private memory and output bytes."""
    command = [sys.executable, str(PROJECT_ROOT / script), "--data", str(data),
               *map(str, arguments)]
    before = written_files(data)
    peak_anonymous = peak_unique = 0
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   cwd=PROJECT_ROOT, env=stage_environment())
        while process.poll() is None:
            totals = [private_kib(pid) for pid in process_tree(process.pid)]
            peak_anonymous = max(peak_anonymous, sum(total[0] for total in totals))
            peak_unique = max(peak_unique, sum(total[1] for total in totals))
            time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - started
    after = written_files(data)
    output = sum(size for path, (size, mtime) in after.items()
                 if before.get(path) != (size, mtime))
    lines = log.read_text(errors="replace").strip().splitlines() or [""]
    return {"wall_seconds": round(seconds, 1), "peak_rss_anon_mib": round(peak_anonymous / 1024, 1),
            "peak_uss_mib": round(peak_unique / 1024, 1),
            "output_mib": round(output / 2**20, 2),
            # other jobs on the machine slow the stages down: the load says how much
            "load_1min": round(os.getloadavg()[0], 2),
            "status": "ok" if process.returncode == 0 else
            f"failed ({process.returncode}): {lines[-1][:300]}"}


def stages() -> list[tuple[str, str, list]]:
    """(stage, script, options) in the chain's order."""
    return [
        ("r11 metadata and folds", "r11_get_metadata_table.py", ["--n_folds", N_FOLDS]),
        (f"r21 {HEAD} fold 0", "r21_train_models.py",
         ["--model", HEAD, "--fold", 0, "--epochs", HEAD_EPOCHS, "--warmup_epochs", 0]),
        ("r21 lgbm_tabular all folds", "r21_train_models.py",
         ["--model", "lgbm_tabular", "--gbm_n_estimators", GBM_ROUNDS,
          "--gbm_early_stopping_rounds", GBM_PATIENCE]),
        ("r31 lgbm_tabular", "r31_validate.py", ["--model", "lgbm_tabular"]),
        ("r40 lgbm_tabular", "r40_process_test.py", ["--model", "lgbm_tabular"]),
        ("r48 neighbours", "r48_neighbor_features.py", []),
        (f"r50 {STACKER}", "r50_second_level.py",
         ["--stacker", STACKER, "--lgbm_rounds", STACKER_ROUNDS, "--xgb_rounds", STACKER_ROUNDS,
          "--early_stopping_rounds", STACKER_PATIENCE]),
        ("r60 ensemble", "r60_ensemble.py", ["--adversarial_rounds", ADVERSARIAL_ROUNDS,
                                             "--adversarial_max_rows", ADVERSARIAL_MAX_ROWS]),
    ]


# ----------------------------------------------------------------------------- disk parts

def storage_part(relative: str) -> tuple[str, bool]:
    """The part of bench_storage.csv a file belongs to, and whether it grows per video."""
    top, second = (relative.split("/") + ["", ""])[:2]
    if top == "cache":
        return {"probe": "r10 probes", "frames": "r10 frames",
                "preprocess": "r10 records"}.get(second, "r10 other"), True
    if top == "features":
        return f"r12 {second}", True
    if top == "predictions":
        return {"level1": "level-1 predictions", "level2": "level-2 predictions"}.get(
            second, "other predictions"), True
    if top in ("models", "reports", "submissions"):
        return top, False
    return ("r11 metadata", True) if top == "metadata" else (top, True)


def disk_parts(data: Path, videos: int) -> pd.DataFrame:
    """Bytes per part of everything in the data folder except input/ (the user's)."""
    rows = []
    for path in data.rglob("*"):
        relative = path.relative_to(data).as_posix()
        if path.is_file() and not relative.startswith("input/"):
            rows.append((*storage_part(relative), path.stat().st_size))
    table = pd.DataFrame(rows, columns=["part", "per_video", "bytes"])
    table = table.groupby(["part", "per_video"], as_index=False)["bytes"].sum()
    table["kb_per_video"] = table["bytes"] / 1024 / videos
    return table


def disk_extrapolation(parts: pd.DataFrame, clips: int) -> tuple[float, str]:
    """(GB for `clips` clips, the largest part) from this run's parts and the demo's."""
    combined = parts.copy()
    if STORAGE.exists():
        demo = pd.read_csv(STORAGE)
        demo = demo[demo["time"] == demo["time"].max()]
        combined = pd.concat([combined, demo[["part", "per_video", "bytes", "kb_per_video"]]])
    per_video = combined[combined["per_video"].astype(bool)].groupby("part")["kb_per_video"].max()
    fixed = combined[~combined["per_video"].astype(bool)].groupby("part")["bytes"].max()
    total = per_video.sum() * 1024 * clips + fixed.sum()
    largest = per_video.idxmax()
    return total / 1e9, f"{largest} {per_video[largest] * 1024 * clips / 1e9:.0f} GB"


# ----------------------------------------------------------------------------- summary

def linear_at(sizes, values, target: float) -> float:
    """The line through the last two (size, value) points, at `target`."""
    (x0, y0), (x1, y1) = (sizes[-2], values[-2]), (sizes[-1], values[-1])
    return y1 + (y1 - y0) / (x1 - x0) * (target - x1)


def r10_r12_seconds_per_video() -> tuple[float, str]:
    """Seconds per video on 2 cores of r10 and of r12's default extractors."""
    if not FEATURE_SPEEDS.exists():
        return np.nan, "no bench_features.csv"
    speeds = pd.read_csv(FEATURE_SPEEDS).groupby("measurement")["videos_per_second"].median()
    r10, lite0 = 1 / speeds.get("r10", np.nan), 1 / speeds.get("r12 effnet_lite0", np.nan)
    # effnet_lite0 and effnet_lite0_crop: the backbone twice
    return r10 + 2 * lite0 + R12_OTHER_SECONDS_PER_VIDEO, \
        f"r10 {r10 * 1000:.0f} ms + r12 {(2 * lite0 + R12_OTHER_SECONDS_PER_VIDEO):.2f} s"


def summary_line(table: pd.DataFrame, parts: pd.DataFrame) -> str:
    """Per stage the RSS ratio of the two largest sizes; the extrapolation."""
    sizes = sorted(table["videos"].unique())
    if len(sizes) < 2:
        return "one size only: no ratio, no extrapolation"
    small, large = sizes[-2], sizes[-1]
    ratios, memory, hours, keras_hours = [], {}, 0.0, np.nan
    for stage, rows in table.groupby("stage", sort=False):
        rows = rows.set_index("videos")
        if not {small, large} <= set(rows.index) or \
                not (rows.loc[[small, large], "status"] == "ok").all():
            ratios.append(f"{stage}: not measured")
            continue
        ratio = rows.at[large, "peak_rss_anon_mib"] / rows.at[small, "peak_rss_anon_mib"]
        grows = rows.at[large, "output_mib"] / max(rows.at[small, "output_mib"], 1e-6)
        verdict = "ok" if ratio <= 1.2 else "over"
        ratios.append(f"{stage} x{ratio:.2f} {verdict}" +
                      (f" (output grows x{grows:.2f})" if grows > 1.2 else ""))
        memory[stage] = linear_at([small, large], rows.loc[[small, large],
                                                           "peak_rss_anon_mib"].tolist(),
                                  EXTRAPOLATE_TO)
        seconds = linear_at([small, large], rows.loc[[small, large], "wall_seconds"].tolist(),
                            EXTRAPOLATE_TO)
        hours += seconds / 3600
        if stage.startswith(f"r21 {HEAD}"):
            # per training row and epoch, from the slope: the chain's schedule on 200k clips
            per_row = (rows.at[large, "wall_seconds"] - rows.at[small, "wall_seconds"]) / \
                ((large - small) * (1 - TEST_SHARE) * (1 - 1 / N_FOLDS) * HEAD_EPOCHS)
            keras_hours = per_row * EXTRAPOLATE_TO * (1 - TEST_SHARE) * (CHAIN_FOLDS - 1) * \
                CHAIN_EPOCHS * CHAIN_KERAS_HEADS / 3600
    per_video, source = r10_r12_seconds_per_video()
    decode_hours = per_video * EXTRAPOLATE_TO / 3600
    disk, largest_part = disk_extrapolation(parts, EXTRAPOLATE_TO)
    biggest = max(memory, key=memory.get) if memory else "none"
    return (f"RSS ratio {large}/{small}: " + "; ".join(ratios) +
            f" | {EXTRAPOLATE_TO} clips: disk {disk:.0f} GB (largest: {largest_part}); "
            f"largest job's memory {memory.get(biggest, np.nan) / 1024:.1f} GiB ({biggest}); "
            f"on 2 cores {hours:.1f} h for the stages as run here + {decode_hours:.0f} h for "
            f"r10/r12 ({source} per video) + {keras_hours:.0f} h for r21's Keras heads "
            f"({CHAIN_KERAS_HEADS} heads x {CHAIN_FOLDS} folds x {CHAIN_EPOCHS} epochs at "
            f"{HEAD}'s cost)")


def main() -> None:
    parse_config(globals(), __doc__)
    rows, parts = [], pd.DataFrame()
    started = time.perf_counter()
    for count in SIZES:
        root = Path(tempfile.mkdtemp(prefix=f"bench_scale_{count}_", dir=WORK_DIR or None))
        data = root / "data"
        os.environ["TRAPSTACK_DATA"] = str(data)
        try:
            made = time.perf_counter()
            synthesise(count)
            print(f"{count} videos: synthesised in {time.perf_counter() - made:.0f} s "
                  f"({root})", flush=True)
            failed = None
            for stage, script, arguments in stages():
                if failed:
                    result = {"status": f"skipped ({failed} failed)"}
                else:
                    result = run_stage(script, arguments, data, root / f"{script}.log")
                    failed = stage if result["status"] != "ok" else None
                row = {"videos": count, "stage": stage, **result}
                print(row, flush=True)
                rows.append(row)
            parts = disk_parts(data, count)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    table = pd.DataFrame(rows)
    append_results(table, RESULTS)
    print(table.to_string(index=False))
    print(f"total {time.perf_counter() - started:.0f} s")
    print(summary_line(table, parts))


if __name__ == "__main__":
    main()
