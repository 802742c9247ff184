"""Retention: ``gpuledger prune`` removes old jobs' outputs (never a blob a kept job names), records each
job.pruned, and reads, ``audit verify`` and ``backup`` know a pruned output from a lost one."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from browser import sign_in
from server import Server, config_yaml, run_cli, submit

import ledger.store.store
from ledger.domain.clock import now_us
from ledger.domain.events import Blob, JobFinished, JobQueued, JobSubmitted
from ledger.domain.jobs import JobState
from ledger.store.backup import blob_path
from ledger.store.blobs import BlobStore
from ledger.store.retention import DAY_US, plan_prune, prune_write
from ledger.store.schema import connect
from projections.live import open_store

SHARED = 'print("the same line for both")\n'


def finished(client: httpx.Client, code: str) -> dict[str, Any]:
    answer = submit(client, code, config_yaml("admin"), wait=True)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["status"] == "completed", body
    return body


def digests_of(server: Server, job_id: str) -> dict[str, str]:
    """The job's code and stdout digests, from its events."""
    conn = connect(server.root / "gpuledger.db", readonly=True)
    try:
        rows = conn.execute("SELECT type, payload FROM events WHERE stream = ?", (f"job-{job_id}",)).fetchall()
    finally:
        conn.close()
    found = {}
    for type_, payload in rows:
        event = msgspec.json.decode(bytes(payload))
        if type_ == "job.submitted":
            found["code"] = event["code"]["digest"]
        if type_ == "job.finished":
            found["stdout"] = event["stdout"]["digest"]
    return found


def pruned_events(server: Server) -> list[str]:
    conn = connect(server.root / "gpuledger.db", readonly=True)
    try:
        return [row[0][4:] for row in conn.execute("SELECT stream FROM events WHERE type = 'job.pruned'")]
    finally:
        conn.close()


