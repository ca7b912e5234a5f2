"""The portable stack: what r80 needs of a trained data folder to predict new clips (the
level-1 fold models, the stackers, the ensemble, r10/r12's settings, the training clips'
camera examples and neighbour tables), exported to a folder or a .tar.gz with a manifest of
content digests, and opened and checked again on another machine. An archive made
elsewhere is untrusted: it is extracted with tarfile's "data" filter, every name in its
manifest must stay inside the stack, and every file must match its digest.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import pandas as pd

from a00_common import git_commit, logger
from a00_io import (atomic_path, file_digest, read_frames, read_json, read_stamp, read_stamp_inputs,
                    write_csv, write_json)


STACK_FORMAT = "trapstack-stack/2"  # 2: by-fold tables as .npz, frames as JPEG
# packages whose model files a stack holds: another major.minor may read them differently
CHECKED_PACKAGES = ("keras", "tensorflow", "lightgbm", "xgboost")
RECORDED_PACKAGES = CHECKED_PACKAGES + ("numpy", "pandas", "scikit-learn", "av",
                                        "opencv-python-headless", "librosa")


class StackError(SystemExit):
    """A stack that cannot be used here; its message is one line naming the mismatch."""

    def __init__(self, message: str):
        super().__init__(message if message.startswith("r80:") else f"r80: {message}")


def read_stack_json(path: Path):
    """A JSON file of a stack, or None: never deleted, whatever it holds (the chain's
    read_json deletes an unreadable cache file; a stack is the user's)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def plain_name(name, folder: Path, what: str) -> str:
    """A model, stacker or file name of a manifest, refused unless it stays inside the stack."""
    text = str(name)
    parts = Path(text).parts
    if not text or Path(text).is_absolute() or ".." in parts or "\\" in text:
        raise StackError(f"{folder}/manifest.json: {what} {text!r} leads outside the stack")
    return text


def package_versions() -> dict:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


# ----------------------------------------------------------------------------- export

def export_stack(source: Path, destination: Path) -> Path:
    """Writes the stack of the trained data folder `source` to `destination` (a folder, or
    an archive when the name ends in .tar.gz). An existing folder is replaced only when it
    is an earlier stack (it has a manifest.json)."""
    if destination.is_dir() and not (destination / "manifest.json").is_file():
        raise StackError(f"--export {destination}: a folder that is not a stack; give a new "
                         f"folder or a .tar.gz name")
    if destination.is_file() and not destination.name.endswith((".tar.gz", ".tgz")):
        raise StackError(f"--export {destination}: a file that is not a stack archive")
    from a03_models import get_spec, required_extractors
    ensemble = read_json(source / "reports" / "ensemble.json")
    if ensemble is None:
        raise StackError(f"{source}: no reports/ensemble.json: run the chain (run_all.py) "
                         f"before exporting its stack")
    classes = [str(c) for c in pd.read_csv(source / "input" / "train_labels.csv",
                                           nrows=0).columns if c != "filename"]
    stackers, level1 = {}, []
    if ensemble["level"] == "level2":
        for name in ensemble["members"]:
            config = read_json(source / "models" / "level2" / name / "config.json") or {}
            if "fold_base_weights" not in config:
                raise StackError(f"{source}/models/level2/{name}/config.json has no fold blend "
                                 f"weights (made before stacks existed): rerun r50 --force")
            stackers[name] = config
            level1 += [m for m in config["level1_models"] if m not in level1]
    else:
        level1 = list(ensemble["members"])
    uses_neighbors = any(config["use_neighbors"] for config in stackers.values())
    neighbor_inputs = read_stamp_inputs(source / "predictions" / "neighbors_oof.csv")
    neighbor_models = sorted(neighbor_inputs.get("models", {})) if uses_neighbors else []
    if uses_neighbors and not neighbor_models:
        raise StackError(f"{source}/predictions/neighbors_oof.csv has no stamp: rerun r48")
    r10 = read_json(source / "cache" / "preprocess_settings.json")
    if r10 is None:
        raise StackError(f"{source}/cache/preprocess_settings.json is missing (made before "
                         f"stacks existed): rerun r10_preprocess_data.py")
    r11 = read_stamp_inputs(source / "metadata" / "metadata.csv").get("settings")
    if r11 is None:
        raise StackError(f"{source}/metadata/metadata.csv has no stamp: rerun r11")

    with tempfile.TemporaryDirectory(dir=destination.parent if destination.parent.exists()
                                     else None) as temporary:
        stack = Path(temporary) / "stack"
        models, predict_settings, extractors = {}, {}, set()
        for name in dict.fromkeys(level1 + neighbor_models):
            folder = source / "models" / name
            config = read_json(folder / "config.json")
            test_info = read_json(source / "predictions" / "level1" / f"{name}_test.json") or {}
            if config is None or "settings" not in test_info:
                raise StackError(f"{source}: model {name} has no trained config or no r40 "
                                 f"settings: train it (r21), then r40_process_test.py --model "
                                 f"{name} --force")
            _copy_files(folder, stack / "models" / name,
                        ["config.json"] + [p.name for p in sorted(folder.glob("fold*"))
                                           if not p.name.endswith("_history.csv")])
            models[name] = {"config_hash": config["config_hash"],
                            "folds": test_info["folds"]}
            predict_settings[name] = test_info["settings"]
            extractors.update(required_extractors(get_spec(name)))
        if stackers:  # every stacker reads the tabular features
            extractors.update(["hashes", "audio_logmel"])
        for name, config in stackers.items():
            folder = source / "models" / "level2" / name
            _copy_files(folder, stack / "models" / "level2" / name,
                        ["config.json"] + [p.name for p in sorted(folder.glob("fold*"))]
                        + (["site_counts.csv"] if config["settings"].get("site_features")
                           else []))
        for name in neighbor_models:
            _copy_files(source / "predictions" / "level1", stack / "level1",
                        [f"{name}_train_by_fold.npz"])
        extractor_configs = {}
        for name in sorted(extractors):
            config = read_json(source / "features" / name / "config.json")
            if config is None:
                raise StackError(f"{source}/features/{name}/config.json is missing: rerun r12")
            if config.get("weights", "default") != "default":
                raise StackError(f"{source}: extractor {name} uses the weights file "
                                 f"{config['weights']}, which a stack does not carry")
            extractor_configs[name] = {key: value for key, value in config.items()
                                       if key != "statistic_names"}
            _copy_files(source / "features" / name, stack / "features" / name, ["config.json"])
        folds = pd.read_csv(source / "metadata" / "folds.csv", dtype={"filename": str})
        metadata = pd.read_csv(source / "metadata" / "metadata.csv", dtype=str,
                               keep_default_na=False).set_index("filename")
        training = pd.DataFrame({
            "filename": folds["filename"], "fold": folds["fold"],
            "camera": metadata.loc[folds["filename"], "camera"].to_numpy(),
            "capture_time": metadata.loc[folds["filename"], "capture_time"].to_numpy()})
        write_csv(training, stack / "training_clips.csv")
        write_csv(training_camera_examples(source, folds["filename"], metadata),
                  stack / "camera_signatures.csv")
        write_json(ensemble, stack / "ensemble.json")
        files = {str(p.relative_to(stack)): file_digest(p)
                 for p in sorted(stack.rglob("*")) if p.is_file()}
        manifest = {
            "format": STACK_FORMAT, "classes": classes,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "packages": package_versions(),
            "ensemble": {"level": ensemble["level"], "members": ensemble["members"]},
            "models": models, "stackers": sorted(stackers),
            "neighbors": {"models": neighbor_models,
                          "settings": neighbor_inputs.get("settings", {})} if uses_neighbors
            else None,
            "extractors": extractor_configs,
            "settings": {"r10": r10["settings"], "r11": r11, "r40": predict_settings},
            "inputs": {"train_labels": file_digest(source / "input" / "train_labels.csv"),
                       "folds": file_digest(source / "metadata" / "folds.csv"),
                       "level1": {name: read_stamp(source / "predictions" / "level1" /
                                                   f"{name}_oof.csv") for name in models}},
            "files": files}
        write_json(manifest, stack / "manifest.json")
        if destination.name.endswith((".tar.gz", ".tgz")):
            destination.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(destination) as archive_path:
                with tarfile.open(archive_path, "w:gz") as archive:
                    for path in sorted(stack.rglob("*")):
                        if path.is_file():
                            archive.add(path, arcname=str(path.relative_to(stack)))
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            previous = destination.with_name(f".{destination.name}.previous")
            if destination.exists():
                # an earlier stack is replaced; anything else is the user's and stays
                os.replace(destination, previous)
            shutil.move(str(stack), str(destination))
            shutil.rmtree(previous, ignore_errors=True)
    size = destination.stat().st_size if destination.is_file() else \
        sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())
    logger.info("r80: stack of %s (%d level-1 model(s), %d stacker(s), %d classes) -> %s "
                "(%.1f MB)", source, len(models), len(stackers), len(classes), destination,
                size / 1e6)
    return destination


