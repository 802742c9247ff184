"""What the ledger needs of the state it keeps in step with the log: two folds, and what readers get.

The store folds every appended event into a ``LedgerState`` and hands it to each write's decide step
inside the write transaction; that state is the writer's alone and holds only what decisions read.
The read models (``ReadSide``) are folded after each ``COMMIT`` from the committed events only; then
the store publishes both for readers (``StateTables.publish``), so a read never sees an event whose
commit failed. ``projections.writer_state``, ``projections.read_models`` and ``projections.views`` are
the implementation; the composition root passes it in (with the tables that persist it), so this
package never imports the projections.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypeVar

import apsw

from ledger.domain.arrays import ArrayProgress
from ledger.domain.events import AnyEvent
from ledger.domain.jobs import JobState
from ledger.domain.nodes import NodeState
from ledger.domain.shares import UserShare
from ledger.domain.tokens import TokenState
from ledger.domain.users import UserStats


class Jobs(Protocol):
    """Jobs by id: a lookup, not a dict of every job (finished jobs may live on disk only)."""

    def get(self, job_id: str) -> JobState | None: ...

    def __getitem__(self, job_id: str) -> JobState: ...

    def __contains__(self, job_id: object) -> bool: ...

    def __iter__(self) -> Iterator[str]: ...


class LedgerState(Protocol):
    """The folded state at one ledger position: what cross-stream checks (limits, slots) decide on."""

    position: int
    recorded_at: int
    stream_versions: dict[str, int]

    @property
    def jobs(self) -> Jobs: ...  # read-only here: the state's own table type may be narrower

    users: dict[str, UserStats]
    nodes: dict[str, NodeState]
    tokens: dict[str, TokenState]
    tokens_by_secret: dict[str, str]
    node_jobs: dict[str, list[str]]  # per node, its jobs not yet ended, in dispatch order
    shares: dict[str, UserShare]  # per user: fair-share policy (caps) and decayed usage
    arrays: dict[str, ArrayProgress]  # per array with tasks not yet ended: its progress
    dependencies_due: dict[str, int]  # waiting jobs to decide again: the position a dependency ended

    def apply_event(self, event: AnyEvent, position: int, stream: str, version: int, recorded_at: int) -> None: ...

    def stream_version(self, stream: str) -> int: ...

    def tokens_of(self, user_id: str) -> list[TokenState]: ...

    def dirty_count(self) -> int: ...

    def close(self) -> None: ...  # the state's own resources (connections), when the store closes


class ReadSide(Protocol):
    """The read models no decide step needs, folded from committed events only (never inside a write)."""

    position: int
    recorded_at: int

    def apply_event(self, event: AnyEvent, position: int, stream: str, version: int, recorded_at: int) -> None: ...


S = TypeVar("S", bound=LedgerState)  # what readers get: both folds at one committed position


class StateTables(Protocol[S]):
    """How the state is kept on disk: loaded at open, its changed rows written in the caller's transaction,
    and how the two folds are published for readers and snapshotted after a commit."""

    def empty(self) -> tuple[LedgerState, ReadSide]: ...

    def load(self, conn: apsw.Connection, *, readonly: bool = False) -> tuple[LedgerState, ReadSide]: ...

    def write_dirty(self, conn: apsw.Connection, state: LedgerState) -> None: ...

    def publish(self, state: LedgerState, read: ReadSide) -> S: ...  # nothing changes it after

    def write_snapshot(self, conn: apsw.Connection, published: S) -> None: ...  # after a commit, when due
