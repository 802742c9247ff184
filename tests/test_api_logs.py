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


RETRIED = "import time, uuid\nprint(f'attempt {uuid.uuid4()}', flush=True)\ntime.sleep(1)\nraise SystemExit(3)\n"


def test_follow_carries_on_into_the_next_attempt_from_its_first_byte(server_factory):
    """A follower that joined during attempt 1 gets all of its output, then all of attempt 2's from its
    byte 0 (not from attempt 1's offset), with resume points that name the attempt."""
    server = server_factory(code_scanner_enabled=False)
    config = config_yaml("admin", retries=1, retry_on_exit_codes="[3]")
    with server.client(server.admin_token, timeout=60) as client:
        job_id = submit(client, RETRIED, config).json()["job_id"]
        bodies, ids = [], []
        with connect_sse(client, "GET", f"/api/jobs/{job_id}/logs?follow=true") as source:
            for event in source.iter_sse():
                if event.event == "end":
                    break
                bodies.append(json.loads(event.data))
                ids.append(int(event.id))
        final = client.get(f"/api/status/{job_id}").json()
        assert (final["status"], final["attempt"], final["exit_code"]) == ("failed", 2, 3)
        lines = "".join(b["text"] for b in bodies).splitlines()
        assert len(lines) == 2, lines  # each attempt's own line, neither skipped
        assert lines[0] != lines[1]
        assert [b.get("attempt", 1) for b in bodies] == [1, 2]
        assert bodies[1]["offset"] == len(lines[1]) + 1  # counted from attempt 2's own first byte
        assert ids[0] == bodies[0]["offset"]  # attempt 1's ids are plain offsets, as before retries
        assert ids[1] > 2**40
        assert client.get(f"/api/jobs/{job_id}/logs").text == lines[1] + "\n"  # the job's output: attempt 2's
        # Resuming after attempt 1's last event gives attempt 2's output again, from its first byte.
        with connect_sse(
            client, "GET", f"/api/jobs/{job_id}/logs?follow=true", headers={"Last-Event-ID": str(ids[0])}
        ) as again:
            resumed = [json.loads(e.data)["text"] for e in again.iter_sse() if e.event == "log"]
        assert "".join(resumed) == lines[1] + "\n"
        # From the very start: every attempt's output, the first one's first.
        with connect_sse(
            client, "GET", f"/api/jobs/{job_id}/logs?follow=true", headers={"Last-Event-ID": "0"}
        ) as whole:
            replayed = [json.loads(e.data)["text"] for e in whole.iter_sse() if e.event == "log"]
        assert "".join(replayed).splitlines() == lines
