"""Snapshots of the views' hot state every SNAPSHOT_EVERY events: what an as-of query starts from.

A finished job never changes again, so a snapshot holds only what still moves: the active jobs, users'
tallies, nodes, tokens and the last day's per-minute tallies. Everything else an as-of document needs
(the newest jobs, those finished by then) is read from ``proj_jobs``, where a job finished by the snapshot is
in its final state (or past the point by events after its end, which ``JobRows`` folds back): a
snapshot is written right after the commit that wrote the projection rows and checkpoint up to its
position (``ViewTables.write_snapshot``), so the tables are never behind a snapshot. Each row carries
the chain hash at its position, and ``audit verify`` checks both the hash and the state against the
fold at that position.
"""

from __future__ import annotations

from collections.abc import Iterator

import apsw
import msgspec

from ledger.domain.events import decode_event
from ledger.domain.jobs import JobState
from ledger.domain.nodes import NodeState
from ledger.domain.shares import DEFAULT_HALF_LIFE_S, HALF_LIFE_STREAM, UserShare
from ledger.domain.tokens import TokenState
from ledger.domain.users import UserStats
from ledger.store.store import max_position
from projections.job_table import Horizon, JobRows
from projections.tallies import DAY_MINUTES, MINUTE_US, Minute
from projections.views import Views


class HotState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The views at one position less the finished jobs (each list in a canonical order).

    Fields added later have defaults, left out of the bytes while they hold them."""

    position: int
    recorded_at: int
    jobs: list[JobState]  # active jobs, in submit order
    users: list[UserStats]  # by user id
    nodes: list[NodeState]  # in registration order (it is the nodes' numbering)
    tokens: list[TokenState]  # by token id
    minutes: list[tuple[int, Minute]]  # the day before ``recorded_at``, by minute
    shares: list[UserShare] = []  # by user id: the fair-share accounts
    half_life_s: float = DEFAULT_HALF_LIFE_S
    half_life_version: int = 0  # of the fairshare-cluster stream


class _HotStateRaw(HotState, frozen=True, kw_only=True, omit_defaults=True):
    """A snapshot whose jobs are decoded one by one (``restore``): a single decode of thousands of jobs
    is one C call that holds the GIL for tens of milliseconds, and the event loop waits that long."""

    jobs: list[msgspec.Raw]  # type: ignore[assignment]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(HotState).decode
_decode_raw = msgspec.json.Decoder(_HotStateRaw).decode
_decode_job = msgspec.json.Decoder(JobState).decode


def hot_state(views: Views) -> bytes:
    """The canonical bytes of ``views``' hot state (equal views give equal bytes)."""
    first_minute = views.recorded_at // MINUTE_US - DAY_MINUTES
    jobs = list(views.active.values())
    jobs.sort(key=lambda job: job.position)
    users = sorted(views.users.values(), key=lambda user: user.user_id)
    tokens = sorted(views.tokens.values(), key=lambda token: token.token_id)
    minutes = sorted((m, t) for m, t in views.minutes.items() if m >= first_minute)
    state = HotState(
        position=views.position,
        recorded_at=views.recorded_at,
        jobs=jobs,
        users=users,
        nodes=list(views.nodes.values()),
        tokens=tokens,
        minutes=minutes,
        shares=sorted(views.shares.values(), key=lambda account: account.user_id),
        half_life_s=views.half_life_s,
        half_life_version=views.stream_version(HALF_LIFE_STREAM),
    )
    return _encode(state)


def restore(data: bytes) -> Views:
    """Views holding a snapshot's hot state, its indexes derived as a table load derives them."""
    state = _decode_raw(data)
    views = Views()
    views.position, views.recorded_at = state.position, state.recorded_at
    for node in state.nodes:
        views.nodes[node.name] = node
        views.node_jobs.setdefault(node.name, [])
        views.stream_versions[f"node-{node.name}"] = node.version
    for token in state.tokens:
        views.tokens[token.token_id] = token
        views.tokens_by_secret[token.secret_sha256] = token.token_id
        views.stream_versions[f"token-{token.token_id}"] = token.version
    views.users = {user.user_id: user for user in state.users}
    for raw in state.jobs:
        job = _decode_job(raw)
        views.jobs[job.job_id] = job
        views.stream_versions[f"job-{job.job_id}"] = job.version
        views.index_job(None, job)
    views.minutes = dict(state.minutes)
    for account in state.shares:
        views.shares[account.user_id] = account
        if account.version:
            views.stream_versions[f"user-{account.user_id}"] = account.version
    views.half_life_s = state.half_life_s
    if state.half_life_version:
        views.stream_versions[HALF_LIFE_STREAM] = state.half_life_version
    views.sum_hours()
    views.index_users()
    views.clear_dirty()
    return views


