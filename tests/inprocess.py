"""The app in this process: Litestar's test client on the app ``api.app.create_app`` builds, over a ledger
in a temporary directory, its runtime started (the real store, writer, local runner and sandbox).

For handler logic: validation 4xx, auth 401/403/404, prefix resolution, pagination. What needs a socket
or the HTTP edge that ``serve`` wraps around the app (request ids, the access log, body deadlines,
connection caps, limits per address, the failed-authentication throttle) stays on tests/server.py.
An ``InProcess`` answers the calls tests make of a ``Server``: ``client``, ``token``, ``admin_token``,
``root`` and ``env`` (for CLI runs on the same ledger file).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import TestClient
from litestar.testing.transport import TestClientTransport
from server import OPEN_LIMITS

from api.app import create_app
from ledger.domain.tokens import mint
from ledger.store import commands
from ledger.store.settings import from_flat
from ledger.store.store import Write

BASE_URL = "http://testserver.local"


class AppTransport(httpx.BaseTransport):
    """The test client's way into the app (its portal, its lifespan), for further httpx clients."""

    def __init__(self, test_client: TestClient[Litestar]) -> None:
        self.inner = TestClientTransport(client=test_client)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)


class InProcess:
    """One app over one working directory; ``settings`` as ``Server`` takes them (lower-case names)."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        paths = {"database_path": root / "gpuledger.db", "jobs_dir": root / "jobs", "log_file": root / "server.log"}
        settings = {"ledger_reserve_bytes": 1024 * 1024, "code_scanner_quick_mode": True, **settings}
        settings.setdefault("endpoint_limits", OPEN_LIMITS)
        self.settings = from_flat({**{k: str(v) for k, v in paths.items()}, **settings})
        self.env = {"GPULEDGER_" + k.upper(): str(v) for k, v in paths.items()}
        self.app: Litestar = create_app(self.settings)
        self.test_client: TestClient[Litestar] = TestClient(self.app, base_url=BASE_URL, timeout=60)
        self.admin_token: str | None = None

    def start(self) -> None:
        """The lifespan runs (the runtime starts after it, as under ``serve``); returns once /readyz says ready."""
        self.test_client.__enter__()
        deadline = time.monotonic() + 30
        while self.test_client.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not become ready: {self.test_client.get('/readyz').text}")
            time.sleep(0.05)
        self.admin_token = (self.root / "admin-token").read_text().strip()

    def stop(self) -> None:
        self.test_client.__exit__(None, None, None)

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """A client of its own (headers, timeout) on the one running app."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        transport = AppTransport(self.test_client)
        return httpx.Client(
            base_url=BASE_URL, headers=headers, transport=transport, timeout=kwargs.pop("timeout", 60), **kwargs
        )

    def write(self, write: Write) -> None:
        """A command through the app's own ledger writer, on the app's event loop."""
        portal = self.test_client.blocking_portal
        assert portal is not None
        portal.call(self.app.state.runtime.ledger.write, write)

    def token(self, user: str, *, admin: bool = False, days: int = 30) -> str:
        """A fresh token for ``user``, issued through the ledger as ``gpuledger token create`` issues it."""
        secret, issued = mint(user, secret=None, days=days, is_admin=admin, by="test")
        self.write(commands.issue_token(issued))
        return secret


@contextmanager
def in_process(root: Path, **settings: Any) -> Iterator[InProcess]:
    """An app for a whole test module (started once, stopped at the end)."""
    app = InProcess(root, **settings)
    app.start()
    try:
        yield app
    finally:
        app.stop()
