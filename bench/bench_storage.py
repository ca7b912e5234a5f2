"""bench_storage — how much the chain keeps per video on disk, by part, against the budget.

Reads a finished data folder (the demo's by default) and sums the size of every file the
chain wrote, by part. Per-video parts grow with the number of videos: r10's cache (frames,
probes, records; it keeps no audio), r11's metadata, each feature set of r12 (printed one
by one, each against its own budget), the prediction tables, and the logs. Fixed parts do
not: trained models, reports, the submission. The input videos are the user's and are not counted.
The per-video total is the per-video parts divided by the number of videos (train + test
rows); the fixed parts are printed in MB.

Writes  bench/results/bench_storage.csv   one row per part (appended), with the folder,
        the number of videos and the commit
Cost    a second.

    python bench/bench_storage.py                       # the demo (after make demo)
    python bench/bench_storage.py --data DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import pandas as pd  # noqa: E402

from a00_common import append_results, data_dir, input_dir, parse_config  # noqa: E402

PER_VIDEO_BUDGET_KB = 300      # everything the chain keeps per video
PER_EXTRACTOR_BUDGET_KB = 60   # each feature set, so added backbones fit the budget
RESULTS = PROJECT_ROOT / "bench" / "results" / "bench_storage.csv"
# (part, folder under the data folder, grows with the number of videos)
PARTS = [("r10 frames", "cache/frames", True),
         ("r10 probes", "cache/probe", True), ("r10 records", "cache/preprocess", True),
         ("r10 other", "cache", True), ("r11 metadata", "metadata", True),
         ("r12 features", "features", True), ("level-1 predictions", "predictions/level1", True),
         ("level-2 predictions", "predictions/level2", True),
         ("other predictions", "predictions", True), ("logs", "logs", True),
         ("models", "models", False), ("reports", "reports", False),
         ("submissions", "submissions", False)]


def folder_bytes(folder: Path, counted: set) -> int:
    """Bytes of the files under `folder` not counted yet (a part's subfolders are parts of
    their own when they come first in PARTS)."""
    total = 0
    for path in folder.rglob("*") if folder.is_dir() else []:
        if path.is_file() and path not in counted:
            counted.add(path)
            total += path.stat().st_size
    return total


def storage_table(root: Path) -> tuple[pd.DataFrame, int]:
    """One row per part and per feature set: bytes, KB per video, per-video or fixed."""
    labels = pd.read_csv(input_dir() / "train_labels.csv", usecols=["filename"])
    asked = pd.read_csv(input_dir() / "submission_format.csv", usecols=["filename"])
    videos = len(labels) + len(asked)
    counted: set = set()
    rows = []
    features = root / "features"
    for extractor in sorted(p.name for p in features.iterdir()) if features.is_dir() else []:
        size = folder_bytes(features / extractor, counted)
        rows.append({"part": f"r12 {extractor}", "per_video": True, "bytes": size,
                     "extractor": True})
    for part, folder, per_video in PARTS:
        size = folder_bytes(root / folder, counted)
        if size or part != "r12 features":
            rows.append({"part": part, "per_video": per_video, "bytes": size,
                         "extractor": False})
    table = pd.DataFrame(rows)
    table["kb_per_video"] = table["bytes"] / 1024 / videos
    return table, videos


def main() -> None:
    parse_config(globals(), __doc__)
    root = data_dir()
    table, videos = storage_table(root)
    per_video = table[table["per_video"]]
    total = per_video["kb_per_video"].sum()
    print(f"{root}: {videos} videos")
    for row in table.itertuples():
        budget = f"  (budget {PER_EXTRACTOR_BUDGET_KB} KB: " \
                 f"{'within' if row.kb_per_video <= PER_EXTRACTOR_BUDGET_KB else 'over'})" \
            if row.extractor else ""
        if row.per_video:
            print(f"  {row.part:28s} {row.kb_per_video:9.1f} KB per video{budget}")
        else:
            print(f"  {row.part:28s} {row.bytes / 2**20:9.1f} MB in all (fixed)")
    verdict = "within" if total <= PER_VIDEO_BUDGET_KB else \
        f"over by {total - PER_VIDEO_BUDGET_KB:.0f} KB"
    print(f"per video: {total:.0f} KB kept by the chain (budget {PER_VIDEO_BUDGET_KB} KB: "
          f"{verdict}); fixed: {table.loc[~table['per_video'], 'bytes'].sum() / 2**20:.1f} MB")
    table.insert(0, "videos", videos)
    table.insert(0, "data", str(root))
    append_results(table, RESULTS)


if __name__ == "__main__":
    main()
