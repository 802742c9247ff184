"""Finished jobs leave memory: served from the projection table after eviction and after a restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from server import config_yaml, run_cli, submit, wait_status

from ledger.domain.events import Blob, JobFinished, JobQueued, JobSubmitted
from ledger.store.schema import connect
from ledger.store.store import EventStore
from projections import backfill, snapshots, tables
from projections.asof import hot_views_as_of_sync
from projections.audit import verify, views_until
from projections.live import open_store
from projections.views import Views


def submitted(job_id: str, user: str) -> JobSubmitted:
    return JobSubmitted(
        job_id=job_id, user_id=user, competition_id="c", project_id="p", expected_time_s=60,
        code=Blob(digest="0" * 64, size=1),
    )  # fmt: skip


def lists(views: Views) -> tuple[object, ...]:
    """What readers see of every job: each one by id, the newest-first lists, the finished ones by time."""
    return (
        {j: views.jobs.get(j) for j in (f"j{i}" for i in range(12))},
        {j: views.stream_version(f"job-{j}") for j in (f"j{i}" for i in range(12))},
        [j.job_id for j in views.newest_jobs(user_id=None, status=None, limit=50)],
        [j.job_id for j in views.newest_jobs(user_id="bob", status="completed", limit=3)],
        [j.job_id for j in views.finished_since(0)],
        list(views.active),
    )


def build(db: Path) -> None:
    """Twelve jobs of two users, ten of them finished, two queued, with a cache of two finished jobs."""
    store = open_store(db, finished_cached=2)
    for index in range(12):
        job_id, user = f"j{index}", ("alice", "bob")[index % 2]
        events = [submitted(job_id, user), JobQueued(job_id=job_id)]
        store.append(f"job-{job_id}", 0, events)
        if index < 10:
            status = "completed" if index % 3 else "failed"
            store.append(f"job-{job_id}", 2, [JobFinished(job_id=job_id, status=status, reason="x")])
    assert len(store.views.jobs.finished) <= 3  # two cached, one more until its row's flush committed
    assert "j0" not in store.views.jobs.finished
    assert store.views.jobs.get("j0") is not None
    assert lists(store.published) == lists(views_until(store.conn))
    store.close()


def test_evicted_jobs_read_like_a_replay(tmp_path: Path) -> None:
    """Lookups, versions and lists of evicted finished jobs equal a full replay's, live and after reopening."""
    db = tmp_path / "ledger.db"
    build(db)
    reopened = open_store(db, finished_cached=2)
    replayed = views_until(reopened.conn)
    assert lists(reopened.published) == lists(replayed)
    assert not verify(reopened.conn)
    reopened.close()


def test_a_start_from_a_snapshot_holds_only_the_hot_jobs(tmp_path: Path) -> None:
    """With a snapshot stored, a reopened store keeps only the active jobs in memory and reads like a replay."""
    db = tmp_path / "ledger.db"
    build(db)
    store = open_store(db)
    snapshots.write(store.conn, store.published)
    store.close()
    reopened = open_store(db)
    assert sorted(reopened.views.jobs) == ["j10", "j11"]  # the queued ones: nothing finished was loaded
    assert lists(reopened.published) == lists(views_until(reopened.conn))
    assert list(tables.table_rows(reopened.conn)) == list(tables.view_rows(views_until(reopened.conn)))
    reopened.close()


def drop_tables(db: Path) -> None:
    """The projection rows and checkpoint gone (snapshots kept), as after a manual repair."""
    conn = connect(db)
    with conn:
        for table in ("proj_jobs", "proj_users", "proj_nodes", "proj_tokens", "proj_shares", "projection_checkpoints"):
            conn.execute(f"DELETE FROM {table}")
    conn.close()


def test_a_start_without_tables_is_ready_first_and_fills_the_rows_after(tmp_path: Path) -> None:
    """Tables missing: the snapshot's hot state is loaded, old finished jobs are folded from their
    streams until the backfill has written their rows; then the ledger verifies."""
    db = tmp_path / "ledger.db"
    build(db)
    store = open_store(db)
    snapshots.write(store.conn, store.published)
    store.append("job-j10", 2, [JobFinished(job_id="j10", status="completed", reason="x")])
    store.close()
    drop_tables(db)
    reopened = EventStore(db, tables.ViewTables(finished_cached=2, backfill=True))
    assert sorted(reopened.views.jobs) == ["j10", "j11"]
    replayed = views_until(reopened.conn)
    assert reopened.views.jobs.get("j0") == replayed.jobs.get("j0")  # no row yet: its stream folded
    assert "still being rebuilt" in str(verify(reopened.conn)[0])
    backfill.run(db, threading.Event())
    assert not verify(reopened.conn)
    assert lists(reopened.published) == lists(replayed)
    reopened.close()


def test_past_views_read_finished_jobs_as_of_the_point(tmp_path: Path) -> None:
    """Views as of a point between the snapshot and the head: jobs finished later show their state then."""
    db = tmp_path / "ledger.db"
    store = open_store(db)
    for index in range(6):
        job_id = f"j{index}"
        store.append(f"job-{job_id}", 0, [submitted(job_id, "alice"), JobQueued(job_id=job_id)])
        store.append(f"job-{job_id}", 2, [JobFinished(job_id=job_id, status="completed", reason="x")])
    snapshots.write(store.conn, store.published)
    store.append("job-late", 0, [submitted("late", "alice"), JobQueued(job_id="late")])
    point = store.head
    store.append("job-late", 2, [JobFinished(job_id="late", status="cancelled", reason="x")])
    store.append("job-new", 0, [submitted("new", "alice")])
    past = hot_views_as_of_sync(db, position=point, time_us=None)
    replayed = views_until(store.conn, position=point)
    assert lists(past) == lists(replayed)
    assert past.jobs["late"].status == "pending"
    assert past.jobs.get("new") is None
    store.close()


def test_a_finished_job_is_served_after_it_left_memory_and_after_restart(server_factory) -> None:
    """With one finished job cached, the first of three is served from the table (status, results, logs),
    also after a restart, and after a restart without tables while they are rebuilt."""
    server = server_factory(
        finished_jobs_cached=1, snapshot_every=5, rate_limit_per_minute=100, max_active_jobs_per_user=5
    )
    ids = []
    with server.client(server.admin_token) as client:
        for index in range(3):
            code = f"print('job {index}')"
            ids.append(submit(client, code, config_yaml("admin"), wait=True).json()["job_id"])
        wait_status(client, ids[-1], {"completed"})
    for restart in ("no", "yes", "without tables"):
        if restart != "no":
            server.stop()
            if restart == "without tables":
                drop_tables(server.root / "gpuledger.db")
            server.start()
        with server.client(server.admin_token) as client:
            status = client.get(f"/api/status/{ids[0]}").json()
            assert (status["status"], status["exit_code"]) == ("completed", 0), status
            assert client.get(f"/api/results/{ids[0]}").json()["stdout"] == "job 0\n"
            assert client.get(f"/api/jobs/{ids[0]}/logs?stream=stdout").content == b"job 0\n"
            if restart != "without tables":  # lists may lack old jobs until the backfill is done
                listed = [j["job_id"] for j in client.get("/api/jobs?limit=10").json()["jobs"]]
                assert ids[::-1] == [j for j in listed if j in ids]
    for _ in range(100):  # the rows are written in the background: verified once they are all back
        done = run_cli(server.root, "audit", "verify", "--db", str(server.root / "gpuledger.db"), env=server.env)
        if "still being rebuilt" not in done.stdout + done.stderr:
            break
        time.sleep(0.1)
    assert done.returncode == 0, done.stdout + done.stderr
