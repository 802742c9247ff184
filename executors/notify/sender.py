"""The server's notification sender: a background task that follows the committed log, and for each
ended job that asked (``notify.requested``) sends to every target that has no outcome yet, then records
``notify.delivered`` or ``notify.failed``.

It only reads what is committed (``job.finished`` is durable before anything is sent), and its sends
run as tasks of their own: the writer and the request path never wait on a target. At start it first
finds the ended jobs still owed a notification (a server killed between a job's end and its delivery)
by the type index, so each target gets one outcome across restarts: the outcome's decide step refuses
a second. A kill after a target took the notification and before its outcome committed sends it again
(the payload's ``delivery_id`` names the repeat).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from executors.errors import NotifyError
from executors.notify.deliver import deliver, idle_payload, payload
from ledger.domain.errors import LedgerError
from ledger.domain.events import (
    JobFinished,
    JobGpuIdle,
    NotifyDelivered,
    NotifyFailed,
    NotifyIdleDelivered,
    NotifyIdleFailed,
    Recorded,
)
from ledger.domain.jobs import JobState
from ledger.domain.notify import is_allowed, owed, owed_idle, shown_target
from ledger.store.notifications import record_idle_outcome, record_outcome
from ledger.store.schema import connect
from ledger.store.settings import NotifySettings
from ledger.store.store import Committed, Write
from projections.views import Views

log = structlog.get_logger()
READ_BATCH = 500

# Ended jobs whose targets outnumber their outcomes: the events' type index, then each job's own stream.
OWED_SQL = """
SELECT substr(r.stream, 5) FROM events AS r
WHERE r.type = 'notify.requested'
  AND json_array_length(CAST(r.payload AS TEXT), '$.targets') > (
    SELECT count(*) FROM events AS o WHERE o.stream = r.stream AND o.type IN ('notify.delivered', 'notify.failed'))
"""
# Jobs that asked to be told and were found idle: whether the current verdict is still owed is the job's state.
IDLE_SQL = """
SELECT DISTINCT substr(i.stream, 5) FROM events AS i
WHERE i.type = 'job.gpu_idle'
  AND EXISTS (SELECT 1 FROM events AS r WHERE r.stream = i.stream AND r.type = 'notify.requested')
