"""The IO layer of trapstack: atomic writes, safe readers, content digests and stamps.

Every output of the chain is written through here: to a temp file beside it, then moved
into place (`os.replace`), so a killed job never leaves a truncated file that looks valid.
A stage is current only when its stamp (the digest of what it was made from) matches;
existence of an output is never proof. Nothing here unpickles: arrays are .npy/.npz read
with allow_pickle=False.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger("trapstack")


# ----------------------------------------------------------------------------- IO layer

@contextlib.contextmanager
def atomic_path(path: Path | str):
    """Yields a temp path beside `path`; moves it into place only if the block succeeds.

    A killed process leaves at most a `.tmp-*` file, never a truncated output that looks
    valid. The temp name carries pid and a random part, so concurrent jobs never collide.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_csv(frame: pd.DataFrame, path: Path | str, **kwargs) -> Path:
    kwargs.setdefault("index", False)
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, **kwargs)
    return Path(path)


def write_json(payload, path: Path | str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    return Path(path)


def write_text_if_changed(text: str, path: Path | str) -> bool:
    """Writes `text` atomically unless the file already holds it (its time then marks when
    its content last changed, and a rerun that changes nothing touches nothing)."""
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return True


def write_array(array: np.ndarray, path: Path | str) -> Path:
    """Saves one array as .npy (no pickle) atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, np.asarray(array), allow_pickle=False)
    return Path(path)


def write_arrays(arrays: dict, path: Path | str) -> Path:
    """Saves several named arrays as one .npz (no pickle) atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


@contextlib.contextmanager
def npy_writer(path: Path | str, dtype, shape: tuple):
    """Yields a new .npy of this dtype and shape as a writable memory map
    (`np.lib.format.open_memmap`) at a temp path, moved into place when the block succeeds.

    Rows can be filled part by part: the pages written belong to the file (the OS's cache,
    written back as it needs), not to the process, so joining many parts keeps memory flat.
    """
    with atomic_path(path) as temporary:
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.dtype(dtype),
                                          shape=tuple(int(size) for size in shape))
        yield array
        array.flush()
        del array


def read_array(path: Path | str) -> np.ndarray | None:
    """Reads a .npy this pipeline wrote; an unreadable file is deleted (it will be redone)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        logger.warning("%s is unreadable (%s): deleting it so it is recomputed", path, error)
        path.unlink(missing_ok=True)
        return None


def write_frames(frames: np.ndarray, path: Path | str, quality: int) -> Path:
    """A clip's square RGB frames (count, size, size, 3) uint8 as one JPEG, atomically: the
    frames stacked top to bottom, a strip anyone can open. At 224² a raw stack is 150 KB a
    frame; the JPEG a few KB (bench/results/frame_cache.csv: size and feature drift)."""
    import cv2
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1] != frames.shape[2] or frames.shape[3] != 3 \
            or frames.dtype != np.uint8:
        raise ValueError(f"frames are {frames.dtype} {frames.shape}, not (count, size, size, 3) "
                         f"uint8")
    strip = np.ascontiguousarray(frames.reshape(-1, frames.shape[2], 3)[..., ::-1])  # BGR
    written, encoded = cv2.imencode(".jpg", strip, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not written:
        raise ValueError(f"{path}: JPEG encoding failed")
    with atomic_path(path) as temporary:
        temporary.write_bytes(encoded.tobytes())
    return Path(path)


def looks_like_jpeg(path: Path | str) -> bool:
    """Begins and ends with JPEG's markers: a cheap check of a frames file, no decoding."""
    with open(path, "rb") as handle:
        start = handle.read(2)
        handle.seek(-2, os.SEEK_END)
        return start == b"\xff\xd8" and handle.read(2) == b"\xff\xd9"


def read_frames(path: Path | str) -> np.ndarray | None:
    """The frames write_frames stored, (count, size, size, 3) uint8 RGB; None when the file
    is missing, and an unreadable one is deleted (it will be redone), as read_array does."""
    import cv2
    path = Path(path)
    if not path.exists():
        return None
    strip = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if strip is None or strip.shape[0] % strip.shape[1]:
        logger.warning("%s is not a JPEG strip of square frames: deleting it so it is "
                       "recomputed", path)
        path.unlink(missing_ok=True)
        return None
    size = strip.shape[1]
    return np.ascontiguousarray(strip[..., ::-1]).reshape(-1, size, size, 3)


