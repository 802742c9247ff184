"""Every endpoint's success shape over real HTTP: submit, status, results, cancel, jobs, nodes, events,
the dashboard (live and as of a past position or time) and the service endpoints."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from server import OPEN_LIMITS, Server, config_yaml, run_cli, running, submit, wait_status

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")
STATUS_FIELDS = {
    "job_id",
    "status",
    "phase",
    "reason",
    "node_id",
    "node",
    "queue_position",
    "estimated_start_at",
    "created_at",
    "started_at",
    "completed_at",
    "exit_code",
}
RESULTS_FIELDS = {
    "job_id",
    "status",
    "stdout",
    "stderr",
    "exit_code",
    "results",
    "started_at",
    "completed_at",
    "truncated",
}
SLEEP = "import time\ntime.sleep({})\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("jobs"),
        code_scanner_quick_mode=True,
        sync_wait_timeout=2,
        rate_limit_per_minute=100,
        max_active_jobs_per_user=100,
        endpoint_limits=OPEN_LIMITS,
    ) as srv:
        yield srv
        cancel_open_jobs(srv)


@pytest.fixture(scope="module")
def alice(server: Server) -> str:
    return server.token("alice")


@pytest.fixture(scope="module")
def bob(server: Server) -> str:
    return server.token("bob")


def cancel_open_jobs(server: Server) -> None:
    """Leave no job running on the host after the module (jobs outlive a stopped server by design)."""
    with server.client(server.admin_token) as admin:
        for job in admin.get("/api/jobs", params={"limit": 1000}).json()["jobs"]:
            if job["status"] in ("pending", "running"):
                admin.post(f"/api/cancel/{job['job_id']}")
        for job in admin.get("/api/jobs", params={"limit": 1000}).json()["jobs"]:
            if job["status"] in ("pending", "running"):
                wait_status(admin, job["job_id"], {"cancelled", "completed", "failed"}, timeout=20)


def running_job(client: httpx.Client, user: str, seconds: int = 30) -> str:
    answer = submit(client, SLEEP.format(seconds), config_yaml(user, expected=60))
    assert answer.status_code == 200, answer.text
    job_id: str = answer.json()["job_id"]
    wait_status(client, job_id, {"running"}, timeout=20)
    return job_id


def finish(client: httpx.Client, job_id: str) -> None:
    client.post(f"/api/cancel/{job_id}")
    wait_status(client, job_id, {"cancelled", "completed", "failed"}, timeout=20)


def test_root_names_the_service_and_its_endpoints(server: Server) -> None:
    """GET / answers the original service document with a version and the endpoint map."""
    body = httpx.get(f"{server.url}/").json()
    assert body["service"] == "GPU Job Queue Server"
    assert isinstance(body["version"], str)
    assert body["version"]
    assert body["endpoints"]["submit"] == "POST /api/submit"
    assert {"status", "results", "cancel", "jobs", "nodes", "dashboard"} <= set(body["endpoints"])


def test_livez_and_readyz_answer_ok_with_their_checks(server: Server) -> None:
    """/livez is ok; /readyz is 200 with every check true once the server is up."""
    assert httpx.get(f"{server.url}/livez").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"] == {"ledger_writable": True, "projections_caught_up": True, "executors_started": True}


def test_metrics_are_prometheus_text(server: Server, alice: str) -> None:
    """/metrics is Prometheus text: HELP/TYPE lines and job gauges by status that count real jobs."""
    with server.client(alice) as client:
        assert submit(client, "pass", config_yaml("alice"), wait=True).json()["status"] == "completed"
    answer = httpx.get(f"{server.url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert "# TYPE gpuledger_jobs gauge" in text
    completed = re.search(r'^gpuledger_jobs\{status="completed"\} (\d+(\.\d+)?)$', text, re.M)
    assert completed is not None
    assert float(completed.group(1)) >= 1
    assert re.search(r"^gpuledger_queue_length \d", text, re.M)
    appended = re.search(r"^gpuledger_ledger_events_appended_total (\d+(\.\d+)?)$", text, re.M)
    assert appended is not None
    assert float(appended.group(1)) >= 5  # at least the job's submitted .. finished
    for phase in ("decide", "insert", "projections", "commit"):
        spent = re.search(rf'^gpuledger_ledger_write_seconds_total\{{phase="{phase}"\}} (\S+)$', text, re.M)
        assert spent is not None
        assert float(spent.group(1)) > 0


def test_schema_is_a_local_openapi_document(server: Server) -> None:
    """/schema serves the OpenAPI JSON itself (no CDN) listing the job endpoints."""
    answer = httpx.get(f"{server.url}/schema")
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"].startswith("3.")
    assert {"/api/submit", "/api/status/{job_id}", "/api/jobs"} <= set(document["paths"])


def test_submit_without_wait_answers_pending_with_the_original_message(server: Server, alice: str) -> None:
    """wait=false answers job_id, node_id, status pending, the original message and created_at."""
    with server.client(alice) as client:
        answer = submit(client, "pass", config_yaml("alice"), wait=False)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert {"job_id", "node_id", "status", "message", "created_at"} <= set(body)
        assert body["status"] == "pending"
        assert body["message"] == (f"Job submitted successfully. Use /api/status/{body['job_id']} to check progress.")
        assert ISO.match(body["created_at"])
        wait_status(client, body["job_id"], {"completed"})


def test_submit_wait_answers_the_finished_job(server: Server, alice: str) -> None:
    """wait=true answers the terminal job with stdout, stderr, exit code, results and times."""
    with server.client(alice) as client:
        answer = submit(client, 'print("hello")\n', config_yaml("alice"), wait=True)
        body = answer.json()
        assert {
            "job_id",
            "node_id",
            "status",
            "stdout",
            "stderr",
            "exit_code",
            "results",
            "started_at",
            "completed_at",
        } <= set(body)
        assert (body["status"], body["stdout"], body["exit_code"], body["results"]) == ("completed", "hello\n", 0, None)
        assert body["node_id"] == 0
        assert ISO.match(body["started_at"])
        assert ISO.match(body["completed_at"])


def test_submit_wait_times_out_with_the_current_state(server: Server, alice: str) -> None:
    """Past SYNC_WAIT_TIMEOUT, wait=true answers the current state and where to look later."""
    with server.client(alice) as client:
        started = time.monotonic()
        answer = submit(client, SLEEP.format(30), config_yaml("alice", expected=60), wait=True)
        assert 1.5 < time.monotonic() - started < 15
        body = answer.json()
        assert {"job_id", "node_id", "status", "message"} <= set(body)
        assert "stdout" not in body
        assert body["status"] in ("pending", "running")
        assert body["message"] == (
            f"Timeout after 2s. Job still {body['status']}. Use /api/results/{body['job_id']} to check later."
        )
        finish(client, body["job_id"])


def test_status_of_a_finished_job_has_every_field(server: Server, alice: str) -> None:
    """The status of a finished job carries every field of the original answer with real values."""
    with server.client(alice) as client:
        job_id = submit(client, "raise SystemExit(3)\n", config_yaml("alice"), wait=True).json()["job_id"]
        body = client.get(f"/api/status/{job_id}").json()
        assert set(body) >= STATUS_FIELDS
        assert (body["job_id"], body["status"], body["exit_code"], body["node"], body["node_id"]) == (
            job_id,
            "failed",
            3,
            "local",
            0,
        )
        assert body["queue_position"] is None
        assert body["estimated_start_at"] is None
        assert body["reason"] is None
        assert body["phase"] == "finished"
        assert all(ISO.match(body[k]) for k in ("created_at", "started_at", "completed_at"))


def test_status_of_a_queued_job_has_position_reason_and_estimate(server: Server, alice: str) -> None:
    """A job queued behind a running one is pending, position 0, with a reason and a start estimate."""
    with server.client(alice) as client:
        first = running_job(client, "alice")
        second = submit(client, "pass", config_yaml("alice")).json()["job_id"]
        body = client.get(f"/api/status/{second}").json()
        assert (body["status"], body["queue_position"], body["reason"]) == ("pending", 0, "waiting for a free node")
        assert body["started_at"] is None
        assert body["completed_at"] is None
        assert body["exit_code"] is None
        assert ISO.match(body["estimated_start_at"])
        finish(client, first)
        wait_status(client, second, {"completed"})


def test_results_carry_output_exit_code_and_the_results_file(server: Server, alice: str) -> None:
    """/api/results gives stdout, stderr, exit code, the results text and truncation flags."""
    code = (
        'import os, sys\nprint("out")\nprint("err", file=sys.stderr)\n'
        'open(os.environ["GPULEDGER_RESULTS"], "w").write(\'{"score": 1}\\n\')\n'
    )
    with server.client(alice) as client:
        job_id = submit(client, code, config_yaml("alice"), wait=True).json()["job_id"]
        body = client.get(f"/api/results/{job_id}").json()
        assert set(body) >= RESULTS_FIELDS
        assert (body["status"], body["stdout"], body["stderr"], body["exit_code"]) == ("completed", "out\n", "err\n", 0)
        assert body["results"] == '{"score": 1}\n'
        assert body["truncated"] == {"stdout": False, "stderr": False, "results": False}


def test_cancel_answers_the_original_message_and_refuses_a_finished_job(server: Server, alice: str) -> None:
    """Cancel of a running job answers 200 'Job cancelled successfully'; of a finished one 409."""
    with server.client(alice) as client:
        job_id = running_job(client, "alice")
        answer = client.post(f"/api/cancel/{job_id}")
        assert answer.status_code == 200
        assert {"message": answer.json()["message"], "status": answer.json()["status"]} == {
            "message": "Job cancelled successfully",
            "status": "cancelled",
        }
        assert wait_status(client, job_id, {"cancelled", "completed", "failed"})["status"] == "cancelled"
        again = client.post(f"/api/cancel/{job_id}")
        assert again.status_code == 409
        assert again.json()["detail"] == "Job already cancelled"
        done = submit(client, "pass", config_yaml("alice"), wait=True).json()["job_id"]
        refused = client.post(f"/api/cancel/{done}")
        assert (refused.status_code, refused.json()["detail"]) == (409, "Job already completed")


def test_jobs_list_is_newest_first_and_limited(server: Server) -> None:
    """/api/jobs lists the caller's jobs newest first; limit bounds it; a status filter filters."""
    token = server.token("lister")
    with server.client(token) as client:
        ids = [submit(client, "pass", config_yaml("lister"), wait=True).json()["job_id"] for _ in range(3)]
        failed = submit(client, "raise SystemExit(1)", config_yaml("lister"), wait=True).json()["job_id"]
        listed = client.get("/api/jobs").json()["jobs"]
        assert [j["job_id"] for j in listed] == [failed, *reversed(ids)]
        assert set(listed[0]) >= STATUS_FIELDS
        assert [j["job_id"] for j in client.get("/api/jobs", params={"limit": 2}).json()["jobs"]] == [failed, ids[2]]
        only = client.get("/api/jobs", params={"status": "completed"}).json()["jobs"]
        assert [j["job_id"] for j in only] == list(reversed(ids))
        assert client.get("/api/jobs", params={"limit": 1000}).status_code == 200


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "many"])
def test_jobs_list_refuses_a_limit_out_of_range(server: Server, alice: str, limit: str) -> None:
    """A limit outside 1..1000 (or not a number) is a 400 that names it."""
    with server.client(alice) as client:
        answer = client.get("/api/jobs", params={"limit": limit})
        assert answer.status_code == 400
        assert "limit" in answer.json()["detail"]


