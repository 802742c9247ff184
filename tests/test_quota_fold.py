"""Given job events at chosen instants, when the views fold them, then each user's daily quota use is this."""

from __future__ import annotations

import msgspec
import pytest

from ledger.domain.errors import QuotaExceeded
from ledger.domain.events import (
    AnyEvent,
    Blob,
    JobDispatched,
    JobEnvFailed,
    JobEnvReady,
    JobFinished,
    JobQueued,
    JobRequeued,
    JobRetried,
    JobStarted,
    JobSubmitted,
    RetryPolicy,
    encode_event,
    stream_of,
)
from ledger.domain.quotas import DAY_US, HOUR_US, QuotaLimits, exhausted, figures
from ledger.domain.shares import run_usage
from ledger.store.commands import SubmitLimits, submit_job
from projections.replay import replay
from projections.views import Views

DAY = 20_000 * DAY_US  # a UTC midnight
H = HOUR_US


def job(job_id: str, gpus: int = 1) -> JobSubmitted:
    return JobSubmitted(
        job_id=job_id,
        user_id="alice",
        competition_id="c",
        project_id="p",
        expected_time_s=60,
        code=Blob(digest="0" * 64, size=1),
        gpus=gpus,
        retry=RetryPolicy(retries=1, on=["node_lost"]),
    )


def ran(job_id: str, at: int, hours: float, reason: str = "exit_zero", attempt: int = 1) -> list[tuple[int, AnyEvent]]:
    """Dispatched and started at ``at``, ended ``hours`` later with ``reason``."""
    status = "completed" if reason == "exit_zero" else "failed"
    end = JobFinished(job_id=job_id, status=status, reason=reason, attempt=attempt)  # type: ignore[arg-type]
    return [
        (at, JobDispatched(job_id=job_id, node="n", attempt=attempt)),
        (at, JobStarted(job_id=job_id, node="n", attempt=attempt)),
        (at + int(hours * H), end),
    ]


def submitted(job_id: str, at: int, gpus: int = 1) -> list[tuple[int, AnyEvent]]:
    return [(at, job(job_id, gpus)), (at, JobQueued(job_id=job_id))]


def fold(timeline: list[tuple[int, AnyEvent]]) -> Views:
    """The live fold of ``timeline`` (instants in order); a replay of the same rows must agree."""
    views, rows, versions = Views(), [], {}
    for position, (at, event) in enumerate(timeline, start=1):
        stream = stream_of(event)
        versions[stream] = versions.get(stream, 0) + 1
        views.apply_event(event, position, stream, versions[stream], at)
        rows.append((position, stream, versions[stream], encode_event(event), at))
    replayed = replay(rows)
    encode = msgspec.json.encode
    assert encode(sorted(replayed.users.items())) == encode(sorted(views.users.items()))
    return views


def used(views: Views, now: int) -> tuple[float, float]:
    submissions, hours = figures(views.users["alice"].quota, QuotaLimits(submissions=5, gpu_hours=10), now)
    return submissions.used, hours.used


def test_submissions_and_gpu_hours_count_on_the_day() -> None:
    """Two jobs, one of 2 GPUs for 1.5 h and one failing by itself after 1 h: 2 submissions, 4 GPU-hours."""
    views = fold([*submitted("a", DAY + H, gpus=2), *ran("a", DAY + H, 1.5), *submitted("b", DAY + 3 * H),
                  *ran("b", DAY + 3 * H, 1, "exit_nonzero")])  # fmt: skip
    assert used(views, DAY + 5 * H) == (2, 4.0)


def test_the_day_resets_at_utc_midnight() -> None:
    """Yesterday's use counts for nothing today, with or without an event since midnight."""
    views = fold([*submitted("a", DAY + 20 * H), *ran("a", DAY + 20 * H, 2)])
    assert used(views, DAY + 23 * H) == (1, 2.0)
    assert used(views, DAY + DAY_US) == (0, 0.0)
    views = fold([*submitted("a", DAY + 20 * H), *ran("a", DAY + 20 * H, 2), *submitted("b", DAY + 25 * H)])
    assert used(views, DAY + 25 * H) == (1, 0.0)