def read_arrays(path: Path | str) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, KeyError) as error:
        logger.warning("%s is unreadable (%s): deleting it so it is recomputed", path, error)
        path.unlink(missing_ok=True)
        return None


def write_fold_table(table: pd.DataFrame, path: Path | str) -> Path:
    """A by-fold prediction table (columns fold, filename, then the classes) as one .npz of
    plain arrays, atomically: float64 kept exactly, a fifth of the CSV's bytes and read
    without parsing (with 200k clips and 5 folds the CSV would be ~0.5 GB a model)."""
    classes = [column for column in table.columns if column not in ("fold", "filename")]
    return write_arrays({"fold": table["fold"].to_numpy(np.int64),
                         "filename": table["filename"].to_numpy(str),
                         "classes": np.asarray(classes, dtype=str),
                         "values": table[classes].to_numpy(np.float64)}, path)


def read_fold_table(path: Path | str) -> pd.DataFrame | None:
    """The table write_fold_table stored (None when missing or unreadable: it is redone)."""
    arrays = read_arrays(path)
    if arrays is None:
        return None
    try:
        frame = pd.DataFrame(arrays["values"], columns=arrays["classes"].tolist())
        frame.insert(0, "filename", arrays["filename"].astype(object))
        frame.insert(0, "fold", arrays["fold"])
    except (KeyError, ValueError) as error:
        logger.warning("%s is not a by-fold table (%s): deleting it so it is recomputed", path,
                       error)
        Path(path).unlink(missing_ok=True)
        return None
    return frame


def read_json(path: Path | str):
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as error:
        logger.warning("%s is unreadable (%s): deleting it so it is recomputed", path, error)
        path.unlink(missing_ok=True)
        return None


# ----------------------------------------------------------------------------- stamps
# A stage's outputs are current only when what they were made from is unchanged: each output
# group has a stamp file beside its first output recording the digest of its inputs (rows,
# file contents, upstream stamps, settings) and the inputs themselves, so a rerun can say
# what changed. Existence of an output is never proof that it is current.

class TableRows:
    """A table's rows in a digest_text payload, written out a block of rows at a time: the
    digest is the one of the payload with the rows as a list of row lists (cells as text
    with `as_text`, as DataFrame.astype(str) gives them), without that list or its JSON
    text ever whole in memory (at 200k clips, ~50 MB of Python lists for 24 labels a row)."""

    def __init__(self, table, as_text: bool = False, block: int = 5000):
        self.table, self.as_text, self.block = table, as_text, block

    def pieces(self):
        yield "["
        for start in range(0, len(self.table), self.block):
            rows = self.table[start:start + self.block]
            text = json.dumps(np.asarray(rows.astype(str) if self.as_text else rows).tolist(),
                              sort_keys=True, default=str)
            yield (", " if start else "") + text[1:-1]
        yield "]"


def _json_pieces(payload):
    """The JSON text of a digest_text payload, in pieces: TableRows a block at a time, and a
    list that holds some item by item, as json.dumps would join them."""
    if isinstance(payload, TableRows):
        yield from payload.pieces()
    elif isinstance(payload, list) and any(isinstance(item, TableRows) for item in payload):
        yield "["
        for number, item in enumerate(payload):
            yield ", " if number else ""
            yield from _json_pieces(item)
        yield "]"
    else:
        yield json.dumps(payload, sort_keys=True, default=str)


def digest_text(payload, length: int = 16) -> str:
    """Stable digest of any JSON-able payload (sorted keys); the payload may be TableRows,
    or a list that holds some."""
    digest = hashlib.blake2b(digest_size=16)
    for piece in _json_pieces(payload):
        digest.update(piece.encode())
    return digest.hexdigest()[:length]