def test_nodes_show_job_ids_only_to_whom_they_belong(server: Server, alice: str, bob: str) -> None:
    """Anonymous callers see no job or user ids, the owner sees theirs, another user none, admins all."""
    with server.client(alice) as client:
        job_id = running_job(client, "alice")
        views = {}
        for name, token in (("anonymous", None), ("alice", alice), ("bob", bob), ("admin", server.admin_token)):
            with server.client(token) as who:
                answer = who.get("/api/nodes")
                assert answer.status_code == 200
                views[name] = answer.json()["nodes"]
        node = views["admin"][0]
        assert {"node_id", "name", "status", "queue_length", "total_wait_time", "current_job"} <= set(node)
        assert (node["node_id"], node["name"], node["status"]) == (0, "local", "busy")
        assert (node["current_job"]["job_id"], node["current_job"]["user_id"]) == (job_id, "alice")
        assert views["alice"][0]["current_job"]["job_id"] == job_id
        for hidden in ("anonymous", "bob"):
            current = views[hidden][0]["current_job"]
            assert current["job_id"] is None
            assert current["user_id"] is None
            assert job_id not in str(views[hidden])
            assert "alice" not in str(views[hidden])
        finish(client, job_id)
        assert httpx.get(f"{server.url}/api/nodes").json()["nodes"][0]["status"] == "idle"


