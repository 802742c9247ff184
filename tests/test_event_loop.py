"""The server's event loop starts commands without running Python in the forked child.

uvloop, which uvicorn picks by itself when it is installed, runs ``PyOS_AfterFork_Child`` in the child
before exec: every other thread's state is cleared there, which finalises their thread-local objects
(the per-thread SQLite read connections among them), and the ``os.register_at_fork`` hooks run. A lock
another thread held at the fork stays held in the child, which then never execs, while libuv's spawn
waits on the loop for that exec: the server froze this way in CI. Both tests fail on ``"uvloop"``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator

import pytest
import uvicorn

from cli.serve import EVENT_LOOP
from executors.local_process import run_local


def run_on_server_loop(seconds: float) -> tuple[int, bytes, bytes]:
    factory = uvicorn.Config(app=lambda: None, loop=EVENT_LOOP).get_loop_factory()
    assert factory is not None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_local("echo started", timeout=seconds))


class Pipe:
    """What Python code in a forked child says: written to ``fd``, read back by ``said``."""

    def __init__(self) -> None:
        self.read_end, self.fd = os.pipe()
        os.set_blocking(self.read_end, False)

    def said(self) -> bytes:
        try:
            return os.read(self.read_end, 4096)
        except BlockingIOError:  # nothing written
            return b""

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    opened = Pipe()
    yield opened
    opened.close()


class Canary:
    """Says so when it is finalised in another process than the one that made it."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pid = fd, os.getpid()

    def __del__(self) -> None:
        if os.getpid() != self.pid:
            os.write(self.fd, b"finalised in the child")


def test_other_threads_locals_are_not_finalised_in_the_child(pipe: Pipe) -> None:
    local = threading.local()
    ready, done = threading.Event(), threading.Event()

    def holder() -> None:  # like the writer thread and its read connection, alive during the spawn
        local.canary = Canary(pipe.fd)
        ready.set()
        done.wait(30)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        assert run_on_server_loop(30) == (0, b"started\n", b"")
    finally:
        done.set()
        thread.join(10)
    assert pipe.said() == b""


armed: Pipe | None = None  # at-fork hooks cannot be removed: this one speaks only while its test runs


def _after_fork_in_child() -> None:
    if armed is not None:
        os.write(armed.fd, b"at-fork hook ran in the child")


os.register_at_fork(after_in_child=_after_fork_in_child)


def test_at_fork_hooks_do_not_run_in_the_child(pipe: Pipe) -> None:
    global armed
    armed = pipe
    try:
        assert run_on_server_loop(30) == (0, b"started\n", b"")
    finally:
        armed = None
    assert pipe.said() == b""
