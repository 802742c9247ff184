"""``gpuledger download``: a job's artifacts, each checked against the digest the server recorded."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.remote import add_client_options, client_from, err, print_json


def register(subparsers: Any) -> None:
    download = subparsers.add_parser("download", help="fetch a job's artifacts (outputs/ and artifacts: globs)")
    download.add_argument("job", help="the job's id or a unique prefix of it")
    download.add_argument("paths", nargs="*", metavar="PATH", help="only these artifacts (default: all)")
    download.add_argument("-o", "--output", type=Path, default=Path(), metavar="DIR", help="where to put them")
    download.add_argument("--list", action="store_true", help="list the artifacts instead of fetching them")
    add_client_options(download)
    download.set_defaults(func=run_download)


def run_download(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        listing = client.artifacts(args.job)
        if args.list:
            _print_listing(listing, as_json=args.json)
            return 0
        saved = client.download(args.job, args.paths or None, to=args.output)
    for path in saved:
        print(path)
    err.print(f"gpuledger: {len(saved)} artifact(s) of job {listing.job_id} saved, digests checked")
    return 0


def _print_listing(listing: Any, *, as_json: bool) -> None:
    if as_json:
        print_json(listing)
        return
    for artifact in listing.artifacts:
        print(f"{artifact.size:>12}  {artifact.path}")
    for skipped in listing.skipped:
        err.print(f"gpuledger: not kept: {skipped}")
    if listing.message:
        err.print(f"gpuledger: {listing.message}")
