"""Hostile jobs against a real server on the local runner: disk and output limits, results files the
job made unreadable, files that resist clean-up, and notices a job cannot forge.

Each server here lives on its own 64 MiB tmpfs (ledger, live copies, workdirs), so a job that fills
its disk fills only that.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from server import OPEN_LIMITS, Server, config_yaml, submit, wait_status
from test_job_limits import DEEP_AND_CLOSED

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("require_sandbox")]
MiB = 1024 * 1024
ENDED = {"completed", "failed", "cancelled"}


@pytest.fixture
def small_server(tmpfs: Callable[[str], Path]) -> Iterator[Any]:
    """``make(**settings)``: a server whose whole root is a 64 MiB tmpfs (tests/disks.py)."""
    servers: list[Server] = []

    def make(**settings: Any) -> Server:
        mount = tmpfs("64m")
        settings = {"code_scanner_quick_mode": True, "endpoint_limits": OPEN_LIMITS, **settings}
        server = Server(mount, **settings)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


def workdirs(server: Server) -> list[Path]:
    root = server.root / "jobs" / "work" / "jobs"
    return list(root.iterdir()) if root.is_dir() else []


def eventually(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_job_past_job_max_disk_fails_disk_limit_and_its_files_go(small_server: Any) -> None:
    """A job writing 40 MiB under JOB_MAX_DISK = 8 MiB ends failed/disk_limit; its workdir is removed."""
    server = small_server(job_max_disk=8 * MiB)
    code = "import time\nwith open('big', 'wb') as f:\n    for _ in range(40):\n        f.write(b'x' * (1 << 20))\n"
    code += "time.sleep(60)\n"
    with server.client(server.admin_token) as client:
        job = submit(client, code, config_yaml("admin")).json()["job_id"]
        body = wait_status(client, job, ENDED, timeout=60)
        assert (body["status"], body["finish_reason"]) == ("failed", "disk_limit"), body
        assert "JOB_MAX_DISK" in (body["message"] or "")
        assert eventually(lambda: workdirs(server) == [])


def test_a_job_printing_without_end_is_stopped_with_bounded_copies(small_server: Any) -> None:
    """`while True: print` under MAX_OUTPUT_BYTES = 2 MiB ends output_limit; the live copy on the server
    never grew past its cap of 4 MiB per stream while the job ran."""
    server = small_server(max_output_bytes=2 * MiB)
    live = server.root / "jobs" / "live"
    biggest = 0
    with server.client(server.admin_token) as client:
        job = submit(client, "while True:\n    print('x' * 1000)\n", config_yaml("admin")).json()["job_id"]
        deadline = time.monotonic() + 60
        while client.get(f"/api/status/{job}").json()["status"] not in ENDED:
            assert time.monotonic() < deadline, "the printing job was never stopped"
            sizes = [p.stat().st_size for p in live.rglob("*") if p.is_file()] if live.is_dir() else []
            biggest = max([biggest, *sizes])
            time.sleep(0.05)
        body = client.get(f"/api/status/{job}").json()
        assert (body["status"], body["finish_reason"]) == ("failed", "output_limit"), body
        assert biggest <= 4 * MiB
        results = client.get(f"/api/results/{job}").json()
        assert results["truncated"]["stdout"] is True


UNREADABLE = {
    # Bound by a relative name: the absolute path may pass AF_UNIX's 108-byte limit.
    "socket": "import os, socket\nresults = os.environ['GPULEDGER_RESULTS']\nos.chdir(os.path.dirname(results))\n"
    "socket.socket(socket.AF_UNIX).bind(os.path.basename(results))\n",
    "directory": "import os\nos.mkdir(os.environ['GPULEDGER_RESULTS'])\n",
    "fifo": "import os\nos.mkfifo(os.environ['GPULEDGER_RESULTS'])\n",
    "too_large": "import os\nopen(os.environ['GPULEDGER_RESULTS'], 'w').write('{}\\n' * 4096)\n",
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_an_unreadable_results_file_is_the_jobs_own_doing(small_server: Any, kind: str) -> None:
    """A results file that is a socket, directory, FIFO or over MAX_RESULTS_BYTES: results_unreadable,
    one attempt, charged (never dispatch_failed, refunded and re-run as a platform failure)."""
    server = small_server(retries=2, quota_submissions=10, code_scanner_enabled=False, max_results_bytes=1024)
    with server.client(server.admin_token) as client:
        job = submit(client, UNREADABLE[kind], config_yaml("admin")).json()["job_id"]
        body = wait_status(client, job, ENDED, timeout=60)
        assert (body["status"], body["finish_reason"]) == ("completed", "results_unreadable"), body
        assert (body["attempt"], body["attempts"]) == (1, [])
        assert "results file unreadable" in body["message"]
        quota = client.get("/api/quota").json()["quotas"]
        assert next(q for q in quota if q["quota"] == "submissions")["used"] == 1


def test_deep_and_closed_trees_are_cleaned_and_the_sweep_survives_them(small_server: Any) -> None:
    """A job's 3000-deep tree and mode-000 directories are removed after it ends; a planted leftover of
    the same kind is removed by the next start's sweep (which used to die on it)."""
    server = small_server()
    with server.client(server.admin_token) as client:
        job = submit(client, DEEP_AND_CLOSED, config_yaml("admin")).json()["job_id"]
        assert wait_status(client, job, ENDED, timeout=60)["status"] == "completed"
        assert eventually(lambda: workdirs(server) == [])
    server.stop()
    leftover = server.root / "jobs" / "work" / "jobs" / job / "work"
    leftover.mkdir(parents=True)
    subprocess.run(["python3", "-c", DEEP_AND_CLOSED], cwd=leftover, check=True)
    server.start()
    assert eventually(lambda: workdirs(server) == [], timeout=30)
    assert '"sweep.done"' in (server.root / "server.log").read_text()


