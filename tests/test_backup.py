"""``gpuledger backup`` and ``restore`` while the server takes submits, and ``audit verify`` that
never writes to the file it checks and says what it saw."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

import apsw
from server import Server, config_yaml, run_cli, submit, wait_status

from ledger.store.backup import referenced_blobs
from ledger.store.schema import connect, migrate


def settle_into_main_file(ledger: Path) -> None:
    """Every page into the main file, the -wal emptied: as on a long-running server's disk, so damage
    to the main file is not masked by intact copies of its pages in a kept -wal."""
    conn = apsw.Connection(str(ledger))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def submitted_ids(ledger: Path) -> set[str]:
    conn = connect(ledger, readonly=True)
    try:
        return {row[0][4:] for row in conn.execute("SELECT stream FROM events WHERE type = 'job.submitted'")}
    finally:
        conn.close()


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Submitter(threading.Thread):
    """Submits jobs until told to stop, recording when each submit was acknowledged."""

    def __init__(self, server: Server, token: str) -> None:
        super().__init__(daemon=True)
        self.server, self.token = server, token
        self.acked: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with self.server.client(self.token) as client:
            while not self.stop.is_set() and len(self.acked) < 200:
                answer = submit(client, 'print("b")\n', config_yaml("admin"), wait=False)
                if answer.status_code == 200:
                    self.acked.append((time.monotonic(), answer.json()["job_id"]))


def test_backup_under_submits_holds_every_acknowledged_job_and_verifies(server_factory, tmp_path: Path) -> None:
    """Each backup taken while submits flow verifies, prints its head, and holds every job acknowledged
    before the backup started."""
    server = server_factory(max_active_jobs_per_user=10_000, rate_limit_per_minute=10_000)
    submitter = Submitter(server, server.admin_token)
    submitter.start()
    try:
        for n in range(3):
            time.sleep(0.5)
            began = time.monotonic()
            done = run_cli(server.root, "backup", str(tmp_path / f"b{n}"))
            assert done.returncode == 0, done.stderr
            assert "verified" in done.stdout
            assert "head position" in done.stdout
            acked_before = {job for at, job in submitter.acked if at < began}
            assert acked_before, "no submit was acknowledged before the backup"
            assert acked_before <= submitted_ids(tmp_path / f"b{n}" / "gpuledger.db")
    finally:
        submitter.stop.set()
        submitter.join(30)


def test_restore_refuses_to_overwrite_and_brings_back_jobs_with_their_output(server_factory, tmp_path: Path) -> None:
    """A restored ledger verifies, a server started on it serves the old job's output, and restore
    never writes over an existing ledger."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        job = submit(client, 'print("kept across restore")\n', config_yaml("admin"), wait=True).json()["job_id"]
        wait_status(client, job, {"completed"})
    assert run_cli(server.root, "backup", str(tmp_path / "b")).returncode == 0

    refused = run_cli(server.root, "restore", str(tmp_path / "b"))
    assert refused.returncode == 2
    assert "never writes over a ledger" in refused.stderr

    place = tmp_path / "restored"
    place.mkdir()
    done = run_cli(place, "restore", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert "audit verify ok" in done.stdout
    assert run_cli(place, "audit", "verify").returncode == 0
    again = Server(place, code_scanner_quick_mode=True)
    again.admin_token = server.admin_token  # the restored ledger's: nothing new is printed
    try:
        again.start()
        with again.client(server.admin_token) as client:
            assert "kept across restore" in client.get(f"/api/results/{job}").json()["stdout"]
    finally:
        again.stop()


def test_backup_names_every_blob_and_a_damaged_backup_is_not_restored(server_factory, tmp_path: Path) -> None:
    """The backup holds every blob its events name; a flipped blob byte makes restore refuse."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        submit(client, 'print("x" * 1000)\n', config_yaml("admin"), wait=True)
    assert run_cli(server.root, "backup", str(tmp_path / "b")).returncode == 0
    conn = connect(tmp_path / "b" / "gpuledger.db", readonly=True)
    digests = referenced_blobs(conn)
    conn.close()
    assert len(digests) >= 2  # the code, and the stdout at least
    victim = tmp_path / "b" / "blobs" / min(digests)[:2] / min(digests)
    victim.write_bytes(b"tampered" + victim.read_bytes())
    place = tmp_path / "restored"
    place.mkdir()
    refused = run_cli(place, "restore", str(tmp_path / "b"))
    assert refused.returncode == 2
    assert "missing or damaged" in refused.stderr
    assert not (place / "gpuledger.db").exists()


def test_verify_opens_the_file_read_only_and_prints_the_head(server_factory) -> None:
    """audit verify leaves the ledger's bytes as they were and prints position, time and hash."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        submit(client, "pass\n", config_yaml("admin"), wait=True)
    server.stop()
    ledger = server.root / "gpuledger.db"
    before = digest_of(ledger)
    done = run_cli(server.root, "audit", "verify")
    assert done.returncode == 0, done.stderr
    assert digest_of(ledger) == before
    assert "head: position" in done.stdout
    assert "hash " in done.stdout


def test_verify_warns_on_a_copy_without_its_wal_and_on_an_empty_ledger(server_factory, tmp_path: Path) -> None:
    """A running ledger's main file copied without its -wal, and an empty ledger, exit 2 with a warning."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        submit(client, "pass\n", config_yaml("admin"), wait=True)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copyfile(server.root / "gpuledger.db", copy / "gpuledger.db")  # the old guide's habit
    assert (server.root / "gpuledger.db-wal").exists()
    done = run_cli(copy, "audit", "verify")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "gpuledger backup" in done.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    conn = connect(empty / "gpuledger.db")
    migrate(conn)
    conn.close()
    done = run_cli(empty, "audit", "verify")
    assert done.returncode == 2
    assert "no events" in done.stderr


def test_verify_reports_a_damaged_file_as_a_finding_not_a_traceback(server_factory) -> None:
    """Overwritten pages give exit 1 and one FAILED line, never a Python traceback."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        for _ in range(3):
            submit(client, "pass\n", config_yaml("admin"), wait=True)
    server.stop()
    ledger = server.root / "gpuledger.db"
    settle_into_main_file(ledger)
    data = bytearray(ledger.read_bytes())
    assert len(data) > 8192
    for offset in range(4096, len(data), 4096):  # every page but the header: garbage
        data[offset + 8 : offset + 64] = b"\xff" * 56
    ledger.write_bytes(bytes(data))
    done = run_cli(server.root, "audit", "verify")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "FAILED" in done.stderr
