"""CPU-only jobs (``gpus: 0``) on nodes without GPUs, and GPU time charged only for GPUs a job held."""

from __future__ import annotations

from typing import Any

from server import config_yaml, submit, wait_status

from executors.dispatcher import place
from ledger.domain.events import Blob, JobFinished
from ledger.domain.jobs import JobState
from ledger.domain.nodes import takes
from ledger.domain.quotas import charges_of

CVD = "import os\nprint('CVD=' + os.environ.get('CUDA_VISIBLE_DEVICES', '-'))\n"


def job(job_id: str, gpus: int, **fields: Any) -> JobState:
    return JobState(
        job_id=job_id,
        user_id="u",
        competition_id="c",
        project_id="p",
        expected_time_s=60,
        code=Blob(digest="0" * 64, size=0),
        position=1,
        created_at=0,
        gpus=gpus,
        **({"phase": "queued"} | fields),
    )


def test_which_node_takes_which_job():
    """CPU-only jobs only where there are no GPUs; GPU jobs only on GPU nodes, unless no node has GPUs."""
    assert (takes(0, False, True), takes(0, True, True)) == (True, False)
    assert (takes(1, True, True), takes(1, False, True)) == (True, False)
    assert takes(2, False, False)  # a machine without a driver still runs GPU jobs (development)


def test_placement_keeps_cpu_and_gpu_jobs_apart():
    """A GPU job skips a free GPU-less node for a GPU node (or waits for one); a CPU job takes the GPU-less one."""
    gpu_job, cpu_job = job("g", 1), job("c", 0)
    free, sizes, gpu_less = {"cpu": [0], "gpu": [0]}, {"cpu": 1, "gpu": 1}, frozenset({"cpu"})
    assert place([gpu_job], free, sizes, gpu_less, True) == (gpu_job, "gpu", [0])
    assert place([cpu_job], free, sizes, gpu_less, True) == (cpu_job, "cpu", [0])
    assert place([gpu_job], {"cpu": [0]}, sizes, gpu_less, True) is None
    assert place([cpu_job], {"gpu": [0]}, sizes, gpu_less, True) is None


def test_an_attempt_on_a_gpu_less_node_charges_no_gpu_time():
    """The quota charge of an attempt is GPUs held x run time: 0 for a job whose node had no GPU."""
    ran = job("j", 1, started_at=0, status="running", phase="running", node="n")
    finished = JobFinished(job_id="j", status="completed", reason="exit_zero", attempt=1)
    assert [c.gpu_us for c in charges_of(ran, ran, finished, 10_000_000)] == [10_000_000]
    held_none = job("j", 1, started_at=0, status="running", phase="running", node="n", gpus_held=0)
    assert [c.gpu_us for c in charges_of(held_none, held_none, finished, 10_000_000)] == [0]


def test_gpus_0_runs_on_the_gpu_less_local_node_and_costs_no_gpu_time(server_factory):
    """On a local runner without GPUs, ``gpus: 0`` is accepted, runs without CUDA_VISIBLE_DEVICES, and
    neither it nor a ``gpus: 1`` job there is charged GPU-hours."""
    server = server_factory(local_gpus=0, max_active_jobs_per_user=5, rate_limit_per_minute=0)
    with server.client(server.token("cora")) as cora:
        answer = submit(cora, CVD, config_yaml("cora", gpus=0))
        assert answer.status_code == 200, answer.text
        cpu = answer.json()["job_id"]
        assert wait_status(cora, cpu, {"completed", "failed"})["status"] == "completed"
        assert "CVD=-" in cora.get(f"/api/results/{cpu}").json()["stdout"]
        gpu = submit(cora, "import time\ntime.sleep(1)\n", config_yaml("cora")).json()["job_id"]
        wait_status(cora, gpu, {"completed", "failed"})
        dispatched = [e for e in cora.get(f"/api/jobs/{gpu}/events").json()["events"] if e["type"] == "job.dispatched"]
        assert dispatched[0]["event"]["gpus_held"] == 0
        quota = {q["quota"]: q["used"] for q in cora.get("/api/quota").json()["quotas"]}
    assert quota["gpu_hours"] == 0
    with server.client(server.admin_token) as admin:
        assert admin.get("/api/dashboard").json()["fairshare"]["users"]["cora"]["usage_gpu_hours"] == 0


def test_gpus_0_is_refused_where_every_node_has_gpus(server_factory):
    """With the local node declared to have a GPU, ``gpus: 0`` is a 400 that says why."""
    server = server_factory(local_gpus=1)
    with server.client(server.token("gail")) as gail:
        answer = submit(gail, "print(1)\n", config_yaml("gail", gpus=0))
    assert answer.status_code == 400
    assert "CPU-only" in answer.json()["detail"]
