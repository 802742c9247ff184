"""Slurm's command line (sbatch, squeue --json, sinfo --json, scancel) over a transport.

The transport is the local one (the server on a login node) or SSH to ``login_host``: the same
shell command strings either way, every argument quoted. No slurmdbd is assumed (so no sacct): a
job is known from ``squeue`` while Slurm keeps it (``MinJobAge``), and its outcome from the
wrapper's status file.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

import msgspec

from executors.errors import CommandTimedOut, NodeUnreachable
from executors.slurm.errors import SlurmRefused, SlurmUnreachable
from executors.transport import LocalTransport, Transport

COMMAND_TIMEOUT_S = 60.0
# What sbatch/squeue print when the controller cannot be reached (as opposed to a refusal).
_UNREACHABLE_MARKERS = ("Unable to contact", "Socket timed out", "Connection refused", "Zero Bytes were transmitted")


class SlurmJob(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of one ``squeue --json`` job that gpuledger reads."""

    job_id: int
    name: str = ""
    comment: str = ""
    job_state: str = ""
    state_reason: str = ""
    start_time: int = 0  # Unix seconds; for a pending job, Slurm's estimate (what squeue --start shows)
    end_time: int = 0
    exit_code: int | None = None
    nodes: str = ""


class SlurmNode(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    state: str = ""
    partitions: list[str] = []
    gres: str = ""
    gres_used: str = ""
    reason: str = ""


class _Jobs(msgspec.Struct, frozen=True):
    jobs: list[SlurmJob] = []


class _Nodes(msgspec.Struct, frozen=True):
    nodes: list[SlurmNode] = []


_jobs_decoder = msgspec.json.Decoder(_Jobs)
_nodes_decoder = msgspec.json.Decoder(_Nodes)


def gres_gpus(gres: str) -> int:
    """GPUs in a gres string such as ``gpu:2``, ``gpu:a100:4(S:0-1)`` or ``gpu:2,shard:8``."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def slurm_conf_of(transport: Transport, environ: Mapping[str, str]) -> str | None:
    """The server's own SLURM_CONF, for commands run on this host (``[slurm] conf`` overrides it). Over SSH
    the login host's Slurm finds its own configuration: a path on this host would mean nothing there."""
    return environ.get("SLURM_CONF") or None if isinstance(transport, LocalTransport) else None


class SlurmClient:
    """One cluster's commands; every failure to reach the controller is ``SlurmUnreachable``."""

    def __init__(
        self,
        transport: Transport,
        partition: str | None,
        conf: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.transport = transport
        self.partition = partition
        self.conf = conf or slurm_conf_of(transport, os.environ if environ is None else environ)
        # Passed on the command line: the transport gives commands none of the server's environment.
        self.prefix = ["env", f"SLURM_CONF={self.conf}"] if self.conf else []

    async def _run(self, argv: list[str]) -> str:
        try:
            code, out, err = await self.transport.run(shlex.join(self.prefix + argv), timeout=COMMAND_TIMEOUT_S)
        except CommandTimedOut as e:
            raise SlurmUnreachable(f"{argv[0]} did not answer within {COMMAND_TIMEOUT_S:g} s") from e
        except NodeUnreachable as e:
            raise SlurmUnreachable(f"{argv[0]}: {e}") from e
        text = err.decode(errors="replace").strip()
        if code != 0:
            if any(marker in text for marker in _UNREACHABLE_MARKERS) or not text:
                raise SlurmUnreachable(f"{argv[0]} exited {code}: {text[-300:]}")
            raise SlurmRefused(f"{argv[0]} exited {code}: {text[-300:]}")
        return out.decode(errors="replace")

    async def sbatch(self, script: str, options: list[str]) -> str:
        """Submit; the Slurm job id."""
        argv = ["sbatch", "--parsable", *(["--partition", self.partition] if self.partition else []), *options, script]
        out = (await self._run(argv)).strip()
        job_id = out.split(";")[0]  # --parsable: "id" or "id;cluster"
        if not job_id.isdigit():
            raise SlurmRefused(f"sbatch printed no job id: {out[-300:]!r}")
        return job_id

    async def jobs(self) -> list[SlurmJob]:
        """Our jobs Slurm still knows, in every state (finished ones until MinJobAge passes)."""
        out = await self._run(["squeue", "--json", "--me", "--states=all"])
        try:
            return list(_jobs_decoder.decode(out).jobs)
        except msgspec.DecodeError as e:
            raise SlurmUnreachable(f"squeue printed no readable JSON: {e}") from e

    async def nodes(self) -> list[SlurmNode]:
        out = await self._run(["sinfo", "--json"])
        try:
            nodes = _nodes_decoder.decode(out).nodes
        except msgspec.DecodeError as e:
            raise SlurmUnreachable(f"sinfo printed no readable JSON: {e}") from e
        return [n for n in nodes if self.partition is None or self.partition in n.partitions]

    async def cancel(self, slurm_id: str) -> None:
        try:
            await self._run(["scancel", slurm_id])
        except SlurmRefused as e:
            if "Invalid job id" not in str(e) and "already completing" not in str(e):
                raise
