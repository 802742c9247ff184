"""Where a new event stream starts: at the head (only new events) unless ``after=`` names a position."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from server import OPEN_LIMITS, Server, config_yaml, running, submit, wait_status


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("streams"), endpoint_limits=OPEN_LIMITS, sse_heartbeat_s=1) as server:
        yield server


def _ids(client: httpx.Client, path: str, found: list[int], opened: threading.Event, stop: threading.Event) -> None:
    """Collect the SSE ids of ``path`` until ``stop`` is set (the first heartbeat says the stream is open)."""
    with client.stream("GET", path, timeout=30) as answer:
        for line in answer.iter_lines():
            if line.startswith("id:"):
                found.append(int(line[3:].strip()))
            opened.set()
            if stop.is_set():
                return


def _follow(client: httpx.Client, path: str) -> tuple[list[int], threading.Event, threading.Event, threading.Thread]:
    found: list[int] = []
    opened, stop = threading.Event(), threading.Event()
    reader = threading.Thread(target=_ids, args=(client, path, found, opened, stop), daemon=True)
    reader.start()
    assert opened.wait(15), "the stream never said anything"
    return found, opened, stop, reader


def _head(client: httpx.Client) -> int:
    return int(client.get("/dashboard/data/ledger").json()["head"])


def test_a_stream_without_after_sends_only_events_from_now_on(server: Server) -> None:
    """A client that opens the event stream with no after= receives no old event, and then the new ones."""
    admin = server.admin_token
    assert admin is not None
    with server.client(admin) as client, server.client(server.token("alice")) as alice:
        old = submit(alice, "print('old')\n", config_yaml("alice")).json()["job_id"]
        wait_status(alice, old, {"completed"})
        head = _head(client)
        found, _, stop, reader = _follow(client, "/api/events/stream")
        new = submit(alice, "print('new')\n", config_yaml("alice")).json()["job_id"]
        wait_status(alice, new, {"completed"})
        deadline = time.monotonic() + 15
        while not found and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        reader.join(15)
    assert found, "no new event arrived"
    assert min(found) > head, f"old events sent: {sorted(p for p in found if p <= head)}"


def test_a_stream_with_after_starts_there(server: Server) -> None:
    """after=0 still asks for the whole log: the first event sent is position 1."""
    admin = server.admin_token
    assert admin is not None
    with server.client(admin) as client:
        found, _, stop, reader = _follow(client, "/api/events/stream?after=0")
        deadline = time.monotonic() + 15
        while not found and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        reader.join(15)
    assert found[0] == 1
