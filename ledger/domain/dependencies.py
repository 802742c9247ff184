"""Job dependencies (Slurm's ``afterok`` / ``afterany`` / ``afternotok``): reading ``after:``, and
deciding from the dependencies' ends whether a waiting job is queued, keeps waiting or is cancelled
(pure: the caller looks the dependencies up; docs/design.md, "Dependencies").

A dependency is a job or an array (an array ends when its last task ends: ``completed`` when every
task completed, else ``failed``). Ends are final, so a verdict once reached never changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from ledger.domain.errors import InvalidSpec
from ledger.domain.events import After, AnyEvent, JobDependenciesMet, JobFinished, JobQueued
from ledger.domain.jobs import JobState

KINDS = ("ok", "any", "not_ok")
MAX_DEPENDENCIES = 64
ID_CHARS = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
Verdict = Literal["met", "never", "wait"]


def parse_after(value: object) -> After | None:
    """``after: {ok: [ID...], any: [...], not_ok: [...]}`` (an id or a comma-separated string is one
    list); ids are upper-cased, each bad part named in the error."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidSpec("Invalid field after: a mapping such as {ok: [JOB_ID], any: [...], not_ok: [...]}")
    unknown = sorted(str(k) for k in value if k not in KINDS)
    if unknown:
        raise InvalidSpec(f"Invalid field after: unknown kind {unknown[0]!r} (use ok, any or not_ok)")
    lists = {kind: _ids(kind, value.get(kind)) for kind in KINDS}
    total = sum(len(ids) for ids in lists.values())
    if total == 0:
        return None
    if total > MAX_DEPENDENCIES:
        raise InvalidSpec(f"Invalid field after: {total} dependencies, at most {MAX_DEPENDENCIES}")
    return After(ok=lists["ok"], any=lists["any"], not_ok=lists["not_ok"])


def _ids(kind: str, value: object) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InvalidSpec(f"Invalid field after.{kind}: a list of job or array ids")
    ids: list[str] = []
    for item in (i.strip().upper() for i in items):
        if len(item) != 26 or not set(item) <= ID_CHARS:
            raise InvalidSpec(f"Invalid field after.{kind}: {item!r} is not a job or array id")
        if item not in ids:
            ids.append(item)
    return ids


def dependency_ids(after: After) -> list[str]:
    """Every id named, once, in the order named."""
    return list(dict.fromkeys([*after.ok, *after.any, *after.not_ok]))


def is_waiting(job: JobState) -> bool:
    """A job submitted with dependencies not yet met (nor found never to be met)."""
    return job.after is not None and not job.dependencies_met and job.status == "pending"


def verdict_of(after: After, ended: Mapping[str, str | None]) -> tuple[Verdict, str | None]:
    """Met when every dependency ended as asked; never (naming the first that cannot be met) when one
    ended otherwise; else wait. ``ended``: each dependency's final status, None while it has not ended."""
    for kind, ids, wanted in (
        ("ok", after.ok, {"completed"}),
        ("any", after.any, {"completed", "failed", "cancelled"}),
        ("not_ok", after.not_ok, {"failed", "cancelled"}),
    ):
        for dep in ids:
            status = ended.get(dep)
            if status is not None and status not in wanted:
                return "never", f"after_{kind} {dep} ended {status}"
    if all(ended.get(dep) is not None for dep in dependency_ids(after)):
        return "met", None
    return "wait", None


def decide_dependencies(job: JobState, ended: Mapping[str, str | None]) -> list[AnyEvent]:
    """A waiting job once its dependencies decide: met, it is queued (a task: released by its array;
    a job under review: queued by the review); never, it ends cancelled, naming the dependency."""
    if not is_waiting(job):
        return []
    assert job.after is not None
    verdict, why = verdict_of(job.after, ended)
    if verdict == "never":
        message = f"Dependency never satisfied: {why}"
        reason = "dependency_never_satisfied"
        return [JobFinished(job_id=job.job_id, status="cancelled", reason=reason, message=message)]
    if verdict == "wait":
        return []
    events: list[AnyEvent] = [JobDependenciesMet(job_id=job.job_id)]
    if job.array_id is None and job.phase == "submitted" and job.scan_verdict != "rejected":
        events.append(JobQueued(job_id=job.job_id, reason="dependencies_met"))
    return events


def waiting_words(job: JobState, ended: Mapping[str, str | None] | None = None) -> str:
    """What a waiting job waits for: the dependencies not yet ended (all when ``ended`` is not known)."""
    assert job.after is not None
    ended = ended or {}
    parts = [
        f"after_{kind} {dep}"
        for kind, ids in (("ok", job.after.ok), ("any", job.after.any), ("not_ok", job.after.not_ok))
        for dep in ids
        if ended.get(dep) is None
    ]
    return "waiting for dependencies: " + ", ".join(parts)
