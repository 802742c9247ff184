"""Property tests: random command sequences keep the ledger verifiable; any altered byte is detected."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import apsw
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cli.main import main as cli_main
from ledger.domain.errors import InvalidTransition, NotFound
from ledger.domain.events import (
    AnyEvent,
    Artifact,
    Blob,
    HalfLifeSet,
    JobArtifactsPruned,
    JobArtifactsStored,
    JobEnvFailed,
    JobEnvReady,
    JobFinished,
    JobScanned,
    JobSubmitted,
    NodeRegistered,
    RetryPolicy,
    TokenIssued,
    UserPolicySet,
)
from ledger.domain.jobs import (
    JobState,
    decide_cancel,
    decide_dispatch,
    decide_finish,
    decide_queue,
    decide_requeue,
    decide_scan,
    decide_start,
)
from ledger.domain.nodes import decide_drain, decide_health, decide_register, decide_undrain
from ledger.domain.retries import decide_attempt_end
from ledger.domain.shares import decide_policy
from ledger.domain.tokens import TokenState, decide_issue, decide_revoke, secret_digest
from ledger.store import commands
from ledger.store.retention import artifact_prune_write, plan_artifact_prune
from ledger.store.store import EventStore, Write, read_after
from projections import tables
from projections.audit import verify, views_until
from projections.live import open_store
from projections.views import Views

JOBS, NODES, USERS, TOKENS = ["j0", "j1", "j2", "j3"], ["n0", "n1"], ["u0", "u1"], ["t0", "t1", "t2"]
jobs, nodes = st.sampled_from(JOBS), st.sampled_from(NODES)
advance = st.tuples(st.just("advance"), jobs, st.integers(1, 6))  # that many next lifecycle steps
command = st.one_of(
    advance,
    advance,
    advance,
    st.tuples(st.just("submit"), jobs, st.sampled_from(USERS)),
    st.tuples(st.just("scan"), jobs, st.sampled_from(["approved", "warned", "rejected", "pending"])),
    st.tuples(st.just("queue"), jobs),
    st.tuples(st.just("dispatch"), jobs, nodes),
    st.tuples(st.just("start"), jobs, st.integers(0, 1)),
    st.tuples(st.just("cancel"), jobs),
    st.tuples(
        st.just("finish"),
        jobs,
        st.sampled_from(["completed", "failed", "cancelled"]),
        st.integers(0, 2),
        st.sampled_from(["r", "node_lost"]),  # node_lost: retried once (submit's policy), refunded at the end
    ),
    st.tuples(st.just("requeue"), jobs, st.integers(0, 1)),
    st.tuples(st.sampled_from(["drain", "undrain"]), nodes),
    st.tuples(st.just("health"), nodes, st.booleans()),
    st.tuples(st.just("issue"), st.sampled_from(TOKENS), st.sampled_from(USERS)),
    st.tuples(st.just("revoke"), st.sampled_from(TOKENS)),
    st.tuples(st.just("policy"), st.sampled_from(USERS), st.sampled_from([0.5, 1.0, 2.0])),
    st.tuples(st.just("half_life"), st.sampled_from([60.0, 3600.0, 604800.0])),
    st.tuples(st.just("env_ready"), jobs, st.sampled_from([0.0, 2.5])),  # set-up seconds, charged with the run
    st.tuples(st.just("env_failed"), jobs, st.sampled_from([0.5, 30.0])),
)
batches = st.lists(st.lists(command, min_size=1, max_size=4), min_size=1, max_size=12)
# the artifact quota's fold too (tests/test_snapshots.py draws these, and other events after a job's end)
with_artifacts = st.one_of(
    command,
    st.tuples(st.just("end_with_artifacts"), jobs, st.integers(0, 800)),  # against a 1000-byte quota
    st.tuples(st.just("prune_artifacts"), jobs),
)
artifact_batches = st.lists(st.lists(with_artifacts, min_size=1, max_size=4), min_size=1, max_size=12)


def job_of(views: Views, job_id: str) -> JobState:
    if job_id not in views.jobs:
        raise NotFound(f"Job {job_id} not found")
    return views.jobs[job_id]


def token_of(views: Views, token_id: str) -> TokenState:
    if token_id not in views.tokens:
        raise NotFound(f"Token {token_id} not found")
    return views.tokens[token_id]


def dispatch(views: Views, job_id: str, node: str) -> list[AnyEvent]:
    """Dispatch to slot 0 of a node that is up and idle, as the scheduler would."""
    if views.nodes[node].status != "up" or views.node_jobs.get(node):
        raise InvalidTransition(f"node {node} cannot take a job")
    return decide_dispatch(job_of(views, job_id), node=node, slots=[0], workdir=f"/w/{job_id}")


def next_step(views: Views, job_id: str) -> list[AnyEvent]:
    """The natural next event of a job's lifecycle (submit, scan, queue, dispatch, start, finish)."""
    job = views.jobs.get(job_id)
    if job is None:
        return [
            JobSubmitted(
                job_id=job_id,
                user_id=USERS[JOBS.index(job_id) % 2],
                competition_id="c",
                project_id="p",
                expected_time_s=60,
                code=Blob(digest="0" * 64, size=1),
            )
        ]
    if job.phase == "scanning" or (job.phase == "submitted" and job.scan_verdict is None):
        return decide_scan(job, JobScanned(job_id=job_id, verdict="approved"))
    if job.phase == "submitted":
        return decide_queue(job)
    if job.phase == "queued":
        free = [n for n in NODES if views.nodes[n].status == "up" and not views.node_jobs.get(n)]
        return dispatch(views, job_id, (free or NODES)[0])
    if job.phase == "dispatched":
        return decide_start(job, attempt=job.attempt, pid=9, pgid=9)
    return decide_finish(
        job, JobFinished(job_id=job_id, status="completed", reason="exit_zero", exit_code=0, attempt=job.attempt)
    )


