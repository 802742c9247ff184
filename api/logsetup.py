"""structlog, configured once: JSON lines to the log file, pretty lines on a terminal.

Context (request id, job id, user, node) travels in contextvars; tokens never reach a log line.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import structlog

_SECRET_KEYS = {"token", "secret", "authorization", "password", "api_key"}


def _drop_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "***"
    return event


class QuietRetries(logging.Filter):
    """Drops noise that is not news: SQLite's SQLITE_SCHEMA notice (it re-prepares the statement by
    itself after another connection changed the schema, e.g. migrations at start) and asyncssh's own
    per-attempt lines (the SSH runner logs one line per connection state change instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("asyncssh") and record.levelno < logging.WARNING:
            return False
        return "SQLITE_SCHEMA" not in record.getMessage()


class SampledAcceptErrors(logging.Filter):
    """asyncio's "accept() out of system resource" at most once per ``interval_s``, saying how many
    were left out: out of descriptors, asyncio logs it once per queued connection per loop turn (it
    once wrote 83 MB in 30 s)."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.last = -interval_s
        self.left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.MESSAGE):
            return True
        now = time.monotonic()
        if now - self.last < self.interval_s:
            self.left_out += 1
            return False
        if self.left_out:
            record.msg = f"{record.msg}\n({self.left_out} more since the last such line, left out)"
        self.last, self.left_out = now, 0
        return True


def configure_logging(log_file: str | None, *, console: bool | None = None, level: int = logging.INFO) -> None:
    """JSON to ``log_file`` (if given) and to stderr as pretty text on a terminal (JSON otherwise)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    handlers: list[logging.Handler] = []
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer(), foreign_pre_chain=shared)
        )
        handlers.append(file_handler)
    pretty = sys.stderr.isatty() if console is None else console
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer(),
            foreign_pre_chain=shared,
        )
    )
    handlers.append(stream)
    for handler in handlers:
        handler.addFilter(QuietRetries())
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.filters = [f for f in asyncio_log.filters if not isinstance(f, SampledAcceptErrors)]
    asyncio_log.addFilter(SampledAcceptErrors())
    root = logging.getLogger()
    root.handlers = handlers
    root.setLevel(level)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
