"""The researcher's ``gpuledger`` commands against a real server (subprocesses): exit codes, Ctrl+C
detaching, ``logs -f`` across a server restart, ``--json`` shapes, the login file, 429s."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from server import OPEN_LIMITS, REPO, Server, cli_user, config_yaml, running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("client"),
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        max_active_jobs_per_user=10,
        rate_limit_per_minute=0,
    ) as srv:
        yield srv


@pytest.fixture
def user(server: Server, tmp_path: Path) -> dict[str, str]:
    """A fresh user, with its token in the environment and a private config directory."""
    return cli_user(server, tmp_path)


def gpuledger(cwd: Path, env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _interruptible() -> None:
    # As from a terminal: a suite started in the background (``cmd &``, nohup) ignores SIGINT, and a
    # child that inherits that would never see the Ctrl-C these tests send it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def started(cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )


def solution(tmp_path: Path, code: str) -> str:
    (tmp_path / "solution.py").write_text(code)
    return "solution.py"


def test_submit_follows_live_output_and_exits_with_the_jobs_code(user, tmp_path):
    """``submit`` prints the job id, the job's stdout/stderr, phase lines, and exits 42 like the job."""
    code = "import sys\nprint('training', flush=True)\nprint('oops', file=sys.stderr)\nraise SystemExit(42)\n"
    done = gpuledger(tmp_path, user, "submit", solution(tmp_path, code), "-c", "config.yaml")
    assert done.returncode == 42, done.stderr
    assert done.stdout == "training\n"
    assert "gpuledger: submitted job " in done.stderr
    assert "oops" in done.stderr
    assert "started on local" in done.stderr
    assert "failed exit code 42" in done.stderr


def test_wait_and_status_json_report_the_finished_job(user, tmp_path):
    """``submit --detach`` prints only the id; ``wait`` exits with the job's code; ``status --json`` has its fields."""
    done = gpuledger(tmp_path, user, "submit", solution(tmp_path, "raise SystemExit(3)\n"), "-c", "config.yaml", "-d")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert len(job_id) == 26
    assert gpuledger(tmp_path, user, "wait", job_id).returncode == 3
    status = json.loads(gpuledger(tmp_path, user, "status", job_id, "--json").stdout)
    assert (status["job_id"], status["status"], status["exit_code"]) == (job_id, "failed", 3)
    assert {"phase", "reason", "node", "queue_position", "estimated_start_at", "finish_reason"} <= set(status)


def test_json_shapes_of_jobs_nodes_results_and_detached_submit(user, tmp_path):
    """``--json`` output is one JSON document with the API's field names."""
    code = "import json\nprint('hi')\njson.dump({'score': 1}, open('results.jsonl', 'w'))\n"
    submitted = json.loads(
        gpuledger(tmp_path, user, "submit", solution(tmp_path, code), "-c", "config.yaml", "-d", "--json").stdout
    )
    assert {"job_id", "status", "message", "created_at", "warnings"} <= set(submitted)
    job_id = submitted["job_id"]
    assert gpuledger(tmp_path, user, "wait", job_id).returncode == 0
    jobs = json.loads(gpuledger(tmp_path, user, "jobs", "--all", "--json").stdout)
    assert [j["job_id"] for j in jobs["jobs"]] == [job_id]
    assert json.loads(gpuledger(tmp_path, user, "jobs", "--json").stdout) == {"jobs": []}  # nothing active
    nodes = json.loads(gpuledger(tmp_path, user, "nodes", "--json").stdout)
    assert [n["name"] for n in nodes["nodes"]] == ["local"]
    results = json.loads(gpuledger(tmp_path, user, "results", job_id, "--json").stdout)
    assert (results["stdout"], json.loads(results["results"])) == ("hi\n", {"score": 1})
    assert set(results["truncated"]) == {"stdout", "stderr", "results"}
    saved = gpuledger(tmp_path, user, "results", job_id, "-o", "out.jsonl")
    assert saved.returncode == 0, saved.stderr
    assert json.loads((tmp_path / "out.jsonl").read_text()) == {"score": 1}
    assert (tmp_path / "out.jsonl.stdout").read_text() == "hi\n"


def test_ctrl_c_detaches_and_the_job_goes_on(user, tmp_path):
    """SIGINT on a following ``submit`` exits 130 with a reattach hint; the job still completes."""
    code = "import time\nprint('up', flush=True)\ntime.sleep(2)\nprint('done')\n"
    proc = started(tmp_path, user, "submit", solution(tmp_path, code), "-c", "config.yaml")
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.readline() == "up\n"  # the job runs and its output arrives live
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    job_id = stderr.split("submitted job ")[1].split()[0]
    assert f"gpuledger logs {job_id} -f" in stderr
    waited = gpuledger(tmp_path, user, "wait", job_id)
    assert waited.returncode == 0, waited.stderr
    assert "completed" in waited.stderr
    assert gpuledger(tmp_path, user, "logs", job_id).stdout == "up\ndone\n"


def test_cancel_says_the_state_and_a_second_cancel_is_refused(user, tmp_path):
    """``cancel`` of a running job answers its state; cancelling it again is a one-line 409 error."""
    code = "import time\nprint('up', flush=True)\ntime.sleep(30)\n"
    job_id = gpuledger(tmp_path, user, "submit", solution(tmp_path, code), "-c", "config.yaml", "-d").stdout.strip()
    proc = started(tmp_path, user, "logs", job_id, "-f")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "up\n"
    first = gpuledger(tmp_path, user, "cancel", job_id)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() in (f"job {job_id} cancelling", f"job {job_id} cancelled")
    assert gpuledger(tmp_path, user, "wait", job_id).returncode == 125
    proc.communicate(timeout=30)
    again = gpuledger(tmp_path, user, "cancel", job_id)
    assert again.returncode == 2
    assert again.stderr.strip() == "gpuledger: Job already cancelled"


