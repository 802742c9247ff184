"""Job arrays and sweeps over real HTTP: at most %K tasks at once (read from the ledger's events), each
sweep task's own parameters, a bulk cancel in one write, and an array as one submission under the
default limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest
from server import OPEN_LIMITS, Server, cli_user, config_yaml, run_cli, running, submit

SLEEP = "import time\ntime.sleep({})\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("arrays"),
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        rate_limit_per_minute=100,
        max_active_jobs_per_user=10,
        local_slots=4,
    ) as srv:
        yield srv


def submit_array(client: httpx.Client, code: str, config: bytes, spec: str | None = None) -> httpx.Response:
    return client.post(
        "/api/arrays",
        params={} if spec is None else {"array": spec},
        files={"code": ("solution.py", code.encode()), "config_file": ("config.yaml", config)},
    )


def wait_array(client: httpx.Client, array_id: str, done: bool = True, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/api/arrays/{array_id}").json()
        if body.get("done") == done:
            return body
        time.sleep(0.1)
    raise AssertionError(f"array {array_id} not done after {timeout} s: {body}")


def most_running_at_once(db: Path, array_id: str) -> int:
    """The most tasks of the array started and not yet finished at once, folded from the ledger's log."""
    conn = apsw.Connection(f"file:{db}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    running: set[str] = set()
    most = 0
    prefix = f"job-{array_id[:20]}"
    rows = conn.execute("SELECT stream, payload FROM events WHERE stream LIKE ? ORDER BY position", (prefix + "%",))
    for stream, payload in rows:
        kind = json.loads(payload)["type"]
        if kind == "job.started":
            running.add(stream)
        elif kind == "job.finished":
            running.discard(stream)
        most = max(most, len(running))
    conn.close()
    return most


def test_an_array_runs_at_most_k_tasks_at_once_and_all_complete(server: Server) -> None:
    """20 tasks with %2 on 4 slots: the ledger never shows more than 2 running at once, and all complete."""
    with server.client(server.token("ann")) as client:
        answer = submit_array(client, SLEEP.format(0.05) + "print('ok')\n", config_yaml("ann"), "0-19%2")
        assert answer.status_code == 200, answer.text
        accepted = answer.json()
        assert (accepted["tasks"], accepted["width"]) == (20, 2)
        body = wait_array(client, accepted["array_id"], timeout=60)
    assert body["counts"] == {"pending": 0, "running": 0, "completed": 20, "failed": 0, "cancelled": 0}
    assert [t["index"] for t in body["task_list"]] == list(range(20))
    assert most_running_at_once(server.root / "gpuledger.db", accepted["array_id"]) == 2


def test_each_sweep_task_sees_its_own_parameters(server: Server) -> None:
    """A sweep's tasks get their parameters in params.json and the environment, with the array's variables."""
    code = (
        "import json, os\n"
        "p = json.load(open('params.json'))\n"
        "print(p['lr'], p['opt'], os.environ['GPULEDGER_PARAM_LR'], os.environ['GPULEDGER_PARAM_OPT'],"
        " os.environ['GPULEDGER_ARRAY_TASK_ID'], os.environ['SLURM_ARRAY_TASK_ID'],"
        " os.environ['GPULEDGER_ARRAY_ID'])\n"
    )
    config = config_yaml("bea") + b"sweep:\n  lr: [0.1, 0.01]\n  opt: [adam, sgd]\n"
    with server.client(server.token("bea")) as client:
        answer = submit_array(client, code, config)
        assert answer.status_code == 200, answer.text
        array_id = answer.json()["array_id"]
        body = wait_array(client, array_id)
        outputs = [client.get(f"/api/results/{t['job_id']}").json()["stdout"] for t in body["task_list"]]
    expected = [(0.1, "adam"), (0.1, "sgd"), (0.01, "adam"), (0.01, "sgd")]  # names sorted, the last fastest
    assert [t["params"] for t in body["task_list"]] == [{"lr": lr, "opt": opt} for lr, opt in expected]
    assert outputs == [f"{lr} {opt} {lr} {opt} {i} {i} {array_id}\n" for i, (lr, opt) in enumerate(expected)]


def test_a_bulk_cancel_kills_running_tasks_and_cancels_held_ones(server: Server) -> None:
    """Cancelling a running array ends every task cancelled, the running ones killed, in one write."""
    with server.client(server.token("cal")) as client:
        answer = submit_array(client, SLEEP.format(60), config_yaml("cal", expected=120), "0-5%2")
        array_id = answer.json()["array_id"]
        deadline = time.monotonic() + 20
        while client.get(f"/api/arrays/{array_id}").json()["counts"]["running"] < 2:
            assert time.monotonic() < deadline, "two tasks never ran"
            time.sleep(0.1)
        cancelled = client.post(f"/api/arrays/{array_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["cancelled"] == 6
        body = wait_array(client, array_id, timeout=20)
        again = client.post(f"/api/arrays/{array_id}/cancel")
    assert body["counts"]["cancelled"] == 6  # within 20 s: the two running tasks (sleeping 60 s) were killed
    assert again.status_code == 409


def test_bad_array_specs_are_a_400_naming_the_bad_part(server: Server) -> None:
    """A spec that cannot be read, or too many tasks, is refused with the part named."""
    with server.client(server.token("dan")) as client:
        cases = {"0-x": "'0-x'", "5-1": "empty range", "0-9%0": "%0", "0-100000": "ARRAY_MAX_TASKS"}
        for spec, named in cases.items():
            answer = submit_array(client, "print(1)\n", config_yaml("dan"), spec)
            assert (answer.status_code, named in answer.json()["detail"]) == (400, True), (spec, answer.text)


def completed(client: httpx.Client, array_id: str, at_least: int) -> int:
    deadline = time.monotonic() + 20
    while (done := client.get(f"/api/arrays/{array_id}").json()["counts"]["completed"]) < at_least:
        assert time.monotonic() < deadline, f"only {done} of the array's tasks completed"
        time.sleep(0.1)
    return int(done)


def test_an_array_is_one_submission_under_the_default_limits(tmp_path: Path) -> None:
    """Default settings: a 100-task array is accepted and runs on, across a server restart, one task
    at a time; a second single job gets the old server's 429."""
    with running(tmp_path, code_scanner_quick_mode=True) as srv:
        token = srv.token("eve")
        with srv.client(token) as client:
            answer = submit_array(client, "print('t')\n", config_yaml("eve"), "0-99%8")
            assert answer.status_code == 200, answer.text
            assert answer.json()["width"] == 1  # %8, within the default cap of one job in progress
            array_id = answer.json()["array_id"]
            single = submit(client, "print(1)\n", config_yaml("eve"))
            assert single.status_code == 429
            assert single.json()["detail"].startswith("Queue limit exceeded. You already have 1 job(s) in progress")
            before = completed(client, array_id, 1)
        srv.stop()
        srv.start()
        with srv.client(token) as client:
            completed(client, array_id, before + 1)  # the held tasks are released after the restart too
            assert client.post(f"/api/arrays/{array_id}/cancel").status_code == 200
    assert most_running_at_once(tmp_path / "gpuledger.db", array_id) == 1


def test_the_cli_submits_shows_groups_and_cancels_an_array(server: Server, tmp_path: Path) -> None:
    """``submit --array``, ``status ARRAY``, ``jobs`` (one line an array unless --expand), ``cancel ARRAY
    --tasks`` and ``cancel --all``, each as a researcher types it."""
    user = cli_user(server, tmp_path)
    (tmp_path / "sleep.py").write_text(SLEEP.format(60))

    def gpuledger(*args: str) -> str:
        done = run_cli(tmp_path, *args, env=user)
        assert done.returncode == 0, done.stderr
        return done.stdout

    array_id = gpuledger("submit", "sleep.py", "-c", "config.yaml", "--array", "0-3%2", "-d").strip()
    assert f"array {array_id}\n0/4 ended: " in gpuledger("status", array_id)
    lines = [line for line in gpuledger("jobs").splitlines()[1:] if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith(f"{array_id} ")  # the whole id, as status and cancel take it
    assert "array:" in lines[0]
    assert len([line for line in gpuledger("jobs", "--expand").splitlines()[1:] if line.strip()]) == 4
    cancelled = gpuledger("cancel", array_id, "--tasks", "2-3").splitlines()
    assert len(cancelled) == 2
    assert len(gpuledger("cancel", "--all").splitlines()) == 2
    with server.client(user["GPULEDGER_TOKEN"]) as client:
        body = wait_array(client, array_id, timeout=20)
    assert body["counts"]["cancelled"] == 4
    assert "4/4 ended: 0 pending, 0 running, 0 completed, 0 failed, 4 cancelled" in gpuledger("status", array_id)
