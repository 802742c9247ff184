"""One visibility rule: every reader that hides another user's job asks ``ledger.domain.tokens.may_see``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from server import config_yaml, running, submit, wait_status

from api.accounts import queue_document
from api.auth import Identity
from api.context import resolve_job
from api.present import node_infos
from api.web.deps import can_see
from ledger.domain.errors import NotFound
from ledger.domain.events import (
    AnyEvent,
    Blob,
    JobDispatched,
    JobQueued,
    JobStarted,
    JobSubmitted,
    NodeRegistered,
    stream_of,
)
from ledger.domain.tokens import may_see
from projections.plan import make_plan
from projections.views import Views

T0 = 1_800_000_000_000_000
ADMIN = Identity(token_id="t0", user_id="root", is_admin=True)
ALICE = Identity(token_id="t1", user_id="alice", is_admin=False)
BOB = Identity(token_id="t2", user_id="bob", is_admin=False)


def submitted(job_id: str, user: str) -> list[AnyEvent]:
    code = Blob(digest="0" * 64, size=1)
    job = JobSubmitted(job_id=job_id, user_id=user, competition_id="c", project_id="p", expected_time_s=60, code=code)
    return [job, JobQueued(job_id=job_id)]


def views_with(*events: AnyEvent) -> Views:
    views, versions = Views(), {}
    for position, event in enumerate(events, 1):
        stream = stream_of(event)
        versions[stream] = versions.get(stream, 0) + 1
        views.apply_event(event, position, stream, versions[stream], T0)
    return views


@pytest.mark.parametrize("who", [ADMIN, ALICE, BOB, None], ids=["admin", "alice", "bob", "anonymous"])
def test_every_reader_hides_the_same_jobs(who: Identity | None) -> None:
    """Alice's running job and bob's queued one: the web panels, the nodes list, the queue and the job
    lookup show each job's ids exactly to those the rule lets see it (admins all, users their own)."""
    running = [JobDispatched(job_id="a", node="n", slot=0), JobStarted(job_id="a", node="n")]
    node = NodeRegistered(name="n", host="h", slots=1, kind="local")
    views = views_with(node, *submitted("a", "alice"), *running, *submitted("b", "bob"))
    plan = make_plan(views, T0)
    alice_job, bob_job = views.jobs["a"], views.jobs["b"]
    assert may_see(who, "alice") == (who in (ADMIN, ALICE))
    assert can_see(who, alice_job) == may_see(who, "alice")
    assert can_see(who, bob_job) == may_see(who, "bob")
    current = node_infos(views, plan, who, T0)[0].current_job
    assert current is not None
    assert (current.job_id is not None) == may_see(who, "alice")
    if who is None:
        return  # the queue and the job lookup need a signed-in caller
    row = queue_document(views, plan, T0, who, live=True, offset=0, limit=10).queue[0]
    assert (row.job_id is not None) == may_see(who, "bob")
    for job in (alice_job, bob_job):
        if may_see(who, job.user_id):
            assert resolve_job(views, who, job.job_id) is job
        else:
            with pytest.raises(NotFound):
                resolve_job(views, who, job.job_id)


def streamed_jobs(client: Any, after: int = 0, quiet_s: float = 2.0) -> set[str]:
    """The job streams whose events the caller's event stream carries, read until it is quiet."""
    jobs: set[str] = set()
    deadline = time.monotonic() + quiet_s
    with client.stream("GET", f"/api/events/stream?after={after}", timeout=30) as answer:
        for line in answer.iter_lines():  # the stream beats every second while idle
            if line.startswith("data:") and json.loads(line[5:])["stream"].startswith("job-"):
                jobs.add(json.loads(line[5:])["stream"].removeprefix("job-"))
            if time.monotonic() > deadline:
                break
    return jobs


def test_the_event_stream_follows_the_same_rule(tmp_path: Path) -> None:
    """Over HTTP: alice's event stream carries her job's events and not bob's; an admin's carries both."""
    with running(tmp_path, sse_heartbeat_s=1) as server:
        alice, bob = server.token("alice"), server.token("bob")
        jobs = {}
        for user, token in (("alice", alice), ("bob", bob)):
            with server.client(token) as client:
                jobs[user] = submit(client, "print('hi')\n", config_yaml(user)).json()["job_id"]
                wait_status(client, jobs[user], {"completed"})
        with server.client(alice) as client:
            assert streamed_jobs(client) == {jobs["alice"]}
        with server.client(server.admin_token) as client:
            assert streamed_jobs(client) == {jobs["alice"], jobs["bob"]}
