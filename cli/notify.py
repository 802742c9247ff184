"""``gpuledger user set-notify TARGET... | --clear | --show``: your default end-of-job notify targets, set
through the server (a job whose config has no ``notify:`` uses them)."""

from __future__ import annotations

import argparse
from typing import Any

from cli.remote import add_client_options, client_from, out, print_json


def register_set_notify(actions: Any) -> None:
    """The ``set-notify`` action under ``gpuledger user``."""
    notify = actions.add_parser(
        "set-notify", help="your default notify targets: webhook URLs or apprise URLs (mailto://, ntfy://, ...)"
    )
    notify.add_argument("targets", nargs="*", metavar="TARGET", help="told when a job of yours ends")
    notify.add_argument("--clear", action="store_true", help="no default targets any more")
    notify.add_argument("--show", action="store_true", help="print the targets set now and change nothing")
    add_client_options(notify)
    notify.set_defaults(func=run_set_notify)


def run_set_notify(args: argparse.Namespace) -> int:
    if args.clear and args.targets:
        out.print("[red]give targets or --clear, not both[/red]")
        return 2
    if not (args.clear or args.targets or args.show):
        out.print("[red]give one or more targets, --clear or --show[/red]")
        return 2
    with client_from(args) as client:
        targets = client.notify_targets() if args.show else client.set_notify([] if args.clear else args.targets)
    if args.json:
        print_json({"targets": targets})
    elif targets:
        out.print("\n".join(["Jobs whose config names no notify targets tell:", *targets]))
    else:
        out.print("No default notify targets: jobs tell nobody unless their config names some.")
    return 0