def test_login_stores_a_private_config_that_later_commands_use(user, tmp_path):
    """``login`` checks the token, writes it 0600, and ``jobs`` then needs no environment."""
    env = {"XDG_CONFIG_HOME": user["XDG_CONFIG_HOME"], "GPULEDGER_URL": "", "GPULEDGER_TOKEN": ""}
    bad = gpuledger(tmp_path, env, "login", "--url", user["GPULEDGER_URL"], "--token", "not-a-token")
    assert bad.returncode == 2
    assert bad.stderr.startswith("gpuledger: ")
    assert len(bad.stderr.strip().splitlines()) == 1
    good = gpuledger(tmp_path, env, "login", "--url", user["GPULEDGER_URL"], "--token", user["GPULEDGER_TOKEN"])
    assert good.returncode == 0, good.stderr
    path = Path(user["XDG_CONFIG_HOME"]) / "gpuledger" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert gpuledger(tmp_path, env, "jobs", "--json").returncode == 0


def test_logs_follow_resumes_across_a_server_restart(tmp_path):
    """``logs -f`` through a server stop and start prints every byte exactly once."""
    (tmp_path / "srv").mkdir()
    with running(tmp_path / "srv", code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS) as srv:
        env = {"GPULEDGER_URL": srv.url, "GPULEDGER_TOKEN": srv.admin_token or "", "XDG_CONFIG_HOME": str(tmp_path)}
        (tmp_path / "config.yaml").write_bytes(config_yaml("admin", expected=60))
        code = "import time\nfor i in range(60):\n    print(f'line {i:03d}', flush=True)\n    time.sleep(0.1)\n"
        job_id = gpuledger(tmp_path, env, "submit", solution(tmp_path, code), "-c", "config.yaml", "-d").stdout
        proc = started(tmp_path, env, "logs", job_id.strip(), "-f")
        assert proc.stdout is not None
        head = [proc.stdout.readline() for _ in range(5)]
        srv.stop()
        srv.start()
        rest = proc.stdout.read()  # through the same buffer as readline (communicate() would skip it)
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    assert "".join(head) + rest == "".join(f"line {i:03d}\n" for i in range(60))


def test_rate_limits_are_one_line_and_waiting_commands_wait_them_out(tmp_path):
    """A 429 prints the server's message and when to retry; ``wait`` sleeps it off and succeeds."""
    limits = {**OPEN_LIMITS, "status": 2}
    (tmp_path / "srv").mkdir()
    with running(
        tmp_path / "srv", code_scanner_quick_mode=True, endpoint_limits=limits, rate_limit_per_minute=1
    ) as srv:
        token = srv.token("limited")
        env = {"GPULEDGER_URL": srv.url, "GPULEDGER_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path)}
        (tmp_path / "config.yaml").write_bytes(config_yaml("limited", expected=60))
        name = solution(tmp_path, "print('x')\n")
        job_id = gpuledger(tmp_path, env, "submit", name, "-c", "config.yaml", "-d").stdout.strip()
        again = gpuledger(tmp_path, env, "submit", name, "-c", "config.yaml", "-d")
        assert again.returncode == 2
        assert again.stderr.startswith("gpuledger: Rate limit exceeded.")
        assert "(retry in " in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1
        while gpuledger(tmp_path, env, "status", job_id).returncode == 0:
            pass  # use up the status allowance (2 a minute)
        waited = gpuledger(tmp_path, env, "wait", job_id, timeout=120)
        assert waited.returncode == 0, waited.stderr
        assert "completed" in waited.stderr


def test_dashboard_redraws_on_ledger_events(user, tmp_path):
    """``dashboard --json`` prints a document at once and a new one when a job of mine changes state."""
    proc = started(tmp_path, user, "dashboard", "--json")
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert {"nodes", "queue", "jobs"} <= set(first)
    assert first["jobs"] == []
    job_id = gpuledger(tmp_path, user, "submit", solution(tmp_path, "print(1)\n"), "-c", "config.yaml", "-d").stdout
    shown: list[str] = []
    for _ in range(5):  # no timer: only ledger events (the token's, then the job's) make these lines
        seen = json.loads(proc.stdout.readline())
        shown = [j["job_id"] for j in seen["queue"] + seen["jobs"]]
        if job_id.strip() in shown:
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert job_id.strip() in shown


def test_logs_json_gives_resume_offsets(user, tmp_path):
    """``logs --json`` prints one chunk per line with its end offset; ``--offset`` continues from there."""
    job_id = gpuledger(
        tmp_path, user, "submit", solution(tmp_path, "print('abc')\nprint('def')\n"), "-c", "config.yaml", "-d"
    ).stdout.strip()
    assert gpuledger(tmp_path, user, "wait", job_id).returncode == 0
    chunks = [json.loads(line) for line in gpuledger(tmp_path, user, "logs", job_id, "--json").stdout.splitlines()]
    assert chunks == [{"stream": "stdout", "offset": 8, "text": "abc\ndef\n"}]
    assert gpuledger(tmp_path, user, "logs", job_id, "--offset", "4").stdout == "def\n"
