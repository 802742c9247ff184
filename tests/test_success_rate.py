"""One success rate: completed / (completed + failed) over finished jobs, cancelled excluded, the same in
``/api/dashboard`` and on the web page's usage panel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server import OPEN_LIMITS, Server, config_yaml, running, submit, wait_status

from ledger.domain.users import success_rate


def test_the_rate_leaves_cancelled_jobs_out():
    """Two completed and one failed read 66.7 %; nothing completed or failed reads None (not 0 %)."""
    assert (success_rate(2, 1), success_rate(0, 3), success_rate(0, 0)) == (66.7, 0.0, None)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("rate"),
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        rate_limit_per_minute=0,
        max_active_jobs_per_user=10,
    ) as srv:
        yield srv


def test_dashboard_and_web_page_agree(server: Server):
    """Two completed, one failed and two cancelled jobs: 66.7 % in the API's health metrics and in the
    web page's usage row (the API used to count cancelled jobs as failures: 40 %)."""
    with server.client(server.token("rater")) as client:
        ended = [submit(client, code, config_yaml("rater")).json()["job_id"] for code in ("pass\n", "pass\n", "1/0\n")]
        for job_id in ended:
            wait_status(client, job_id, {"completed", "failed"})
        for _ in range(2):
            job_id = submit(client, "import time\ntime.sleep(30)\n", config_yaml("rater")).json()["job_id"]
            assert client.post(f"/api/cancel/{job_id}").status_code == 200
            wait_status(client, job_id, {"cancelled"})
        usage = client.get("/dashboard/data/usage", params={"window": 3600}).json()
    with server.client(server.admin_token) as admin:
        api = admin.get("/api/dashboard").json()["health_metrics"]["success_rate_percent"]
    web = next(row for row in usage["users"] if row["user_id"] == "rater")["success_rate_percent"]
    assert (api, web) == (66.7, 66.7)
