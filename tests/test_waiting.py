"""One definition of waiting time: the queue panel and the dashboard's queue-time figures read the same wait."""

from __future__ import annotations

from api.auth import Identity
from api.web.deps import Moment
from api.web.panels import queue_panel
from ledger.domain.events import (
    AnyEvent,
    Blob,
    JobDispatched,
    JobFinished,
    JobQueued,
    JobRetried,
    JobStarted,
    JobSubmitted,
    NodeRegistered,
    RetryPolicy,
    stream_of,
)
from projections.plan import make_plan
from projections.views import Views

S = 1_000_000
T0 = 1_800_000_000 * S
ADMIN = Identity(token_id="t", user_id="root", is_admin=True)


class Log:
    """Views folded event by event, each at its own instant."""

    def __init__(self) -> None:
        self.views, self.versions, self.position = Views(), dict[str, int](), 0

    def add(self, at: int, *events: AnyEvent) -> None:
        for event in events:
            stream, self.position = stream_of(event), self.position + 1
            self.versions[stream] = self.versions.get(stream, 0) + 1
            self.views.apply_event(event, self.position, stream, self.versions[stream], at)


def panel_wait_s(views: Views, now: int) -> float:
    moment = Moment(views=views, now=now, plan=make_plan(views, now), live=True)
    return float(queue_panel(moment, ADMIN, 10).queue[0].waiting_s)


def test_a_retried_job_waited_the_same_in_the_panel_and_the_figures() -> None:
    """A job waits 10 s, runs 60 s, fails and is retried: while pending again the queue panel says it
    waited 10 s (its run was not waiting), and once it ends the dashboard's queue time says 10 s too."""
    log = Log()
    code = Blob(digest="0" * 64, size=1)
    retry = RetryPolicy(retries=1, exit_codes=[1])
    submitted = JobSubmitted(
        job_id="j", user_id="u", competition_id="c", project_id="p", expected_time_s=60, code=code, retry=retry
    )
    log.add(T0, NodeRegistered(name="n", host="h", slots=1, kind="local"), submitted, JobQueued(job_id="j"))
    log.add(T0 + 10 * S, JobDispatched(job_id="j", node="n"), JobStarted(job_id="j", node="n"))
    log.add(T0 + 70 * S, JobRetried(job_id="j", attempt=1, reason="exit_nonzero", exit_code=1))
    assert panel_wait_s(log.views, T0 + 100 * S) == 10.0
    assert log.views.jobs["j"].waited_us(T0 + 100 * S) == 10 * S
    log.add(T0 + 120 * S, JobDispatched(job_id="j", node="n", attempt=2), JobStarted(job_id="j", node="n", attempt=2))
    log.add(T0 + 150 * S, JobFinished(job_id="j", status="completed", reason="exit_zero", attempt=2))
    day = log.views.day_tally(T0 + 150 * S)
    assert (day.waited, day.wait_us) == (1, 10 * S)


def test_a_job_still_queued_has_waited_since_its_submit() -> None:
    """A job never run has waited from its submit until now, in the panel as in the property."""
    log = Log()
    code = Blob(digest="0" * 64, size=1)
    submitted = JobSubmitted(job_id="j", user_id="u", competition_id="c", project_id="p", expected_time_s=60, code=code)
    log.add(T0, NodeRegistered(name="n", host="h", slots=1, kind="local"), submitted, JobQueued(job_id="j"))
    assert panel_wait_s(log.views, T0 + 42 * S) == 42.0
    assert log.views.jobs["j"].waited_us(T0 + 42 * S) == 42 * S
