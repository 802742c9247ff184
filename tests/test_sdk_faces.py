"""The SDK is written once: the sync client is generated from the async one and offers the same calls."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from gpuledger import AsyncClient, AsyncJob, Client, Job

ROOT = Path(__file__).resolve().parent.parent


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync_sdk", ROOT / "scripts" / "unasync_sdk.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["unasync_sdk"] = module
    spec.loader.exec_module(module)
    return module


generator = load_generator()
# unasync's own renames, then ours: what an async name is called on the sync face
RENAMES = {"AsyncIterator": "Iterator", "AsyncGenerator": "Generator", **generator.RENAMES}


def sync_name(text: str) -> str:
    return re.sub(r"\b\w+\b", lambda m: RENAMES.get(m.group(0), m.group(0)), text.replace("__a", "__"))


def public_face(cls: type, *, renamed: bool) -> dict[str, str]:
    """Public method name -> its signature as text (the async face's in sync spelling)."""
    face = {}
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_") and name not in ("__enter__", "__exit__", "__aenter__", "__aexit__", "__init__"):
            continue
        text = f"{name}{inspect.signature(member)}"
        face[sync_name(text) if renamed else text] = name
    return face


def test_sync_client_is_generated_from_the_async_one() -> None:
    """gpuledger/client.py is exactly what scripts/unasync_sdk.py makes of gpuledger/aio.py (edit aio.py)."""
    assert (ROOT / "gpuledger" / "client.py").read_text() == generator.generate(ROOT)


@pytest.mark.parametrize(("sync", "asynchronous"), [(Client, AsyncClient), (Job, AsyncJob)])
def test_both_faces_offer_the_same_calls(sync: type, asynchronous: type) -> None:
    """Every public method exists on both clients (and both job handles) with the same signature."""
    assert sorted(public_face(sync, renamed=False)) == sorted(public_face(asynchronous, renamed=True))


def test_the_face_comparison_sees_a_missing_call() -> None:
    """Sanity: a method on one face only (here: a subclass's extra) makes the faces differ."""

    class Wider(AsyncClient):
        async def extra(self) -> None:
            """Only here."""

    assert sorted(public_face(Client, renamed=False)) != sorted(public_face(Wider, renamed=True))
