"""The queue plan and the dispatcher place jobs by one rule: what the plan says is where the job goes."""

from __future__ import annotations

from pathlib import Path

from executors.dispatcher import Dispatcher
from ledger.domain.clock import now_us
from ledger.domain.events import (
    AnyEvent,
    Blob,
    JobDispatched,
    JobQueued,
    JobStarted,
    JobSubmitted,
    NodeRegistered,
    NodeUp,
)
from ledger.store.store import Write
from ledger.store.writer import Ledger
from projections.live import open_ledger
from projections.plan import make_plan
from projections.views import Views


class Runner:
    """A node's runner as the dispatcher sees it: it only records what it was handed."""

    def __init__(self) -> None:
        self.attached: list[str] = []

    def workdir(self, attempt_key: str) -> str:
        return f"/tmp/{attempt_key}"

    def attach(self, job_id: str, *, fresh: bool = False) -> None:
        self.attached.append(job_id)

    def fenced_slots(self) -> set[int]:
        return set()

    async def stop(self) -> None:
        return None


def submitted(job_id: str, gpus: int = 1, expected_s: int = 600) -> list[AnyEvent]:
    code = Blob(digest="0" * 64, size=1)
    job = JobSubmitted(
        job_id=job_id, user_id="u", competition_id="c", project_id="p", expected_time_s=expected_s, code=code, gpus=gpus
    )
    return [job, JobQueued(job_id=job_id)]


async def record(ledger: Ledger[Views], *events: AnyEvent) -> None:
    await ledger.write(Write(decide=lambda _views: list(events), actor="test"))


async def planned_and_sent(
    tmp_path: Path, nodes: dict[str, int], busy: dict[str, list[int]], queue: dict[str, int]
) -> dict[str, tuple[str | None, str | None]]:
    """Nodes of so many slots, the first of them busy with jobs expected to take so many seconds, and
    queued jobs asking so many GPUs: each job's node in the plan, and where the dispatcher then sent it."""
    tmp_path.mkdir(exist_ok=True)
    ledger = open_ledger(tmp_path / "l.db")
    await ledger.start()
    try:
        for name, slots in nodes.items():
            await record(ledger, NodeRegistered(name=name, host="h", slots=slots, kind="local"), NodeUp(name=name))
        for name, expected in busy.items():
            for slot, seconds in enumerate(expected):
                job_id = f"running-{name}-{slot}"
                started = [JobDispatched(job_id=job_id, node=name, slot=slot), JobStarted(job_id=job_id, node=name)]
                await record(ledger, *submitted(job_id, expected_s=seconds), *started)
        for job_id, gpus in queue.items():
            await record(ledger, *submitted(job_id, gpus))
        plan = make_plan(ledger.views, now_us())
        await Dispatcher(ledger, {name: Runner() for name in nodes}).dispatch_ready()
        return {job_id: (plan.jobs[job_id].node, ledger.views.jobs[job_id].node) for job_id in queue}
    finally:
        await ledger.close()


async def test_the_plan_names_the_node_the_dispatcher_picks(tmp_path: Path) -> None:
    """Node a (4 slots, 1 busy) and node b (2 idle): the job goes where the plan said it would."""
    placed = await planned_and_sent(tmp_path, {"a": 4, "b": 2}, {"a": [600]}, {"next": 1})
    assert placed["next"][0] == placed["next"][1]


async def test_the_less_loaded_node_wins_a_tie_in_both(tmp_path: Path) -> None:
    """Both nodes free a slot now: the plan and the dispatcher both take the one less loaded (b)."""
    assert await planned_and_sent(tmp_path, {"a": 4, "b": 2}, {"a": [600]}, {"next": 1}) == {"next": ("b", "b")}
    assert await planned_and_sent(tmp_path / "2", {"a": 2, "b": 4}, {"a": [600]}, {"next": 1}) == {"next": ("b", "b")}


async def test_a_blocked_job_holds_the_node_the_plan_gives_it(tmp_path: Path) -> None:
    """A 3-GPU job fits nowhere now and is planned on b, whose busy slot frees first: the small job
    behind it goes to a, as planned, and b is kept for the large one."""
    busy = {"a": [6000, 6000], "b": [60]}
    placed = await planned_and_sent(tmp_path, {"a": 4, "b": 3}, busy, {"big": 3, "small": 1})
    assert placed == {"big": ("b", None), "small": ("a", "a")}
