"""GPU telemetry end to end on a real SSH node (loopback sshd through the jump host): the wrapper finds a
FAKE ``nvidia-smi`` (tests/fakes/gpus.py) through the NVIDIA_SMI setting only, not on its PATH; an idle
verdict is told to the job's notify target (a webhook receiver on loopback)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.gpus import fake_nvidia_smi
from server import Server, config_yaml, running, submit, wait_status
from sshd import SshCluster
from test_notify import Receiver
from test_ssh_jobs import ssh_settings

pytestmark = pytest.mark.timeout(60)
TERMINAL = {"completed", "failed", "cancelled"}
MINORS = {0: 0, 1: 1}  # a node's two slots are its GPU indices 0 and 1
BUSY = ["0, 60, 4096, 81559, 250", "1, 60, 4096, 81559, 250"]
IDLE = ["0, 0, 100, 81559, 50", "1, 0, 100, 81559, 50"]


def set_gpus(fake: Path, lines: list[str]) -> None:
    """Swap the FAKE nvidia-smi for one printing ``lines``, in one rename (the wrapper may be running it)."""
    fresh = fake_nvidia_smi(fake.parent.with_name("next-bin"), MINORS, lines) / "nvidia-smi"
    os.replace(fresh, fake)


@pytest.fixture(scope="module")
def gpu_node_server(ssh_cluster: SshCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server over the session's SSH nodes, sampling every 0.1 s with the FAKE nvidia-smi."""
    ssh_cluster.heal()
    root = tmp_path_factory.mktemp("gpu-ssh")
    fake = fake_nvidia_smi(root / "fake-bin", MINORS, BUSY) / "nvidia-smi"
    settings = ssh_settings(ssh_cluster, nvidia_smi=str(fake), gpu_sample_s=0.1, gpu_idle_policy="warn")
    settings.update(gpu_idle_minutes=0.02, gpu_idle_util=5, notify_allowed=["http://127.0.0.1:*"])
    (root / "server").mkdir()
    with running(root / "server", **settings) as server:
        yield server


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.http.shutdown()


def events_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/jobs/{job_id}/events").json()["events"])


def test_an_ssh_jobs_gpu_samples_come_back_and_its_summary_lands_with_its_end(gpu_node_server: Server) -> None:
    """On an SSH node the wrapper samples the job's GPU with NVIDIA_SMI's nvidia-smi; the series is served
    and job.gpu_summary is written with job.finished."""
    server = gpu_node_server
    set_gpus(server.root.parent / "fake-bin" / "nvidia-smi", BUSY)
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
        assert "job.gpu_idle" not in tags


def test_an_idle_verdict_is_told_once_to_the_jobs_notify_target(gpu_node_server: Server, receiver: Receiver) -> None:
    """GPUs at 0 % on the node: job.gpu_idle (warn), one POST about it to the job's webhook recorded as
    notify.gpu_idle_delivered, and the end-of-job notification as before."""
    server = gpu_node_server
    set_gpus(server.root.parent / "fake-bin" / "nvidia-smi", IDLE)
    assert server.admin_token is not None
    config = config_yaml("admin", gpus=1, notify=f'["{receiver.url("/idle")}"]')
    with server.client(server.admin_token) as client:
        job_id = submit(client, "import time\ntime.sleep(4)\n", config).json()["job_id"]
        assert wait_status(client, job_id, TERMINAL, timeout=40)["status"] == "completed"
        deadline = time.monotonic() + 20
        owed = {"notify.delivered", "notify.gpu_idle_delivered"}
        while not owed <= set(tags := [e["type"] for e in events_of(client, job_id)]):
            assert time.monotonic() < deadline, tags
            time.sleep(0.05)
        told = [e["event"] for e in events_of(client, job_id) if e["type"] == "notify.gpu_idle_delivered"]
    assert tags.count("job.gpu_idle") == 1
    assert [(t["attempt"], t["target"], t["attempts"]) for t in told] == [(1, 0, 1)]
    idle = [body for body in receiver.at("/idle") if body["event"] == "job.gpu_idle"]
    assert len(idle) == 1, receiver.at("/idle")
    assert (idle[0]["delivery_id"], idle[0]["action"]) == (f"{job_id}.gpu_idle.1.0", "warn")
    assert idle[0]["message"].startswith("GPU idle: below 5% utilisation")
    assert [body["event"] for body in receiver.at("/idle")].count("job.ended") == 1
