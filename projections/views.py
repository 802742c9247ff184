"""The views readers see: the writer's state and the read models at one committed position.

Two folds, each with one owner. The writer's state (``projections.writer_state``) is what decide steps
read inside the write transaction. The read models (``projections.read_models``: indexes, tallies,
rankings) are folded by the store after each ``COMMIT``, from the committed events only. A
``ReadSnapshot`` (``publish``) puts both, as they stood after a commit, in one object that readers keep
without locks: nothing changes it. ``Views`` is the same pair folded together event by event, for a
replay, an as-of point or a load: the same ``fold`` and ``fold_job`` the store runs live.
"""

from __future__ import annotations

import itertools

from ledger.domain.events import AnyEvent
from ledger.domain.jobs import JobState
from ledger.domain.shares import Weights
from ledger.domain.users import UserStats
from projections.fairshare import Ranked, rank
from projections.read_models import READ_FIELDS, ReadModels
from projections.tallies import DAY_MINUTES as DAY_MINUTES  # re-exported: the tallies were defined here
from projections.tallies import MINUTE_US as MINUTE_US
from projections.writer_state import ON_NODE as ON_NODE
from projections.writer_state import WRITER_FIELDS, WriterState
from projections.writer_state import dispatch_order as dispatch_order


class Views(WriterState, ReadModels):
    """All read models at one ledger position: the writer's state and the read models, folded together."""

    def __init__(self) -> None:
        WriterState.__init__(self)
        ReadModels.__init__(self)

    def apply_event(self, event: AnyEvent, position: int, stream: str, version: int, recorded_at: int) -> None:
        """Fold one stored event into both (the replay's hot path: the store's two folds, one after the other)."""
        change = self.fold(event, position, stream, version, recorded_at)
        if change is not None:
            self.fold_job(*change)

    def index_job(self, before: JobState | None, after: JobState) -> None:
        """Loads per job, in submit order: the node lists and the read models' indexes."""
        self.index_node(before, after)
        self.index(before, after)

    def index_users(self) -> None:
        """After a bulk load: the rankings and job counts from the users' tallies, the queue in its order."""
        self.rank_users(self.users)
        self.order_queue()

    # --- queries that read both -------------------------------------------------------------------

    def ranked(self, now: int, weights: Weights) -> list[Ranked]:
        """Queued jobs in dispatch order, by the fair-share score at ``now`` (projections.fairshare)."""
        queued = [self.active[job_id] for job_id in self.queued]
        return rank(queued, self.on_nodes(), self.shares, now_us=now, half_life_s=self.half_life_s, weights=weights)

    def queue(self, now: int | None = None, weights: Weights | None = None) -> list[JobState]:
        """Queued jobs in dispatch order (by default scored at the views' own instant, default weights)."""
        at = self.recorded_at if now is None else now
        return [r.job for r in self.ranked(at, weights or Weights())]

    def ranked_users(self, offset: int, limit: int) -> tuple[int, list[UserStats]]:
        """The users' count and ``limit`` of them from ``offset``: those with active jobs first, then the
        others, each by their newest submit (the most recent first). A first page costs ``limit``."""
        active = list(itertools.islice(reversed(self.active_users), offset + limit))
        if len(active) == offset + limit:
            return len(self.users), [self.users[u] for u in active[offset:]]
        taken = set(active)  # every active user: the page runs into the others
        others = (u for u in reversed(list(self.user_order)) if u not in taken)
        page = [*active[offset:], *itertools.islice(others, max(0, offset - len(active)), offset + limit - len(active))]
        return len(self.users), [self.users[u] for u in page[:limit]]


class ReadSnapshot(Views):
    """The views at one committed position, as the store publishes them for readers: nothing folds
    into it and nothing changes it, so a reader takes it with one attribute read and keeps it."""

    def apply_event(self, event: AnyEvent, position: int, stream: str, version: int, recorded_at: int) -> None:
        raise TypeError("a published snapshot is read-only: the writer folds into its own views")

    def close(self) -> None:
        """The writer's views own the row connections: a snapshot has nothing of its own to close."""


def publish(state: WriterState, read: ReadModels) -> ReadSnapshot:
    """The writer's state and the read models, both at the same committed position, for readers."""
    snapshot = ReadSnapshot.__new__(ReadSnapshot)
    state.share_into(snapshot)
    read.share_models_into(snapshot)
    return snapshot


def split(views: Views) -> tuple[WriterState, ReadModels]:
    """A loaded ``Views`` as the store keeps it: the writer's state and the read models apart (the
    objects they hold move, nothing is copied)."""
    state, read = WriterState.__new__(WriterState), ReadModels.__new__(ReadModels)
    for name, value in vars(views).items():
        if name in _READ_ONLY:
            setattr(read, name, value)
        else:
            setattr(state, name, value)
    read.position, read.recorded_at = views.position, views.recorded_at
    return state, read


_READ_ONLY = frozenset((*READ_FIELDS, "_own_counts")) - set(WRITER_FIELDS)  # position, instant: both keep them
