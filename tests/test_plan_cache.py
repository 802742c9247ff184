"""The background plan: swapped in whole, and still made after a plan that failed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ledger.domain.events import NodeRegistered
from projections import plan as plans
from projections.live import open_ledger
from projections.plan import PlanCache


async def test_a_failed_plan_does_not_end_planning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first plan raises (say, a collection the writer changed under it): the next one is made."""
    ledger = open_ledger(tmp_path / "ledger.db")
    await ledger.start()
    await ledger.append("node-n", 0, [NodeRegistered(name="n", host="h")])
    real, calls = plans.make_plan, []

    def flaky(*args: object, **kwargs: object) -> plans.Plan:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Set changed size during iteration")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(plans, "make_plan", flaky)
    cache = PlanCache(min_interval_s=0.01)
    task = asyncio.create_task(cache.run(ledger))
    try:
        async with asyncio.timeout(10):
            while cache.position < ledger.head:
                await asyncio.sleep(0.01)
        assert len(calls) >= 2
        assert "n" in cache.get(ledger.views, 0).nodes
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ledger.close()
