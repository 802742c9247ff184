"""Arrays in the researcher's commands: ``submit --array``, ``status ARRAY``, ``cancel ARRAY [--tasks]``,
``cancel --all`` in one write, and ``jobs`` showing an array's tasks as one line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from rich.progress_bar import ProgressBar
from rich.table import Table

from cli.remote import client_from, err, out, print_json
from gpuledger import Conflict, JobStatus
from gpuledger.project import PackedProject
from ledger.domain.arrays import is_array_id

COUNTED = ("pending", "running", "completed", "failed", "cancelled")


def names_array(text: str) -> bool:
    """Whether ``text`` is an array's id (its tasks' ids share its first 20 characters; it ends in zeros)."""
    return is_array_id(text.upper())


def is_array_config(config: bytes | Path) -> bool:
    """A config asking for an array or a sweep (``array:`` or ``sweep:``), which goes to /api/arrays."""
    raw = config.read_bytes() if isinstance(config, Path) else config
    try:
        loaded = yaml.safe_load(raw)
    except yaml.YAMLError:
        return False  # the server names the problem
    return isinstance(loaded, dict) and ("array" in loaded or "sweep" in loaded)


def submit_array(args: argparse.Namespace, config: bytes | Path, solution: Path | PackedProject) -> int:
    """``solution``: the file, or the directory packed once, which every task runs."""
    with client_from(args) as client:
        accepted = client.submit_array(solution, config, array=args.array, idempotency_key=args.idempotency_key)
    for warning in accepted.warnings:
        err.print(f"gpuledger: warning: {warning}")
    if args.json:
        print_json(accepted)
    else:
        print(accepted.array_id, flush=True)
    if not args.json and not args.detach:
        err.print(
            f"gpuledger: submitted array {accepted.array_id}: {accepted.tasks} task(s), at most {accepted.width} "
            f"at once (gpuledger status {accepted.array_id})"
        )
    return 0


def show_status(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        status = client.array_status(args.job)
    if args.json:
        print_json(status)
        return 0
    counts = ", ".join(f"{status.counts.get(name, 0)} {name}" for name in COUNTED)
    ended = sum(status.counts.get(name, 0) for name in ("completed", "failed", "cancelled"))
    if out.is_terminal:
        table = Table.grid(padding=(0, 1))
        table.add_row(f"array {status.array_id}", ProgressBar(total=status.tasks, completed=ended, width=30))
        out.print(table)
    else:
        out.print(f"array {status.array_id}")
    out.print(f"{ended}/{status.tasks} ended: {counts} (at most {status.width} at once)")
    return 0


def cancel(args: argparse.Namespace) -> int:
    """``cancel ARRAY [--tasks 5-9]`` or ``cancel --all``: one write on the server each."""
    with client_from(args) as client:
        try:
            answer = client.cancel_array(args.jobs[0], tasks=args.tasks) if args.jobs else client.cancel_all()
        except Conflict as e:
            if args.jobs:
                raise
            err.print(f"gpuledger: no pending or running job to cancel ({e.detail})", markup=False)
            answer = None
    if args.json:
        print_json({"cancelled": [] if answer is None else answer.job_ids})
    for job_id in [] if answer is None or args.json else answer.job_ids:
        print(f"job {job_id} cancelling")
    return 0


def grouped(jobs: list[JobStatus]) -> list[Any]:
    """The list with each array's tasks folded into one ``JobStatus`` line at its first task's place."""
    lines: list[Any] = []
    arrays: dict[str, list[JobStatus]] = {}
    for job in jobs:
        if job.array_id is None:
            lines.append(job)
        elif job.array_id not in arrays:
            arrays[job.array_id] = [job]
            lines.append(job.array_id)
        else:
            arrays[job.array_id].append(job)
    return [line if isinstance(line, JobStatus) else _line(line, arrays[line]) for line in lines]


def _line(array_id: str, tasks: list[JobStatus]) -> JobStatus:
    counts = {name: sum(1 for t in tasks if t.status == name) for name in COUNTED}
    status = next((name for name in ("running", "pending") if counts[name]), max(counts, key=lambda n: counts[n]))
    shown = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    first = tasks[0]
    return JobStatus(
        job_id=array_id,
        status=status,
        user_id=first.user_id,
        competition_id=first.competition_id,
        phase="array",  # cli.listing shows its reason as it is
        reason=f"array: {shown}",
        array_id=array_id,
    )
