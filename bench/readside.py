"""The read side at a long queue: what publishing a read snapshot costs per commit, and /livez while as-of runs.

    PYTHONPATH=. python bench/readside.py [--pending 12000] [--commits 300]

Each figure is a ratio against a baseline measured in the same run. Publication (``ViewTables.publish``,
what the store does after each commit so that readers see committed state only) against the commit it
follows: one submit per commit, the smallest batch the writer runs, on a store opened as a server opens
it. ``/livez`` p99 while another process keeps as-of dashboard requests in flight (each at a new
position, so that every one is a replay in the server's as-of children), against ``/livez`` p99 alone,
on a real server over the same ledger; with the p99 of an idle probe, the shared machine's own noise.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import scale_ledgers as built
from scale import MISSED, line, ms, p, serve, started, timings

from ledger.domain.events import Blob, JobSubmitted
from ledger.store.store import Write
from projections.live import open_store


def _submit(n: int) -> Write:
    event = JobSubmitted(
        job_id=f"BENCH{n:021d}",
        user_id="bench",
        competition_id="c",
        project_id="p",
        expected_time_s=60,
        code=Blob(digest="0" * 64, size=1),
    )
    return Write(decide=lambda _views: [event])


def publication_rows(pending: int, scratch: Path, commits: int) -> None:
    """p50 of a one-submit commit (publication included) and of the publication alone, just after it."""
    path = built.working_copy(built.queue_ledger(pending), scratch / "publication")
    store = open_store(path, projection_interval_s=1.0)  # rows every second, as the server writes them
    try:
        commit_s, publish_s = [], []
        for n in range(commits):
            began = time.perf_counter()
            store.execute([_submit(n)])
            commit_s.append(time.perf_counter() - began)
            began = time.perf_counter()
            store.tables.publish(store.views, store.read)
            publish_s.append(time.perf_counter() - began)
        active = len(store.published.active)
    finally:
        store.close()
    commit, publish = statistics.median(commit_s), statistics.median(publish_s)
    line(f"commit of one submit p50 ({active} active, the baseline)", ms(commit))
    line("snapshot publication p50", ms(publish), publish / commit, "<= 0.5 x commit", publish <= 0.5 * commit)
    line("snapshot publication p99", ms(p(publish_s, 99)))


AS_OF_REQUESTS = 40  # as-of dashboards answered while /livez is sampled


def _keep_asking(url: str, token: str, positions: list[int], stop: Any, served: Any) -> None:
    """As-of dashboard requests one after another, each at a position not asked before (the pool caches
    documents and a child its last replays: a repeated position would measure the cache)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as other:
        for position in positions:
            if stop.is_set():
                return
            assert other.get("/api/dashboard", params={"as_of": str(position)}).status_code == 200
            served.value += 1


def idle_probe_p99(count: int = 300) -> float:
    """p99 of how late a 1 ms sleep wakes in this process: the machine's own scheduling noise, no server."""
    late = []
    for _ in range(count):
        began = time.perf_counter()
        time.sleep(0.001)
        late.append(time.perf_counter() - began - 0.001)
    return p(late, 99)


def livez_rows(pending: int, scratch: Path) -> None:
    """/livez p99 alone, then while another process keeps as-of requests in flight, in one run."""
    server = serve(built.queue_ledger(pending), scratch / "livez")
    started(server)
    context = multiprocessing.get_context("fork")
    stop, served = context.Event(), context.Value("i", 0)
    try:
        with server.client(server.admin_token, timeout=120) as client:
            head = client.get("/dashboard/data/ledger").json()["head"]
            client.get("/api/dashboard", params={"as_of": "1"})  # the pool's children start (once)
            idle = idle_probe_p99()
            alone = p(timings(lambda: client.get("/livez"), 300), 99)
            positions = list(range(head // 2, head // 2 - 5000, -7))
            asker = context.Process(target=_keep_asking, args=(server.url, server.admin_token, positions, stop, served))
            asker.start()
            time.sleep(0.3)
            began = time.perf_counter()
            samples: list[float] = []
            while len(samples) < 300 or served.value < AS_OF_REQUESTS:  # a window many replays long
                samples += timings(lambda: client.get("/livez"), 100)
            during = p(samples, 99)
            window, asked = time.perf_counter() - began, served.value
            stop.set()
            asker.join()
    finally:
        server.stop()
    line("idle probe p99 (a 1 ms sleep's lateness)", ms(idle))
    line("/livez p99 alone (the baseline)", ms(alone))
    line("/livez p99 while as-of requests run", ms(during), during / alone, "<= 10 ms", during <= 0.010)
    print(f"    ({asked} as-of dashboards at new positions answered meanwhile; {len(samples)} /livez, {window:.1f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=12_000)
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--skip-server", action="store_true", help="publication figures only")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpuledger-readside-") as directory:
        scratch = Path(directory)
        print(f"queue ledger, {args.pending} pending jobs", flush=True)
        publication_rows(args.pending, scratch, args.commits)
        if not args.skip_server:
            livez_rows(args.pending, scratch)
    print(f"total {time.perf_counter() - began:.0f} s; {len(MISSED)} goals missed")
    for missed in MISSED:
        print(f"  missed: {missed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
