"""One idea of a usable node: the plan, the dispatcher and the dispatch write read the same property."""

from __future__ import annotations

import pytest

from executors.dispatcher import fleet_now
from ledger.domain.errors import InvalidTransition
from ledger.domain.events import (
    AnyEvent,
    Blob,
    JobQueued,
    JobSubmitted,
    NodeDown,
    NodeDrained,
    NodeFenced,
    NodeFenceRequired,
    NodeRegistered,
    NodeRestarting,
    NodeRetired,
    stream_of,
)
from ledger.store import commands
from projections.plan import make_plan
from projections.views import Views

N = "n"
T0 = 1_800_000_000_000_000
HISTORIES: dict[str, list[AnyEvent]] = {
    "up": [],
    "down": [NodeDown(name=N, reason="ssh timeout", consecutive_failures=3)],
    "draining": [NodeDrained(name=N, by="admin")],
    "restarting": [NodeRestarting(name=N, container="c")],
    "retired": [NodeRetired(name=N)],
}


class Runner:
    """Just enough of a runner for ``fleet_now``: nothing fenced."""

    def fenced_slots(self) -> set[int]:
        return set()


def views_after(history: list[AnyEvent]) -> Views:
    """A node with that history and one queued job."""
    views = Views()
    code = Blob(digest="0" * 64, size=1)
    submitted = JobSubmitted(job_id="j", user_id="u", competition_id="c", project_id="p", expected_time_s=60, code=code)
    events = [NodeRegistered(name=N, host="h", slots=1, kind="local"), *history, submitted, JobQueued(job_id="j")]
    versions: dict[str, int] = {}
    for position, event in enumerate(events, 1):
        stream = stream_of(event)
        versions[stream] = versions.get(stream, 0) + 1
        views.apply_event(event, position, stream, versions[stream], T0)
    return views


@pytest.mark.parametrize("status", HISTORIES)
def test_every_reader_of_a_node_agrees_on_usable(status: str) -> None:
    """Up, down, draining, restarting, retired: the plan plans on usable nodes, the dispatcher and the
    dispatch write take only ready ones (usable and not mid-restart)."""
    views = views_after(HISTORIES[status])
    node = views.nodes[N]
    assert node.status == status
    assert node.usable == (status in ("up", "restarting"))
    assert node.ready == (status == "up")
    assert make_plan(views, T0).any_node_usable == node.usable
    times, free = fleet_now(views, {N: Runner()}, T0)
    assert (N in times, bool(free.get(N))) == (node.usable, node.ready)
    write = commands.dispatch_job("j", node=N, slots=[0], workdir="/w")
    if node.ready:
        assert write.decide(views)
    else:
        with pytest.raises(InvalidTransition, match="cannot take a job"):
            write.decide(views)


def test_the_dispatch_write_refuses_a_slot_held_by_a_lost_job() -> None:
    """A slot whose lost job is not yet confirmed dead (node.fence_required) takes no job, whatever the
    runner remembers; node.fenced frees it."""
    held = NodeFenceRequired(name=N, job_id="old", attempt_key="old", slots=[0])
    views = views_after([held])
    assert fleet_now(views, {N: Runner()}, T0)[1][N] == []
    with pytest.raises(InvalidTransition, match="cannot take a job"):
        commands.dispatch_job("j", node=N, slots=[0], workdir="/w").decide(views)
    freed = views_after([held, NodeFenced(name=N, job_id="old", attempt_key="old")])
    assert commands.dispatch_job("j", node=N, slots=[0], workdir="/w").decide(freed)
