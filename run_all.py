"""run_all — the whole chain as a DAG of jobs, on one core, N local workers, GPUs or Ray.

Reads   input/ (through the scripts), and each script's `--list_jobs` answer
Writes  what every rNN script writes, plus logs/<job>.log (one per job) and
        logs/run_all.csv (job, status, outcome: redone / up to date, seconds, node, log,
        reason) of the last run
Cost    the sum of the scripts' costs divided by the parallelism; ~1 s per job of overhead
        (a fresh Python process each).

    python run_all.py                                   # demo data, one job at a time
    python run_all.py --data /path/to/pri-matrix --workers 4
    python run_all.py --workers 4 --gpus 0,1,2,3        # GPU jobs spread over 4 GPUs
    python run_all.py --ray                             # a local Ray instance
    python run_all.py --ray auto                        # join the cluster (or set RAY_ADDRESS)
    python run_all.py --until r40 --pass "r21:--epochs 5"   # stop after r40; extra script args

Jobs, in index order (same index = independent):
    r10 (--workers N; with Ray, parts --part I/N → r10 join) → r11
                           → r12 <extractor> parts → r12 <extractor> join
    r12 <backbone> parts run *beside* r10 (r12 --follow): each takes a video's frames as
        soon as r10 has recorded them, so the forward pass overlaps decoding and
        TensorFlow's start-up hides behind r10's (FOLLOW; not with --force)
    r21 <model> fold k (needs r11 and the extractors the model reads) → r31 <model>, r40 <model>
    r48 (needs every r31/r40) → r50 <stacker> → r60
Every job's script decides from stamps whether its work is current: a unit of work is
skipped ("[up to date]") only when what it was made from is unchanged (rows, input contents,
settings), so a rerun after a crash, a kill or a change of input/ redoes exactly what
changed, and the job table's `outcome` column says which jobs redid work. A failed job stops
the jobs that depend on it, with its log file named; independent jobs still finish; the exit
code is 1 if anything failed.

Scale-out. `--workers N` runs N job processes at once (r10 runs N decoder processes; the
cheap r12 extractors are split into N parts; with Ray, r10 too).
`--gpus 0,1` gives each GPU job (backbone features, Keras training) one device through
CUDA_VISIBLE_DEVICES, at most one job per GPU at a time. `--ray [ADDRESS]` makes every
job a Ray task that declares its CPUs (and a GPU where the cluster has them); every node
must see the data folder and the project at the same paths on a shared POSIX file system
(NFS with locking, Lustre, CephFS; not a bucket mount, where a rename is not atomic) and
have the project's venv at the same path.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from a00_common import (PROJECT_ROOT, data_dir, logger, parse_config, preprocess_done_path,
                        preprocess_plan_path, run_main)
from a00_io import write_csv

PARTS = 0                      # r10/r12 parts per stage; 0 = one per worker (or Ray CPU)
POLL_SECONDS = 0.2             # how often finished jobs are collected
LOG_TAIL_LINES = 8             # lines of a failed job's log shown on the console
JOB_CPUS = 1                   # CPUs a Ray task declares
FOLLOW = True                  # backbone feature jobs start with r10 (r12 --follow); a
                               # follower takes no worker slot while r10 decodes

SCRIPTS = {
    "r10": "r10_preprocess_data.py", "r11": "r11_get_metadata_table.py",
    "r12": "r12_extract_features.py", "r21": "r21_train_models.py", "r31": "r31_validate.py",
    "r40": "r40_process_test.py", "r48": "r48_neighbor_features.py",
    "r50": "r50_second_level.py", "r60": "r60_ensemble.py",
}


@dataclasses.dataclass
class Job:
    key: str                       # "r21:gru_effnet_lite0:fold3"
    script: str                    # "r21"
    arguments: list                # after the script's name
    depends: list                  # job keys, or patterns such as "r31:*"
    gpu: bool = False              # uses a GPU when one is given
    follows: str = ""              # runs beside this job (r12 --follow beside "r10")
    expand: object = None          # for expansion jobs: a function run in the driver
    status: str = "waiting"        # waiting, running, done, failed, blocked
    seconds: float = 0.0
    node: str = ""
    reason: str = ""
    outcome: str = ""              # "redone" (it made something) or "up to date", from its log

    @property
    def index(self) -> int:
        return int(self.script[1:])


class Chain:
    """The DAG: jobs by key, expanded as stages learn what they have to do."""

    def __init__(self, options):
        self.options = options
        self.jobs: dict[str, Job] = {}

    # --------------------------------------------------------------------- building
    def add(self, job: Job) -> None:
        if self.options.until is not None and job.index > self.options.until:
            return
        self.jobs[job.key] = job

    def script_command(self, script: str, arguments: list) -> list:
        command = [sys.executable, str(PROJECT_ROOT / SCRIPTS[script]), "--data",
                   str(data_dir())] + list(arguments)
        return command + self.options.passed.get(script, [])

    def list_jobs(self, script: str, arguments: list = ()) -> list:
        """Asks a script which jobs a plain run of it would do (`--list_jobs`)."""
        command = self.script_command(script, [*arguments, "--list_jobs"])
        result = subprocess.run(command, capture_output=True, text=True,
                                env=job_environment(None))
        lines = [line for line in result.stdout.splitlines() if line.startswith("JOBS ")]
        if result.returncode != 0 or not lines:
            reason = (result.stderr.strip().splitlines() or ["no JOBS line"])[-1]
            raise RuntimeError(f"{SCRIPTS[script]} --list_jobs failed: {reason}")
        return json.loads(lines[-1][5:])

    def build(self, parts: int) -> None:
        force = ["--force"] if self.options.force else []
        if parts > 1 and self.split_preprocessing:
            for part in range(parts):
                self.add(Job(f"r10:part{part}", "r10", ["--part", f"{part}/{parts}", *force], []))
            self.add(Job("r10", "r10", [], [f"r10:part{p}" for p in range(parts)]))
        else:
            workers = ["--workers", str(parts)] if parts > 1 else []
            self.add(Job("r10", "r10", [*workers, *force], []))
        self.add(Job("r11", "r11", force, ["r10"]))
        self.add(Job("expand:r12", "r12", [], [] if self.following else ["r10"],
                     expand=self.expand_features(parts)))
        self.add(Job("expand:r21", "r21", [], ["r11", "expand:r12"], expand=self.expand_models))
        self.add(Job("r48", "r48", force, ["expand:r21", "r31:*", "r40:*"]))
        self.add(Job("expand:r50", "r50", [], [], expand=self.expand_stackers))
        self.add(Job("r60", "r60", force, ["expand:r50", "r50:*"]))

    @property
    def following(self) -> bool:
        """Backbone feature jobs run beside r10. Not with --force: a follower could take a
        record of the previous run before r10 has rewritten it."""
        return FOLLOW and not self.options.force

    @property
    def split_preprocessing(self) -> bool:
        """r10 is split into parts only for Ray, where each part is a task on some node. On
        one machine a single r10 with --workers N runs the same N decoder processes without
        N more parents and forkservers and a join job."""
        return self.options.ray is not None

    @property
    def split_backbones(self) -> bool:
        """Backbone jobs are split into parts only for GPUs or a Ray cluster. On CPUs one
        TensorFlow process already uses every core, so parts gain little (bench_parallel)
        and each pays TensorFlow's start-up again."""
        return bool(self.options.gpus) or self.options.ray is not None

    def expand_features(self, parts: int):
        def expand() -> None:
            force = ["--force"] if self.options.force else []
            for entry in self.list_jobs("r12"):
                extractor, gpu = entry["extractor"], entry.get("gpu", False)
                # the backbones are the only extractors worth overlapping with decoding
                # (the others take a few ms a video once the frames are there)
                follow = self.following and gpu
                beside = {"depends": [], "follows": "r10"} if follow else {"depends": ["r10"]}
                extra = ["--follow"] if follow else []
                part_keys = []
                if parts > 1 and (self.split_backbones or not gpu):
                    for part in range(parts):
                        key = f"r12:{extractor}:part{part}"
                        part_keys.append(key)
                        self.add(Job(key, "r12", ["--extractor", extractor, "--part",
                                                  f"{part}/{parts}", *extra, *force],
                                     gpu=gpu, **beside))
                    # the join reads r10's index, so it waits for r10 in any case
                    self.add(Job(f"r12:{extractor}", "r12", ["--extractor", extractor],
                                 part_keys + ["r10"]))
                else:
                    self.add(Job(f"r12:{extractor}", "r12",
                                 ["--extractor", extractor, *extra, *force], gpu=gpu, **beside))
        return expand

    def expand_models(self) -> None:
        force = ["--force"] if self.options.force else []
        models = {}
        selection = (["--model", self.options.model] if self.options.model else []) + \
            (["--fold", str(self.options.fold)] if self.options.fold is not None else [])
        for entry in self.list_jobs("r21", selection):
            model, fold = entry["model"], int(entry["fold"])
            models.setdefault(model, [])
            key = f"r21:{model}:fold{fold}"
            models[model].append(key)
            for extractor in entry.get("extractors", []):
                if f"r12:{extractor}" not in self.jobs:
                    # a model reads features r12's EXTRACTORS leave out: extract them too
                    self.add(Job(f"r12:{extractor}", "r12", ["--extractor", extractor, *force],
                                 ["r10"], gpu=extractor not in ("hashes", "audio_logmel")))
            self.add(Job(key, "r21", ["--model", model, "--fold", str(fold), *force],
                         ["r11"] + [f"r12:{x}" for x in entry.get("extractors", [])],
                         gpu=entry.get("gpu", False)))
        for model, fold_keys in models.items():
            self.add(Job(f"r31:{model}", "r31", ["--model", model, *force], fold_keys,
                         gpu=False))
            self.add(Job(f"r40:{model}", "r40", ["--model", model, *force], fold_keys,
                         gpu=False))

    def expand_stackers(self) -> None:
        force = ["--force"] if self.options.force else []
        for entry in self.list_jobs("r50"):
            self.add(Job(f"r50:{entry['stacker']}", "r50",
                         ["--stacker", entry["stacker"], *force],
                         ["r48", "expand:r12", "r12:*", "r31:*", "r40:*"],
                         gpu=entry.get("gpu", False)))

    # --------------------------------------------------------------------- scheduling
    def followed(self, job: Job) -> list[Job]:
        """The jobs `job` runs beside: those named by `follows` (the parts of r10 too)."""
        if not job.follows:
            return []
        return [other for key, other in self.jobs.items()
                if key == job.follows or key.startswith(job.follows + ":part")]

    def dependencies(self, job: Job) -> list[Job]:
        found = []
        for pattern in job.depends:
            if any(ch in pattern for ch in "*?["):
                found += [other for key, other in self.jobs.items()
                          if fnmatch.fnmatch(key, pattern) and key != job.key]
            elif pattern in self.jobs:
                found.append(self.jobs[pattern])
        return found

    def state(self, job: Job) -> str:
        """'ready', 'wait', or 'blocked' (a dependency, or the job it runs beside, failed)."""
        for other in self.followed(job) + self.dependencies(job):
            if other.status in ("failed", "blocked"):
                job.reason = other.reason if other.status == "blocked" else \
                    f"needs {other.key}, which failed (log: {log_path(other.key)})"
                return "blocked"
            if other.status != "done" and other not in self.followed(job):
                return "wait"
        return "ready"