def test_job_events_are_its_audit_trail(server: Server, alice: str) -> None:
    """/api/jobs/{id}/events lists the job's ledger events in order with positions and times."""
    with server.client(alice) as client:
        job_id = submit(client, "pass", config_yaml("alice"), wait=True).json()["job_id"]
        body = client.get(f"/api/jobs/{job_id}/events").json()
        assert body["job_id"] == job_id
        types = [e["type"] for e in body["events"]]
        assert types == ["job.submitted", "job.scanned", "job.queued", "job.dispatched", "job.started", "job.finished"]
        positions = [e["position"] for e in body["events"]]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)
        first = body["events"][0]
        assert (first["stream"], first["event"]["job_id"], first["event"]["user_id"]) == (
            f"job-{job_id}",
            job_id,
            "alice",
        )
        assert all(ISO.match(e["recorded_at"]) for e in body["events"])
        assert body["events"][-1]["event"]["status"] == "completed"


def test_unknown_job_is_404_for_an_authenticated_caller(server: Server, alice: str) -> None:
    """A job id that does not exist is a 404 with a detail on every job endpoint."""
    with server.client(alice) as client:
        for method, path in (
            ("GET", "/api/status/nope"),
            ("GET", "/api/results/nope"),
            ("POST", "/api/cancel/nope"),
            ("GET", "/api/jobs/nope/events"),
        ):
            answer = client.request(method, path)
            assert answer.status_code == 404, path
            assert "not found" in answer.json()["detail"].lower()


