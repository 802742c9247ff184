"""The first admin token: issued on the first start of an empty ledger, printed once and saved 0600."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import structlog

from ledger.domain.tokens import mint
from ledger.store import commands
from ledger.store.settings import Settings
from ledger.store.writer import Ledger
from projections.views import Views

log = structlog.get_logger()


def save_admin_token(settings: Settings, secret: str) -> Path:
    """The first admin token, in a 0600 file next to the ledger (created with that mode, never wider)."""
    path = Path(settings.storage.database_path).resolve().parent / "admin-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    path.chmod(0o600)
    return path


async def bootstrap_admin(ledger: Ledger[Views], settings: Settings) -> None:
    """First start of an empty ledger: issue an admin token and print it once (as Jupyter does)."""
    if ledger.views.tokens:
        return
    secret, issued = mint("admin", secret=None, days=settings.http.token_max_days, is_admin=True, by="system")
    await ledger.write(commands.issue_token(issued))
    saved = save_admin_token(settings, secret)
    # Between JSON log lines when stderr is not a terminal: blank lines and a banner make it stand out.
    print(
        f"\n{'=' * 72}\n  gpuledger: first start, admin token for user 'admin' (shown once, valid "
        f"{settings.http.token_max_days} days):\n\n      {secret}\n\n"
        f"  Also saved to {saved} (readable by you only). In your shell:\n"
        f"      export GPULEDGER_TOKEN=$(cat {saved})\n{'=' * 72}\n",
        file=sys.stderr,
        flush=True,
    )
    log.info("token.bootstrap", token_id=issued.token_id, user_id="admin")
