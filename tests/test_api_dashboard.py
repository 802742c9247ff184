"""The dashboard document is bounded: counts for everything, a few active jobs inline, the rest by page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server import OPEN_LIMITS, Server, config_yaml, running, submit

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
