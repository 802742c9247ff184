"""What the sync and async clients share: building requests, reading answers and SSE events, errors."""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import yaml

from gpuledger.errors import (
    BY_STATUS,
    ApiError,
    ConnectionFailed,
    DigestMismatch,
    NotFound,
    NotGpuledger,
    RateLimited,
    ServerError,
)
from gpuledger.models import ArtifactInfo, ArtifactList, LedgerEvent, LogChunk
from gpuledger.project import PackedProject, pack_project

RECONNECT_FOR_S = 300.0  # how long a follower keeps trying to reach a server that went away
IDLE_READ_S = 30.0  # a silent stream is reopened after this long (the server sends nothing while idle)

Source = str | bytes | Path


def content(value: Source) -> bytes:
    """Code or config given as a path or as the text itself."""
    if isinstance(value, Path):
        return value.read_bytes()
    return value.encode() if isinstance(value, str) else value


def with_after(config: Source, after: dict[str, list[str]]) -> Source:
    """The config with these dependencies in its ``after:`` (each kind given replaces the config's),
    as JSON, which the server reads as YAML; the config as it is when none is given."""
    if not after:
        return config
    fields = yaml.safe_load(content(config))
    if not isinstance(fields, dict):
        raise ValueError("the config must be a mapping of fields")
    return json.dumps({**fields, "after": {**(fields.get("after") or {}), **after}}, default=str)


def after_of(ok: list[str] | None, any: list[str] | None, not_ok: list[str] | None) -> dict[str, list[str]]:
    """The kinds given (Slurm's afterok, afterany, afternotok), by their ``after:`` names."""
    return {kind: ids for kind, ids in (("ok", ok), ("any", any), ("not_ok", not_ok)) if ids}


def submit_files(code: Source | PackedProject, config: Source) -> dict[str, tuple[str, bytes]]:
    """The multipart parts: ``code`` (one file, as the old server takes it) or ``project`` (a packed
    directory, a part the old server never read), and ``config_file``."""
    config_name = config.name if isinstance(config, Path) else "config.yaml"
    if isinstance(code, Path) and code.is_dir():
        code = pack_project(code)
    if isinstance(code, PackedProject):
        return {"project": ("project.tar", code.data), "config_file": (config_name, content(config))}
    code_name = code.name if isinstance(code, Path) else "solution.py"
    return {"code": (code_name, content(code)), "config_file": (config_name, content(config))}


def chosen_artifacts(listing: ArtifactList, paths: list[str] | None) -> list[ArtifactInfo]:
    """The listed artifacts named by ``paths`` (all without), or NotFound naming what is not there."""
    if listing.pruned:
        raise NotFound(listing.message or f"job {listing.job_id}'s artifacts were pruned")
    if not paths:
        return list(listing.artifacts)
    by_path = {a.path: a for a in listing.artifacts}
    missing = [p for p in paths if p not in by_path]
    if missing:
        raise NotFound(f"job {listing.job_id} has no artifact {', '.join(missing)}")
    return [by_path[p] for p in paths]


def save_artifact(artifact: ArtifactInfo, data: bytes, root: Path) -> Path:
    """Write one downloaded artifact below ``root`` at its own relative path, after checking its digest."""
    if hashlib.sha256(data).hexdigest() != artifact.digest or len(data) != artifact.size:
        raise DigestMismatch(f"{artifact.path}: the downloaded bytes do not match its digest {artifact.digest}")
    target = (root / artifact.path).resolve()
    if not target.is_relative_to(root.resolve()):
        raise DigestMismatch(f"{artifact.path}: a path outside the download directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


SERVICE = "GPU Job Queue Server"  # what a gpuledger server's ``GET /`` names itself
OUR_TYPES = ("json", "octet-stream", "event-stream")  # every answer of ours is one of these
EXPIRY_HEADER = "x-token-expires-at"  # on every authenticated answer: the token's expiry, ISO-8601


def looks_foreign(response: httpx.Response) -> bool:
    """An answer no gpuledger server gives (an HTML page, say): worth asking ``GET /`` who it is."""
    kind = response.headers.get("content-type", "")
    return not any(ours in kind for ours in OUR_TYPES)


def foreign_error(url: str, root: httpx.Response | None, answer: httpx.Response) -> NotGpuledger | None:
    """None when ``GET /`` (``root``) names a gpuledger server, else the error that says it is not."""
    try:
        service = root.json().get("service") if root is not None else None
    except (ValueError, AttributeError):
        service = None
    if service == SERVICE:
        return None
    kind = answer.headers.get("content-type", "no content type").split(";")[0]
    return NotGpuledger(
        f"{url} is not a gpuledger server (it answered {answer.status_code} with {kind}, and GET / "
        f"does not name the service): check --url, GPULEDGER_URL or the login file"
    )


def token_expiry(response: httpx.Response) -> str | None:
    expiry: str | None = response.headers.get(EXPIRY_HEADER)
    return expiry


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def detail_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return response.reason_phrase


def error_for(response: httpx.Response) -> ApiError:
    detail = detail_of(response)
    if response.status_code == 429:
        return RateLimited(detail, retry_after=retry_after(response))
    if response.status_code >= 500:
        return ServerError(detail, status=response.status_code)
    return BY_STATUS.get(response.status_code, ApiError)(detail, status=response.status_code)


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_for(response)
    return response


def decode(kind: type[Any], response: httpx.Response) -> Any:
    return msgspec.convert(check(response).json(), kind)


def decode_field(kind: type[Any], response: httpx.Response, key: str) -> Any:
    """The list under ``key`` of ``{"jobs": [...]}``-shaped answers."""
    return msgspec.convert(check(response).json()[key], kind)


def log_chunk(stream: str, data: str) -> LogChunk:
    body = msgspec.json.decode(data)
    return LogChunk(
        stream=stream, offset=int(body["offset"]), text=str(body["text"]), attempt=int(body.get("attempt", 1))
    )


def ledger_event(tag: str, data: str) -> LedgerEvent:
    entry = msgspec.json.decode(data, type=LedgerEvent)
    return msgspec.structs.replace(entry, type=tag or str(entry.event.get("type", "")))


def sse_timeout(remaining: float | None) -> httpx.Timeout:
    read = IDLE_READ_S if remaining is None else max(0.1, min(IDLE_READ_S, remaining))
    return httpx.Timeout(10.0, read=read)


@dataclass
class Reconnect:
    """Backoff for a follower between connection attempts; a connection that delivered resets it."""

    give_up_after: float = RECONNECT_FOR_S
    failures: int = 0
    failing_since: float | None = None
    last_error: str = field(default="")

    def delivered(self) -> None:
        self.failures, self.failing_since = 0, None

    def failed(self, error: Exception, now: float) -> float:
        """Seconds to sleep before the next try; raises once the server has been gone too long."""
        self.failures += 1
        self.failing_since = self.failing_since or now
        self.last_error = f"{type(error).__name__}: {error}"
        if now - self.failing_since > self.give_up_after:
            raise ConnectionFailed(f"server unreachable for {math.ceil(now - self.failing_since)}s ({error})")
        delay: float = min(5.0, 0.1 * 2 ** min(self.failures, 6))
        return delay * (0.5 + random.random() / 2)
