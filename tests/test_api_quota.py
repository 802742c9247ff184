"""Quotas and retries over HTTP with the real server and local runner: the 429 that explains itself,
``gpuledger quota``, platform failures refunded, and a job retried after its wrapper is killed."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from server import config_yaml, run_cli, submit, wait_status

ENDED = {"completed", "failed", "cancelled"}
LIMITS = {"max_active_jobs_per_user": 10, "rate_limit_per_minute": 100}


def _kill_wrapper(root: Path, job_id: str, attempt: int = 1) -> None:
    """SIGKILL the local wrapper of an attempt (its pid is in the attempt's started.json)."""
    name = job_id if attempt == 1 else f"{job_id}.{attempt}"
    started = root / "jobs" / "work" / "jobs" / name / "started.json"
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(json.loads(started.read_text())["wrapper_pid"], signal.SIGKILL)


def _verify(server) -> None:
    done = run_cli(server.root, "audit", "verify", "--db", str(server.root / "gpuledger.db"), env=server.env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_over_quota_submit_is_429_naming_the_quota_and_cli_shows_it(server_factory):
    """Two submissions a day: the third is 429 saying which quota, used/left, the reset and Retry-After;
    ``gpuledger quota`` and GET /api/quota show the same; only admins may ask about another user."""
    server = server_factory(quota_submissions=2, **LIMITS)
    token = server.token("quinn")
    with server.client(token) as quinn, server.client(server.admin_token) as admin:
        for _ in range(2):
            assert submit(quinn, "print('ok')", config_yaml("quinn"), wait=True).json()["status"] == "completed"
        refused = submit(quinn, "print('ok')", config_yaml("quinn"))
        assert refused.status_code == 429, refused.text
        body = refused.json()
        midnight = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00.000000Z")
        assert (body["quota"], body["used"], body["limit"], body["left"]) == ("submissions", 2, 2, 0)
        assert body["resets_at"] == midnight
        assert "Quota exceeded" in body["detail"]
        assert midnight in body["detail"]
        assert 0 < int(refused.headers["Retry-After"]) <= 86_400
        mine = quinn.get("/api/quota").json()
        assert mine["user_id"] == "quinn"
        assert {q["quota"]: (q["used"], q["left"]) for q in mine["quotas"]} == {
            "submissions": (2, 0),
            "gpu_hours": (mine["quotas"][1]["used"], None),
        }
        assert quinn.get("/api/quota?user_id=admin").status_code == 403
        assert admin.get("/api/quota?user_id=quinn").json()["quotas"][0]["used"] == 2
    done = run_cli(server.root, "quota", env={"GPULEDGER_URL": server.url, "GPULEDGER_TOKEN": token})
    assert done.returncode == 0, done.stderr
    assert "submissions" in done.stdout
    assert "unlimited" in done.stdout
    assert midnight[:10] in done.stdout
    done = run_cli(server.root, "quota", "--json", env={"GPULEDGER_URL": server.url, "GPULEDGER_TOKEN": token})
    assert json.loads(done.stdout)["quotas"][0] == {
        "quota": "submissions",
        "limit": 2,
        "used": 2,
        "left": 0,
        "resets_at": midnight,
    }
    _verify(server)


def test_a_platform_failed_job_does_not_use_the_quota(server_factory):
    """With one submission a day, a job whose wrapper dies (reason lost) is refunded: the next is accepted."""
    server = server_factory(quota_submissions=1, **LIMITS)
    token = server.token("pia")
    with server.client(token) as pia:
        job_id = submit(pia, "import time\ntime.sleep(8)\n", config_yaml("pia")).json()["job_id"]
        wait_status(pia, job_id, {"running"})
        assert submit(pia, "print('x')", config_yaml("pia")).status_code == 429  # counted while it runs
        _kill_wrapper(server.root, job_id)
        body = wait_status(pia, job_id, ENDED, timeout=30)
        assert (body["status"], body["finish_reason"]) == ("failed", "lost")
        assert pia.get("/api/quota").json()["quotas"][0]["used"] == 0
        again = submit(pia, "print('again')", config_yaml("pia"), wait=True)
        assert again.status_code == 200
        assert again.json()["status"] == "completed"
        assert submit(pia, "print('x')", config_yaml("pia")).status_code == 429  # an ordinary job counts
    _verify(server)


def test_a_job_retried_after_its_wrapper_is_killed_completes_as_attempt_2(server_factory):
    """retries: 1 with RETRY_ON lost: the killed attempt is job.retried, the second attempt completes;
    one job id, attempt 2 of 2, both attempts in its events and the first in its history."""
    server = server_factory(retry_on=["lost", "node_lost"], **LIMITS)
    code = "import os, time\nprint('attempt of', os.environ['GPULEDGER_JOB_ID'], flush=True)\ntime.sleep(2)\n"
    with server.client(server.admin_token) as client:
        job_id = submit(client, code, config_yaml("admin", retries=1)).json()["job_id"]
        running = wait_status(client, job_id, {"running"})
        assert (running["attempt"], running["max_attempts"]) == (1, 2)
        _kill_wrapper(server.root, job_id)
        body = wait_status(client, job_id, ENDED, timeout=60)
        assert (body["status"], body["attempt"], body["max_attempts"]) == ("completed", 2, 2), body
        assert [(a["attempt"], a["outcome"], a["reason"], a["node"]) for a in body["attempts"]] == [
            (1, "retried", "lost", "local")
        ]
        events = client.get(f"/api/jobs/{job_id}/events").json()["events"]
        kinds = Counter(e["type"] for e in events)
        assert (kinds["job.submitted"], kinds["job.dispatched"], kinds["job.started"]) == (1, 2, 2)
        assert (kinds["job.retried"], kinds["job.finished"]) == (1, 1)
        assert [e["event"]["attempt"] for e in events if e["type"] == "job.dispatched"] == [1, 2]
        assert client.get(f"/api/results/{job_id}").json()["stdout"] == f"attempt of {job_id}\n"
        mine = client.get("/api/jobs?status=completed").json()["jobs"]
        assert [j["job_id"] for j in mine] == [job_id]  # one job, not two
        dashboard = client.get("/api/dashboard").json()
    counts = dashboard["user_statistics"]["admin"]  # the retried attempt is not a finished job
    assert (counts["total"], counts["completed"], counts["failed"], counts["running"]) == (1, 1, 0, 0)
    assert dashboard["health_metrics"]["jobs_last_24h"] == 1
    _verify(server)


def test_bad_retry_fields_are_400_naming_the_field(server_factory):
    """retries outside 0..5, exit codes that are no codes, or exit codes without retries: 400 naming it."""
    server = server_factory(**LIMITS)
    bad = [
        ({"retries": 6}, "Invalid field retries"),
        ({"retries": "'two'"}, "Invalid field retries"),
        ({"retries": 1, "retry_on_exit_codes": "[0]"}, "Invalid field retry_on_exit_codes"),
        ({"retries": 1, "retry_on_exit_codes": "'75'"}, "Invalid field retry_on_exit_codes"),
        ({"retry_on_exit_codes": "[75]"}, "needs retries of at least 1"),
    ]
    with server.client(server.admin_token) as client:
        for extra, message in bad:
            answer = submit(client, "print(1)", config_yaml("admin", **extra))
            assert (answer.status_code, message in answer.json()["detail"]) == (400, True), (extra, answer.text)
        fine = submit(client, "print(1)", config_yaml("admin", retries=2, retry_on_exit_codes="[75, 75]"))
        assert fine.status_code == 200
        assert fine.json()["warnings"] == []
        status = client.get(f"/api/status/{fine.json()['job_id']}").json()
        assert status["max_attempts"] == 3
