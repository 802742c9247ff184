"""The GPU figures and the idle verdict are pure: given samples and job events, these numbers and events."""

from __future__ import annotations

import pytest
from test_decide_jobs import CANCELLED, RUNNING_JOB, J, given

from ledger.domain.errors import InvalidTransition
from ledger.domain.events import (
    JobDispatched,
    JobFinished,
    JobGpuIdle,
    JobRequeued,
    JobStarted,
    NotifyIdleDelivered,
    NotifyIdleFailed,
    NotifyRequested,
)
from ledger.domain.gpu import GpuSample, idle_evidence, summarise
from ledger.domain.gpu_policy import decide_gpu_idle, idle_ending
from ledger.domain.jobs import evolve_job
from ledger.domain.notify import decide_idle_outcome, owed_idle
from ledger.domain.quotas import charges_of

DISPATCHED_2 = JobDispatched(job_id=J, node="gpu-node-0", attempt=2, workdir="/w/j1.2")
STARTED_2 = JobStarted(job_id=J, node="gpu-node-0", attempt=2, pid=11, pgid=11)


def sample(t: float, util: float, index: int = 0, used: int = 100) -> GpuSample:
    return GpuSample(t=t, index=index, util=util, mem_used=used, mem_total=1000)


def test_used_gpu_time_weights_each_held_gpu_by_its_mean_utilisation() -> None:
    """Used GPU time weights each held GPU by its mean utilisation; no samples, no summary."""
    samples = [sample(0, 50, 0, 300), sample(1, 100, 0, 900), sample(0, 0, 1), sample(1, 0, 1)]
    summary = summarise(samples, gpus=2, held_s=100)
    assert summary is not None
    assert (summary.held_gpu_s, summary.used_gpu_s, summary.peak_util, summary.peak_mem_mib) == (200, 75, 100, 900)
    assert (summary.mean_util, summary.card_mem_mib, summary.samples) == (37.5, 1000, 4)
    assert summarise([], gpus=2, held_s=100) is None  # no telemetry: no figures, never zeros


def test_idle_needs_the_whole_window_below_the_threshold() -> None:
    """Idle only when watched the whole window and every sample in it is below the threshold."""
    quiet = [sample(t, 1) for t in range(0, 61, 5)]
    assert idle_evidence(quiet[:6], window_s=60, below=5) is None  # 25 s watched: too soon to say
    evidence = idle_evidence(quiet, window_s=60, below=5)
    assert evidence is not None
    assert evidence[0].t == 0
    assert len(evidence) <= 12
    assert idle_evidence([*quiet, sample(62, 40)], window_s=60, below=5) is None


def test_a_requeue_verdict_sends_the_killed_attempt_back_to_the_queue_charged() -> None:
    """A requeue verdict sends the killed attempt back to the queue, charged, once; idle again it is cancelled."""
    flagged = decide_gpu_idle(
        given(*RUNNING_JOB), attempt=1, action="requeue", minutes=1, below=5, samples=[sample(0, 0)]
    )
    running = given(*RUNNING_JOB, *flagged)
    with pytest.raises(InvalidTransition):  # flagged once per attempt
        decide_gpu_idle(running, attempt=1, action="requeue", minutes=1, below=5, samples=[])
    ending = idle_ending(running, CANCELLED)
    assert ending == [JobRequeued(job_id=J, attempt=1, reason="gpu_idle")]
    after = evolve_job(running, ending[0], position=99, at=running.started_at + 10**6)  # type: ignore[operator]
    assert (after.phase, after.gpu_idle, after.history[-1].started_at) == ("queued", None, running.started_at)
    assert charges_of(running, after, ending[0], after.queued_at or 0)[0].gpu_us == 10**6
    again = given(*RUNNING_JOB, *flagged, ending[0], DISPATCHED_2, STARTED_2)
    second = decide_gpu_idle(again, attempt=2, action="requeue", minutes=1, below=5, samples=[])
    assert [e.action for e in second] == ["cancel"]  # type: ignore[attr-defined]  # requeued once only


def test_a_cancel_verdict_ends_the_job_with_reason_gpu_idle() -> None:
    """A cancel verdict ends the job cancelled, reason gpu_idle, with the idle message."""
    flagged = decide_gpu_idle(given(*RUNNING_JOB), attempt=1, action="cancel", minutes=2, below=5, samples=[])
    ending = idle_ending(given(*RUNNING_JOB, *flagged), CANCELLED)
    assert isinstance(ending, JobFinished)
    assert (ending.status, ending.reason) == ("cancelled", "gpu_idle")
    assert ending.message == "GPU idle: below 5% utilisation for 2 min; cancelled (gpu_idle)"


def test_each_idle_verdict_is_told_once_per_target_and_a_new_attempts_verdict_again() -> None:
    """notify.gpu_idle_*: one outcome per (attempt, target); the next attempt's verdict is owed afresh."""
    asked = NotifyRequested(job_id=J, targets=["https://a.example.org/x", "https://b.example.org/y"])
    idle = JobGpuIdle(job_id=J, attempt=1, action="requeue", minutes=1, below=5)
    flagged = given(*RUNNING_JOB, asked, idle)
    assert owed_idle(given(*RUNNING_JOB, asked), 1) == []  # never found idle: nothing to tell
    told = NotifyIdleDelivered(job_id=J, attempt=1, target=0, attempts=1)
    assert decide_idle_outcome(flagged, told) == [told]
    after = evolve_job(flagged, told, position=99, at=99)
    assert owed_idle(after, 1) == [1]
    with pytest.raises(InvalidTransition, match="already"):
        decide_idle_outcome(after, NotifyIdleFailed(job_id=J, attempt=1, target=0, attempts=3, error="x"))
    with pytest.raises(InvalidTransition, match="no notify target 2"):
        decide_idle_outcome(after, NotifyIdleDelivered(job_id=J, attempt=1, target=2, attempts=1))
    again = given(
        *RUNNING_JOB, asked, idle, told, JobRequeued(job_id=J, attempt=1, reason="gpu_idle"), DISPATCHED_2, STARTED_2
    )
    assert owed_idle(again, 2) == []  # the new attempt is not idle (yet)
    second = JobGpuIdle(job_id=J, attempt=2, action="cancel", minutes=1, below=5)
    assert owed_idle(evolve_job(again, second, position=99, at=99), 2) == [0, 1]
