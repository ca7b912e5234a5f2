"""r11 — the metadata table of every video, and the cross-validation folds.

Reads   input/train_labels.csv, input/submission_format.csv, input/video_metadata.csv
        (optional), cache/preprocess_index.csv and cache/probe/*.json (from r10)
Writes  metadata/metadata.csv   one row per video (train then test): size_bytes, width,
                                height, fps, n_frames, duration, codec, bit_rate, rotation,
                                has_audio, audio stats, capture_time (+ its source), camera
                                (+ camera_source: given, inferred or none), sequence, readable
        metadata/folds.csv      filename, fold, sequence — train videos only
Cost    seconds: reads small JSON files and r10's index; inferring cameras reads each clip's
        frames once more (~16 ms a clip), only when some clip has no named camera.

    python r11_get_metadata_table.py
    python r11_get_metadata_table.py --n_folds 5 --sequence_gap_minutes 10 --force

Folds: multi-label stratified K-fold (iterative stratification) over *visits*: videos of one
camera less than SEQUENCE_GAP_MINUTES apart are one visit and share a fold, so a model is
never validated on clips of an animal it saw a minute earlier. The `sequence` column of
video_metadata.csv, when given, defines the visits instead. The folds are a function of the
train rows alone (names, labels, visits among train videos) and the settings: a rerun and a
from-scratch run give the same folds, and test clips never move them. Adding train clips or
changing a label may move existing videos between folds (see PIPELINE.md: why not stable).

Capture time: video_metadata.csv, else the container's creation_time tag; a file's
modification time only with --trust_file_mtime true (it is usually the copy time).
Camera: video_metadata.csv's camera (or site), else one inferred from what the clip shows
and carries (a07_cameras: its background signature, within clips of one frame size, frame
rate and codec; train clips placed first, so test clips never change a train clip's camera
and the folds stay a function of the train rows); `camera_source` says which.
Rerun: redone when either CSV, the site table, r10's index (video contents) or a probe
changed, or a setting; otherwise "[up to date]".
"""
from __future__ import annotations

import datetime as datetime_module
import os

import numpy as np
import pandas as pd

from a00_common import (InputError, cache_dir, input_dir, load_train_labels, load_video_table,
                        logger, metadata_dir, parse_config, probe_cache_path, run_main, video_path)
from a00_io import (digest_text, file_digest, log_outcome, optional_file_digest, outdated_reason,
                    read_frames, read_json, write_csv, write_stamp)

N_FOLDS = 5                    # cross-validation folds for every level
FOLD_SEED = 42                 # seed of the stratified split
SEQUENCE_GAP_MINUTES = 10.0    # same camera, closer in time than this → same visit/fold
# A file's modification time is usually when it was copied, not when it was filmed: by
# default it is not a capture time (no neighbour or hour-of-day feature uses it)
TRUST_FILE_MTIME = False
INFER_CAMERAS = True           # clips without a named camera get one from their background
CAMERA_DISTANCE = 0.7          # cosine distance of background signatures that cuts a camera
                               # (bench/results/camera_inference.csv: the demo's distances)
CAMERA_ANCHORS = ""            # CSV of known cameras' clip signatures that clips may join
                               # (r80 passes its stack's, a07_cameras.camera_examples)


def read_video_metadata(filenames: pd.Series) -> pd.DataFrame:
    """The optional user table: capture_time, camera (or site) and sequence per video."""
    path = input_dir() / "video_metadata.csv"
    result = pd.DataFrame({"filename": filenames})
    if not path.exists():
        return result
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "filename" not in table.columns:
        raise InputError(f"{path}: no 'filename' column")
    if table["filename"].duplicated().any():
        repeated = table["filename"][table["filename"].duplicated()].iloc[0]
        raise InputError(f"{path}: filename {repeated!r} appears more than once")
    table = table.rename(columns={"site": "camera"}) if "camera" not in table.columns else table
    keep = ["filename"] + [c for c in ("capture_time", "camera", "sequence") if c in table.columns]
    merged = result.merge(table[keep], on="filename", how="left")
    if "capture_time" in merged.columns:
        parsed = pd.to_datetime(merged["capture_time"].replace("", None), errors="coerce",
                                utc=True)
        bad = merged["capture_time"].fillna("").ne("") & parsed.isna()
        if bad.any():
            raise InputError(f"{path}: capture_time {merged['capture_time'][bad].iloc[0]!r} is "
                             f"not a date-time (use ISO 8601, e.g. 2017-03-01T14:05:00)")
        merged["capture_time"] = parsed
    return merged


def audio_columns(entry: pd.Series) -> dict:
    """The loudness statistics r10 measured on a clip's audio, from its index row (text)."""
    from a02_hash_audio import AUDIO_STATISTIC_NAMES
    return {name: entry[name] == "True" if name == "audio_silent" else float(entry[name])
            for name in AUDIO_STATISTIC_NAMES if entry.get(name, "") != ""}


