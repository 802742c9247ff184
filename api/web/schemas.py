"""Wire schemas of the web dashboard's data endpoints (``/dashboard/data/*``), one per panel.

Every panel starts with the moment it shows (``position``, ``at``, ``live``), so the page can tell a
live answer from a slider's. Another user's job shows no job, user or competition id.
"""

from __future__ import annotations

from typing import Any

import msgspec

from api.schemas import JobStatus, NodeInfo


class Panel(msgspec.Struct, kw_only=True):
    """The moment a panel shows: the ledger position, its instant, and whether it is now."""

    position: int
    at: str | None
    live: bool


class NodeRow(NodeInfo, kw_only=True):
    drained: bool


class NodesPanel(Panel, kw_only=True):
    nodes: list[NodeRow]
    slurm: dict[str, Any] | None  # live only: the cluster as sinfo shows it


class QueuePanelRow(msgspec.Struct, kw_only=True):
    """A pending job in the queue's order, with why it stands where it does."""

    job_id: str | None
    user_id: str | None
    competition_id: str | None
    queue_position: int | None
    phase: str
    reason: str | None
    node: str | None
    estimated_start_at: str | None
    expected_time: int
    waiting_s: float
    score: float | None
    fairshare: float | None
    age: float | None
    priority: int | None


class NodePlanRow(msgspec.Struct, kw_only=True):
    node: str
    queue_length: int
    wait_s: float
    free_at: str | None


class QueuePanel(Panel, kw_only=True):
    queue: list[QueuePanelRow]
    pending_total: int  # the rest: GET /api/queue by page
    plan: list[NodePlanRow]


class JobsPanel(Panel, kw_only=True):
    jobs: list[JobStatus]
    next_before: int | None  # the next page: ?before=<this>
    total: int | None


class LaneNode(msgspec.Struct, kw_only=True):
    name: str
    slots: int


class Segment(msgspec.Struct, kw_only=True):
    """One job's wait or run on one slot of a node, in milliseconds since the epoch."""

    job_id: str | None
    user_id: str | None
    competition_id: str | None
    node: str
    slot: int
    kind: str  # "wait" or "run"
    planned: bool  # a queued job's wait on the node the plan gives it
    status: str
    start_ms: int
    end_ms: int


class LanesPanel(Panel, kw_only=True):
    since: str | None
    nodes: list[LaneNode]
    truncated: bool
    pending_drawn: int
    pending_total: int
    segments: list[Segment]


class UtilisationPanel(Panel, kw_only=True):
    since: str | None
    truncated: bool
    times: list[float]  # each bucket's middle, seconds since the epoch
    percent: list[float]


class UsageRow(msgspec.Struct, kw_only=True):
    user_id: str
    jobs: int
    running: int
    completed: int
    failed: int
    cancelled: int
    gpu_hours: float
    success_rate_percent: float | None


class UsagePanel(Panel, kw_only=True):
    since: str | None
    users: list[UsageRow]


class SignedIn(msgspec.Struct, kw_only=True):
    user_id: str
    is_admin: bool


class LedgerSpan(msgspec.Struct, kw_only=True):
    """The ledger's head and time span (the slider's range), and who the token says the caller is."""

    head: int
    first_at: str | None
    head_at: str | None
    signed_in: SignedIn | None


class UserIds(msgspec.Struct, kw_only=True):
    users: list[str]
