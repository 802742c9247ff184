"""The per-user artifact quota (ARTIFACT_QUOTA_BYTES): the writer's fold of stored minus pruned bytes,
the finish step's trim at commit time, and a real server that keeps, skips, and after pruning keeps
again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import apsw
import pytest
from server import OPEN_LIMITS, Server, config_yaml, run_cli, submit, wait_status
from test_properties import NODES, new_store, next_step

from ledger.domain.artifact_quota import fit_quota, quota_left
from ledger.domain.events import AnyEvent, Artifact, JobArtifactsStored, JobFinished, NodeRegistered
from ledger.domain.nodes import decide_register
from ledger.store import commands
from ledger.store.retention import artifact_prune_write, plan_artifact_prune
from ledger.store.store import EventStore, Write
from projections import snapshots
from projections.live import open_store
from projections.tables import ViewTables


def manifest(job_id: str, *sizes: int) -> JobArtifactsStored:
    files = [Artifact(path=f"outputs/f{i}", size=size, digest=f"{i:064x}") for i, size in enumerate(sizes)]
    return JobArtifactsStored(job_id=job_id, files=files, bytes=sum(sizes))


def test_fit_quota_keeps_what_fits_in_manifest_order_and_names_the_rest() -> None:
    """A manifest over what is left keeps the files that fit, in order; the others are skipped with why."""
    fitted = fit_quota(manifest("j", 400, 700, 300), left=800, quota=1000)
    assert [a.path for a in fitted.files] == ["outputs/f0", "outputs/f2"]
    assert fitted.bytes == 700
    assert fitted.skipped == ["outputs/f1: over your artifact quota (1000 bytes)"]
    assert fit_quota(manifest("j", 400), left=None, quota=0).bytes == 400  # no quota: unchanged


def run_to_start(store: EventStore, *job_ids: str) -> None:
    for job_id in job_ids:
        for _ in range(5):  # submit, scan, queue, dispatch, start
            store.execute([Write(decide=lambda v, j=job_id: next_step(v, j))])


def finish(store: EventStore, job_id: str, stored: JobArtifactsStored, quota: int) -> None:
    job = store.views.jobs[job_id]
    ended = JobFinished(job_id=job_id, status="completed", reason="exit_zero", exit_code=0, attempt=job.attempt)
    store.execute([commands.finish_job(ended, node=job.node or "", artifacts=stored, artifact_quota=quota)])


def prune(store: EventStore, job_id: str) -> None:
    pruned = plan_artifact_prune([store.views.jobs[job_id]], set(), reason="r", by="t")
    store.execute([artifact_prune_write(pruned, by="t")])


def register(name: str) -> list[AnyEvent]:
    return decide_register(None, NodeRegistered(name=name, host="h"))


def test_fold_adds_stored_bytes_and_takes_pruned_bytes_off(tmp_path: Path) -> None:
    """UserStats.artifact_bytes grows on job.artifacts_stored and shrinks by the manifest on pruning."""
    store = new_store(str(tmp_path))
    try:
        run_to_start(store, "j0", "j2")  # both u0's
        finish(store, "j0", manifest("j0", 300, 200), 0)
        finish(store, "j2", manifest("j2", 100), 0)
        assert store.views.users["u0"].artifact_bytes == 600
        prune(store, "j0")
        assert store.views.users["u0"].artifact_bytes == 100
    finally:
        store.close()
    reopened = open_store(tmp_path / "ledger.db")  # the row the writer stored, read back
    assert reopened.views.users["u0"].artifact_bytes == 100
    reopened.close()


def test_reopen_from_a_snapshot_before_the_pruning_takes_the_bytes_off(tmp_path: Path) -> None:
    """A snapshot older than the pruning and job rows newer than it: the reopened fold still frees the bytes."""
    store = EventStore(tmp_path / "ledger.db", ViewTables(snapshot_every=10**6))
    try:
        store.execute(
            [Write(decide=lambda v, n=n: decide_register(None, NodeRegistered(name=n, host="h"))) for n in NODES]
        )
        run_to_start(store, "j0", "j2")
        finish(store, "j0", manifest("j0", 300, 200), 0)
        finish(store, "j2", manifest("j2", 100), 0)
        with store.conn:
            snapshots.write(store.conn, store.published)
        store.execute(
            [artifact_prune_write(plan_artifact_prune([store.views.jobs["j0"]], set(), reason="r", by="t"), by="t")]
        )
    finally:
        store.close()
    reopened = open_store(tmp_path / "ledger.db")
    assert reopened.views.users["u0"].artifact_bytes == 100
    reopened.close()


def test_a_ledger_from_before_the_quota_counts_the_artifacts_it_holds(tmp_path: Path) -> None:
    """Users' rows written before the field existed: the upgrade rebuilds them, artifacts counted."""
    store = new_store(str(tmp_path))
    run_to_start(store, "j0")
    finish(store, "j0", manifest("j0", 300, 200), 0)
    store.close()
    conn = apsw.Connection(str(tmp_path / "ledger.db"))
    (data,) = conn.execute("SELECT data FROM proj_users WHERE user_id = 'u0'").fetchone()
    old = {k: v for k, v in json.loads(bytes(data)).items() if k != "artifact_bytes"}
    conn.execute("UPDATE proj_users SET data = ? WHERE user_id = 'u0'", (json.dumps(old).encode(),))
    conn.pragma("user_version", 10)
    conn.close()
    reopened = open_store(tmp_path / "ledger.db")
    assert reopened.views.users["u0"].artifact_bytes == 500
    reopened.close()


