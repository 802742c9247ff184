"""Live logs over HTTP: plain byte ranges, and Server-Sent Events that resume after a dropped connection."""

from __future__ import annotations

import json
import time

import httpx
from httpx_sse import connect_sse
from server import config_yaml, submit, wait_status

TICKER = "import time\nfor i in range(12):\n    print(f'line {i}', flush=True)\n    time.sleep(0.15)\n"


def _collect(client: httpx.Client, job_id: str, *, last_id: str | None, stop_after: int | None):
    headers = {"Last-Event-ID": last_id} if last_id else {}
    texts, ids, arrivals = [], [], []
    with connect_sse(client, "GET", f"/api/jobs/{job_id}/logs?follow=true", headers=headers) as source:
        for event in source.iter_sse():
            if event.event == "end":
                return texts, ids, arrivals, True
            texts.append(json.loads(event.data)["text"])
            ids.append(event.id)
            arrivals.append(time.monotonic())
            if stop_after is not None and len(texts) >= stop_after:
                return texts, ids, arrivals, False
    return texts, ids, arrivals, False


def test_follow_shows_lines_live_and_resumes_without_loss(server_factory):
    """SSE shows lines while the job runs; reconnecting with Last-Event-ID loses and repeats nothing."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        job_id = submit(client, TICKER, config_yaml("admin")).json()["job_id"]
        wait_status(client, job_id, {"running", "completed"})
        first, ids, _arrivals, ended = _collect(client, job_id, last_id=None, stop_after=2)
        assert not ended
        assert client.get(f"/api/status/{job_id}").json()["status"] == "running"  # it was live, not replayed
        rest, _, _, ended = _collect(client, job_id, last_id=ids[-1], stop_after=None)
        assert ended
        assert "".join(first + rest) == "".join(f"line {i}\n" for i in range(12))


def test_plain_logs_from_an_offset_are_byte_exact(server_factory):
    """The plain endpoint returns raw bytes from an offset, non-UTF-8 and NUL bytes included."""
    server = server_factory(code_scanner_enabled=False)
    code = "import sys\nsys.stdout.buffer.write(b'ab\\x00\\xff\\xfe' + bytes(range(256)))\n"
    with server.client(server.admin_token) as client:
        job_id = submit(client, code, config_yaml("admin"), wait=True).json()["job_id"]
        expected = b"ab\x00\xff\xfe" + bytes(range(256))
        whole = client.get(f"/api/jobs/{job_id}/logs?stream=stdout")
        assert whole.content == expected
        assert whole.headers["x-log-offset"] == str(len(expected))
        assert client.get(f"/api/jobs/{job_id}/logs?stream=stdout&offset=3").content == expected[3:]