def end_with_artifacts(views: Views, job_id: str, size: int) -> Sequence[AnyEvent]:
    """The runner's finish step with one artifact of ``size`` bytes, under a 1000-byte quota."""
    job = job_of(views, job_id)
    ended = JobFinished(job_id=job_id, status="completed", reason="exit_zero", exit_code=0, attempt=job.attempt)
    kept = JobArtifactsStored(job_id=job_id, files=[Artifact(path="outputs/a", size=size, digest="1" * 64)], bytes=size)
    return commands.finish_job(ended, node=job.node or "", artifacts=kept, artifact_quota=1000).decide(views)


def env_ready(views: Views, job_id: str, seconds: float) -> Sequence[AnyEvent]:
    """The runner's report of a ready environment (refused unless the attempt is between dispatch and start)."""
    ready = JobEnvReady(job_id=job_id, digest="d", hit=False, seconds=seconds, attempt=job_of(views, job_id).attempt)
    return commands.env_ready(ready, node="n0").decide(views)


def env_failed(views: Views, job_id: str, seconds: float) -> Sequence[AnyEvent]:
    """The runner's end of an attempt whose set-up failed: job.env_failed with the attempt's end."""
    job = job_of(views, job_id)
    ended = JobFinished(job_id=job_id, status="failed", reason="env_setup_failed", attempt=job.attempt)
    spent = JobEnvFailed(job_id=job_id, seconds=seconds, attempt=job.attempt)
    return commands.finish_job(ended, node=job.node or "", env_failed=spent).decide(views)


def prune_artifacts(views: Views, job_id: str) -> Sequence[AnyEvent]:
    """Retention's step for one job's artifacts (refused before it ended or once pruned)."""
    planned = plan_artifact_prune([job_of(views, job_id)], set(), reason="r", by="prop")
    return artifact_prune_write(planned, by="prop").decide(views)


def settled(job: JobState) -> tuple[str, int]:
    """A terminal job's status and version, less the one version its artifacts' pruning adds after the end."""
    return job.status, job.version - (job.artifacts_pruned_at is not None)


