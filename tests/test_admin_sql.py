"""The read-only SQL views for admins (migration 0009): plain columns that agree with the API."""

from __future__ import annotations

import sqlite3

from server import config_yaml, submit, wait_status


def test_views_answer_the_old_guides_queries_like_the_api(server_factory) -> None:
    """``SELECT … FROM jobs`` (and tokens, users, nodes, events_readable) on a running server's ledger,
    through a read-only connection, matches what the API says."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        job = submit(client, "import sys; sys.exit(3)\n", config_yaml("admin"), wait=True).json()["job_id"]
        status = wait_status(client, job, {"failed"})
        listed = client.get("/api/jobs", params={"limit": 10}).json()["jobs"]
    server.stop()  # the projection rows are complete once the server has stopped
    db = sqlite3.connect(f"file:{server.root / 'gpuledger.db'}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT job_id, user_id, status, competition_id, exit_code, gpus, created_at, completed_at FROM jobs"
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(j["job_id"], j["user_id"], j["status"]) for j in listed]
    (row,) = rows
    assert row[3] == "comp"
    assert row[4] == status["exit_code"] == 3
    assert row[5] == 1  # the default, which the stored row omits
    assert row[6].startswith(status["created_at"][:19])
    assert row[7].startswith(status["completed_at"][:19])
    assert db.execute("SELECT user_id, is_admin, revoked FROM tokens").fetchall() == [("admin", 1, 0)]
    assert db.execute("SELECT user_id, total, failed FROM users WHERE user_id = 'admin'").fetchall() == [
        ("admin", 1, 1)
    ]
    assert db.execute("SELECT name, up FROM nodes").fetchall() == [("local", 1)]
    types = [r[0] for r in db.execute("SELECT type FROM events_readable WHERE stream = ?", (f"job-{job}",))]
    assert types[0] == "job.submitted"
    assert types[-1] == "job.finished"
    payload = db.execute("SELECT payload FROM events_readable WHERE type = 'job.submitted'").fetchone()[0]
    assert f'"job_id":"{job}"' in payload
