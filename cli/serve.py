"""``gpuledger serve`` and ``gpuledger config show``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import faulthandler
import json
import os
import signal
import socket
import sys
from typing import Any

from executors.visibility import secrets_in_view
from ledger.store.settings import load_settings, setting_sources

GIL_SWITCH_INTERVAL_S = 0.0005
# The standard library's loop, not uvloop (which uvicorn would pick by itself): uvloop forks a command
# and then runs Python in the child before exec (``PyOS_AfterFork_Child``: every other thread's state
# is cleared, so their thread-local objects are finalised there, our SQLite read connections among
# them). A lock another thread held at the fork is held forever in the child, which never execs, and
# libuv's spawn waits for that exec on the loop: the whole server froze. The standard loop spawns with
# ``subprocess`` (no Python in the child). ``tests/test_event_loop.py`` shows both.
EVENT_LOOP = "asyncio"


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
    show.add_argument("--toml", action="store_true", help="as TOML to paste back, with where each value came from")
    show.set_defaults(func=run_config_show)


def run_config_show(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.toml:
        from cli.config_toml import settings_toml

        sys.stdout.write(settings_toml(settings, setting_sources(args.config)))
        return 0
    json.dump(settings.redacted(), sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


def port_in_use(host: str, port: int) -> str | None:
    """Why the port cannot be bound (one short phrase), or None; checked before any log line is written."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as e:
            return "address already in use" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
    return None


SERVER_OOM_SCORE_ADJ = -900  # jobs are 1000 and wrapper daemons -500 (executors/wrapper.py)


def protect_from_oom_killer() -> None:
    """When memory runs out, the kernel kills any job before the server: jobs raise their own score to
    1000 (always allowed); lowering the server's needs CAP_SYS_RESOURCE (root, outside a container that
    drops it), and without it the server stays at 0, still below every job."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(SERVER_OOM_SCORE_ADJ))
    except OSError as e:  # not root, no CAP_SYS_RESOURCE, or no /proc
        import structlog

        structlog.get_logger().info("oom_score_adj.unchanged", wanted=SERVER_OOM_SCORE_ADJ, error=str(e))


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.boot import BootApp
    from api.connections import guarded_protocol, raise_descriptor_limit
    from api.logsetup import configure_logging

    # Everything the server creates (ledger, WAL, server.log, jobs/, results) is its own: 0600 / 0700.
    os.umask(0o077)
    settings = load_settings(args.config)
    exposed = secrets_in_view(settings, args.config or ("gpuledger.toml" if os.path.exists("gpuledger.toml") else None))
    if exposed:
        print(f"gpuledger: refusing to start: {exposed}", file=sys.stderr)
        return 2
    host, port = args.host or settings.http.host, args.port or settings.http.port
    busy = port_in_use(host, port)
    if busy:
        print(
            f"gpuledger: cannot listen on {host}:{port} ({busy}); stop the other server or choose "
            f"another port: gpuledger serve --port {port + 1} (or GPULEDGER_SERVER_PORT={port + 1})",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.storage.log_file)
    # `kill -USR1 <pid>` writes every thread's stack to stderr, from C: it answers even when the loop
    # is stuck in a call that never returns.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    protect_from_oom_killer()
    server: list[uvicorn.Server] = []  # the app is built first; a failed start stops the server it runs in

    def stop() -> None:
        server[0].should_exit = True

    async def listening() -> None:
        # uvicorn binds right after the lifespan's start-up returns, and says so by a flag, not an event
        while not server[0].started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def build() -> tuple[Any, Any]:
        # In a worker thread once the socket is bound: the API's imports and Litestar's set-up are most
        # of the start's second; /livez answers meanwhile (``api.boot``).
        from api.app import create_app, served_app

        app = create_app(settings, on_start_failure=stop, listening=listening)
        return app, served_app(app, settings)

    boot = BootApp(build, on_failure=stop)
    raise_descriptor_limit()  # before the connection cap is derived from it
    protocol = guarded_protocol(settings.http)
    # One process; SIGTERM makes uvicorn stop accepting, finish in-flight requests, then run the
    # lifespan shutdown, which leaves running jobs alone (they are re-attached at the next start).
    # The runtime starts after the app is built (``api.app``): /livez answers while the ledger loads.
    config = uvicorn.Config(
        boot,
        host=host,
        port=port,
        log_config=None,
        loop=EVENT_LOOP,
        # httptools with a deadline for each request head and caps on connections (``api.connections``)
        http=protocol,
        backlog=protocol.backlog,
        timeout_graceful_shutdown=30,
        # uvicorn has no body timeout (the app's HTTP edge has one); these bound idle connections
        # and the size of a request head that is still incomplete.
        timeout_keep_alive=settings.http.keep_alive_timeout_s,
        h11_max_incomplete_event_size=16 * 1024,
        access_log=False,  # the HTTP edge writes the access line, through structlog
    )
    server.append(uvicorn.Server(config))
    # Worker threads (as-of replays, plans) hold the GIL in pure-Python folds; the default 5 ms switch
    # interval lets each of them delay the event loop by that much per hand-off, several per request.
    # 0.5 ms halved /livez's delay during as-of requests in bench/scale.py at no measurable cost.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    server[0].run()
    failed = boot.failed or (boot.built.state.runtime.failed if boot.built is not None else None)
    return 1 if failed else 0
