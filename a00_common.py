"""Shared module of trapstack: paths, classes, seeds, input tables, config overrides.

Every numbered script imports this module and nothing else of the project's except the
`a0N_*` helper modules. It is cheap to import: no tensorflow, lightgbm, xgboost or ray here.

    from a00_common import data_dir, parse_config, ...   # paths, input tables, settings
    from a00_metric import mean_log_loss, ...            # the metric, prediction tables
    from a00_io import write_csv, ...                    # the IO layer (atomic writes, stamps)
    args = parse_config(globals(), __doc__)   # applies --key value to the UPPER_CASE block
"""
from __future__ import annotations

import argparse
import datetime as _datetime
import functools
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from a00_io import write_csv

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data" / "demo"
SEED = 42

# The real Pri-matrix Factorization columns, in the competition's order. The pipeline reads
# the class list from train_labels.csv; this list is what the demo data set writes.
PRIMATRIX_CLASSES = [
    "bird", "blank", "cattle", "chimpanzee", "elephant", "forest buffalo", "gorilla",
    "hippopotamus", "human", "hyena", "large ungulate", "leopard", "lion",
    "other (non-primate)", "other (primate)", "pangolin", "porcupine", "reptile", "rodent",
    "small antelope", "small cat", "wild dog", "duiker", "hog",
]

logger = logging.getLogger("trapstack")


class InputError(ValueError):
    """A problem with the user's input files; its message is one line naming file and fix."""


# ----------------------------------------------------------------------------- config

STANDARD_OPTIONS = ("force", "model", "fold", "gpu", "workers", "data")


def script_tunables(namespace: dict) -> dict:
    """UPPER_CASE values assigned at the top level of the script itself (not imported ones)."""
    import ast
    defined = None
    source_file = namespace.get("__file__")
    if source_file and Path(source_file).is_file():
        tree = ast.parse(Path(source_file).read_text(encoding="utf-8"))
        defined = set()
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
    return {key: value for key, value in namespace.items()
            if key.isupper() and not key.startswith("_")
            and (defined is None or key in defined)
            and isinstance(value, (bool, int, float, str, tuple, list))}


def _convert(key: str, text: str, default):
    """Parses `text` to the type of `default`; a wrong type is an error, never a silent cast."""
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--{key.lower()} expects true/false, got {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"--{key.lower()} expects an integer, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"--{key.lower()} expects a number, got {text!r}") from None
    if isinstance(default, (tuple, list)):
        items = [item.strip() for item in text.split(",") if item.strip()]
        element_default = default[0] if len(default) else ""
        converted = [_convert(key, item, element_default) for item in items]
        return type(default)(converted)
    return text


def parse_config(namespace: dict, doc: str | None, argv: list[str] | None = None,
                 extra_options: dict | None = None) -> argparse.Namespace:
    """Parses the standard options and `--key value` for every UPPER_CASE tunable of a script.

    The tunables are replaced in `namespace` (the script's globals). Unknown keys and values
    of the wrong type stop the script with a message naming them.
    """
    tunables = script_tunables(namespace)
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False)
    parser.add_argument("--force", action="store_true", help="recompute outputs that exist")
    parser.add_argument("--model", default=None, help="run one model (default: all)")
    parser.add_argument("--fold", type=int, default=None, help="run one fold (default: all)")
    parser.add_argument("--gpu", default=None,
                        help="GPU id(s) for CUDA_VISIBLE_DEVICES, set before any framework import")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--data", default=None,
                        help="data folder (default: $TRAPSTACK_DATA or data/demo)")
    for name, option in (extra_options or {}).items():
        if isinstance(option, dict):  # full add_argument keywords
            parser.add_argument(f"--{name}", **option)
            continue
        default, help_text = option
        if default is False:  # a flag
            parser.add_argument(f"--{name}", action="store_true", help=help_text)
        else:
            parser.add_argument(f"--{name}", default=default, help=help_text)
    tunable_group = parser.add_argument_group(
        "tunables (UPPER_CASE block at the top of the script)")
    for key, value in tunables.items():
        shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
        tunable_group.add_argument(f"--{key.lower()}", dest=f"tunable_{key}", default=None,
                                   metavar=type(value).__name__.upper(),
                                   help=f"default: {shown}")
    arguments, unknown = parser.parse_known_args(argv)
    if unknown:
        known = ", ".join(key.lower() for key in tunables) or "none"
        parser.error(f"unknown option(s): {' '.join(unknown)} "
                     f"(tunables of this script: {known})")
    for key, default in tunables.items():
        text = getattr(arguments, f"tunable_{key}")
        if text is not None:
            try:
                namespace[key] = _convert(key, text, default)
            except ValueError as error:
                parser.error(str(error))
    if arguments.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(arguments.gpu)
    if arguments.data is not None:
        os.environ["TRAPSTACK_DATA"] = str(Path(arguments.data).resolve())
    arguments.config = {key: namespace[key] for key in tunables}
    setup_logging()
    return arguments


