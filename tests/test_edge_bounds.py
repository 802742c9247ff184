"""The edge's bookkeeping on its own: failed authentications, connection caps, the sampled log line."""

from __future__ import annotations

import logging
import resource
import subprocess
import sys
from pathlib import Path

from api.connections import FD_RESERVE_MIN, ConnectionBook, accept_backlog, connection_cap
from api.guessing import KNOWN_GRACE, FailedAuthentications
from api.logsetup import SampledAcceptErrors

REPO = Path(__file__).resolve().parent.parent


def test_failed_authentications_block_for_the_window_and_bound_known_tokens() -> None:
    """After the limit, unknown tokens wait until the window ends; known ones too after the grace."""
    book = FailedAuthentications(limit=3, window_s=60)
    book.succeeded("a", "known", now=0)
    for t in range(3):
        assert book.admit("a", "guess", now=t) is None
        book.failed("a", "guess", now=t)
    assert book.admit("a", "guess", now=10) == 50
    assert book.admit("b", "guess", now=10) is None  # another address is untouched
    for _ in range(KNOWN_GRACE * 3 - 1):
        assert book.admit("a", "known", now=10) is None
        book.admit("a", "guess", now=10)
    assert book.admit("a", "known", now=10) == 50  # the grace is spent: known tokens wait too
    assert book.admit("a", "guess", now=60.5) is None  # the oldest failure left the window


def test_the_connection_cap_stays_below_the_descriptor_limit() -> None:
    """The total cap leaves a quarter of RLIMIT_NOFILE (at least 64) free; per-address caps hold."""
    assert connection_cap(0, 1024) == 768
    assert connection_cap(0, 200) == 200 - FD_RESERVE_MIN
    assert connection_cap(100, 1024) == 100
    assert connection_cap(5000, 1024) == 768
    assert accept_backlog(768, 1024) == 64  # a burst accepted in one loop turn fits in the reserve
    assert accept_backlog(49_152, 65_536) == 2048
    book = ConnectionBook(total=3, per_address=2, trusted_proxies=["10.0.0.1"])
    assert [book.admit("1.2.3.4") for _ in range(3)] == [True, True, False]
    assert book.admit("10.0.0.1") is True
    assert book.admit("10.0.0.1") is False  # the total
    book.release("1.2.3.4")
    assert book.admit("10.0.0.1") is True  # a trusted proxy has no per-address cap


def test_the_accept_error_line_is_sampled() -> None:
    """asyncio's accept() error passes once per interval, then says how many were left out."""
    sampled = SampledAcceptErrors(interval_s=3600)

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    line = "socket.accept() out of system resource\nsocket: <x>"
    assert [sampled.filter(record(line)) for _ in range(1000)] == [True] + [False] * 999
    assert sampled.filter(record("something else")) is True
    sampled.last -= 3600
    again = record(line)
    assert sampled.filter(again) is True
    assert "999 more" in again.getMessage()


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    """``serve`` starts with the soft RLIMIT_NOFILE raised to the hard one, so the cap follows the hard one."""
    code = "from api.connections import raise_descriptor_limit; print(raise_descriptor_limit())"

    def soft_below_hard() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))

    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        preexec_fn=soft_below_hard,
        timeout=60,
    )
    assert done.stdout.strip() == "(1024, 1024)"
