"""The pure dependency rules: reading ``after:``, the verdict from the dependencies' ends, and what a
waiting job's decision appends."""

from __future__ import annotations

import pytest

from ledger.domain.dependencies import decide_dependencies, parse_after, verdict_of, waiting_words
from ledger.domain.errors import InvalidSpec
from ledger.domain.events import After, Blob, JobDependenciesMet, JobFinished, JobQueued
from ledger.domain.jobs import JobState

A, B = "01J00000000000000000000AAA", "01J00000000000000000000BBB"


def waiting(after: After, **fields: object) -> JobState:
    code = Blob(digest="0" * 64, size=1)
    base = {"job_id": "01J00000000000000000000CCC", "user_id": "u", "competition_id": "c", "project_id": "p"}
    return JobState(**base, expected_time_s=1, code=code, position=1, created_at=0, after=after, **fields)  # type: ignore[arg-type]


def test_parse_after_reads_lists_and_comma_strings_and_names_bad_parts() -> None:
    """Ids are upper-cased and deduplicated; an unknown kind or a bad id is named; empty is no dependency."""
    assert parse_after({"ok": f"{A.lower()},{A}", "not_ok": [B]}) == After(ok=[A], not_ok=[B])
    assert parse_after({"ok": []}) is None
    with pytest.raises(InvalidSpec, match="'afterok'"):
        parse_after({"afterok": [A]})
    with pytest.raises(InvalidSpec, match="'X1'"):
        parse_after({"any": ["x1"]})


@pytest.mark.parametrize(
    ("after", "ended", "verdict"),
    [
        (After(ok=[A]), {A: "completed"}, "met"),
        (After(ok=[A]), {A: "failed"}, "never"),
        (After(ok=[A], any=[B]), {A: "completed", B: None}, "wait"),
        (After(any=[A]), {A: "cancelled"}, "met"),
        (After(not_ok=[A]), {A: "failed"}, "met"),
        (After(not_ok=[A]), {A: "completed"}, "never"),
        (After(ok=[A], not_ok=[B]), {A: None, B: "completed"}, "never"),  # decided before A ends
    ],
)
def test_the_verdict_follows_slurm(after: After, ended: dict[str, str | None], verdict: str) -> None:
    """afterok / afterany / afternotok: met, never, or wait, as Slurm decides them."""
    assert verdict_of(after, ended)[0] == verdict


def test_a_decided_job_is_queued_released_or_cancelled_naming_the_dependency() -> None:
    """Met: job.dependencies_met and job.queued (a task: no queue); never: cancelled with the reason."""
    job = waiting(After(ok=[A]))
    assert decide_dependencies(job, {A: None}) == []
    assert decide_dependencies(job, {A: "completed"}) == [
        JobDependenciesMet(job_id=job.job_id),
        JobQueued(job_id=job.job_id, reason="dependencies_met"),
    ]
    task = waiting(After(ok=[A]), array_id="01J00000000000000000000000", array_index=0)
    assert decide_dependencies(task, {A: "completed"}) == [JobDependenciesMet(job_id=task.job_id)]
    [finished] = decide_dependencies(job, {A: "failed"})
    assert isinstance(finished, JobFinished)
    assert finished.reason == "dependency_never_satisfied"
    assert finished.status == "cancelled"
    assert f"after_ok {A} ended failed" in (finished.message or "")
    assert decide_dependencies(waiting(After(ok=[A]), dependencies_met=True), {A: "completed"}) == []
    assert (
        waiting_words(waiting(After(ok=[A], any=[B])), {A: "completed"}) == f"waiting for dependencies: after_any {B}"
    )
