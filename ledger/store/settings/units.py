"""Sizes and durations written as text in settings: ``512M``, ``8G``; ``7d``, ``36h``."""

from __future__ import annotations

_BYTE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(value: int | str) -> int:
    """Bytes from a number of bytes or a text like ``512M``, ``8G``, ``1.5G``, ``8GiB`` (powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower().removesuffix("ib").removesuffix("b")
    number, unit = (text[:-1], text[-1]) if text[-1:] in _BYTE_UNITS else (text, "")
    try:
        amount = float(number) * _BYTE_UNITS.get(unit, 1)
    except ValueError:
        raise ValueError(f"{value!r} is not a size (bytes, or a number with K, M, G or T)") from None
    if amount != amount or amount in (float("inf"), float("-inf")) or amount > 1 << 62:
        raise ValueError(f"{value!r} is not a finite size")
    return int(amount)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 7 * 86_400.0}


def parse_duration(value: float | str) -> float:
    """Seconds from a number of seconds or a text like ``7d``, ``36h``, ``90m``, ``45s``, ``2w``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"{value!r} is not a duration (seconds, or a number with s, m, h, d or w)") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} is not a finite duration")
    return seconds