@pytest.mark.parametrize("reason", ["node_lost", "dispatch_failed", "sandbox_failed", "lost"])
def test_platform_failures_are_refunded(reason: str) -> None:
    """A job ended by the platform gives its submission back and charges no GPU time."""
    views = fold([*submitted("a", DAY + H), *ran("a", DAY + H, 3, reason), *submitted("b", DAY + 5 * H)])
    assert used(views, DAY + 6 * H) == (1, 0.0)


def test_a_lost_attempt_that_is_retried_costs_nothing_but_the_next_one_does() -> None:
    """Attempt 1 lost after 2 h (retried), attempt 2 completes after 1 h: one submission, 1 GPU-hour."""
    views = fold([*submitted("a", DAY + H), *ran("a", DAY + H, 2)[:2],
                  (DAY + 3 * H, JobRetried(job_id="a", attempt=1, reason="node_lost")),
                  *ran("a", DAY + 4 * H, 1, attempt=2)])  # fmt: skip
    assert used(views, DAY + 6 * H) == (1, 1.0)
    stats = views.users["alice"]
    assert (stats.total, stats.completed, stats.failed, stats.running, stats.pending) == (1, 1, 0, 0, 0)


def test_a_refund_for_a_day_already_over_gives_nothing_back() -> None:
    """Submitted yesterday, lost today: today's count is not lowered below what today used."""
    views = fold(
        [*submitted("a", DAY + 23 * H), *submitted("b", DAY + 25 * H), *ran("a", DAY + 23 * H, 3, "node_lost")]
    )
    assert used(views, DAY + 27 * H) == (1, 0.0)


def test_a_used_up_quota_names_itself_and_its_reset() -> None:
    """At the limit the check answers which quota, used, left and the next midnight; under it, nothing."""
    views = fold([*submitted("a", DAY + H), *ran("a", DAY + H, 2), *submitted("b", DAY + 4 * H)])
    today = views.users["alice"].quota
    assert exhausted(today, QuotaLimits(submissions=3, gpu_hours=3), DAY + 5 * H) is None
    figure = exhausted(today, QuotaLimits(submissions=0, gpu_hours=2), DAY + 5 * H)
    assert figure is not None
    assert (figure.quota, figure.used, figure.left, figure.resets_at_us) == ("gpu_hours", 2.0, 0.0, DAY + DAY_US)


def test_submit_over_quota_is_refused_with_the_details() -> None:
    """The submit command's decide step raises QuotaExceeded carrying the figures and Retry-After."""
    views = fold(submitted("a", DAY + H))
    write = submit_job(job("b"), static_scan=None, review_pending=False,
                       limits=SubmitLimits(max_active=0, per_minute=0, quotas=QuotaLimits(submissions=1)),
                       now=DAY + 2 * H, actor="t", fingerprint=b"")  # fmt: skip
    with pytest.raises(QuotaExceeded) as refused:
        write.decide(views)
    assert refused.value.details["quota"] == "submissions"
    assert (refused.value.details["used"], refused.value.details["left"]) == (1, 0)
    assert refused.value.details["resets_at"] == "2024-10-05T00:00:00.000000Z"
    assert refused.value.retry_after == 22 * 3600


def test_a_used_up_gpu_hours_quota_refuses_gpu_jobs_but_not_cpu_only_ones() -> None:
    """Two GPU-hours used of two: a one-GPU submit is refused, a ``gpus: 0`` one holds no GPU and goes in."""
    views = fold([*submitted("a", DAY + H), *ran("a", DAY + H, 2)])
    limits = SubmitLimits(max_active=0, per_minute=0, quotas=QuotaLimits(gpu_hours=2))
    gpu = submit_job(job("b"), static_scan=None, review_pending=False, limits=limits,
                     now=DAY + 4 * H, actor="t", fingerprint=b"")  # fmt: skip
    with pytest.raises(QuotaExceeded) as refused:
        gpu.decide(views)
    assert refused.value.details["quota"] == "gpu_hours"
    cpu = submit_job(job("c", gpus=0), static_scan=None, review_pending=False, limits=limits,
                     now=DAY + 4 * H, actor="t", fingerprint=b"")  # fmt: skip
    assert isinstance(next(iter(cpu.decide(views))), JobSubmitted)