def training_camera_examples(source: Path, train_names, metadata: pd.DataFrame) -> pd.DataFrame:
    """Background signatures of up to 20 training clips per camera, with the camera's
    format: new clips that come without a camera name join a training camera they look
    like, so their neighbour and site features see that camera's training clips."""
    from a07_cameras import FORMAT_COLUMNS, camera_examples, signature
    index = pd.read_csv(source / "cache" / "preprocess_index.csv", dtype=str,
                        keep_default_na=False).set_index("filename")
    table = metadata.loc[list(train_names)].reset_index()
    table = table[table["camera"] != ""]
    table = table[table["filename"].map(lambda name: bool(index.at[name, "frames_path"])
                                        if name in index.index else False)]
    chosen = table.sort_values("filename").groupby("camera").head(20)
    frames = {name: read_frames(source / "cache" / index.at[name, "frames_path"])
              for name in chosen["filename"]}
    signatures = {name: signature(clip) for name, clip in frames.items() if clip is not None}
    chosen = chosen[chosen["filename"].isin(signatures)]
    for column in FORMAT_COLUMNS[:3]:
        chosen[column] = pd.to_numeric(chosen[column], errors="coerce")
    return camera_examples(chosen, signatures)


def _copy_files(source: Path, destination: Path, names: list[str]) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(source / name, destination / name)