def build_metadata(videos: pd.DataFrame) -> pd.DataFrame:
    index_path = cache_dir() / "preprocess_index.csv"
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} is missing: run r10_preprocess_data.py first")
    index = pd.read_csv(index_path, dtype=str, keep_default_na=False).set_index("filename")
    rows = []
    for filename, split in zip(videos["filename"], videos["split"]):
        probe = read_json(probe_cache_path(filename)) or {}
        summary = probe.get("summary", {})
        entry = index.loc[filename] if filename in index.index else None
        row = {"filename": filename, "split": split, **summary,
               "readable": bool(entry is not None and entry["frames_path"] != ""),
               "frames_decoded": int(entry["frames_decoded"]) if entry is not None else 0,
               "probe_error": probe.get("error", "")}
        path = video_path(filename)
        if not row.get("size_bytes"):
            row["size_bytes"] = path.stat().st_size if path.is_file() else 0
        row["file_mtime"] = (datetime_module.datetime.fromtimestamp(
            os.path.getmtime(path), datetime_module.timezone.utc) if path.is_file() else pd.NaT)
        if entry is not None and entry["audio_digest"]:
            row.update(audio_columns(entry))
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in ("width", "height", "fps", "n_frames", "duration", "bit_rate", "rotation",
                   "audio_sample_rate", "audio_channels", "audio_seconds", "audio_rms_mean",
                   "audio_rms_std", "audio_rms_max", "audio_peak", "audio_zero_crossing_rate"):
        if column not in table.columns:
            table[column] = np.nan
        table[column] = pd.to_numeric(table[column], errors="coerce")
    for column in ("has_audio", "audio_silent"):
        table[column] = table.get(column, pd.Series(False, index=table.index)).fillna(False) \
            .astype(bool)
    for column in ("codec", "audio_codec", "creation_time", "pixel_format"):
        table[column] = table.get(column, pd.Series("", index=table.index)).fillna("")

    user = read_video_metadata(table["filename"])
    tag_time = pd.to_datetime(table["creation_time"].replace("", None), errors="coerce", utc=True)
    mtime = pd.to_datetime(table["file_mtime"], utc=True)
    user_time = user["capture_time"] if "capture_time" in user.columns else \
        pd.Series(pd.NaT, index=table.index, dtype="datetime64[ns, UTC]")
    if not TRUST_FILE_MTIME:
        mtime = pd.Series(pd.NaT, index=table.index, dtype="datetime64[ns, UTC]")
    table["capture_time"] = user_time.fillna(tag_time).fillna(mtime)
    table["capture_time_source"] = np.select(
        [user_time.notna(), tag_time.notna(), mtime.notna()],
        ["video_metadata", "creation_time_tag", "file_mtime"], "none")
    table["camera"] = user["camera"].fillna("").to_numpy() if "camera" in user.columns else ""
    table["camera_source"] = np.where(table["camera"] != "", "given", "none")
    if INFER_CAMERAS and (table["camera"] == "").any():
        inferred = infer_cameras(table, index)
        table["camera"], table["camera_source"] = inferred["camera"].to_numpy(), \
            inferred["camera_source"].to_numpy()
    table["camera_code"] = camera_codes(table["camera"])
    user_sequence = user["sequence"].fillna("").to_numpy() if "sequence" in user.columns \
        else np.full(len(table), "")
    table["user_sequence"] = user_sequence
    table["sequence"] = assign_sequences(table)
    return table.drop(columns=["file_mtime", "creation_time"])


