"""The live read models: one fold over the whole log into jobs, users, nodes and tokens.

``Views.apply`` is the only way state changes; it is what the writer runs after each append, what
catch-up runs for events appended by other processes, and what a rebuild from position 0 runs.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ledger.events import (
    JobDispatched,
    JobFinished,
    JobRequeued,
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
from ledger.jobs import JobState, evolve_job
from ledger.nodes import NodeState, evolve_node
from ledger.tokens import TokenState, evolve_token

RATE_WINDOW_US = 60_000_000
_NODE_EVENTS = (NodeRegistered, NodeUpdated, NodeUp, NodeDown, NodeDrained, NodeUndrained,
                NodeRestarting, NodeRestarted)


class UserStats(msgspec.Struct, frozen=True, kw_only=True):
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
        self.dirty_jobs: set[str] = set()
        self.dirty_users: set[str] = set()
        self.dirty_nodes: set[str] = set()
        self.dirty_tokens: set[str] = set()

    def apply_all(self, records: Iterable[Recorded]) -> None:
        for record in records:
            self.apply(record)

    def apply(self, rec: Recorded) -> None:
        event = rec.event
        self.position = rec.position
        self.recorded_at = rec.recorded_at
        self.stream_versions[rec.stream] = rec.version
        if isinstance(event, _NODE_EVENTS):
            name = event.name
            self.nodes[name] = evolve_node(self.nodes.get(name), event)
            self.node_jobs.setdefault(name, [])
            self.dirty_nodes.add(name)
        elif isinstance(event, (TokenIssued, TokenRevoked)):
            token = evolve_token(self.tokens.get(event.token_id), event, at=rec.recorded_at)
            self.tokens[token.token_id] = token
            self.tokens_by_secret[token.secret_sha256] = token.token_id
            self.dirty_tokens.add(token.token_id)
        else:
            self._apply_job(rec)

    def _apply_job(self, rec: Recorded) -> None:
        event = rec.event
        job_id: str = event.job_id  # type: ignore[union-attr]
        before = self.jobs.get(job_id)
        after = evolve_job(before, event, position=rec.position, at=rec.recorded_at)
        self.jobs[job_id] = after
        self.dirty_jobs.add(job_id)
        if after.is_terminal:
            self.active.pop(job_id, None)
        elif before is None:
            self.active[job_id] = None
        if after.phase == "queued":
            self.queued[job_id] = None
        else:
            self.queued.pop(job_id, None)
        if isinstance(event, JobDispatched):
            self.node_jobs.setdefault(event.node, []).append(job_id)
        elif isinstance(event, JobFinished | JobRequeued) and before is not None and before.node:
            running_here = self.node_jobs.get(before.node, [])
            if job_id in running_here:
                running_here.remove(job_id)
        self._count_user(before, after, rec.recorded_at if isinstance(event, JobSubmitted) else None)

    def _count_user(self, before: JobState | None, after: JobState, submitted_at: int | None) -> None:
        if before is not None and before.status == after.status:
            return
        stats = self.users.get(after.user_id) or UserStats(user_id=after.user_id)
        changes: dict[str, object] = {after.status: getattr(stats, after.status) + 1}
        if before is None:
            changes["total"] = stats.total + 1
        else:
            changes[before.status] = getattr(stats, before.status) - 1
        if submitted_at is not None:
            horizon = submitted_at - RATE_WINDOW_US
            changes["recent_submits"] = [t for t in stats.recent_submits if t > horizon] + [submitted_at]
        self.users[after.user_id] = msgspec.structs.replace(stats, **changes)
        self.dirty_users.add(after.user_id)

    # --- queries the API, scheduler and decide steps use -------------------------------------

    def stream_version(self, stream: str) -> int:
        return self.stream_versions.get(stream, 0)

    def queue(self) -> list[JobState]:
        """Queued jobs in dispatch order: (priority, submit position)."""
        jobs = [self.jobs[job_id] for job_id in self.queued]
        jobs.sort(key=lambda job: (job.priority, job.position))
        return jobs

    def active_jobs(self) -> list[JobState]:
        """Jobs not yet terminal, oldest first (bounded by the queue, not by history)."""
        return [self.jobs[job_id] for job_id in self.active]

    def tokens_of(self, user_id: str) -> list[TokenState]:
        return [t for t in self.tokens.values() if t.user_id == user_id]

    def clear_dirty(self) -> None:
        self.dirty_jobs.clear()
        self.dirty_users.clear()
        self.dirty_nodes.clear()
        self.dirty_tokens.clear()
