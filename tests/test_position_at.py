"""One position-at-instant: the as-of replay, the web panels' slider and the jobs table's since/until agree."""

from __future__ import annotations

import time
from pathlib import Path

from api.web.deps import position_of
from ledger.domain.events import AnyEvent, Blob, JobSubmitted
from ledger.store.schema import connect
from ledger.store.store import Write
from projections import job_search
from projections.asof import hot_views_as_of_sync
from projections.live import open_store


def submitted(job_id: str) -> JobSubmitted:
    code = Blob(digest="0" * 64, size=1)
    return JobSubmitted(job_id=job_id, user_id="u", competition_id="c", project_id="p", expected_time_s=60, code=code)


def ledger_with_ties(path: Path) -> list[tuple[int, int]]:
    """Five jobs submitted in four commits (two share one instant): each position and its time."""
    store = open_store(path)
    try:
        for batch in (["a"], ["b", "c"], ["d"], ["e"]):
            events: list[AnyEvent] = [submitted(job_id) for job_id in batch]
            store.execute([Write(decide=lambda _views, e=events: e, actor="test")], write_projections=True)
            time.sleep(0.003)
        return [(int(p), int(r)) for p, r in store.conn.execute("SELECT position, recorded_at FROM events")]
    finally:
        store.close()


async def test_every_reader_finds_the_same_position_at_an_instant(tmp_path: Path) -> None:
    """Before, at, between and after each commit: the last position recorded at or before the instant
    is the same through the web panels, the dashboard's as-of views and the jobs table's filters."""
    db = tmp_path / "l.db"
    rows = ledger_with_ties(db)
    assert len({at for _, at in rows}) == 4
    instants = sorted({at + step for _, at in rows for step in (-1, 0, 1)})
    conn = connect(db, readonly=True)
    try:
        for instant in instants:
            expected = max((p for p, at in rows if at <= instant), default=0)
            assert position_of(str(db), instant) == expected, instant
            assert hot_views_as_of_sync(db, position=None, time_us=instant).position == expected, instant
            since = job_search.JobFilter(since_us=instant)
            until = job_search.JobFilter(until_us=instant)
            assert job_search.count(conn, since) == sum(1 for _, at in rows if at >= instant), instant
            assert job_search.count(conn, until) == sum(1 for _, at in rows if at < instant), instant
    finally:
        conn.close()
