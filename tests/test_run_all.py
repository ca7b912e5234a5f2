"""run_all's local executor on GPUs: one device per GPU job, never two jobs on one device,
CPU jobs see no GPU (the chain itself is tested in test_chain.py)."""
from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import run_all


def job(key: str, gpu: bool) -> run_all.Job:
    return run_all.Job(key, "r21", [], [], gpu=gpu)


def test_gpu_jobs_get_one_free_device_each_and_cpu_jobs_none(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    executor = run_all.LocalExecutor(workers=4, gpus=["0", "1"])
    command = [sys.executable, "-c",
               "import os, time; print('device=' + os.environ['CUDA_VISIBLE_DEVICES']); "
               "time.sleep(1)"]
    first, second, third, cpu = (job("r21:a:fold0", True), job("r21:a:fold1", True),
                                 job("r21:a:fold2", True), job("r11", False))
    for each in (first, second):
        assert executor.can_start(each)
        executor.start(each, command)
    assert not executor.can_start(third), "a third GPU job while both GPUs are busy"
    assert executor.can_start(cpu)
    executor.start(cpu, command)
    finished = []
    deadline = time.time() + 30
    while len(finished) < 3 and time.time() < deadline:
        finished += executor.finished()
        time.sleep(0.05)
    assert sorted(key for key, code, _ in finished) == sorted([first.key, second.key, cpu.key])
    assert all(code == 0 for _, code, _ in finished)
    devices = {key: [line[len("device="):] for line in
                     run_all.log_path(key).read_text().splitlines()
                     if line.startswith("device=")][0]
               for key in (first.key, second.key, cpu.key)}
    assert sorted([devices[first.key], devices[second.key]]) == ["0", "1"]
    assert devices[cpu.key] == ""
    assert (first.node, cpu.node) == (f"local gpu {devices[first.key]}", "local")
    # both devices are free again
    assert executor.can_start(third)


def test_environment_of_a_job():
    environment = run_all.job_environment("3", threads=2)
    assert environment["CUDA_VISIBLE_DEVICES"] == "3"
    assert environment["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert (environment["TRAPSTACK_THREADS"], environment["OMP_NUM_THREADS"]) == ("2", "2")


def chain_options(**changes) -> SimpleNamespace:
    options = dict(until=None, force=False, passed={}, gpus=None, ray=None, model=None,
                   fold=None)
    return SimpleNamespace(**{**options, **changes})


def feature_jobs(monkeypatch, **changes) -> dict:
    """The r12 jobs of a chain with 2 parts per sharded stage, as run_all expands them."""
    chain = run_all.Chain(chain_options(**changes))
    monkeypatch.setattr(chain, "list_jobs", lambda script, arguments=(): [
        {"extractor": "hashes", "gpu": False}, {"extractor": "effnet_lite0", "gpu": True}])
    chain.build(parts=2)
    chain.jobs["expand:r12"].expand()
    return {key: job for key, job in chain.jobs.items() if key.startswith(("r12", "expand:r12"))}


def test_r10_is_one_job_of_n_decoders_here_and_n_parts_on_ray():
    local = run_all.Chain(chain_options())
    local.build(parts=2)
    assert [key for key in local.jobs if key.startswith("r10")] == ["r10"]
    assert local.jobs["r10"].arguments == ["--workers", "2"]
    assert local.jobs["r11"].depends == ["r10"]
    ray = run_all.Chain(chain_options(ray="local"))
    ray.build(parts=2)
    assert [key for key in ray.jobs if key.startswith("r10")] == ["r10:part0", "r10:part1", "r10"]
    assert ray.jobs["r10:part1"].arguments == ["--part", "1/2"]
    assert ray.jobs["r10"].depends == ["r10:part0", "r10:part1"]


def test_backbone_features_start_beside_r10_in_one_job_on_cpus(monkeypatch):
    jobs = feature_jobs(monkeypatch)
    assert jobs["expand:r12"].depends == []
    backbone = jobs["r12:effnet_lite0"]
    assert "--follow" in backbone.arguments and "--part" not in backbone.arguments
    assert (backbone.depends, backbone.follows) == ([], "r10")
    # the cheap extractors still wait for r10, in parts
    assert jobs["r12:hashes:part0"].depends == ["r10"]
    assert "--follow" not in jobs["r12:hashes:part0"].arguments
    assert "r12:effnet_lite0:part0" not in jobs


def test_on_gpus_each_backbone_part_follows_r10_and_the_join_waits_for_it(monkeypatch):
    jobs = feature_jobs(monkeypatch, gpus="0,1")
    for part in (0, 1):
        job = jobs[f"r12:effnet_lite0:part{part}"]
        assert job.gpu and "--follow" in job.arguments and job.follows == "r10"
    join = jobs["r12:effnet_lite0"]
    assert "--follow" not in join.arguments
    assert set(join.depends) == {"r12:effnet_lite0:part0", "r12:effnet_lite0:part1", "r10"}


def test_force_runs_the_backbone_after_r10(monkeypatch):
    # a follower could take a record of the previous run before r10 has rewritten it
    jobs = feature_jobs(monkeypatch, force=True)
    backbone = jobs["r12:effnet_lite0"]
    assert "--follow" not in backbone.arguments
    assert (backbone.depends, backbone.follows) == (["r10"], "")


def test_a_follower_takes_no_slot_beside_r10_and_stops_when_r10_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAPSTACK_DATA", str(tmp_path))
    chain = run_all.Chain(chain_options())
    commands = {"r10": "import time; time.sleep(2); raise SystemExit(1)",
                "r12:effnet_lite0": "import time; time.sleep(120)",
                "r11": "pass"}
    chain.add(run_all.Job("r10", "r10", ["r10"], []))
    chain.add(run_all.Job("r12:effnet_lite0", "r12", ["r12:effnet_lite0"], [], follows="r10"))
    chain.add(run_all.Job("r11", "r11", ["r11"], ["r10"]))
    monkeypatch.setattr(chain, "script_command",
                        lambda script, arguments: [sys.executable, "-c", commands[arguments[0]]])
    start = time.time()
    code = run_all.run(chain, run_all.LocalExecutor(workers=1, gpus=[]))
    assert code == 1
    assert time.time() - start < 60, "the follower was left waiting for r10's records"
    statuses = {key: job.status for key, job in chain.jobs.items()}
    assert statuses == {"r10": "failed", "r12:effnet_lite0": "blocked", "r11": "blocked"}
    # it was running (one worker, taken by r10) when r10 failed, and was stopped
    assert chain.jobs["r12:effnet_lite0"].reason.startswith("stopped")
