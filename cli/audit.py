"""``gpuledger audit verify``, ``replay`` and ``events``: reading and checking the ledger."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import msgspec

from cli.common import add_db_option, existing_db, position_or_time
from ledger.domain.clock import iso
from ledger.domain.errors import NoSchema, StoreError
from ledger.domain.events import Recorded, TokenIssued, TokenRevoked, UserPolicySet, encode_event, event_tag
from ledger.store.backup import BLOBS_NAME, damaged_blobs, head_of
from ledger.store.integrity import mark_problem, read_mark
from ledger.store.pruning import live_digests
from ledger.store.schema import open_existing, open_readonly, wal_missing
from ledger.store.settings import load_settings
from ledger.store.store import ROW_COLUMNS, record_of
from projections.audit import verify, views_until
from projections.views import Views


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="check the ledger")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="CHECK")
    check = audit_sub.add_parser("verify", help="hash chain, projections equal a rebuild, blobs intact")
    add_db_option(check)
    check.add_argument("--jobs-dir", metavar="DIR", help="where the blobs are (default: the JOBS_DIR setting)")
    check.set_defaults(func=run_verify)

    replay = subparsers.add_parser("replay", help="the views as of a position or time")
    add_db_option(replay)
    replay.add_argument("--until", type=position_or_time, help="POSITION or ISO-TIME (default: now)")
    replay.add_argument("--json", action="store_true", help="one JSON document")
    replay.set_defaults(func=run_replay)

    events = subparsers.add_parser("events", help="ledger events, one per line")
    add_db_option(events)
    events.add_argument("--job", help="only this job's events")
    events.add_argument("--user", help="only events of this user's jobs, tokens and policy")
    events.add_argument("--type", dest="type_", metavar="TYPE", help="event type, e.g. job.finished or job.*")
    events.add_argument("--since", type=position_or_time, help="after POSITION, or from ISO-TIME on")
    events.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    events.add_argument("--json", action="store_true", help="JSON lines")
    events.set_defaults(func=run_events)


def run_verify(args: argparse.Namespace) -> int:
    """Exit 0: sound; 1: damaged (the first finding); 2: sound as far as it goes, but suspect (empty, or
    a copy without the WAL it needs). The file is opened read-only and never changed."""
    path = existing_db(args)
    copied_without_wal = wal_missing(path)
    mark = read_mark(path)
    try:
        conn = open_readonly(path)
        problems: list[object] = list(verify(conn))
        lost = mark_problem(conn, mark)  # shorter than, or unlike, what its server had committed
        problems += [lost] if lost else []
        problems += [] if problems else blob_problems(conn, args)
        head = head_of(conn)
    except (apsw.Error, StoreError) as e:  # the file itself is damaged (its existence was checked above)
        damage = f"{type(e).__name__}: {e}"
        print(f"FAILED: the ledger file is damaged ({damage}); restore it from a backup", file=sys.stderr)
        return 1
    except NoSchema:
        if mark is not None and mark.position > 0:
            print(f"FAILED: no schema, but its server had committed up to {mark.position}: all lost", file=sys.stderr)
            return 1
        if copied_without_wal:
            return suspect(f"{path} is in WAL mode but has no -wal beside it, and no schema: {WAL_HINT}")
        raise
    if problems:
        print(f"FAILED: {problems[0]}", file=sys.stderr)
        return 1
    when = iso(head.recorded_at) if head.recorded_at is not None else "-"
    print(f"ok: {head.position} events, hash chain intact, projections equal a rebuild from position 0")
    print(f"head: position {head.position} at {when}, hash {head.hash or '-'}")
    if head.position == 0:
        return suspect(f"{path} holds no events" + (f": {WAL_HINT}" if copied_without_wal else ""))
    return 0


def blob_problems(conn: apsw.Connection, args: argparse.Namespace) -> list[str]:
    """Every blob the events name exists and hashes to its name, but the outputs a job.pruned removed.
    Without a blob directory (a ledger copied alone) the blobs are not checked, and that is said."""
    root = Path(args.jobs_dir or load_settings(args.config).storage.jobs_dir).resolve() / BLOBS_NAME
    digests = live_digests(conn)
    if not root.is_dir():
        if digests:
            print(f"note: blobs not checked: no blob directory at {root} (pass --jobs-dir)")
        return []
    bad = damaged_blobs(digests, root)
    if not bad:
        print(f"ok: {len(digests)} blobs present and intact (pruned outputs excepted)")
        return []
    return [f"{len(bad)} blob(s) named by events and not pruned are missing or damaged under {root}, e.g. {bad[0]}"]


WAL_HINT = (
    "if this is a copy of a running ledger, its newest events stayed in the -wal that was not copied; "
    "make copies with `gpuledger backup DEST`"
)


def suspect(why: str) -> int:
    print(f"WARNING: {why}", file=sys.stderr)
    return 2


def views_document(views: Views) -> dict[str, Any]:
    """What ``replay`` shows: every view, never a token secret or its hash."""
    return {
        "position": views.position,
        "as_of": iso(views.recorded_at),
        # asdict, not to_builtins: job rows omit default values on disk, the document shows every field.
        "jobs": [msgspec.structs.asdict(job) for job in views.jobs.values()],
        "users": [msgspec.to_builtins(user) for user in views.users.values()],
        "nodes": [msgspec.to_builtins(node) for node in views.nodes.values()],
        "fairshare": {
            "half_life_s": views.half_life_s,
            "accounts": [msgspec.structs.asdict(a) for a in views.shares.values()],
        },
        "tokens": [
            {k: v for k, v in msgspec.to_builtins(t).items() if k != "secret_sha256"} for t in views.tokens.values()
        ],
    }


def run_replay(args: argparse.Namespace) -> int:
    position, time_us = args.until or (None, None)
    views = views_until(open_existing(existing_db(args)), position=position, time_us=time_us)
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(views_document(views)) + b"\n")
        return 0
    print(f"as of position {views.position} ({iso(views.recorded_at) or 'empty ledger'})")
    print(f"jobs: {len(views.jobs)}")
    for job in sorted(views.jobs.values(), key=lambda j: j.position):
        print(
            f"  {job.job_id}  {job.user_id:<12} {job.status:<9} {job.phase:<10} {job.node or '-'}"
            f"  exit={job.exit_code if job.exit_code is not None else '-'}"
        )
    print(f"nodes: {len(views.nodes)}")
    for node in views.nodes.values():
        print(f"  {node.name:<16} {node.status:<10} running={len(views.node_jobs.get(node.name, []))}")
    print(f"users: {len(views.users)}")
    for user in views.users.values():
        print(
            f"  {user.user_id:<16} total={user.total} pending={user.pending} running={user.running}"
            f" completed={user.completed} failed={user.failed} cancelled={user.cancelled}"
        )
    live = sum(1 for t in views.tokens.values() if not t.revoked)
    print(f"tokens: {len(views.tokens)} ({live} not revoked)")
    return 0


def event_line(record: Recorded, *, as_json: bool) -> bytes:
    if as_json:
        envelope = {
            "position": record.position,
            "recorded_at": iso(record.recorded_at),
            "stream": record.stream,
            "version": record.version,
            "type": event_tag(record.event),
            "actor": record.actor,
            "event": record.event,
        }
        return msgspec.json.encode(envelope)
    return (
        f"{record.position:>8}  {iso(record.recorded_at)}  {record.stream:<34} "
        f"{event_tag(record.event):<22} {record.actor:<20} "
    ).encode() + encode_event(record.event)


class EventFilter:
    def __init__(self, args: argparse.Namespace, user_jobs: set[str]) -> None:
        self.job, self.user, self.type_ = args.job, args.user, args.type_
        self.user_jobs = user_jobs
        self.since_time = args.since[1] if args.since else None

    def __call__(self, record: Recorded) -> bool:
        tag = event_tag(record.event)
        if self.type_ and not (tag == self.type_ or (self.type_.endswith("*") and tag.startswith(self.type_[:-1]))):
            return False
        if self.job and record.stream != f"job-{self.job}":
            return False
        if self.since_time is not None and record.recorded_at < self.since_time:
            return False
        if self.user:
            if isinstance(record.event, TokenIssued | TokenRevoked | UserPolicySet):
                return bool(record.event.user_id == self.user)
            return record.stream.removeprefix("job-") in self.user_jobs
        return True


def _candidates(conn: apsw.Connection, args: argparse.Namespace, after: int) -> Iterator[Recorded]:
    """Events after a position, narrowed in SQL where an index helps: (stream, version) for one job,
    (type, position) for a type or a ``prefix.*`` of types. EventFilter still has the last word."""
    clauses: list[str] = ["position > ?"]
    params: list[int | str] = [after]
    if args.job:
        clauses.append("stream = ?")
        params.append(f"job-{args.job}")
    if args.type_:
        if args.type_.endswith("*"):
            clauses.append("type >= ? AND type < ?")
            prefix = args.type_[:-1]
            params += [prefix, prefix + "\uffff"]
        else:
            clauses.append("type = ?")
            params.append(args.type_)
    sql = f"SELECT {ROW_COLUMNS} FROM events WHERE {' AND '.join(clauses)} ORDER BY position"
    for row in conn.execute(sql, params):
        yield record_of(row)


def run_events(args: argparse.Namespace) -> int:
    conn = open_existing(existing_db(args))
    position = args.since[0] - 1 if args.since and args.since[0] is not None else 0
    user_jobs: set[str] = set()
    out = sys.stdout.buffer
    seen_version = None
    while True:
        if args.user:
            user_jobs = {row[0] for row in conn.execute("SELECT job_id FROM proj_jobs WHERE user_id = ?", (args.user,))}
        keep = EventFilter(args, user_jobs)
        for record in _candidates(conn, args, max(position, 0)):
            position = record.position
            if keep(record):
                out.write(event_line(record, as_json=args.json) + b"\n")
        out.flush()
        if not args.follow:
            return 0
        while seen_version == (version := conn.pragma("data_version")):
            time.sleep(0.2)
        seen_version = version
