"""``gpuledger serve`` and ``gpuledger config show``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ledger.settings import load_settings


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the server (default 0.0.0.0:8001)")
    serve.add_argument("--config", metavar="FILE", help="settings file (default: ./gpuledger.toml if present)")
    serve.add_argument("--host", help="override SERVER_HOST")
    serve.add_argument("--port", type=int, help="override SERVER_PORT")
    serve.set_defaults(func=run_serve)

    config = subparsers.add_parser("config", help="settings")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_sub.add_parser("show", help="print the effective settings (secrets redacted)")
    show.add_argument("--config", metavar="FILE")
    show.set_defaults(func=run_config_show)


def run_config_show(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    json.dump(settings.redacted(), sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.logsetup import configure_logging

    # Everything the server creates (ledger, WAL, server.log, jobs/, results) is its own: 0600 / 0700.
    os.umask(0o077)
    settings = load_settings(args.config)
    configure_logging(settings.log_file)
    app = create_app(settings)
    # One process; SIGTERM makes uvicorn stop accepting, finish in-flight requests, then run the
    # lifespan shutdown, which leaves running jobs alone (they are re-attached at the next start).
    uvicorn.run(
        app,
        host=args.host or settings.server_host,
        port=args.port or settings.server_port,
        log_config=None,
        timeout_graceful_shutdown=30,
        access_log=False,
    )
    return 0
