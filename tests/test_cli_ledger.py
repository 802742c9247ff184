"""The ledger-reading commands on a small real ledger: events filters, replay as of a point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main as cli_main
from ledger.domain.events import Blob, JobFinished, JobScanned, JobSubmitted
from ledger.domain.tokens import mint
from ledger.store import commands
from ledger.store.store import Write
from projections.live import open_store


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    """Two users' jobs (one finished), and a token: enough for every filter to have something to drop."""
    db = tmp_path / "ledger.db"
    store = open_store(db)
    code = Blob(digest="0" * 64, size=1)
    for job_id, user in (("a1", "ann"), ("b1", "bob")):
        submitted = JobSubmitted(
            job_id=job_id, user_id=user, competition_id="c", project_id="p", expected_time_s=5, code=code
        )
        store.execute(
            [
                commands.submit_job(
                    submitted,
                    static_scan=JobScanned(job_id=job_id, verdict="approved"),
                    review_pending=False,
                    limits=None,
                    now=0,
                    actor="t",
                    fingerprint=b"",
                )
            ]
        )
    store.execute([Write(decide=lambda v: [JobFinished(job_id="a1", status="cancelled", reason="cancelled")])])
    store.execute([commands.issue_token(mint("ann", secret=None, days=1, is_admin=False, by="t")[1])])
    store.close()
    return db


def run(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    assert cli_main([*args, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_events_filters_by_job_type_prefix_and_user(ledger_file: Path, capsys) -> None:
    """--job, --type (exact and prefix.*) and --user each keep exactly the matching events."""
    db = str(ledger_file)
    assert {e["stream"] for e in run(capsys, "events", "--db", db, "--job", "a1")} == {"job-a1"}
    assert [e["type"] for e in run(capsys, "events", "--db", db, "--type", "job.finished")] == ["job.finished"]
    assert {e["type"] for e in run(capsys, "events", "--db", db, "--type", "token.*")} == {"token.issued"}
    mine = run(capsys, "events", "--db", db, "--user", "ann")
    assert {e["stream"] for e in mine} == {"job-a1", f"token-{mine[-1]['event']['token_id']}"}


def test_replay_until_a_position_shows_the_state_then(ledger_file: Path, capsys) -> None:
    """replay --until 3 shows ann's job still pending; the full replay shows it cancelled."""
    then = run(capsys, "replay", "--db", str(ledger_file), "--until", "3")[0]
    assert [j["status"] for j in then["jobs"]] == ["pending"]
    now = run(capsys, "replay", "--db", str(ledger_file))[0]
    assert {j["job_id"]: j["status"] for j in now["jobs"]} == {"a1": "cancelled", "b1": "pending"}
    assert all("secret_sha256" not in t for t in now["tokens"])
