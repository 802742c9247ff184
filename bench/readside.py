"""The read side at a long queue: what publishing a read snapshot costs per commit, and /livez while as-of runs.

    PYTHONPATH=. python bench/readside.py [--pending 12000] [--commits 300]

Each figure is a ratio against a baseline measured in the same run. Publication (``Views.frozen_copy``,
what the store does after each commit so that readers see committed state only) against the commit it
follows: one submit per commit, the smallest batch the writer runs, on a store opened as a server opens
it. ``/livez`` p99 while another process keeps an as-of dashboard request in flight, against ``/livez``
p99 alone (``bench/scale.py``'s ``livez_during``), on a real server over the same ledger.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import scale_ledgers as built
from scale import MISSED, line, livez_during, ms, p, serve, started

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
            store.views.frozen_copy()
            publish_s.append(time.perf_counter() - began)
        active = len(store.published.active)
    finally:
        store.close()
    commit, publish = statistics.median(commit_s), statistics.median(publish_s)
    line(f"commit of one submit p50 ({active} active, the baseline)", ms(commit))
    line("snapshot publication p50", ms(publish), publish / commit, "<= 0.5 x commit", publish <= 0.5 * commit)
    line("snapshot publication p99", ms(p(publish_s, 99)))


def livez_rows(pending: int, scratch: Path) -> None:
    server = serve(built.queue_ledger(pending), scratch / "livez")
    started(server)
    try:
        with server.client(server.admin_token, timeout=120) as client:
            middle = str(client.get("/dashboard/data/ledger").json()["head"] // 2)
            alone, during = livez_during(client, server, middle)
    finally:
        server.stop()
    line("/livez p99 alone (the baseline)", ms(alone))
    line("/livez p99 while as-of requests run", ms(during), during / alone, "<= 10 ms", during <= 0.010)


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
