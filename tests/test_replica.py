"""Continuous replication: ``serve`` runs Litestream to a file:// or sftp:// target and copies blobs there;
after ``kill -9`` and the loss of the server's directory, ``restore --from-replica`` brings back every
submit acknowledged more than REPLICA_LAG_S before the kill."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import Server, config_yaml, run_cli, submit

from ledger.domain.errors import SettingsError
from ledger.store.schema import connect
from ledger.store.settings import load_settings

REPLICA_LAG_S = 1.0  # the documented promise (docs/admin-guide.md, "Replication")
BLOB_INTERVAL_S = 0.25  # [replica] blob_interval_s: how often new blobs follow the ledger to the target


def submitted_ids(ledger: Path) -> set[str]:
    conn = connect(ledger, readonly=True)
    try:
        return {row[0][4:] for row in conn.execute("SELECT stream FROM events WHERE type = 'job.submitted'")}
    finally:
        conn.close()


class Submitter(threading.Thread):
    """Submits distinct jobs (each its own code blob) until stopped, at most 120 or 20 s, noting each ack."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.acked: list[tuple[float, str, str]] = []  # (monotonic time, job id, code digest)
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 20
        with self.server.client(self.server.admin_token) as client:
            for n in range(120):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                code = f"print({n})  # {self.server.port}\n"
                try:
                    answer = submit(client, code, config_yaml("admin"), wait=False)
                except httpx.HTTPError:  # the server was killed mid-request: never acknowledged
                    return
                if answer.status_code == 200:
                    digest = hashlib.sha256(code.encode()).hexdigest()
                    self.acked.append((time.monotonic(), answer.json()["job_id"], digest))


def replica_env(replica: dict[str, Any]) -> dict[str, str]:
    return {"GPULEDGER_REPLICA": json.dumps(replica)}


def litestream_pids(config: Path) -> list[int]:
    """Processes whose command line names this server's Litestream configuration."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(config).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def wait_replica(server: Server, timeout: float = 20) -> dict[str, Any]:
    """The /readyz replica block once Litestream runs and the lag has been measured."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        block = httpx.get(f"{server.url}/readyz", timeout=5).json().get("replica", {})
        if block.get("litestream_running") and block.get("lag_s") is not None:
            return block
        time.sleep(0.2)
    raise AssertionError(f"replica never ran: {block}")


def lose_and_restore(server: Server, replica: dict[str, Any], place: Path) -> float:
    """kill -9 the server, delete its ledger and blobs, restore from the replica into ``place``."""
    killed = time.monotonic()
    server.kill()
    time.sleep(0.5)
    assert litestream_pids(server.root / ".litestream.yml") == [], "Litestream outlived the killed server"
    for path in server.root.glob("gpuledger.db*"):
        path.unlink()
    shutil.rmtree(server.root / "jobs")
    place.mkdir()
    done = run_cli(place, "restore", "--from-replica", env=replica_env(replica))
    assert done.returncode == 0, done.stderr
    assert "audit verify ok" in done.stdout
    return killed


