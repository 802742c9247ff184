"""The SQL side of the projections: write changed rows with the checkpoint, load them, rebuild them.

Rows hold the msgspec JSON of each view, so "rebuilt equals live" is a comparison of bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apsw
import msgspec

from ledger.domain.events import HalfLifeSet
from ledger.domain.jobs import JobState
from ledger.domain.nodes import NodeState
from ledger.domain.shares import HALF_LIFE_STREAM, UserShare
from ledger.domain.tokens import TokenState
from ledger.domain.users import UserStats
from ledger.store.state import LedgerState, ReadSide
from projections import snapshots
from projections.job_table import BACKFILL, FINISHED_CACHED, JobRows
from projections.read_models import ReadModels
from projections.replay import REPLAY_COLUMNS, gc_paused, replay
from projections.views import ReadSnapshot, Views, publish, split
from projections.writer_state import WriterState

CHECKPOINT = "views"
_encode = msgspec.json.Encoder().encode
_job = msgspec.json.Decoder(JobState).decode
_user = msgspec.json.Decoder(UserStats).decode
_node = msgspec.json.Decoder(NodeState).decode
_token = msgspec.json.Decoder(TokenState).decode
_share = msgspec.json.Decoder(UserShare).decode
_half_life = msgspec.json.Decoder(HalfLifeSet).decode


def job_row(job: JobState) -> tuple[object, ...]:
    return (job.job_id, job.user_id, job.status, job.position, job.completed_at, _encode(job))


def write_dirty(conn: apsw.Connection, views: WriterState) -> None:
    """Write every view row changed since the last write, and the checkpoint (caller holds the txn)."""
    if views.dirty_jobs:
        conn.executemany(
            "INSERT OR REPLACE INTO proj_jobs (job_id, user_id, status, position, completed_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [job_row(views.jobs[i]) for i in sorted(views.dirty_jobs)],  # key order: b-tree locality
        )
    if views.dirty_users:
        conn.executemany(
            "INSERT OR REPLACE INTO proj_users (user_id, data) VALUES (?, ?)",
            [(u, _encode(views.users[u])) for u in sorted(views.dirty_users)],
        )
    if views.dirty_nodes:
        conn.executemany(
            "INSERT OR REPLACE INTO proj_nodes (name, data) VALUES (?, ?)",
            [(n, _encode(views.nodes[n])) for n in views.dirty_nodes],
        )
    if views.dirty_tokens:
        conn.executemany(
            "INSERT OR REPLACE INTO proj_tokens (token_id, user_id, secret_sha256, data) VALUES (?, ?, ?, ?)",
            [
                (t.token_id, t.user_id, t.secret_sha256, _encode(t))
                for t in (views.tokens[i] for i in views.dirty_tokens)
            ],
        )
    if views.dirty_shares:
        conn.executemany(
            "INSERT OR REPLACE INTO proj_shares (user_id, data) VALUES (?, ?)",
            [(u, _encode(views.shares[u])) for u in sorted(views.dirty_shares)],
        )
    conn.execute(
        "INSERT OR REPLACE INTO projection_checkpoints (name, position) VALUES (?, ?)", (CHECKPOINT, views.position)
    )
    views.clear_dirty()


def checkpoint(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT position FROM projection_checkpoints WHERE name = ?", (CHECKPOINT,)).fetchone()
    return int(row[0]) if row else 0


def load(
    conn: apsw.Connection, *, cached: int = FINISHED_CACHED, backfill: bool = False, readonly: bool = False
) -> Views:
    """The views as last written, without replaying the log (catch-up then applies what follows).

    From the latest snapshot when there is one (its hot state is all memory holds: finished jobs
    are read from ``proj_jobs`` on demand), else from the tables. With no checkpoint (a new file,
    or tables dropped to be rebuilt) but events in the log, the views are replayed the fast way
    and written back (the caller holds the write transaction); with ``backfill`` (a server) and a
    snapshot, only the hot state is, and ``projections.backfill`` writes the finished jobs' rows later.
    ``readonly`` (a store recovering from a failed write, or opened on a full disk): nothing is
    written; what would have been is left dirty for the next write.
    """
    with gc_paused():
        views = _load(conn, backfill and not readonly, readonly)
    views.jobs.rows, views.jobs.cached = rows_of(conn, views), cached
    return views


def rows_of(conn: apsw.Connection, views: WriterState) -> JobRows:
    """The live views' reads of ``proj_jobs`` on the file ``conn`` is open on."""
    return JobRows(conn.filename, head=lambda: views.position)


