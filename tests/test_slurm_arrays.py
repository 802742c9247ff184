"""Arrays on the Slurm executor (a real slurmctld/slurmd, tests/slurm.py): each task is handed over
as its own sbatch job and sees its index and parameters; a bulk cancel reaches Slurm's jobs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import OPEN_LIMITS, Server, config_yaml
from slurm import SlurmCluster

CODE = "import os, json, time\nprint(os.environ['SLURM_ARRAY_TASK_ID'], json.load(open('params.json'))['x'])\n"


def test_a_sweep_runs_as_slurm_jobs_and_a_bulk_cancel_reaches_them(
    slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two sweep tasks complete with their own index and parameter; a running array's cancel ends its
    Slurm jobs."""
    root: Path = tmp_path_factory.mktemp("slurm-arrays")
    server = Server(
        root,
        slurm={"partition": slurm_cluster.partition, "poll_interval_s": 0.5, "conf": str(slurm_cluster.conf)},
        remote_root=str(root / "remote"),
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        cancel_grace_s=2,
    )
    server.start()
    try:
        assert server.admin_token is not None
        with server.client(server.admin_token) as client:
            files = {
                "code": ("s.py", CODE.encode()),
                "config_file": ("c.yaml", config_yaml("admin") + b"sweep: {x: [a, b]}\n"),
            }
            array_id = client.post("/api/arrays", files=files).json()["array_id"]
            body = wait_done(client, array_id)
            outputs = [client.get(f"/api/results/{t['job_id']}").json()["stdout"] for t in body["task_list"]]
            assert outputs == ["0 a\n", "1 b\n"]
            files = {
                "code": ("s.py", b"import time\ntime.sleep(60)\n"),
                "config_file": ("c.yaml", config_yaml("admin")),
            }
            sleeper = client.post("/api/arrays", params={"array": "0-2%1"}, files=files).json()["array_id"]
            deadline = time.monotonic() + 30
            while client.get(f"/api/arrays/{sleeper}").json()["counts"]["running"] < 1:
                assert time.monotonic() < deadline, "no task ran"
                time.sleep(0.2)
            assert client.post(f"/api/arrays/{sleeper}/cancel").json()["cancelled"] == 3
            tasks = wait_done(client, sleeper)["task_list"]
            assert [t["status"] for t in tasks] == ["cancelled"] * 3
            events = client.get(f"/api/jobs/{tasks[0]['job_id']}/events").json()["events"]
            handed = [e["event"]["scheduler_id"] for e in events if e["type"] == "job.handed_off"]
        assert len(handed) == 1  # the task that ran was its own sbatch job, and it is gone from Slurm's queue
        assert slurm_cluster.command("squeue", "-h", "-t", "pending,running", "-j", handed[0]).stdout.strip() == ""
    finally:
        server.stop()


def wait_done(client: httpx.Client, array_id: str, timeout: float = 40) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (body := client.get(f"/api/arrays/{array_id}").json())["done"] is not True:
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    return dict(body)
