"""r80 — predict new videos with a trained stack; the result as a table and as Camtrap DP.

Reads   --videos DIR: the new clips (any container r10 reads, found recursively; names with
        spaces and non-ASCII letters are fine), or only those listed by --filepaths CSV;
        --stack: a trained data folder (default: the data folder), or a stack exported by
        --export (a folder or a .tar.gz); optional --metadata CSV (filename relative to
        DIR, capture_time, camera/site), --deployments CSV, --species CSV
Writes  OUT/predictions.csv        one row per video: filename (relative to DIR), one
                                   probability per class, the top TOP_CLASSES classes with
                                   their probabilities, blank_probability, status (ok,
                                   partial: …, failed: …) — a bad clip keeps its row
        OUT/camtrap_dp/            datapackage.json, deployments.csv, media.csv,
                                   observations.csv (Camtrap DP 1.0.2, a06_camtrap_dp)
        OUT/videos/                with --videos_out: the clips with the top classes drawn (r70)
        OUT/work/                  a data folder of the new clips (r10/r11/r12 caches, level-1
                                   and level-2 tables); a rerun reuses it clip by clip
        OUT/stack/                 the stack predicted with, when it was exported from a data
                                   folder or extracted from an archive (a stack folder is
                                   read where it is)
Cost    on 2 cores (the demo's stack, bench/bench_predict.py): ~0.19 s per clip (decode
        0.02, backbone 0.07, hashes and audio 0.02, fold models and stackers 0.07) plus ~23 s
        per run (TensorFlow's start-up, building the 50 fold models).

    python r80_predict.py --videos /media/sdcard --out /tmp/check1
    python r80_predict.py --videos new/ --stack stack.tar.gz --metadata new/times.csv
    python r80_predict.py --export stack.tar.gz            # the data folder's stack, portable

Only the inference side of the chain runs: r10, r11 and r12 on the new clips (in OUT/work,
never in the stack's input/), then every level-1 fold model (as r40), the neighbour features
(as r48 builds them for test rows: over the new clips together with the stack's training
clips, by capture time within a camera), the saved level-2 stackers (as r50 applies them)
and the ensemble's weights and clipping (as r60). Predicting a data folder's own test clips
therefore reproduces its submission.

A stack (`--export`) holds what prediction needs and nothing else: the level-1 fold models,
the level-2 fold stackers, the ensemble, the feature extractors' settings, the settings of
every stage, a table of the training clips (filename, fold, camera, capture time) with their
level-1 predictions by fold (for the neighbour features), and manifest.json (classes,
settings, file digests, package versions, commit). Loading one checks the manifest and
stops with one line naming a mismatch.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from a00_common import InputError, PROJECT_ROOT, data_dir, logger, parse_config, run_main
from a00_metric import prediction_frame, read_prediction_table
from a00_io import (digest_text, read_json, write_csv, write_fold_table, write_json,
                    write_text_if_changed)
from a06_stack import StackError, check_stack, export_stack, open_stack

VIDEO_EXTENSIONS = (".mp4", ".avi", ".asf", ".wmv", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg",
                    ".webm", ".3gp", ".mts", ".flv")   # case-insensitive; others are ignored
TOP_CLASSES = 3                # classes named per video in predictions.csv
MIN_PROBABILITY = 0.5          # Camtrap DP: a class at or above it is an observation
TITLE = "trapstack predictions"   # the Camtrap DP package's and project's title
CAMTRAP_DP = True              # write OUT/camtrap_dp/

DEFAULT_OUT = PROJECT_ROOT / "data" / "predict"


# ----------------------------------------------------------------------------- settings

def cli_arguments(settings: dict) -> list[str]:
    """A script's tunables as the `--key value` arguments that reproduce them."""
    arguments = []
    for key, value in sorted(settings.items()):
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = ",".join(str(item) for item in value)
        else:
            text = str(value)
        arguments += [f"--{key.lower()}", text]
    return arguments


# ----------------------------------------------------------------------------- the new clips

