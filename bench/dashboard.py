"""Dashboard benchmark: first paint and each panel's data request, in chromium, against a static page.

    PYTHONPATH=. python3 bench/dashboard.py [--jobs 100000] [--repeats 15]

Builds a ledger of ``--jobs`` finished jobs straight through the store (as bench/appends.py does),
starts the real server on it, and measures in the browser: the static baseline page of the same app
(``/dashboard/baseline``) against the dashboard's first meaningful paint (nodes and jobs drawn), each
panel's data request against fetching the static page, and the slider (``as_of``) cold and cached.
Prints ratios; the goal is each panel <= 10x the static page.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.appends import event_stream  # noqa: E402  (the repository root is on the path now)
from ledger.domain.clock import now_us  # noqa: E402
from ledger.domain.events import JobFinished, stream_of  # noqa: E402
from ledger.store import store as ledger_store  # noqa: E402
from ledger.store.store import Write  # noqa: E402
from projections.live import open_store  # noqa: E402
from tests.browser import CHROMIUM, sign_in  # noqa: E402
from tests.server import Server  # noqa: E402

PANELS = ["nodes", "queue", "jobs", "lanes", "utilisation", "usage"]
GOAL = 10.0


class History:
    """A clock for the store that spreads the bulk-written events evenly over the past ``days``
    (as a real ledger's are), ending now: a one-hour window then holds an hour of jobs, not all of them."""

    def __init__(self, days: float, events: int) -> None:
        self.step = int(days * 86_400e6 / events)
        self.at = now_us() - self.step * events

    def __call__(self) -> int:
        self.at += self.step
        return self.at


def build_ledger(path: Path, jobs: int, days: float) -> int:
    """``jobs`` finished jobs (and the bench's nodes) written through EventStore.execute; returns the head."""
    ledger_store.now_us = History(days, events=jobs * 6)  # type: ignore[assignment]
    store = open_store(path, projection_interval_s=1.0)
    events = event_stream("d")
    finished = 0
    while finished < jobs:
        chunk = list(itertools.islice(events, 5000))
        by_stream: dict[str, list[object]] = {}
        for event in chunk:
            by_stream.setdefault(stream_of(event), []).append(event)
            finished += isinstance(event, JobFinished)
        store.execute([Write(decide=lambda _views, e=evs: e) for evs in by_stream.values()])  # type: ignore[misc]
    store.execute([], write_projections=True)
    head = store.head
    store.close()
    ledger_store.now_us = now_us
    return head


FETCH = """async ([url, token, n]) => {
  const times = [];
  for (let i = 0; i < n; i++) {
    const began = performance.now();
    const answer = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    await answer.text();
    times.push(performance.now() - began);
  }
  return times;
}"""


def fetch_ms(page: Page, url: str, token: str | None, repeats: int) -> float:
    return statistics.median(page.evaluate(FETCH, [url, token, repeats]))


def paint_ms(page: Page, url: str, ready: str, repeats: int) -> float:
    """Median time from navigation start until ``ready`` (a JS condition) holds, checked every frame."""
    times = []
    for _ in range(repeats):
        page.goto(url)
        page.wait_for_function(ready, polling="raf", timeout=60_000)
        times.append(page.evaluate("performance.now()"))
    return statistics.median(times)


def measure(page: Page, server: Server, head: int, repeats: int) -> None:
    token = server.admin_token or ""
    base = server.url
    static_paint = paint_ms(page, f"{base}/dashboard/baseline", "() => document.getElementById('ready')", repeats)
    sign_in(page, base, token)
    ready = "() => document.querySelector('#panel-jobs tr[data-job]') && document.querySelector('tr[data-node]')"
    page_paint = paint_ms(page, f"{base}/dashboard", ready, max(3, repeats // 3))
    print(f"static page paint: {static_paint:.1f} ms; dashboard first meaningful paint: {page_paint:.1f} ms")
    print(f"first meaningful paint / static page: {page_paint / static_paint:.1f}")
    static = fetch_ms(page, f"{base}/dashboard/baseline", None, repeats)
    print(f"static page fetch: {static:.2f} ms")
    for name in PANELS:
        took = fetch_ms(page, f"{base}/dashboard/data/{name}", token, repeats)
        print(f"{name} panel data / static page (goal <= {GOAL:.0f}): {took / static:.1f}  ({took:.1f} ms)")
    for window in (86_400, 7 * 86_400):
        took = fetch_ms(page, f"{base}/dashboard/data/usage?window={window}", token, repeats)
        print(f"usage panel over {window // 86_400} day(s) / static page: {took / static:.1f}  ({took:.1f} ms)")
    filtered = fetch_ms(page, f"{base}/dashboard/data/jobs?competition=none&status=failed", token, repeats)
    print(f"jobs panel, filter matching nothing / static page: {filtered / static:.1f}  ({filtered:.1f} ms)")
    middle = head // 2
    began = time.perf_counter()
    cold = fetch_ms(page, f"{base}/dashboard/data/nodes?as_of={middle}", token, 1)
    warm = fetch_ms(page, f"{base}/dashboard/data/nodes?as_of={middle}", token, repeats)
    print(f"slider to position {middle} of {head}: first answer {cold:.0f} ms (a replay), then {warm:.1f} ms")
    print(f"slider cached answer / static page: {warm / static:.1f}  (wall {time.perf_counter() - began:.1f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--days", type=float, default=30.0, help="the span of time the jobs are spread over")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    began = time.perf_counter()
    head = build_ledger(root / "gpuledger.db", args.jobs, args.days)
    print(
        f"ledger: {args.jobs} finished jobs over {args.days:g} days, {head} events,"
        f" built in {time.perf_counter() - began:.1f} s"
    )
    server = Server(root, code_scanner_quick_mode=True)
    server.start()
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            measure(page, server, head, args.repeats)
            browser.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
