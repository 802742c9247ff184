"""Where the client finds its server and token: arguments, then GPULEDGER_URL / GPULEDGER_TOKEN, then
``~/.config/gpuledger/config.toml`` (written by ``gpuledger login``, readable by its owner only)."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8001"


def with_scheme(url: str) -> str:
    """``127.0.0.1:8001`` means ``http://127.0.0.1:8001`` (as curl reads it)."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


@dataclass(frozen=True)
class ClientConfig:
    url: str
    token: str | None
    source: str  # where the token came from, for error messages


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gpuledger" / "config.toml"


def _read_file(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    return {k: str(v) for k, v in data.items() if k in ("url", "token")}


def load_config(url: str | None = None, token: str | None = None) -> ClientConfig:
    stored = _read_file(config_path())
    env_url, env_token = os.environ.get("GPULEDGER_URL"), os.environ.get("GPULEDGER_TOKEN")
    source = "argument" if token else "GPULEDGER_TOKEN" if env_token else str(config_path())
    return ClientConfig(
        url=with_scheme(url or env_url or stored.get("url") or DEFAULT_URL),
        token=token or env_token or stored.get("token"),
        source=source,
    )


def save_config(url: str, token: str, path: Path | None = None) -> Path:
    """Write the file with mode 0600 from the start (never world-readable, even for an instant)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # JSON strings are valid TOML basic strings for everything a URL or token holds.
    text = f"url = {json.dumps(url)}\ntoken = {json.dumps(token)}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)
    return path
