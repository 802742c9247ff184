"""The Python SDK against a real server: sync and async submit, wait, logs, results, and typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from server import OPEN_LIMITS, Server, config_yaml, running

from gpuledger import AsyncClient, AuthError, Client, Conflict, JobFailed, NotFound, RateLimited


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    limits = {**OPEN_LIMITS, "results": 1}
    with running(
        tmp_path_factory.mktemp("sdk"), code_scanner_quick_mode=True, endpoint_limits=limits, rate_limit_per_minute=0
    ) as srv:
        yield srv


def test_sync_submit_follow_wait_and_results(server: Server, tmp_path: Path) -> None:
    """submit returns at once; logs(follow=True) yields every chunk; wait gives the job's exit code."""
    (tmp_path / "config.yaml").write_bytes(config_yaml("admin"))
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)\nraise SystemExit(42)\n"
    with Client(server.url, server.admin_token) as client:
        job = client.submit(code, tmp_path / "config.yaml")
        assert job.submitted is not None
        assert job.submitted.status == "pending"
        chunks = list(job.logs(follow=True))
        assert "".join(c.text for c in chunks) == "0\n1\n2\n"
        assert chunks[-1].offset == 6
        status = job.wait()
        assert (status.status, status.exit_code, status.finish_reason) == ("failed", 42, "exit_nonzero")
        with pytest.raises(JobFailed, match="exit code 42"):
            job.wait(check=True)
        assert job.results().stdout == "0\n1\n2\n"
        assert job.job_id in [j.job_id for j in client.jobs(status="failed")]
        assert [n.name for n in client.nodes()] == ["local"]


def test_async_client_does_the_same(server: Server) -> None:
    """AsyncClient: submit, wait, logs and cancel, awaited."""

    async def scenario() -> None:
        async with AsyncClient(server.url, server.admin_token) as client:
            job = await client.submit("print('async hi')\n", config_yaml("admin"))
            assert (await job.wait()).status == "completed"
            assert [c.text async for c in job.logs()] == ["async hi\n"]
            with pytest.raises(Conflict, match="Job already completed"):
                await job.cancel()

    asyncio.run(scenario())


def test_both_clients_read_the_same_quota(server: Server) -> None:
    """quota() answers alike on Client and AsyncClient (the async one once lacked it)."""
    with Client(server.url, server.admin_token) as client:
        wanted = client.quota()

    async def asked() -> object:
        async with AsyncClient(server.url, server.admin_token) as client:
            return await client.quota()

    assert wanted.user_id == "admin"
    assert asyncio.run(asked()) == wanted


def test_typed_errors_and_retry_after(server: Server) -> None:
    """A bad token is AuthError, a foreign job NotFound, a 429 RateLimited with retry_after."""
    with Client(server.url, "not-a-real-token") as bad, pytest.raises(AuthError):
        bad.jobs()
    with Client(server.url, server.admin_token) as client:
        with pytest.raises(NotFound):
            client.status("01NOSUCHJOB0000000000000000")
        job = client.submit("print(1)\n", config_yaml("admin"))
        job.wait()
        client.results(job.job_id, waiting=True)  # this server allows one results call a minute
        with pytest.raises(RateLimited) as limited:
            client.results(job.job_id)
        assert limited.value.retry_after is not None
        assert 0 < limited.value.retry_after <= 60
