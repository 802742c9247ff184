"""The views as they stood at a past ledger position, folded off the event loop and shared.

Each is the nearest snapshot plus the tail of the log up to the position (at most ``snapshot_every``
events), with the jobs finished by the snapshot read from ``proj_jobs`` on demand, built in a worker
thread on its own APSW connection (the server keeps answering meanwhile). Every panel of the page
asks for the same position at once when the slider moves: one build serves them all, and the last
few stay cached (a past position never changes).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from ledger.store.schema import connect
from projections.asof import hot_views_as_of_sync
from projections.snapshots import position_at
from projections.views import Views

CACHED = 4


def _replay(path: str, position: int) -> Views:
    return hot_views_as_of_sync(path, position=position, time_us=None)


def _position_at(path: str, time_us: int) -> int:
    conn = connect(path, readonly=True)
    try:
        return position_at(conn, time_us)
    finally:
        conn.close()


class PastViews:
    """Past views by ledger position: at most one build per position in flight, a few kept."""

    def __init__(self, database_path: str) -> None:
        self.path = database_path
        self._done: OrderedDict[int, Views] = OrderedDict()
        self._running: dict[int, asyncio.Task[Views]] = {}

    async def position_at(self, time_us: int) -> int:
        return await asyncio.to_thread(_position_at, self.path, time_us)

    async def at(self, position: int) -> Views:
        views = self._done.get(position)
        if views is not None:
            self._done.move_to_end(position)
            return views
        task = self._running.get(position)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(_replay, self.path, position))
            self._running[position] = task
            task.add_done_callback(lambda _: self._settle(position, task))
        return await asyncio.shield(task)

    def _settle(self, position: int, task: asyncio.Task[Views]) -> None:
        self._running.pop(position, None)
        if not task.cancelled() and task.exception() is None:
            self._done[position] = task.result()
            while len(self._done) > CACHED:
                self._done.popitem(last=False)
