"""The read models no decide step needs: job indexes, tallies, rankings and counts.

The store folds them after each ``COMMIT``, from the committed events only (``apply_event``), so a
failed batch never reaches them; a replay folds them together with the writer's state
(``projections.views.Views``) through the same ``fold_job``. They keep the unfinished jobs' states of
their own (``active``), evolved with the writer's ``evolve_job``: a finished job moves nothing here.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Container

from ledger.domain.arrays import is_held
from ledger.domain.events import AnyEvent, JobEvent, JobSubmitted
from ledger.domain.jobs import TERMINAL, JobState, evolve_job
from ledger.domain.users import COUNTED, UserStats, count_status
from projections.tallies import Minute, day_tally, hours_of, tally_finish

ACTIVE = frozenset({"pending", "running"})  # the statuses ``UserStats.active`` counts


class ReadModels:
    """The read models at one committed position (the writer's state is apart: ``WriterState``)."""

    def __init__(self) -> None:
        self.position = 0
        self.recorded_at = 0
        self.active: dict[str, JobState] = {}  # every job not yet terminal, in submit order
        self.queued: dict[str, None] = {}  # insertion-ordered set of queued job ids
        # pending jobs outside the queue (scanning, to be queued, dispatched but not started): a few
        self.unqueued: dict[str, None] = {}
        self.minutes: dict[int, Minute] = {}  # finished-job tallies by minute of completed_at
        self.hours: dict[int, Minute] = {}  # the same by hour: a day's sum reads 24 of these, not 1,440 minutes
        # user rankings for the bounded dashboard: insertion-ordered, the most recent submitter last
        self.user_order: dict[str, None] = {}  # every user (with a known submit) by their newest submit
        self.active_users: dict[str, None] = {}  # users with pending or running jobs, same order
        self.user_active: dict[str, int] = {}  # each user's pending and running jobs (for active_users)
        self.job_counts = UserStats(user_id="")  # every job by status: the users' counts summed
        self._own_counts = False  # ``job_counts`` is no published snapshot's: changed in place

    def apply_event(self, event: AnyEvent, position: int, stream: str, version: int, recorded_at: int) -> None:
        """Fold one committed event (the store, after the commit that wrote it)."""
        self.position, self.recorded_at = position, recorded_at
        if isinstance(event, JobEvent):
            before = self.active.get(event.job_id)
            if before is None and type(event) is not JobSubmitted:
                return  # a finished job: terminal stays terminal, nothing read here moves
            self.fold_job(before, evolve_job(before, event, position=position, at=recorded_at))

    def fold_job(self, before: JobState | None, after: JobState) -> None:
        """One job's change, live or on replay: its indexes, its tallies and the counts."""
        self.index(before, after)
        if before is None or before.status != after.status:
            self._count(before.status if before is not None else None, after)

    def index(self, before: JobState | None, after: JobState) -> None:
        """Keep the job indexes (active, queued) and the minute tallies in step with one job's change.

        The one derivation of the indexes: the fold calls it per event, and loading the tables or a
        snapshot calls it per job (``before`` None) in submit order.
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
        else:
            self.active[job_id] = after
        if after.phase == "queued":
            self.queued[job_id] = None
        elif before is not None and before.phase == "queued":
            self.queued.pop(job_id, None)
        if after.status == "pending" and after.phase != "queued" and not is_held(after):
            self.unqueued[job_id] = None
        else:  # held tasks are the arrays' (the writer's ``arrays``), not the few jobs between submit and queue
            self.unqueued.pop(job_id, None)

    def _count(self, before: str | None, after: JobState) -> None:
        """Counts change in place, on a copy once per publication (``share_models_into``)."""
        if not self._own_counts:
            self.job_counts, self._own_counts = copy.copy(self.job_counts), True
        count_status(self.job_counts, before, after.status)
        user_id = after.user_id
        active = self.user_active.get(user_id, 0) + (after.status in ACTIVE) - (before in ACTIVE)
        if not active:
            self.user_active.pop(user_id, None)
            self.active_users.pop(user_id, None)
            return
        self.user_active[user_id] = active
        if before is None or user_id not in self.active_users:
            self.active_users.pop(user_id, None)
            self.active_users[user_id] = None

    def rank_users(self, users: dict[str, UserStats]) -> None:
        """After a bulk load (tables, snapshot): the user rankings and job counts from the users'
        tallies, as the event-by-event fold keeps them. Users whose jobs were not indexed (a snapshot
        keeps only active ones) rank before the others, by user id."""
        missing = sorted(users.keys() - self.user_order.keys())
        self.user_order = {**dict.fromkeys(missing), **self.user_order}
        self.user_active = {user_id: stats.active for user_id, stats in users.items() if stats.active}
        self.active_users = {user_id: None for user_id in self.user_order if user_id in self.user_active}
        rows = [(u.total, u.pending, u.running, u.completed, u.failed, u.cancelled) for u in users.values()]
        total, pending, running, completed, failed, cancelled = (
            [sum(column) for column in zip(*rows, strict=True)] if rows else [0] * len(COUNTED)
        )
        self.job_counts = UserStats(
            user_id="", total=total, pending=pending, running=running, completed=completed, failed=failed,
            cancelled=cancelled,
        )  # fmt: skip

    def sum_hours(self) -> None:
        """After setting ``minutes`` wholesale (a snapshot): the hourly tallies from them."""
        self.hours = hours_of(self.minutes)

    def share_models_into(self, snapshot: object) -> None:
        """Give ``snapshot`` these models as they are now: the containers copied, the values shared (the
        fold replaces tallies and jobs, and copies ``job_counts`` before its next change)."""
        for name in READ_FIELDS:
            value = getattr(self, name)
            setattr(snapshot, name, value.copy() if isinstance(value, dict) else value)
        self._own_counts = False

    # --- queries ------------------------------------------------------------------------------

    def day_tally(self, now: int) -> Minute:
        """Jobs finished in the 24 h before ``now`` (by whole minutes): 24 hours and the minutes at both ends."""
        return day_tally(self.minutes, self.hours, now)

    def active_jobs(self) -> list[JobState]:
        """Jobs not yet terminal, oldest first (bounded by the queue, not by history)."""
        return list(self.active.values())

    def active_page(self, offset: int, limit: int) -> tuple[int, list[JobState]]:
        """The active jobs' count and ``limit`` of them from ``offset``, oldest first."""
        return len(self.active), list(itertools.islice(self.active.values(), offset, offset + limit))

    def order_queue(self) -> None:
        """After a bulk load (per job, in submit order): the queue in the order its jobs were queued, as
        the live fold keeps it (``queued_since`` relies on that). Rows written before ``queued_position``
        existed sort by their queue time."""
        active = self.active

        def queued_order(job_id: str) -> tuple[int, int]:
            job = active[job_id]
            return job.queued_position or 0, job.queued_at or 0

        self.queued = dict.fromkeys(sorted(self.queued, key=queued_order))

    def queued_since(self, known: Container[str], since_us: int) -> list[str]:
        """What was queued since a plan of the ``known`` jobs made at ``since_us``: the queued ids from
        the newest back to the first that is known and was queued before (everything before it was
        folded before it, so known too), newest first."""
        active = self.active

        def since(job_id: str) -> bool:
            return job_id not in known or (active[job_id].queued_at or 0) >= since_us

        return list(itertools.takewhile(since, reversed(self.queued)))


# What a publication hands over (the writer's state gives the position and instant: they are equal).
READ_FIELDS = tuple(name for name in vars(ReadModels()) if name not in ("position", "recorded_at", "_own_counts"))
