"""The dashboard document is bounded: counts for everything, a few active jobs and users inline, the rest by page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from server import OPEN_LIMITS, Server, config_yaml, running, submit, wait_status

SLEEP = "import time\ntime.sleep(60)\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("dashboard"),
        code_scanner_quick_mode=True,
        dashboard_active_jobs=2,
        rate_limit_per_minute=100,
        max_active_jobs_per_user=100,
        endpoint_limits=OPEN_LIMITS,
    ) as srv:
        yield srv


def test_active_jobs_inline_are_capped_and_the_rest_come_by_page(server: Server) -> None:
    """Five active jobs, DASHBOARD_ACTIVE_JOBS=2: two inline (the oldest), the total, and pages that
    together list every active job once, in submit order."""
    with server.client(server.admin_token) as admin:
        ids = [submit(admin, SLEEP, config_yaml("admin", expected=120)).json()["job_id"] for _ in range(5)]
        try:
            body = admin.get("/api/dashboard").json()
            assert body["active_jobs_total"] == 5
            assert [j["job_id"] for j in body["active_jobs"]] == ids[:2]
            assert body["health_metrics"]["total_active_jobs"] == 5
            assert body["job_statistics"]["total"] == 5
            paged = []
            for offset in (0, 2, 4):
                page = admin.get("/api/dashboard/active", params={"offset": offset, "limit": 2}).json()
                assert (page["total"], page["offset"], page["limit"]) == (5, offset, 2)
                paged += [j["job_id"] for j in page["jobs"]]
            assert paged == ids
            assert set(page["jobs"][0]) >= {"job_id", "status", "queue_position", "reason"}
            beyond = admin.get("/api/dashboard/active", params={"offset": 10}).json()
            assert (beyond["total"], beyond["jobs"]) == (5, [])
        finally:
            for job_id in ids:
                admin.post(f"/api/cancel/{job_id}")


def test_active_pages_check_their_parameters_and_caller(server: Server) -> None:
    """A negative offset or a zero limit is a 400 naming the parameter; a non-admin gets 403."""
    alice = server.token("alice")
    with server.client(server.admin_token) as admin:
        bad = admin.get("/api/dashboard/active", params={"offset": -1})
        assert bad.status_code == 400
        assert "offset" in bad.text
        assert admin.get("/api/dashboard/active", params={"limit": 0}).status_code == 400
    with server.client(alice) as client:
        assert client.get("/api/dashboard/active").status_code == 403


def test_active_pages_as_of_a_position(server: Server) -> None:
    """?as_of= pages the active jobs as they stood then: the first job alone right after its submit."""
    with server.client(server.admin_token) as admin:
        first = submit(admin, SLEEP, config_yaml("admin", expected=120)).json()["job_id"]
        try:
            events = admin.get(f"/api/jobs/{first}/events").json()["events"]
            at = events[0]["position"]
            page = admin.get("/api/dashboard/active", params={"as_of": str(at)}).json()
            assert [j["job_id"] for j in page["jobs"]][-1:] == [first]
            assert page["jobs"][-1]["status"] == "pending"
        finally:
            admin.post(f"/api/cancel/{first}")


def test_users_inline_are_capped_active_first_and_the_rest_come_by_page(server_factory: Any) -> None:
    """DASHBOARD_USERS=2 and three users: inline the one with an active job, then the latest submitter;
    user_statistics_total counts all three; pages (also as of a position) list them in the same order."""
    srv = server_factory(dashboard_users=2, rate_limit_per_minute=100, max_active_jobs_per_user=100)
    with srv.client(srv.admin_token) as admin:
        ids = {}
        for user in ("alice", "bob", "carol"):
            with srv.client(srv.token(user)) as client:
                ids[user] = submit(client, SLEEP, config_yaml(user, expected=120)).json()["job_id"]
            if user != "alice":
                assert admin.post(f"/api/cancel/{ids[user]}").status_code == 200
                wait_status(admin, ids[user], {"cancelled"})
        try:
            body = admin.get("/api/dashboard").json()
            assert list(body["user_statistics"]) == ["alice", "carol"]
            assert body["user_statistics_total"] == 3
            assert list(body["fairshare"]["users"]) == ["alice", "carol"]  # the accounts of the users inline
            assert body["user_statistics"]["carol"] == {
                "total": 1, "pending": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 1,
            }  # fmt: skip
            assert (body["job_statistics"]["total"], body["job_statistics"]["cancelled"]) == (3, 2)
            paged = []
            for offset in (0, 2):
                page = admin.get("/api/dashboard/users", params={"offset": offset, "limit": 2}).json()
                assert (page["total"], page["offset"], page["limit"]) == (3, offset, 2)
                paged += [row["user_id"] for row in page["users"]]
            assert paged == ["alice", "carol", "bob"]
            assert page["users"][0]["cancelled"] == 1
            beyond = admin.get("/api/dashboard/users", params={"offset": 5}).json()
            assert (beyond["total"], beyond["users"]) == (3, [])
            first = admin.get(f"/api/jobs/{ids['alice']}/events").json()["events"][0]["position"]
            then = admin.get("/api/dashboard/users", params={"as_of": str(first)}).json()
            assert [row["user_id"] for row in then["users"]] == ["alice"]
            assert then["users"][0]["pending"] == 1
        finally:
            admin.post(f"/api/cancel/{ids['alice']}")


def test_user_pages_check_their_parameters_and_caller(server: Server) -> None:
    """A zero or too large limit, a negative offset or a bad as_of is a 400 naming it; a non-admin gets 403."""
    with server.client(server.admin_token) as admin:
        for params, named in (({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"offset": -1}, "offset"),
                              ({"as_of": "yesterday"}, "as_of")):  # fmt: skip
            bad = admin.get("/api/dashboard/users", params=params)
            assert bad.status_code == 400, params
            assert named in bad.text
    with server.client(server.token("dave")) as client:
        assert client.get("/api/dashboard/users").status_code == 403