def latest_position(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT max(position) FROM snapshots").fetchone()
    return int(row[0] or 0) if row else 0


def write(conn: apsw.Connection, views: Views) -> None:
    """Store a snapshot of ``views`` at their position with the chain hash there (caller holds the txn)."""
    row = conn.execute("SELECT hash FROM events WHERE position = ?", (views.position,)).fetchone()
    if row is None:
        return  # nothing at that position (an empty ledger)
    conn.execute(
        "INSERT OR REPLACE INTO snapshots (position, hash, data) VALUES (?, ?, ?)",
        (views.position, row[0], hot_state(views)),
    )


def stored(conn: apsw.Connection) -> Iterator[tuple[int, bytes, bytes]]:
    """(position, hash, data) of every snapshot, in position order."""
    for position, digest, data in conn.execute("SELECT position, hash, data FROM snapshots ORDER BY position"):
        yield position, bytes(digest), bytes(data)


def write_missing(conn: apsw.Connection, every: int) -> int:
    """Fold the log once and store a snapshot every ``every`` events up to the projections' checkpoint
    where none is near (ledgers older than snapshots, or bulk-built ones); returns how many were written."""
    checkpoint_row = conn.execute("SELECT position FROM projection_checkpoints WHERE name = 'views'").fetchone()
    checkpoint = int(checkpoint_row[0]) if checkpoint_row else 0
    have = [position for position, _, _ in stored(conn)]
    views, written = Views(), 0
    with conn:
        for position, stream, version, payload, recorded_at in conn.execute(
            "SELECT position, stream, version, payload, recorded_at FROM events WHERE position <= ? ORDER BY position",
            (checkpoint,),
        ):
            views.apply_event(decode_event(payload), position, stream, version, recorded_at)
            if position % every == 0 and not any(abs(p - position) < every for p in have):
                write(conn, views)
                have.append(position)
                written += 1
    return written


# --- as of a point ----------------------------------------------------------------------------


def position_at(conn: apsw.Connection, time_us: int) -> int:
    """The last position recorded at or before ``time_us`` (recorded_at never decreases along positions,
    which are gap-free): a binary search of point reads, not a scan. The one position-at-instant: the
    as-of replays, the web panels' time slider and the jobs table's since/until all ask it."""
    low, high = 0, max_position(conn)
    while low < high:
        middle = (low + high + 1) // 2
        row = conn.execute("SELECT recorded_at FROM events WHERE position = ?", (middle,)).fetchone()
        if row is not None and row[0] <= time_us:
            low = middle
        else:
            high = middle - 1
    return low


def views_from_snapshot(conn: apsw.Connection, position: int) -> Views | None:
    """The hot views at ``position``: the nearest snapshot at or before it, then the tail folded on top;
    jobs that had finished by the snapshot are read from ``proj_jobs`` (``Horizon``). None when no
    snapshot is that old."""
    row = conn.execute(
        "SELECT position, data FROM snapshots WHERE position <= ? ORDER BY position DESC LIMIT 1", (position,)
    ).fetchone()
    if row is None:
        return None
    start, data = row[0], bytes(row[1])
    views = restore(data)
    views.jobs.rows = JobRows(conn.filename, Horizon(start, views.recorded_at))
    for at, stream, version, payload, recorded_at in conn.execute(
        "SELECT position, stream, version, payload, recorded_at FROM events"
        " WHERE position > ? AND position <= ? ORDER BY position",
        (start, position),
    ):
        views.apply_event(decode_event(payload), at, stream, version, recorded_at)
    views.clear_dirty()
    return views