def check_replica_survives_loss(server: Server, replica: dict[str, Any], place: Path) -> None:
    block = wait_replica(server)
    assert block["target"].endswith(replica["url"].split("://", 1)[1].split("@")[-1].split("/", 1)[-1])
    submitter = Submitter(server)
    submitter.start()
    lags = []
    for _ in range(10):  # the measured lag under load, as /readyz reports it
        time.sleep(0.5)
        lags.append(httpx.get(f"{server.url}/readyz", timeout=5).json()["replica"]["lag_s"])
    assert all(isinstance(lag, float | int) for lag in lags), lags
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert "gpuledger_replica_lag_seconds" in metrics
    # What is promised: nothing acknowledged longer ago than the lag the server reports is lost. The
    # window is that lag (REPLICA_LAG_S at least), never a fixed second: this machine may be loaded, and
    # how small the lag is stays a benchmark's question, not this test's.
    window = max(REPLICA_LAG_S, *lags) + BLOB_INTERVAL_S
    deadline = time.monotonic() + 30  # until five submits lie outside the window (bounded)
    while time.monotonic() < deadline and sum(at < time.monotonic() - window for at, _, _ in submitter.acked) < 5:
        time.sleep(0.2)
    last_lag = httpx.get(f"{server.url}/readyz", timeout=5).json()["replica"]["lag_s"]
    window = max(window, last_lag + BLOB_INTERVAL_S)
    killed = lose_and_restore(server, replica, place)
    submitter.stop.set()
    submitter.join(30)
    older = [(job, digest) for at, job, digest in submitter.acked if at < killed - window]
    assert len(older) >= 5, f"too few submits acknowledged under load: {len(submitter.acked)}"
    assert {job for job, _ in older} <= submitted_ids(place / "gpuledger.db")
    for _, digest in older:  # each submit's code blob came back from the target
        assert hashlib.sha256((place / "jobs" / "blobs" / digest[:2] / digest).read_bytes()).hexdigest() == digest
    assert run_cli(place, "audit", "verify").returncode == 0
    again = Server(place, code_scanner_quick_mode=True)
    again.admin_token = server.admin_token
    again.start()
    try:
        with again.client(server.admin_token) as client:
            assert client.get(f"/api/status/{older[-1][0]}").status_code == 200
    finally:
        again.stop()


def test_file_replica_survives_kill_and_loss_of_the_server_directory(server_factory, tmp_path: Path) -> None:
    """Under submits, kill -9 and deletion of ledger and blobs: the file:// replica restores every submit
    acknowledged more than REPLICA_LAG_S before the kill, with its code blob, and it verifies."""
    replica = {"url": f"file://{tmp_path / 'replica'}"}
    server = server_factory(max_active_jobs_per_user=10_000, rate_limit_per_minute=10_000, replica=replica)
    check_replica_survives_loss(server, replica, tmp_path / "restored")


def test_sftp_replica_survives_kill_and_loss_of_the_server_directory(
    server_factory, healthy_ssh_cluster, tmp_path: Path
) -> None:
    """The same through a loopback SFTP target (the test sshd, key and known_hosts as for nodes)."""
    cluster = healthy_ssh_cluster
    target = tmp_path / "sftp-replica"
    replica = {
        "url": f"sftp://{cluster.user}@127.0.0.1:{cluster.jump.port}{target}",
        "key_file": str(cluster.key_file),
        "known_hosts": str(cluster.known_hosts),
    }
    server = server_factory(max_active_jobs_per_user=10_000, rate_limit_per_minute=10_000, replica=replica)
    check_replica_survives_loss(server, replica, tmp_path / "restored")
    assert any((target / "blobs").glob("??/*")), "no blob reached the SFTP target"