def infer_cameras(table: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """camera and camera_source for every row: the named camera, or one inferred from the
    clip's background and format (a07_cameras), or none for a clip without frames."""
    from a07_cameras import format_keys, infer_cameras as infer, signature
    # only clips of a format that has an unnamed clip can be compared with one
    keys = format_keys(table)
    wanted = {key for key, camera in zip(keys, table["camera"]) if camera == ""}
    signatures = {}
    for filename, key in zip(table["filename"], keys):
        path = index.at[filename, "frames_path"] if filename in index.index else ""
        if path and key in wanted:
            frames = read_frames(cache_dir() / path)
            if frames is not None:  # else r10 redoes it on its next run
                signatures[filename] = signature(frames)
    known = None
    if CAMERA_ANCHORS:
        try:
            known = pd.read_csv(CAMERA_ANCHORS, dtype={"camera": str, "codec": str},
                                keep_default_na=False)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise InputError(f"{CAMERA_ANCHORS}: not a readable camera table ({error})") \
                from None
    return infer(table[["filename", "split", "camera", "width", "height", "fps", "codec"]],
                 signatures, CAMERA_DISTANCE, known)


def camera_codes(cameras: pd.Series) -> np.ndarray:
    """A number per camera name, the same for every row wherever it sits (train or test) and
    whichever other cameras exist: derived from the name alone, so new clips of a new camera
    move no other row's code (a tree splits on it like on any categorical code). NaN when
    no camera is known."""
    import hashlib
    codes = [float(int(hashlib.blake2b(name.encode(), digest_size=3).hexdigest(), 16))
             if name else np.nan for name in cameras.fillna("").astype(str)]
    return np.asarray(codes, dtype=np.float64)


def assign_sequences(table: pd.DataFrame) -> np.ndarray:
    """Visit ids of the rows of `table`: the user's `sequence` where given, else the same
    camera within SEQUENCE_GAP_MINUTES of capture time (trusted times only), else the video
    alone."""
    given = (table["user_sequence"] if "user_sequence" in table.columns
             else pd.Series("", index=table.index)).fillna("").astype(str).reset_index(drop=True)
    frame = table.reset_index(drop=True)
    sequences = np.where(given.ne(""), "seq:" + given,
                         "video:" + frame["filename"].astype(str)).astype(object)
    trusted = ["video_metadata", "creation_time_tag"] + (["file_mtime"] if TRUST_FILE_MTIME
                                                         else [])
    known = given.eq("") & frame["capture_time_source"].isin(trusted) & \
        frame["camera"].ne("") & frame["capture_time"].notna()
    if not known.any():
        return sequences
    gap = pd.Timedelta(minutes=SEQUENCE_GAP_MINUTES)
    for camera, group in frame[known].sort_values(["capture_time", "filename"]).groupby(
            "camera"):
        new_visit = group["capture_time"].diff().gt(gap) | group["capture_time"].diff().isna()
        visit_number = new_visit.cumsum()
        sequences[group.index.to_numpy()] = [f"{camera}:{v}" for v in visit_number]
    return sequences


def make_folds(train_labels: pd.DataFrame, classes: list[str],
               sequences: pd.Series) -> pd.DataFrame:
    """Multi-label stratified folds over visits; every train video exactly once."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
    table = train_labels[["filename"] + classes].copy()
    table["sequence"] = sequences.to_numpy()
    groups = table.groupby("sequence", sort=True)[classes].max()
    if len(groups) < N_FOLDS:
        raise InputError(f"{input_dir() / 'train_labels.csv'}: only {len(groups)} independent "
                         f"visit(s) for {N_FOLDS} folds; add videos or lower --n_folds")
    splitter = MultilabelStratifiedKFold(n_splits=N_FOLDS, shuffle=True,
                                         random_state=FOLD_SEED)
    group_fold = pd.Series(-1, index=groups.index)
    for fold, (_, validation) in enumerate(splitter.split(groups.to_numpy(), groups.to_numpy())):
        group_fold.iloc[validation] = fold
    table["fold"] = table["sequence"].map(group_fold).astype(int)
    return table[["filename", "fold", "sequence"]]


def stage_inputs(settings: dict) -> dict:
    """What metadata.csv and folds.csv are made from: both tables, the site table, r10's
    index (each video's content digests), every probe, and the settings."""
    index_path = cache_dir() / "preprocess_index.csv"
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} is missing: run r10_preprocess_data.py first")
    index = pd.read_csv(index_path, dtype=str, keep_default_na=False)
    probes = [optional_file_digest(probe_cache_path(name)) for name in index["filename"]]
    inputs = {"train_labels": file_digest(input_dir() / "train_labels.csv"),
              "submission_format": file_digest(input_dir() / "submission_format.csv"),
              "video_metadata": optional_file_digest(input_dir() / "video_metadata.csv"),
              "preprocess_index": file_digest(index_path), "probes": digest_text(probes),
              "settings": settings,
              "camera_anchors": optional_file_digest(CAMERA_ANCHORS) if CAMERA_ANCHORS else ""}
    if TRUST_FILE_MTIME:  # then the files' modification times are inputs too
        inputs["mtimes"] = digest_text([os.path.getmtime(video_path(name))
                                        if video_path(name).is_file() else None
                                        for name in index["filename"]])
    return inputs


def main() -> None:
    args = parse_config(globals(), __doc__)
    metadata_path = metadata_dir() / "metadata.csv"
    folds_path = metadata_dir() / "folds.csv"
    inputs = stage_inputs(args.config)
    reason = outdated_reason([metadata_path, folds_path], inputs, args.force)
    log_outcome("r11 metadata and folds", reason)
    if reason is None:
        return
    videos, classes = load_video_table()
    metadata = build_metadata(videos)
    write_csv(metadata, metadata_path)
    sources = metadata["capture_time_source"].value_counts().to_dict()
    logger.info("r11: metadata of %d videos (%d unreadable) -> %s; capture times from %s%s",
                len(metadata), (~metadata["readable"]).sum(), metadata_path,
                ", ".join(f"{key} {value}" for key, value in sorted(sources.items())),
                "" if TRUST_FILE_MTIME else " (file modification times are not used: "
                                            "--trust_file_mtime true to use them)")
    labels, _ = load_train_labels(require_rows=False)
    # visits among the train videos alone: test clips added between them never move a
    # train video's fold (so they retrain nothing)
    train = metadata.set_index("filename").loc[labels["filename"]].reset_index()
    # no train rows when r80 prepares new clips: metadata only, no folds
    folds = make_folds(labels, classes, pd.Series(assign_sequences(train))) if len(labels) \
        else pd.DataFrame(columns=["filename", "fold", "sequence"])
    write_csv(folds, folds_path)
    write_stamp([metadata_path, folds_path], inputs)
    logger.info("r11: %d folds over %d videos in %d visits -> %s", N_FOLDS, len(folds),
                folds["sequence"].nunique(), folds_path)


if __name__ == "__main__":
    run_main(main)
