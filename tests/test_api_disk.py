"""The real server with its directory on a small tmpfs that fills (as a job or another process would
fill it): writes answer 503 with Retry-After, /readyz says why, nothing acknowledged is lost, and the
server recovers and restarts by itself."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from disks import fill
from server import OPEN_LIMITS, Server, config_yaml, run_cli, submit, wait_status

MIB = 1024 * 1024
CODE = "print('hello')\n"


@pytest.fixture
def small_disk(tmpfs: Callable[[str], Path]) -> Path:
    """A 64 MiB tmpfs (tests/disks.py)."""
    return tmpfs("64m")


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def make_server(root: Path, servers: list[Server], **settings: Any) -> Server:
    root.mkdir(exist_ok=True)
    settings = {
        "code_scanner_enabled": False,
        "endpoint_limits": OPEN_LIMITS,
        "rate_limit_per_minute": 10_000,
        "max_active_jobs_per_user": 1000,
        "disk_free_floor_bytes": 8 * MIB,
        **settings,
    }
    server = Server(root, **settings)
    servers.append(server)
    server.start()
    return server


def readyz(server: Server) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(f"{server.url}/readyz", timeout=10)
    return answer.status_code, answer.json()


def wait_readyz(server: Server, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    deadline, body = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        try:
            _status, body = readyz(server)
            if predicate(body):
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"/readyz never matched: {body}")


def verify(server: Server, db: Path | None = None) -> None:
    db = db or server.root / "gpuledger.db"
    done = run_cli(server.root, "audit", "verify", "--db", str(db), env=server.env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_full_disk_answers_503_and_the_server_recovers_by_itself(small_disk: Path, servers: list[Server]) -> None:
    """Full: submits 503 with Retry-After, /readyz not writable with free bytes and the error; room back:
    submits work, every acknowledged one is there, the audit passes, and a restart while full works."""
    server = make_server(small_disk / "server", servers, ledger_reserve_bytes=0)
    acknowledged = []
    with server.client(server.admin_token) as client:
        acknowledged.append(submit(client, CODE, config_yaml("admin"), wait=True).json()["job_id"])
        filler = fill(small_disk)
        refused = [submit(client, CODE, config_yaml("admin")) for _ in range(5)]
        refused.append(submit(client, "print('new code')\n", config_yaml("admin")))  # its blob cannot be stored
        for answer in refused:
            if answer.status_code == 200:  # a write that found room in the log's own file
                acknowledged.append(answer.json()["job_id"])
                continue
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["Retry-After"]) > 0
        assert any(answer.status_code == 503 for answer in refused)
        status, body = readyz(server)
        assert status == 503
        assert body["checks"]["ledger_writable"] is False
        assert body["ledger"]["free_bytes"] < 8 * MIB
        assert "full" in body["ledger"]["last_write_error"]
        assert not list((server.root / "jobs" / "blobs").glob("*/.tmp-*"))
        filler.unlink()
        wait_readyz(server, lambda b: b["checks"]["ledger_writable"])  # by itself, without a write
        acknowledged.append(submit(client, CODE, config_yaml("admin"), wait=True).json()["job_id"])
        listed = {job["job_id"] for job in client.get("/api/jobs", params={"limit": 100}).json()["jobs"]}
        assert listed == set(acknowledged)
        for job_id in acknowledged:
            assert wait_status(client, job_id, {"completed"})["status"] == "completed"
    verify(server)
    server.stop()  # a clean stop: the next open needs the -shm it leaves
    filler = fill(small_disk)
    server.spawn()
    body = wait_readyz(server, lambda b: b["checks"]["executors_started"])
    assert body["checks"]["ledger_writable"] is False
    filler.unlink()
    wait_readyz(server, lambda b: b["status"] == "ready")
    with server.client(server.admin_token) as client:
        job_id = submit(client, CODE, config_yaml("admin"), wait=True).json()["job_id"]
        assert wait_status(client, job_id, {"completed"})["status"] == "completed"
    verify(server)


def test_the_reserve_keeps_the_ledger_writing_and_dispatch_stops_below_the_floor(
    small_disk: Path, servers: list[Server]
) -> None:
    """A full disk at restart: the reserve is given back, the server starts writable and takes submits;
    no job is dispatched below the floor (the pending job says why); room back, the job runs and the
    reserve returns."""
    server = make_server(small_disk / "server", servers, ledger_reserve_bytes=4 * MIB)
    reserve = server.root / "gpuledger.db.reserve"
    assert reserve.stat().st_size == 4 * MIB
    with server.client(server.admin_token) as client:
        submit(client, CODE, config_yaml("admin"), wait=True)
    server.stop()
    filler = fill(small_disk)
    server.start()  # ready: the reserve made room for the start's writes
    assert not reserve.exists()
    _status, body = readyz(server)
    assert body["ledger"]["reserve_held"] is False
    assert "DISK_FREE_FLOOR_BYTES" in body["ledger"]["dispatch_held"]
    with server.client(server.admin_token) as client:
        answer = submit(client, CODE, config_yaml("admin"))
        assert answer.status_code == 200, answer.text
        job_id = answer.json()["job_id"]
        time.sleep(1.5)
        status = client.get(f"/api/status/{job_id}").json()
        assert status["status"] == "pending"
        assert "disk nearly full" in status["reason"]
        filler.unlink()
        assert wait_status(client, job_id, {"completed"}, timeout=30)["status"] == "completed"
    wait_readyz(server, lambda b: b["ledger"]["reserve_held"], timeout=20)
    assert reserve.stat().st_size == 4 * MIB
    verify(server)


def test_a_job_ending_while_the_ledger_cannot_write_is_recorded_once_room_returns(
    tmp_path: Path, small_disk: Path, servers: list[Server]
) -> None:
    """The ledger alone on the full disk (the job's files elsewhere): the job's finish waits for room
    rather than being lost, and lands by itself once the disk takes writes again."""
    db = small_disk / "gpuledger.db"
    server = make_server(tmp_path / "server", servers, database_path=str(db), ledger_reserve_bytes=0)
    code = "import time\nprint('hello', flush=True)\ntime.sleep(3)\n"
    with server.client(server.admin_token) as client:
        job_id = submit(client, code, config_yaml("admin")).json()["job_id"]
        wait_status(client, job_id, {"running"})
        filler = fill(small_disk)
        time.sleep(5)  # the job has ended meanwhile; its finish was refused
        assert client.get(f"/api/status/{job_id}").json()["status"] == "running"
        filler.unlink()
        body = wait_status(client, job_id, {"completed", "failed", "cancelled"}, timeout=30)
        assert body["status"] == "completed"
        events = [e["type"] for e in client.get(f"/api/jobs/{job_id}/events").json()["events"]]
        assert events.count("job.finished") == 1
    verify(server, db)