def file_digest(path: Path | str, length: int = 16) -> str:
    """Content digest of a whole file (blake2b, read in 1 MiB blocks)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def array_digest(array: np.ndarray, length: int = 16) -> str:
    """Digest of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(f"{array.dtype.str}{array.shape}".encode(), digest_size=16)
    digest.update(array.tobytes())
    return digest.hexdigest()[:length]


def file_identity(path: Path | str, known: dict | None = None) -> dict | None:
    """{size, mtime_ns, digest} of a file, None when it does not exist.

    The content digest is what downstream stamps use; size and mtime only decide whether
    `known` (an earlier identity of the same file) can be trusted without reading the file
    again, as make and DVC do. A touched but unchanged file keeps its digest.
    """
    path = Path(path)
    try:
        status = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    if known and known.get("size") == status.st_size and \
            known.get("mtime_ns") == status.st_mtime_ns and known.get("digest"):
        return dict(known)
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "digest": file_digest(path)}


def optional_file_digest(path: Path | str) -> str:
    """A small input file's content digest, or "absent"."""
    path = Path(path)
    return file_digest(path) if path.is_file() else "absent"


def stamp_path(output: Path | str) -> Path:
    """Where the stamp of the output group led by `output` is kept (beside it)."""
    output = Path(output)
    return output.with_name(output.name + ".stamp")


def read_stamp(output: Path | str) -> str | None:
    """The stamp recorded for an output (None when it was never finished)."""
    return (read_json(stamp_path(output)) or {}).get("stamp")


def read_stamp_inputs(output: Path | str) -> dict:
    """What an output was made from, as its stamp records it ({} when none)."""
    return (read_json(stamp_path(output)) or {}).get("inputs") or {}


def outdated_reason(outputs, inputs: dict, force: bool) -> str | None:
    """None when the outputs are current for these inputs; else why they must be made.

    `inputs` maps names (labels, rows, settings, an upstream stamp, ...) to JSON-able
    values; the reason names the ones that changed since the outputs were made.
    """
    outputs = [outputs] if isinstance(outputs, (str, Path)) else list(outputs)
    if force:
        return "--force"
    recorded = read_json(stamp_path(outputs[0]))
    if recorded is None:
        return "not made yet" if not Path(outputs[0]).exists() else "no stamp"
    absent = [Path(p).name for p in outputs if not Path(p).exists()]
    if absent:
        return f"missing {', '.join(absent)}"
    sizes = recorded.get("sizes") or {}
    resized = [Path(p).name for p in outputs
               if Path(p).name in sizes and Path(p).stat().st_size != sizes[Path(p).name]]
    if resized:  # truncated or overwritten since it was stamped
        return f"{', '.join(resized)} changed since it was made"
    if recorded.get("stamp") == digest_text(inputs):
        return None
    before = recorded.get("inputs") or {}
    changed = sorted(key for key in set(before) | set(inputs)
                     if digest_text(before.get(key)) != digest_text(inputs.get(key)))
    return "changed: " + (", ".join(changed) if changed else "inputs")


def up_to_date(outputs, inputs: dict, force: bool) -> bool:
    """True when every output exists and was made from exactly these inputs."""
    return outdated_reason(outputs, inputs, force) is None


def write_stamp(outputs, inputs: dict) -> str:
    """Records that `outputs` were made from `inputs`; call it after the outputs are written
    (a killed run then leaves no stamp, and the stage is redone)."""
    outputs = [outputs] if isinstance(outputs, (str, Path)) else list(outputs)
    stamp = digest_text(inputs)
    # the outputs' sizes: a truncated or overwritten output is not current (a stat, no read)
    sizes = {Path(p).name: Path(p).stat().st_size for p in outputs}
    write_json({"stamp": stamp, "inputs": inputs, "sizes": sizes}, stamp_path(outputs[0]))
    return stamp


def stamp_of(inputs: dict) -> str:
    return digest_text(inputs)


def log_outcome(what: str, reason: str | None) -> None:
    """One line per unit of work, which run_all reads from each job's log: "[up to date]"
    or "[redo] ... (why)"."""
    if reason is None:
        logger.info("[up to date] %s", what)
    else:
        logger.info("[redo] %s (%s)", what, reason)
