"""Aggregates kept by the fold (24 h tallies, user ranking, job counts) equal a plain count over the jobs."""

from __future__ import annotations

from pathlib import Path

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.events import AnyEvent, Blob, JobFinished, JobSubmitted, decode_event, encode_event
from ledger.domain.jobs import JobState
from ledger.store.schema import connect
from ledger.store.store import Write
from projections import snapshots, tables
from projections.live import open_store
from projections.replay import replay
from projections.views import MINUTE_US, Views

NOW = 1_000 * 86_400 * 1_000_000
finishes = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * 86_400),  # seconds before NOW it finished
        st.sampled_from(["completed", "failed", "cancelled"]),
        st.one_of(st.none(), st.integers(min_value=0, max_value=3600)),  # seconds waited, None: never started
    ),
    max_size=60,
)


def finished_job(n: int, ago_s: int, status: str, waited_s: int | None) -> JobState:
    completed_at = NOW - ago_s * 1_000_000
    created_at = completed_at - 7_200_000_000
    started_at = None if waited_s is None else created_at + waited_s * 1_000_000
    return JobState(
        job_id=f"j{n}", user_id="u", competition_id="c", project_id="p", expected_time_s=60,
        code=Blob(digest="0" * 64, size=1), position=n + 1, created_at=created_at, status=status,  # type: ignore[arg-type]
        phase="finished", started_at=started_at, completed_at=completed_at,
    )  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(finishes)
def test_day_tally_equals_a_count_over_the_finished_jobs(rows: list[tuple[int, str, int | None]]) -> None:
    """Finished, completed and summed waits over the whole minutes of the last day match a plain scan."""
    views = Views()
    jobs = [finished_job(n, *row) for n, row in enumerate(rows)]
    for job in jobs:
        views.jobs[job.job_id] = job
        views.index_job(None, job)
    first_minute = NOW // MINUTE_US - 1440
    window = [j for j in jobs if j.completed_at is not None and j.completed_at // MINUTE_US >= first_minute]
    summed = Views()
    summed.minutes = views.minutes
    summed.sum_hours()  # what a snapshot's restore does
    assert summed.hours == views.hours
    day = views.day_tally(NOW)
    assert day.finished == len(window)
    assert day.completed == sum(1 for j in window if j.status == "completed")
    assert day.waited == sum(1 for j in window if j.started_at)
    assert day.wait_us == sum(j.started_at - j.created_at for j in window if j.started_at)


# (user index, finish the job at once?) per submit: a random history over a few users
histories = st.lists(st.tuples(st.integers(min_value=0, max_value=5), st.booleans()), min_size=1, max_size=40)


def history_rows(history: list[tuple[int, bool]]) -> list[tuple[int, str, int, bytes, int]]:
    """Log rows (position, stream, version, payload, recorded_at) for the submits and finishes."""
    events: list[tuple[str, int, AnyEvent]] = []
    for n, (user, finish) in enumerate(history):
        job_id = f"j{n:03d}"
        submit = JobSubmitted(job_id=job_id, user_id=f"u{user}", competition_id="c", project_id="p",
                              expected_time_s=60, code=Blob(digest="0" * 64, size=1))  # fmt: skip
        events.append((f"job-{job_id}", 1, submit))
        if finish:
            events.append((f"job-{job_id}", 2, JobFinished(job_id=job_id, status="failed", reason="exit")))
    return [(p, s, v, encode_event(e), NOW + p) for p, (s, v, e) in enumerate(events, start=1)]


def plain_ranking(history: list[tuple[int, bool]]) -> list[str]:
    """Users with an unfinished job first, then the others, each by their newest submit, newest first."""
    newest = {f"u{user}": n for n, (user, _) in enumerate(history)}
    active = {f"u{user}" for user, finish in history if not finish}
    return sorted(newest, key=lambda u: (u not in active, -newest[u]))


@settings(max_examples=60, deadline=None)
@given(histories)
def test_user_ranking_and_counts_match_a_plain_scan_after_fold_and_replay(history: list[tuple[int, bool]]) -> None:
    """The fold's and the replay's user ranking equal a sort of the users; every page of it is a slice
    of that order; the job counts are the users' counts summed."""
    rows = history_rows(history)
    folded = Views()
    for position, stream, version, payload, at in rows:
        folded.apply_event(decode_event(payload), position, stream, version, at)
    expected = plain_ranking(history)
    for views in (folded, replay(rows)):
        assert [u.user_id for u in views.ranked_users(0, 100)[1]] == expected
        for offset, limit in ((0, 1), (1, 2), (2, 3), (len(expected), 5)):
            total, page = views.ranked_users(offset, limit)
            assert total == len(expected)
            assert [u.user_id for u in page] == expected[offset : offset + limit]
        assert views.job_counts.total == len(history)
        assert views.job_counts.pending == sum(1 for _, finish in history if not finish)
        assert views.job_counts.failed == sum(1 for _, finish in history if finish)


def test_user_ranking_survives_a_table_load_and_a_snapshot(tmp_path: Path) -> None:
    """Loading the projection tables gives the fold's ranking; a snapshot (which keeps only active jobs)
    still ranks the active users first and counts every user."""
    history = [(0, True), (1, False), (2, True), (0, False), (3, True), (1, True)]
    store = open_store(tmp_path / "ledger.db")
    for row in history_rows(history):
        event = decode_event(row[3])
        store.execute([Write(decide=lambda _views, event=event: [event])])
    live = [u.user_id for u in store.published.ranked_users(0, 10)[1]]
    store.close()
    assert live == plain_ranking(history)
    conn = connect(tmp_path / "ledger.db")
    loaded = tables.load(conn)
    conn.close()
    assert [u.user_id for u in loaded.ranked_users(0, 10)[1]] == live
    assert msgspec.to_builtins(loaded.job_counts) == msgspec.to_builtins(store.published.job_counts)
    restored = snapshots.restore(snapshots.hot_state(loaded))
    assert {u.user_id for u in restored.ranked_users(0, 2)[1]} == {"u0", "u1"}  # their jobs 1 and 3 are active
    assert restored.ranked_users(0, 10)[0] == 4


def test_day_tally_stays_exact_after_old_minutes_are_dropped() -> None:
    """Finishes in 3,000 distinct minutes (old buckets dropped, an hour cut in two): the day's sums
    still equal a scan of the last day's jobs, and the hourly tallies equal those summed again."""
    jobs = [
        finished_job(n, ago_s=(3000 - n) * 60 + 7 * (n % 5), status="completed", waited_s=n % 90) for n in range(3000)
    ]
    views = Views()
    for job in jobs:
        views.jobs[job.job_id] = job
        views.index_job(None, job)
    assert len(views.minutes) < 3000  # the oldest were dropped
    first_minute = NOW // MINUTE_US - 1440
    window = [j for j in jobs if j.completed_at is not None and j.completed_at // MINUTE_US >= first_minute]
    day = views.day_tally(NOW)
    assert (day.finished, day.waited) == (len(window), len(window))
    assert day.wait_us == sum(j.started_at - j.created_at for j in window if j.started_at)
    summed = Views()
    summed.minutes = views.minutes
    summed.sum_hours()
    assert summed.hours == views.hours
