"""As-of documents come from a child process as JSON bytes: equal to the live builders' documents at the
same position, and the server's event loop keeps answering while a long replay runs there."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from server import OPEN_LIMITS, Server

from api.accounts import queue_document
from api.auth import Identity
from api.dashboard import dashboard_document
from api.present import job_status
from api.schemas import ActivePage, UsersPage
from api.web import panels
from api.web.deps import Moment
from ledger.domain.events import AnyEvent, Blob, JobSubmitted
from ledger.store.settings import from_flat
from ledger.store.store import Write
from projections import job_search
from projections.asof import planned_as_of_sync
from projections.dashboard import user_rows
from projections.live import open_store
from projections.plan import Plan
from projections.views import Views

ADMIN = Identity(token_id="-", user_id="admin", is_admin=True)
Built = Callable[[Views, int, Plan], msgspec.Struct]


def build_ledger(path: Path, jobs: int, per_commit: int) -> None:
    """``jobs`` submits by a dozen users, ``per_commit`` to a commit (no snapshot: as-of replays from 0)."""
    store = open_store(path)
    try:
        for first in range(0, jobs, per_commit):
            events: list[AnyEvent] = [
                JobSubmitted(
                    job_id=f"J{n:025d}",
                    user_id=f"user{n % 12}",
                    competition_id="c",
                    project_id="p",
                    expected_time_s=60 + n % 7,
                    code=Blob(digest="0" * 64, size=1),
                )
                for n in range(first, min(first + per_commit, jobs))
            ]
            store.execute([Write(decide=lambda _views, e=events: e, actor="test")])
    finally:
        store.close()


def start_on(root: Path, **settings: Any) -> Server:
    server = Server(root, code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS, **settings)
    server.start()
    return server


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "small"
    root.mkdir()
    build_ledger(root / "gpuledger.db", jobs=60, per_commit=7)
    server = start_on(root)
    yield server
    server.stop()


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _past(v: Views, n: int, p: Plan) -> Moment:
    return Moment(views=v, now=n, plan=p, live=False)


def _active(v: Views, n: int, p: Plan) -> ActivePage:
    total, jobs = v.active_page(0, 5)
    return ActivePage(total=total, offset=0, limit=5, jobs=[job_status(j, v, p) for j in jobs])


def _users(v: Views, n: int, p: Plan) -> UsersPage:
    total, users = v.ranked_users(0, 5)
    return UsersPage(total=total, offset=0, limit=5, users=user_rows(users))


def _dashboard(v: Views, n: int, p: Plan) -> msgspec.Struct:
    return dashboard_document(v, p, ADMIN, now=n, limits=(100, 100), slurm=None, disk=None)


def _jobs(v: Views, n: int, p: Plan) -> msgspec.Struct:
    flt = job_search.JobFilter()
    candidates, total = job_search.as_of_page(v, flt, 2 * 25 + 10)
    return panels.jobs_panel(_past(v, n, p), candidates, flt, 25, total)


# Each as-of endpoint, its parameters, and the live path's builder of its document (the default limits).
EXPECTED: dict[str, tuple[dict[str, Any], Built]] = {
    "/api/dashboard": ({}, _dashboard),
    "/api/dashboard/active": ({"limit": 5}, _active),
    "/api/dashboard/users": ({"limit": 5}, _users),
    "/api/queue": ({"limit": 20}, lambda v, n, p: queue_document(v, p, n, ADMIN, live=False, offset=0, limit=20)),
    "/dashboard/data/nodes": ({}, lambda v, n, p: panels.nodes_panel(_past(v, n, p), ADMIN, None)),
    "/dashboard/data/queue": ({}, lambda v, n, p: panels.queue_panel(_past(v, n, p), ADMIN, 100)),
    "/dashboard/data/jobs": ({}, _jobs),
    "/dashboard/data/lanes": ({}, lambda v, n, p: panels.lanes_panel(_past(v, n, p), ADMIN, 3600, 100)),
    "/dashboard/data/utilisation": ({}, lambda v, n, p: panels.utilisation_panel(_past(v, n, p), 3600, 60)),
    "/dashboard/data/usage": ({}, lambda v, n, p: panels.usage_panel(_past(v, n, p), ADMIN, 3600)),
}  # fmt: skip


def test_asof_documents_from_the_child_equal_the_live_builders_bytes(small: Server) -> None:
    """Every as-of reader answers, byte for byte, what the live path's builder makes of the views replayed
    to that position; the replay ran in a child process of the server (a forkserver's), which stops with it."""
    assert small.proc is not None
    before = children(small.proc.pid)
    weights = from_flat({}).fairshare.weights()
    with small.client(small.admin_token) as admin:
        head = admin.get("/dashboard/data/ledger").json()["head"]
        for position in (30, head - 1):
            views, now, plan = planned_as_of_sync(
                small.root / "gpuledger.db", position=position, time_us=None, weights=weights
            )
            assert views.job_counts.pending > 0
            for path, (params, build) in EXPECTED.items():
                answer = admin.get(path, params={"as_of": str(position), **params})
                assert answer.status_code == 200, (path, answer.text)
                assert answer.headers["content-type"] == "application/json", path
                assert answer.content == msgspec.json.encode(build(views, now, plan)), (path, position)
    started = children(small.proc.pid) - before
    assert any(b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in started), started
    small.stop()  # the children stop with the server
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in started), started


