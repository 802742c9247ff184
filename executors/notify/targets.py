"""Whether a notify target can be used: its syntax and NOTIFY_ALLOWED (``ledger.domain.notify``), and for a
non-webhook target, that apprise knows the service and can parse the URL."""

from __future__ import annotations

import functools
from typing import Any

from ledger.domain.errors import DomainError
from ledger.domain.notify import WEBHOOK_SCHEMES, check_targets, scheme_and_host, shown_target


@functools.cache
def _apprise() -> Any:
    """apprise, imported on first use (about 0.1 s, and most servers never send through it)."""
    import apprise

    return apprise


def apprise_service(target: str) -> Any:
    """apprise's plugin object for the target, or None when apprise does not know or cannot parse it."""
    return _apprise().Apprise.instantiate(target, suppress_exceptions=True)


def is_webhook(target: str) -> bool:
    found = scheme_and_host(target)
    return found is not None and found[0] in WEBHOOK_SCHEMES


def check_all(targets: list[str], allowed: list[str]) -> None:
    """Raises ``DomainError`` naming the first target that cannot be used (a 400 at submit). Blocking
    (apprise's first import): call it in a worker thread."""
    check_targets(targets, allowed)
    for target in targets:
        if not is_webhook(target) and apprise_service(target) is None:
            raise DomainError(
                f"Invalid field notify: notify target {shown_target(target)} is no service apprise can send to "
                "(see https://github.com/caronc/apprise/wiki for the URL of each)"
            )
