"""r12 --follow: a backbone job that starts beside r10 and takes each video's frames as
soon as r10 has recorded them, reading r10's plan (the videos it will do) and its
per-video records, and telling a current record from one an earlier run left behind."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd

from a00_common import (cache_dir, load_video_table, preprocess_done_path,
                        preprocess_plan_path, video_path)
from a00_io import file_identity, read_json


class SetupError(RuntimeError):
    """An extractor that cannot start (weights unavailable, bad weights file, no plan of
    r10's to follow); one line."""


def record_is_current(record: dict, record_path: Path, video_identity: dict,
                      plan_time: float) -> bool:
    """r10's record describes the video as it is now (same content) and its frames file is
    the one it wrote. A failure counts only when r10 wrote it during this run (whether it
    still holds is r10's to decide). `video_identity` keeps the video's identity between
    polls, so an unchanged video is a stat, not a read."""
    if "source" not in record:
        return False  # made before records named their source
    known = record["source"]
    identity = file_identity(video_path(record["filename"]), video_identity.get("last") or known)
    video_identity["last"] = identity
    if (identity or {}).get("digest") != (known or {}).get("digest"):
        return False
    if record.get("errors") or record.get("retry"):
        return record_path.stat().st_mtime >= plan_time
    if record.get("frames_path"):
        try:
            return (cache_dir() / record["frames_path"]).stat().st_size == \
                record.get("frames_bytes")
        except OSError:
            return False
    return True


def wait_for_current_record(record_path: str, stopping: threading.Event,
                            timeout: float) -> dict | None:
    """--follow: waits until r10 has a current record of the video (one left by an earlier
    run for other bytes, or whose frames are gone, is waited out until r10 has redone it),
    or until r10 has finished this run ({} when it left no record). None once nobody needs
    it any more."""
    path = cache_dir() / record_path
    plan_time = preprocess_plan_path().stat().st_mtime
    done_path = preprocess_done_path()
    deadline = time.monotonic() + timeout
    video_identity: dict = {}
    while True:
        record = read_json(path) if path.exists() else None
        if record is not None and record_is_current(record, path, video_identity, plan_time):
            return record
        if done_path.exists() and done_path.stat().st_mtime >= plan_time:
            return read_json(path) or {}  # r10 is done: its records are this run's
        if stopping.is_set():
            return None
        if time.monotonic() > deadline:
            raise SetupError(f"--follow: r10 recorded nothing current at {path} within "
                             f"{timeout:.0f} s; start r10 (or run without "
                             f"--follow once r10 is done)")
        time.sleep(0.1)


def read_plan(timeout: float) -> pd.DataFrame:
    """--follow: the videos r10 announced, as an index; r10's own index once it is done.

    A plan is taken only when it lists the videos of the input tables as they are now
    (one left by an earlier run for other videos is waited out until r10 rewrites it), and
    r10's index only when it is newer than the plan. run_all removes the plan before it
    starts r10 and its followers, so a follower never reads the previous run's plan.
    """
    index_path = cache_dir() / "preprocess_index.csv"
    plan_path = preprocess_plan_path()
    names = load_video_table()[0]["filename"].tolist()
    deadline = time.monotonic() + timeout
    while True:
        if plan_path.exists():
            plan = pd.read_csv(plan_path, dtype=str, keep_default_na=False)
            if plan["filename"].tolist() == names:
                if index_path.exists() and \
                        index_path.stat().st_mtime >= plan_path.stat().st_mtime:
                    return pd.read_csv(index_path, dtype=str, keep_default_na=False)
                return plan
        if time.monotonic() > deadline:
            raise SetupError(f"--follow: no plan of the current videos at {plan_path} within "
                             f"{timeout:.0f} s; start r10_preprocess_data.py first")
        time.sleep(0.2)