def dashboard(client: httpx.Client, **params: Any) -> dict[str, Any]:
    answer = client.get("/api/dashboard", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_dashboard_is_for_admins_only(server: Server, alice: str) -> None:
    """A user gets 403 from /api/dashboard; anonymous 401; an admin the full document."""
    with server.client(alice) as client:
        assert client.get("/api/dashboard").status_code == 403
    assert httpx.get(f"{server.url}/api/dashboard").status_code == 401
    with server.client(server.admin_token) as admin:
        body = dashboard(admin)
    assert {
        "timestamp",
        "user_id",
        "is_admin",
        "job_statistics",
        "user_statistics",
        "node_statistics",
        "queue_information",
        "active_jobs",
        "recent_jobs",
        "health_metrics",
    } <= set(body)
    assert (body["user_id"], body["is_admin"]) == ("admin", True)
    assert set(body["job_statistics"]) >= {"total", "pending", "running", "completed", "failed", "cancelled"}
    assert {
        "node_utilization_percent",
        "average_queue_time_seconds",
        "total_active_jobs",
        "success_rate_percent",
        "jobs_last_24h",
    } <= set(body["health_metrics"])
    assert body["user_statistics"]["alice"]["total"] >= 1
    assert len(body["recent_jobs"]) <= 10


def test_dashboard_as_of_gives_the_state_as_it_was(server: Server, alice: str) -> None:
    """?as_of= a ledger position or an ISO time returns the document as it stood then, not now."""
    with server.client(alice) as client, server.client(server.admin_token) as admin:
        first = submit(client, "pass", config_yaml("alice"), wait=True).json()["job_id"]
        events = client.get(f"/api/jobs/{first}/events").json()["events"]
        position, at = events[-1]["position"], events[-1]["recorded_at"]
        before = dashboard(admin)
        second = submit(client, "raise SystemExit(2)", config_yaml("alice"), wait=True).json()["job_id"]
        now = dashboard(admin)
        assert now["job_statistics"]["failed"] == before["job_statistics"]["failed"] + 1
        for as_of in (str(position), at):
            then = dashboard(admin, as_of=as_of)
            assert then["job_statistics"] == before["job_statistics"], as_of
            assert then["user_statistics"] == before["user_statistics"], as_of
            recent = [j["job_id"] for j in then["recent_jobs"]]
            assert recent[0] == first, as_of
            assert second not in recent, as_of
        assert admin.get("/api/dashboard", params={"as_of": "yesterday"}).status_code == 400


def test_ledger_verifies_after_all_of_the_above(server: Server) -> None:
    """`gpuledger audit verify` on the server's live ledger exits 0 after everything this module did."""
    done = run_cli(server.root, "audit", "verify", "--db", str(server.root / "gpuledger.db"), env=server.env)
    assert done.returncode == 0, done.stdout + done.stderr