def config_hash(config: dict, length: int = 8) -> str:
    """Short stable hash of the settings that produced an output; goes into cache names."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def git_commit() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=10)
        return result.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def append_results(table: pd.DataFrame, path: Path) -> None:
    """Adds a benchmark's rows to its results table (bench/results/), each stamped with the
    time and the commit; written atomically, earlier rows kept."""
    table = table.copy()
    table.insert(0, "commit", git_commit())
    table.insert(0, "time", _datetime.datetime.now().isoformat(timespec="seconds"))
    if path.exists():
        table = pd.concat([pd.read_csv(path), table], ignore_index=True)
    write_csv(table, path)


def set_seeds(seed: int = SEED) -> None:
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def setup_logging() -> None:
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def progress(iterable, **kwargs):
    from tqdm import tqdm
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("disable", None)  # off when stderr is not a terminal
    kwargs.setdefault("mininterval", 2.0)
    return tqdm(iterable, **kwargs)


# ----------------------------------------------------------------------------- paths

def data_dir() -> Path:
    return _resolved(str(os.environ.get("TRAPSTACK_DATA", DEFAULT_DATA_DIR)), os.getcwd())


@functools.lru_cache(maxsize=16)
def _resolved(path: str, working_directory: str) -> Path:
    # resolving touches the file system at each level: once per (path, working directory),
    # not once per video
    return (Path(working_directory) / path).resolve()


def input_dir() -> Path:
    return data_dir() / "input"


def videos_dir() -> Path:
    return input_dir() / "videos"


def cache_dir() -> Path:
    return data_dir() / "cache"


def metadata_dir() -> Path:
    return data_dir() / "metadata"


def features_dir(extractor: str) -> Path:
    return data_dir() / "features" / extractor


def models_dir(model: str) -> Path:
    return data_dir() / "models" / model


def level1_dir() -> Path:
    return data_dir() / "predictions" / "level1"


def level2_dir() -> Path:
    return data_dir() / "predictions" / "level2"


def predictions_dir() -> Path:
    return data_dir() / "predictions"


def reports_dir() -> Path:
    return data_dir() / "reports"


def submissions_dir() -> Path:
    return data_dir() / "submissions"


def safe_cache_name(filename: str) -> str:
    """A video's name as a flat cache-file stem: stable, unique, filesystem-safe."""
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in filename)[:80]
    return f"{stem}-{hashlib.sha1(filename.encode()).hexdigest()[:8]}"


def probe_cache_path(filename: str) -> Path:
    """r10's probe of one video (independent of any setting)."""
    return cache_dir() / "probe" / f"{safe_cache_name(filename)}.json"


def preprocess_plan_path() -> Path:
    """r10's plan (written first on every run: the videos and their record paths), which
    `r12 --follow` works from while r10 runs."""
    return cache_dir() / "preprocess_plan.csv"


def preprocess_done_path() -> Path:
    """Written by r10 when a run has recorded every video (removed when a run starts)."""
    return cache_dir() / "preprocess_plan.done"


def video_path(filename: str) -> Path:
    """Path of a listed video; names that would leave videos/ are an input error."""
    base = videos_dir()
    # normalised, not resolved: a video that is a symlink to elsewhere is the user's choice,
    # a name that climbs out of videos/ is not
    candidate = Path(os.path.normpath(base / filename))
    if Path(filename).is_absolute() or ".." in Path(filename).parts or \
            base not in candidate.parents:
        raise InputError(f"{filename!r}: video names must stay inside {base} (no absolute "
                         f"paths, no '..'); fix the filename column")
    return candidate


# ----------------------------------------------------------------------------- input tables

def _read_table(path: Path, what: str, value_dtype=None) -> pd.DataFrame:
    """A CSV with a filename column, checked; the other columns read as `value_dtype` where
    every value is one (a byte a label instead of eight), else as pandas infers them."""
    if not path.exists():
        raise InputError(f"{path}: missing; the data folder needs {what}")
    try:
        table = None
        if value_dtype is not None:
            header = pd.read_csv(path, nrows=0).columns
            try:
                table = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={
                    column: str if column == "filename" else value_dtype for column in header})
            except (ValueError, OverflowError):   # not all of that type: checked below
                table = None
        if table is None:
            table = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False,
                                na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable CSV ({str(error).splitlines()[0]})") from None
    if "filename" not in table.columns:
        raise InputError(f"{path}: no 'filename' column (columns are: "
                         f"{', '.join(map(str, table.columns[:6]))}...); the first column must "
                         f"be 'filename'")
    names = table["filename"]
    if names.isna().any():
        row = int(np.flatnonzero(names.isna().to_numpy())[0]) + 2
        raise InputError(f"{path}: empty filename on line {row}")
    duplicated = names[names.duplicated()]
    if len(duplicated):
        raise InputError(f"{path}: filename {duplicated.iloc[0]!r} appears more than once "
                         f"({len(duplicated)} duplicates); each video must be listed once")
    for name in names:
        video_path_check(path, name)
    return table


