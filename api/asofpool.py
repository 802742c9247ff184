"""As-of documents rendered in a small pool of child processes and handed back as JSON bytes.

A replay is Python holding the GIL for as long as it folds (tens to hundreds of ms at scale): in a
thread it stalls the event loop, and a child that returned the replayed ``Views`` would stall it again
while the parent unpickled them. So a child replays (``projections.asof``, the one fold), builds the
same Struct document the live path builds, and returns ``msgspec.json.encode``'s bytes; the parent only
writes bytes to the socket. Children start lazily (forkserver), keep their last replays (a past point
never changes, and every panel asks for the same one when the slider moves), and stop with the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import msgspec
import structlog
from litestar import Response
from litestar.datastructures import State

from api.errors import ServiceUnavailable
from ledger.domain.shares import Weights
from projections.asof import planned_as_of_sync
from projections.plan import Plan
from projections.views import Views

log = structlog.get_logger()
T = TypeVar("T")
REPLAYS_KEPT = 2  # per child: the point the slider shows and the one before
DOCUMENTS_KEPT = 32  # in the parent: a page load asks for about ten documents of one point
TIMEOUT_S = 120.0  # far above any replay measured (0.3 s at 12 k pending): a stuck child is a 503, not a hang
CHILD_NICENESS = 10
Build = Callable[..., msgspec.Struct]


@dataclass(frozen=True)
class Past:
    """A point to replay to: a ledger position or an instant (or both: the earlier), with the queue
    score's weights; what a child's replay cache is keyed by."""

    path: str
    position: int | None
    time_us: int | None
    weights: Weights | None = None


_replays: OrderedDict[Past, tuple[Views, int, Plan]] = OrderedDict()  # a child's own, never the parent's


def _replayed(past: Past) -> tuple[Views, int, Plan]:
    found = _replays.get(past)
    if found is None:
        found = planned_as_of_sync(past.path, position=past.position, time_us=past.time_us, weights=past.weights)
        _replays[past] = found
        while len(_replays) > REPLAYS_KEPT:
            _replays.popitem(last=False)
    _replays.move_to_end(past)
    return found


def _yield_the_cpu() -> None:
    """A child's replay is background work: where cores are short, the server's event loop goes first."""
    os.nice(CHILD_NICENESS)


def render(build: Build, past: Past, args: tuple[Any, ...]) -> bytes:
    """In a child: ``build(views, now, plan, *args)`` at ``past``, encoded as the live path encodes it."""
    views, now, plan = _replayed(past)
    return msgspec.json.encode(build(views, now, plan, *args))


def _broken(future: concurrent.futures.Future[bytes]) -> bool:
    return not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)


def as_document(data: bytes, kind: type[T]) -> T:
    """Encoded bytes answered as they are. Handlers keep their Struct return type so that the OpenAPI
    document describes the document field by field; Litestar sends a returned ``Response`` unchanged."""
    del kind  # names the document for the reader; the bytes are already that document
    return cast(T, Response(content=data, media_type="application/json"))


class AsOfPool:
    """The children, started on first use; one render per document in flight, the last few kept."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._done: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._running: dict[tuple[Any, ...], asyncio.Future[bytes]] = {}
        self._lock = threading.Lock()  # submits run in threads: one pool made, one dropped

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")  # never fork the server's threads and sockets
        context.set_forkserver_preload([__name__, "api.pastdocs", "api.web.asof"])
        return concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context, initializer=_yield_the_cpu)

    async def document(self, build: Build, past: Past, *args: Any) -> bytes:
        """``build``'s document at ``past``, as JSON bytes; a dead or stuck child is a 503."""
        key = (build.__module__, build.__qualname__, past, args)
        data = self._done.get(key)
        if data is not None:
            self._done.move_to_end(key)
            return data
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(self._render(build, past, args))
            self._running[key] = running
            running.add_done_callback(lambda task: self._settle(key, task))
        return await asyncio.shield(running)

    def _submit(self, build: Build, past: Past, args: tuple[Any, ...]) -> concurrent.futures.Future[bytes]:
        """In a thread: the first submit starts the resource tracker, the forkserver (its imports) and a
        child, each a fork and a wait; the loop does none of it. A pool that cannot start is dropped."""
        with self._lock:
            pool = self._executor = self._executor or self._new_pool()
        try:
            future = pool.submit(render, build, past, args)
        except BaseException:
            self._drop(pool)
            raise
        future.add_done_callback(lambda done: self._forget(pool) if _broken(done) else None)  # it ends itself
        return future

    async def _render(self, build: Build, past: Past, args: tuple[Any, ...]) -> bytes:
        try:
            future = await asyncio.to_thread(self._submit, build, past, args)
            return await asyncio.wait_for(asyncio.wrap_future(future), TIMEOUT_S)
        except BrokenProcessPool:
            log.warning("asof.child_died", position=past.position)
            raise ServiceUnavailable("The as-of replay's process died; try again") from None
        except TimeoutError:
            log.warning("asof.timeout", position=past.position, timeout_s=TIMEOUT_S)
            self._drop(self._executor)
            raise ServiceUnavailable(f"The as-of replay took over {TIMEOUT_S:.0f} s; try again") from None
        except OSError as e:  # (TimeoutError is one: caught above) mostly no process could start: a pids limit
            log.warning("asof.no_child", error=str(e))
            raise ServiceUnavailable(f"The as-of replay could not run ({e.strerror or e}); try again") from None

    def _settle(self, key: tuple[Any, ...], task: asyncio.Future[bytes]) -> None:
        self._running.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            self._done[key] = task.result()
            while len(self._done) > DOCUMENTS_KEPT:
                self._done.popitem(last=False)

    def _forget(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        """The next request makes a new pool."""
        with self._lock:
            if self._executor is pool:
                self._executor = None

    def _drop(self, pool: concurrent.futures.ProcessPoolExecutor | None) -> None:
        """A stuck pool, or one that could not start, is forgotten and its children are stopped."""
        if pool is None:
            return
        self._forget(pool)
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()  # a stuck child never returns to read its stop message
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            pool, self._executor = self._executor, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def asof_pool(state: State) -> AsOfPool:
    """The app's pool (``create_app`` puts one in its state; its children start on first use). Handlers
    take the app's ``state`` rather than a dependency: a provider would add a level that Litestar resolves
    concurrently with the others (``tests/test_api_routes.py``)."""
    pool: AsOfPool = state.asof_pool
    return pool


def close_asof_pool(state: State) -> None:
    """At shutdown: stops the children, if any started."""
    asof_pool(state).close()
