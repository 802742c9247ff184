"""One derivation of the job indexes: live fold, table load and replay agree; a node's jobs in dispatch order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ledger.domain.events import Blob, JobDispatched, JobFinished, JobQueued, JobStarted, JobSubmitted, NodeRegistered
from projections.asof import views_as_of
from projections.audit import views_until
from projections.live import open_store
from projections.views import Views


def submitted(job_id: str) -> JobSubmitted:
    return JobSubmitted(
        job_id=job_id, user_id="alice", competition_id="c", project_id="p", expected_time_s=60,
        code=Blob(digest="0" * 64, size=1),
    )  # fmt: skip


def indexes(views: Views) -> tuple[object, ...]:
    newest = [j.job_id for j in views.newest_jobs(user_id=None, status=None, limit=100)]
    alices = [j.job_id for j in views.newest_jobs(user_id="alice", status=None, limit=100)]
    finished = [j.job_id for j in views.finished_since(0)]
    return (views.node_jobs, list(views.active), list(views.queued), newest, alices, finished)


def test_a_nodes_current_job_survives_a_restart(tmp_path: Path) -> None:
    """Jobs dispatched in another order than submitted: live, reloaded and replayed views list them alike."""
    db = tmp_path / "ledger.db"
    store = open_store(db)
    store.append("node-n", 0, [NodeRegistered(name="n", host="h", slots=2)])
    for job_id in ("a", "b", "c"):
        store.append(f"job-{job_id}", 0, [submitted(job_id), JobQueued(job_id=job_id)])
    store.append("job-b", 2, [JobDispatched(job_id="b", node="n", slot=0)])
    store.append("job-a", 2, [JobDispatched(job_id="a", node="n", slot=1)])
    store.append("job-b", 3, [JobStarted(job_id="b", node="n")])
    live = indexes(store.published)
    assert store.views.node_jobs["n"] == ["b", "a"]  # b went first: b is the node's current job
    store.close()

    reopened = open_store(db)
    assert indexes(reopened.published) == live
    assert indexes(views_until(reopened.conn)) == live
    reopened.close()


def test_finished_jobs_leave_every_index_alike(tmp_path: Path) -> None:
    """A finished job is off its node, out of the queue and active set, and in the finished list, on every road."""
    store = open_store(tmp_path / "ledger.db")
    store.append("node-n", 0, [NodeRegistered(name="n", host="h")])
    store.append("job-a", 0, [submitted("a"), JobQueued(job_id="a"), JobDispatched(job_id="a", node="n")])
    store.append(
        "job-a", 3, [JobStarted(job_id="a", node="n"), JobFinished(job_id="a", status="completed", reason="x")]
    )
    store.append("job-b", 0, [submitted("b"), JobQueued(job_id="b")])
    views = store.published
    assert (views.node_jobs["n"], list(views.active), list(views.queued)) == ([], ["b"], ["b"])
    assert [job.job_id for job in views.finished_since(0)] == ["a"]
    assert indexes(views_until(store.conn)) == indexes(views)
    store.close()
    reopened = open_store(tmp_path / "ledger.db")
    assert indexes(reopened.published) == indexes(views)
    reopened.close()


async def test_an_as_of_replay_leaves_the_event_loop_free(tmp_path: Path) -> None:
    """While a replay of thousands of events runs, other coroutines on the loop keep running."""
    db = tmp_path / "ledger.db"
    store = open_store(db, projection_interval_s=3600)
    for index in range(3000):
        job_id = f"j{index}"
        store.append(f"job-{job_id}", 0, [submitted(job_id), JobQueued(job_id=job_id)])
    store.write_projections()
    store.close()
    ticks = 0
    replay = asyncio.ensure_future(views_as_of(db, position=None, time_us=None))
    while not replay.done():
        ticks += 1
        await asyncio.sleep(0)
    views = await replay
    assert len(views.jobs) == 3000
    assert ticks > 1  # the loop turned while the fold ran in its worker thread