def log_path(key: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    return data_dir() / "logs" / f"{safe}.log"


def job_environment(gpu: str | None, threads: int | None = None) -> dict:
    environment = dict(os.environ)
    if threads:
        # N jobs at once share the cores: GBMs and OpenMP use their share, not every core
        environment["TRAPSTACK_THREADS"] = str(threads)
        environment["OMP_NUM_THREADS"] = str(threads)
    environment["TRAPSTACK_DATA"] = str(data_dir())
    environment.setdefault("PYTHONUNBUFFERED", "1")
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environment["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    if gpu is not None:
        environment["CUDA_VISIBLE_DEVICES"] = gpu
    return environment


def _die_with_parent() -> None:
    """Child processes get SIGKILL when run_all dies, so a killed run leaves no orphans."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------------------- executors

class LocalExecutor:
    """Job processes on this machine; GPU jobs take one free device each."""

    def __init__(self, workers: int, gpus: list[str]):
        self.workers, self.free_gpus = workers, list(gpus)
        self.threads = max((os.cpu_count() or 1) // workers, 1)
        self.has_gpus = bool(gpus)
        self.running: dict[str, tuple] = {}

    def can_start(self, job: Job, riders: int = 0) -> bool:
        """`riders`: running followers whose r10 still runs; they take no worker slot."""
        if len(self.running) - riders >= self.workers and not job.follows:
            return False
        return not (job.gpu and self.has_gpus and not self.free_gpus)

    def start(self, job: Job, command: list) -> None:
        gpu = None
        if self.has_gpus:
            gpu = self.free_gpus.pop(0) if job.gpu else ""  # CPU jobs see no GPU
        path = log_path(job.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w")
        handle.write("$ " + shlex.join(command) + "\n")
        handle.flush()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env=job_environment(gpu, self.threads), cwd=PROJECT_ROOT,
                                   preexec_fn=_die_with_parent)
        self.running[job.key] = (process, handle, gpu, time.time())
        job.node = "local" + (f" gpu {gpu}" if gpu else "")

    def finished(self) -> list[tuple[str, int, float]]:
        done = []
        for key, (process, handle, gpu, start) in list(self.running.items()):
            code = process.poll()
            if code is None:
                continue
            handle.close()
            if gpu:
                self.free_gpus.append(gpu)
            del self.running[key]
            done.append((key, code, time.time() - start))
        return done

    def kill(self, key: str) -> None:
        """Ends a running job; it is reported by finished() with its (negative) exit code."""
        if key in self.running:
            self.running[key][0].kill()

    def stop(self) -> None:
        for process, handle, _, _ in self.running.values():
            process.kill()
            handle.close()


class RayExecutor:
    """Every job a Ray task: declared CPUs/GPU, outputs on the shared data folder."""

    def __init__(self, address: str | None, cpus: int):
        import ray
        self.ray = ray
        if address in (None, "", "local"):
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        resources = ray.cluster_resources()
        self.cluster_cpus = int(resources.get("CPU", 1))
        self.cluster_gpus = int(resources.get("GPU", 0))
        self.slots = max(self.cluster_cpus // JOB_CPUS, 1)
        self.task = ray.remote(_run_job_on_node)
        self.running: dict = {}
        logger.info("run_all: Ray cluster with %d CPU(s), %d GPU(s)", self.cluster_cpus,
                    self.cluster_gpus)

    def can_start(self, job: Job, riders: int = 0) -> bool:
        return len(self.running) - riders < self.slots or bool(job.follows)

    def start(self, job: Job, command: list) -> None:
        gpus = 1 if (job.gpu and self.cluster_gpus) else 0
        reference = self.task.options(num_cpus=JOB_CPUS, num_gpus=gpus, max_retries=0).remote(
            command, job_environment(None, JOB_CPUS), str(log_path(job.key)))
        self.running[reference] = job.key
        job.node = "ray"

    def finished(self) -> list[tuple[str, int, float]]:
        if not self.running:
            return []
        ready, _ = self.ray.wait(list(self.running), num_returns=len(self.running), timeout=0)
        done = []
        for reference in ready:
            key = self.running.pop(reference)
            try:
                record = self.ray.get(reference)
            except Exception as error:  # noqa: BLE001 - a lost node is that job's failure
                record = {"returncode": -1, "seconds": 0.0, "node": f"lost ({error})"}
            done.append((key, record["returncode"], record["seconds"], record["node"]))
        return done

    def kill(self, key: str) -> None:
        for reference, running_key in self.running.items():
            if running_key == key:
                self.ray.cancel(reference, force=True)

    def stop(self) -> None:
        for reference in self.running:
            self.ray.cancel(reference, force=True)
        self.ray.shutdown()


def _run_job_on_node(command: list, environment: dict, log_file: str) -> dict:
    """A Ray task: runs one script on whichever node Ray chose; returns a status record."""
    import socket
    start = time.time()
    environment = {**environment,
                   # Ray sets the GPU ids it granted this task in this process' environment
                   "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as handle:
        handle.write("$ " + shlex.join(command) + f"\n# node {socket.gethostname()}\n")
        handle.flush()
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT,
                              env=environment, cwd=str(PROJECT_ROOT)).returncode
    return {"returncode": code, "seconds": time.time() - start, "node": socket.gethostname()}


# ----------------------------------------------------------------------------- driver

def job_outcome(path: Path) -> str:
    """"redone" when the job's log has a "[redo]" line (a unit of work was made), "up to
    date" when it has only "[up to date]" ones (a00_common.log_outcome writes both)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    if "[redo]" in text:
        return "redone"
    return "up to date" if "[up to date]" in text else ""


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def run(chain: Chain, executor) -> int:
    from tqdm import tqdm
    started = time.time()
    bar = tqdm(total=0, desc="run_all", unit="job", dynamic_ncols=True, disable=None)
    while True:
        for finished in executor.finished():
            key, code, seconds = finished[:3]
            job = chain.jobs[key]
            job.seconds = seconds
            if len(finished) > 3:
                job.node = finished[3]
            if code == 0:
                job.status = "done"
                job.outcome = job_outcome(log_path(key))
                logger.info("done    %-40s %7.1f s  %s", key, seconds, job.outcome)
            elif job.reason.startswith("stopped"):
                job.status = "blocked"
                logger.error("STOPPED %-40s %s", key, job.reason)
            else:
                job.status = "failed"
                job.reason = f"exit code {code}; log: {log_path(key)}"
                logger.error("FAILED  %-40s exit code %s; log: %s\n%s", key, code,
                             log_path(key), tail(log_path(key), LOG_TAIL_LINES))
            bar.update(1)
        for job in chain.jobs.values():
            # a follower waits for r10's records: once r10 has failed they never come
            failed = [other.key for other in chain.followed(job)
                      if other.status in ("failed", "blocked")]
            if job.status == "running" and failed and not job.reason:
                job.reason = f"stopped: it ran beside {failed[0]}, which failed"
                executor.kill(job.key)
        progressed = True
        while progressed:
            progressed = False
            riders = sum(1 for job in chain.jobs.values() if job.status == "running" and any(
                other.status in ("waiting", "running") for other in chain.followed(job)))
            for job in list(chain.jobs.values()):
                if job.status != "waiting":
                    continue
                state = chain.state(job)
                if state == "blocked":
                    job.status = "blocked"
                    logger.error("SKIPPED %-40s %s", job.key, job.reason)
                    bar.update(1)
                    progressed = True
                elif state == "ready" and job.expand is not None:
                    try:
                        job.expand()
                        job.status = "done"
                    except Exception as error:  # noqa: BLE001 - stops its dependants only
                        job.status = "failed"
                        job.reason = str(error)
                        logger.error("FAILED  %-40s %s", job.key, error)
                    bar.update(1)
                    progressed = True
                elif state == "ready" and executor.can_start(job, riders):
                    job.status = "running"
                    executor.start(job, chain.script_command(job.script, job.arguments))
                    progressed = True
            bar.total = len(chain.jobs)
            bar.refresh()
        if not any(job.status in ("waiting", "running") for job in chain.jobs.values()):
            break
        if not any(job.status == "running" for job in chain.jobs.values()) and \
                not any(chain.state(job) == "ready" for job in chain.jobs.values()
                        if job.status == "waiting"):
            stuck = [job.key for job in chain.jobs.values() if job.status == "waiting"]
            logger.error("run_all: jobs wait on nothing that can run: %s", stuck)
            for key in stuck:
                chain.jobs[key].status = "blocked"
                chain.jobs[key].reason = "unresolvable dependency"
            break
        time.sleep(POLL_SECONDS)
    bar.close()
    return summarise(chain, time.time() - started)


def summarise(chain: Chain, seconds: float) -> int:
    import pandas as pd
    rows = [{"job": job.key, "status": job.status, "outcome": job.outcome,
             "seconds": round(job.seconds, 2), "node": job.node,
             "log": str(log_path(job.key)) if not job.expand else "",
             "reason": job.reason} for job in chain.jobs.values()]
    table = pd.DataFrame(rows)
    write_csv(table, data_dir() / "logs" / "run_all.csv")
    redone = table[table["outcome"] == "redone"]
    logger.info("run_all: %d job(s) redid work (%.0f s): %s; %d were up to date",
                len(redone), redone["seconds"].sum(), ", ".join(redone["job"]) or "none",
                int((table["outcome"] == "up to date").sum()))
    counts = table["status"].value_counts().to_dict()
    by_stage = table.assign(stage=table["job"].str.split(":").str[0].str.replace(
        "expand", "list")).groupby("stage")["seconds"].sum()
    stage_text = ", ".join(f"{stage} {value:.0f} s" for stage, value in by_stage.items()
                           if value > 0)
    logger.info("run_all: %d job(s) in %.0f s: %s. Job time by stage: %s. Table: %s",
                len(table), seconds, ", ".join(f"{v} {k}" for k, v in counts.items()),
                stage_text, data_dir() / "logs" / "run_all.csv")
    failed = table[table["status"].isin(["failed", "blocked"])]
    if len(failed):
        logger.error("run_all: %d job(s) failed or were skipped; first: %s (%s)", len(failed),
                     failed.iloc[0]["job"], failed.iloc[0]["reason"])
        return 1
    return 0


def parse_passed(values: list[str]) -> dict:
    """--pass "r21:--epochs 5 --models a,b" → {"r21": ["--epochs", "5", ...]}."""
    passed = {}
    for value in values or []:
        script, _, arguments = value.partition(":")
        if script not in SCRIPTS:
            raise SystemExit(f"run_all: --pass {value!r}: the script must be one of "
                             f"{', '.join(SCRIPTS)} (as in 'r21:--epochs 5')")
        passed.setdefault(script, []).extend(shlex.split(arguments))
    return passed


def main() -> None:
    args = parse_config(globals(), __doc__, extra_options={
        "gpus": (None, "comma-separated GPU ids; each GPU job gets one (CUDA_VISIBLE_DEVICES)"),
        "ray": {"nargs": "?", "const": "local", "default": None, "metavar": "ADDRESS",
                "help": "run jobs as Ray tasks: a local instance, or join ADDRESS "
                        "('auto' or host:port; RAY_ADDRESS also works)"},
        "until": {"default": None, "metavar": "rNN",
                  "help": "stop after this stage, e.g. r40"},
        "pass": {"action": "append", "default": [], "metavar": "SCRIPT:ARGS",
                 "help": "extra arguments for every job of a script, e.g. 'r21:--epochs 5' "
                         "(repeatable)"}})
    args.passed = parse_passed(getattr(args, "pass"))
    if args.until is not None:
        if args.until not in SCRIPTS:
            raise SystemExit(f"run_all: --until must be one of {', '.join(SCRIPTS)}")
        args.until = int(args.until[1:])
    if args.fold is not None and (args.until is None or args.until > 21):
        # r31 on needs every fold of a model: one fold is a training job only
        logger.info("run_all: --fold %d: stopping after r21", args.fold)
        args.until = 21
    if args.workers < 1:
        raise SystemExit("run_all: --workers must be at least 1")
    if args.ray is None and os.environ.get("RAY_ADDRESS"):
        args.ray = os.environ["RAY_ADDRESS"]
    gpus = [g.strip() for g in (args.gpus or "").split(",") if g.strip()]
    if args.ray is not None:
        try:
            executor = RayExecutor(args.ray, args.workers if args.ray == "local" else 0)
        except ImportError:
            raise SystemExit("run_all: --ray needs Ray: pip install -r requirements-ray.txt"
                             ) from None
        parallel = executor.slots
    else:
        executor = LocalExecutor(args.workers, gpus)
        parallel = args.workers
    parts = PARTS or parallel
    chain = Chain(args)
    chain.build(parts)
    if chain.following:
        # a follower must never take the previous run's plan for this run's
        preprocess_plan_path().unlink(missing_ok=True)
        preprocess_done_path().unlink(missing_ok=True)
    logger.info("run_all: data %s, %s, %d part(s) per sharded stage", data_dir(),
                f"Ray ({args.ray})" if args.ray else f"{args.workers} worker(s)"
                + (f", GPUs {','.join(gpus)}" if gpus else ""), parts)
    try:
        code = run(chain, executor)
    except KeyboardInterrupt:
        executor.stop()
        raise SystemExit("run_all: interrupted; rerun the same command to resume") from None
    if args.ray is not None:
        executor.stop()
    raise SystemExit(code)


if __name__ == "__main__":
    run_main(main)
