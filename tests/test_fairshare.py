"""The fair-share fold and the queue score, given/when/then: decay, run usage, shares, priority, ties, caps."""

from __future__ import annotations

import math

import pytest

from executors.dispatcher import dispatch_order
from ledger.domain.errors import DomainError, NotAllowed
from ledger.domain.events import (
    AnyEvent,
    Blob,
    HalfLifeSet,
    JobDispatched,
    JobFinished,
    JobGpuSummary,
    JobQueued,
    JobStarted,
    JobSubmitted,
    NodeRegistered,
    NodeUp,
    UserPolicySet,
    encode_event,
    stream_of,
)
from ledger.domain.gpu import GpuSummary
from ledger.domain.shares import (
    UserShare,
    Weights,
    age_factor,
    decay,
    decide_policy,
    fairshare_factor,
    job_priority,
    run_usage,
)
from ledger.store import commands
from projections import tables
from projections.plan import make_plan, pending_reason
from projections.replay import replay
from projections.views import Views

S = 1_000_000  # microseconds per second
DAY = 86_400
T0 = 1_800_000_000 * S


class Ledger:
    """Views folded event by event with a fake clock, and the rows for a replay of the same log."""

    def __init__(self) -> None:
        self.views = Views()
        self.rows: list[tuple[int, str, int, bytes, int]] = []
        self.versions: dict[str, int] = {}

    def add(self, event: AnyEvent, at: int) -> None:
        stream = stream_of(event)
        version = self.versions[stream] = self.versions.get(stream, 0) + 1
        position = len(self.rows) + 1
        self.views.apply_event(event, position, stream, version, at)
        self.rows.append((position, stream, version, encode_event(event), at))

    def node(self, name: str = "n", slots: int = 2) -> None:
        self.add(NodeRegistered(name=name, host="h", slots=slots, kind="local"), T0)
        self.add(NodeUp(name=name), T0)

    def job(self, job_id: str, user: str, at: int, *, gpus: int = 1, asked: int | None = None) -> None:
        code = Blob(digest="0" * 64, size=1)
        self.add(
            JobSubmitted(
                job_id=job_id,
                user_id=user,
                competition_id="c",
                project_id="p",
                expected_time_s=60,
                code=code,
                gpus=gpus,
                asked_priority=asked,
            ),
            at,
        )
        self.add(JobQueued(job_id=job_id), at)

    def run(self, job_id: str, start: int, end: int | None, *, slots: list[int] | None = None) -> None:
        slots = slots or [0]
        self.add(JobDispatched(job_id=job_id, node="n", slot=slots[0], slots=slots if len(slots) > 1 else []), start)
        self.add(JobStarted(job_id=job_id, node="n"), start)
        if end is not None:
            self.add(JobFinished(job_id=job_id, status="completed", reason="exit_zero", attempt=1), end)


def test_usage_halves_after_one_half_life() -> None:
    """Given 100 GPU-seconds at t0, when one half-life passes, then 50 remain; two: 25; a clock step back: 100."""
    assert decay(100.0, T0, T0 + 7 * DAY * S, 7 * DAY) == pytest.approx(50.0)
    assert decay(100.0, T0, T0 + 14 * DAY * S, 7 * DAY) == pytest.approx(25.0)
    assert decay(100.0, T0, T0 - S, 7 * DAY) == 100.0


def test_a_run_is_charged_gpus_times_seconds_each_second_decayed() -> None:
    """Given a 2-GPU run of 10 s, then ~20 GPU-seconds; a run one half-life long counts h/ln2 * (1 - 1/2) per GPU."""
    assert run_usage(2, T0, T0 + 10 * S, 7 * DAY) == pytest.approx(20.0, rel=1e-4)
    h = 3600.0
    assert run_usage(1, T0, T0 + int(h) * S, h) == pytest.approx(h / math.log(2) / 2)


def test_the_fold_charges_ended_attempts_and_a_replay_gives_the_same_bytes() -> None:
    """Given alice's 2-GPU job ran 100 s and bob's job still runs, when folded live and replayed, then alice is
    charged ~200 GPU-s as of its end, bob nothing yet, and both roads store identical rows."""
    ledger = Ledger()
    ledger.node()
    ledger.job("a", "alice", T0, gpus=2)
    ledger.run("a", T0, T0 + 100 * S, slots=[0, 1])
    ledger.job("b", "bob", T0 + 100 * S)
    ledger.run("b", T0 + 100 * S, None)
    account = ledger.views.shares["alice"]
    assert (account.usage_at, round(account.usage_gpu_s, 1)) == (T0 + 100 * S, 200.0)
    assert "bob" not in ledger.views.shares
    assert list(tables.view_rows(replay(ledger.rows))) == list(tables.view_rows(ledger.views))


