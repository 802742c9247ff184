"""End-of-job notifications: which targets an admin allows (NOTIFY_ALLOWED), what is still owed, and
the decide steps that make each target's outcome a fact at most once.

Pure: no clock, no I/O. Sending lives in ``executors.notify``.
"""

from __future__ import annotations

import fnmatch
import re
from urllib.parse import urlsplit

import msgspec

from ledger.domain.errors import DomainError, InvalidTransition
from ledger.domain.events import (
    AnyEvent,
    NotifyDelivered,
    NotifyFailed,
    NotifyIdleDelivered,
    NotifyIdleFailed,
    UserNotifySet,
)
from ledger.domain.jobs import JobState
from ledger.domain.shares import UserShare

MAX_TARGETS = 8  # per job and per user default: a few people or channels, not a mailing list
MAX_TARGET_CHARS = 2048
WEBHOOK_SCHEMES = ("http", "https")  # a JSON POST of gpuledger's own payload; any other scheme is apprise's
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_UNPRINTABLE = re.compile(r"[\x00-\x20\x7f-\x9f]")


def scheme_and_host(target: str) -> tuple[str, str, str] | None:
    """``(scheme, host, port)`` of a target URL, lower case (port ``""`` when none); None when it is no URL."""
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not _SCHEME.match(scheme) or "://" not in target:
        return None
    return scheme, (parts.hostname or "").lower(), "" if port is None else str(port)


def is_allowed(target: str, allowed: list[str]) -> bool:
    """Whether a pattern of NOTIFY_ALLOWED covers the target: ``SCHEME://HOST[:PORT]``, each part a glob
    (``https://*.example.org``, ``ntfy://ntfy.sh``, ``json://127.0.0.1:*``); no port in a pattern: any."""
    found = scheme_and_host(target)
    if found is None:
        return False
    scheme, host, port = found
    for pattern in allowed:
        want_scheme, _, rest = pattern.lower().partition("://")
        want_host, _, want_port = rest.partition(":")
        if not fnmatch.fnmatchcase(scheme, want_scheme) or not fnmatch.fnmatchcase(host, want_host):
            continue
        if not want_port or fnmatch.fnmatchcase(port, want_port):
            return True
    return False


def target_problem(target: str, allowed: list[str]) -> str | None:
    """Why a target cannot be used (its syntax, or NOTIFY_ALLOWED), naming it; None when it can."""
    shown = shown_target(target)
    if len(target) > MAX_TARGET_CHARS or _UNPRINTABLE.search(target):
        return f"notify target {shown} must be one URL of at most {MAX_TARGET_CHARS} printable characters"
    found = scheme_and_host(target)
    if found is None:
        return f"notify target {shown} is not a URL (SCHEME://...)"
    if found[0] in WEBHOOK_SCHEMES and not found[1]:
        return f"notify target {shown} names no host"
    if not is_allowed(target, allowed):
        if not allowed:
            return f"notify target {shown} refused: this server sends no notifications (NOTIFY_ALLOWED is empty)"
        return f"notify target {shown} refused: not in this server's NOTIFY_ALLOWED ({', '.join(allowed)})"
    return None


def shown_target(target: str) -> str:
    """A target as errors and logs show it: scheme and host only, since paths and users often hold tokens."""
    found = scheme_and_host(target)
    if found is None:
        return repr(target[:40])
    scheme, host, port = found
    return f"{scheme}://{host}{':' + port if port else ''}/..."


def owed(job: JobState) -> list[int]:
    """The targets of an ended job that have no outcome yet (a running job owes nothing yet)."""
    if not job.is_terminal:
        return []
    return [i for i in range(len(job.notify)) if i not in job.notified]


def decide_outcome(job: JobState, outcome: NotifyDelivered | NotifyFailed) -> list[AnyEvent]:
    """One outcome per target of an ended job: a second (a race, a resend after a restart) is refused."""
    if not job.is_terminal:
        raise InvalidTransition(f"job {job.job_id} has not ended: nothing to notify yet")
    if not 0 <= outcome.target < len(job.notify):
        raise InvalidTransition(f"job {job.job_id} has no notify target {outcome.target}")
    if outcome.target in job.notified:
        raise InvalidTransition(f"job {job.job_id} notify target {outcome.target} already has an outcome")
    return [outcome]


def owed_idle(job: JobState, attempt: int) -> list[int]:
    """The targets not yet told of the attempt's job.gpu_idle (none when that attempt was not found idle:
    after a requeue only the current attempt's verdict is known, so only it can be owed at a restart)."""
    if job.gpu_idle is None and attempt == job.attempt:
        return []
    return [i for i in range(len(job.notify)) if (attempt, i) not in job.idle_notified]


def decide_idle_outcome(job: JobState, outcome: NotifyIdleDelivered | NotifyIdleFailed) -> list[AnyEvent]:
    """One outcome per target and idle verdict: a second (a race, a resend after a restart) is refused."""
    if not 0 <= outcome.target < len(job.notify):
        raise InvalidTransition(f"job {job.job_id} has no notify target {outcome.target}")
    if (outcome.attempt, outcome.target) in job.idle_notified:
        raise InvalidTransition(f"job {job.job_id} notify target {outcome.target} was told of that idle GPU already")
    return [outcome]


def decide_default(event: UserNotifySet, allowed: list[str]) -> list[AnyEvent]:
    """A user's default targets: each allowed now, at most ``MAX_TARGETS``, no repeats."""
    check_targets(event.targets, allowed)
    return [event]


def check_targets(targets: list[str], allowed: list[str]) -> None:
    """Raises ``DomainError`` (a 400) naming the first bad target."""
    if len(targets) > MAX_TARGETS:
        raise DomainError(f"Invalid field notify: at most {MAX_TARGETS} targets")
    if len(set(targets)) != len(targets):
        raise DomainError("Invalid field notify: a target is named twice")
    for target in targets:
        problem = target_problem(target, allowed)
        if problem is not None:
            raise DomainError(f"Invalid field notify: {problem}")


def evolve_default(account: UserShare | None, event: UserNotifySet) -> UserShare:
    """The user's account with its default targets replaced (the policy and usage stay)."""
    base = account or UserShare(user_id=event.user_id)
    return msgspec.structs.replace(base, notify=event.targets, version=base.version + 1)