# ----------------------------------------------------------------------------- loading

def open_stack(stack: Path, work: Path) -> Path:
    """The folder of a usable stack: an exported folder as it is, an archive extracted
    (safely) under `work`, a trained data folder exported under `work`. Checked."""
    if stack.is_file():
        if not hasattr(tarfile, "data_filter"):
            raise StackError(f"{stack}: this Python's tarfile has no safe extraction filter "
                             f"(PEP 706, Python 3.11.4+): extract the stack yourself and give "
                             f"the folder")
        if not tarfile.is_tarfile(stack):
            raise StackError(f"{stack}: not a stack (neither a folder nor a .tar.gz archive)")
        folder = work / "stack"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        try:
            with tarfile.open(stack) as archive:
                # "data": no absolute names, no '..', no links out, no devices
                archive.extractall(folder, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise StackError(f"{stack}: not a usable stack archive ({error})") from None
    elif (stack / "manifest.json").is_file():
        folder = stack
    elif (stack / "input" / "train_labels.csv").is_file():
        folder = export_stack(stack, work / "stack")
    else:
        raise StackError(f"{stack}: not a stack (no manifest.json) nor a trained data folder "
                         f"(no input/train_labels.csv)")
    return folder


def check_stack(folder: Path) -> dict:
    """The manifest, after checking it against the files and this machine; one line else."""
    manifest = read_stack_json(folder / "manifest.json")
    if not isinstance(manifest, dict):
        raise StackError(f"{folder}/manifest.json is missing or unreadable")
    if manifest.get("format") != STACK_FORMAT:
        raise StackError(f"{folder}: stack format {manifest.get('format')!r}, this trapstack "
                         f"reads {STACK_FORMAT!r}")
    for name in [*manifest["files"], *manifest["models"], *manifest["stackers"],
                 *((manifest.get("neighbors") or {}).get("models") or [])]:
        plain_name(name, folder, "name")
    for name, digest in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise StackError(f"{folder}: {name} is missing (listed in manifest.json)")
        if file_digest(path) != digest:
            raise StackError(f"{folder}: {name} differs from the file manifest.json lists")
    classes = manifest["classes"]
    for name in manifest["models"]:
        trained = (read_stack_json(folder / "models" / name / "config.json") or {}).get("classes")
        if trained is not None and list(trained) != list(classes):
            raise StackError(f"{folder}: model {name} was trained on other classes than the "
                             f"manifest lists ({len(trained)} vs {len(classes)})")
    from a02_backbones import parse_extractor
    for name in manifest["extractors"]:
        if name not in ("hashes", "audio_logmel") and parse_extractor(name) is None:
            raise StackError(f"{folder}: extractor {name} is unknown to this trapstack")
    here = package_versions()
    for package in CHECKED_PACKAGES:
        made, have = manifest["packages"].get(package), here.get(package)
        if made and have and made.split(".")[:2] != have.split(".")[:2]:
            raise StackError(f"{folder}: made with {package} {made}, this machine has {have}; "
                             f"install the versions of requirements.txt the stack was made with")
    return manifest