def video_path_check(table_path: Path, name: str) -> None:
    try:
        video_path(name)
    except InputError as error:
        raise InputError(f"{table_path}: {error}") from None


def load_train_labels(require_rows: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """train_labels.csv, validated: filename + 0/1 class columns. Returns (table, classes).

    Preparing videos needs no labelled row (r80 prepares new clips in a folder whose
    train_labels.csv has only the header); training does."""
    path = input_dir() / "train_labels.csv"
    table = _read_table(path, "train_labels.csv (filename + one 0/1 column per class)",
                        np.int8)
    classes = [str(c) for c in table.columns if c != "filename"]
    if not classes:
        raise InputError(f"{path}: no class columns after 'filename'")
    if len(table) == 0 and require_rows:
        raise InputError(f"{path}: no rows; training needs labelled videos")
    values = table[classes]
    # a column holding one word is read as text: compare numbers, report the text
    numbers = values if all(pd.api.types.is_integer_dtype(kind) for kind in values.dtypes) \
        else values.apply(pd.to_numeric, errors="coerce")
    bad = ~numbers.isin([0, 1])
    if bad.to_numpy().any():
        row, column = np.argwhere(bad.to_numpy())[0]
        raise InputError(f"{path}: line {row + 2}, column {classes[column]!r}: label "
                         f"{str(values.iat[row, column])!r} is not 0 or 1")
    table[classes] = numbers.astype(np.int8)
    return table, classes


def load_submission_format(classes: list[str]) -> pd.DataFrame:
    """submission_format.csv, validated against the training classes."""
    path = input_dir() / "submission_format.csv"
    table = _read_table(path, "submission_format.csv (filename + the class columns)")
    columns = [str(c) for c in table.columns if c != "filename"]
    missing = [c for c in classes if c not in columns]
    extra = [c for c in columns if c not in classes]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing class column(s) {missing}")
        if extra:
            parts.append(f"class column(s) {extra} not in train_labels.csv")
        raise InputError(f"{path}: {'; '.join(parts)}; both CSVs need the same class columns")
    if len(table) == 0:
        logger.warning("%s has no rows: there is nothing to predict; the submission will be "
                       "empty", path)
    return table[["filename"] + classes]


def load_video_table() -> tuple[pd.DataFrame, list[str]]:
    """All videos, train then test: columns filename, split ('train'/'test'), exists.

    A video listed in both tables is an error; a listed video missing from videos/ is kept
    (it gets a failure row and a prediction); files in videos/ listed nowhere are reported.
    """
    labels, classes = load_train_labels(require_rows=False)
    submission = load_submission_format(classes)
    overlap = set(labels["filename"]) & set(submission["filename"])
    if overlap:
        raise InputError(f"{input_dir() / 'submission_format.csv'}: {len(overlap)} video(s) "
                         f"also in train_labels.csv, e.g. {sorted(overlap)[0]!r}; a video is "
                         f"either train or test")
    table = pd.concat([
        pd.DataFrame({"filename": labels["filename"], "split": "train"}),
        pd.DataFrame({"filename": submission["filename"], "split": "test"}),
    ], ignore_index=True)
    table["exists"] = [video_path(name).is_file() for name in table["filename"]]
    if videos_dir().is_dir():
        listed = set(table["filename"])
        unlisted = [p.name for p in videos_dir().iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.name not in listed]
        if unlisted:
            logger.warning("%d file(s) in %s are in neither CSV and are ignored, e.g. %s",
                           len(unlisted), videos_dir(), sorted(unlisted)[:3])
    return table, classes


# ----------------------------------------------------------------------------- failures

FAILURE_COLUMNS = ["filename", "stage", "error"]


def write_stage_failures(stage: str, failures: list[dict]) -> None:
    """Writes this stage's failures, then refreshes the merged cache/failures.csv."""
    stage_file = cache_dir() / "failures" / f"{stage}.csv"
    frame = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    frame["stage"] = stage
    write_csv(frame, stage_file)
    merge_failures()


def merge_failures() -> pd.DataFrame:
    """cache/failures.csv = union of every stage's failure file (safe to call any time)."""
    folder = cache_dir() / "failures"
    parts = [pd.read_csv(p, dtype=str, keep_default_na=False)
             for p in sorted(folder.glob("*.csv"))] if folder.is_dir() else []
    merged = (pd.concat(parts, ignore_index=True) if parts
              else pd.DataFrame(columns=FAILURE_COLUMNS))
    write_csv(merged[FAILURE_COLUMNS], cache_dir() / "failures.csv")
    return merged


def short_error(error) -> str:
    """One line of an error, for failures.csv."""
    text = str(error).strip().splitlines()
    line = text[-1] if text else type(error).__name__
    return line[:300]


# ----------------------------------------------------------------------------- scores

SCORE_COLUMNS = ["time", "stage", "model", "fold", "log_loss", "rows", "config_hash", "commit"]


def append_scores(rows: list[dict]) -> None:
    """Appends (stage, model, fold, log_loss) rows to reports/scores.csv.

    One small atomic rewrite per call; jobs of different models may append concurrently, so
    the read-modify-write is serialised with an exclusive lock file.
    """
    path = reports_dir() / "scores.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = _datetime.datetime.now().isoformat(timespec="seconds")
    commit = git_commit()
    new = pd.DataFrame([{"time": stamp, "commit": commit, **row} for row in rows],
                       columns=SCORE_COLUMNS)
    from filelock import FileLock
    with FileLock(path.with_suffix(".lock")):
        old = pd.read_csv(path, dtype=str) if path.exists() else None
        merged = new if old is None else pd.concat([old, new.astype(str)], ignore_index=True)
        write_csv(merged, path)


# ----------------------------------------------------------------------------- folds

def load_folds(filenames=None) -> pd.DataFrame:
    path = metadata_dir() / "folds.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run r11_get_metadata_table.py first")
    folds = pd.read_csv(path, dtype={"filename": str}, keep_default_na=False)
    if filenames is not None:
        folds = folds.set_index("filename").loc[list(filenames)].reset_index()
    return folds


