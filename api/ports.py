"""The narrow faces of the running server that handlers are given (Litestar dependencies, ``api.context``).

The composition root (``api.runtime``) builds the real objects and stays out of the handlers' reach:
a handler names the port it needs and gets only that port's methods. Each port is a ``Protocol``, so
the real object (the ledger, the plan cache, the blob store) satisfies it without knowing of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias, TypeVar

import apsw
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from api.diskuse import DiskUse
from api.schemas import JobResults
from ledger.domain.events import Artifact, Blob, Recorded
from ledger.domain.jobs import JobState
from ledger.domain.shares import Weights
from ledger.store.settings import Settings
from ledger.store.store import Committed, Write
from projections.plan import Plan
from projections.views import Views

T = TypeVar("T")
# How a handler or provider declares a port: a named dependency, taken as given (the signature model
# would check it with isinstance, which a Protocol refuses; the provider's return type is the check).
Port: TypeAlias = SkipValidation[NamedDependency[T]]


class ViewsReader(Protocol):
    """Holds the current read snapshot (``read_views`` below is the one place that takes it)."""

    @property
    def views(self) -> Views: ...


def read_views(source: ViewsReader) -> Views:
    """The current read snapshot: the one place that takes it, for guards, providers, handlers and streams."""
    return source.views


class LedgerWriter(ViewsReader, Protocol):
    """Appends commands to the ledger and waits for commits (the views show what a write changed)."""

    @property
    def head(self) -> int: ...

    async def write(self, write: Write) -> Committed: ...

    async def wait_beyond(self, position: int, timeout: float | None = None) -> int: ...


class EventLog(ViewsReader, Protocol):
    """Reads the recorded events themselves (a stream, everything after a position, raw SQL for search)
    beside the views they fold into, as a long-lived stream reads both."""

    path: Path
    reader: apsw.Connection

    @property
    def head(self) -> int: ...

    async def wait_beyond(self, position: int, timeout: float | None = None) -> int: ...

    def events_after(self, position: int, limit: int | None = None) -> list[Recorded]: ...

    def stream(self, stream: str) -> list[Recorded]: ...


class Blobs(Protocol):
    """Stores a blob (content-addressed, written once) and reads one back."""

    def put(self, data: bytes, *, truncated: bool = False) -> Blob: ...

    def get(self, blob: Blob | None) -> bytes | None: ...


class Plans(Protocol):
    """The queue plan: where and when each queued job starts (``projections.plan.PlanCache``)."""

    weights: Weights

    def get(self, views: Views, now: int) -> Plan: ...

    async def including(self, job: JobState, views: Views, head: int) -> Plan: ...


class JobOutput(Protocol):
    """A job's files: its code and results blobs, its console output (stored or still growing)."""

    def code(self, job: JobState) -> bytes: ...

    def results_file(self, job: JobState) -> bytes | None: ...

    def artifact_file(self, job: JobState, path: str) -> tuple[Artifact, Path] | None: ...

    def results(self, job: JobState) -> JobResults: ...

    def latest(self, job: JobState, stream: str) -> Path | None: ...

    def read(self, job: JobState, attempt: int, stream: str, offset: int, limit: int) -> tuple[bytes, bool]: ...


class Cluster(Protocol):
    """What the nodes can take: the largest job, CPU-only slots, Slurm's description when it runs jobs."""

    def cluster_info(self) -> dict[str, object] | None: ...

    def largest_node_gpus(self) -> int: ...

    def has_cpu_slots(self) -> bool: ...

    def largest_node_memory(self) -> int | None: ...


class ServerState(Protocol):
    """How the server itself is: started (or why not), its ledger's disk, the replica, disk use."""

    started: bool
    failed: str | None

    def readiness(self) -> dict[str, bool]: ...

    def disk_state(self) -> dict[str, object]: ...

    def replica_state(self) -> dict[str, Any] | None: ...

    def disk_use(self) -> DiskUse | None: ...


class TokenUse(Protocol):
    """Notes a token's use (``token list`` shows when each was last used)."""

    def touch(self, token_id: str) -> None: ...


@dataclass(frozen=True)
class Intake:
    """What a submission needs of the server (``api.submit``): built once by the composition root."""

    settings: Settings
    ledger: LedgerWriter
    blobs: Blobs
    cluster: Cluster
    tokens: TokenUse


class Wiring(Protocol):
    """What the providers in ``api.context`` take the ports from: the composition root, seen only there."""

    settings: Settings
    token_usage: TokenUse

    @property
    def server(self) -> ServerState: ...

    @property
    def cluster(self) -> Cluster: ...

    @property
    def intake(self) -> Intake: ...

    @property
    def output(self) -> JobOutput: ...

    @property
    def plans(self) -> Plans: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def writer(self) -> LedgerWriter: ...