def _load(conn: apsw.Connection, backfill: bool, readonly: bool) -> Views:
    at = checkpoint(conn)
    if at == 0 and conn.execute("SELECT 1 FROM events LIMIT 1").fetchone():
        latest = conn.execute("SELECT position, data FROM snapshots ORDER BY position DESC LIMIT 1").fetchone()
        if backfill and latest is not None:
            return _hot_only(conn, latest[0], bytes(latest[1]))
        views = replay(conn.execute(f"SELECT {REPLAY_COLUMNS} FROM events ORDER BY position"))
        if readonly:  # every row to be written (a rebuild's deletions wait for a writing open)
            mark_all_dirty(views)
        else:
            replace_all(conn, views)
        return views
    row = conn.execute(
        "SELECT data FROM snapshots WHERE position <= ? ORDER BY position DESC LIMIT 1", (at,)
    ).fetchone()
    if row is not None:  # the store folds the log from the snapshot on (the rows it rewrites are equal)
        return snapshots.restore(bytes(row[0]))
    return _load_tables(conn)


def mark_all_dirty(views: Views) -> None:
    views.dirty_jobs.update(views.jobs)
    views.dirty_users.update(views.users)
    views.dirty_nodes.update(views.nodes)
    views.dirty_tokens.update(views.tokens)
    views.dirty_shares.update(views.shares)


def _hot_only(conn: apsw.Connection, position: int, data: bytes) -> Views:
    """Tables missing: the snapshot's hot state, every part of it dirty (the store folds the tail and
    writes it all), and the mark that rows of jobs finished by the snapshot are still to come."""
    views = snapshots.restore(data)
    views.dirty_jobs.update(views.active)
    views.dirty_users.update(views.users)
    views.dirty_nodes.update(views.nodes)
    views.dirty_tokens.update(views.tokens)
    views.dirty_shares.update(views.shares)
    conn.execute("INSERT OR REPLACE INTO projection_checkpoints (name, position) VALUES (?, ?)", (BACKFILL, position))
    return views


def _load_tables(conn: apsw.Connection) -> Views:
    """Every row (a ledger without snapshots: a small one, or one older than them); the finished
    jobs leave memory at the next flushes, as the cache evicts them."""
    views = Views()
    for (data,) in conn.execute("SELECT data FROM proj_jobs ORDER BY position"):
        job = _job(data)
        views.jobs.put(job)
        views.stream_versions[f"job-{job.job_id}"] = job.version
        views.index_job(None, job)
    for (data,) in conn.execute("SELECT data FROM proj_users"):
        user = _user(data)
        views.users[user.user_id] = user
    views.index_users()
    for (data,) in conn.execute("SELECT data FROM proj_nodes"):
        node = _node(data)
        views.nodes[node.name] = node
        views.node_jobs.setdefault(node.name, [])
        views.stream_versions[f"node-{node.name}"] = node.version
    for (data,) in conn.execute("SELECT data FROM proj_tokens"):
        token = _token(data)
        views.tokens[token.token_id] = token
        views.tokens_by_secret[token.secret_sha256] = token.token_id
        views.stream_versions[f"token-{token.token_id}"] = token.version
    views.position = checkpoint(conn)
    _load_shares(conn, views)
    return views


def _load_shares(conn: apsw.Connection, views: Views) -> None:
    """The accounts, and the half-life last recorded up to the checkpoint (one indexed read)."""
    for (data,) in conn.execute("SELECT data FROM proj_shares"):
        account = _share(data)
        views.shares[account.user_id] = account
        if account.version:
            views.stream_versions[f"user-{account.user_id}"] = account.version
    row = conn.execute(
        "SELECT version, payload FROM events WHERE stream = ? AND position <= ? ORDER BY version DESC LIMIT 1",
        (HALF_LIFE_STREAM, views.position),
    ).fetchone()
    if row is not None:
        views.stream_versions[HALF_LIFE_STREAM] = row[0]
        views.half_life_s = _half_life(row[1]).half_life_s


_TABLES = (
    ("proj_jobs", "job_id"),
    ("proj_users", "user_id"),
    ("proj_nodes", "name"),
    ("proj_tokens", "token_id"),
    ("proj_shares", "user_id"),
)


