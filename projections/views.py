"""The live read models: one fold over the whole log into jobs, users, nodes and tokens.

``Views.apply`` is the only way state changes; it is what the writer runs after each append, what
catch-up runs for events appended by other processes, and what a rebuild from position 0 runs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import msgspec

from ledger.events import (
    AnyEvent,
    JobCancelRequested,
    JobDispatched,
    JobFinished,
    JobQueued,
    JobRequeued,
    JobScanned,
    JobStarted,
    JobSubmitted,
    NodeDown,
    NodeDrained,
    NodeRegistered,
    NodeRestarted,
    NodeRestarting,
    NodeUndrained,
    NodeUp,
    NodeUpdated,
    Recorded,
    TokenIssued,
    TokenRevoked,
)
from ledger.jobs import TERMINAL, JobState, evolve_job
from ledger.nodes import NodeState, evolve_node
from ledger.tokens import TokenState, evolve_token

RATE_WINDOW_US = 60_000_000
MAX_RECENT_SUBMITS = 100  # the largest RATE_LIMIT_PER_MINUTE the settings accept
_JOB_EVENTS = frozenset(
    {JobSubmitted, JobScanned, JobQueued, JobDispatched, JobStarted, JobCancelRequested, JobFinished, JobRequeued}
)
JobEvent = (
    JobSubmitted | JobScanned | JobQueued | JobDispatched | JobStarted | JobCancelRequested | JobFinished | JobRequeued
)
_NODE_EVENTS = (
    NodeRegistered,
    NodeUpdated,
    NodeUp,
    NodeDown,
    NodeDrained,
    NodeUndrained,
    NodeRestarting,
    NodeRestarted,
)


class UserStats(msgspec.Struct, kw_only=True, gc=False):
    """Per-user counts by status, and the submit times inside the rate-limit window."""

    user_id: str
    total: int = 0
    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    recent_submits: list[int] = []

    @property
    def active(self) -> int:
        return self.pending + self.running


class Views:
    """All read models at one ledger position."""

    def __init__(self) -> None:
        self.position = 0
        self.recorded_at = 0
        self.jobs: dict[str, JobState] = {}
        self.users: dict[str, UserStats] = {}
        self.nodes: dict[str, NodeState] = {}
        self.tokens: dict[str, TokenState] = {}
        self.tokens_by_secret: dict[str, str] = {}
        self.node_jobs: dict[str, list[str]] = {}  # jobs dispatched to a node and not yet ended
        self.queued: dict[str, None] = {}  # insertion-ordered set of queued job ids
        self.active: dict[str, None] = {}  # every job not yet terminal, in submit order
        self.stream_versions: dict[str, int] = {}
        self.user_jobs: dict[str, list[str]] = {}  # each user's job ids in submit order
        self.finished: list[tuple[int, str]] = []  # (completed_at, job id) in completion order
        self.dirty_jobs: set[str] = set()
        self.dirty_users: set[str] = set()
        self.dirty_nodes: set[str] = set()
        self.dirty_tokens: set[str] = set()

    def apply_all(self, records: Iterable[Recorded]) -> None:
        for record in records:
            self.apply(record)

    def apply(self, rec: Recorded) -> None:
        self.apply_event(rec.event, rec.position, rec.stream, rec.version, rec.recorded_at)

    def apply_event(self, event: AnyEvent, position: int, stream: str, version: int, recorded_at: int) -> None:
        """Fold one stored event (``apply`` without building a ``Recorded``: the rebuild's hot path)."""
        self.position = position
        self.recorded_at = recorded_at
        self.stream_versions[stream] = version
        if type(event) in _JOB_EVENTS:  # the common case first, by exact type (cheaper than isinstance)
            self._apply_job(event, position, recorded_at)  # type: ignore[arg-type]
        elif isinstance(event, _NODE_EVENTS):
            name = event.name
            self.nodes[name] = evolve_node(self.nodes.get(name), event)
            self.node_jobs.setdefault(name, [])
            self.dirty_nodes.add(name)
        elif isinstance(event, (TokenIssued, TokenRevoked)):
            token = evolve_token(self.tokens.get(event.token_id), event, at=recorded_at)
            self.tokens[token.token_id] = token
            self.tokens_by_secret[token.secret_sha256] = token.token_id
            self.dirty_tokens.add(token.token_id)
        else:
            raise AssertionError(f"no view folds {type(event).__name__}")

    def _apply_job(self, event: JobEvent, position: int, recorded_at: int) -> None:
        job_id = event.job_id
        before = self.jobs.get(job_id)
        after = evolve_job(before, event, position=position, at=recorded_at)
        self.jobs[job_id] = after
        self.dirty_jobs.add(job_id)
        if before is None:
            self.active[job_id] = None
            self.user_jobs.setdefault(after.user_id, []).append(job_id)
            self._count_user(after.user_id, None, after.status, recorded_at)
            return
        kind = type(event)
        if after.phase == "queued":
            self.queued[job_id] = None
        elif before.phase == "queued":
            self.queued.pop(job_id, None)
        if kind is JobDispatched:
            self.node_jobs.setdefault(event.node, []).append(job_id)  # type: ignore[union-attr]
        elif (kind is JobFinished or kind is JobRequeued) and before.node:
            running_here = self.node_jobs.get(before.node, [])
            if job_id in running_here:
                running_here.remove(job_id)
        if before.status != after.status:
            if after.status in TERMINAL:
                self.active.pop(job_id, None)
                self.finished.append((recorded_at, job_id))
            self._count_user(after.user_id, before.status, after.status, None)

    def _count_user(self, user_id: str, before: str | None, after: str, submitted_at: int | None) -> None:
        """Counts change in place: a user's stats are a tally, not a state anyone decides on by identity."""
        stats = self.users.get(user_id)
        if stats is None:
            stats = self.users[user_id] = UserStats(user_id=user_id)
        setattr(stats, after, getattr(stats, after) + 1)
        if before is None:
            stats.total += 1
        else:
            setattr(stats, before, getattr(stats, before) - 1)
        if submitted_at is not None:
            recent = stats.recent_submits
            # Times only grow: drop those older than the window, and keep at most MAX_RECENT_SUBMITS.
            first = max(
                bisect.bisect_right(recent, submitted_at - RATE_WINDOW_US), len(recent) + 1 - MAX_RECENT_SUBMITS
            )
            stats.recent_submits = [*recent[first:], submitted_at]
        self.dirty_users.add(user_id)

    # --- queries the API, scheduler and decide steps use -------------------------------------

    def stream_version(self, stream: str) -> int:
        return self.stream_versions.get(stream, 0)

    def queue(self) -> list[JobState]:
        """Queued jobs in dispatch order: (priority, submit position)."""
        # list() copies atomically under the GIL: the writer thread may be folding meanwhile.
        jobs = [self.jobs[job_id] for job_id in list(self.queued)]
        jobs.sort(key=lambda job: (job.priority, job.position))
        return jobs

    def active_jobs(self) -> list[JobState]:
        """Jobs not yet terminal, oldest first (bounded by the queue, not by history)."""
        return [self.jobs[job_id] for job_id in list(self.active)]

    def tokens_of(self, user_id: str) -> list[TokenState]:
        return [t for t in list(self.tokens.values()) if t.user_id == user_id]

    def newest_jobs(self, *, user_id: str | None, status: str | None, limit: int) -> list[JobState]:
        """Newest first, optionally one user's and one status; stops at ``limit``."""
        ids = list(self.user_jobs.get(user_id, ())) if user_id is not None else list(self.jobs)
        picked = []
        for job_id in reversed(ids):
            job = self.jobs[job_id]
            if status is None or job.status == status:
                picked.append(job)
                if len(picked) == limit:
                    break
        return picked

    def finished_since(self, since_us: int) -> list[JobState]:
        finished = list(self.finished)
        first = bisect.bisect_left(finished, (since_us, ""))
        return [self.jobs[job_id] for _, job_id in finished[first:]]

    def dirty_count(self) -> int:
        return len(self.dirty_jobs) + len(self.dirty_users) + len(self.dirty_nodes) + len(self.dirty_tokens)

    def clear_dirty(self) -> None:
        self.dirty_jobs.clear()
        self.dirty_users.clear()
        self.dirty_nodes.clear()
        self.dirty_tokens.clear()
