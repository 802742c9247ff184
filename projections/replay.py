"""Replaying the log into views fast: each job's events are folded on their own, aggregates once at the end.

Folding event by event (``Views.apply``) keeps every aggregate current after each event, which the
live writer needs. A replay only needs the end state, and jobs are independent streams: so events are
bucketed per job in log order, each job is folded with ``evolve_job`` alone, and the aggregates
(users, queue, node occupancy, indexes) are derived once from the final job states. Node and token
events are few and go through ``Views.apply_event`` as usual. ``tests/test_replay.py`` checks that
both roads give identical rows.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from ledger.events import HalfLifeSet, JobEvent, decode_event
from ledger.jobs import JobState, evolve_job
from ledger.quotas import CHARGED, Charge, charges_of
from ledger.users import UserStats, count_status, recent_submits_after
from projections.fairshare import attempt_end, charge_attempt
from projections.views import Views

Row = tuple[int, str, int, bytes, int]  # position, stream, version, payload, recorded_at
REPLAY_COLUMNS = "position, stream, version, payload, recorded_at"


def replay(rows: Iterable[Row]) -> Views:
    """The views after the given event rows (in log order)."""
    with gc_paused():
        return _replay(rows)


@contextmanager
def gc_paused() -> Iterator[None]:
    """A bulk fold allocates millions of long-lived objects and no cycles: the cyclic collector would
    rescan the growing heap again and again for nothing. Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# An ended attempt to charge (position, user, (started_at, GPUs), at), or a half-life change
# (position, None, event, at): the usage fold is replayed in log order after the jobs.
UsageStep = tuple[int, str | None, tuple[int, int] | HalfLifeSet, int]


def _replay(rows: Iterable[Row]) -> Views:
    views = Views()
    buckets: dict[str, list[tuple[int, JobEvent, int]]] = {}
    charges: list[tuple[int, str, Charge]] = []  # (position, user, charge): applied in log order at the end
    steps: list[UsageStep] = []
    last: Row | None = None
    for last in rows:
        position, stream, version, payload, recorded_at = last
        match event := decode_event(payload):
            case JobEvent():  # folded per job below
                buckets.setdefault(stream, []).append((position, event, recorded_at))
            case HalfLifeSet():  # it re-bases usage: folded in log order with the charges below
                views.stream_versions[stream] = version
                steps.append((position, None, event, recorded_at))
            case _:
                views.apply_event(event, position, stream, version, recorded_at)
    for stream, bucket in buckets.items():
        state: JobState | None = None
        for position, job_event, recorded_at in bucket:
            before, state = state, evolve_job(state, job_event, position=position, at=recorded_at)
            if type(job_event) in CHARGED:
                charges.extend((position, state.user_id, c) for c in charges_of(before, state, job_event, recorded_at))
            run = attempt_end(before, state)
            if run is not None:
                steps.append((position, state.user_id, run, recorded_at))
        assert state is not None
        views.jobs.put(state)
        views.stream_versions[stream] = state.version
    _fold_usage(views, steps)
    if last is not None:
        views.position, views.recorded_at = last[0], last[4]
    _derive(views)
    charges.sort(key=lambda item: item[0])
    for _, user_id, charge in charges:
        views.charge_user(user_id, charge)
    views.clear_dirty()
    return views


def _fold_usage(views: Views, steps: list[UsageStep]) -> None:
    """The same arithmetic in the same order as the event-by-event fold: equal bytes, not just close."""
    steps.sort(key=lambda step: step[0])
    for _, user_id, what, at in steps:
        if isinstance(what, HalfLifeSet):
            views.set_half_life(what.half_life_s, at)
        elif user_id is not None:
            charge_attempt(views.shares, user_id, what, at, views.half_life_s)


def _derive(views: Views) -> None:
    """Aggregates from the final job states, exactly as the event-by-event fold leaves them."""
    jobs = sorted(views.jobs.values(), key=lambda job: job.position)  # submit order, as the live fold sees them
    submits: dict[str, list[int]] = {}
    for name in views.nodes:
        views.node_jobs.setdefault(name, [])
    for job in jobs:
        views.index_job(None, job)
        submits.setdefault(job.user_id, []).append(job.created_at)
        stats = views.users.get(job.user_id)
        if stats is None:
            stats = views.users[job.user_id] = UserStats(user_id=job.user_id)
        count_status(stats, None, job.status)
    for user_id, times in submits.items():
        views.users[user_id].recent_submits = recent_submits_after(times)
    views.index_users()