def test_a_half_life_change_rebases_usage_and_the_replay_agrees() -> None:
    """Given usage folded with a 1 h half-life, when it becomes 2 h an hour later, then the usage is halved
    there and decays at the new rate; a replay of the same log gives the same bytes."""
    ledger = Ledger()
    ledger.node()
    ledger.add(HalfLifeSet(half_life_s=3600.0), T0)
    ledger.job("a", "alice", T0)
    ledger.run("a", T0, T0 + 10 * S)
    before = ledger.views.shares["alice"].usage_gpu_s
    ledger.add(HalfLifeSet(half_life_s=7200.0), T0 + 10 * S + 3600 * S)
    after = ledger.views.shares["alice"]
    assert after.usage_gpu_s == pytest.approx(before / 2)
    assert ledger.views.half_life_s == 7200.0
    assert list(tables.view_rows(replay(ledger.rows))) == list(tables.view_rows(ledger.views))


def test_idle_gpu_time_is_charged_at_the_rate_its_summary_recorded() -> None:
    """Given two 100 s 2-GPU runs used at 25 %, one summarised with GPU_IDLE_CHARGE_FACTOR 3 and one at
    1, then the first costs 200 + 2 x 75 % x 200 = 500 GPU-s, the second 200; a replay agrees."""
    ledger = Ledger()
    ledger.node()
    summary = GpuSummary(
        gpus=2,
        samples=4,
        mean_util=25.0,
        peak_util=25.0,
        peak_mem_mib=1,
        card_mem_mib=2,
        held_gpu_s=200.0,
        used_gpu_s=50.0,
    )
    for job_id, user, factor in (("a", "alice", 3.0), ("b", "bob", 1.0)):
        ledger.job(job_id, user, T0, gpus=2)
        ledger.run(job_id, T0, None, slots=[0, 1])
        ledger.add(JobGpuSummary(job_id=job_id, attempt=1, summary=summary, idle_charge_factor=factor), T0 + 100 * S)
        ledger.add(JobFinished(job_id=job_id, status="completed", reason="exit_zero", attempt=1), T0 + 100 * S)
    assert ledger.views.shares["alice"].usage_gpu_s == pytest.approx(500.0, rel=1e-4)
    assert ledger.views.shares["bob"].usage_gpu_s == pytest.approx(200.0, rel=1e-4)
    assert list(tables.view_rows(replay(ledger.rows))) == list(tables.view_rows(ledger.views))


def test_the_factor_is_one_without_usage_and_a_half_at_exactly_the_share() -> None:
    """Given no usage, then F = 1; a user who used exactly their part of the shares gets F = 0.5."""
    assert fairshare_factor(0.0, 100.0, 1.0, 2.0) == 1.0
    assert fairshare_factor(50.0, 100.0, 1.0, 2.0) == pytest.approx(0.5)
    assert fairshare_factor(100.0, 100.0, 1.0, 2.0) == pytest.approx(0.25)


def test_a_heavy_user_waits_behind_a_light_user_who_submitted_later() -> None:
    """Given alice used the node for an hour and bob never did, when alice queues first and bob later, then
    bob's job is first, with the higher fair-share factor."""
    ledger = Ledger()
    ledger.node()
    ledger.job("old", "alice", T0)
    ledger.run("old", T0, T0 + 3600 * S)
    ledger.job("a", "alice", T0 + 3600 * S)
    ledger.job("b", "bob", T0 + 3601 * S)
    ranked = ledger.views.ranked(T0 + 3602 * S, Weights())
    assert [r.job.job_id for r in ranked] == ["b", "a"]
    assert ranked[0].fairshare == 1.0 > ranked[1].fairshare


def test_a_larger_share_puts_the_user_first_at_equal_usage() -> None:
    """Given alice and bob used the same GPU time, when alice's share is 2, then alice's job goes first."""
    ledger = Ledger()
    ledger.node()
    ledger.add(UserPolicySet(user_id="alice", share=2.0, by="admin"), T0)
    for job_id, user in (("ra", "alice"), ("rb", "bob")):
        ledger.job(job_id, user, T0)
        ledger.run(job_id, T0, T0 + 100 * S)
    ledger.job("b", "bob", T0 + 100 * S)
    ledger.job("a", "alice", T0 + 101 * S)
    ranked = ledger.views.ranked(T0 + 102 * S, Weights())
    assert [r.job.job_id for r in ranked] == ["a", "b"]