def test_restore_at_a_time_and_litestream_restarted_after_it_dies(server_factory, tmp_path: Path) -> None:
    """--at TIME restores the ledger as it was then (a later submit absent); a killed Litestream is
    restarted by the server; restore from the replica never writes over a ledger."""
    replica = {"url": f"file://{tmp_path / 'replica'}"}
    server = server_factory(replica=replica)
    wait_replica(server)
    with server.client(server.admin_token) as client:
        early = submit(client, 'print("early")\n', config_yaml("admin")).json()["job_id"]
        time.sleep(2)
        between = datetime.now(UTC).isoformat()
        time.sleep(2)
        for pid in litestream_pids(server.root / ".litestream.yml"):
            os.kill(pid, signal.SIGKILL)
        late = submit(client, 'print("late")\n', config_yaml("admin")).json()["job_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and wait_replica(server)["restarts"] < 1:
        time.sleep(0.2)
    assert wait_replica(server)["restarts"] >= 1
    time.sleep(2)  # the restarted Litestream sends the late submit
    refused = run_cli(server.root, "restore", "--from-replica", env=replica_env(replica))
    assert refused.returncode == 2
    assert "never writes over a ledger" in refused.stderr
    server.stop()

    (tmp_path / "then").mkdir()
    done = run_cli(tmp_path / "then", "restore", "--from-replica", "--at", between, env=replica_env(replica))
    assert done.returncode == 0, done.stderr
    assert early in submitted_ids(tmp_path / "then" / "gpuledger.db")
    assert late not in submitted_ids(tmp_path / "then" / "gpuledger.db")
    (tmp_path / "now").mkdir()
    done = run_cli(tmp_path / "now", "restore", "--from-replica", env=replica_env(replica))
    assert done.returncode == 0, done.stderr
    assert {early, late} <= submitted_ids(tmp_path / "now" / "gpuledger.db")


def test_a_bad_replica_table_is_refused_with_its_name(tmp_path: Path) -> None:
    """A [replica] url of an unknown kind stops start-up naming the setting; restore --from-replica
    without a [replica] table, or with both SRC and --from-replica, says what is wrong (exit 2)."""
    with pytest.raises(SettingsError, match="replica"):
        load_settings(environ={"GPULEDGER_REPLICA": json.dumps({"url": "ftp://host/path"})})
    with pytest.raises(SettingsError, match="replica"):
        load_settings(environ={"GPULEDGER_REPLICA": json.dumps({"url": "file:///r", "sync_interval_s": 0})})
    done = run_cli(tmp_path, "restore", "--from-replica")
    assert done.returncode == 2
    assert "no [replica] table" in done.stderr
    done = run_cli(tmp_path, "restore", str(tmp_path), "--from-replica")
    assert done.returncode == 2
    assert "either SRC" in done.stderr


def test_blobs_the_replica_lacked_are_recorded_lost_and_the_restore_verifies(server_factory, tmp_path: Path) -> None:
    """A blob that had not reached the target when the server went (deleted there to stand in for one):
    the restore records its loss as events (a finished job's output pruned with the reason, a queued
    job whose code is gone cancelled), reads say why, and ``audit verify`` passes."""
    replica = {"url": f"file://{tmp_path / 'replica'}"}
    server = server_factory(replica=replica, local_slots=1, max_active_jobs_per_user=10)
    with server.client(server.admin_token) as client:
        done = submit(client, 'print("gone with the server")\n', config_yaml("admin"), wait=True).json()["job_id"]
        blocker = submit(client, "import time\ntime.sleep(60)\n", config_yaml("admin", expected=120)).json()["job_id"]
        queued_code = 'print("never ran")\n'
        queued = submit(client, queued_code, config_yaml("admin")).json()["job_id"]
        stdout_digest = hashlib.sha256(b"gone with the server\n").hexdigest()
    target_blobs = tmp_path / "replica" / "blobs"
    lost = [stdout_digest, hashlib.sha256(queued_code.encode()).hexdigest()]
    deadline = time.monotonic() + 20
    while not all((target_blobs / d[:2] / d).exists() for d in lost) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2 * REPLICA_LAG_S)  # the ledger's last events shipped too
    server.kill()
    for digest in lost:
        (target_blobs / digest[:2] / digest).unlink()
    place = tmp_path / "restored"
    place.mkdir()
    restored = run_cli(place, "restore", "--from-replica", env=replica_env(replica))
    assert restored.returncode == 0, restored.stderr
    assert "records their loss" in restored.stdout
    assert run_cli(place, "audit", "verify").returncode == 0
    again = Server(place, code_scanner_quick_mode=True, local_slots=1)
    again.admin_token = server.admin_token
    try:
        again.start()
        with again.client(server.admin_token) as client:
            results = client.get(f"/api/results/{done}").json()
            assert "not on the replica" in results["pruned"]
            assert client.get(f"/api/status/{queued}").json()["status"] == "cancelled"
            assert client.get(f"/api/status/{blocker}").json()["status"] in ("running", "failed", "completed")
    finally:
        again.stop()
