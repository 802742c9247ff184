"""The Slurm executor against a real slurmctld/slurmd (tests/slurm.py): outcomes, GPUs, cancel, recovery."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import OPEN_LIMITS, Server, config_yaml, submit, wait_status
from slurm import SlurmCluster

FINAL = {"completed", "failed", "cancelled"}


def slurm_server(root: Path, cluster: SlurmCluster, **extra: Any) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    return Server(
        root,
        slurm={"partition": cluster.partition, "poll_interval_s": 0.5, "conf": str(cluster.conf)},
        remote_root=str(root / "remote"),
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        cancel_grace_s=2,
        **extra,
    )


@pytest.fixture(scope="module")
def server(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = slurm_server(tmp_path_factory.mktemp("slurm-server"), slurm_cluster)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    assert server.admin_token is not None
    with server.client(server.admin_token) as c:
        yield c


def events_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/jobs/{job_id}/events").json()["events"])


def slurm_id_of(client: httpx.Client, job_id: str) -> str:
    handed = [e["event"]["scheduler_id"] for e in events_of(client, job_id) if e["type"] == "job.handed_off"]
    assert len(handed) == 1
    return str(handed[0])


def test_exit_42_is_failed_with_that_code(client: httpx.Client, slurm_cluster: SlurmCluster) -> None:
    """A job exiting 42 in Slurm ends failed, exit code 42, reason exit_nonzero, its output kept."""
    body = submit(client, "print('hello from slurm')\nraise SystemExit(42)\n", config_yaml("admin"), wait=True).json()
    assert (body["status"], body["exit_code"]) == ("failed", 42), body
    assert client.get(f"/api/status/{body['job_id']}").json()["finish_reason"] == "exit_nonzero"
    assert "hello from slurm" in body["stdout"]
    slurm_id = slurm_id_of(client, body["job_id"])
    assert slurm_cluster.jobs_named(f"gpuledger-{body['job_id']}-1") == [slurm_id]


def test_two_gpu_job_gets_two_gpus(client: httpx.Client) -> None:
    """gpus: 2 becomes --gres=gpu:2: the job sees two GPUs in CUDA_VISIBLE_DEVICES."""
    code = "import os\nprint('CVD=' + os.environ.get('CUDA_VISIBLE_DEVICES', ''))\nprint(os.environ['SLURM_JOB_ID'])\n"
    body = submit(client, code, config_yaml("admin", gpus=2), wait=True).json()
    assert body["status"] == "completed", body
    assert "CVD=0,1" in body["stdout"]
    assert slurm_id_of(client, body["job_id"]) in body["stdout"]


def test_more_gpus_than_the_largest_node_is_refused(client: httpx.Client) -> None:
    """gpus: 3 on a cluster whose largest node has 2 is a 400 naming 2."""
    answer = submit(client, "print(1)\n", config_yaml("admin", gpus=3))
    assert answer.status_code == 400
    assert "largest node has (2)" in answer.json()["detail"]


def test_memory_asked_becomes_sbatch_mem(client: httpx.Client, slurm_cluster: SlurmCluster) -> None:
    """memory: 300M becomes sbatch --mem=300M (Slurm's cgroup enforces it), and the job's /dev/shm is
    sized at half of it by the wrapper."""
    code = "import os\ns = os.statvfs('/dev/shm')\nprint(s.f_blocks * s.f_frsize)\n"
    body = submit(client, code, config_yaml("admin", memory="300M"), wait=True).json()
    assert body["status"] == "completed", body
    assert int(body["stdout"]) == 150 << 20
    assert slurm_cluster.memory_of(slurm_id_of(client, body["job_id"])) == "300M"


def test_timeout_ends_the_job_failed(client: httpx.Client) -> None:
    """A job past expected_time x MAX_JOB_TIMEOUT_MULTIPLIER is killed and ends failed, reason timeout."""
    body = submit(client, "import time\ntime.sleep(60)\n", config_yaml("admin", expected=1), wait=True).json()
    assert body["status"] == "failed", body
    assert client.get(f"/api/status/{body['job_id']}").json()["finish_reason"] == "timeout"


def test_pending_behind_another_shows_slurms_reason_and_both_cancel(
    client: httpx.Client, slurm_cluster: SlurmCluster
) -> None:
    """With both GPUs held, a second job waits in Slurm with Slurm's reason; pending and running jobs cancel."""
    big = submit(client, "import time\ntime.sleep(120)\n", config_yaml("admin", gpus=2, expected=300)).json()
    wait_status(client, big["job_id"], {"running"}, timeout=60)
    small = submit(client, "print('never')\n", config_yaml("admin", expected=60)).json()
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.get(f"/api/status/{small['job_id']}").json()
        # Slurm names the reason at once; its start estimate comes with its next scheduling pass.
        if (status.get("reason") or "").startswith("queued in Slurm (") and status.get("estimated_start_at"):
            break
        time.sleep(0.2)
    assert (status.get("reason") or "").startswith("queued in Slurm ("), status
    assert status["status"] == "pending"
    assert status["estimated_start_at"] is not None  # Slurm's own estimate for the pending job
    assert client.post(f"/api/cancel/{small['job_id']}").status_code == 200
    assert wait_status(client, small["job_id"], FINAL, timeout=30)["status"] == "cancelled"
    assert client.post(f"/api/cancel/{big['job_id']}").status_code == 200
    assert wait_status(client, big["job_id"], FINAL, timeout=60)["status"] == "cancelled"
    results = client.get(f"/api/results/{small['job_id']}").json()
    assert "never" not in results["stdout"]


def test_logs_stream_while_the_job_runs(client: httpx.Client) -> None:
    """Output printed in Slurm shows in the logs API while the job is still running."""
    code = "import time\nprint('first line', flush=True)\ntime.sleep(30)\n"
    job = submit(client, code, config_yaml("admin", expected=120)).json()
    wait_status(client, job["job_id"], {"running"}, timeout=60)
    deadline = time.monotonic() + 20
    text = ""
    while "first line" not in text and time.monotonic() < deadline:
        text = client.get(f"/api/jobs/{job['job_id']}/logs").text
        time.sleep(0.2)
    try:
        assert "first line" in text
        assert client.get(f"/api/status/{job['job_id']}").json()["status"] == "running"
    finally:
        client.post(f"/api/cancel/{job['job_id']}")
        wait_status(client, job["job_id"], FINAL, timeout=60)


def test_restart_mid_job_collects_it_once(server: Server, client: httpx.Client, slurm_cluster: SlurmCluster) -> None:
    """A server stopped and started while its job runs re-attaches by Slurm id and collects it once."""
    code = "import time\nprint('before', flush=True)\ntime.sleep(6)\nprint('after')\n"
    job = submit(client, code, config_yaml("admin", expected=60)).json()
    wait_status(client, job["job_id"], {"running"}, timeout=60)
    server.stop()
    server.start()
    body = wait_status(client, job["job_id"], FINAL, timeout=90)
    assert body["status"] == "completed"
    results = client.get(f"/api/results/{job['job_id']}").json()
    assert results["stdout"].count("before") == 1
    assert "after" in results["stdout"]
    types = [e["type"] for e in events_of(client, job["job_id"])]
    assert types.count("job.finished") == 1
    assert types.count("job.handed_off") == 1
    assert len(slurm_cluster.jobs_named(f"gpuledger-{job['job_id']}-1")) == 1


def test_controller_down_twenty_seconds_loses_no_job(client: httpx.Client, slurm_cluster: SlurmCluster) -> None:
    """slurmctld stopped for 20 s while a job runs: the job stays running, then completes."""
    job = submit(client, "import time\ntime.sleep(12)\nprint('survived')\n", config_yaml("admin", expected=120)).json()
    wait_status(client, job["job_id"], {"running"}, timeout=60)
    slurm_cluster.stop_controller()
    try:
        time.sleep(20)
        assert client.get(f"/api/status/{job['job_id']}").json()["status"] in ("running", "completed")
    finally:
        slurm_cluster.start_controller()
    body = wait_status(client, job["job_id"], FINAL, timeout=90)
    assert body["status"] == "completed"
    assert "survived" in client.get(f"/api/results/{job['job_id']}").json()["stdout"]


def test_nodes_show_partitions_and_slurm_nodes(client: httpx.Client, slurm_cluster: SlurmCluster) -> None:
    """/api/nodes and the dashboard carry sinfo's partitions and nodes with their GPUs and state."""
    deadline = time.monotonic() + 30
    slurm = client.get("/api/nodes").json()["slurm"]
    while not slurm["partitions"] and time.monotonic() < deadline:  # sinfo is re-read every few seconds
        time.sleep(0.5)
        slurm = client.get("/api/nodes").json()["slurm"]
    assert [p["name"] for p in slurm["partitions"]] == [slurm_cluster.partition]
    assert [(n["name"], n["gpus"]) for n in slurm["nodes"]] == [(slurm_cluster.node, 2)]
    assert client.get("/api/dashboard").json()["slurm"]["nodes"][0]["state"]
    panel = client.get("/dashboard/data/nodes").json()["slurm"]  # the web dashboard's nodes panel
    assert [n["name"] for n in panel["nodes"]] == [slurm_cluster.node]


def test_kill_between_sbatch_and_append_submits_once(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """A server killed -9 right after sbatch, before job.handed_off, finds the job by name on restart."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "server.pid"
    # sbatch as usual, then the server dies at once: the append that would follow never happens.
    (bin_dir / "sbatch").write_text(
        f'#!/bin/bash\n/usr/bin/sbatch "$@"\nrc=$?\nif [ -f {pid_file} ]; then kill -9 "$(cat {pid_file})"; fi\n'
        "exit $rc\n"
    )
    (bin_dir / "sbatch").chmod(0o755)
    srv = slurm_server(tmp_path / "srv", slurm_cluster)
    srv.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    srv.start()
    try:
        with srv.client(srv.admin_token) as c:
            pid_file.write_text(str(srv.proc.pid if srv.proc else 0))
            job = submit(c, "print('once')\n", config_yaml("admin", expected=60)).json()
        assert srv.proc is not None
        srv.proc.wait(timeout=60)
        pid_file.unlink()
        name = f"gpuledger-{job['job_id']}-1"
        assert len(slurm_cluster.jobs_named(name)) == 1
        srv.start()
        with srv.client(srv.admin_token) as c:
            body = wait_status(c, job["job_id"], FINAL, timeout=90)
            assert body["status"] == "completed"
            assert slurm_id_of(c, job["job_id"]) == slurm_cluster.jobs_named(name)[0]
        assert len(slurm_cluster.jobs_named(name)) == 1
    finally:
        srv.stop()
