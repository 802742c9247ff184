"""``gpuledger node list|drain|undrain``: the admin's node commands, over HTTP with an admin token
(``--token``, GPULEDGER_TOKEN or the login file, as the other client commands)."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from cli.listing import run_nodes
from cli.remote import add_client_options, client_from, out, print_json
from gpuledger import NodeInfo


def register(subparsers: Any) -> None:
    node = subparsers.add_parser("node", help="admins: list nodes, drain or undrain one")
    actions = node.add_subparsers(dest="node_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every node: state (and why), slots, current job, queue")
    add_client_options(listing)
    listing.set_defaults(func=run_nodes)  # the same table as `gpuledger nodes`
    for action, words in (
        ("drain", "stop new dispatches to NAME (its running jobs go on)"),
        ("undrain", "let NAME take jobs again"),
    ):
        parser = actions.add_parser(action, help=words)
        parser.add_argument("name", metavar="NAME", help="the node's name (gpuledger node list)")
        parser.add_argument("--reason", default="", help="why (kept in the ledger, shown in node list)")
        add_client_options(parser)
        parser.set_defaults(func=run_drain, drain=action == "drain")


def run_drain(args: argparse.Namespace) -> int:
    action = "drain" if args.drain else "undrain"
    with client_from(args) as client:
        answer = client.request("POST", f"/api/admin/nodes/{args.name}/{action}", params={"reason": args.reason})
    node = msgspec.json.decode(answer.content, type=NodeInfo)
    if args.json:
        print_json(node)
    else:
        why = node.down_reason or node.drain_reason
        why = f" ({why})" if why else ""
        out.print(f"node {node.name}: {node.status}{why}")
    return 0
