"""The 24 h health figures come from per-minute tallies kept by the fold: they equal a count over the jobs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.events import Blob
from ledger.jobs import JobState
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
    day = views.day_tally(NOW)
    assert day.finished == len(window)
    assert day.completed == sum(1 for j in window if j.status == "completed")
    assert day.waited == sum(1 for j in window if j.started_at)
    assert day.wait_us == sum(j.started_at - j.created_at for j in window if j.started_at)
