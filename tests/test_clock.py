"""The ledger's clock text: ``iso`` and ``parse_iso`` against the standard library's own."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.clock import iso, parse_iso

LAST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999) - datetime(1970, 1, 1)) // timedelta(microseconds=1)


@given(st.integers(min_value=0, max_value=LAST_US))
def test_iso_is_the_isoformat_of_that_instant(us: int) -> None:
    """Any instant from 1970 to 9999 reads as datetime's ISO text (microseconds, Z) and back."""
    expected = (datetime(1970, 1, 1) + timedelta(microseconds=us)).isoformat(timespec="microseconds") + "Z"
    assert iso(us) == expected
    assert parse_iso(expected) == us


def test_iso_of_nothing_is_none() -> None:
    """No instant, no text (a job not started yet has no started_at)."""
    assert iso(None) is None
