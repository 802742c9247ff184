"""The array's folded progress equals the fold of its tasks' final states, whatever order their events
arrive in; and the spec and sweep readings Slurm users expect."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.arrays import (
    ArrayProgress,
    array_id_from,
    expand_sweep,
    parse_array_spec,
    progress_of,
    task_id,
)
from ledger.domain.errors import InvalidSpec
from ledger.domain.events import (
    AnyEvent,
    Blob,
    JobCancelRequested,
    JobDispatched,
    JobFinished,
    JobQueued,
    JobRequeued,
    JobScanned,
    JobStarted,
    JobSubmitted,
)
from projections.views import Views

ARRAY = array_id_from("01JAAAAAAAAAAAAAAAAAAAAAAA")


def lifecycle(job_id: str, ordinal: int, kind: int) -> list[AnyEvent]:
    """One task's events: run to the end, cancelled while held, requeued after a lost node, or failed."""
    submitted = JobSubmitted(
        job_id=job_id, user_id="u", competition_id="c", project_id="p", expected_time_s=10,
        code=Blob(digest="d", size=1), array_id=ARRAY, array_index=ordinal * 2, array_task=ordinal, array_width=2,
    )  # fmt: skip
    scanned = JobScanned(job_id=job_id, verdict="approved")
    run = [JobQueued(job_id=job_id), JobDispatched(job_id=job_id, node="n", attempt=1)]
    started = JobStarted(job_id=job_id, node="n", attempt=1)
    lost = JobRequeued(job_id=job_id, attempt=1, reason="node_lost")
    return [
        [submitted, scanned, *run, started, JobFinished(job_id=job_id, status="completed", reason="exit_zero")],
        [submitted, scanned, JobCancelRequested(job_id=job_id, by="u"), _cancelled(job_id)],
        [submitted, *run, lost, JobCancelRequested(job_id=job_id, by="u"), _cancelled(job_id)],
        [submitted, scanned, *run, started, JobFinished(job_id=job_id, status="failed", reason="exit_nonzero")],
    ][kind]  # fmt: skip


def _cancelled(job_id: str) -> JobFinished:
    return JobFinished(job_id=job_id, status="cancelled", reason="cancelled")


def canonical(progress: ArrayProgress | None) -> tuple[object, ...] | None:
    """What the progress means (where ``head`` stands inside ``held`` is bookkeeping)."""
    if progress is None:
        return None
    return (progress.array_id, progress.user_id, progress.width, progress.active, progress.waiting)


@st.composite
def interleavings(draw: st.DrawFn) -> list[AnyEvent]:
    """Some tasks, each cut somewhere along a lifecycle, their streams merged in a random order."""
    streams = []
    for ordinal in range(draw(st.integers(1, 6))):
        events = lifecycle(task_id(ARRAY, ordinal), ordinal, draw(st.integers(0, 3)))
        streams.append(events[: draw(st.integers(1, len(events)))])
    order = draw(st.permutations([i for i, events in enumerate(streams) for _ in events]))
    cursors = [0] * len(streams)
    merged = []
    for i in order:
        merged.append(streams[i][cursors[i]])
        cursors[i] += 1
    return merged


@given(interleavings())
@settings(max_examples=300, deadline=None)
def test_the_folded_array_equals_the_fold_of_its_tasks(events: list[AnyEvent]) -> None:
    """Event by event, the views' array progress is what its tasks' final states alone derive."""
    views = Views()
    for position, event in enumerate(events, start=1):
        views.apply_event(event, position, f"job-{event.stream_key}", position, position * 1000)
    tasks = [views.jobs[job_id] for job_id in sorted({e.stream_key for e in events})]
    assert canonical(views.arrays.get(ARRAY)) == canonical(progress_of(tasks))
    assert views.users["u"].total == len(tasks)
    assert len(views.users["u"].recent_submits) == (1 if any(t.job_id == task_id(ARRAY, 0) for t in tasks) else 0)


@pytest.mark.parametrize(
    ("spec", "indices", "k"),
    [("0-9%3", list(range(10)), 3), ("1,3,5", [1, 3, 5], None), ("0-20:5", [0, 5, 10, 15, 20], None),
     ("7,1-3,2", [1, 2, 3, 7], None)],
)  # fmt: skip
def test_array_specs_read_as_slurm_reads_them(spec: str, indices: list[int], k: int | None) -> None:
    """Ranges, lists, steps and %K, as sbatch --array takes them (indices sorted, each once)."""
    read = parse_array_spec(spec, max_tasks=100)
    assert (read.indices, read.max_running) == (indices, k)


def test_a_sweep_expands_in_a_stable_documented_order() -> None:
    """A mapping of lists is their product, names sorted and the last name varying fastest."""
    assert expand_sweep({"b": [1, 2], "a": ["x", "y"]}, max_tasks=10) == [
        {"a": "x", "b": 1}, {"a": "x", "b": 2}, {"a": "y", "b": 1}, {"a": "y", "b": 2},
    ]  # fmt: skip
    with pytest.raises(InvalidSpec, match="5 parameter sets, at most 4"):
        expand_sweep([{"a": i} for i in range(5)], max_tasks=4)
