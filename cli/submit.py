"""``gpuledger submit`` and ``gpuledger wait``: queue a job, then follow it to its end (Ctrl+C detaches)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from cli.follow import follow_job
from cli.remote import (
    EXIT_DETACHED,
    add_client_options,
    async_client_from,
    detached_hint,
    err,
    exit_code_of,
    print_json,
    status_line,
)
from gpuledger import AsyncClient, JobStatus


def register(subparsers: Any) -> None:
    submit = subparsers.add_parser("submit", help="submit a solution and follow it (exit code = the job's)")
    submit.add_argument("solution", type=Path, help="the Python file to run")
    submit.add_argument("-c", "--config", type=Path, required=True, help="the job's YAML or JSON config")
    mode = submit.add_mutually_exclusive_group()
    mode.add_argument("--detach", "-d", action="store_true", help="print the job id and return at once")
    mode.add_argument("--wait", action="store_true", help="wait quietly, then print the output")
    mode.add_argument("--follow", action="store_true", help="live output and phase changes (the default)")
    submit.add_argument("--idempotency-key", metavar="KEY", help="retrying with the same key never submits twice")
    add_client_options(submit)
    submit.set_defaults(func=run_submit)

    wait = subparsers.add_parser("wait", help="wait for a job to end (exit code = the job's)")
    wait.add_argument("job")
    wait.add_argument("--timeout", type=float, help="give up after this many seconds (exit 1, job goes on)")
    add_client_options(wait)
    wait.set_defaults(func=run_wait)


def _check_files(args: argparse.Namespace) -> None:
    for path in (args.solution, args.config):
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")


async def _submit(args: argparse.Namespace, known: dict[str, str]) -> int:
    async with async_client_from(args) as client:
        job = await client.submit(args.solution, args.config, idempotency_key=args.idempotency_key)
        known["job_id"] = job.job_id
        for warning in job.submitted.warnings if job.submitted else []:
            err.print(f"gpuledger: warning: {warning}")
        if args.detach:
            if args.json:
                print_json(job.submitted)
            else:
                print(job.job_id, flush=True)
            return 0
        err.print(f"gpuledger: submitted job {job.job_id}")
        sys.stderr.flush()
        return await _until_end(client, job.job_id, args, live=not (args.wait or args.json))


async def _until_end(client: AsyncClient, job_id: str, args: argparse.Namespace, *, live: bool) -> int:
    if live:
        status = await follow_job(client, job_id)
    else:
        status = await client.wait(job_id, timeout=getattr(args, "timeout", None))
    if not status.is_terminal:
        err.print(f"gpuledger: {status_line(status)}; still waiting after --timeout")
        return 1
    if not live:
        await _print_outcome(client, status, args)
    err.print(f"gpuledger: {status_line(status)}")
    return exit_code_of(status)


async def _print_outcome(client: AsyncClient, status: JobStatus, args: argparse.Namespace) -> None:
    results = await client.results(status.job_id, waiting=True)
    if args.json:
        print_json({"status": status, "results": results})
        return
    if getattr(args, "command", "") == "submit":
        sys.stdout.write(results.stdout)
        sys.stderr.write(results.stderr)


def _detachable(coroutine: Any, job: dict[str, str]) -> int:
    """Run a waiting command; Ctrl+C lets go of the job (never cancels it) and says how to come back."""
    try:
        return int(asyncio.run(coroutine))
    except KeyboardInterrupt:
        job_id = job.get("job_id")
        err.print(f"\ngpuledger: {detached_hint(job_id)}" if job_id else "\ngpuledger: interrupted")
        return EXIT_DETACHED


def run_submit(args: argparse.Namespace) -> int:
    _check_files(args)
    job: dict[str, str] = {}
    return _detachable(_submit(args, job), job)


def run_wait(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with async_client_from(args) as client:
            return await _until_end(client, args.job, args, live=False)

    return _detachable(run(), {"job_id": args.job})