def to_write(cmd: tuple) -> Write:  # type: ignore[type-arg]
    """The Write for one generated command; its decide step may refuse it."""
    kind, target, *args = cmd
    deciders: dict[str, Callable[[Views], Sequence[AnyEvent]]] = {
        "advance": lambda v: next_step(v, target),  # repeated args[0] times by writes_of
        "submit": lambda v: [
            JobSubmitted(
                job_id=target,
                user_id=args[0],
                competition_id="c",
                project_id="p",
                expected_time_s=60,
                code=Blob(digest="0" * 64, size=1),
                retry=RetryPolicy(retries=1, on=["node_lost"]),
            )
        ],
        "scan": lambda v: decide_scan(job_of(v, target), JobScanned(job_id=target, verdict=args[0])),
        "queue": lambda v: decide_queue(job_of(v, target)),
        "dispatch": lambda v: dispatch(v, target, args[0]),
        "start": lambda v: decide_start(job_of(v, target), attempt=job_of(v, target).attempt + args[0], pid=9, pgid=9),
        "cancel": lambda v: decide_cancel(job_of(v, target), by="admin"),
        "finish": lambda v: decide_attempt_end(
            job_of(v, target), JobFinished(job_id=target, status=args[0], reason=args[2], attempt=args[1])
        ),
        "requeue": lambda v: decide_requeue(
            job_of(v, target), attempt=job_of(v, target).attempt + args[0], reason="node_lost"
        ),
        "drain": lambda v: decide_drain(v.nodes[target], by="admin"),
        "undrain": lambda v: decide_undrain(v.nodes[target], by="admin"),
        "health": lambda v: decide_health(v.nodes[target], healthy=args[0], reason="probe"),
        "issue": lambda v: decide_issue(
            TokenIssued(
                token_id=target,
                user_id=args[0],
                is_admin=False,
                expires_at="2030-01-01",
                secret_sha256=secret_digest(target),
                by="admin",
            ),
            existing_for_user=v.tokens_of(args[0]),
            secret_in_use=secret_digest(target) in v.tokens_by_secret,
        ),
        "revoke": lambda v: decide_revoke(token_of(v, target), by="admin"),
        "policy": lambda v: decide_policy(UserPolicySet(user_id=target, share=args[0], by="admin")),
        "half_life": lambda v: [HalfLifeSet(half_life_s=target)],
        "end_with_artifacts": lambda v: end_with_artifacts(v, target, args[0]),
        "prune_artifacts": lambda v: prune_artifacts(v, target),
        "env_ready": lambda v: env_ready(v, target, args[0]),
        "env_failed": lambda v: env_failed(v, target, args[0]),
    }
    expected = {f"job-{target}": 0} if kind == "submit" else {}
    return Write(decide=deciders[kind], actor="prop", expected=expected)


def writes_of(batch: list[tuple]) -> list[Write]:  # type: ignore[type-arg]
    return [to_write(cmd) for cmd in batch for _ in range(cmd[2] if cmd[0] == "advance" else 1)]


def new_store(directory: str) -> EventStore:
    store = open_store(Path(directory) / "ledger.db")
    store.execute(
        [Write(decide=lambda v, n=n: decide_register(v.nodes.get(n), NodeRegistered(name=n, host="h"))) for n in NODES]
    )
    return store


