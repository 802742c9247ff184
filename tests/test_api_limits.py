"""Limits over real HTTP: per-user active jobs and submissions per minute (atomic with the append, so
concurrent submits cannot exceed them), and endpoint limits: per user, or per address (behind a trusted
proxy) for anonymous callers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest
from server import OPEN_LIMITS, Server, config_yaml, submit, wait_status

SLEEP = "import time\ntime.sleep(30)\n"


def limited_server(tmp_path_factory: pytest.TempPathFactory, name: str, **settings: object) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp(name), code_scanner_quick_mode=True, **settings)
    server.start()
    yield server
    cancel_open_jobs(server)
    server.stop()


def cancel_open_jobs(server: Server) -> None:
    """Leave no job running on the host (jobs outlive a stopped server by design)."""
    with server.client(server.admin_token) as admin:
        open_jobs = [
            j["job_id"]
            for j in admin.get("/api/jobs", params={"limit": 1000}).json()["jobs"]
            if j["status"] in ("pending", "running")
        ]
        for job_id in open_jobs:
            admin.post(f"/api/cancel/{job_id}")
        for job_id in open_jobs:
            wait_status(admin, job_id, {"cancelled", "completed", "failed"}, timeout=20)


@pytest.fixture(scope="module")
def one_active(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """MAX_ACTIVE_JOBS_PER_USER=1, no practical rate limit; results limited to 5 per address behind a proxy."""
    yield from limited_server(
        tmp_path_factory,
        "one",
        max_active_jobs_per_user=1,
        rate_limit_per_minute=100,
        endpoint_limits={**OPEN_LIMITS, "results": 5},
        trusted_proxies=["127.0.0.1/32"],
    )


@pytest.fixture(scope="module")
def three_active(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """MAX_ACTIVE_JOBS_PER_USER=3 and RATE_LIMIT_PER_MINUTE=4 (above 3, so each limit shows on its own)."""
    yield from limited_server(
        tmp_path_factory, "three", max_active_jobs_per_user=3, rate_limit_per_minute=4, endpoint_limits=OPEN_LIMITS
    )


async def submit_concurrently(server: Server, token: str, user: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60, limits=limits
    ) as client:
        files = {"code": ("s.py", SLEEP.encode()), "config_file": ("c.yaml", config_yaml(user, expected=60))}
        return list(await asyncio.gather(*(client.post("/api/submit?wait=false", files=files) for _ in range(count))))


def assert_exactly_accepted(server: Server, token: str, user: str, allowed: int) -> None:
    answers = asyncio.run(submit_concurrently(server, token, user, 20))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * allowed + [429] * (20 - allowed), [a.text for a in answers if a.status_code != 200]
    refused = [a for a in answers if a.status_code == 429]
    assert all(a.json()["detail"].startswith("Queue limit exceeded.") for a in refused)
    with server.client(token) as client:
        active = [
            j
            for j in client.get("/api/jobs", params={"limit": 1000}).json()["jobs"]
            if j["status"] in ("pending", "running")
        ]
        assert len(active) == allowed
    cancel_open_jobs(server)


def test_twenty_concurrent_submits_accept_exactly_one(one_active: Server) -> None:
    """With MAX_ACTIVE_JOBS_PER_USER=1, 20 simultaneous submits by one user accept exactly 1."""
    assert_exactly_accepted(one_active, one_active.token("racer"), "racer", 1)


def test_twenty_concurrent_submits_accept_exactly_three(three_active: Server) -> None:
    """With MAX_ACTIVE_JOBS_PER_USER=3, 20 simultaneous submits by one user accept exactly 3."""
    assert_exactly_accepted(three_active, three_active.token("racer"), "racer", 3)


def test_active_job_limit_has_the_original_text_and_retry_after(one_active: Server) -> None:
    """A second job while one is in progress is a 429 with the original text and a Retry-After header."""
    token = one_active.token("busy")
    with one_active.client(token) as client:
        first = submit(client, SLEEP, config_yaml("busy", expected=60))
        assert first.status_code == 200
        second = submit(client, "pass", config_yaml("busy"))
        assert second.status_code == 429
        assert second.json()["detail"] == (
            "Queue limit exceeded. You already have 1 job(s) in progress. Maximum 1 jobs per user allowed."
        )
        assert int(second.headers["retry-after"]) >= 1
        client.post(f"/api/cancel/{first.json()['job_id']}")
        wait_status(client, first.json()["job_id"], {"cancelled"}, timeout=20)
        assert submit(client, "pass", config_yaml("busy"), wait=True).json()["status"] == "completed"


def test_admins_are_exempt_from_the_per_user_limits(one_active: Server) -> None:
    """With ADMIN_RATE_LIMIT_EXEMPT (default), an admin may have more jobs in progress than the cap."""
    with one_active.client(one_active.admin_token) as admin:
        ids = [submit(admin, SLEEP, config_yaml("admin", expected=60)).json()["job_id"] for _ in range(3)]
        assert len(set(ids)) == 3
        for job_id in ids:
            admin.post(f"/api/cancel/{job_id}")
        for job_id in ids:
            wait_status(admin, job_id, {"cancelled"}, timeout=20)


def test_rate_limit_has_the_original_text_and_retry_after(three_active: Server) -> None:
    """The fifth accepted submit within a minute (limit 4) is a 429 naming the limit with Retry-After."""
    token = three_active.token("hasty")
    with three_active.client(token) as client:
        for _ in range(4):
            assert submit(client, "pass", config_yaml("hasty"), wait=True).json()["status"] == "completed"
        answer = submit(client, "pass", config_yaml("hasty"))
        assert answer.status_code == 429
        detail = answer.json()["detail"]
        match = re.fullmatch(r"Rate limit exceeded\. Maximum 4 requests per 60s\. Retry after (\d+)s\.", detail)
        assert match is not None, detail
        retry = int(answer.headers["retry-after"])
        assert retry == int(match.group(1))
        assert 1 <= retry <= 60


def test_endpoint_limit_is_per_user_for_authenticated_callers(one_active: Server) -> None:
    """The results endpoint allows 5 requests a minute per user, from whatever address; the 6th is 429."""
    token = one_active.token("poller")
    with one_active.client(token) as client:
        job_id = submit(client, "pass", config_yaml("poller"), wait=True).json()["job_id"]
        first = {"X-Forwarded-For": "203.0.113.7"}
        for _ in range(5):
            assert client.get(f"/api/results/{job_id}", headers=first).status_code == 200
        refused = client.get(f"/api/results/{job_id}", headers=first)
        assert refused.status_code == 429
        assert refused.json()["detail"].startswith(
            "Rate limit exceeded for results requests by user poller: maximum 5 per 60s. Retry after "
        )
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert client.get(f"/api/results/{job_id}", headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 429
        assert client.get(f"/api/status/{job_id}", headers=first).status_code == 200


def test_unauthenticated_callers_count_against_the_endpoint_limit(one_active: Server) -> None:
    """The endpoint limit is checked before auth: an anonymous flood is throttled too."""
    address = {"X-Forwarded-For": "198.51.100.1"}
    codes = [httpx.get(f"{one_active.url}/api/results/x", headers=address).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
