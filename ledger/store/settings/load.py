"""Reading the settings: defaults, then a TOML file, then ``GPULEDGER_*`` environment variables, all
under the flat names; a bad value stops start-up naming the setting and its variable."""

from __future__ import annotations

import functools
import os
import tomllib
import typing
from pathlib import Path
from typing import Any

import msgspec

from ledger.domain.errors import SettingsError
from ledger.store.settings.model import FLAT, GROUPED, SECRET_SETTINGS, TABLES, Settings, grouped_values

ENV_PREFIX = "GPULEDGER_"
# GPULEDGER_* variables that are not server settings: the researcher client's (URL, TOKEN, USER) and
# the test suite's switches that turn a missing sshd, browser, sandbox or Slurm into a failure. Any other
# unknown name is a typo.
NOT_SETTINGS = frozenset(
    {
        "GPULEDGER_URL",
        "GPULEDGER_TOKEN",
        "GPULEDGER_USER",
        "GPULEDGER_REQUIRE_SSHD",
        "GPULEDGER_REQUIRE_BROWSER",
        "GPULEDGER_REQUIRE_SANDBOX",
        "GPULEDGER_REQUIRE_SLURM",
    }
)
# Secrets are read from these plain names too (as the original system did), never from a file.
SECRET_ENV_NAMES = {"openrouter_api_key": "OPENROUTER_API_KEY"}
SETTING_NAMES = (*FLAT, *TABLES)


@functools.cache
def _annotations() -> dict[str, Any]:
    """The type of each flat setting, its ``Annotated`` constraints taken off."""
    found: dict[str, Any] = dict.fromkeys(TABLES, Any)
    for group in msgspec.structs.fields(Settings):
        if group.name in TABLES:
            continue
        for field in msgspec.structs.fields(group.type):
            annotation = field.type
            if typing.get_origin(annotation) is typing.Annotated:
                annotation = typing.get_args(annotation)[0]
            found[GROUPED[f"{group.name}.{field.name}"]] = annotation
    return found


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    kinds = _annotations()
    raw: dict[str, Any] = {}
    for key, text in environ.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_SETTINGS:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in kinds:
            raise SettingsError(f"{key}: unknown setting {name!r}")
        raw[name] = _parse_env_value(key, text, kinds[name])
    for name, env_name in SECRET_ENV_NAMES.items():
        if env_name in environ and name not in raw:
            raw[name] = environ[env_name]
    return raw


_KIND = {int: "an integer", float: "a number", bool: "true or false"}


def _parse_env_value(key: str, text: str, annotation: Any) -> Any:
    if annotation is str or annotation == (str | None):
        return text
    try:
        # Numbers, booleans, lists and tables are written as JSON (or TOML-ish true/false).
        return msgspec.json.decode(text.strip().lower() if text.strip().lower() in ("true", "false") else text)
    except msgspec.DecodeError:
        if isinstance(text, str) and annotation not in (int, float, bool):
            return text
        raise SettingsError(f"{key} must be {_KIND.get(annotation, 'JSON')}, not {text!r}") from None


def _from_file(config_file: str | Path | None) -> dict[str, Any]:
    path = Path(config_file) if config_file else Path("gpuledger.toml")
    if config_file and not path.exists():
        raise SettingsError(f"config file not found: {path}")
    if not path.exists():
        return {}
    try:
        raw = {k.lower(): v for k, v in tomllib.loads(path.read_text()).items()}
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{path}: invalid TOML: {e}") from e
    for secret in SECRET_SETTINGS:
        if secret in raw:
            raise SettingsError(f"{secret}: secrets come from the environment only, not {path}")
    unknown = sorted(set(raw) - set(SETTING_NAMES))
    if unknown:
        raise SettingsError(f"{unknown[0]}: unknown setting in {path}")
    return raw


def load_settings(config_file: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file (explicit, or ./gpuledger.toml if present), then the environment."""
    raw = _from_file(config_file)
    raw.update(_from_env(dict(os.environ if environ is None else environ)))
    try:
        return msgspec.convert(grouped_values(raw), Settings, strict=False)
    except msgspec.ValidationError as e:
        raise SettingsError(f"invalid setting: {name_setting(str(e))}") from e


def setting_sources(config_file: str | Path | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Where each setting's value comes from, as ``load_settings`` reads them: "default", "file" or "env"."""
    environ = dict(os.environ if environ is None else environ)
    sources = dict.fromkeys(SETTING_NAMES, "default")
    path = Path(config_file) if config_file else Path("gpuledger.toml")
    if path.exists():
        sources.update(dict.fromkeys((k.lower() for k in tomllib.loads(path.read_text())), "file"))
    sources.update(dict.fromkeys(_from_env(environ), "env"))
    return sources


def name_setting(message: str) -> str:
    """msgspec says ``Expected `int` > 0 - at `$.http.port` ``; lead with the flat name users write, its
    variable and what the setting is, and point at the flat name."""
    if "`$." not in message:
        return message
    what, where = message.split(" - at `$.", 1)
    path = where.rstrip("`")
    group, _, rest = path.partition(".")
    field = rest.split(".")[0].split("[")[0]
    flat = group if group in TABLES else GROUPED.get(f"{group}.{field}", group)
    inner = path.removeprefix(f"{group}.{field}") if flat != group else path.removeprefix(group)
    described = _description(group, field) if flat != group else None
    about = f" ({described})" if described else ""
    return f"{flat} ({ENV_PREFIX}{flat.upper()}): {what}{about} - at `$.{flat}{inner}`"


@functools.cache
def _schema() -> dict[str, Any]:
    return msgspec.json.schema(Settings)["$defs"]  # type: ignore[no-any-return]


def _description(group: str, field: str) -> str | None:
    kind = msgspec.structs.fields(Settings)
    name = next((f.type.__name__ for f in kind if f.name == group and isinstance(f.type, type)), None)
    spec = _schema().get(name or "", {}).get("properties", {}).get(field, {})
    options = [spec, *spec.get("anyOf", [])]
    return next((option["description"] for option in options if "description" in option), None)
