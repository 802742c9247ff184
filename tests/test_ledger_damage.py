"""Damage is found and named, never written over: the server refuses to start on an altered, damaged
or shortened ledger (truncated or bit-flipped WAL), and ``audit verify`` says the same."""

from __future__ import annotations

import time
from pathlib import Path

import apsw
import pytest
from server import Server, config_yaml, run_cli, submit

from ledger.store.integrity import read_mark

FRAME = 24 + 4096  # a WAL frame: its header, then one page
WAL_HEADER = 32


def settle_into_main_file(ledger: Path) -> None:
    """Every page into the main file, the -wal emptied: as on a long-running server's disk, so damage
    to the main file is not masked by intact copies of its pages in a kept -wal."""
    conn = apsw.Connection(str(ledger))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def with_jobs(server_factory, count: int = 3) -> Server:
    server = server_factory()
    with server.client(server.admin_token) as client:
        for _ in range(count):
            assert submit(client, "pass\n", config_yaml("admin"), wait=True).status_code == 200
    return server


def refused_start(server: Server) -> str:
    """Start the server again on its files; it must exit, and what it said is returned."""
    with pytest.raises(RuntimeError, match="server exited") as refused:
        server.start()
    return str(refused.value)


def head_recorded(server: Server) -> int:
    deadline = time.monotonic() + 10
    head = server.root / "gpuledger.db"
    while time.monotonic() < deadline:
        conn = apsw.Connection(str(head), flags=apsw.SQLITE_OPEN_READONLY)
        durable = conn.execute("SELECT max(position) FROM events").fetchone()[0]
        conn.close()
        mark = read_mark(head)
        if mark is not None and mark.position == durable:
            return durable
        time.sleep(0.2)
    raise AssertionError("the server never recorded its durable head")


def test_an_altered_payload_stops_the_start_and_names_its_position(server_factory) -> None:
    """An event changed in place (triggers dropped, as an attacker would) is found at start."""
    server = with_jobs(server_factory)
    server.stop()
    conn = apsw.Connection(str(server.root / "gpuledger.db"))
    conn.execute("DROP TRIGGER events_are_append_only_update")
    last = conn.execute("SELECT max(position) FROM events WHERE type = 'job.submitted'").fetchone()[0]
    conn.execute("UPDATE events SET payload = replace(payload, 'comp', 'pmoc') WHERE position = ?", (last,))
    conn.close()
    said = refused_start(server)
    assert f"position {last}: hash does not match" in said
    assert "gpuledger restore" in said
    verdict = run_cli(server.root, "audit", "verify")
    assert verdict.returncode == 1
    assert "Traceback" not in verdict.stderr


def test_damaged_pages_stop_the_start(server_factory) -> None:
    """Overwritten pages of the events table: the start refuses, naming the damage and the fix."""
    server = with_jobs(server_factory)
    server.stop()
    ledger = server.root / "gpuledger.db"
    settle_into_main_file(ledger)
    data = bytearray(ledger.read_bytes())
    for offset in range(4096, len(data), 4096):
        data[offset + 8 : offset + 64] = b"\xff" * 56
    ledger.write_bytes(bytes(data))
    said = refused_start(server)
    assert "damaged" in said or "cannot be opened" in said
    assert "gpuledger restore" in said


@pytest.mark.parametrize("harm", ["truncated", "bit-flipped"])
def test_a_harmed_wal_after_a_crash_stops_the_start(server_factory, harm: str) -> None:
    """After kill -9, a -wal cut short or with a flipped bit silently drops commits in SQLite; the head
    the server recorded shows it, at start and in audit verify."""
    server = with_jobs(server_factory)
    durable = head_recorded(server)
    server.kill()
    wal = server.root / "gpuledger.db-wal"
    data = bytearray(wal.read_bytes())
    assert len(data) > WAL_HEADER + 2 * FRAME, "the commits are not in the WAL"
    if harm == "truncated":
        del data[WAL_HEADER + FRAME :]  # one frame left: every later commit is gone
    else:
        data[WAL_HEADER + FRAME + 24 + 100] ^= 0x01  # the second frame's page: its checksum fails
    wal.write_bytes(bytes(data))
    said = refused_start(server)
    assert f"had committed up to {durable}" in said
    verdict = run_cli(server.root, "audit", "verify")
    assert verdict.returncode == 1, (verdict.stdout, verdict.stderr)
    assert "lost" in verdict.stderr


def test_a_sound_ledger_starts_after_a_crash_and_keeps_its_mark(server_factory, tmp_path: Path) -> None:
    """kill -9 alone harms nothing: the server starts again, and its head mark follows new commits."""
    server = with_jobs(server_factory, count=1)
    first = head_recorded(server)
    server.kill()
    server.start()
    with server.client(server.admin_token) as client:
        submit(client, "pass\n", config_yaml("admin"), wait=True)
    assert head_recorded(server) > first