def wait_pruned(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/api/results/{job_id}").json()
        if body.get("pruned"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"the server never saw job {job_id} pruned: {body}")


def test_prune_removes_old_outputs_keeps_shared_blobs_and_reads_say_pruned(server_factory, tmp_path: Path) -> None:
    """Old jobs lose their own outputs (one event each), a blob a newer job shares stays, and results,
    logs and the CLI of a pruned job say so; audit verify and backup pass after the prune."""
    server = server_factory(finished_jobs_cached=1)  # the pruned jobs live in their rows only
    with server.client(server.admin_token) as client:
        old_unique = finished(client, 'print("only the old job printed this")\n')["job_id"]
        old_shared = finished(client, SHARED)["job_id"]
        time.sleep(0.05)
        cutoff = datetime.now(UTC).isoformat()
        new_shared = finished(client, SHARED)["job_id"]
        blobs = server.root / "jobs" / "blobs"
        unique, shared = digests_of(server, old_unique), digests_of(server, new_shared)
        assert digests_of(server, old_shared)["stdout"] == shared["stdout"]

        dry = run_cli(server.root, "prune", "--before", cutoff, "--dry-run", env=server.env)
        assert dry.returncode == 0, dry.stderr
        assert "would prune 2 job(s)" in dry.stdout
        assert pruned_events(server) == []
        done = run_cli(server.root, "prune", "--before", cutoff, env=server.env)
        assert done.returncode == 0, done.stderr
        assert "pruned 2 job(s)" in done.stdout
        assert sorted(pruned_events(server)) == sorted([old_unique, old_shared])
        assert not blob_path(blobs, unique["stdout"]).exists()
        assert blob_path(blobs, unique["code"]).exists()  # the submitted code is never pruned
        assert blob_path(blobs, shared["stdout"]).exists()  # still named by the newer job

        body = wait_pruned(client, old_unique)
        assert body["status"] == "completed"
        assert body["exit_code"] == 0
        assert body["stdout"] == ""
        assert body["pruned"].startswith("output pruned on ")
        assert f"ended before {cutoff}" in body["pruned"]
        logs = client.get(f"/api/jobs/{old_unique}/logs")
        assert logs.status_code == 200
        assert logs.content == b""
        assert logs.headers["x-job-pruned"] == body["pruned"]
        assert "the same line" in client.get(f"/api/results/{new_shared}").json()["stdout"]
    user = {**server.env, "GPULEDGER_URL": server.url, "GPULEDGER_TOKEN": server.admin_token or ""}
    results = run_cli(server.root, "results", old_unique, env=user)
    assert results.returncode == 0, results.stderr
    assert "output pruned on" in results.stderr
    assert "output pruned on" in run_cli(server.root, "logs", old_unique, env=user).stderr
    assert "output pruned on" in run_cli(server.root, "logs", old_unique, "-f", env=user).stderr

    again = run_cli(server.root, "prune", "--before", cutoff, env=server.env)
    assert "pruned 0 job(s)" in again.stdout  # each job is pruned once
    verdict = run_cli(server.root, "audit", "verify", env=server.env)
    assert verdict.returncode == 0, verdict.stderr
    assert "blobs present and intact" in verdict.stdout
    backup = run_cli(server.root, "backup", str(tmp_path / "b"), env=server.env)
    assert backup.returncode == 0, backup.stderr
    assert "warning" not in backup.stdout
    assert "verified" in backup.stdout
    place = tmp_path / "restored"
    place.mkdir()
    restored = run_cli(place, "restore", str(tmp_path / "b"))
    assert restored.returncode == 0, restored.stderr
    server.stop()
    server.start()  # the fold of job.pruned was persisted in the job's row
    with server.client(server.admin_token) as client:
        assert client.get(f"/api/results/{old_unique}").json()["pruned"] == body["pruned"]


def test_audit_verify_fails_naming_a_blob_deleted_by_hand(server_factory) -> None:
    """A blob that no job.pruned removed, missing from the store, makes audit verify exit 1 naming it."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        job_id = finished(client, 'print("keep me")\n')["job_id"]
    assert run_cli(server.root, "audit", "verify", env=server.env).returncode == 0
    stdout = digests_of(server, job_id)["stdout"]
    blob_path(server.root / "jobs" / "blobs", stdout).unlink()
    verdict = run_cli(server.root, "audit", "verify", env=server.env)
    assert verdict.returncode == 1, (verdict.stdout, verdict.stderr)
    assert stdout in verdict.stderr
    assert "not pruned" in verdict.stderr


def test_prune_without_retention_setting_refuses(server_factory) -> None:
    """With RETENTION_DAYS = 0 and no --days or --before, prune says retention is off and removes nothing."""
    server = server_factory()
    done = run_cli(server.root, "prune", env=server.env)
    assert done.returncode == 2
    assert "retention is off" in done.stderr


def test_metrics_and_dashboard_show_disk_use(server_factory) -> None:
    """/metrics has gpuledger_disk_bytes for the ledger, blobs, work folders and free space, and the
    admin dashboard a ``disk`` block with the same figures, measured off the event loop."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        finished(client, 'print("x" * 5000)\n')
        deadline = time.monotonic() + 10
        disk = client.get("/api/dashboard").json()["disk"]
        while disk is None and time.monotonic() < deadline:
            time.sleep(0.1)
            disk = client.get("/api/dashboard").json()["disk"]
        metrics = client.get("/metrics").text
    assert disk is not None
    assert disk["ledger_bytes"] > 0
    assert disk["free_bytes"] > 0
    assert set(disk) >= {"ledger_bytes", "blobs_bytes", "workdirs_bytes", "free_bytes"}
    for part in ("ledger", "blobs", "workdirs", "free"):
        assert f'gpuledger_disk_bytes{{part="{part}"}}' in metrics


def test_plan_prune_lists_a_shared_output_for_each_job_and_counts_its_bytes_once() -> None:
    """Two pruned jobs sharing an output both list it (its bytes freed once); kept digests and code never go."""

    def job(job_id: str, stdout: str, stderr: str) -> JobState:
        return JobState(
            job_id=job_id,
            user_id="u",
            competition_id="c",
            project_id="p",
            expected_time_s=1,
            code=Blob(digest="c" * 64, size=7),
            position=1,
            created_at=1,
            status="completed",
            stdout=Blob(digest=stdout * 64, size=100),
            stderr=Blob(digest=stderr * 64, size=10),
        )

    events = plan_prune([job("a", "1", "2"), job("b", "1", "3")], {"3" * 64}, reason="r", by="t")
    assert [e.digests for e in events] == [sorted(["1" * 64, "2" * 64]), ["1" * 64]]
    assert [e.bytes_freed for e in events] == [110, 0]


def old_job(root: Path, monkeypatch: pytest.MonkeyPatch) -> Blob:
    """A ledger whose one job ended 40 days ago (the store's clock set back while it is written)."""
    blobs = BlobStore(root / "jobs")
    code, output = blobs.put(b"print('old')\n"), blobs.put(b"old\n")
    ago = now_us() - 40 * DAY_US
    monkeypatch.setattr(ledger.store.store, "now_us", lambda: ago)
    store = open_store(root / "gpuledger.db")
    submitted = JobSubmitted(
        job_id="old", user_id="admin", competition_id="c", project_id="p", expected_time_s=30, code=code
    )
    finish = JobFinished(job_id="old", status="completed", reason="exit_zero", exit_code=0, stdout=output)
    store.append("job-old", 0, [submitted, JobQueued(job_id="old"), finish])
    store.close()
    monkeypatch.undo()
    return output


def test_the_server_prunes_by_itself_with_retention_days(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With RETENTION_DAYS = 30 a server prunes a job that ended 40 days ago soon after it starts."""
    root = tmp_path / "server"
    root.mkdir()
    output = old_job(root, monkeypatch)
    server = Server(root, code_scanner_quick_mode=True, retention_days=30)
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not pruned_events(server) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.stop()
    assert pruned_events(server) == ["old"]
    assert not blob_path(root / "jobs" / "blobs", output.digest).exists()
    assert run_cli(root, "audit", "verify", env=server.env).returncode == 0


def test_web_job_page_says_the_output_was_pruned(server_factory, browser: Any) -> None:
    """After `prune --days 0`, the job's web page shows the pruned message in its output tab."""
    server = server_factory()
    assert server.admin_token is not None
    with server.client(server.admin_token) as client:
        job_id = finished(client, 'print("gone soon")\n')["job_id"]
        done = run_cli(server.root, "prune", "--days", "0", env=server.env)
        assert "pruned 1 job(s)" in done.stdout, done.stderr
        wait_pruned(client, job_id)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        sign_in(page, server.url, server.admin_token)
        page.goto(f"{server.url}/dashboard#/job/{job_id}")
        page.locator("#log-text", has_text="output pruned on").wait_for()
        assert "gone soon" not in page.inner_text("#log-text")
    finally:
        context.close()


def test_a_prune_by_another_process_is_folded_once_by_a_running_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prune` writes the event and the pruned job's row together; a server whose memory no longer holds
    that finished job folds the event onto the row and must not count it twice (its version)."""
    from projections.audit import compare_projections, views_until

    old_job(tmp_path, monkeypatch)
    path = tmp_path / "gpuledger.db"
    server = open_store(path, finished_cached=0)  # the finished job lives in its row only
    assert server.views.jobs.resident("old") is None
    cli = open_store(path)
    events = plan_prune([cli.views.jobs["old"]], set(), reason="test", by="test")
    assert not isinstance(cli.execute([prune_write(events, by="test")], write_projections=True)[0], Exception)
    cli.close()
    server.execute([], write_projections=True)  # catches up with the prune, then writes its dirty rows
    server.close()
    conn = connect(path, readonly=True)
    try:
        assert compare_projections(conn, views_until(conn)) == []
    finally:
        conn.close()
