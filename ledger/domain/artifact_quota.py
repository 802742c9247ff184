"""The per-user artifact quota (ARTIFACT_QUOTA_BYTES): bytes of stored, unpruned artifacts per user.

``UserStats.artifact_bytes`` is the fold (added on ``job.artifacts_stored``, taken off on
``job.artifacts_pruned``); ``fit_quota`` is the decide-time check, so two jobs that end together
cannot both overshoot what the runner's earlier read of the views left them.
"""

from __future__ import annotations

from ledger.domain.events import Artifact, JobArtifactsStored
from ledger.domain.users import UserStats

SKIPPED_SHOWN = 20  # as many skipped files as the manifest names (executors.artifacts)


def over_quota(path: str, quota: int) -> str:
    """Why a file was left behind: the owner's quota."""
    return f"{path}: over your artifact quota ({quota} bytes)"


def quota_left(stats: UserStats | None, quota: int) -> int | None:
    """Bytes the user may still store (None: no quota)."""
    if quota <= 0:
        return None
    return max(0, quota - (stats.artifact_bytes if stats is not None else 0))


def fit_quota(stored: JobArtifactsStored, left: int | None, quota: int) -> JobArtifactsStored:
    """The manifest trimmed to what fits in ``left`` bytes, files in manifest order; the rest named as
    skipped, first, with the reason (the manifest unchanged when it fits)."""
    if left is None or stored.bytes <= left:
        return stored
    kept: list[Artifact] = []
    trimmed: list[str] = []
    total = 0
    for artifact in stored.files:
        if total + artifact.size > left:
            trimmed.append(over_quota(artifact.path, quota))
            continue
        kept.append(artifact)
        total += artifact.size
    skipped = [*trimmed, *stored.skipped][:SKIPPED_SHOWN]
    return JobArtifactsStored(job_id=stored.job_id, files=kept, bytes=total, skipped=skipped)


def stored_bytes(artifacts: list[Artifact]) -> int:
    """The bytes a job's manifest counts against its owner (what its pruning gives back)."""
    return sum(a.size for a in artifacts)
