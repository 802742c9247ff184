"""When tokens were last used: noted in memory per request, flushed to ``token_usage`` every few seconds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import apsw
import structlog

from ledger.domain.clock import now_us
from ledger.domain.errors import StoreError
from ledger.store.schema import connect

log = structlog.get_logger()


class TokenUsage:
    def __init__(self, path: str | Path, interval_s: float = 5.0) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self._pending: dict[str, int] = {}

    def touch(self, token_id: str) -> None:
        self._pending[token_id] = now_us()

    async def run(self) -> None:
        """Flush periodically, off the event loop (the write may wait for the ledger's write lock)."""
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await asyncio.to_thread(self._write, batch)
        except (apsw.Error, StoreError) as e:  # a full disk: kept for the next flush, the flushing goes on
            for token_id, used in batch.items():
                self._pending[token_id] = max(used, self._pending.get(token_id, 0))
            log.warning("token_usage.flush_failed", error=str(e))

    def _write(self, batch: dict[str, int]) -> None:
        conn = connect(self.path)
        try:
            with conn:
                conn.executemany(
                    "INSERT INTO token_usage (token_id, last_used) VALUES (?, ?) ON CONFLICT (token_id)"
                    " DO UPDATE SET last_used = max(last_used, excluded.last_used)",
                    batch.items(),
                )
        finally:
            conn.close()


def last_used(conn: apsw.Connection) -> dict[str, int]:
    return {row[0]: row[1] for row in conn.execute("SELECT token_id, last_used FROM token_usage")}
