"""A job's past attempts (retried, or requeued before they started), and the endings that are the platform's."""

from __future__ import annotations

from typing import Literal

import msgspec

from ledger.domain.events import Blob

# Endings that are the platform's fault, not the job's: they never count against a user's quota.
PLATFORM_REASONS: frozenset[str] = frozenset({"node_lost", "dispatch_failed", "sandbox_failed", "lost"})


class Attempt(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """An attempt that ended without ending the job: retried, or requeued before it started."""

    attempt: int
    node: str | None
    outcome: Literal["retried", "requeued"]
    reason: str
    ended_at: int
    started_at: int | None = None
    setup_from: int | None = None  # when its declared environment's set-up began (charged from there)
    exit_code: int | None = None
    signal: int | None = None
    message: str | None = None
    stdout: Blob | None = None
    stderr: Blob | None = None

    def gpu_us(self, gpus: int) -> int:
        """GPUs x charged time of the attempt: from its set-up or its start (0 if it had neither)."""
        begun = self.setup_from if self.setup_from is not None else self.started_at
        return gpus * (self.ended_at - begun) if begun is not None else 0


def attempt_key(job_id: str, attempt: int) -> str:
    """Each attempt has a workdir (and live output copy) of its own, so an old attempt's clean-up never
    touches a new one; the first keeps the plain job id, as before retries."""
    return job_id if attempt <= 1 else f"{job_id}.{attempt}"