def find_videos(videos: Path, filepaths: Path | None, out: Path) -> list[str]:
    """Relative POSIX paths of the clips to predict, sorted (or as --filepaths lists them);
    nothing under `out` (r80's own output, when it sits inside the videos folder)."""
    if filepaths is not None:
        try:
            table = pd.read_csv(filepaths, dtype=str, keep_default_na=False)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise InputError(f"{filepaths}: not a readable CSV ({error})") from None
        column = next((c for c in ("filepath", "filename") if c in table.columns), None)
        if column is None:
            raise InputError(f"{filepaths}: needs a 'filepath' or 'filename' column")
        names = table[column].tolist()
        for name in names:
            if not name or Path(name).is_absolute() or ".." in Path(name).parts:
                raise InputError(f"{filepaths}: {name!r} must be a path inside {videos}")
        duplicated = pd.Series(names)[pd.Series(names).duplicated()]
        if len(duplicated):
            raise InputError(f"{filepaths}: {duplicated.iloc[0]!r} is listed twice")
        return names
    files = [p for p in videos.rglob("*") if p.is_file() and out not in p.parents
             and not any(part.startswith(".") for part in p.relative_to(videos).parts)]
    found = sorted(p.relative_to(videos).as_posix() for p in files
                   if p.suffix.lower() in VIDEO_EXTENSIONS)
    ignored = sum(1 for p in files if p.suffix.lower() not in VIDEO_EXTENSIONS)
    if ignored:
        logger.info("r80: %d file(s) in %s are not videos by their extension and are ignored",
                    ignored, videos)
    return found


def work_names(paths: list[str], taken: set[str]) -> list[str]:
    """Flat file names for the work folder's videos/ (the chain's names have no folders):
    the relative path with '__' for '/', made unique and distinct from the stack's
    training clips (neighbour features join both by name)."""
    names, used = [], set(taken)
    for path in paths:
        name = path.replace("/", "__")
        stem, suffix = os.path.splitext(name)
        counter = 1
        while name in used:
            counter += 1
            name = f"{stem} ({counter}){suffix}"
        used.add(name)
        names.append(name)
    return names


def read_user_metadata(path: Path | None, paths: list[str]) -> pd.DataFrame:
    """capture_time and camera per relative path from the user's table (by relative path,
    or by file name when that is unique)."""
    columns = ["capture_time", "camera"]
    if path is None:
        return pd.DataFrame(index=paths, columns=columns, dtype=object)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: not a readable CSV ({error})") from None
    if "filename" not in table.columns:
        raise InputError(f"{path}: needs a 'filename' column (the path relative to the videos "
                         f"folder)")
    if "camera" not in table.columns and "site" in table.columns:
        table = table.rename(columns={"site": "camera"})
    table = table.reindex(columns=["filename"] + columns).fillna("")
    by_path = table.drop_duplicates("filename").set_index("filename")
    by_name = table.assign(name=table["filename"].map(lambda n: Path(n).name)) \
        .drop_duplicates("name", keep=False).set_index("name")
    rows = []
    for relative in paths:
        if relative in by_path.index:
            rows.append(by_path.loc[relative, columns].tolist())
        elif Path(relative).name in by_name.index:
            rows.append(by_name.loc[Path(relative).name, columns].tolist())
        else:
            rows.append(["", ""])
    return pd.DataFrame(rows, index=paths, columns=columns)


def prepare_work_folder(work: Path, videos: Path, paths: list[str], names: list[str],
                        classes: list[str], metadata: pd.DataFrame) -> None:
    """The new clips as a data folder the chain's scripts read: links to the clips, an empty
    train_labels.csv, the clips as test rows, their camera and capture time."""
    folder = work / "input" / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = dict(zip(names, paths))
    for link in folder.iterdir():
        if link.name not in wanted or not link.is_symlink() or \
                os.readlink(link) != str((videos / wanted[link.name]).absolute()):
            link.unlink()
    for name, relative in wanted.items():
        link, target = folder / name, (videos / relative).absolute()
        if not link.is_symlink() and target.exists():
            link.symlink_to(target)
    header = pd.DataFrame(columns=["filename"] + classes)
    write_text_if_changed(header.to_csv(index=False), work / "input" / "train_labels.csv")
    rows = pd.DataFrame(0, index=range(len(names)), columns=classes)
    rows.insert(0, "filename", names)
    write_text_if_changed(rows.to_csv(index=False), work / "input" / "submission_format.csv")
    # the user's cameras only: the others are inferred by r11, which lets them join the
    # cameras the stack was trained on (a card's folder names say little about that)
    table = pd.DataFrame({"filename": names, "camera": metadata["camera"].fillna("").tolist(),
                          "capture_time": metadata["capture_time"].fillna("").tolist()})
    write_text_if_changed(table.to_csv(index=False), work / "input" / "video_metadata.csv")


def folder_deployment(relative: str) -> str:
    """A clip's Camtrap DP deployment when no table names its camera: the first folder
    under the videos folder ("" at the top)."""
    parts = Path(relative).parts
    return parts[0] if len(parts) > 1 else ""


