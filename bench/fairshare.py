"""Fair share under contention: do two users get GPU time in proportion to their shares?

A simulation at the fold and dispatch level with a fake clock: the real ``Views`` fold (usage charged
as attempts end), the real score and the dispatcher's own walk (``executors.dispatcher.dispatch_order``
and ``place``) on one node of two GPU slots. Users ``a`` (share 2) and ``b`` (share 1) each keep
``--backlog`` short jobs queued (a new one replaces each job that starts), every job runs a random
30 to 90 s. The measured ratio of GPU time a/b is printed against the ratio of shares (target:
within 10 %); the baseline, measured in the same run, is the old first-come order, which ignores
shares and splits the time about evenly.

    python bench/fairshare.py [--jobs 4000] [--backlog 5] [--seed 1] [--half-life SECONDS]
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections.abc import Callable

from executors.dispatcher import dispatch_order, place
from ledger.domain.events import (
    AnyEvent,
    Blob,
    HalfLifeSet,
    JobDispatched,
    JobFinished,
    JobQueued,
    JobStarted,
    JobSubmitted,
    NodeRegistered,
    NodeUp,
    UserPolicySet,
    stream_of,
)
from ledger.domain.jobs import JobState
from ledger.domain.shares import Weights
from ledger.store.commands import busy_slots
from projections.views import Views

S = 1_000_000
T0 = 1_800_000_000 * S
SHARES = {"a": 2.0, "b": 1.0}
TOLERANCE = 0.10
Order = Callable[[Views, int], list[JobState]]


class Cluster:
    """The views of a ledger written by the simulation, one event at a time, at the fake clock."""

    def __init__(self) -> None:
        self.views = Views()
        self.position = 0
        self.versions: dict[str, int] = {}
        self.jobs = 0

    def add(self, event: AnyEvent, at: int) -> None:
        stream = stream_of(event)
        self.versions[stream] = self.versions.get(stream, 0) + 1
        self.position += 1
        self.views.apply_event(event, self.position, stream, self.versions[stream], at)

    def submit(self, user: str, at: int) -> None:
        self.jobs += 1
        job_id = f"{user}-{self.jobs:06d}"
        code = Blob(digest="0" * 64, size=1)
        submitted = JobSubmitted(
            job_id=job_id, user_id=user, competition_id="c", project_id="p", expected_time_s=60, code=code
        )
        self.add(submitted, at)
        self.add(JobQueued(job_id=job_id), at)


def simulate(order: Order, *, jobs: int, backlog: int, seed: int, half_life_s: float) -> tuple[dict[str, float], float]:
    """GPU-seconds per user after ``jobs`` dispatches, and the mean seconds of one dispatch decision."""
    rng = random.Random(seed)
    cluster, clock = Cluster(), T0
    cluster.add(HalfLifeSet(half_life_s=half_life_s), clock)
    cluster.add(NodeRegistered(name="n", host="h", slots=2, kind="local"), clock)
    cluster.add(NodeUp(name="n"), clock)
    for user, share in SHARES.items():
        cluster.add(UserPolicySet(user_id=user, share=share, by="bench"), clock)
        for _ in range(backlog):
            cluster.submit(user, clock)
    ends: list[tuple[int, str]] = []
    used = dict.fromkeys(SHARES, 0.0)
    dispatched, spent = 0, 0.0
    while dispatched < jobs:
        while True:
            free = [slot for slot in range(2) if slot not in busy_slots(cluster.views, "n")]
            began = time.perf_counter()
            placed = place(order(cluster.views, clock), {"n": free}, {"n": 2}) if free else None
            spent += time.perf_counter() - began
            if placed is None:
                break
            job, _, slots = placed
            cluster.add(JobDispatched(job_id=job.job_id, node="n", slot=slots[0]), clock)
            cluster.add(JobStarted(job_id=job.job_id, node="n"), clock)
            seconds = rng.uniform(30, 90)
            heapq.heappush(ends, (clock + int(seconds * S), job.job_id))
            used[job.user_id] += seconds
            cluster.submit(job.user_id, clock)  # the user's backlog stays full
            dispatched += 1
        clock, job_id = heapq.heappop(ends)
        cluster.add(JobFinished(job_id=job_id, status="completed", reason="exit_zero", attempt=1), clock)
    return used, spent / max(dispatched, 1)


def fair(views: Views, now: int) -> list[JobState]:
    return dispatch_order(views, now, Weights())


def first_come(views: Views, now: int) -> list[JobState]:
    """The order before fair share: submit position only."""
    return sorted((views.jobs[j] for j in views.queued), key=lambda job: job.position)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--backlog", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--half-life", type=float, default=7 * 86_400.0, help="usage half-life, seconds")
    args = parser.parse_args()
    target = SHARES["a"] / SHARES["b"]
    results = {}
    for name, order in (("first come (baseline)", first_come), ("fair share", fair)):
        used, decision_s = simulate(
            order, jobs=args.jobs, backlog=args.backlog, seed=args.seed, half_life_s=args.half_life
        )
        ratio = used["a"] / used["b"]
        results[name] = ratio
        hours = {u: round(v / 3600, 1) for u, v in used.items()}
        print(
            f"{name:<22} GPU hours a={hours['a']} b={hours['b']}  a/b = {ratio:.3f}  "
            f"(shares {target:.1f}; {ratio / target:.3f} of it)  decision {decision_s * 1e6:.0f} us"
        )
    measured = results["fair share"]
    within = abs(measured / target - 1) <= TOLERANCE
    verdict = "within" if within else "OUTSIDE"
    print(f"fair share: GPU time ratio {measured:.3f} vs share ratio {target:.3f}: {verdict} 10 %")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
