"""The dashboard's read models: lanes, utilisation and usage over a window, and the indexed job search."""

from __future__ import annotations

from pathlib import Path

import msgspec

from api.auth import Identity
from api.web import panels
from api.web.deps import Moment
from ledger.domain.events import (
    AnyEvent,
    Blob,
    JobDispatched,
    JobFinished,
    JobQueued,
    JobRequeued,
    JobRetried,
    JobStarted,
    JobSubmitted,
    NodeRegistered,
)
from projections import job_search, timeline
from projections.job_search import JobFilter
from projections.live import open_store
from projections.plan import Plan, make_plan, pending_in_order
from projections.views import Views

S = 1_000_000
T0 = 1_800_000_000 * S


def submitted(job_id: str, user: str = "alice", competition: str = "c") -> JobSubmitted:
    return JobSubmitted(
        job_id=job_id, user_id=user, competition_id=competition, project_id="p", expected_time_s=100,
        code=Blob(digest="0" * 64, size=1),
    )  # fmt: skip


def views_of(*timed: tuple[int, AnyEvent]) -> Views:
    views, versions = Views(), {}
    for position, (at, event) in enumerate(timed, start=1):
        stream = f"node-{event.name}" if isinstance(event, NodeRegistered) else f"job-{event.job_id}"
        versions[stream] = versions.get(stream, 0) + 1
        views.apply_event(event, position, stream, versions[stream], T0 + at * S)
    return views


def ran(
    job_id: str, submit: int, start: int, end: int, status: str = "completed", **kw: str
) -> list[tuple[int, AnyEvent]]:
    return [
        (submit, submitted(job_id, **kw)),
        (submit, JobQueued(job_id=job_id)),
        (start, JobDispatched(job_id=job_id, node="n")),
        (start, JobStarted(job_id=job_id, node="n")),
        (end, JobFinished(job_id=job_id, status=status, reason="exit", exit_code=0 if status == "completed" else 1)),  # type: ignore[arg-type]
    ]