def test_equal_scores_keep_submit_order() -> None:
    """Given two new users' jobs submitted at the same instant, then the earlier position goes first."""
    ledger = Ledger()
    ledger.job("x", "xavier", T0)
    ledger.job("y", "yvonne", T0)
    ranked = ledger.views.ranked(T0 + S, Weights())
    assert [r.job.job_id for r in ranked] == ["x", "y"]
    assert ranked[0].score == ranked[1].score


def test_priority_low_goes_behind_and_a_boost_goes_ahead() -> None:
    """Given three fresh users, when one job asks for low and one user has a boost of 1, then the boosted
    job is first and the low one last, whatever their submit order."""
    ledger = Ledger()
    ledger.add(UserPolicySet(user_id="carol", priority=1, by="admin"), T0)
    ledger.job("low", "alice", T0, asked=-1)
    ledger.job("normal", "bob", T0 + S)
    ledger.job("boosted", "carol", T0 + 2 * S)
    ranked = ledger.views.ranked(T0 + 3 * S, Weights())
    assert [(r.job.job_id, r.priority) for r in ranked] == [("boosted", 1), ("normal", 0), ("low", -1)]


def test_a_job_never_gets_more_than_its_user_is_allowed() -> None:
    """A job's level is what it asked for, capped by its user's: a lowered policy lowers queued jobs too."""
    assert job_priority(None, 2) == 2
    assert job_priority(-1, 0) == -1
    assert job_priority(3, 1) == 1


def test_age_grows_to_one_at_the_cap() -> None:
    """Given AGE_MAX of one day, then half a day of waiting is 0.5, two days 1."""
    assert age_factor(DAY * S // 2, DAY) == pytest.approx(0.5)
    assert age_factor(2 * DAY * S, DAY) == 1.0


def test_submit_refuses_a_priority_above_the_users_and_more_gpus_than_the_cap() -> None:
    """Given bob at level 0 with max_gpus 1, when a job asks for high or 2 GPUs, then it is refused (403)."""
    views = Views()
    views.apply_event(UserPolicySet(user_id="bob", max_gpus=1, by="admin"), 1, "user-bob", 1, T0)
    code = Blob(digest="0" * 64, size=1)
    for asked, gpus, problem in ((1, 1, "priority"), (None, 2, "gpus")):
        submitted = JobSubmitted(
            job_id="j",
            user_id="bob",
            competition_id="c",
            project_id="p",
            expected_time_s=5,
            code=code,
            gpus=gpus,
            asked_priority=asked,
        )
        write = commands.submit_job(
            submitted, static_scan=None, review_pending=False, limits=None, now=T0, actor="t", fingerprint=b""
        )
        with pytest.raises(NotAllowed, match=problem):
            write.decide(views)


def test_a_user_at_their_gpu_cap_is_skipped_by_the_dispatcher() -> None:
    """Given alice holds 1 GPU with max_gpus 1, when alice (first by score) and bob queue, then the dispatcher
    walks bob's job only, and the plan keeps alice's ranked with the cap as its reason."""
    ledger = Ledger()
    ledger.node()
    ledger.add(UserPolicySet(user_id="alice", max_gpus=1, priority=1, by="admin"), T0)
    ledger.job("r", "alice", T0)
    ledger.run("r", T0, None)
    ledger.job("a", "alice", T0 + S)
    ledger.job("b", "bob", T0 + 2 * S)
    assert [j.job_id for j in dispatch_order(ledger.views, T0 + 3 * S, Weights())] == ["b"]
    plan = make_plan(ledger.views, T0 + 3 * S)
    assert (plan.jobs["a"].position, plan.jobs["a"].node) == (0, None)
    assert "GPU cap" in (pending_reason(ledger.views.jobs["a"], plan, ledger.views) or "")


def test_a_policy_change_keeps_the_fields_not_named_and_bounds_the_values() -> None:
    """Given share 2 set, when the priority is set, then the share stays 2; a share of 0 is refused."""
    views = Views()
    events = commands.set_user_policy("u", by="admin", reason="r", share=2.0).decide(views)
    views.apply_event(events[0], 1, "user-u", 1, T0)
    again = commands.set_user_policy("u", by="admin", reason="", priority=1).decide(views)[0]
    assert isinstance(again, UserPolicySet)
    assert (again.share, again.priority) == (2.0, 1)
    with pytest.raises(DomainError, match="share"):
        decide_policy(UserPolicySet(user_id="u", share=0.0, by="admin"))
    assert views.shares["u"] == UserShare(user_id="u", share=2.0, version=1, set_by="admin", reason="r")
