"""The event catalogue: every fact the ledger records, as frozen tagged msgspec Structs.

Tags are stable wire names (``job.submitted``). New fields get defaults; field types never change.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Base of every ledger event."""


class Blob(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A content-addressed file (code, output, results) kept beside the ledger."""

    digest: str
    size: int
    truncated: bool = False


class Finding(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One observation of the code scanner."""

    rule: str
    line: int
    message: str
    severity: Literal["critical", "warning", "info"]


# --- jobs -------------------------------------------------------------------------------------


class JobSubmitted(Event, frozen=True, tag="job.submitted"):
    job_id: str
    user_id: str
    competition_id: str
    project_id: str
    expected_time_s: int
    code: Blob
    config: dict[str, Any] = {}
    idempotency_key: str | None = None
    token_id: str | None = None
    client_address: str | None = None


class JobScanned(Event, frozen=True, tag="job.scanned"):
    job_id: str
    verdict: Literal["approved", "warned", "rejected", "pending"]
    findings: list[Finding] = []
    scanner: Literal["static", "llm"] = "static"
    model: str | None = None


class JobQueued(Event, frozen=True, tag="job.queued"):
    job_id: str
    priority: int = 0
    reason: str = "submitted"


class JobDispatched(Event, frozen=True, tag="job.dispatched"):
    job_id: str
    node: str
    slot: int = 0
    attempt: int = 1
    workdir: str = ""


class JobStarted(Event, frozen=True, tag="job.started"):
    job_id: str
    node: str
    attempt: int = 1
    pid: int = 0
    pgid: int = 0
    started_at_node: str | None = None


class JobCancelRequested(Event, frozen=True, tag="job.cancel_requested"):
    job_id: str
    by: str
    reason: str = "cancelled by user"


class JobFinished(Event, frozen=True, tag="job.finished"):
    job_id: str
    status: Literal["completed", "failed", "cancelled"]
    reason: str
    exit_code: int | None = None
    signal: int | None = None
    attempt: int = 0
    stdout: Blob | None = None
    stderr: Blob | None = None
    results: Blob | None = None
    results_file: str | None = None
    message: str | None = None


class JobRequeued(Event, frozen=True, tag="job.requeued"):
    job_id: str
    attempt: int
    reason: str


# --- nodes ------------------------------------------------------------------------------------


class NodeConfig(Event, frozen=True):
    """A node as configured; the untagged base of node.registered and node.updated."""

    name: str
    host: str
    port: int = 22
    user: str = ""
    slots: int = 1
    container: str | None = None
    kind: Literal["ssh", "local"] = "ssh"


class NodeRegistered(NodeConfig, frozen=True, tag="node.registered"):
    pass


class NodeUpdated(NodeConfig, frozen=True, tag="node.updated"):
    pass


class NodeUp(Event, frozen=True, tag="node.up"):
    name: str
    reason: str = "probe succeeded"


class NodeDown(Event, frozen=True, tag="node.down"):
    name: str
    reason: str
    consecutive_failures: int = 1


class NodeDrained(Event, frozen=True, tag="node.drained"):
    name: str
    by: str
    reason: str = ""


class NodeUndrained(Event, frozen=True, tag="node.undrained"):
    name: str
    by: str
    reason: str = ""


class NodeRestarting(Event, frozen=True, tag="node.restarting"):
    name: str
    container: str


class NodeRestarted(Event, frozen=True, tag="node.restarted"):
    name: str
    container: str
    duration_s: float
    outcome: Literal["ok", "failed", "timeout"]
    detail: str = ""


# --- tokens -----------------------------------------------------------------------------------


class TokenIssued(Event, frozen=True, tag="token.issued"):
    token_id: str
    user_id: str
    is_admin: bool
    expires_at: str
    secret_sha256: str
    by: str


class TokenRevoked(Event, frozen=True, tag="token.revoked"):
    token_id: str
    user_id: str
    by: str
    reason: str = ""


AnyEvent = (
    JobSubmitted
    | JobScanned
    | JobQueued
    | JobDispatched
    | JobStarted
    | JobCancelRequested
    | JobFinished
    | JobRequeued
    | NodeRegistered
    | NodeUpdated
    | NodeUp
    | NodeDown
    | NodeDrained
    | NodeUndrained
    | NodeRestarting
    | NodeRestarted
    | TokenIssued
    | TokenRevoked
)

_decoder = msgspec.json.Decoder(AnyEvent)
_encoder = msgspec.json.Encoder()


def encode_event(event: Event) -> bytes:
    """The canonical payload bytes of an event (what the hash chain covers)."""
    return _encoder.encode(event)


def decode_event(payload: bytes | str) -> AnyEvent:
    event: AnyEvent = _decoder.decode(payload)
    return event


def event_tag(event: Event) -> str:
    return _TAGS[type(event)]


def stream_of(event: Event) -> str:
    """The stream an event belongs to: ``job-<id>``, ``node-<name>`` or ``token-<id>``."""
    prefix, key = _STREAM_KEYS[type(event)]  # by exact type: this runs for every appended event
    return f"{prefix}{getattr(event, key)}"


_TAGS: dict[type, str] = {cls: str(cls.__struct_config__.tag) for cls in typing.get_args(AnyEvent)}
_STREAM_KEYS: dict[type, tuple[str, str]] = {
    **dict.fromkeys(
        (JobSubmitted, JobScanned, JobQueued, JobDispatched, JobStarted, JobCancelRequested, JobFinished, JobRequeued),
        ("job-", "job_id"),
    ),
    **dict.fromkeys((TokenIssued, TokenRevoked), ("token-", "token_id")),
    **dict.fromkeys(
        (NodeRegistered, NodeUpdated, NodeUp, NodeDown, NodeDrained, NodeUndrained, NodeRestarting, NodeRestarted),
        ("node-", "name"),
    ),
}


class Recorded(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An event as stored: its envelope (position, stream, version, time, actor) and the fact itself."""

    position: int
    stream: str
    version: int
    event: AnyEvent
    recorded_at: int  # microseconds since the Unix epoch, UTC
    actor: str
    idempotency_key: str | None = None
