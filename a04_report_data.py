"""Report sections about the data and the run (a04_report): data set, cameras, failures, settings.

    from a04_report_data import failures_section
    html = failures_section()

Each builder returns its section's HTML, read from metadata/metadata.csv (through
a04_report.ReportInputs), cache/ (decoded frames, failures.csv) and the models' config.json.
"""
from __future__ import annotations

import base64
import json
from string import Template
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from a00_common import cache_dir, data_dir, git_commit, metadata_dir, models_dir
from a00_io import read_frames
from a04_figures import CAMERA_VIEW_WIDTH, camera_view_png
from a04_html import (Html, escaped, fill, html_table, key_value_table, missing, note,
                      relative_path, scroll)

if TYPE_CHECKING:
    from a04_report import ReportInputs

FAILURE_ROWS = 20               # rows of cache/failures.csv shown
CAMERAS_SHOWN = 40              # the cameras with most clips; the rest are counted

# Pieces of these sections. fill escapes every value but Html (HTML built here).
CAMERA_VIEW = Template('<img width="$width" alt="$alt" src="data:image/png;base64,$png">')
FAILURES_COUNT = Template("<p><b>$count</b> failure row(s) in $path$details.</p>")
SETTINGS = Template('<details><summary>Settings of the ensemble and of $count model(s) '
                    '(click to open)</summary>\n$blocks\n</details>'
                    '<p class="note">Git commit $commit; model configs from '
                    '$models/*/config.json.</p>')
SETTINGS_BLOCK = Template("<h3>$title</h3><pre>$settings</pre>")


# ----------------------------------------------------------------------------- sections

def data_set_section(inputs: ReportInputs) -> str:
    if inputs.metadata is None:
        return missing(inputs.problems.get("metadata", "No metadata table."))
    metadata = inputs.metadata
    facts = [("videos in metadata", str(len(metadata)))]
    if "split" in metadata.columns:
        counts = metadata["split"].value_counts()
        facts.append(("train / test", f"{counts.get('train', 0)} / {counts.get('test', 0)}"))
    if "readable" in metadata.columns:
        unreadable = int((~metadata["readable"].astype(str).str.lower().isin(
            ["true", "1", "1.0"])).sum())
        facts.append(("unreadable", str(unreadable)))
    if "duration" in metadata.columns:
        duration = pd.to_numeric(metadata["duration"], errors="coerce").dropna()
        if len(duration):
            facts.append(("duration (s)", f"median {duration.median():.1f}, range "
                                          f"{duration.min():.1f}–{duration.max():.1f}, total "
                                          f"{duration.sum() / 60:.1f} min"))
    if {"width", "height"} <= set(metadata.columns):
        sizes = (metadata["width"].astype(str).str.replace(".0", "", regex=False) + "×"
                 + metadata["height"].astype(str).str.replace(".0", "", regex=False))
        facts.append(("frame sizes", ", ".join(f"{size} ({count})" for size, count
                                               in sizes.value_counts().head(5).items())))
    if "fps" in metadata.columns:
        fps = pd.to_numeric(metadata["fps"], errors="coerce").dropna().round(2)
        facts.append(("frame rates", ", ".join(f"{rate:g} ({count})" for rate, count
                                               in fps.value_counts().head(5).items())))
    if "has_audio" in metadata.columns:
        with_audio = int(metadata["has_audio"].astype(str).str.lower().isin(["true", "1"]).sum())
        facts.append(("with audio", f"{with_audio} ({with_audio / max(len(metadata), 1):.0%})"))
    for column in ("camera", "site"):
        if column in metadata.columns:
            facts.append((f"{column}s", str(metadata[column].nunique())))
            break
    if "capture_time" in metadata.columns:
        times = pd.to_datetime(metadata["capture_time"], errors="coerce", utc=True).dropna()
        if len(times):
            facts.append(("capture times", f"{times.min():%Y-%m-%d} to {times.max():%Y-%m-%d} "
                                           f"({len(times)} known)"))
    if "capture_time_source" in metadata.columns:
        # which clock each clip's time came from: a file's modification time is a capture
        # time only when the user said so (r11 --trust_file_mtime true)
        sources = metadata["capture_time_source"].fillna("none").astype(str) \
            .replace("", "none").value_counts()
        text = ", ".join(f"{name} {count}" for name, count in sources.items())
        if "file_mtime" not in sources.index:
            text += " (file modification times not used)"
        facts.append(("capture time sources", text))
    source = relative_path(metadata_dir() / "metadata.csv")
    return key_value_table(facts) + note(f"From {source}.")


