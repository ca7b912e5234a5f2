"""run_all's local executor on GPUs: one device per GPU job, never two jobs on one device,
CPU jobs see no GPU (the chain itself is tested in test_chain.py)."""
from __future__ import annotations

import sys
import time

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
