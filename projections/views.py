"""The live read models: one fold over the whole log into jobs, users, nodes and tokens.

``Views.apply`` is the only way state changes; it is what the writer runs after each append, what
catch-up runs for events appended by other processes, and what a rebuild from position 0 runs.

The writer's ``Views`` is its own: decide steps read it inside the write transaction. Readers (the
event loop, worker threads) get a ``ReadSnapshot``, a ``frozen_copy`` the store publishes after each
commit: no reader sees an event whose commit failed, and nothing a reader holds changes under it.
The fold makes that cheap by never changing in place a value a snapshot may share (tallies, user
stats and per-node lists are replaced, not mutated), so a publication copies containers, not values.
"""

from __future__ import annotations

import bisect
import copy
import itertools
from collections.abc import Container, Iterable

from ledger.domain.arrays import ArrayProgress, is_held, track_task
from ledger.domain.events import (
    AnyEvent,
    ArrayEvent,
    HalfLifeSet,
    JobEvent,
    JobPruned,
    JobSubmitted,
    NodeEvent,
    Recorded,
    TokenEvent,
    UserPolicySet,
)
from ledger.domain.jobs import TERMINAL, JobState, evolve_job
from ledger.domain.nodes import NodeState, evolve_node
from ledger.domain.quotas import CHARGED, Charge, apply_charge, charges_of
from ledger.domain.shares import DEFAULT_HALF_LIFE_S, UserShare, Weights, evolve_policy, rebased
from ledger.domain.tokens import TokenState, evolve_token
from ledger.domain.users import COUNTED, UserStats, count_status, note_submit
from projections.fairshare import Ranked, attempt_end, charge_attempt, rank
from projections.job_table import JobTable
from projections.tallies import DAY_MINUTES as DAY_MINUTES  # re-exported: the tallies were defined here
from projections.tallies import MINUTE_US as MINUTE_US
from projections.tallies import Minute, day_tally, hours_of, tally_finish

ON_NODE = frozenset({"dispatched", "running", "cancelling"})  # phases in which a job holds a node slot


def dispatch_order(job: JobState) -> tuple[int, int]:
    """A node's jobs in the order they were dispatched there (rows written before the field: by time)."""
    return (job.dispatch_position or job.dispatched_at or 0, job.position)