def snapshot(views: Views) -> tuple[object, ...]:
    """Everything the views hold that a reader can observe."""
    return (
        list(tables.view_rows(views)),
        views.position,
        views.recorded_at,
        views.stream_versions,
        [j.job_id for j in views.queue()],
        list(views.active.items()),  # the read models' own states of the unfinished jobs
        list(views.queued),
        sorted(views.unqueued),  # a set: its readers sort it (the queue's order above is compared as kept)
        views.tokens_by_secret,
        {n: sorted(j) for n, j in views.node_jobs.items()},
        {u: [j.job_id for j in views.newest_jobs(user_id=u, status=None, limit=10**6)] for u in sorted(views.users)},
        [j.job_id for j in views.finished_since(0)],
        [j.job_id for j in views.newest_jobs(user_id=None, status=None, limit=10**6)],
        views.minutes,
        views.half_life_s,
        views.hours,
        list(views.user_order),
        list(views.active_users),
        views.job_counts,
        views.user_active,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(artifact_batches)
def test_random_commands_keep_ledger_sound(plan: list[list[tuple]]) -> None:  # type: ignore[type-arg]
    """Any mix of valid and refused commands: chain and projections verify, terminal jobs stay put, reopen
    and replay agree."""
    with tempfile.TemporaryDirectory() as directory:
        store = new_store(directory)
        for batch in plan:
            before = {j: settled(s) for j, s in store.views.jobs.items() if s.is_terminal}
            store.execute(writes_of(batch))
            assert {j: settled(store.views.jobs[j]) for j in before} == before
        ended: set[str] = set()
        for record in read_after(store.conn, 0):
            late = type(record.event) is JobArtifactsPruned  # retention's, after the end by design
            assert late or record.stream not in ended, f"event after job.finished at {record.position}"
            if isinstance(record.event, JobFinished):
                ended.add(record.stream)
        assert verify(store.conn) == []
        live = snapshot(store.published)  # the read models folded after each commit, with the writer's state
        assert snapshot(views_until(store.conn)) == live  # the replay's one fold agrees with both live folds
        assert list(tables.view_rows(store.views)) == live[0]  # the writer's own state, unpublished
        store.close()
        reopened = open_store(Path(directory) / "ledger.db")
        assert snapshot(reopened.published) == live
        reopened.close()


LIFECYCLE = [
    ("submit", "j0", "u0"),
    ("scan", "j0", "approved"),
    ("queue", "j0"),
    ("dispatch", "j0", "n0"),
    ("start", "j0", 0),
    ("finish", "j0", "completed", 1, "r"),
    ("submit", "j1", "u1"),
    ("cancel", "j1"),
    ("drain", "n1"),
    ("issue", "t0", "u0"),
    ("issue", "t1", "u0"),
    ("revoke", "t1"),
]
TAMPERABLE = ["payload", "stream", "type", "actor", "recorded_at", "version", "hash", "prev_hash"]


@pytest.fixture(scope="module")
def sound_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sound")
    store = new_store(str(directory))
    for cmd in LIFECYCLE:
        store.execute([to_write(cmd)])
    assert verify(store.conn) == []
    store.close()
    return directory / "ledger.db"


def tampered_copy(source: Path, directory: Path, row: int, column: str, index: int, mask: int) -> Path:
    """A copy of ``source`` with one byte of one stored event changed (the append-only triggers dropped)."""
    target = directory / "tampered.db"
    conn, original = apsw.Connection(str(target)), apsw.Connection(str(source))
    with conn.backup("main", original, "main") as copy:
        copy.step()
    original.close()
    count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    position = row % count + 1
    (value,) = conn.execute(f"SELECT {column} FROM events WHERE position = ?", (position,)).fetchone()
    if isinstance(value, int):
        changed: object = value ^ (mask << 8 * (index % 7))
    else:
        raw = bytearray(value.encode() if isinstance(value, str) else value)
        raw[index % len(raw)] ^= mask & 0x7F if isinstance(value, str) else mask
        changed = raw.decode() if isinstance(value, str) else bytes(raw)
    with conn:
        conn.execute("DROP TRIGGER events_are_append_only_update")
        conn.execute(f"UPDATE events SET {column} = ? WHERE position = ?", (changed, position))
    conn.close()
    return target


def audit_cli(db: Path) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["audit", "verify", "--db", str(db)])
    return code, stderr.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(0, 100), column=st.sampled_from(TAMPERABLE), index=st.integers(0, 200), mask=st.integers(1, 255))
def test_any_altered_byte_fails_verify(sound_ledger: Path, row: int, column: str, index: int, mask: int) -> None:
    """Changing one byte of any stored event makes verify and `audit verify` fail, naming a position."""
    assume(column not in ("stream", "type", "actor") or mask & 0x7F)
    with tempfile.TemporaryDirectory() as directory:
        try:
            db = tampered_copy(sound_ledger, Path(directory), row, column, index, mask)
        except apsw.ConstraintError:  # e.g. a stream renamed onto another stream's (stream, version)
            assume(False)
        conn = apsw.Connection(str(db))
        problems = verify(conn)
        conn.close()
        assert problems
        assert problems[0].position is not None
        code, message = audit_cli(db)
        assert code == 1
        assert f"FAILED: position {problems[0].position}:" in message


def test_audit_cli_process_exit_codes(sound_ledger: Path, tmp_path: Path) -> None:
    """The real `gpuledger audit verify` exits 0 on the sound ledger and 1 naming the altered position."""

    def run(db: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "audit", "verify", "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run(sound_ledger).returncode == 0
    result = run(tampered_copy(sound_ledger, tmp_path, row=4, column="payload", index=3, mask=1))
    assert result.returncode == 1
    assert "FAILED: position 5:" in result.stderr
