"""`gpuledger token` beside a running server on the same ledger file: create, list, revoke, revoke-user,
and the server noticing each change (another process's append) within a second."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from server import Server, _printed_token, run_cli, running

NOTICE_S = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("tokens"),
        code_scanner_quick_mode=True,
        endpoint_limits={"jobs": 10_000, "status": 10_000},
    ) as srv:
        yield srv


def cli(server: Server, *args: str) -> str:
    done = run_cli(server.root, "token", *args, env=server.env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def seconds_until(server: Server, secret: str, status: int, limit: float = 5.0) -> float:
    """How long until GET /api/jobs with this token answers ``status`` (bounded by ``limit``)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if httpx.get(f"{server.url}/api/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == status:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"never answered {status} within {limit} s")


def test_created_token_is_printed_once_and_works_within_a_second(server: Server) -> None:
    """`token create USER` prints a strong token once; the running server accepts it within a second."""
    out = cli(server, "create", "carol", "--days", "7")
    secret = _printed_token(out)
    assert len(secret) >= 32
    assert out.count(secret) == 1
    assert re.search(r"token tok_\w+ for carol, expires \d{4}-", out)
    assert seconds_until(server, secret, 200) < NOTICE_S + 0.5
    assert secret not in cli(server, "list")


def test_list_shows_user_admin_expiry_and_last_use(server: Server) -> None:
    """`token list` shows each live token's user, admin flag, expiry, days left and last use."""
    secret = _printed_token(cli(server, "create", "dave", "--days", "3"))
    _printed_token(cli(server, "create", "erin", "--admin"))
    seconds_until(server, secret, 200)
    listing = cli(server, "list")
    assert listing.splitlines()[0].split()[:3] == ["TOKEN", "ID", "USER"]
    assert "LAST USED" in listing.splitlines()[0]
    dave = next(line for line in listing.splitlines() if " dave " in line)
    erin = next(line for line in listing.splitlines() if " erin " in line)
    token_id, user, admin, created, expires, days, _ = dave.split()
    assert (user, admin, days) == ("dave", "no", "3")  # a fresh 3-day token: 3 whole days to go, not 2
    assert token_id.startswith("tok_")
    assert created < expires
    assert (erin.split()[2], erin.split()[5], erin.split()[6]) == ("yes", "30", "never")
    deadline = time.monotonic() + 10
    while "never" in dave and time.monotonic() < deadline:  # last use is flushed in the background
        time.sleep(0.2)
        dave = next(line for line in cli(server, "list").splitlines() if " dave " in line)
    assert "never" not in dave
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", dave), dave


def test_revoked_token_stops_working_within_a_second(server: Server) -> None:
    """`token revoke TOKEN` on the live ledger: the running server refuses the token within a second."""
    secret = _printed_token(cli(server, "create", "frank"))
    seconds_until(server, secret, 200)
    assert cli(server, "revoke", secret).startswith("revoked tok_")
    assert seconds_until(server, secret, 401) < NOTICE_S + 0.5
    answer = httpx.get(f"{server.url}/api/jobs", headers={"Authorization": f"Bearer {secret}"})
    assert answer.json()["detail"] == "Token has been revoked"
    assert " frank " not in cli(server, "list")
    assert " frank " in cli(server, "list", "--all")


def test_revoke_user_revokes_every_token_of_that_user(server: Server) -> None:
    """`token revoke-user USER` ends the user's live token; other users keep theirs."""
    grace = _printed_token(cli(server, "create", "grace"))
    heidi = _printed_token(cli(server, "create", "heidi"))
    seconds_until(server, grace, 200)
    seconds_until(server, heidi, 200)
    assert cli(server, "revoke-user", "grace") == "revoked every token of grace\n"
    assert seconds_until(server, grace, 401) < NOTICE_S + 0.5
    assert httpx.get(f"{server.url}/api/jobs", headers={"Authorization": f"Bearer {heidi}"}).status_code == 200
    again = run_cli(server.root, "token", "revoke-user", "grace", env=server.env)
    assert again.returncode != 0


def test_new_token_replaces_the_users_previous_one(server: Server) -> None:
    """Creating a token for a user revokes that user's previous token on the running server."""
    old = _printed_token(cli(server, "create", "ivan"))
    seconds_until(server, old, 200)
    new = _printed_token(cli(server, "create", "ivan"))
    assert seconds_until(server, new, 200) < NOTICE_S + 0.5
    assert seconds_until(server, old, 401) < NOTICE_S + 0.5


def test_create_refuses_days_out_of_range(server: Server) -> None:
    """--days outside 1..30 is refused with exit status 2 and no token."""
    for days in ("0", "31"):
        done = run_cli(server.root, "token", "create", "judy", "--days", days, env=server.env)
        assert done.returncode == 2
        assert "--days" in done.stderr
    assert " judy " not in cli(server, "list", "--all")


def test_ledger_verifies_after_the_token_changes(server: Server) -> None:
    """`gpuledger audit verify` exits 0 after tokens were issued and revoked by another process."""
    done = run_cli(server.root, "audit", "verify", "--db", str(server.root / "gpuledger.db"), env=server.env)
    assert done.returncode == 0, done.stdout + done.stderr
