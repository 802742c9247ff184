"""Job dependencies over real HTTP (and the CLI): an --after-ok chain runs in order (read from the
ledger's events), a failed parent cancels its descendants with the reason, after-any and after-not-ok,
ids refused at submit, a job waiting on an array (which waits on a job), and a restart while waiting."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest
from server import OPEN_LIMITS, Server, cli_user, config_yaml, run_cli, running, submit, wait_status

from gpuledger import Client

ENDED = {"completed", "failed", "cancelled"}
OK, FAIL = "import time\ntime.sleep({})\nprint('ok')\n", "import time\ntime.sleep({})\nraise SystemExit(3)\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("deps"),
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        rate_limit_per_minute=1000,
        max_active_jobs_per_user=50,
        local_slots=4,
    ) as srv:
        yield srv


def after(**kinds: list[str]) -> dict[str, str]:
    return {"after": json.dumps(kinds)}  # JSON is YAML: one flow mapping on the config's line


def job(client: httpx.Client, user: str, code: str, **extra: Any) -> str:
    answer = submit(client, code, config_yaml(user, **extra))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["job_id"])


def events(server: Server) -> list[tuple[str, str]]:
    """(stream, type) of every event, in ledger order."""
    conn = apsw.Connection(
        f"file:{server.root / 'gpuledger.db'}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    )
    try:
        return [
            (s, json.loads(p)["type"]) for s, p in conn.execute("SELECT stream, payload FROM events ORDER BY position")
        ]
    finally:
        conn.close()


def at(log: list[tuple[str, str]], job_id: str, kind: str) -> int:
    return log.index((f"job-{job_id}", kind))


def test_an_after_ok_chain_of_three_runs_in_order(server: Server, tmp_path: Path) -> None:
    """gpuledger submit --after-ok: each job of a chain starts after its parent's job.finished."""
    env = cli_user(server, tmp_path)
    (tmp_path / "first.py").write_text(OK.format(8))  # still running when the third is submitted (3 CLI starts)
    (tmp_path / "next.py").write_text(OK.format(0.2))
    ids: list[str] = []
    for code in ("first.py", "next.py", "next.py"):
        flags = ["--after-ok", ids[-1]] if ids else []
        done = run_cli(tmp_path, "submit", code, "-c", "config.yaml", "--detach", *flags, env=env)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())
    with server.client(env["GPULEDGER_TOKEN"]) as client:
        waiting = client.get(f"/api/status/{ids[2]}").json()
        assert waiting["reason"] == f"waiting for dependencies: after_ok {ids[1]}"
        bodies = [wait_status(client, i, ENDED) for i in ids]
    assert [b["status"] for b in bodies] == ["completed"] * 3
    log = events(server)
    for parent, child in itertools.pairwise(ids):
        assert at(log, parent, "job.finished") < at(log, child, "job.dependencies_met") < at(log, child, "job.started")


def test_a_failed_parent_cancels_its_child_and_grandchild(server: Server) -> None:
    """after-ok on a job that fails: the child, then the grandchild, end cancelled, naming the dependency."""
    with server.client(server.token("fay")) as client:
        parent = job(client, "fay", FAIL.format(0.5))
        child = job(client, "fay", OK.format(0), **after(ok=[parent]))
        grandchild = job(client, "fay", OK.format(0), **after(ok=[child]))
        bodies = [wait_status(client, i, ENDED) for i in (parent, child, grandchild)]
    assert [b["status"] for b in bodies] == ["failed", "cancelled", "cancelled"]
    assert [b["finish_reason"] for b in bodies[1:]] == ["dependency_never_satisfied"] * 2
    assert f"after_ok {parent} ended failed" in json.dumps(bodies[1])
    assert f"after_ok {child} ended cancelled" in json.dumps(bodies[2])
    log = events(server)
    assert all((f"job-{j}", "job.started") not in log for j in (child, grandchild))


