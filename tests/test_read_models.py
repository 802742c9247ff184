"""The writer keeps what decide steps read; the read models fold committed events only, after the commit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import apsw
import msgspec
import pytest

from ledger.domain.errors import LedgerUnavailable
from ledger.domain.events import AnyEvent, Blob, JobFinished, JobQueued, JobSubmitted
from ledger.store.state import LedgerState
from ledger.store.store import EventStore, Write
from projections.live import open_store
from projections.read_models import ReadModels
from projections.views import Views

READ_MODELS = ("minutes", "hours", "job_counts", "active", "queued", "unqueued", "user_order", "active_users")


def finished(job_id: str) -> Write:
    """One job's whole short life (submitted, queued, completed) in one write."""
    submitted = JobSubmitted(
        job_id=job_id, user_id="alice", competition_id="c", project_id="p", expected_time_s=60,
        code=Blob(digest="0" * 64, size=1),
    )  # fmt: skip
    done = JobFinished(job_id=job_id, status="completed", reason="x")
    events: list[AnyEvent] = [submitted, JobQueued(job_id=job_id), done]
    return Write(decide=lambda _views: events)


def observed(views: Views) -> tuple[object, ...]:
    """The published counts and the day's tally, as the dashboard reads them."""
    return views.position, msgspec.to_builtins(views.job_counts), views.day_tally(views.recorded_at)


def test_decide_steps_get_a_state_without_the_read_models(tmp_path: Path) -> None:
    """The state a decide step reads is the writer's own, and tallies, counts and queue indexes are not in it."""
    store = open_store(tmp_path / "ledger.db")
    store.execute([finished("a")])
    seen: list[LedgerState] = []

    def look(views: LedgerState) -> Sequence[AnyEvent]:
        seen.append(views)
        return []

    store.execute([Write(decide=look)])
    assert seen == [store.views]
    assert seen[0].jobs["a"].status == "completed"  # what decisions need is there
    for name in READ_MODELS:
        with pytest.raises(AttributeError):
            getattr(seen[0], name)
    assert store.published.job_counts.completed == 1  # readers get them, folded after the commit
    store.close()


def fail_commits(store: EventStore[Views]) -> None:
    """Every ``COMMIT`` fails after the batch was decided, folded and inserted (an I/O error)."""

    def trace(_cursor: apsw.Cursor, sql: str, _bindings: object) -> bool:
        if sql.lstrip().startswith("COMMIT"):
            store.conn.execute("ROLLBACK")
            raise apsw.IOError("disk I/O error")
        return True

    store.conn.exec_trace = trace


def test_a_failed_commit_leaves_the_read_models_as_they_were(tmp_path: Path) -> None:
    """A batch whose commit fails moves neither the read models nor the published counts and day tally;
    the next commit that goes through moves both."""
    store = open_store(tmp_path / "ledger.db")
    store.execute([finished("a")])
    published, read = store.published, store.read
    before = observed(published)
    fail_commits(store)
    with pytest.raises(LedgerUnavailable):
        store.execute([finished("b")])
    store.conn.exec_trace = None
    assert store.published is published
    assert observed(store.published) == before
    assert store.read is read  # untouched: the failed batch never reached them
    assert isinstance(read, ReadModels)
    assert not isinstance(read, Views)  # the read models alone, as the store keeps them
    assert (read.position, msgspec.to_builtins(read.job_counts), read.day_tally(read.recorded_at)) == before
    store.execute([finished("b")])
    assert store.published.job_counts.completed == 2
    assert store.published.day_tally(store.published.recorded_at).completed == 2
    store.close()