def test_a_retried_attempt_ends_its_usage_in_the_fair_share_fold() -> None:
    """job.retried ends the attempt's fair-share usage (2 h of one GPU), and before the next one starts."""
    views = fold([*submitted("a", DAY + H), *ran("a", DAY + H, 2)[:2],
                  (DAY + 3 * H, JobRetried(job_id="a", attempt=1, reason="node_lost"))])  # fmt: skip
    after_retry = views.shares["alice"]
    expected = run_usage(1, DAY + H, DAY + 3 * H, views.half_life_s)  # two hours, decayed within the run
    assert (after_retry.usage_at, after_retry.usage_gpu_s) == (DAY + 3 * H, expected)
    assert 7100 < expected < 7200


def test_an_environment_set_up_is_charged_with_the_run_it_prepared() -> None:
    """A 1 h set-up (job.env_ready) before a 1 h run of 2 GPUs costs 4 GPU-hours and fair share from the set-up."""
    ready = JobEnvReady(job_id="a", digest="d", hit=False, seconds=3600.0, attempt=1)
    end = JobFinished(job_id="a", status="completed", reason="exit_zero", attempt=1)
    views = fold([*submitted("a", DAY, gpus=2), (DAY, JobDispatched(job_id="a", node="n", attempt=1)),
                  (DAY + H, ready), (DAY + H, JobStarted(job_id="a", node="n", attempt=1)),
                  (DAY + 2 * H, end)])  # fmt: skip
    assert used(views, DAY + 3 * H) == (1, 4.0)
    account = views.shares["alice"]
    assert account.usage_gpu_s == run_usage(2, DAY, DAY + 2 * H, views.half_life_s)
    assert views.jobs["a"].charged_from == DAY


def test_a_failed_set_up_is_charged_like_a_run_and_never_refunded() -> None:
    """job.env_failed with the attempt's end: its 30 minutes of one GPU count, the submission is not given back."""
    spent = JobEnvFailed(job_id="a", seconds=1800.0, attempt=1)
    end = JobFinished(job_id="a", status="failed", reason="env_setup_failed", attempt=1)
    views = fold([*submitted("a", DAY), (DAY, JobDispatched(job_id="a", node="n", attempt=1)),
                  (DAY + H, spent), (DAY + H, end)])  # fmt: skip
    assert used(views, DAY + 2 * H) == (1, 0.5)
    assert views.shares["alice"].usage_gpu_s == run_usage(1, DAY + H // 2, DAY + H, views.half_life_s)


def test_a_set_up_cannot_be_charged_from_before_its_dispatch() -> None:
    """A set-up that reports more seconds than passed since the dispatch is charged from the dispatch."""
    spent = JobEnvFailed(job_id="a", seconds=7200.0, attempt=1)
    end = JobFinished(job_id="a", status="failed", reason="env_setup_failed", attempt=1)
    views = fold([*submitted("a", DAY), (DAY + H, JobDispatched(job_id="a", node="n", attempt=1)),
                  (DAY + 2 * H, spent), (DAY + 2 * H, end)])  # fmt: skip
    assert used(views, DAY + 3 * H) == (1, 1.0)


def test_a_set_up_cut_short_by_a_lost_node_costs_nothing() -> None:
    """Requeued during its set-up (node lost): neither the quota nor fair share is charged for it."""
    ready = JobEnvReady(job_id="a", digest="d", hit=False, seconds=1800.0, attempt=1)
    views = fold([*submitted("a", DAY), (DAY, JobDispatched(job_id="a", node="n", attempt=1)),
                  (DAY + H, ready), (DAY + H, JobRequeued(job_id="a", attempt=1, reason="node_lost"))])  # fmt: skip
    assert used(views, DAY + 2 * H) == (1, 0.0)
    assert "alice" not in views.shares or views.shares["alice"].usage_gpu_s == 0.0
    assert views.jobs["a"].charged_from is None