def test_two_jobs_ending_together_cannot_both_overshoot(tmp_path: Path) -> None:
    """Both runners read 1000 bytes left; the second finish step, decided after the first, is trimmed."""
    store = new_store(str(tmp_path))
    try:
        run_to_start(store, "j0", "j2")  # both u0's
        assert quota_left(store.views.users.get("u0"), 1000) == 1000
        for job_id in ("j0", "j2"):  # each manifest collected against the 1000 bytes both runners read
            finish(store, job_id, manifest(job_id, 600), 1000)
        views = store.views
        assert views.users["u0"].artifact_bytes == 600
        assert views.jobs["j2"].artifacts == []
        assert views.jobs["j2"].artifacts_skipped == ["outputs/f0: over your artifact quota (1000 bytes)"]
    finally:
        store.close()


def writes(name: str, size: int) -> str:
    return f"import os\nos.makedirs('outputs', exist_ok=True)\nopen('outputs/{name}', 'wb').write(b'x' * {size})\n"


def artifacts_of(client: Any, code: str) -> dict[str, Any]:
    job_id = submit(client, code, config_yaml("dana")).json()["job_id"]
    wait_status(client, job_id, {"completed"})
    listing: dict[str, Any] = client.get(f"/api/jobs/{job_id}/artifacts").json()
    return listing


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("require_sandbox")
def test_quota_keeps_the_first_skips_the_second_and_pruning_frees_room(tmp_path: Path) -> None:
    """With a 1000-byte quota the first job's 600 bytes are kept, the second's are skipped with the
    reason (`GET /api/quota` and `gpuledger quota` show 600 of 1000); once retention prunes the first,
    a third job's 600 bytes fit again."""
    server = Server(tmp_path, code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS, artifact_quota_bytes=1000)
    server.start()
    try:
        token = server.token("dana")
        with server.client(token) as client:
            first = artifacts_of(client, writes("a", 600))
            assert [a["path"] for a in first["artifacts"]] == ["outputs/a"]
            second = artifacts_of(client, writes("b", 600))
            assert second["artifacts"] == []
            assert second["skipped"] == ["outputs/b: over your artifact quota (1000 bytes)"]
            quota = client.get("/api/quota").json()
            assert (quota["artifact_bytes"], quota["artifact_quota_bytes"]) == (600, 1000)
        shown = run_cli(server.root, "quota", env={"GPULEDGER_URL": server.url, "GPULEDGER_TOKEN": token})
        assert "artifacts stored: 600 bytes of 1000" in shown.stdout, shown.stdout + shown.stderr
        server.stop()
        server.env["GPULEDGER_ARTIFACT_RETENTION"] = "1"  # the server prunes a few seconds after it starts
        server.start()
        with server.client(token) as client:
            deadline = time.monotonic() + 20
            while client.get("/api/quota").json()["artifact_bytes"] != 0:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            third = artifacts_of(client, writes("c", 600))
            assert [a["path"] for a in third["artifacts"]] == ["outputs/c"]
            assert third["skipped"] == []
    finally:
        server.stop()