def inner_split(sequences: np.ndarray, fraction: float, seed: int) -> tuple:
    """Training rows -> (fit rows, early-stopping rows), given each row's visit: whole visits
    on one side, a `fraction` of them held out (seeded). Model selection (epochs, rounds,
    keeping pseudo-labels) reads the held-out rows, never the fold a model predicts."""
    unique = np.unique(sequences)
    random = np.random.default_rng(seed)
    chosen = set(random.choice(unique, size=max(1, int(round(len(unique) * fraction))),
                               replace=False))
    held = np.array([s in chosen for s in sequences])
    if held.all() or not held.any():
        held = np.arange(len(sequences)) % 5 == 0
    return np.flatnonzero(~held), np.flatnonzero(held)


# ----------------------------------------------------------------------------- subprocess tools

def tool_path(name: str) -> str:
    """ffmpeg/ffprobe on PATH; a clear error when they are missing."""
    import shutil
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found on PATH: run 'make tools' (installs Debian's "
                           f"ffmpeg package) or install ffmpeg with your package manager")
    return found




# ----------------------------------------------------------------------------- job fan-out

def parse_part(text: str | None) -> tuple[int, int]:
    """`--part I/N` → (I, N): this job does items I, I+N, I+2N, … (0-based). None → (0, 1)."""
    if text is None:
        return 0, 1
    try:
        index_text, count_text = str(text).split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"--part expects I/N such as 0/4, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--part {text}: need 0 <= I < N")
    return index, count


def print_jobs(jobs: list[dict]) -> None:
    """`--list_jobs`: the jobs a script would run, as one JSON line for run_all.py."""
    print("JOBS " + json.dumps(jobs, default=str), flush=True)


def default_threads() -> int:
    """Threads a GBM job may use: TRAPSTACK_THREADS (run_all.py sets it to cores / workers,
    so parallel jobs do not oversubscribe the cores), else every core."""
    text = os.environ.get("TRAPSTACK_THREADS", "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    return os.cpu_count() or 1


def release_freed_memory() -> None:
    """Hands the heap pages freed so far back to the system (glibc's malloc_trim), so that a
    long job does not carry its set-up's high-water mark (tables read, digests made) through
    its main phase; elsewhere than glibc it does nothing."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_main(main) -> None:
    """Runs a script's main(); bad input ends in one line naming the file and the fix.

    InputError is the user's to fix, so it gets no traceback (exit code 2); anything else
    is a bug and keeps its traceback. Log lines go through tqdm while it runs, so progress
    bars are not torn apart.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm
    setup_logging()
    try:
        with logging_redirect_tqdm(loggers=[logger]):
            main()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    finally:
        skip_collection_at_exit()


def skip_collection_at_exit() -> None:
    """After main(), a process that loaded TensorFlow spends seconds collecting TensorFlow's
    object graph at interpreter exit, on every r12, r21 and r50 job of the chain, though
    every output is written and closed by then. Freezing the tracked objects
    (`gc.freeze`) leaves them out of those collections; the exit is otherwise a normal one
    (atexit handlers, exit status, messages)."""
    if "tensorflow" in sys.modules:
        import gc
        gc.freeze()
