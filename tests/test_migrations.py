"""Schema migrations keyed on PRAGMA user_version: old databases upgrade, newer ones are refused."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import apsw
import pytest

from ledger.domain.errors import SchemaError
from ledger.domain.events import Blob, JobScanned, JobSubmitted, encode_event, event_tag, stream_of
from ledger.store.schema import code_version, connect, migrations, open_existing
from ledger.store.store import GENESIS, chain_hash
from projections.audit import verify
from projections.live import open_store

V1_EVENTS = [
    JobSubmitted(
        job_id="old",
        user_id="alice",
        competition_id="c",
        project_id="p",
        expected_time_s=5,
        code=Blob(digest="0" * 64, size=3),
    ),
    JobScanned(job_id="old", verdict="approved"),
]


def create_v1(path: Path) -> None:
    """A ledger as a version-1 build left it: only the events table, with two chained rows."""
    conn = apsw.Connection(str(path))
    with conn:
        conn.execute(resources.files("migrations").joinpath("0001_events.sql").read_text())
        conn.pragma("user_version", 1)
        prev = GENESIS
        for position, event in enumerate(V1_EVENTS, start=1):
            row = (
                position,
                stream_of(event),
                position,
                event_tag(event),
                1_700_000_000_000_000 + position,
                "system",
                None,
            )
            digest = chain_hash(prev, *row, encode_event(event))
            conn.execute(
                "INSERT INTO events (position, stream, version, type, recorded_at, actor, idempotency_key,"
                " payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, encode_event(event), prev, digest),
            )
            prev = digest
    conn.close()


def test_migrations_are_numbered_in_sequence() -> None:
    """Shipped migrations are 0001, 0002, ... and the code's schema version is their count."""
    assert [number for number, _, _ in migrations()] == list(range(1, code_version() + 1))
    assert code_version() >= 2


def test_version_1_database_upgrades_and_keeps_its_events(tmp_path: Path) -> None:
    """Opening a v1 ledger applies the later migrations, keeps its events and folds them into views."""
    db = tmp_path / "v1.db"
    create_v1(db)
    store = open_store(db)
    try:
        assert store.conn.pragma("user_version") == code_version()
        assert store.conn.execute("SELECT count(*) FROM events").fetchone()[0] == 2
        assert store.views.jobs["old"].scan_verdict == "approved"
        assert store.head == 2
        assert verify(store.conn) == []
        store.append("job-old", 2, [JobScanned(job_id="old", verdict="warned", scanner="llm")])
        assert verify(store.conn) == []
    finally:
        store.close()


def test_open_existing_upgrades_a_version_1_database(tmp_path: Path) -> None:
    """The audit commands' opener migrates an old ledger too."""
    db = tmp_path / "v1.db"
    create_v1(db)
    conn = open_existing(db)
    assert conn.pragma("user_version") == code_version()
    conn.close()


def newer_database(tmp_path: Path) -> Path:
    db = tmp_path / "newer.db"
    open_store(db).close()
    conn = connect(db)
    conn.pragma("user_version", code_version() + 5)
    conn.close()
    return db


def test_newer_database_is_refused_naming_both_versions(tmp_path: Path) -> None:
    """A ledger written by a newer gpuledger is refused, and the message names both schema versions."""
    db = newer_database(tmp_path)
    with pytest.raises(SchemaError, match=rf"version {code_version() + 5} is newer .* version {code_version()}\b"):
        open_store(db)
    with pytest.raises(SchemaError, match=rf"version {code_version() + 5} is newer"):
        open_existing(db)


def test_audit_verify_refuses_newer_database(tmp_path: Path) -> None:
    """`gpuledger audit verify` on a newer ledger exits non-zero with the versions in its message."""
    db = newer_database(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "audit", "verify", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"database schema version {code_version() + 5} is newer" in result.stderr
    assert f"schema version {code_version()};" in result.stderr
