"""Replaying the log into views: the live folds (``Views.apply_event``: the writer's ``fold``, then the
read models' ``fold_job``) over every row, nothing else.

There is one fold per read model, used live, at start-up and on replay, so a rebuild, an as-of view
and the writer's views cannot disagree. (A faster replay once folded each job's events apart and
derived the aggregates at the end: a second fold to keep equal, for 10-20 % of CPU time.)
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from ledger.domain.events import decode_event
from projections.views import Views

Row = tuple[int, str, int, bytes, int]  # position, stream, version, payload, recorded_at
REPLAY_COLUMNS = "position, stream, version, payload, recorded_at"


def replay(rows: Iterable[Row]) -> Views:
    """The views after the given event rows (in log order)."""
    with gc_paused():
        views = Views()
        apply = views.apply_event
        for position, stream, version, payload, recorded_at in rows:
            apply(decode_event(payload), position, stream, version, recorded_at)
        views.clear_dirty()
        return views


@contextmanager
def gc_paused() -> Iterator[None]:
    """A bulk fold allocates millions of long-lived objects and no cycles: the cyclic collector would
    rescan the growing heap again and again for nothing. Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