def run_stage(script: str, work: Path, arguments: list[str], workers: int) -> float:
    """Runs one of the chain's scripts on the work folder; its failure stops r80."""
    started = time.perf_counter()
    command = [sys.executable, str(PROJECT_ROOT / script), "--data", str(work),
               "--workers", str(workers), *arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    log = work / "logs" / f"r80_{Path(script).stem}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise SystemExit(f"r80: {script} failed on the new clips: "
                         f"{lines[-1] if lines else 'no output'} (log: {log})")
    return time.perf_counter() - started


def prepare_clips(stack: Path, manifest: dict, work: Path, workers: int) -> dict:
    """r10, r11 and r12 on the new clips with the stack's settings; seconds per stage."""
    settings = manifest["settings"]
    anchors = stack / "camera_signatures.csv"
    seconds = {"r10": run_stage("r10_preprocess_data.py", work, cli_arguments(settings["r10"]),
                                workers),
               # clips without a camera name may join the cameras the stack was trained on
               "r11": run_stage("r11_get_metadata_table.py", work, cli_arguments(
                   # a stack from before inferred cameras was trained without them
                   {"INFER_CAMERAS": False, **settings["r11"],
                    "CAMERA_ANCHORS": str(anchors) if anchors.exists() else ""}), workers)}
    for name, config in manifest["extractors"].items():
        tunables = {key: value for key, value in config.items()
                    if key not in ("extractor", "frames_config", "hash", "weights", "frames")}
        seconds[f"r12 {name}"] = run_stage("r12_extract_features.py", work,
                                           ["--extractor", name, *cli_arguments(tunables)],
                                           workers)
        made = read_json(work / "features" / name / "config.json") or {}
        if made.get("hash") != config["hash"]:
            raise StackError(f"r80: the {name} features of the new clips were made with other "
                             f"settings than the stack's ({made.get('hash')} vs "
                             f"{config['hash']}): check r10/r12 settings")
    return seconds


# ----------------------------------------------------------------------------- predicting

def predict_clips(stack: Path, manifest: dict, work: Path, names: list[str]) -> np.ndarray:
    """The ensemble's probabilities for the work folder's clips, through the stack."""
    from a03_models import get_spec, prediction_tables
    from a05_stacking import (apply_ensemble, build_feature_table, build_features,
                              predict_saved_stacker)
    classes = manifest["classes"]
    level1 = work / "predictions" / "level1"
    for name, model in manifest["models"].items():
        config = read_json(stack / "models" / name / "config.json")
        tta = manifest["settings"]["r40"][name]
        by_fold, mean = prediction_tables(get_spec(name), names, stack / "models" / name,
                                          model["folds"], classes, config["settings"],
                                          tta["time_augmentation"], tta["flip_augmentation"])
        write_fold_table(by_fold, level1 / f"{name}_test_by_fold.npz")
        write_csv(mean, level1 / f"{name}_test.csv")
    training = pd.read_csv(stack / "training_clips.csv", dtype=str, keep_default_na=False)
    if manifest["neighbors"]:
        for name in manifest["neighbors"]["models"]:
            shutil.copy2(stack / "level1" / f"{name}_train_by_fold.npz",
                         level1 / f"{name}_train_by_fold.npz")
        settings = manifest["neighbors"]["settings"]
        metadata = pd.read_csv(work / "metadata" / "metadata.csv", dtype=str,
                               keep_default_na=False)[["filename", "camera", "capture_time"]]
        metadata = pd.concat([training[["filename", "camera", "capture_time"]], metadata],
                             ignore_index=True)
        folds = training[["filename", "fold"]].assign(fold=training["fold"].astype(int))
        _, test_table = build_features(training["filename"].tolist(), names, classes, folds,
                                       metadata, manifest["neighbors"]["models"],
                                       tuple(settings["NEIGHBOR_K"]), settings["PER_MODEL"])
        write_csv(test_table, work / "predictions" / "neighbors_test.csv")
    ensemble = read_json(stack / "ensemble.json")
    # the site columns of a stacker come from the new clips' cameras (by name)
    cameras = pd.read_csv(work / "metadata" / "metadata.csv", dtype=str, keep_default_na=False) \
        .set_index("filename").loc[names, "camera"].to_numpy()
    members = []
    for name in ensemble["members"]:
        if ensemble["level"] == "level2":
            folder = stack / "models" / "level2" / name
            config = read_json(folder / "config.json")
            weights = {fold: weights for fold, weights in config["fold_base_weights"]}
            tables = {fold: build_feature_table("test", names, classes,
                                                config["level1_models"], config["use_neighbors"],
                                                config["settings"].get("site_features", False),
                                                int(fold)) for fold in weights}
            columns = next(iter(tables.values())).names
            if columns != config["feature_names"]:
                raise StackError(f"r80: stacker {name} was fitted on other features than the "
                                 f"new clips have ({len(config['feature_names'])} vs "
                                 f"{len(columns)} columns)")
            probabilities = predict_saved_stacker(config["base"], folder, tables,
                                                  np.arange(len(names)), weights, classes,
                                                  config["settings"], cameras)
            path = work / "predictions" / "level2" / f"{name}_test.csv"
            write_csv(prediction_frame(names, classes, probabilities), path)
        else:
            path = level1 / f"{name}_test.csv"
        # read back as r60 reads the tables r50 wrote: the same numbers as the chain's
        members.append(read_prediction_table(path, names, classes)[classes]
                       .to_numpy(np.float64))
    return apply_ensemble(np.stack(members), ensemble, classes)


