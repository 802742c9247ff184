"""Jobs that need more than one GPU: placement, the plan, and 2-GPU jobs on the local runner and SSH nodes."""

from __future__ import annotations

from typing import Any

from server import config_yaml, submit
from test_ssh_jobs import ssh_settings

from executors.dispatcher import place
from ledger.domain.events import Blob
from ledger.domain.jobs import JobState

SLOTS_CODE = (
    "import os\nprint('SLOTS=' + os.environ['GPULEDGER_SLOTS'])\n"
    "print('CVD=' + os.environ.get('CUDA_VISIBLE_DEVICES', '-'))\n"
)


def queued(job_id: str, gpus: int, position: int) -> JobState:
    blob = Blob(digest="0" * 64, size=0)
    return JobState(
        job_id=job_id,
        user_id="u",
        competition_id="c",
        project_id="p",
        expected_time_s=60,
        code=blob,
        position=position,
        created_at=0,
        gpus=gpus,
        phase="queued",
    )


def test_first_fit_takes_the_first_job_that_fits() -> None:
    """With room for it, the head of the queue is placed on the first node with enough free slots."""
    big, small = queued("big", 2, 1), queued("small", 1, 2)
    assert place([big, small], {"a": [1], "b": [0, 1]}, {"a": 2, "b": 2}) == (big, "b", [0, 1])


def test_a_blocked_large_job_reserves_a_node() -> None:
    """A 2-GPU job that fits nowhere reserves the node closest to fitting; small jobs may only use others."""
    big, small = queued("big", 2, 1), queued("small", 1, 2)
    # a has 1 free of 2, b has 1 free of 2: big reserves one of them, small takes the other.
    placed = place([big, small], {"a": [1], "b": [0]}, {"a": 2, "b": 2})
    assert placed is not None
    assert placed[0] is small
    # Only one node: big reserves it, and small must wait behind it rather than take its last slot.
    assert place([big, small], {"a": [1]}, {"a": 2}) is None


def test_a_job_larger_than_any_usable_node_does_not_block_others() -> None:
    """A job that no usable node is big enough for (its node is down) reserves nothing."""
    huge, small = queued("huge", 4, 1), queued("small", 1, 2)
    assert place([huge, small], {"a": [0]}, {"a": 2}) == (small, "a", [0])


def _two_gpu(server: Any) -> dict[str, Any]:
    with server.client(server.admin_token) as client:
        body = submit(client, SLOTS_CODE, config_yaml("admin", gpus=2), wait=True).json()
        assert body["status"] == "completed", body
        too_big = submit(client, SLOTS_CODE, config_yaml("admin", gpus=3))
        assert too_big.status_code == 400
        assert "largest node has (2)" in too_big.text
        for bad in ("-1", "two", "true"):  # 0 is a CPU-only job (tests/test_cpu_only.py)
            answer = submit(client, SLOTS_CODE, config_yaml("admin", gpus=bad))
            assert answer.status_code == 400
            assert "Invalid field gpus" in answer.text
        return dict(body)


def test_two_gpu_job_on_the_local_runner(server_factory) -> None:
    """LOCAL_SLOTS=2: a gpus: 2 job holds both slots; 3 is refused naming the largest node."""
    body = _two_gpu(server_factory(local_slots=2))
    assert "SLOTS=0,1" in body["stdout"]


def test_two_gpu_job_on_an_ssh_node(healthy_ssh_cluster, server_factory) -> None:
    """An SSH node with slots = 2 runs a gpus: 2 job with both GPUs in CUDA_VISIBLE_DEVICES."""
    settings = ssh_settings(healthy_ssh_cluster)
    settings["nodes"] = [{**node, "slots": 2} for node in settings["nodes"]]
    body = _two_gpu(server_factory(**settings))
    assert "SLOTS=0,1" in body["stdout"]
    assert "CVD=0,1" in body["stdout"]
