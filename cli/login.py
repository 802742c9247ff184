"""``gpuledger login``: check a token against the server, then keep it in the client's config file (0600);
``gpuledger whoami``: who the token says you are, and until when."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from cli.remote import add_client_options, client_from, print_json, until
from gpuledger import Client
from gpuledger.config import DEFAULT_URL, save_config, with_scheme
from gpuledger.models import to_builtins


def register(subparsers: Any) -> None:
    login = subparsers.add_parser("login", help="check your token with the server and store it for later commands")
    login.add_argument("--url", help=f"server URL (default: GPULEDGER_URL, else {DEFAULT_URL})")
    login.add_argument("--token", help="your token (default: GPULEDGER_TOKEN, else asked for)")
    login.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    login.set_defaults(func=run_login)

    whoami = subparsers.add_parser("whoami", help="who your token says you are, and when it expires")
    add_client_options(whoami)
    whoami.set_defaults(func=run_whoami)


def run_login(args: argparse.Namespace) -> int:
    url = with_scheme(args.url or os.environ.get("GPULEDGER_URL") or DEFAULT_URL)
    token = args.token or os.environ.get("GPULEDGER_TOKEN")
    if not token:
        if not sys.stdin.isatty():
            token = sys.stdin.readline().strip()
        else:
            token = getpass.getpass(f"token for {url}: ").strip()
    with Client(url, token) as client:
        who = client.whoami()  # 401 here means the server does not know this token
        jobs = client.jobs(limit=1)
    path = save_config(url, token)
    if args.json:
        newest = jobs[0].job_id if jobs else None
        print(json.dumps({"url": url, "config_file": str(path), "newest_job": newest, **to_builtins(who)}))
        return 0
    admin = " (admin)" if who.is_admin else ""
    print(f"logged in to {url} as {who.user_id}{admin} until {until(who.expires_at)}")
    print(f"token saved in {path} (readable by you only)")
    if jobs:
        print(f"your newest job: {jobs[0].job_id} ({jobs[0].status})")
    return 0


def run_whoami(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        who = client.whoami()
    if args.json:
        print_json({"url": client.url, **to_builtins(who)})
        return 0
    print(f"user:    {who.user_id}")
    print(f"admin:   {'yes' if who.is_admin else 'no'}")
    print(f"token:   {who.token_id}, expires {until(who.expires_at)}")
    print(f"server:  {client.url}")
    return 0
