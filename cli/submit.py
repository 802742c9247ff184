"""``gpuledger submit`` and ``gpuledger wait``: queue a job, then follow it to its end (Ctrl+C detaches)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from cli import arrays
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
from cli.terminal import shown
from gpuledger import AsyncClient, JobStatus
from gpuledger.project import PackedProject, pack_project
from gpuledger.wire import after_of, content, with_after
from ledger.domain.clock import DURATION_HELP, duration_s

DEFAULT_ID = "default"  # competition_id and project_id of a job submitted without a config file


def register(subparsers: Any) -> None:
    submit = subparsers.add_parser("submit", help="submit a solution and follow it (exit code = the job's)")
    submit.add_argument("solution", type=Path, help="the Python file to run, or a project directory (see --entry)")
    submit.add_argument("-c", "--config", type=Path, help="the job's YAML or JSON config (optional with --time)")
    flags = submit.add_argument_group("resources (override the config's fields)")
    flags.add_argument("--gpus", type=int, metavar="N", help="GPUs for the job (config: gpus)")
    flags.add_argument("--time", type=duration, metavar="DURATION", help=f"expected run time: {DURATION_HELP}")
    flags.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 16G (config: memory)")
    flags.add_argument("--competition", metavar="ID", help=f"competition_id (default without -c: {DEFAULT_ID})")
    flags.add_argument("--project", metavar="ID", help=f"project_id (default without -c: {DEFAULT_ID})")
    flags.add_argument("--entry", metavar="FILE", help="a project directory's file that runs (config: entrypoint)")
    flags.add_argument("--resume", metavar="JOB", help="start from that job's artifacts (config: resume_from)")
    mode = submit.add_mutually_exclusive_group()
    mode.add_argument("--detach", "-d", action="store_true", help="print the job id and return at once")
    mode.add_argument("--wait", action="store_true", help="wait quietly, then print the output")
    mode.add_argument("--follow", action="store_true", help="live output and phase changes (the default)")
    submit.add_argument("--raw", action="store_true", help="the job's output as written, escape sequences included")
    submit.add_argument("--idempotency-key", metavar="KEY", help="retrying with the same key never submits twice")
    submit.add_argument(
        "--array", metavar="SPEC", help="a job array: 0-99%%8, 1,3,5 or 0-20:5 (%%K: at most K at once)"
    )
    after = submit.add_argument_group("dependencies (config: after), Slurm's afterok / afterany / afternotok")
    after.add_argument("--after-ok", type=ids, metavar="JOB[,JOB]", help="start once these completed")
    after.add_argument("--after-any", type=ids, metavar="JOB[,JOB]", help="start once these ended, however")
    after.add_argument(
        "--after-not-ok", type=ids, metavar="JOB[,JOB]", help="start once these failed or were cancelled"
    )
    add_client_options(submit)
    submit.set_defaults(func=run_submit)

    wait = subparsers.add_parser("wait", help="wait for a job to end (exit code = the job's)")
    wait.add_argument("job", help="the job's id or a unique prefix of it")
    wait.add_argument("--raw", action="store_true", help="the job's output as written, escape sequences included")
    wait.add_argument(
        "--timeout",
        type=seconds,
        metavar="DURATION",
        help="give up after this long, e.g. 90 or 10m (exit 1, job goes on)",
    )
    add_client_options(wait)
    wait.set_defaults(func=run_wait)


def duration(text: str) -> int:
    try:
        return duration_s(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def ids(text: str) -> list[str]:
    """``ID[,ID]``: job or array ids."""
    found = [part.strip() for part in text.split(",") if part.strip()]
    if not found:
        raise argparse.ArgumentTypeError("give one or more job or array ids, separated by commas")
    return found


def seconds(text: str) -> float:
    """A plain number of seconds (fractions allowed), or a duration with a unit."""
    try:
        return float(text)
    except ValueError:
        return float(duration(text))


def _check_files(args: argparse.Namespace) -> None:
    if args.solution.is_dir():
        return
    for path in (args.solution, args.config):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")


def solution_of(args: argparse.Namespace) -> Path | PackedProject:
    """The file as it is, or the directory packed (its size said before it is sent)."""
    if not args.solution.is_dir():
        return Path(args.solution)
    packed = pack_project(args.solution)
    err.print(f"gpuledger: packed {args.solution} ({len(packed.files)} files, {packed.size} bytes)")
    return packed


def job_config(args: argparse.Namespace) -> bytes | Path:
    """The config to send: the file as it is, or (with flags) its fields with the flags' on top, as
    JSON (which the server reads as YAML). Without a file, ``--time`` is the one field needed."""
    overrides = {
        key: value
        for key, value in (
            ("competition_id", args.competition),
            ("project_id", args.project),
            ("expected_time", args.time),
            ("gpus", args.gpus),
            ("memory", args.memory),
            ("entrypoint", getattr(args, "entry", None)),
            ("resume_from", getattr(args, "resume", None)),
        )
        if value is not None
    }
    after = after_of(args.after_ok, args.after_any, args.after_not_ok)
    if args.config is not None and not overrides and not after:
        return Path(args.config)
    if args.config is None and args.time is None:
        raise ValueError("submit needs -c CONFIG, or --time DURATION (with --gpus, --memory ... as needed)")
    fields: dict[str, Any] = {"competition_id": DEFAULT_ID, "project_id": DEFAULT_ID}
    if args.config is not None:
        loaded = yaml.safe_load(args.config.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: the config must be a mapping of fields")
        fields = loaded
    return content(with_after(json.dumps({**fields, **overrides}, default=str), after))


async def _submit(args: argparse.Namespace, known: dict[str, str]) -> int:
    async with async_client_from(args) as client:
        job = await client.submit(solution_of(args), job_config(args), idempotency_key=args.idempotency_key)
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
        status = await follow_job(client, job_id, raw=args.raw)
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
        sys.stdout.write(shown(results.stdout, raw=args.raw))
        sys.stderr.write(shown(results.stderr, raw=args.raw))


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
    config = job_config(args)
    if args.array is not None or arrays.is_array_config(config):
        # One submission (a directory packed once for all its tasks); its progress: gpuledger status ARRAY
        return arrays.submit_array(args, config, solution_of(args))
    job: dict[str, str] = {}
    return _detachable(_submit(args, job), job)


def run_wait(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with async_client_from(args) as client:
            return await _until_end(client, args.job, args, live=False)

    return _detachable(run(), {"job_id": args.job})
