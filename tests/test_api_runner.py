"""The local runner seen through the API: exit codes, output, cancel of a job and all its children,
the time limit, and cancel of a queued job."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from server import OPEN_LIMITS, Server, config_yaml, run_cli, running, submit, wait_status

TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One slot; the scanner off so that jobs may start child processes (it rejects subprocess)."""
    with running(
        tmp_path_factory.mktemp("runner"),
        code_scanner_enabled=False,
        local_slots=1,
        cancel_grace_s=2,
        rate_limit_per_minute=100,
        max_active_jobs_per_user=100,
        endpoint_limits=OPEN_LIMITS,
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    return server.token("runner")


def processes(pattern: str) -> list[str]:
    done = subprocess.run(["pgrep", "-f", "-a", pattern], capture_output=True, text=True, check=False)
    return [line for line in done.stdout.splitlines() if "pgrep" not in line]


def wait_processes(pattern: str, count: int, timeout: float = 15) -> list[str]:
    deadline = time.monotonic() + timeout
    found = processes(pattern)
    while len(found) != count and time.monotonic() < deadline:
        time.sleep(0.05)
        found = processes(pattern)
    return found


def test_nonzero_exit_code_is_failed_with_that_code(server: Server, token: str) -> None:
    """A job that exits 42 ends failed with exit code 42 and reason exit_nonzero."""
    with server.client(token) as client:
        body = submit(client, "import sys\nsys.exit(42)\n", config_yaml("runner"), wait=True).json()
        assert (body["status"], body["exit_code"]) == ("failed", 42)
        assert client.get(f"/api/status/{body['job_id']}").json()["finish_reason"] == "exit_nonzero"


def test_printed_text_is_in_stdout(server: Server, token: str) -> None:
    """print("x") shows up as stdout "x\\n" in the answer and in /api/results."""
    with server.client(token) as client:
        body = submit(client, 'print("x")\n', config_yaml("runner"), wait=True).json()
        assert (body["status"], body["stdout"], body["stderr"], body["exit_code"]) == ("completed", "x\n", "", 0)
        assert client.get(f"/api/results/{body['job_id']}").json()["stdout"] == "x\n"


def test_cancel_of_a_running_job_kills_it_and_all_its_children(server: Server, token: str) -> None:
    """Cancel while running answers 200, ends the job cancelled, and leaves none of its processes alive."""
    marker = f"gpuledger-test-{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen(['bash', '-c', 'exec -a {marker}-sleep sleep 300'])\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', '{marker}-python'])\n"
        "print('children started', flush=True)\n"
        "time.sleep(300)\n"
    )
    with server.client(token) as client:
        job_id = submit(client, code, config_yaml("runner", expected=600)).json()["job_id"]
        assert len(wait_processes(marker, 2)) == 2
        assert processes(job_id)  # the job itself runs from its workdir, named after the job id
        answer = client.post(f"/api/cancel/{job_id}")
        assert answer.status_code == 200
        assert (answer.json()["message"], answer.json()["status"]) == ("Job cancelled successfully", "cancelled")
        body = wait_status(client, job_id, TERMINAL, timeout=30)
        assert body["status"] == "cancelled"
        assert wait_processes(marker, 0, timeout=5) == []
        assert processes(job_id) == []
        assert client.get(f"/api/results/{job_id}").json()["stdout"] == "children started\n"


def test_job_over_its_time_limit_is_killed_and_fails_with_timeout(server: Server, token: str) -> None:
    """expected_time=1 with the default multiplier 2: a 30 s job is killed after about 2 s, failed/timeout,
    and the message says so."""
    with server.client(token) as client:
        started = time.monotonic()
        body = submit(client, "import time\ntime.sleep(30)\n", config_yaml("runner", expected=1), wait=True).json()
        elapsed = time.monotonic() - started
        assert body["status"] == "failed"
        assert 1.5 < elapsed < 15
        results = client.get(f"/api/results/{body['job_id']}").json()
        assert results["reason"] == "timeout"
        assert "time limit" in results["message"]  # the server's word, not in the job's stderr
        assert client.get(f"/api/status/{body['job_id']}").json()["finish_reason"] == "timeout"
        assert processes(body["job_id"]) == []


def test_cancel_of_a_queued_job_ends_it_at_once(server: Server, token: str) -> None:
    """A job waiting behind a running one is cancelled at once: no dispatch, no start, no output."""
    with server.client(token) as client:
        blocker = submit(client, "import time\ntime.sleep(30)\n", config_yaml("runner", expected=60)).json()["job_id"]
        wait_status(client, blocker, {"running"}, timeout=20)
        queued = submit(client, "print('never')\n", config_yaml("runner")).json()["job_id"]
        assert client.get(f"/api/status/{queued}").json()["status"] == "pending"
        answer = client.post(f"/api/cancel/{queued}")
        assert (answer.status_code, answer.json()["status"]) == (200, "cancelled")
        status = client.get(f"/api/status/{queued}").json()
        assert (status["status"], status["started_at"]) == ("cancelled", None)
        types = [e["type"] for e in client.get(f"/api/jobs/{queued}/events").json()["events"]]
        assert types == ["job.submitted", "job.queued", "job.cancel_requested", "job.finished"]
        client.post(f"/api/cancel/{blocker}")
        assert wait_status(client, blocker, TERMINAL, timeout=20)["status"] == "cancelled"


def test_ledger_verifies_after_the_runner_jobs(server: Server) -> None:
    """`gpuledger audit verify` exits 0 after the failed, cancelled and timed-out jobs above."""
    done = run_cli(server.root, "audit", "verify", "--db", str(server.root / "gpuledger.db"), env=server.env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cancel_racing_the_dispatch_always_cancels(server: Server, token: str, tmp_path) -> None:
    """Cancels landing before, during and after the upload/launch all end cancelled; the job's work never
    completes (before the launch the wrapper claims the job, after it the process group is killed)."""
    with server.client(token) as client:
        for attempt in range(6):
            marker = tmp_path / f"ran-{attempt}"
            code = f"import pathlib, time\ntime.sleep(1)\npathlib.Path({str(marker)!r}).write_text('ran')\n"
            job_id = submit(client, code, config_yaml("runner", expected=30)).json()["job_id"]
            time.sleep(attempt * 0.01)  # land the cancel at different points of the dispatch
            answer = client.post(f"/api/cancel/{job_id}")
            assert answer.status_code == 200, answer.text
            assert wait_status(client, job_id, TERMINAL)["status"] == "cancelled"
            time.sleep(1.5)
            assert not marker.exists(), f"attempt {attempt}: the cancelled job ran anyway"


def test_jobs_do_not_see_the_servers_secrets(server_factory) -> None:
    """A local job's environment holds no LLM key, token or GPULEDGER_* setting of the server process."""
    secret = "sk-server-only-0123456789"
    srv = server_factory(openrouter_api_key=secret, code_scanner_enabled=False)
    code = "import os\nfor name, value in sorted(os.environ.items()):\n    print(name, '=', value)\n"
    with srv.client(srv.admin_token) as client:
        body = submit(client, code, config_yaml("admin"), wait=True).json()
    assert body["status"] == "completed"
    assert secret not in body["stdout"]
    names = {line.split(" = ")[0] for line in body["stdout"].splitlines()}
    assert {n for n in names if n.startswith("GPULEDGER_")} == {
        "GPULEDGER_JOB_ID",
        "GPULEDGER_RESULTS",
        "GPULEDGER_SLOTS",
    }
    assert "PATH" in names
