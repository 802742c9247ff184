"""Indexed reads of the projection tables, for lists that must not scan every job."""

from __future__ import annotations

import apsw


def newest_jobs(conn: apsw.Connection, *, user_id: str | None, status: str | None, limit: int) -> list[str]:
    """Job ids newest first, optionally one user's and/or one status (indexes on position)."""
    clauses, params = [], []
    if user_id is not None:
        clauses.append("user_id = ?")
        params.append(user_id)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT job_id FROM proj_jobs {where} ORDER BY position DESC LIMIT ?"
    return [row[0] for row in conn.execute(sql, (*params, limit))]


def finished_since(conn: apsw.Connection, since_us: int) -> list[bytes]:
    """View rows of jobs that ended at or after ``since_us`` (index on completed_at)."""
    return [bytes(row[0]) for row in conn.execute(
        "SELECT data FROM proj_jobs WHERE completed_at >= ? ORDER BY completed_at", (since_us,))]
