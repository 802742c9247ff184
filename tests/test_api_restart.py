"""A server killed with SIGKILL while a job runs: after a restart the job is re-attached and completes
exactly once, with its output intact."""

from __future__ import annotations

import subprocess
import time
from collections import Counter

from server import config_yaml, run_cli, submit, wait_status


def test_job_running_through_a_server_kill_completes_exactly_once(server_factory):
    """kill -9 mid-job, restart: one job.started, one job.finished, the right stdout, a verified ledger."""
    server = server_factory(rate_limit_per_minute=100, max_active_jobs_per_user=5)
    code = "import time\nprint('before', flush=True)\ntime.sleep(3)\nprint('after')\n"
    with server.client(server.admin_token) as client:
        job_id = submit(client, code, config_yaml("admin", expected=60)).json()["job_id"]
        wait_status(client, job_id, {"running"}, timeout=20)
    server.kill()
    server.start()
    with server.client(server.admin_token) as client:
        body = wait_status(client, job_id, {"completed", "failed", "cancelled"}, timeout=30)
        assert (body["status"], body["exit_code"]) == ("completed", 0)
        results = client.get(f"/api/results/{job_id}").json()
        assert results["stdout"] == "before\nafter\n"
        types = Counter(e["type"] for e in client.get(f"/api/jobs/{job_id}/events").json()["events"])
        assert (types["job.dispatched"], types["job.started"], types["job.finished"]) == (1, 1, 1)
        after = submit(client, "print('next')", config_yaml("admin"), wait=True).json()
        assert (after["status"], after["stdout"]) == ("completed", "next\n")
    done = run_cli(server.root, "audit", "verify", "--db", str(server.root / "gpuledger.db"), env=server.env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_job_finishing_while_the_server_is_down_is_collected_on_restart(server_factory):
    """A job that ends while no server runs is collected at the next start, once, with its output."""
    server = server_factory()
    code = "import time\ntime.sleep(0.5)\nprint('done while down')\n"
    with server.client(server.admin_token) as client:
        job_id = submit(client, code, config_yaml("admin", expected=60)).json()["job_id"]
        wait_status(client, job_id, {"running"}, timeout=20)
    server.kill()
    time.sleep(1.5)
    server.start()
    with server.client(server.admin_token) as client:
        body = wait_status(client, job_id, {"completed", "failed", "cancelled"}, timeout=30)
        assert body["status"] == "completed"
        assert client.get(f"/api/results/{job_id}").json()["stdout"] == "done while down\n"
        types = Counter(e["type"] for e in client.get(f"/api/jobs/{job_id}/events").json()["events"])
        assert (types["job.started"], types["job.finished"]) == (1, 1)


def test_sigterm_leaves_the_running_job_running(server_factory):
    """SIGTERM stops the server promptly without touching the job; the next start collects it once."""
    server = server_factory(code_scanner_enabled=False)
    marker = f"gpuledger-sigterm-{time.monotonic_ns()}"
    code = (
        "import subprocess, sys, time\nprint('before', flush=True)\n"
        f"subprocess.run(['bash', '-c', 'exec -a {marker} sleep 2'])\nprint('after')\n"
    )
    with server.client(server.admin_token) as client:
        job_id = submit(client, code, config_yaml("admin", expected=60)).json()["job_id"]
        wait_status(client, job_id, {"running"}, timeout=20)
    began = time.monotonic()
    server.stop()  # SIGTERM, then waits for the process to exit
    assert time.monotonic() - began < 15
    log = (server.root / "server.log").read_text()
    assert '"event": "server.stopped"' in log  # the graceful path ran (uvicorn then re-raises SIGTERM)
    alive = subprocess.run(["pgrep", "-f", marker], capture_output=True, check=False)
    assert alive.returncode == 0, "the job was stopped with the server"
    server.start()
    with server.client(server.admin_token) as client:
        body = wait_status(client, job_id, {"completed", "failed", "cancelled"}, timeout=30)
        assert body["status"] == "completed"
        assert client.get(f"/api/results/{job_id}").json()["stdout"] == "before\nafter\n"
        types = Counter(e["type"] for e in client.get(f"/api/jobs/{job_id}/events").json()["events"])
        assert (types["job.started"], types["job.finished"]) == (1, 1)