def test_a_killed_child_is_a_503_and_the_next_request_is_served(small: Server) -> None:
    """A child that dies mid-replay answers 503 (never a 500 or a hang); the pool is replaced and the
    same request then succeeds."""
    assert small.proc is not None
    with small.client(small.admin_token, timeout=30) as admin:
        assert admin.get("/api/dashboard", params={"as_of": "3"}).status_code == 200  # the pool is up
        for pid in children(small.proc.pid):  # the forkserver and its workers: stop them all
            if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes():
                for worker in children(pid):
                    os.kill(worker, 9)
        time.sleep(0.5)
        answer = admin.get("/api/dashboard", params={"as_of": "5"})
        assert answer.status_code == 503, answer.text
        assert "process died" in answer.json()["detail"]
        assert admin.get("/api/dashboard", params={"as_of": "5"}).status_code == 200
        assert admin.get("/api/queue", params={"as_of": "-1"}).status_code == 400


def cpu_s(pid: int) -> float:
    """User and system CPU seconds the process has used so far (its own threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PROBES = 30  # bounded: on a loaded machine the replay lasts longer, and more probes would cost the server more


@pytest.mark.slow
def test_the_loop_answers_livez_while_a_long_replay_runs(tmp_path: Path) -> None:
    """While an as-of request replays a long log, /livez keeps answering (counted, not timed), and the
    server's own process spends under half the replay's CPU: the fold runs elsewhere."""
    root = tmp_path / "long"
    root.mkdir()
    build_ledger(root / "gpuledger.db", jobs=120_000, per_commit=4_000)
    began = time.process_time()
    planned_as_of_sync(root / "gpuledger.db", position=119_000, time_us=None)
    replay_cpu = time.process_time() - began  # what the fold costs, measured here on the same file
    server = start_on(root)
    assert server.proc is not None
    try:
        with server.client(server.admin_token, timeout=120) as admin, server.client() as probe:
            assert admin.get("/api/dashboard", params={"as_of": "10"}).status_code == 200  # children started
            answered, done = 0, threading.Event()
            result: list[httpx.Response] = []
            before = cpu_s(server.proc.pid)
            asker = threading.Thread(
                target=lambda: (result.append(admin.get("/api/dashboard", params={"as_of": "119000"})), done.set())
            )
            asker.start()
            while not done.is_set() and answered < PROBES:
                assert probe.get("/livez").status_code == 200
                answered += 1
                time.sleep(0.01)  # paced: the probe's own cost to the server stays small
            asker.join()
            spent = cpu_s(server.proc.pid) - before
        assert result[0].status_code == 200, result[0].text
        assert result[0].json()["position"] == 119_000
        assert answered >= 10, answered
        assert spent < replay_cpu / 2, (spent, replay_cpu)
    finally:
        server.stop()


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A pids cgroup (v1) of its own, removed at the end (its processes moved back to the root first)."""
    group = Path(f"/sys/fs/cgroup/pids/gpuledger-asof-{os.getpid()}")
    group.mkdir()
    try:
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (group.parent / "cgroup.procs").write_text(pid)
        group.rmdir()


def test_no_process_to_start_is_a_503(small: Server, pids_cgroup: Path) -> None:
    """Where no as-of process can start (the server's pids limit is reached), an as-of request is a 503
    naming why, and live reads keep answering."""
    assert small.proc is not None
    with small.client(small.admin_token, timeout=30) as admin:
        assert admin.get("/api/dashboard").status_code == 200
        (pids_cgroup / "cgroup.procs").write_text(str(small.proc.pid))
        for task in Path(f"/proc/{small.proc.pid}/task").iterdir():  # v1 moves one task at a time
            (pids_cgroup / "tasks").write_text(task.name)
        (pids_cgroup / "pids.max").write_text((pids_cgroup / "pids.current").read_text().strip())
        answer = admin.get("/api/dashboard", params={"as_of": "5"})
        assert answer.status_code == 503, answer.text
        assert "could not run" in answer.json()["detail"]
        assert admin.get("/api/dashboard").status_code == 200
        (pids_cgroup / "pids.max").write_text("max")
        assert admin.get("/api/dashboard", params={"as_of": "5"}).status_code == 200
