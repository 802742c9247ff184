"""Time as the ledger records it: integer microseconds since the Unix epoch, UTC."""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime, timedelta

import msgspec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


def now_us() -> int:
    return time.time_ns() // 1000


def iso(us: int | None) -> str | None:
    """ISO-8601 UTC with microseconds (``2026-01-02T03:04:05.123456Z``), or None."""
    if us is None:
        return None
    return _iso(us)


@functools.lru_cache(maxsize=16_384)
def _iso(us: int) -> str:
    # isoformat of a naive UTC datetime: the same text as strftime, at a third of the cost. Remembered:
    # a dashboard renders the same instants (submits, starts) request after request, 11 % of a
    # 25 k-pending document before
    return (_EPOCH_NAIVE + timedelta(microseconds=us)).isoformat(timespec="microseconds") + "Z"


AS_OF_FORMS = "give a ledger position (at most 18 digits) or an RFC 3339 time with its offset"
_POSITION = re.compile(r"[0-9]{1,18}")  # a position SQLite's 64-bit integers hold


def position_or_time(text: str, *, exact: bool = False) -> tuple[int | None, int | None]:
    """A ledger position (digits) or an ISO-8601 instant, as (position, None) or (None, microseconds).

    ``exact``: every HTTP ``as_of`` (the dashboard API and the web panels alike), held to what the
    OpenAPI document says (``AS_OF_FORMS``): a time must carry its offset, since the server cannot
    know the caller's zone. Without it (the CLI, on the ledger's own machine) any digits are a
    position and a time without a zone is UTC. Raises ValueError naming the accepted forms."""
    if exact:
        return _as_of(text)
    if text.isascii() and text.isdigit():  # "²".isdigit() is true, and int() refuses it
        return int(text), None
    try:
        return None, parse_iso(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a ledger position nor an ISO-8601 time") from None


def _as_of(text: str) -> tuple[int | None, int | None]:
    if _POSITION.fullmatch(text):
        return int(text), None
    try:
        moment = msgspec.json.decode(msgspec.json.encode(text), type=datetime)  # RFC 3339, as documented
    except msgspec.ValidationError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(AS_OF_FORMS)
    return None, (moment - _EPOCH) // timedelta(microseconds=1)


def parse_iso(text: str) -> int:
    """ISO-8601 text (a bare date or time without zone is UTC) to microseconds."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HELP = "seconds, or with a unit (90s, 15m, 1h, 2d), or H:MM:SS / MM:SS"


def duration_s(value: str | int) -> int:
    """Seconds from ``90``, ``90s``, ``15m``, ``1h``, ``2d``, ``1:00:00`` or ``15:00`` (Slurm's
    ``--time`` habits); ValueError names the accepted forms."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) > 3 or any(p < 0 for p in parts):
                raise ValueError(text)
            return sum(p * 60**i for i, p in enumerate(reversed(parts)))
        if text[-1:] in _UNITS:
            return round(float(text[:-1]) * _UNITS[text[-1]])
        return int(text)
    except (ValueError, OverflowError):
        raise ValueError(f"not a duration: {value!r} (use {DURATION_HELP})") from None
