"""GPU telemetry end to end on a real SSH node (loopback sshd through the jump host): the wrapper finds a
FAKE ``nvidia-smi`` (tests/fakes/gpus.py) through the NVIDIA_SMI setting only, not on its PATH."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fakes.gpus import fake_nvidia_smi
from server import Server, config_yaml, running, submit, wait_status
from sshd import SshCluster
from test_ssh_jobs import ssh_settings

pytestmark = pytest.mark.timeout(60)
TERMINAL = {"completed", "failed", "cancelled"}
MINORS = {0: 0, 1: 1}  # a node's two slots are its GPU indices 0 and 1
BUSY = ["0, 60, 4096, 81559, 250", "1, 60, 4096, 81559, 250"]


@pytest.fixture(scope="module")
def gpu_node_server(ssh_cluster: SshCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server over the session's SSH nodes, sampling every 0.1 s with the FAKE nvidia-smi."""
    ssh_cluster.heal()
    root = tmp_path_factory.mktemp("gpu-ssh")
    fake = fake_nvidia_smi(root / "fake-bin", MINORS, BUSY) / "nvidia-smi"
    settings = ssh_settings(ssh_cluster, nvidia_smi=str(fake), gpu_sample_s=0.1, gpu_idle_policy="off")
    (root / "server").mkdir()
    with running(root / "server", **settings) as server:
        yield server


def events_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/jobs/{job_id}/events").json()["events"])


def test_an_ssh_jobs_gpu_samples_come_back_and_its_summary_lands_with_its_end(gpu_node_server: Server) -> None:
    """On an SSH node the wrapper samples the job's GPU with NVIDIA_SMI's nvidia-smi; the series is served
    and job.gpu_summary is written with job.finished."""
    server = gpu_node_server
    assert server.admin_token is not None
    with server.client(server.admin_token) as client:
        job_id = submit(client, "import time\ntime.sleep(2)\n", config_yaml("admin", gpus=1)).json()["job_id"]
        status = wait_status(client, job_id, TERMINAL, timeout=40)
        assert status["status"] == "completed", status
        gpu = status["gpu"]
        assert gpu is not None, status
        assert (gpu["gpus"], gpu["mean_util"], gpu["peak_util"]) == (1, 60.0, 60.0)
        assert (gpu["peak_mem_mib"], gpu["card_mem_mib"]) == (4096, 81559)
        series = client.get(f"/api/jobs/{job_id}/gpu").json()
        assert series["total_points"] >= 3
        assert series["summary"] == gpu
        assert {(p["util"], p["mem_used_mib"], p["power_w"]) for p in series["points"]} == {(60.0, 4096, 250.0)}
        tags = [e["type"] for e in events_of(client, job_id)]
        assert tags[-2:] == ["job.gpu_summary", "job.finished"]
