"""A user's fair-share account: the policy an admin set (share, priority, caps) and the decayed usage.

Pure domain: the policy fold (``evolve_policy``), its decide step, and the arithmetic of usage decay
and of the queue score (docs/design.md, "Fair share"). Usage is GPU-seconds kept as a value at an
instant, ``(usage_gpu_s, usage_at)``; its value at any later ``t`` is exact and needs no fold:
``usage_gpu_s * 2 ** (-(t - usage_at) / half_life)``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import msgspec

from ledger.domain.errors import DomainError
from ledger.domain.events import AnyEvent, UserPolicySet

DEFAULT_HALF_LIFE_S = 7 * 86_400.0
HALF_LIFE_STREAM = "fairshare-cluster"  # the one stream of fairshare.half_life_set
PRIORITY_LEVELS = {"low": -1, "normal": 0, "high": 1}
MIN_PRIORITY, MAX_PRIORITY = -10, 10
US = 1_000_000


class UserShare(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """One user's account: policy from ``user.policy_set``, usage folded from the user's jobs."""

    user_id: str
    share: float = 1.0
    priority: int = 0
    max_active_jobs: int | None = None
    max_gpus: int | None = None
    version: int = 0  # of the user's stream (0: no policy event yet, the defaults apply)
    set_by: str | None = None
    reason: str | None = None
    usage_gpu_s: float = 0.0  # decayed GPU-seconds of ended attempts, as of ``usage_at``
    usage_at: int = 0  # microseconds
    notify: list[str] = []  # the user's default notify targets (user.notify_set): jobs naming none get these


def evolve_policy(account: UserShare | None, event: UserPolicySet) -> UserShare:
    """The policy event replaces the whole policy; the usage stays."""
    base = account or UserShare(user_id=event.user_id)
    return msgspec.structs.replace(
        base,
        share=event.share,
        priority=event.priority,
        max_active_jobs=event.max_active_jobs,
        max_gpus=event.max_gpus,
        version=base.version + 1,
        set_by=event.by,
        reason=event.reason or None,
    )


def decide_policy(policy: UserPolicySet) -> list[AnyEvent]:
    """Bounds every value an admin may set (the API and the CLI say the same; a 400 over HTTP)."""
    if not math.isfinite(policy.share) or not 0 < policy.share <= 1_000_000:
        raise DomainError("share must be a number above 0 (at most 1000000)")
    if not MIN_PRIORITY <= policy.priority <= MAX_PRIORITY:
        raise DomainError(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}")
    for name in ("max_active_jobs", "max_gpus"):
        value = getattr(policy, name)
        if value is not None and not 0 <= value <= 1_000_000:
            raise DomainError(f"{name} must be 0 (unlimited) to 1000000, or default")
    if not valid_user_id(policy.user_id):
        raise DomainError("user id must be 1..128 characters, no spaces or control characters")
    return [policy]


USER_ID_PATTERN = r"^[^\x00-\x20\x7f-\x9f]{1,128}$"  # no control character, no space (also the API's schema)


def valid_user_id(user_id: str) -> bool:
    return re.fullmatch(USER_ID_PATTERN, user_id) is not None


def job_priority(asked: int | None, allowed: int) -> int:
    """A job's level: what it asked for, never above its user's (a lowered policy lowers it too)."""
    return allowed if asked is None else min(asked, allowed)


# --- usage ---------------------------------------------------------------------------------------


def decay(value: float, since_us: int, now_us: int, half_life_s: float) -> float:
    """``value`` at ``since_us``, decayed to ``now_us`` (never grows: a clock step back decays nothing)."""
    if value == 0.0 or now_us <= since_us:
        return value
    return value * float(2.0 ** (-(now_us - since_us) / US / half_life_s))


def run_usage(gpus: int, started_us: int, until_us: int, half_life_s: float) -> float:
    """GPU-seconds of a run, each second decayed from when it was used to ``until_us``: the exact
    integral of ``gpus * 2^(-(until - u)/h)`` over the run (plain ``gpus * seconds`` for short runs)."""
    seconds = max(0, until_us - started_us) / US
    if seconds == 0.0:
        return 0.0
    rate = math.log(2) / half_life_s
    return float(gpus * -math.expm1(-rate * seconds) / rate)


def usage_now(account: UserShare, now_us: int, half_life_s: float) -> float:
    return decay(account.usage_gpu_s, account.usage_at, now_us, half_life_s)


def charged(account: UserShare, usage: float, at_us: int, half_life_s: float) -> UserShare:
    """The account with ``usage`` (GPU-seconds as of ``at_us``) added; the value is re-based to ``at_us``."""
    base = usage_now(account, at_us, half_life_s) if at_us > account.usage_at else account.usage_gpu_s
    return msgspec.structs.replace(account, usage_gpu_s=base + usage, usage_at=max(at_us, account.usage_at))


def rebased(account: UserShare, at_us: int, half_life_s: float) -> UserShare:
    """The usage expressed at ``at_us`` (before the half-life changes there); nothing has no instant."""
    if at_us <= account.usage_at or account.usage_gpu_s == 0.0:
        return account
    return msgspec.structs.replace(account, usage_gpu_s=usage_now(account, at_us, half_life_s), usage_at=at_us)


# --- the score -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """The queue score's weights and the age cap (settings FAIRSHARE_*)."""

    fairshare: float = 1.0
    age: float = 0.25
    priority: float = 1.0
    age_max_s: float = 86_400.0


def fairshare_factor(usage: float, total_usage: float, share: float, total_shares: float) -> float:
    """Slurm's classic factor ``2^(-U/S)``: U the user's part of all decayed usage, S their part of the
    shares of the users with jobs in the system. 1 for a user who used nothing, 0.5 at exactly their share."""
    if usage <= 0.0 or total_usage <= 0.0 or total_shares <= 0.0:
        return 1.0
    return float(2.0 ** (-(usage / total_usage) / (share / total_shares)))


def age_factor(waited_us: int, age_max_s: float) -> float:
    """0 when just queued, 1 after ``age_max_s`` of waiting (and from then on)."""
    if age_max_s <= 0:
        return 0.0
    return min(max(waited_us, 0) / US / age_max_s, 1.0)


def score(fairshare: float, age: float, priority: int, weights: Weights) -> float:
    return weights.fairshare * fairshare + weights.age * age + weights.priority * priority
