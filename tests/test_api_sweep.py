"""Nothing left behind: live output copies go once stored; a start-up sweep removes what a crash left."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from server import config_yaml, submit, wait_status

CHATTY_JOB = "for i in range(20_000):\n    print('line', i)\n"
TERMINAL = {"completed", "failed", "cancelled"}


def leftovers(root: Path, job_id: str) -> list[Path]:
    jobs = root / "jobs"
    return [path for path in (jobs / "live" / job_id, jobs / "work" / "jobs" / job_id) if path.exists()]


def eventually_clean(root: Path, job_id: str, timeout: float = 15) -> list[Path]:
    deadline = time.monotonic() + timeout
    while (left := leftovers(root, job_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_the_live_copy_goes_once_the_output_is_stored(server_factory: Any) -> None:
    """After a job finishes, neither its live output copy nor its workdir stays; the output is kept."""
    server = server_factory()
    alice = server.token("alice")
    with server.client(alice) as client:
        job = submit(client, CHATTY_JOB, config_yaml("alice")).json()["job_id"]
        wait_status(client, job, {"completed"})
        assert eventually_clean(server.root, job) == []
        assert "line 19999" in client.get(f"/api/results/{job}").json()["stdout"]
        assert client.get(f"/api/jobs/{job}/logs").content.endswith(b"line 19999\n")


def _kill_as_it_finishes(server: Any, client: httpx.Client, job: str) -> None:
    """SIGKILL the moment the ledger says the job is finished: between job.finished and the cleanup."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if client.get(f"/api/status/{job}").json()["status"] in TERMINAL:
            server.kill()
            return
    raise AssertionError("the job did not finish")


def test_a_kill_between_finish_and_cleanup_is_swept_at_the_next_start(server_factory: Any) -> None:
    """kill -9 right at job.finished, plus planted leftovers of a finished job: the next start removes both."""
    server = server_factory()
    alice = server.token("alice")
    with server.client(alice) as client:
        earlier = submit(client, "print('earlier')\n", config_yaml("alice")).json()["job_id"]
        wait_status(client, earlier, {"completed"})
        assert eventually_clean(server.root, earlier) == []
        job = submit(client, CHATTY_JOB, config_yaml("alice")).json()["job_id"]
        _kill_as_it_finishes(server, client, job)
    # What a crash at that moment leaves, for certain: the live copy and the workdir of a finished job.
    (server.root / "jobs" / "live" / earlier).mkdir(parents=True)
    (server.root / "jobs" / "live" / earlier / "stdout").write_text("earlier\n")
    (server.root / "jobs" / "work" / "jobs" / earlier).mkdir(parents=True)
    (server.root / "jobs" / "work" / "jobs" / earlier / "solution.py").write_text("print('earlier')\n")
    server.start()
    with server.client(alice) as client:
        wait_status(client, job, TERMINAL)
        assert eventually_clean(server.root, earlier) == []
        assert eventually_clean(server.root, job) == []
        assert client.get(f"/api/results/{earlier}").json()["stdout"] == "earlier\n"
    assert '"sweep.done"' in (server.root / "server.log").read_text()
