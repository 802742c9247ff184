"""Under Slurm a job sees exactly the GPUs Slurm allocated to it (the fake /dev/nvidiaN of tests/slurm.py),
read by the wrapper on the compute node from the batch job's environment, and no other."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from server import Server, config_yaml, submit
from slurm import SlurmCluster
from test_slurm import slurm_server

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("require_sandbox")]

DEVICES = """
import os, time
print("DEVICES=" + ",".join(sorted(n for n in os.listdir("/dev") if n.startswith("nvidia") and n[6:].isdigit())))
time.sleep({sleep})
"""


@pytest.fixture(scope="module")
def client(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    server: Server = slurm_server(
        tmp_path_factory.mktemp("slurm-gpus"), slurm_cluster, job_gpu_device_dir=str(slurm_cluster.root / "dev")
    )
    server.start()
    try:
        assert server.admin_token is not None
        with server.client(server.admin_token) as c:
            yield c
    finally:
        server.stop()


def devices_of(body: dict[str, object]) -> list[str]:
    line = [x for x in str(body["stdout"]).splitlines() if x.startswith("DEVICES=")][-1]
    return [d for d in line.removeprefix("DEVICES=").split(",") if d]


def test_two_one_gpu_jobs_see_one_different_gpu_each(client: httpx.Client) -> None:
    """Two one-GPU jobs side by side on the two-GPU node: each sees one /dev/nvidiaN, not the same one."""
    with ThreadPoolExecutor(2) as pool:
        waits = [pool.submit(submit, client, DEVICES.format(sleep=4), config_yaml("admin"), wait=True) for _ in "ab"]
        bodies = [w.result().json() for w in waits]
    assert [b["status"] for b in bodies] == ["completed", "completed"], bodies
    seen = [devices_of(b) for b in bodies]
    assert [len(s) for s in seen] == [1, 1], seen
    assert sorted(seen[0] + seen[1]) == ["nvidia0", "nvidia1"], seen


def test_two_gpu_job_sees_both(client: httpx.Client) -> None:
    """gpus: 2 gets both of the node's GPUs, and nothing else."""
    body = submit(client, DEVICES.format(sleep=0), config_yaml("admin", gpus=2), wait=True).json()
    assert body["status"] == "completed", body
    assert devices_of(body) == ["nvidia0", "nvidia1"]
