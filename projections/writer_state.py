"""The writer's state: what decide steps read inside the write transaction, and the rows it keeps.

Jobs, users' counts and quota days, nodes (with their jobs), tokens, fair-share accounts and stream
versions: the ``LedgerState`` of ``ledger.store.state``. The store folds each appended event into it as
the row is built. Read models no decision needs (tallies, rankings, queue indexes) are not here: they
are folded after the commit (``projections.read_models``).
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Iterable

from ledger.domain.arrays import ArrayProgress, track_task
from ledger.domain.artifact_quota import stored_bytes
from ledger.domain.dependencies import dependency_ids, is_waiting
from ledger.domain.events import (
    After,
    AnyEvent,
    ArrayEvent,
    HalfLifeSet,
    JobArtifactsPruned,
    JobArtifactsStored,
    JobEvent,
    JobGpuSummary,
    JobPruned,
    JobSubmitted,
    NodeEvent,
    NotifyDelivered,
    NotifyFailed,
    NotifyIdleDelivered,
    NotifyIdleFailed,
    Recorded,
    TokenEvent,
    UserNotifySet,
    UserPolicySet,
)
from ledger.domain.jobs import JobState, evolve_job
from ledger.domain.nodes import NodeState, evolve_node
from ledger.domain.notify import evolve_default
from ledger.domain.quotas import CHARGED, Charge, apply_charge, charges_of
from ledger.domain.shares import DEFAULT_HALF_LIFE_S, UserShare, evolve_policy, rebased
from ledger.domain.tokens import TokenState, evolve_token
from ledger.domain.users import UserStats, count_status, note_submit
from projections.fairshare import attempt_end, charge_attempt, charge_usage, idle_surcharge
from projections.job_table import JobTable

_NO_AFTER = After()
# job events that come after its job.finished (the job may be in its row only; an idle verdict's
# notification may come after it too)
AFTER_END = frozenset(
    {JobPruned, JobArtifactsPruned, NotifyDelivered, NotifyFailed, NotifyIdleDelivered, NotifyIdleFailed}
)
ON_NODE = frozenset({"dispatched", "running", "cancelling"})  # phases in which a job holds a node slot
JobChange = tuple[JobState | None, JobState]  # one job before and after an event (None: it is new)


def dispatch_order(job: JobState) -> tuple[int, int]:
    """A node's jobs in the order they were dispatched there (rows written before the field: by time)."""
    return (job.dispatch_position or job.dispatched_at or 0, job.position)


