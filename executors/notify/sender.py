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
from executors.notify.deliver import deliver, payload
from ledger.domain.errors import LedgerError
from ledger.domain.events import JobFinished, NotifyDelivered, NotifyFailed, Recorded
from ledger.domain.jobs import JobState
from ledger.domain.notify import is_allowed, owed, shown_target
from ledger.store.notifications import record_outcome
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

    async def run(self) -> None:
        seen = self.ledger.head  # before the look back: an end committed meanwhile is seen by the loop
        for job_id in await asyncio.to_thread(self._owed_at_start):
            self._owe(job_id)
        while True:
            head = await self.ledger.wait_beyond(seen)
            for record in self.ledger.events_after(seen, limit=READ_BATCH):
                if record.position > head:  # in the file, not yet in the published views: next round
                    break
                seen = record.position
                if type(record.event) is JobFinished:
                    self._owe(record.event.job_id)

    def _owed_at_start(self) -> list[str]:
        conn = connect(self.database_path, readonly=True)
        try:
            return [row[0] for row in conn.execute(OWED_SQL)]
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
        for task in list(self.sending.values()):
            task.cancel()
        await asyncio.gather(*self.sending.values(), return_exceptions=True)
