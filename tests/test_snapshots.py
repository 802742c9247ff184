"""Snapshots: as-of from the nearest snapshot equals a replay from position 0 at every point; audit verify
catches a snapshot whose hash or state was altered; old ledgers get snapshots written for them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import apsw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import JOBS, NODES, USERS, job_of, to_write, with_artifacts, writes_of

from ledger.domain.events import (
    AnyEvent,
    NodeRegistered,
    NotifyDelivered,
    NotifyFailed,
    NotifyIdleDelivered,
    NotifyRequested,
)
from ledger.domain.nodes import decide_register
from ledger.domain.notify import decide_idle_outcome, decide_outcome
from ledger.store.retention import decide_prune, plan_prune
from ledger.store.store import EventStore, Write
from projections import snapshots
from projections.asof import hot_views_as_of_sync
from projections.audit import verify, views_until
from projections.tables import ViewTables
from projections.views import Views


def small_snapshots(path: Path, every: int = 3) -> EventStore[Views]:
    store = EventStore(path, ViewTables(snapshot_every=every))
    store.execute(
        [Write(decide=lambda v, n=n: decide_register(v.nodes.get(n), NodeRegistered(name=n, host="h"))) for n in NODES]
    )
    return store


def observed(views: Views) -> tuple[object, ...]:
    """What an as-of document reads: the hot state, the ten newest jobs, each job by id, the finished."""
    newest = views.newest_jobs(user_id=None, status=None, limit=10)
    by_id = [views.jobs.get(job_id) for job_id in [*JOBS, *NOTIFIED]]
    finished = views.finished_since(0)
    return snapshots.hot_state(views), newest, by_id, finished, [j.job_id for j in views.queue()], views.node_jobs


# Events that may come after a job's end (``AFTER_END``) at any point: artifacts stored and pruned, the
# job's outputs pruned (job.pruned), notification outcomes of its end and of an idle verdict. The jobs
# that ask to be told have ids of their own, so that most reach their end with targets to tell.
NOTIFIED = ["k0", "k1"]
ends = st.one_of(
    st.tuples(st.just("run_with_artifacts"), st.sampled_from(JOBS), st.integers(0, 400)),  # submit to end
    st.tuples(st.just("prune_artifacts"), st.sampled_from(JOBS)),
    st.tuples(st.just("prune_outputs"), st.sampled_from(JOBS)),
    st.tuples(st.just("run_notified"), st.sampled_from(NOTIFIED), st.sampled_from(USERS)),  # submit to end
    st.tuples(st.just("notify_outcome"), st.sampled_from(NOTIFIED), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("idle_outcome"), st.sampled_from(NOTIFIED), st.integers(0, 1)),
    st.tuples(st.just("prune_outputs"), st.sampled_from(NOTIFIED)),
)
# half the draws of each (one_of would flatten the twenty kinds of ``with_artifacts`` beside these)
after_end = st.sampled_from([with_artifacts, ends]).flatmap(lambda kinds: kinds)
after_end_batches = st.lists(st.lists(after_end, min_size=1, max_size=4), min_size=1, max_size=12)


def submit_notify(views: Views, cmd: tuple) -> list[AnyEvent]:  # type: ignore[type-arg]
    """A submit that asks for two notify targets, in the same step as a real submit writes them."""
    submitted = list(to_write(("submit", *cmd[1:])).decide(views))
    return [*submitted, NotifyRequested(job_id=cmd[1], targets=["https://a.example/", "https://b.example/"])]


def after_end_step(views: Views, cmd: tuple) -> list[AnyEvent]:  # type: ignore[type-arg]
    """The decide step of one after-end command, refused as the real one is when it does not apply."""
    kind, job_id, *args = cmd
    job = job_of(views, job_id)
    if kind == "prune_outputs":
        return decide_prune(job, *plan_prune([job], set(), reason="r", by="prop"))
    if kind == "notify_outcome":
        target, delivered = args
        ended = NotifyDelivered(job_id=job_id, target=target, attempts=1)
        failed = NotifyFailed(job_id=job_id, target=target, attempts=3, error="refused")
        return decide_outcome(job, ended if delivered else failed)
    return decide_idle_outcome(job, NotifyIdleDelivered(job_id=job_id, attempt=0, target=args[0], attempts=1))


def write_after_end(cmd: tuple) -> list[Write]:  # type: ignore[type-arg]
    """The Writes of one command: test_properties' own, or one of the after-end kinds above."""
    kind, job_id = cmd[0], cmd[1]
    if kind == "run_with_artifacts":  # the job's next steps up to running, then its end with artifacts
        return writes_of([("advance", job_id, 5), ("end_with_artifacts", job_id, cmd[2])])
    if kind == "run_notified":  # a new job that asks to be told, then its steps up to its end
        submit = Write(decide=lambda v: submit_notify(v, cmd), actor="prop", expected={f"job-{job_id}": 0})
        return [submit, *writes_of([("advance", job_id, 5)])]
    if kind in ("prune_outputs", "notify_outcome", "idle_outcome"):
        return [Write(decide=lambda v: after_end_step(v, cmd), actor="prop")]
    return writes_of([cmd])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(after_end_batches)