class WriterState:
    """What decide steps read, at one ledger position (``ledger.store.state.LedgerState``)."""

    def __init__(self) -> None:
        self.position = 0
        self.recorded_at = 0
        self.jobs = JobTable()  # the unfinished and recently finished in memory, the rest in proj_jobs
        self.users: dict[str, UserStats] = {}
        self.nodes: dict[str, NodeState] = {}
        self.tokens: dict[str, TokenState] = {}
        self.tokens_by_secret: dict[str, str] = {}
        self.node_jobs: dict[str, list[str]] = {}  # jobs dispatched to a node and not yet ended
        # arrays with tasks not yet ended: derived from their tasks alone (``index_node``), so every way
        # of loading the state (tables, snapshot, replay) rebuilds it from the active jobs
        self.arrays: dict[str, ArrayProgress] = {}
        # dependencies (docs/design.md, "Dependencies"): each job or array id to the jobs waiting on it,
        # and the waiting jobs to decide again (a dependency ended: the ledger position it did), both
        # derived from the waiting jobs alone, as ``arrays`` is
        self.dependents: dict[str, tuple[str, ...]] = {}
        self.dependencies_due: dict[str, int] = {}
        self.stream_versions: dict[str, int] = {}  # streams in memory; a finished job's is its row's version
        self.dirty_jobs: set[str] = set()
        self.dirty_users: set[str] = set()
        self.dirty_nodes: set[str] = set()
        self.dirty_tokens: set[str] = set()
        # The fair-share fold: each user's account (policy and decayed usage), and the decay's half-life.
        self.shares: dict[str, UserShare] = {}
        self.half_life_s = DEFAULT_HALF_LIFE_S
        self.dirty_shares: set[str] = set()
        self._own_users: set[str] = set()  # users whose stats object no snapshot shares: changed in place

    def apply_all(self, records: Iterable[Recorded]) -> None:
        for record in records:
            self.apply(record)

    def apply(self, rec: Recorded) -> None:
        self.apply_event(rec.event, rec.position, rec.stream, rec.version, rec.recorded_at)

    def apply_event(self, event: AnyEvent, position: int, stream: str, version: int, recorded_at: int) -> None:
        """Fold one event into the writer's state (the store, as each row is built)."""
        self.fold(event, position, stream, version, recorded_at)

    def fold(self, event: AnyEvent, position: int, stream: str, version: int, recorded_at: int) -> JobChange | None:
        """Fold one stored event; returns the job's change for a job event (what read models fold)."""
        self.position = position
        self.recorded_at = recorded_at
        self.stream_versions[stream] = version
        match event:
            case JobEvent():
                return self._apply_job(event, position, recorded_at, version)
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
                pass  # the array's state is its tasks' (``index_node``); its event names the whole
            case UserNotifySet():
                self.shares[event.user_id] = evolve_default(self.shares.get(event.user_id), event)
                self.dirty_shares.add(event.user_id)
            case _:
                raise AssertionError(f"no view folds {type(event).__name__}")
        return None

    def _apply_job(self, event: JobEvent, position: int, recorded_at: int, version: int) -> JobChange | None:
        job_id = event.job_id
        before = self.jobs.resident(job_id)  # never a row: at start-up rows may be ahead of the fold
        if before is None and type(event) in AFTER_END:  # events of a finished job: maybe in its row only
            before = self.jobs.get(job_id)
            if before is not None and before.version >= version:
                # the row already holds it: the process that appended it (``prune``) wrote both; the
                # user's stats come from memory (a snapshot, the fold), never ahead, so they still change
                if type(event) is JobArtifactsPruned:
                    self.add_artifact_bytes(before.user_id, -stored_bytes(before.artifacts))
                return None
        after = evolve_job(before, event, position=position, at=recorded_at)
        self.jobs.put(after)
        self.dirty_jobs.add(job_id)
        self.index_node(before, after)
        run = attempt_end(before, after)
        if run is not None:
            charge_attempt(self.shares, after.user_id, run, recorded_at, self.half_life_s)
            self.dirty_shares.add(after.user_id)
        if type(event) is JobGpuSummary and before is not None:  # the summary comes just before the end
            surcharge = idle_surcharge(before, event, recorded_at, self.half_life_s)
            if surcharge > 0:
                charge_usage(self.shares, after.user_id, surcharge, recorded_at, self.half_life_s)
                self.dirty_shares.add(after.user_id)
        if before is None:  # an array is one submission for the rate limit: its first task counts
            first = type(event) is not JobSubmitted or not event.array_task
            self._count_user(after.user_id, None, after.status, recorded_at if first else None)
        elif before.status != after.status:
            self._count_user(after.user_id, before.status, after.status, None)
        if type(event) in CHARGED:  # most events cost nothing: the fold's hot path skips the call
            for charge in charges_of(before, after, event, recorded_at):
                self.charge_user(after.user_id, charge)
        if type(event) is JobArtifactsStored:
            self.add_artifact_bytes(after.user_id, event.bytes)
        elif type(event) is JobArtifactsPruned and before is not None:
            self.add_artifact_bytes(after.user_id, -stored_bytes(before.artifacts))
        return before, after

    def set_half_life(self, half_life_s: float, at_us: int) -> None:
        """From ``at_us`` on usage decays with the new half-life: every account is re-based there first."""
        for user_id, account in self.shares.items():
            self.shares[user_id] = rebased(account, at_us, self.half_life_s)
            self.dirty_shares.add(user_id)
        self.half_life_s = half_life_s

    def index_node(self, before: JobState | None, after: JobState) -> None:
        """Keep each node's list of jobs, and each array's progress, in step with one job's change (the
        fold, and loads per job)."""
        job_id = after.job_id
        if after.array_id is not None:
            self._track_task(before, after)
        if after.after is not None or (before is None or before.is_terminal) != after.is_terminal:
            self._track_waiting(before, after)
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
            if self.arrays.pop(array_id, None) is not None:
                self._dependency_ended(array_id)
        else:
            self.arrays[array_id] = progress

    def _track_waiting(self, before: JobState | None, after: JobState) -> None:
        """A job that starts or stops waiting on its dependencies, or that ends (its waiters are due)."""
        job_id, was, now = after.job_id, before is not None and is_waiting(before), is_waiting(after)
        if now and not was:  # due at once: a dependency may have ended before (a load from the tables)
            for dep in dependency_ids(after.after or _NO_AFTER):
                self.dependents[dep] = (*self.dependents.get(dep, ()), job_id)
            self.dependencies_due[job_id] = self.position
        elif was and not now:
            self.dependencies_due.pop(job_id, None)
            for dep in dependency_ids(after.after or _NO_AFTER):
                left = tuple(j for j in self.dependents.get(dep, ()) if j != job_id)
                if left:
                    self.dependents[dep] = left
                else:
                    self.dependents.pop(dep, None)
        if after.is_terminal and (before is None or not before.is_terminal):
            self._dependency_ended(job_id)

    def _dependency_ended(self, dep: str) -> None:
        """A job or an array ended: the jobs waiting on it are decided again by the release step."""
        for waiter in self.dependents.get(dep, ()):
            self.dependencies_due[waiter] = self.position

    def _count_user(self, user_id: str, before: str | None, after: str, submitted_at: int | None) -> None:
        """Counts change in place, on a copy once per publication (``_own_user``)."""
        stats = self._own_user(user_id)
        count_status(stats, before, after)
        if submitted_at is not None:
            note_submit(stats, submitted_at)
        self.dirty_users.add(user_id)

    def charge_user(self, user_id: str, charge: Charge) -> None:
        """A quota charge (the live fold per event; a replay applies the same charges in log order)."""
        stats = self._own_user(user_id)
        day = copy.copy(stats.quota)  # apply_charge changes a day in place: a snapshot may share this one
        stats.quota = apply_charge(day, charge)
        self.dirty_users.add(user_id)

    def add_artifact_bytes(self, user_id: str, delta: int) -> None:
        """The user's stored, unpruned artifact bytes (ARTIFACT_QUOTA_BYTES) change by ``delta``."""
        stats = self._own_user(user_id)
        stats.artifact_bytes += delta
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

    def share_into(self, snapshot: WriterState) -> None:
        """Give ``snapshot`` this state as it is now: what changes in place is copied (the containers,
        about a millisecond at 12k pending: ``bench/readside.py``), values are shared, as the fold never
        changes a shared one; the writer's next changes copy what they touch."""
        for name in WRITER_FIELDS:
            value = getattr(self, name)
            setattr(snapshot, name, value.copy() if isinstance(value, dict) else value)
        snapshot.jobs = self.jobs.frozen_copy(self.position)
        snapshot.dirty_jobs = set(self.dirty_jobs)  # the jobs whose rows are not written yet: read from memory
        snapshot.dirty_users, snapshot.dirty_nodes, snapshot.dirty_tokens = set(), set(), set()
        snapshot.dirty_shares, snapshot._own_users = set(), set()
        self._own_users = set()

    # --- queries decide steps and readers use --------------------------------------------------

    def stream_version(self, stream: str) -> int:
        version = self.stream_versions.get(stream)
        if version is None:  # a finished job that left memory (or a stream not yet begun)
            job = self.jobs.get(stream[4:]) if stream.startswith("job-") else None
            version = job.version if job is not None else 0
        return version

    def on_nodes(self) -> list[JobState]:
        """Jobs dispatched to a node and not yet ended (bounded by the slots, not by history)."""
        return [self.jobs[j] for ids in self.node_jobs.values() for j in ids]

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


# What a publication hands over: the containers are copied, the rest shared (``share_into``).
WRITER_FIELDS = tuple(name for name in vars(WriterState()) if not name.startswith(("dirty_", "_")))