def clip_status(work: Path, names: list[str]) -> list[str]:
    """ok, partial: …, or failed: … per clip, from r10's index (probe and decode errors)."""
    index = pd.read_csv(work / "cache" / "preprocess_index.csv", dtype=str,
                        keep_default_na=False).set_index("filename")
    statuses = []
    for name in names:
        errors, partial = index.at[name, "errors"], index.at[name, "partial"]
        if errors and not index.at[name, "frames_path"]:
            statuses.append(f"failed: {errors}")
        elif errors or partial:
            statuses.append(f"partial: {partial or errors}")
        else:
            statuses.append("ok")
    return statuses


def prediction_table(paths: list[str], classes: list[str], probabilities: np.ndarray,
                     statuses: list[str]) -> pd.DataFrame:
    """predictions.csv: probabilities, the top classes, the blank probability, the status."""
    table = pd.DataFrame(probabilities, columns=classes)
    table.insert(0, "filename", paths)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :TOP_CLASSES]
    for rank in range(min(TOP_CLASSES, len(classes))):
        table[f"top{rank + 1}_class"] = [classes[i] for i in order[:, rank]]
        table[f"top{rank + 1}_probability"] = probabilities[np.arange(len(paths)), order[:, rank]]
    table["blank_probability"] = table["blank"] if "blank" in classes else np.nan
    table["status"] = statuses
    return table


def camtrap_clips(work: Path, videos: Path, paths: list[str], names: list[str],
                  statuses: list[str]) -> pd.DataFrame:
    """What the Camtrap DP tables need per clip: deployment, time, duration, status."""
    metadata = pd.read_csv(work / "metadata" / "metadata.csv", dtype=str,
                           keep_default_na=False).set_index("filename").loc[names]
    timestamps, sources = [], []
    for relative, time_text, source in zip(paths, metadata["capture_time"],
                                           metadata["capture_time_source"]):
        stamp = pd.to_datetime(time_text, errors="coerce", utc=True) if time_text else pd.NaT
        if pd.isna(stamp) and (videos / relative).is_file():
            # Camtrap DP needs a time; a copied card keeps its files' times more often than not
            stamp = pd.Timestamp(os.path.getmtime(videos / relative), unit="s", tz="UTC")
            source = "file modification time"
        timestamps.append(stamp)
        sources.append(source if not pd.isna(stamp) and source != "none" else "")
    fallback = videos.resolve().name or "videos"
    given = metadata["camera_source"].eq("given").to_numpy() \
        if "camera_source" in metadata.columns else metadata["camera"].ne("").to_numpy()
    deployments = [camera if named else (folder_deployment(relative) or camera or fallback)
                   for camera, named, relative in zip(metadata["camera"], given, paths)]
    return pd.DataFrame({
        "path": paths,
        "deployment": deployments,
        "timestamp": timestamps, "timestamp_source": sources,
        "duration": pd.to_numeric(metadata["duration"], errors="coerce").to_numpy(),
        "status": statuses})


