"""Writes the SDK's synchronous client (gpuledger/client.py) from its asynchronous one (gpuledger/aio.py).

The SDK is written once, async; unasync (the tool httpcore uses) drops ``async``/``await`` and renames the
async names below, then ruff tidies the imports, the layout and the
``async for ... yield`` loops (into ``yield from``). ``python3 scripts/unasync_sdk.py`` rewrites
the file; ``--check`` exits 1 when it is stale (tests/test_sdk_faces.py runs the same comparison).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import unasync

ROOT = Path(__file__).resolve().parent.parent
SOURCE, TARGET = "gpuledger/aio.py", "gpuledger/client.py"
RENAMES = {
    "AsyncClient": "Client",  # ours and httpx's
    "AsyncJob": "Job",
    "AsyncBaseTransport": "BaseTransport",
    "aclose": "close",
    "aclosing": "closing",
    "aconnect_sse": "connect_sse",
    "aiter_sse": "iter_sse",
    "aread": "read",
    "asyncio": "time",  # from asyncio import sleep -> from time import sleep
}
DOCSTRING = '''"""The synchronous client: ``Client(url, token)``, its calls, and ``Job`` handles.

Generated from ``gpuledger/aio.py`` by ``scripts/unasync_sdk.py``: edit that file and rerun the script.

Waiting never polls: ``wait`` reads the ledger's event stream, ``logs(follow=True)`` the log stream, and
both reconnect with ``Last-Event-ID`` after a dropped connection or a server restart.
"""'''


def ruff(args: list[str], text: str) -> str:
    command = [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(ROOT / TARGET), "-"]
    return subprocess.run(command, input=text, capture_output=True, text=True, check=True, cwd=ROOT).stdout


def generate(root: Path = ROOT) -> str:
    """The text gpuledger/client.py must have, given the tree's gpuledger/aio.py."""
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "aio.py"
        shutil.copyfile(root / SOURCE, source)
        unasync.unasync_files([str(source)], [unasync.Rule("aio.py", "client.py", additional_replacements=RENAMES)])
        text = (Path(scratch) / "client.py").read_text()
    docstring_end = text.index('"""', 3) + 3
    text = DOCSTRING + text[docstring_end:]
    return ruff(["format"], ruff(["check", "--fix-only", "--unsafe-fixes", "--exit-zero"], text))


if __name__ == "__main__":
    wanted, path = generate(), ROOT / TARGET
    if "--check" in sys.argv[1:]:
        stale = path.read_text() != wanted
        print(f"{TARGET} is stale: run python3 scripts/unasync_sdk.py" if stale else f"{TARGET} is up to date")
        sys.exit(1 if stale else 0)
    path.write_text(wanted)
