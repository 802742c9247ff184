"""The pure rules of notifications: NOTIFY_ALLOWED's patterns, what an ended job still owes, and one
outcome per target (given past job events, when an outcome is decided, then it is recorded or refused)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from ledger.domain.errors import DomainError, InvalidTransition
from ledger.domain.events import (
    Blob,
    JobEvent,
    JobFinished,
    JobSubmitted,
    NotifyDelivered,
    NotifyFailed,
    NotifyIdleDelivered,
    NotifyRequested,
)
from ledger.domain.jobs import JobState, evolve_job
from ledger.domain.notify import check_targets, decide_outcome, is_allowed, owed
from ledger.store.notifications import record_idle_outcome, record_outcome
from projections.audit import views_until
from projections.live import open_store

J = "j1"
TARGETS = ["https://hooks.example.org/t0k3n", "ntfy://ntfy.example.org/topic"]
SUBMITTED = JobSubmitted(
    job_id=J, user_id="alice", competition_id="c", project_id="p", expected_time_s=60, code=Blob(digest="d", size=1)
)
ENDED = (SUBMITTED, NotifyRequested(job_id=J, targets=TARGETS), JobFinished(job_id=J, status="failed", reason="x"))


def fold(*events: JobEvent) -> JobState:
    state = None
    for position, event in enumerate(events, start=1):
        state = evolve_job(state, event, position=position, at=position)
    assert state is not None
    return state


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("https://hooks.example.org/x", True),
        ("HTTPS://Hooks.Example.org:8443/x", True),  # scheme and host in any case; no port in the pattern: any
        ("https://a.chat.example.org/x", True),
        ("http://hooks.example.org/x", False),  # another scheme
        ("https://hooks.example.org.evil.net/x", False),
        ("https://evil.net/?https://hooks.example.org", False),
        ("json://127.0.0.1:9000/x", True),
        ("json://127.0.0.1/x", False),  # the pattern names a port: none given does not match it
        ("json://127.0.0.2:9000/x", False),
        ("slack://T0/B0/C0", True),
    ],
)
def test_notify_allowed_patterns_match_scheme_host_and_port(target: str, allowed: bool) -> None:
    """A target is allowed when a SCHEME://HOST[:PORT] glob covers it, and only then."""
    patterns = ["https://hooks.example.org", "https://*.chat.example.org", "json://127.0.0.1:9*", "slack://*"]
    assert is_allowed(target, patterns) is allowed


def test_an_empty_allow_list_refuses_every_target_naming_it_without_its_secrets() -> None:
    """With NOTIFY_ALLOWED empty nothing is sent; the refusal names scheme and host, never the path."""
    with pytest.raises(DomainError) as refused:
        check_targets(TARGETS, [])
    assert "https://hooks.example.org/..." in str(refused.value)
    assert "t0k3n" not in str(refused.value)
    assert "NOTIFY_ALLOWED is empty" in str(refused.value)


def test_an_ended_job_owes_each_target_until_its_one_outcome() -> None:
    """Nothing is owed before the end; after it each target is owed once; a second outcome is refused."""
    assert owed(fold(SUBMITTED, ENDED[1])) == []
    with pytest.raises(InvalidTransition):
        decide_outcome(fold(SUBMITTED, ENDED[1]), NotifyDelivered(job_id=J, target=0, attempts=1))
    ended = fold(*ENDED)
    assert owed(ended) == [0, 1]
    delivered = NotifyDelivered(job_id=J, target=1, attempts=2)
    assert decide_outcome(ended, delivered) == [delivered]
    after = fold(*ENDED, delivered)
    assert owed(after) == [0]
    with pytest.raises(InvalidTransition, match="already has an outcome"):
        decide_outcome(after, NotifyFailed(job_id=J, target=1, attempts=5, error="again"))
    with pytest.raises(InvalidTransition, match="no notify target 2"):
        decide_outcome(after, NotifyFailed(job_id=J, target=2, attempts=1, error="?"))
    done = fold(*ENDED, delivered, NotifyFailed(job_id=J, target=0, attempts=5, error="503"))
    assert (owed(done), done.status, done.notified) == ([], "failed", [1, 0])


def test_an_outcome_for_a_job_that_left_memory_folds_from_its_row(tmp_path: Path) -> None:
    """A finished job evicted from the cache (its row only) still takes its notify outcome (of its end or an
    idle verdict), as a replay does."""
    store = open_store(tmp_path / "ledger.db", finished_cached=1)
    for index in range(4):
        job_id = f"j{index}"
        events = [msgspec.structs.replace(SUBMITTED, job_id=job_id), NotifyRequested(job_id=job_id, targets=TARGETS)]
        store.append(f"job-{job_id}", 0, [*events, JobFinished(job_id=job_id, status="completed", reason="x")])
    store.execute([], write_projections=True)
    assert store.views.jobs.resident("j0") is None  # in its row only
    (committed,) = store.execute([record_outcome(NotifyDelivered(job_id="j0", target=1, attempts=1))])
    assert not isinstance(committed, Exception), committed
    assert store.views.jobs["j0"].notified == [1]
    assert store.views.jobs.resident("j1") is None  # an idle verdict's outcome may come after the end too
    (committed,) = store.execute(
        [record_idle_outcome(NotifyIdleDelivered(job_id="j1", attempt=1, target=0, attempts=1))]
    )
    assert not isinstance(committed, Exception), committed
    assert store.views.jobs["j1"].idle_notified == [(1, 0)]
    assert store.views.jobs["j1"] == views_until(store.conn).jobs["j1"]
    assert store.views.jobs["j0"] == views_until(store.conn).jobs["j0"]
    store.close()