def test_notices_are_the_servers_and_cannot_be_forged(small_server: Any) -> None:
    """A job printing the old timeout line and exiting 137 has no timeout message; a real timeout's
    notice is in the job's message, not in its stderr."""
    server = small_server()
    forged = "import sys\nprint('gpuledger: job exceeded its time limit of 2 s and was killed', file=sys.stderr)\n"
    forged += "sys.exit(137)\n"
    with server.client(server.admin_token) as client:
        fake = submit(client, forged, config_yaml("admin")).json()["job_id"]
        body = wait_status(client, fake, ENDED, timeout=60)
        assert (body["finish_reason"], body["message"]) == ("signal", None), body  # 137 reads as KILL, no more
        real = submit(client, "import time\ntime.sleep(60)\n", config_yaml("admin", expected=1)).json()["job_id"]
        body = wait_status(client, real, ENDED, timeout=60)
        assert body["finish_reason"] == "timeout"
        assert body["message"] == "job exceeded its time limit of 2 s and was killed"
        assert "time limit" not in client.get(f"/api/results/{real}").json()["stderr"]


def test_a_jobs_files_go_even_when_its_finish_cannot_be_written(small_server: Any) -> None:
    """The server's disk fills while a job runs: its end cannot be stored, and its workdir (which may be
    what filled the disk) is removed all the same."""
    server = small_server()
    code = "import time\nopen('data', 'wb').write(b'x' * (4 << 20))\nprint('wrote', flush=True)\ntime.sleep(4)\n"
    filler = server.root / "filler"
    with server.client(server.admin_token) as client:
        job = submit(client, code, config_yaml("admin")).json()["job_id"]
        wait_status(client, job, {"running"}, timeout=60)
        assert eventually(lambda: any((w / "work" / "data").exists() for w in workdirs(server)))
        try:
            with filler.open("wb") as handle:
                while True:
                    handle.write(b"\0" * MiB)
        except OSError:
            pass  # full
        try:
            assert eventually(lambda: workdirs(server) == [], timeout=40)
        finally:
            filler.unlink()