def test_after_any_and_after_not_ok(server: Server) -> None:
    """after-any (the SDK's) runs after a failure; after-not-ok after a failure, cancelled after a success."""
    token = server.token("gus")
    with server.client(token) as client, Client(server.url, token) as sdk:
        failing, passing = job(client, "gus", FAIL.format(0.5)), job(client, "gus", OK.format(0.5))
        any_child = sdk.submit(OK.format(0), config_yaml("gus").decode(), after_any=[failing]).job_id  # the SDK's
        not_ok_child = job(client, "gus", OK.format(0), **after(not_ok=[failing]))
        not_ok_on_success = job(client, "gus", OK.format(0), **after(not_ok=[passing]))
        bodies = [wait_status(client, i, ENDED) for i in (any_child, not_ok_child, not_ok_on_success)]
        done_already = job(client, "gus", OK.format(0), **after(ok=[passing], any=[failing]))
        queued_at_once = client.get(f"/api/status/{done_already}").json()
        refused = submit(client, OK.format(0), config_yaml("gus", **after(ok=[failing])))
    assert [b["status"] for b in bodies] == ["completed", "completed", "cancelled"]
    assert bodies[2]["finish_reason"] == "dependency_never_satisfied"
    assert queued_at_once["phase"] != "submitted"  # both already ended as asked: queued in the submit's write
    assert refused.status_code == 400
    assert f"after_ok {failing} ended failed" in refused.json()["detail"]


def test_unknown_and_foreign_ids_are_refused_naming_them(server: Server) -> None:
    """A 400 names an id that does not exist and one of another user's; an admin may name anyone's."""
    with server.client(server.token("hal")) as hal, server.client(server.token("ivy")) as ivy:
        mine = job(hal, "hal", OK.format(0))
        unknown = "01J0000000000000000000000Z"
        refused = submit(ivy, OK.format(0), config_yaml("ivy", **after(ok=[mine, unknown])))
        malformed = submit(ivy, OK.format(0), config_yaml("ivy", **after(ok=["nope"])))
    with server.client(server.token("root", admin=True)) as admin:
        allowed = submit(admin, OK.format(0), config_yaml("root", **after(any=[mine])))
    assert refused.status_code == 400, refused.text
    assert mine in refused.json()["detail"]
    assert unknown in refused.json()["detail"]
    assert malformed.status_code == 400
    assert "'NOPE'" in malformed.json()["detail"]
    assert allowed.status_code == 200, allowed.text


def test_an_array_waits_on_a_job_and_a_job_waits_on_the_array(server: Server) -> None:
    """job -> array (after-ok) -> job (after-ok on the array id): each starts after all it waits for ended."""
    with server.client(server.token("jo")) as client:
        first = job(client, "jo", OK.format(0.5))
        answer = client.post(
            "/api/arrays",
            params={"array": "0-2"},
            files={
                "code": ("s.py", OK.format(0.1).encode()),
                "config_file": ("c.yaml", config_yaml("jo", **after(ok=[first]))),
            },
        )
        assert answer.status_code == 200, answer.text
        array_id = answer.json()["array_id"]
        last = job(client, "jo", OK.format(0), **after(ok=[array_id]))
        assert wait_status(client, last, ENDED)["status"] == "completed"
        tasks = [t["job_id"] for t in client.get(f"/api/arrays/{array_id}").json()["task_list"]]
    log = events(server)
    assert all(at(log, first, "job.finished") < at(log, t, "job.started") for t in tasks)
    assert all(at(log, t, "job.finished") < at(log, last, "job.started") for t in tasks)


def test_a_restart_while_a_job_waits_keeps_it_waiting_then_runs_it(server_factory: Any) -> None:
    """Restarted while the child waits (after-any) on a running parent, the server still holds it; the
    parent cancelled after the restart, the child runs."""
    srv = server_factory(local_slots=2, max_active_jobs_per_user=10)
    with srv.client(srv.token("kim")) as client:
        parent = job(client, "kim", OK.format(120), expected=300)
        child = job(client, "kim", OK.format(0), **after(any=[parent]))
        wait_status(client, parent, {"running"})
    srv.stop()
    srv.start()
    with srv.client(srv.token("kim")) as client:
        held = client.get(f"/api/status/{child}").json()
        assert client.post(f"/api/cancel/{parent}").status_code == 200
        assert wait_status(client, child, ENDED)["status"] == "completed"
    assert held["reason"] == f"waiting for dependencies: after_any {parent}"
    log = events(srv)
    assert at(log, parent, "job.finished") < at(log, child, "job.started")
