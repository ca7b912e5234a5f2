"""bench_parallel — speed-up of `run_all.py --workers N` over one worker on r12 and r21.

Reads   <data>/input/ (default: the demo set, data/demo; build it with `make demo` or
        r00_make_demo_data.py first)
Writes  a scratch copy under bench/work/parallel/ (deleted at the end unless --keep), and
        bench/results/bench_parallel.csv (stage, workers, repeat, seconds, load average)
Cost    on the demo set and 2 cores: r12 ~1.5 min and r21 ~5 min per run; the default
        (workers 1 and 2, one repeat each) takes ~15 min.

    python bench/bench_parallel.py
    python bench/bench_parallel.py --workers_list 1,2,4 --repeats 3 --stages r21
    python bench/bench_parallel.py --models gru_effnet_lite0,lgbm_tabular   # a faster r21

Each timed run starts from the outputs of the stages before it, with the stage's own
outputs removed, and runs `run_all.py --until <stage>`: the jobs before the stage answer
"up to date" in about a second each, which both worker counts pay alike. Wall time is what
a user waits; timings on a shared machine vary, so the load average is recorded too.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from a00_common import logger, parse_config  # noqa: E402
from a00_io import write_csv  # noqa: E402

STAGES = ("r12", "r21")        # stages timed
WORKERS_LIST = (1, 2)          # worker counts compared (the first is the baseline)
REPEATS = 1                    # timed runs per (stage, workers); the median is reported
MODELS = ""                    # r21 models (comma list); empty = r21's default MODELS
KEEP = False                   # keep the scratch copy

STAGE_OUTPUTS = {"r12": ("features",), "r21": ("models", "predictions", "reports")}


def run_chain(data: Path, until: str, workers: int) -> float:
    command = [sys.executable, str(PROJECT_ROOT / "run_all.py"), "--data", str(data),
               "--until", until, "--workers", str(workers)]
    if MODELS:
        command += ["--pass", f"r21:--models {MODELS}"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"bench_parallel: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return seconds


def main() -> None:
    parse_config(globals(), __doc__)
    source = Path(os.environ.get("TRAPSTACK_DATA", PROJECT_ROOT / "data" / "demo"))
    if not (source / "input" / "train_labels.csv").exists():
        raise SystemExit(f"bench_parallel: {source}/input has no data set: run `make demo` "
                         f"(or r00_make_demo_data.py) first, or pass --data DIR")
    work = PROJECT_ROOT / "bench" / "work" / "parallel"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source / "input", work / "input")
    logger.info("bench_parallel: preparing r10/r11 in %s", work)
    run_chain(work, "r11", max(WORKERS_LIST))
    rows = []
    for stage in STAGES:
        if stage == "r21":  # r21 needs the features: make them once, untimed
            run_chain(work, "r12", max(WORKERS_LIST))
        for workers in WORKERS_LIST:
            for repeat in range(REPEATS):
                for folder in STAGE_OUTPUTS[stage]:
                    shutil.rmtree(work / folder, ignore_errors=True)
                seconds = run_chain(work, stage, workers)
                load = os.getloadavg()[0]
                rows.append({"stage": stage, "workers": workers, "repeat": repeat,
                             "seconds": round(seconds, 2), "load_average_1min": round(load, 2),
                             "cores": os.cpu_count()})
                logger.info("bench_parallel: %s with %d worker(s): %.1f s (load %.2f)", stage,
                            workers, seconds, load)
    results = PROJECT_ROOT / "bench" / "results"
    write_csv(__import__("pandas").DataFrame(rows), results / "bench_parallel.csv")
    print(f"\n{'stage':<8}{'workers':>8}{'median s':>11}{'speed-up':>10}")
    for stage in STAGES:
        baseline = None
        for workers in WORKERS_LIST:
            median = statistics.median(r["seconds"] for r in rows
                                       if r["stage"] == stage and r["workers"] == workers)
            baseline = baseline or median
            print(f"{stage:<8}{workers:>8}{median:>11.1f}{baseline / median:>9.2f}x")
    print(f"({os.cpu_count()} cores; results in {results / 'bench_parallel.csv'})")
    if not KEEP:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
