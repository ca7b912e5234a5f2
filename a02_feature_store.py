"""r12's feature store: the shards a run extracts, their join into features/<extractor>/
(features.npy, statistics.npy, index.csv, config.json) and the reuse of an earlier join's
rows by filename and input digest, so a changed video list costs only its new videos."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from a00_common import features_dir, logger, short_error
from a00_io import (array_digest, digest_text, npy_writer, read_arrays, read_json, stamp_path,
                    write_csv, write_json)


class JoinedRows:
    """Rows of the joined output of an earlier run with the same settings, by filename.

    Lets a rerun with a changed video list (or after the shards were deleted) copy the
    features of every video it already has instead of computing them again.
    """

    def __init__(self, extractor: str, hash_text: str, force: bool):
        self.rows: dict[str, int] = {}
        folder = features_dir(extractor)
        paths = [folder / name for name in ("features.npy", "statistics.npy", "index.csv")]
        if force or not all(path.exists() for path in paths) \
                or (read_json(folder / "config.json") or {}).get("hash") != hash_text:
            return
        # only a finished join: its stamp is written last and names the sizes it wrote
        sizes = (read_json(stamp_path(paths[0])) or {}).get("sizes") or {}
        if any(sizes.get(path.name) != path.stat().st_size for path in paths):
            return
        try:
            index = pd.read_csv(paths[2], dtype={"filename": str, "input_digest": str},
                                keep_default_na=False)
            # memory maps: a row read is the OS's cached page, so reuse keeps memory flat
            self.features = np.load(paths[0], mmap_mode="r", allow_pickle=False)
            self.statistics = np.load(paths[1], mmap_mode="r", allow_pickle=False)
            usable = index[(index["missing"].astype(int) == 0) & index["input_digest"].ne("")]
            rows = {name: (int(row), digest) for name, row, digest in
                    zip(usable["filename"], usable["row"], usable["input_digest"])}
        except (ValueError, OSError, KeyError) as error:
            logger.warning("r12 %s: earlier output unreadable (%s); recomputing", extractor,
                           short_error(error))
            return
        if len(index) == self.features.shape[0] == self.statistics.shape[0]:
            self.rows = rows

    def has(self, filename: str, input_digest: str) -> bool:
        """The earlier run has this video's features, made from the same input (frames or
        audio of the same content digest)."""
        entry = self.rows.get(filename)
        return entry is not None and bool(input_digest) and entry[1] == input_digest

    def take(self, filename: str, input_digest: str):
        """(steps, statistics) of a video the earlier run made from the same input, or None."""
        if not self.has(filename, input_digest):
            return None
        row = self.rows[filename][0]
        return self.features[row], self.statistics[row]


class ShardBuilder:
    """Collects the per-video results of one shard; `result()` once every video is in."""

    def __init__(self, number: int, shard: pd.DataFrame, steps_shape: tuple, steps_dtype,
                 statistics_length: int):
        self.number = number
        self.filenames = shard["filename"].to_numpy(str)
        self.features = np.zeros((len(shard),) + tuple(steps_shape), steps_dtype)
        self.statistics = np.zeros((len(shard), statistics_length), np.float32)
        self.missing = np.ones(len(shard), bool)
        self.input_digests = np.array(shard["input_digest"].tolist() if "input_digest" in
                                      shard.columns else [""] * len(shard), dtype=object)
        self.failures: list[dict] = []
        self.remaining = len(shard)

    def put(self, position: int, steps=None, statistics=None, failure: str | None = None,
            input_digest: str | None = None):
        if input_digest is not None:
            self.input_digests[position] = input_digest
        if steps is not None:
            self.features[position] = steps
            self.statistics[position] = statistics
            self.missing[position] = False
        if failure:
            self.failures.append({"filename": self.filenames[position], "error": failure})
        self.remaining -= 1

    def result(self) -> dict:
        return {"features": self.features, "statistics": self.statistics,
                "missing": self.missing, "filenames": self.filenames,
                "input_digests": self.input_digests.astype(str),
                "failure_filenames": np.array([f["filename"] for f in self.failures], dtype=str),
                "failure_errors": np.array([f["error"] for f in self.failures], dtype=str)}


def shard_path(extractor: str, hash_text: str, shard_number: int) -> Path:
    return features_dir(extractor) / hash_text / f"shard_{shard_number:05d}.npz"


def existing_shard_failures(path: Path, shard: pd.DataFrame, force: bool) -> list[dict] | None:
    """The failures of a valid shard file for exactly these videos; None if it must be made.

    Reads only the small members of the .npz: a resumed run checks every shard.
    """
    if force or not path.exists() or "input_digest" not in shard.columns:
        return None  # --follow knows the inputs only once r10 has recorded them
    try:
        with np.load(path, allow_pickle=False) as archive:
            filenames = archive["filenames"].tolist()
            input_digests = archive["input_digests"].tolist()
            failures = [{"filename": f, "error": e} for f, e in
                        zip(archive["failure_filenames"], archive["failure_errors"])]
    except (ValueError, OSError, EOFError, KeyError) as error:
        logger.warning("%s is unreadable (%s): it is made again", path, short_error(error))
        return None
    same = filenames == shard["filename"].tolist() and \
        input_digests == shard["input_digest"].tolist()
    return failures if same else None


def shard_rows(extractor: str, hash_text: str, shard_count: int) -> pd.DataFrame:
    """filename, input_digest and missing of every row of the shards, in order (the small
    members only)."""
    parts = []
    for shard_number in range(shard_count):
        path = shard_path(extractor, hash_text, shard_number)
        try:
            with np.load(path, allow_pickle=False) as archive:
                parts.append(pd.DataFrame({
                    "filename": archive["filenames"].astype(str),
                    "input_digest": archive["input_digests"].astype(str),
                    "missing": archive["missing"].astype(int)}))
        except (ValueError, OSError, EOFError, KeyError) as error:
            raise RuntimeError(f"shard {path} is unreadable ({short_error(error)}); rerun "
                               f"r12") from None
    return pd.concat(parts, ignore_index=True)


def stage_inputs(hash_text: str, rows: pd.DataFrame) -> dict:
    """What an extractor's output is made from: its settings and each row's input (the
    content digest of the video's frames, or of its audio)."""
    return {"config": hash_text,
            "rows": digest_text(rows[["filename", "split", "input_digest"]].to_numpy().tolist())}


def output_paths(extractor: str) -> list[Path]:
    folder = features_dir(extractor)
    return [folder / "features.npy", folder / "index.csv", folder / "config.json",
            folder / "statistics.npy"]


def consolidate(extractor: str, hash_text: str, index: pd.DataFrame, shard_count: int,
                config: dict, statistic_names: Callable[[int], list[str]]) -> pd.DataFrame:
    """Joins the shards into one .npy per array, shard after shard into a memory map of
    the output (`npy_writer`): the process holds one shard at a time however many videos
    there are. Each row's content digest goes into index.csv: the models' stamps are made of
    the digests of the rows they read."""
    first = read_arrays(shard_path(extractor, hash_text, 0))
    folder = features_dir(extractor)
    features_path, statistics_path = folder / "features.npy", folder / "statistics.npy"
    # the outputs are replaced one by one: until the new stamp, they are no one's to reuse
    stamp_path(features_path).unlink(missing_ok=True)
    missing, input_digests, digests = [], [], []
    with npy_writer(features_path, first["features"].dtype,
                    (len(index),) + first["features"].shape[1:]) as features, \
            npy_writer(statistics_path, np.float32,
                       (len(index), first["statistics"].shape[1])) as statistics:
        for shard_number in range(shard_count):
            part = first if shard_number == 0 else read_arrays(
                shard_path(extractor, hash_text, shard_number))
            if part is None:
                raise RuntimeError(f"shard {shard_number} vanished while joining; rerun r12")
            if len(missing) + len(part["missing"]) > len(index):
                raise RuntimeError(f"the shards hold more videos than the index's "
                                   f"{len(index)}; rerun r12 --force")
            part_statistics = np.ascontiguousarray(part["statistics"], np.float32)
            rows = slice(len(missing), len(missing) + len(part["missing"]))
            features[rows] = part["features"]
            statistics[rows] = part_statistics
            missing.extend(part["missing"].astype(int).tolist())
            input_digests.extend(part["input_digests"].astype(str).tolist())
            digests.extend(array_digest(row_features) + array_digest(row_statistics)
                           for row_features, row_statistics in zip(part["features"],
                                                                    part_statistics))
            del part
        if len(missing) != len(index):
            raise RuntimeError(f"the shards hold {len(missing)} videos, the index "
                               f"{len(index)}; rerun r12 --force")
    table = index[["filename", "split"]].copy()
    table["row"] = np.arange(len(table))
    table["missing"] = missing
    table["input_digest"] = input_digests
    table["digest"] = [digest[:16] for digest in digests]
    write_csv(table, folder / "index.csv")
    write_json({**config, "hash": hash_text,
                "statistic_names": statistic_names(first["statistics"].shape[1] // 2)},
               folder / "config.json")
    return table


def remove_shards(extractor: str, hash_text: str) -> None:
    """After a join the shards are redundant: the joined rows are reused by the next run."""
    folder = features_dir(extractor) / hash_text
    for path in folder.glob("shard_*.npz"):
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # a concurrent job's temp file, or a kept shard: leave the folder
        pass