def replace_all(conn: apsw.Connection, views: Views) -> None:
    """Make every projection table equal ``views`` (a rebuild), in the caller's transaction.

    Rows whose bytes already match are left alone and rows of entities that no longer exist are
    deleted: the result is the same as rewriting everything, without rewriting what is right.
    """
    stored = {table: dict(conn.execute(f"SELECT {key}, data FROM {table}")) for table, key in _TABLES}
    items: dict[str, Any] = {
        "proj_jobs": views.jobs,
        "proj_users": views.users,
        "proj_nodes": views.nodes,
        "proj_tokens": views.tokens,
        "proj_shares": views.shares,
    }
    dirty = {}
    for table, key in _TABLES:
        rows, fresh = stored[table], items[table]
        # An empty table (a rebuild after the tables were dropped): every row is new, nothing to compare.
        dirty[table] = set(fresh) if not rows else {k for k, value in fresh.items() if rows.get(k) != _encode(value)}
        gone = [(k,) for k in rows if k not in fresh]
        if gone:
            conn.executemany(f"DELETE FROM {table} WHERE {key} = ?", gone)
    views.dirty_jobs, views.dirty_users = dirty["proj_jobs"], dirty["proj_users"]
    views.dirty_nodes, views.dirty_tokens = dirty["proj_nodes"], dirty["proj_tokens"]
    views.dirty_shares = dirty["proj_shares"]
    write_dirty(conn, views)


def table_rows(conn: apsw.Connection) -> Iterator[tuple[str, str, bytes]]:
    """(table, key, data) for every stored view row, in a stable order."""
    for table, key in _TABLES:
        for row_key, data in conn.execute(f"SELECT {key}, data FROM {table} ORDER BY {key}"):
            yield table, row_key, bytes(data)


def view_rows(views: Views) -> Iterator[tuple[str, str, bytes]]:
    """The rows ``views`` would store, in the same order as ``table_rows``."""
    for table, items in (
        ("proj_jobs", views.jobs),
        ("proj_users", views.users),
        ("proj_nodes", views.nodes),
        ("proj_tokens", views.tokens),
        ("proj_shares", views.shares),
    ):
        for key in sorted(items):
            yield table, key, _encode(items[key])


class ViewTables:
    """The views' persistence in the shape the store asks for (``ledger.store.state.StateTables``), with a
    snapshot of their hot state every ``snapshot_every`` events, written with the rows it relies on."""

    def __init__(
        self, snapshot_every: int = 10_000, finished_cached: int = FINISHED_CACHED, *, backfill: bool = False
    ) -> None:
        """``backfill``: a start without tables writes the finished jobs' rows in the background
        (a server, which runs ``projections.backfill``), not before it returns (one-shot commands)."""
        self.snapshot_every = snapshot_every
        self.finished_cached = finished_cached
        self.backfill = backfill

    def empty(self) -> tuple[WriterState, ReadModels]:
        return WriterState(), ReadModels()

    def load(self, conn: apsw.Connection, *, readonly: bool = False) -> tuple[WriterState, ReadModels]:
        """The loaded views as the store keeps them: the writer's state and the read models apart."""
        state, read = split(load(conn, cached=self.finished_cached, backfill=self.backfill, readonly=readonly))
        state.jobs.rows = rows_of(conn, state)  # the rows' head is the writer's position now
        return state, read

    def write_dirty(self, conn: apsw.Connection, state: LedgerState) -> None:
        assert isinstance(state, WriterState)  # the store holds what ``load`` gave it
        if state.jobs.rows is None:  # views begun empty (a checkpoint past the log): rows from now on
            state.jobs.rows, state.jobs.cached = rows_of(conn, state), self.finished_cached
        write_dirty(conn, state)

    def publish(self, state: LedgerState, read: ReadSide) -> ReadSnapshot:
        assert isinstance(state, WriterState)
        assert isinstance(read, ReadModels)
        return publish(state, read)

    def write_snapshot(self, conn: apsw.Connection, published: Views) -> None:
        """A snapshot of what was just published, every ``snapshot_every`` events, when the rows it
        relies on are written up to it (its own transaction: it follows the commit it describes)."""
        if published.position - snapshots.latest_position(conn) < self.snapshot_every:
            return
        with conn:
            if checkpoint(conn) == published.position:  # never ahead of the rows (they may trail the log)
                snapshots.write(conn, published)


VIEW_TABLES = ViewTables()