def test_lanes_give_wait_then_run_segments_clipped_to_the_window() -> None:
    """A finished job is a wait segment (submit to start) and a run segment (start to end), clipped."""
    views = views_of((0, NodeRegistered(name="n", host="h")), *ran("a", 10, 30, 70))
    now = T0 + 100 * S
    jobs, cut = timeline.window_jobs(views, T0 + 20 * S)
    segments = timeline.lanes(jobs, make_plan(views, now), T0 + 20 * S, now)
    assert not cut
    assert [(s.kind, (s.start - T0) // S, (s.end - T0) // S) for s in segments] == [("wait", 20, 30), ("run", 30, 70)]


def test_a_queued_job_waits_on_its_planned_node() -> None:
    """A job not dispatched yet shows as a planned wait on the node the plan gives it."""
    views = views_of((0, NodeRegistered(name="n", host="h")), (5, submitted("q")), (5, JobQueued(job_id="q")))
    now = T0 + 9 * S
    plan = make_plan(views, now)
    assert timeline.window_jobs(views, T0)[0] == []  # it ran nowhere yet: the lanes add the queue's head
    segments = timeline.lanes(pending_in_order(views, plan, 10), plan, T0, now)
    assert [(s.node, s.kind, s.planned) for s in segments] == [("n", "wait", True)]


def test_the_lanes_draw_a_dispatched_job_once_and_the_head_of_the_queue() -> None:
    """A dispatched job (pending, on its node) is one wait on that node; of the queued jobs only the
    first ``queued`` draw their planned waits, and the answer says how many are pending."""
    views = views_of(
        (0, NodeRegistered(name="n", host="h")),
        *[(1, event) for i in range(4) for event in (submitted(f"q{i}"), JobQueued(job_id=f"q{i}"))],
        (2, JobDispatched(job_id="q0", node="n")),
    )
    now = T0 + 9 * S
    moment = Moment(views=views, now=now, plan=make_plan(views, now), live=True)
    doc = panels.lanes_panel(moment, Identity(token_id="t", user_id="admin", is_admin=True), 3600, 2)
    assert [(s.job_id, s.kind, s.planned) for s in doc.segments] == [
        ("q0", "wait", False),
        ("q1", "wait", True),
    ]
    assert (doc.pending_drawn, doc.pending_total) == (2, 4)


def test_utilisation_is_the_busy_share_of_slots_per_bucket() -> None:
    """One slot busy for the second half of the window reads 0 % then 100 %."""
    views = views_of((0, NodeRegistered(name="n", host="h")), *ran("a", 0, 50, 100))
    now = T0 + 100 * S
    segments = timeline.lanes(timeline.window_jobs(views, T0)[0], make_plan(views, now), T0, now)
    assert timeline.utilisation(views, segments, T0, now, buckets=4) == [0.0, 0.0, 100.0, 100.0]


def test_usage_counts_outcomes_and_gpu_time_per_user() -> None:
    """Usage per user: jobs, GPU time inside the window, success rate over completed and failed."""
    views = views_of(
        (0, NodeRegistered(name="n", host="h")),
        *ran("a", 0, 10, 40),
        *ran("b", 40, 40, 60, status="failed"),
        *ran("c", 60, 60, 70, user="bob"),
    )
    rows = {u.user_id: u for u in timeline.usage(views, T0 + 20 * S, T0 + 100 * S)}
    assert (rows["alice"].jobs, rows["alice"].gpu_us // S, rows["alice"].success_rate) == (2, 40, 50.0)
    assert (rows["bob"].completed, rows["bob"].success_rate) == (1, 100.0)


def test_job_search_reads_indexes_and_the_unwritten_tail(tmp_path: Path) -> None:
    """Filters select from the job table; jobs newer than its checkpoint come from the log's tail."""
    store = open_store(tmp_path / "ledger.db", projection_interval_s=3600)
    for index in range(6):
        store.append(
            f"job-j{index}",
            0,
            [submitted(f"j{index}", user="alice" if index % 2 else "bob", competition=f"c{index % 3}")],
        )
    store.write_projections()
    store.append("job-late", 0, [submitted("late", user="alice", competition="c1")])
    conn, views = store.conn, store.views
    alice_c1 = JobFilter(user_id="alice", competition_id="c1")
    picked = job_search.pick([views.jobs.get(i) for i in job_search.page_ids(conn, alice_c1, 10)], alice_c1, 10)
    assert [j.job_id for j in picked] == ["late", "j1"]
    assert job_search.count(conn, JobFilter(user_id="bob")) == 3
    older = JobFilter(before=views.jobs["j3"].position)
    assert [
        j.job_id for j in job_search.pick([views.jobs.get(i) for i in job_search.page_ids(conn, older, 2)], older, 2)
    ] == ["j2", "j1"]
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT job_id FROM proj_jobs WHERE json_extract(CAST(data AS TEXT), '$.competition_id') = ?"
        " ORDER BY position DESC LIMIT 5",
        ("c1",),
    ).fetchall()
    assert "proj_jobs_competition" in str(plan)
    store.close()


def test_a_two_gpu_job_counts_twice_in_utilisation_and_gpu_time() -> None:
    """On a 2-slot node, one 2-GPU job running all window long is 100 % and twice its run time in GPU time."""
    job = msgspec.structs.replace(submitted("g"), gpus=2)
    views = views_of(
        (0, NodeRegistered(name="n", host="h", slots=2)),
        (0, job),
        (0, JobQueued(job_id="g")),
        (0, JobDispatched(job_id="g", node="n", slot=0, slots=[0, 1])),
        (0, JobStarted(job_id="g", node="n")),
    )
    now = T0 + 100 * S
    segments = timeline.lanes(timeline.window_jobs(views, T0)[0], make_plan(views, now), T0, now)
    assert timeline.utilisation(views, segments, T0, now, buckets=2) == [100.0, 100.0]
    assert timeline.usage(views, T0, now)[0].gpu_us // S == 200


class Log:
    """Events applied one after another, a second apart, to one set of views."""

    def __init__(self) -> None:
        self.views, self.versions, self.at = Views(), dict[str, int](), 0

    def __call__(self, *events: AnyEvent) -> None:
        for event in events:
            self.at += 1
            stream = f"node-{event.name}" if isinstance(event, NodeRegistered) else f"job-{event.job_id}"
            self.versions[stream] = self.versions.get(stream, 0) + 1
            self.views.apply_event(event, self.at, stream, self.versions[stream], T0 + self.at * S)


def every_pending_in_order(views: Views, plan: Plan) -> list[str]:
    """The order the queue panel had when it sorted every pending job: those the plan does not hold
    first, by submit; then the plan's positions."""
    pending = [j for j in views.active_jobs() if j.status == "pending"]
    pending.sort(key=lambda j: (plan.jobs[j.job_id].position if j.job_id in plan.jobs else -1, j.position))
    return [j.job_id for j in pending]


def test_a_page_of_pending_jobs_is_the_head_of_them_all_in_order() -> None:
    """The bounded page (the first ``limit`` pending jobs) is what sorting every pending job gave, also
    after changes since the plan: new submits, queued jobs, a dispatch, a start, a retry, a job of the plan
    queued again (now the newest queued), a cancel."""
    log = Log()
    log(NodeRegistered(name="n", host="h", slots=2))
    for i in range(30):
        log(submitted(f"q{i:02}", user=f"u{i % 4}"), JobQueued(job_id=f"q{i:02}", priority=i % 3))
    log(submitted("scanning"))  # not queued yet
    log(JobDispatched(job_id="q00", node="n"), JobDispatched(job_id="q01", node="n"))
    log(JobStarted(job_id="q01", node="n"))
    plan = make_plan(log.views, T0 + log.at * S)
    log(submitted("late"), JobQueued(job_id="late"))  # queued since the plan
    log(JobDispatched(job_id="q05", node="n"))  # dispatched since: still pending, in the plan
    log(JobDispatched(job_id="q06", node="n"), JobRequeued(job_id="q06", attempt=1, reason="node lost"))  # queued last
    log(JobStarted(job_id="q00", node="n"))  # started since: no longer pending
    log(JobRetried(job_id="q01", attempt=1, reason="node lost"))  # back in the queue since the plan
    log(JobFinished(job_id="q07", status="cancelled", reason="cancelled"))
    log(submitted("new"))
    everything = every_pending_in_order(log.views, plan)
    views = log.views
    outside = {j.job_id for j in views.active_jobs() if j.status == "pending" and j.phase != "queued"}
    assert set(views.unqueued) == outside
    assert [entry.position for entry in plan.jobs.values()] == list(range(len(plan.jobs)))  # GET /api/queue pages so
    assert {"late", "new", "scanning", "q01"} <= set(everything)
    assert "q00" not in everything
    for limit in (1, 2, 3, 5, 10, 29, 40):
        assert [j.job_id for j in pending_in_order(log.views, plan, limit)] == everything[:limit]