"""


class CommittedLog(Protocol):
    """What the sender needs of the ledger: the committed views, the log after a position, the writer."""

    @property
    def views(self) -> Views: ...

    @property
    def head(self) -> int: ...

    async def write(self, write: Write) -> Committed: ...

    async def wait_beyond(self, position: int, timeout: float | None = None) -> int: ...

    def events_after(self, position: int, limit: int | None = None) -> list[Recorded]: ...


class Sender:
    def __init__(self, ledger: CommittedLog, database_path: str, settings: NotifySettings) -> None:
        self.ledger = ledger
        self.database_path = database_path
        self.settings = settings
        self.sending: dict[tuple[str, int], asyncio.Task[None]] = {}
        self.idle_sending: dict[tuple[str, int, int], asyncio.Task[None]] = {}  # (job, attempt, target)

    async def run(self) -> None:
        seen = self.ledger.head  # before the look back: an end committed meanwhile is seen by the loop
        ends, idle = await asyncio.to_thread(self._owed_at_start)
        for job_id in ends:
            self._owe(job_id)
        for job_id in idle:
            self._owe_current_idle(job_id)
        while True:
            head = await self.ledger.wait_beyond(seen)
            for record in self.ledger.events_after(seen, limit=READ_BATCH):
                if record.position > head:  # in the file, not yet in the published views: next round
                    break
                seen = record.position
                if type(record.event) is JobFinished:
                    self._owe(record.event.job_id)
                elif isinstance(record.event, JobGpuIdle):
                    self._owe_idle(record.event.job_id, record.event.attempt, record.event.action)

    def _owed_at_start(self) -> tuple[list[str], list[str]]:
        conn = connect(self.database_path, readonly=True)
        try:
            return [row[0] for row in conn.execute(OWED_SQL)], [row[0] for row in conn.execute(IDLE_SQL)]
        finally:
            conn.close()

    def _owe(self, job_id: str) -> None:
        job = self.ledger.views.jobs.get(job_id)
        if job is None:
            return
        for target in owed(job):
            if (job_id, target) not in self.sending:
                task = asyncio.create_task(self._send(job, target), name=f"notify-{job_id}-{target}")
                self.sending[(job_id, target)] = task

    def _owe_current_idle(self, job_id: str) -> None:
        job = self.ledger.views.jobs.get(job_id)
        if job is not None and job.gpu_idle is not None:
            self._owe_idle(job_id, job.attempt, job.gpu_idle)

    def _owe_idle(self, job_id: str, attempt: int, action: str) -> None:
        job = self.ledger.views.jobs.get(job_id)
        if job is None:
            return
        for target in owed_idle(job, attempt):
            if (job_id, attempt, target) not in self.idle_sending:
                task = asyncio.create_task(self._send_idle(job, attempt, action, target), name=f"notify-idle-{job_id}")
                self.idle_sending[(job_id, attempt, target)] = task

    async def _send_idle(self, job: JobState, attempt: int, action: str, target: int) -> None:
        """As ``_send``, for an idle-GPU verdict: one outcome per target and verdict, owed until recorded."""
        shown = shown_target(job.notify[target])
        try:
            outcome = await self._try_idle(job, attempt, action, target)
            await self.ledger.write(record_idle_outcome(outcome))
            log.info("notify.gpu_idle_sent", job_id=job.job_id, target=shown, outcome=type(outcome).__name__)
        except LedgerError as e:
            log.warning("notify.unrecorded", job_id=job.job_id, target=shown, error=str(e))
        except Exception as e:  # a bug must not end the task unseen
            log.error("notify.crashed", job_id=job.job_id, target=shown, error=repr(e))
        finally:
            self.idle_sending.pop((job.job_id, attempt, target), None)

    async def _try_idle(
        self, job: JobState, attempt: int, action: str, target: int
    ) -> NotifyIdleDelivered | NotifyIdleFailed:
        url, job_id = job.notify[target], job.job_id
        if not is_allowed(url, self.settings.allowed):
            error = "not in NOTIFY_ALLOWED any more"
            return NotifyIdleFailed(job_id=job_id, attempt=attempt, target=target, attempts=0, error=error)
        try:
            body = idle_payload(job, attempt, action, target, self.settings.link_base)
            tries = await deliver(url, body, self.settings)
        except NotifyError as e:
            return NotifyIdleFailed(job_id=job_id, attempt=attempt, target=target, attempts=e.tries, error=str(e))
        return NotifyIdleDelivered(job_id=job_id, attempt=attempt, target=target, attempts=tries)

    async def _send(self, job: JobState, target: int) -> None:
        try:
            outcome = await self._try(job, target)
            await self.ledger.write(record_outcome(outcome))
            log.info(f"notify.{'delivered' if type(outcome) is NotifyDelivered else 'failed'}",
                     job_id=job.job_id, target=shown_target(job.notify[target]), attempts=outcome.attempts)  # fmt: skip
        except LedgerError as e:  # the outcome is owed still: the next start sends again
            log.warning("notify.unrecorded", job_id=job.job_id, target=shown_target(job.notify[target]), error=str(e))
        except Exception as e:  # a bug must not end the task unseen: logged, and owed until the next start
            log.error("notify.crashed", job_id=job.job_id, target=shown_target(job.notify[target]), error=repr(e))
        finally:
            self.sending.pop((job.job_id, target), None)

    async def _try(self, job: JobState, target: int) -> NotifyDelivered | NotifyFailed:
        url = job.notify[target]
        if not is_allowed(url, self.settings.allowed):  # the admin narrowed NOTIFY_ALLOWED since the submit
            return NotifyFailed(job_id=job.job_id, target=target, attempts=0, error="not in NOTIFY_ALLOWED any more")
        try:
            tries = await deliver(url, payload(job, target, self.settings.link_base), self.settings)
        except NotifyError as e:
            return NotifyFailed(job_id=job.job_id, target=target, attempts=e.tries, error=str(e))
        return NotifyDelivered(job_id=job.job_id, target=target, attempts=tries)

    async def close(self) -> None:
        tasks = [*self.sending.values(), *self.idle_sending.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
