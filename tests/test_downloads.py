"""Full-output downloads (`/api/jobs/{id}/logs`): streamed in chunks, bounded in number and per token."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import config_yaml, submit, wait_status

pytestmark = pytest.mark.timeout(120)
MiB = 1024 * 1024
BIG = "import sys\nfor _ in range(24):\n    sys.stdout.write('x' * (1 << 20))\n"


def big_job(server: Any) -> str:
    with server.client(server.admin_token) as client:
        job = submit(client, BIG, config_yaml("admin")).json()["job_id"]
        wait_status(client, job, {"completed"}, timeout=60)
    return job


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_downloads_past_the_bound_are_refused_with_retry_after(server_factory: Any) -> None:
    """With DOWNLOAD_CONCURRENCY = 2, a third download while two stream gets 503 and Retry-After; once
    they end, downloads are served again."""
    server = server_factory(download_concurrency=2)
    job = big_job(server)
    url = f"/api/jobs/{job}/logs"
    with server.client(server.admin_token) as client:
        with ExitStack() as streams:
            held = []  # a dropped iterator would close its response
            for _ in range(2):
                response = streams.enter_context(client.stream("GET", url))
                assert response.status_code == 200
                held.append(response.iter_raw())
                next(held[-1])  # started, and held: 24 MiB outgrow every socket buffer
            refused = client.get(url)
            assert refused.status_code == 503, refused.status_code
            assert int(refused.headers["Retry-After"]) >= 1
        deadline = time.monotonic() + 20
        while (again := client.get(url)).status_code != 200:
            assert time.monotonic() < deadline, again.status_code
            time.sleep(0.2)
        assert len(again.content) == 24 * MiB


def test_concurrent_downloads_keep_the_server_small(server_factory: Any) -> None:
    """Eight concurrent downloads of a 24 MiB output: every byte arrives, and the server's RSS grows by
    far less than the 192 MiB that reading each output whole would take."""
    server = server_factory(download_concurrency=8)
    job = big_job(server)
    assert server.proc is not None
    before, peak, sizes = rss(server.proc.pid), 0, []
    done = threading.Event()

    def download() -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}) as c:
            sizes.append(len(c.get(f"/api/jobs/{job}/logs", timeout=60).content))

    threads = [threading.Thread(target=download) for _ in range(8)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, rss(server.proc.pid))
        time.sleep(0.01)
    done.set()
    assert sizes == [24 * MiB] * 8
    assert peak - before < 64 * MiB, f"server RSS grew by {(peak - before) // MiB} MiB"


def test_a_token_past_its_download_bytes_gets_429(server_factory: Any) -> None:
    """DOWNLOAD_BYTES_PER_MINUTE = 30 MiB: one 24 MiB download passes, the next within the minute is 429."""
    server = server_factory(download_bytes_per_minute=30 * MiB)
    job = big_job(server)
    with server.client(server.admin_token) as client:
        assert len(client.get(f"/api/jobs/{job}/logs").content) == 24 * MiB
        refused = client.get(f"/api/jobs/{job}/logs")
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