def cameras_section(inputs: ReportInputs) -> str:
    """One row per camera: its background, how its id was found, its clips and their split,
    its format and its most frequent classes among its train clips."""
    if inputs.metadata is None or "camera" not in inputs.metadata.columns:
        return missing(inputs.problems.get("metadata", "No camera column in the metadata."))
    metadata = inputs.metadata.copy()
    metadata["camera"] = metadata["camera"].fillna("").astype(str)
    source = metadata.get("camera_source", pd.Series("given", index=metadata.index))
    metadata["camera_source"] = source.fillna("none").astype(str)
    known = metadata[metadata["camera"] != ""]
    if known.empty:
        return missing("No clip has a camera: none was named and none could be inferred.")
    labels = inputs.labels_table.set_index("filename")[inputs.classes] \
        if inputs.labels_table is not None else None
    frames_paths = {}
    index_path = cache_dir() / "preprocess_index.csv"
    if index_path.exists():
        index = pd.read_csv(index_path, dtype=str, keep_default_na=False)
        frames_paths = dict(zip(index["filename"], index["frames_path"], strict=True))
    groups = sorted(known.groupby("camera"), key=lambda item: (-len(item[1]), item[0]))
    rows = []
    for camera, clips in groups[:CAMERAS_SHOWN]:
        sources = sorted(set(clips["camera_source"]))
        split = clips["split"].value_counts() if "split" in clips.columns else pd.Series()
        first = clips.iloc[0]
        width, height, fps = pd.to_numeric(pd.Series([first.get("width"), first.get("height"),
                                                      first.get("fps")]), errors="coerce")
        size = f"{width:.0f}×{height:.0f}" if np.isfinite(width) and np.isfinite(height) \
            else "size unknown"
        layout = f"{size} @ {fps:g} fps, {first.get('codec', '')}" if np.isfinite(fps) else size
        top = ""
        if labels is not None:
            train = [name for name in clips["filename"] if name in labels.index]
            if train:
                shares = labels.loc[train].mean(axis=0).sort_values(ascending=False).head(3)
                top = ", ".join(f"{name} {share:.0%}" for name, share in shares.items() if share)
        thumbnail = _camera_thumbnail(clips, frames_paths)
        rows.append([thumbnail, escaped(camera), escaped(" + ".join(sources)), str(len(clips)),
                     f"{split.get('train', 0)} / {split.get('test', 0)}", escaped(layout),
                     escaped(top)])
    text = (f"{len(known)} of {len(metadata)} clips have a camera: "
            f"{(metadata['camera_source'] == 'given').sum()} named in video_metadata.csv, "
            f"{(metadata['camera_source'] == 'inferred').sum()} inferred from their background "
            f"and format (r11, a07_cameras). The picture is the median of one clip's frames.")
    if len(groups) > CAMERAS_SHOWN:
        text += f" {len(groups) - CAMERAS_SHOWN} more cameras with fewer clips are not shown."
    return html_table(["background", "camera", "id", "clips", "train / test", "format",
                       "top classes (train)"], rows, numeric={3}, escape=False) + \
        note(text)


def _camera_thumbnail(clips: pd.DataFrame, frames_paths: dict) -> str:
    """A small picture of a camera's view, from its first decoded clip."""
    for _, clip in clips.iterrows():
        path = frames_paths.get(clip["filename"], "")
        if not path or not (cache_dir() / path).exists():
            continue
        width, height = pd.to_numeric(pd.Series([clip.get("width"), clip.get("height")]),
                                      errors="coerce").fillna(1).to_numpy()
        frames = read_frames(cache_dir() / path)
        data = camera_view_png(frames, width, height) if frames is not None else None
        if data is not None:
            encoded = base64.b64encode(data).decode("ascii")
            return fill(CAMERA_VIEW, width=CAMERA_VIEW_WIDTH, alt=clip["camera"], png=encoded)
    return escaped("no decoded clip")


def failures_section() -> str:
    path = cache_dir() / "failures.csv"
    if not path.exists():
        return missing(f"{relative_path(path)} is missing: r10_preprocess_data.py has not run in "
                       f"this data folder.")
    try:
        failures = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        failures = pd.DataFrame(columns=["filename", "stage", "error"])
    if failures.empty:
        return '<p>No failures recorded: every video was probed and decoded.</p>'
    details = ""
    if "filename" in failures.columns:
        details += f", {failures['filename'].nunique()} distinct video(s)"
    if "stage" in failures.columns:
        details += " — by stage: " + ", ".join(
            f"{stage} {count}" for stage, count in failures["stage"].value_counts().items())
    shown = failures.head(FAILURE_ROWS)
    parts = [fill(FAILURES_COUNT, count=len(failures), path=relative_path(path), details=details),
             scroll(html_table(list(shown.columns), shown.values.tolist()))]
    if len(failures) > FAILURE_ROWS:
        parts.append(note(f"First {FAILURE_ROWS} of {len(failures)} rows."))
    return "\n".join(parts)


def settings_section(ensemble_info: dict) -> str:
    blocks = []
    if ensemble_info:
        shown = {key: value for key, value in ensemble_info.items() if key != "weights"}
        blocks.append(("ensemble (r60)", shown))
    config_paths = []
    for folder in (data_dir() / "models", models_dir("level2")):
        if folder.is_dir():
            config_paths += sorted(p / "config.json" for p in folder.iterdir()
                                   if (p / "config.json").is_file())
    for path in config_paths:
        try:
            blocks.append((path.parent.relative_to(data_dir() / "models").as_posix(),
                           json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as error:
            blocks.append((path.parent.name, {"error": f"unreadable config.json: {error}"}))
    if not blocks:
        return missing("No ensemble settings and no models/*/config.json.")
    inner = "\n".join(fill(SETTINGS_BLOCK, title=title, settings=compact_json(payload))
                      for title, payload in blocks)
    count = len(blocks) - (1 if ensemble_info else 0)
    return fill(SETTINGS, count=count, blocks=Html(inner), commit=git_commit(),
                models=relative_path(data_dir() / "models"))


def compact_json(value, indent: int = 0) -> str:
    """JSON with nested objects indented but short lists kept on one line (class lists)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f'{pad}  {json.dumps(str(key))}: {compact_json(item, indent + 1)}'
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)):
        if all(not isinstance(item, (dict, list, tuple)) for item in value):
            return json.dumps(list(value), default=str)
        items = [f"{pad}  {compact_json(item, indent + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    return json.dumps(value, default=str)