class Views:
    """All read models at one ledger position."""

    def __init__(self) -> None:
        self.position = 0
        self.recorded_at = 0
        self.jobs = JobTable()  # the unfinished and recently finished in memory, the rest in proj_jobs
        self.users: dict[str, UserStats] = {}
        self.nodes: dict[str, NodeState] = {}
        self.tokens: dict[str, TokenState] = {}
        self.tokens_by_secret: dict[str, str] = {}
        self.node_jobs: dict[str, list[str]] = {}  # jobs dispatched to a node and not yet ended
        self.queued: dict[str, None] = {}  # insertion-ordered set of queued job ids
        self.active: dict[str, None] = {}  # every job not yet terminal, in submit order
        # pending jobs outside the queue (scanning, to be queued, dispatched but not started): a few
        self.unqueued: dict[str, None] = {}
        # arrays with tasks not yet ended: derived from their tasks alone (``index_job``), so every way
        # of loading the views (tables, snapshot, replay) rebuilds it from the active jobs
        self.arrays: dict[str, ArrayProgress] = {}
        self.stream_versions: dict[str, int] = {}  # streams in memory; a finished job's is its row's version
        self.minutes: dict[int, Minute] = {}  # finished-job tallies by minute of completed_at
        self.hours: dict[int, Minute] = {}  # the same by hour: a day's sum reads 24 of these, not 1,440 minutes
        # user rankings for the bounded dashboard: insertion-ordered, the most recent submitter last
        self.user_order: dict[str, None] = {}  # every user (with a known submit) by their newest submit
        self.active_users: dict[str, None] = {}  # users with pending or running jobs, same order
        self.job_counts = UserStats(user_id="")  # every job by status: the users' counts summed
        self.dirty_jobs: set[str] = set()
        self.dirty_users: set[str] = set()
        self.dirty_nodes: set[str] = set()
        self.dirty_tokens: set[str] = set()
        # The fair-share fold: each user's account (policy and decayed usage), and the decay's half-life.
        self.shares: dict[str, UserShare] = {}
        self.half_life_s = DEFAULT_HALF_LIFE_S
        self.dirty_shares: set[str] = set()
        self._own_users: set[str] = set()  # users whose stats object no snapshot shares: changed in place
        self._own_counts = False  # the same for ``job_counts``

    def apply_all(self, records: Iterable[Recorded]) -> None:
        for record in records:
            self.apply(record)

    def apply(self, rec: Recorded) -> None:
        self.apply_event(rec.event, rec.position, rec.stream, rec.version, rec.recorded_at)

    def apply_event(self, event: AnyEvent, position: int, stream: str, version: int, recorded_at: int) -> None:
        """Fold one stored event (``apply`` without building a ``Recorded``: the rebuild's hot path)."""
        self.position = position
        self.recorded_at = recorded_at
        self.stream_versions[stream] = version
        match event:
            case JobEvent():
                self._apply_job(event, position, recorded_at)
            case NodeEvent():
                name = event.name
                self.nodes[name] = evolve_node(self.nodes.get(name), event)
                self.node_jobs.setdefault(name, [])
                self.dirty_nodes.add(name)
            case TokenEvent():
                token = evolve_token(self.tokens.get(event.token_id), event, at=recorded_at)
                self.tokens[token.token_id] = token
                self.tokens_by_secret[token.secret_sha256] = token.token_id
                self.dirty_tokens.add(token.token_id)
            case UserPolicySet():
                self.shares[event.user_id] = evolve_policy(self.shares.get(event.user_id), event)
                self.dirty_shares.add(event.user_id)
            case HalfLifeSet():
                self.set_half_life(event.half_life_s, recorded_at)
            case ArrayEvent():
                pass  # the array's state is its tasks' (``index_job``); its event names the whole
            case _:
                raise AssertionError(f"no view folds {type(event).__name__}")

    def _apply_job(self, event: JobEvent, position: int, recorded_at: int) -> None:
        job_id = event.job_id
        before = self.jobs.resident(job_id)  # never a row: at start-up rows may be ahead of the fold
        if before is None and type(event) is JobPruned:  # the one event of a finished job: maybe in its row only
            before = self.jobs.get(job_id)
        after = evolve_job(before, event, position=position, at=recorded_at)
        self.jobs.put(after)
        self.dirty_jobs.add(job_id)
        self.index_job(before, after)
        run = attempt_end(before, after)
        if run is not None:
            charge_attempt(self.shares, after.user_id, run, recorded_at, self.half_life_s)
            self.dirty_shares.add(after.user_id)
        if before is None:  # an array is one submission for the rate limit: its first task counts
            first = type(event) is not JobSubmitted or not event.array_task
            self._count_user(after.user_id, None, after.status, recorded_at if first else None)
        elif before.status != after.status:
            self._count_user(after.user_id, before.status, after.status, None)
        if type(event) in CHARGED:  # most events cost nothing: the fold's hot path skips the call
            for charge in charges_of(before, after, event, recorded_at):
                self.charge_user(after.user_id, charge)

    def set_half_life(self, half_life_s: float, at_us: int) -> None:
        """From ``at_us`` on usage decays with the new half-life: every account is re-based there first."""
        for user_id, account in self.shares.items():
            self.shares[user_id] = rebased(account, at_us, self.half_life_s)
            self.dirty_shares.add(user_id)
        self.half_life_s = half_life_s

    def index_job(self, before: JobState | None, after: JobState) -> None:
        """Keep the job indexes (active, queued, per node) and the minute tallies in step with one job's change.

        The one derivation of the indexes: the live fold calls it per event, and loading the tables
        or replaying the log calls it per job (``before`` None) in submit order. Lists of finished
        jobs (newest first, finished since) are indexed reads of ``proj_jobs`` (``JobTable``).
        """
        job_id = after.job_id
        if before is None:
            self.user_order.pop(after.user_id, None)  # moved last: the most recent submitter
            self.user_order[after.user_id] = None
        if after.status in TERMINAL:
            if before is None or before.status not in TERMINAL:
                self.active.pop(job_id, None)
                if after.completed_at is not None:
                    tally_finish(self.minutes, self.hours, after, after.completed_at)
        elif before is None:
            self.active[job_id] = None
        if after.phase == "queued":
            self.queued[job_id] = None
        elif before is not None and before.phase == "queued":
            self.queued.pop(job_id, None)
        if after.status == "pending" and after.phase != "queued" and not is_held(after):
            self.unqueued[job_id] = None
        else:  # held tasks are the arrays' (``self.arrays``), not the few jobs between submit and queue
            self.unqueued.pop(job_id, None)
        if after.array_id is not None:
            self._track_task(before, after)
        was_on = before.node if before is not None and before.phase in ON_NODE else None
        now_on = after.node if after.phase in ON_NODE else None
        if was_on != now_on:  # new lists, not changed ones: a published snapshot may share the old
            if was_on is not None and job_id in self.node_jobs.get(was_on, ()):
                self.node_jobs[was_on] = [j for j in self.node_jobs[was_on] if j != job_id]
            if now_on is not None:
                jobs, on_node = self.jobs, [*self.node_jobs.get(now_on, ())]
                bisect.insort(on_node, job_id, key=lambda j: dispatch_order(jobs[j]))
                self.node_jobs[now_on] = on_node

    def _track_task(self, before: JobState | None, after: JobState) -> None:
        array_id = after.array_id
        assert array_id is not None
        progress = track_task(self.arrays.get(array_id), before, after)
        if progress is None:
            self.arrays.pop(array_id, None)
        else:
            self.arrays[array_id] = progress

    def sum_hours(self) -> None:
        """After setting ``minutes`` wholesale (a snapshot): the hourly tallies from them."""
        self.hours = hours_of(self.minutes)

    def day_tally(self, now: int) -> Minute:
        """Jobs finished in the 24 h before ``now`` (by whole minutes): 24 hours and the minutes at both ends."""
        return day_tally(self.minutes, self.hours, now)

    def _count_user(self, user_id: str, before: str | None, after: str, submitted_at: int | None) -> None:
        """Counts change in place, on a copy once per publication (``_own_user``)."""
        stats = self._own_user(user_id)
        count_status(stats, before, after)
        if not self._own_counts:
            self.job_counts, self._own_counts = copy.copy(self.job_counts), True
        count_status(self.job_counts, before, after)
        if submitted_at is not None:
            note_submit(stats, submitted_at)
        if not stats.active:
            self.active_users.pop(user_id, None)
        elif submitted_at is not None or user_id not in self.active_users:
            self.active_users.pop(user_id, None)
            self.active_users[user_id] = None
        self.dirty_users.add(user_id)

    def charge_user(self, user_id: str, charge: Charge) -> None:
        """A quota charge (the live fold per event; a replay applies the same charges in log order)."""
        stats = self._own_user(user_id)
        day = copy.copy(stats.quota)  # apply_charge changes a day in place: a snapshot may share this one
        stats.quota = apply_charge(day, charge)
        self.dirty_users.add(user_id)

    def _own_user(self, user_id: str) -> UserStats:
        """The user's stats to change in place: copied first when a published snapshot may share them."""
        stats = self.users.get(user_id)
        if stats is None:
            stats = self.users[user_id] = UserStats(user_id=user_id)
        elif user_id not in self._own_users:
            stats = self.users[user_id] = copy.copy(stats)
        self._own_users.add(user_id)
        return stats

    def frozen_copy(self) -> ReadSnapshot:
        """These views as readers may hold them from now on: what changes in place is copied (the
        containers, about a millisecond at 12k pending: ``bench/readside.py``), values are shared, as
        the fold never changes a shared one; the writer's next changes copy what they touch."""
        snap = ReadSnapshot.__new__(ReadSnapshot)
        for name, value in vars(self).items():
            setattr(snap, name, value.copy() if isinstance(value, dict) else value)
        snap.jobs = self.jobs.frozen_copy(self.position)
        snap.dirty_jobs = set(self.dirty_jobs)  # the jobs whose rows are not written yet: read from memory
        snap.dirty_users, snap.dirty_nodes, snap.dirty_tokens, snap.dirty_shares = set(), set(), set(), set()
        self._own_users, self._own_counts = set(), False
        return snap

    def index_users(self) -> None:
        """After a bulk load (tables, replay, snapshot): the user rankings and job counts from the users'
        tallies, as the event-by-event fold keeps them. Users whose jobs were not indexed (a snapshot
        keeps only active ones) rank before the others, by user id."""
        missing = sorted(self.users.keys() - self.user_order.keys())
        self.user_order = {**dict.fromkeys(missing), **self.user_order}
        self.active_users = {user_id: None for user_id in self.user_order if self.users[user_id].active}
        rows = [(u.total, u.pending, u.running, u.completed, u.failed, u.cancelled) for u in self.users.values()]
        total, pending, running, completed, failed, cancelled = (
            [sum(column) for column in zip(*rows, strict=True)] if rows else [0] * len(COUNTED)
        )
        self.job_counts = UserStats(
            user_id="", total=total, pending=pending, running=running, completed=completed, failed=failed,
            cancelled=cancelled,
        )  # fmt: skip

    # --- queries the API, scheduler and decide steps use -------------------------------------

    def stream_version(self, stream: str) -> int:
        version = self.stream_versions.get(stream)
        if version is None:  # a finished job that left memory (or a stream not yet begun)
            job = self.jobs.get(stream[4:]) if stream.startswith("job-") else None
            version = job.version if job is not None else 0
        return version

    def ranked(self, now: int, weights: Weights) -> list[Ranked]:
        """Queued jobs in dispatch order, by the fair-share score at ``now`` (projections.fairshare)."""
        queued = [self.jobs[job_id] for job_id in self.queued]
        return rank(queued, self.on_nodes(), self.shares, now_us=now, half_life_s=self.half_life_s, weights=weights)

    def queue(self, now: int | None = None, weights: Weights | None = None) -> list[JobState]:
        """Queued jobs in dispatch order (by default scored at the views' own instant, default weights)."""
        at = self.recorded_at if now is None else now
        return [r.job for r in self.ranked(at, weights or Weights())]

    def on_nodes(self) -> list[JobState]:
        """Jobs dispatched to a node and not yet ended (bounded by the slots, not by history)."""
        return [self.jobs[j] for ids in self.node_jobs.values() for j in ids]

    def active_jobs(self) -> list[JobState]:
        """Jobs not yet terminal, oldest first (bounded by the queue, not by history)."""
        return [self.jobs[job_id] for job_id in self.active]

    def tokens_of(self, user_id: str) -> list[TokenState]:
        return [t for t in self.tokens.values() if t.user_id == user_id]

    def newest_jobs(self, *, user_id: str | None, status: str | None, limit: int) -> list[JobState]:
        """Newest first, optionally one user's and one status; stops at ``limit`` (an indexed read of
        ``proj_jobs``, with the jobs whose rows are not written yet taken from memory)."""
        clauses, values = ["1"], []
        if user_id is not None:
            clauses.append("user_id = ?")
            values.append(user_id)
        if status is not None:
            clauses.append("status = ?")
            values.append(status)

        def matches(job: JobState) -> bool:
            return (user_id is None or job.user_id == user_id) and (status is None or job.status == status)

        return self.jobs.newest(list(self.dirty_jobs), matches, " AND ".join(clauses), values, limit)

    def finished_since(self, since_us: int) -> list[JobState]:
        """Jobs finished at or after ``since_us``, in completion order (read by the ``completed_at`` index)."""
        return self.jobs.finished_since(list(self.dirty_jobs), since_us)

    def active_page(self, offset: int, limit: int) -> tuple[int, list[JobState]]:
        """The active jobs' count and ``limit`` of them from ``offset``, oldest first."""
        ids = list(itertools.islice(self.active, offset, offset + limit))  # nothing copied but the page
        return len(self.active), [self.jobs[job_id] for job_id in ids]

    def queued_since(self, known: Container[str], since_us: int) -> list[str]:
        """What was queued since a plan of the ``known`` jobs made at ``since_us``: the queued ids from
        the newest back to the first that is known and was queued before (everything before it was
        folded before it, so known too), newest first."""
        jobs = self.jobs

        def since(job_id: str) -> bool:
            return job_id not in known or (jobs[job_id].queued_at or 0) >= since_us

        return list(itertools.takewhile(since, reversed(self.queued)))

    def ranked_users(self, offset: int, limit: int) -> tuple[int, list[UserStats]]:
        """The users' count and ``limit`` of them from ``offset``: those with active jobs first, then the
        others, each by their newest submit (the most recent first). A first page costs ``limit``."""
        active = list(itertools.islice(reversed(self.active_users), offset + limit))
        if len(active) == offset + limit:
            return len(self.users), [self.users[u] for u in active[offset:]]
        taken = set(active)  # every active user: the page runs into the others
        others = (u for u in reversed(list(self.user_order)) if u not in taken)
        page = [*active[offset:], *itertools.islice(others, max(0, offset - len(active)), offset + limit - len(active))]
        return len(self.users), [self.users[u] for u in page[:limit]]

    def close(self) -> None:
        if self.jobs.rows is not None:
            self.jobs.rows.close()

    def dirty_count(self) -> int:
        dirty = len(self.dirty_jobs) + len(self.dirty_users) + len(self.dirty_nodes) + len(self.dirty_tokens)
        return dirty + len(self.dirty_shares)

    def clear_dirty(self) -> None:
        """After the dirty rows were written (in the caller's transaction): finished jobs whose rows
        committed at an earlier flush may leave memory now."""
        for job_id in self.jobs.flushed(frozenset(self.dirty_jobs)):
            self.stream_versions.pop(f"job-{job_id}", None)
        self.dirty_jobs.clear()
        self.dirty_users.clear()
        self.dirty_nodes.clear()
        self.dirty_tokens.clear()
        self.dirty_shares.clear()


class ReadSnapshot(Views):
    """The views at one committed position, as the store publishes them for readers: nothing folds
    into it and nothing changes it, so a reader takes it with one attribute read and keeps it."""

    def apply_event(self, event: AnyEvent, position: int, stream: str, version: int, recorded_at: int) -> None:
        raise TypeError("a published snapshot is read-only: the writer folds into its own views")

    def frozen_copy(self) -> ReadSnapshot:
        return self

    def close(self) -> None:
        """The writer's views own the row connections: a snapshot has nothing of its own to close."""
