"""``gpuledger login``: check a token against the server, then keep it in the client's config file (0600)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from gpuledger import Client
from gpuledger.config import DEFAULT_URL, save_config


def register(subparsers: Any) -> None:
    login = subparsers.add_parser("login", help="check your token with the server and store it for later commands")
    login.add_argument("--url", help=f"server URL (default: GPULEDGER_URL, else {DEFAULT_URL})")
    login.add_argument("--token", help="your token (default: GPULEDGER_TOKEN, else asked for)")
    login.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    login.set_defaults(func=run_login)


def run_login(args: argparse.Namespace) -> int:
    url = (args.url or os.environ.get("GPULEDGER_URL") or DEFAULT_URL).rstrip("/")
    token = args.token or os.environ.get("GPULEDGER_TOKEN")
    if not token:
        if not sys.stdin.isatty():
            token = sys.stdin.readline().strip()
        else:
            token = getpass.getpass(f"token for {url}: ").strip()
    with Client(url, token) as client:
        jobs = client.jobs(limit=1)  # 401 here means the server does not know this token
    path = save_config(url, token)
    if args.json:
        print(json.dumps({"url": url, "config_file": str(path), "newest_job": jobs[0].job_id if jobs else None}))
        return 0
    print(f"logged in to {url}; token saved in {path} (readable by you only)")
    if jobs:
        print(f"your newest job: {jobs[0].job_id} ({jobs[0].status})")
    return 0