def draw_videos(work: Path, out: Path, paths: list[str], names: list[str],
                classes: list[str], probabilities: np.ndarray, workers: int) -> None:
    """The clips with their top classes drawn (r70 on the work folder) in OUT/videos."""
    write_csv(prediction_frame(names, classes, probabilities),
              work / "predictions" / "ensemble_test.csv")
    run_stage("r70_create_videos.py", work, ["--split", "test", "--count", str(len(names))],
              workers)
    target = out / "videos"
    target.mkdir(parents=True, exist_ok=True)
    for relative, name in zip(paths, names):
        # r70's name for it: the file name, with .mp4 added unless it ends so
        flat = name.replace("\\", "__")
        drawn = work / "reports" / "videos" / (flat if flat.lower().endswith(".mp4")
                                               else f"{flat}.mp4")
        if drawn.is_file():
            destination = target / (relative if relative.lower().endswith(".mp4")
                                    else f"{relative}.mp4")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(drawn, destination)


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "videos": (None, "folder of the new videos (searched recursively)"),
        "stack": (None, "a trained data folder, an exported stack folder or a .tar.gz "
                        "(default: the data folder)"),
        "out": (None, "output folder (default: data/predict/<videos folder name>)"),
        "metadata": (None, "CSV: filename (relative to --videos), capture_time, camera or "
                           "site (default: <videos>/video_metadata.csv if present)"),
        "filepaths": (None, "CSV with a filepath (or filename) column: predict only these, "
                            "relative to --videos; a listed file that is absent gets a row"),
        "deployments": (None, "CSV: deploymentID (camera or folder name), latitude, "
                              "longitude and any other Camtrap DP deployment field"),
        "species": (None, "CSV: class, scientificName, observationType, taxonRank (default: "
                          "the Pri-matrix classes)"),
        "videos_out": (False, "also write the clips with the top classes drawn (r70)"),
        "export": (None, "write the data folder's stack to this folder or .tar.gz and exit")})
    if args.export:
        export_stack(data_dir(), Path(args.export).absolute())
        return
    if not args.videos:
        raise SystemExit("r80: give --videos DIR (the clips to predict), or --export PATH")
    videos = Path(args.videos).absolute()
    if not videos.is_dir():
        raise SystemExit(f"r80: --videos {videos}: not a folder")
    out = Path(args.out).absolute() if args.out else DEFAULT_OUT / videos.name
    work = out / "work"
    started = time.perf_counter()
    # the results of an earlier run go first: a run that fails must not leave them looking
    # current
    for old in ("predictions.csv", "timing.json"):
        (out / old).unlink(missing_ok=True)
    shutil.rmtree(out / "camtrap_dp", ignore_errors=True)
    stack = open_stack(Path(args.stack).absolute() if args.stack else data_dir(), out)
    manifest = check_stack(stack)
    classes = manifest["classes"]
    try:
        from a06_camtrap_dp import read_deployments, species_table
        species = species_table(Path(args.species) if args.species else None, classes) \
            if CAMTRAP_DP else None
        deployments = read_deployments(Path(args.deployments) if args.deployments else None)
        paths = find_videos(videos, Path(args.filepaths) if args.filepaths else None, out)
        metadata_path = Path(args.metadata) if args.metadata else \
            (videos / "video_metadata.csv" if (videos / "video_metadata.csv").is_file() else None)
        metadata = read_user_metadata(metadata_path, paths)
    except InputError as error:
        raise SystemExit(f"r80: {error}") from None
    if not paths:
        raise SystemExit(f"r80: no videos in {videos} (extensions: "
                         f"{', '.join(VIDEO_EXTENSIONS)})")
    training = pd.read_csv(stack / "training_clips.csv", dtype=str, keep_default_na=False)
    names = work_names(paths, set(training["filename"]))
    prepare_work_folder(work, videos, paths, names, classes, metadata)
    logger.info("r80: %d video(s) from %s, stack %s -> %s", len(paths), videos, stack, out)
    seconds = prepare_clips(stack, manifest, work, args.workers)
    os.environ["TRAPSTACK_DATA"] = str(work)
    predicting = time.perf_counter()
    probabilities = predict_clips(stack, manifest, work, names)
    seconds["models"] = time.perf_counter() - predicting
    statuses = clip_status(work, names)
    table = prediction_table(paths, classes, probabilities, statuses)
    write_csv(table, out / "predictions.csv")
    if CAMTRAP_DP:
        from a06_camtrap_dp import write_package
        clips = camtrap_clips(work, videos, paths, names, statuses)
        classified_by = f"trapstack {manifest['commit']} (stack " \
                        f"{digest_text(manifest['files'])[:12]})"
        for warning in write_package(out / "camtrap_dp", clips, probabilities, classes,
                                     species, deployments, MIN_PROBABILITY, classified_by,
                                     TITLE):
            logger.warning("r80: Camtrap DP: %s", warning)
    if args.videos_out:
        draw_videos(work, out, paths, names, classes, probabilities, args.workers)
    seconds["total"] = time.perf_counter() - started
    write_json({"videos": len(paths), "failed": sum(s.startswith("failed") for s in statuses),
                "seconds": seconds}, out / "timing.json")
    logger.info("r80: %d video(s), %d ok, %d partial, %d failed in %.1f s -> %s", len(paths),
                statuses.count("ok"), sum(s.startswith("partial") for s in statuses),
                sum(s.startswith("failed") for s in statuses), seconds["total"],
                out / "predictions.csv")


if __name__ == "__main__":
    run_main(main)