def test_as_of_from_a_snapshot_equals_a_replay_from_zero(plan: list[list[tuple]]) -> None:  # type: ignore[type-arg]
    """At every position (and at the instant of every event) of a random ledger, events after jobs' ends
    included, snapshot plus tail gives the same hot state, jobs, queue and node occupancy as folding
    from position 0."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.db"
        store = small_snapshots(path)
        for batch in plan:
            store.execute([write for cmd in batch for write in write_after_end(cmd)])
        assert verify(store.conn) == []
        times = [row[0] for row in store.conn.execute("SELECT recorded_at FROM events ORDER BY position")]
        for position in range(store.head + 1):
            expected = observed(views_until(store.conn, position=position))
            assert observed(hot_views_as_of_sync(path, position=position, time_us=None)) == expected, position
        for time_us in sorted(set(times)):
            expected = observed(views_until(store.conn, time_us=time_us))
            assert observed(hot_views_as_of_sync(path, position=None, time_us=time_us)) == expected, time_us
        store.close()


def ledger_with_snapshots(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "ledger.db"
    store = small_snapshots(path, every=2)
    store.execute(writes_of([("advance", "j0", 6), ("advance", "j1", 3), ("advance", "j2", 2)]))
    position = snapshots.latest_position(store.conn)
    store.close()
    assert position > 0
    return path, position


def test_a_snapshot_with_altered_state_fails_verify(tmp_path: Path) -> None:
    """One byte of a snapshot's state changed: verify names its position and what differs."""
    path, position = ledger_with_snapshots(tmp_path)
    conn = apsw.Connection(str(path))
    data = bytes(conn.execute("SELECT data FROM snapshots WHERE position = ?", (position,)).fetchone()[0])
    conn.execute("UPDATE snapshots SET data = ? WHERE position = ?", (data.replace(b"1", b"2", 1), position))
    problems = verify(conn)
    wrong = "snapshot state differs from the fold at its position"
    assert [(p.position, p.what) for p in problems] == [(position, wrong)]


def test_a_snapshot_with_a_wrong_hash_fails_verify(tmp_path: Path) -> None:
    """A snapshot claiming another chain hash than the event at its position: verify fails there."""
    path, position = ledger_with_snapshots(tmp_path)
    conn = apsw.Connection(str(path))
    conn.execute("UPDATE snapshots SET hash = ? WHERE position = ?", (bytes(32), position))
    problems = verify(conn)
    assert [(p.position, p.what) for p in problems] == [
        (position, "snapshot hash differs from the chain's hash at its position")
    ]


def test_missing_snapshots_are_written_for_an_old_ledger(tmp_path: Path) -> None:
    """A ledger written without snapshots gets one every N events; they verify and as-of uses them."""
    path = tmp_path / "ledger.db"
    store = small_snapshots(path, every=10**9)
    store.execute(writes_of([("advance", f"j{i}", 6) for i in range(4)]))
    assert snapshots.latest_position(store.conn) == 0
    assert snapshots.write_missing(store.conn, 4) == store.head // 4
    assert verify(store.conn) == []
    for position in range(store.head + 1):
        assert observed(hot_views_as_of_sync(path, position=position, time_us=None)) == observed(
            views_until(store.conn, position=position)
        )
    store.close()


def test_artifacts_pruned_after_a_point_show_stored_as_of_it(tmp_path: Path) -> None:
    """A job ends with artifacts at A and they are pruned at B: as of a point between, read from a
    snapshot taken after A, the job shows them stored and not pruned, as a replay to that point does."""
    path = tmp_path / "ledger.db"
    store = small_snapshots(path, every=2)
    store.execute(writes_of([("advance", "j0", 5), ("end_with_artifacts", "j0", 100)]))
    ended = store.head
    store.execute(writes_of([("advance", "j1", 3)]))
    point = store.head
    store.execute(writes_of([("prune_artifacts", "j0")]))
    assert store.views.jobs["j0"].artifacts_pruned_at is not None
    taken = [p for p, _, _ in snapshots.stored(store.conn) if ended <= p <= point]
    assert taken, "no snapshot between the end and the point: the job would not be read from its row"
    replayed = views_until(store.conn, position=point)
    past = hot_views_as_of_sync(path, position=point, time_us=None)
    store.close()
    job = past.jobs["j0"]
    assert job.artifacts_pruned_at is None
    assert [a.size for a in job.artifacts] == [100]
    assert job == replayed.jobs["j0"]
    assert observed(past) == observed(replayed)
